//! `cargo xtask bench frames`: the frames stage's clip path (open, seek to the keyframe
//! before a random window, decode 16 frames of it, torch-bilinear resize + crop) against the
//! `ffmpeg` command line decoding and scaling the same windows, on short and long sources.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use latte_video::synthetic::{render, SyntheticConfig};
use latte_video::{write_video, EncodeOptions, SpatialTransform, VideoReader, WindowRule, WindowSpec};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

#[derive(Clone, Debug)]
pub struct BenchConfig {
    /// Source lengths to compare (frames).
    pub lengths: Vec<usize>,
    /// Clips (windows) drawn per source length.
    pub clips: usize,
    pub width: usize,
    pub height: usize,
    pub size: usize,
    pub fps: u32,
    /// Keyframe interval of the sources.
    pub gop: u32,
}

impl Default for BenchConfig {
    fn default() -> Self {
        Self { lengths: vec![64, 640], clips: 8, width: 320, height: 240, size: 256, fps: 25, gop: 50 }
    }
}

#[derive(Clone, Debug)]
pub struct BenchRow {
    pub source_frames: usize,
    /// Seconds per clip, this crate's path (one thread).
    pub ours_s: f64,
    /// Seconds per clip, one `ffmpeg -threads 1` process per clip.
    pub cli_s: f64,
    /// Frames decoded per clip by this crate's path.
    pub decoded_per_clip: f64,
}

/// Runs the benchmark in `work_dir` (source videos are written there).
pub fn bench_frames(cfg: &BenchConfig, work_dir: &Path) -> Result<Vec<BenchRow>, String> {
    Command::new("ffmpeg")
        .arg("-version")
        .stdout(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run `ffmpeg` ({e}); install Debian's ffmpeg package"))?;
    let spec = WindowSpec::default();
    let t = SpatialTransform::ResizeThenCrop(cfg.size);
    let mut rows = Vec::new();
    for &len in &cfg.lengths {
        let path = work_dir.join(format!("source_{len}.mp4"));
        let sc =
            SyntheticConfig { min_frames: len, max_frames: len, width: cfg.width, height: cfg.height, fps: cfg.fps, ..Default::default() };
        let frames = render(&sc, 0).frames;
        write_video(&path, &frames, EncodeOptions { gop: cfg.gop, ..EncodeOptions::h264(cfg.fps) }).map_err(|e| e.to_string())?;
        let mut rng = ChaCha8Rng::seed_from_u64(len as u64);
        let windows: Vec<Vec<usize>> = (0..cfg.clips)
            .map(|_| spec.sample(len, WindowRule::Linspace, &mut rng))
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?;

        let start = Instant::now();
        let mut decoded = 0;
        for w in &windows {
            let mut r = VideoReader::open(&path).map_err(|e| e.to_string())?;
            let clip = r.read_indices(w).map_err(|e| e.to_string())?;
            for f in &clip {
                std::hint::black_box(t.apply(f).map_err(|e| e.to_string())?);
            }
            decoded += r.frames_decoded();
        }
        let ours_s = start.elapsed().as_secs_f64() / cfg.clips as f64;

        let start = Instant::now();
        for w in &windows {
            let ss = w[0] as f64 / cfg.fps as f64;
            let vf = format!("select='not(mod(n\\,3))',scale=-2:{}:flags=bilinear,crop={}:{}", cfg.size, cfg.size, cfg.size);
            let out = Command::new("ffmpeg")
                .args(["-v", "error", "-threads", "1", "-ss", &format!("{ss:.6}"), "-i"])
                .arg(&path)
                .args(["-frames:v", &spec.num_frames.to_string(), "-vf", &vf, "-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
                .stderr(Stdio::null())
                .output()
                .map_err(|e| e.to_string())?;
            let want = spec.num_frames * cfg.size * cfg.size * 3;
            if !out.status.success() || out.stdout.len() != want {
                return Err(format!("ffmpeg gave {} bytes for a clip, expected {want}", out.stdout.len()));
            }
        }
        let cli_s = start.elapsed().as_secs_f64() / cfg.clips as f64;
        rows.push(BenchRow { source_frames: len, ours_s, cli_s, decoded_per_clip: decoded as f64 / cfg.clips as f64 });
    }
    Ok(rows)
}
