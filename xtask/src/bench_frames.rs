//! `cargo xtask bench frames`: clip cost of the frames stage's decode path (open, seek to the
//! keyframe before a random window, decode its 16 frames, resize + crop) against the `ffmpeg`
//! command line on the same windows, for a short and a long source video.

use anyhow::{anyhow, Result};
use latte_datasets::bench::{bench_frames, BenchConfig};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Clips (random 48-frame windows) timed per source video.
    #[arg(long, default_value_t = 8)]
    clips: usize,
    /// Source video lengths in frames (short and long).
    #[arg(long, value_delimiter = ',', default_values_t = [64usize, 640])]
    lengths: Vec<usize>,
    /// Output frame size (the paper's 256).
    #[arg(long, default_value_t = 256)]
    size: usize,
}

pub fn run(args: Args) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("latte-bench-frames-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let cfg = BenchConfig { clips: args.clips.max(1), lengths: args.lengths, size: args.size, ..BenchConfig::default() };
    println!(
        "frames bench: {} clips of 16 frames (48-frame window) per source, H.264 {}x{} gop {}, resize + crop to {}, one thread",
        cfg.clips, cfg.width, cfg.height, cfg.gop, cfg.size
    );
    let rows = bench_frames(&cfg, &dir).map_err(|e| anyhow!("bench frames: {e}"));
    let _ = std::fs::remove_dir_all(&dir);
    let rows = rows?;
    println!("{:>14} {:>13} {:>15} {:>16} {:>13}", "source frames", "ours ms/clip", "ffmpeg ms/clip", "ratio (goal>=1)", "decoded/clip");
    for r in &rows {
        println!(
            "{:>14} {:>13.1} {:>15.1} {:>16.2} {:>13.1}",
            r.source_frames,
            r.ours_s * 1e3,
            r.cli_s * 1e3,
            r.cli_s / r.ours_s,
            r.decoded_per_clip
        );
    }
    if let (Some(a), Some(b)) = (rows.first(), rows.last()) {
        println!("clip cost long/short: {:.2} (goal: flat, about 1)", b.ours_s / a.ours_s);
    }
    Ok(())
}
