//! `cargo xtask bench train`: full training steps (data, forward, hybrid loss, backward, AdamW,
//! EMA) of the `latte-train` loop with the real `latte-model` network on burn's flex backend,
//! for a small config like the default pipeline's and a Latte-S/2-shaped one (32×32 latents,
//! a few frames). Prints the median step time, the achieved GFLOP/s and the peak memory.

use anyhow::{anyhow, Result};
use latte_model::LatteConfig;
use latte_stages::train::{bench_train, BenchCase};

#[derive(clap::Args)]
pub struct Args {
    /// Timed steps per configuration (after `--warmup` ones).
    #[arg(long, default_value_t = 3)]
    iters: usize,
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Worker threads for burn (rayon).
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Frames per clip of the Latte-S/2-shaped configuration.
    #[arg(long, default_value_t = 4)]
    s2_frames: usize,
}

pub fn run(args: Args) -> Result<()> {
    // rayon reads this when its global pool starts, i.e. at the first parallel op
    std::env::set_var("RAYON_NUM_THREADS", args.threads.to_string());
    let s2 = LatteConfig::preset("Latte-S/2")?;
    let cases = [
        BenchCase {
            name: "small (D 192, depth 6, 8 frames of 8×8 latents, batch 4)".into(),
            model: LatteConfig { input_size: 8, num_frames: 8, depth: 6, hidden_size: 192, num_heads: 3, ..s2.clone() },
            batch_size: 4,
        },
        BenchCase {
            name: format!("Latte-S/2 ({} frames of 32×32 latents, batch 1)", args.s2_frames),
            model: LatteConfig { num_frames: args.s2_frames, ..s2 },
            batch_size: 1,
        },
    ];
    let dir = std::env::temp_dir().join(format!("latte-bench-train-{}", std::process::id()));
    for case in &cases {
        let row = bench_train(case, args.warmup, args.iters, &dir).map_err(|e| anyhow!("bench train, {}: {e:#}", case.name))?;
        println!(
            "RESULT {}: params={} step_median_ms={:.1} GFLOP/step={:.2} GFLOP/s={:.1} peak_rss_MiB={:.0}",
            row.name,
            row.params,
            row.step_ms,
            row.gflop_per_step,
            row.gflop_per_step / (row.step_ms * 1e-3),
            row.peak_rss_mib
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    let has_torch = std::process::Command::new("python3").args(["-c", "import torch"]).output().is_ok_and(|o| o.status.success());
    if has_torch {
        println!(
            "PyTorch: importable, but the full-model PyTorch training-step comparison is not implemented yet; \
             `cargo xtask bench block` compares one block pair against PyTorch"
        );
    } else {
        println!(
            "PyTorch: not importable (python3 -c 'import torch' failed), no ratio. Install a CPU build with \
             `pip install torch --index-url https://download.pytorch.org/whl/cpu`"
        );
    }
    Ok(())
}
