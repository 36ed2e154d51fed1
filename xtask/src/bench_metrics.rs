//! `cargo xtask bench metrics`: times the Fréchet distance at FID width (d = 2048) and I3D /
//! InceptionV3 throughput on this machine. The networks need their weights
//! (`cargo xtask weights fetch i3d|inception`); a missing file skips that line, saying so.

use std::path::PathBuf;
use std::time::Instant;

use latte_metrics::burn::tensor::Device;
use latte_metrics::frechet::{frechet_distance, Covariance, FeatureStats};
use latte_metrics::network::{Net, Network};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Feature width of the synthetic Fréchet-distance benchmark.
    #[arg(long, default_value_t = 2048)]
    dim: usize,
    /// Samples per set of the synthetic Fréchet-distance benchmark.
    #[arg(long, default_value_t = 4096)]
    samples: usize,
    /// Clips (I3D) and images (InceptionV3) timed after one warm-up.
    #[arg(long, default_value_t = 4)]
    iters: usize,
    /// Weights folder (default `$LATTE_WEIGHTS_DIR`, else `.latte/weights`).
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// Deterministic pseudo-random features (SplitMix64), correlated through a running sum so that
/// the covariance is not the identity.
fn synthetic(n: usize, d: usize, seed: u64, shift: f64) -> FeatureStats {
    let mut state = seed;
    let mut next = || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64 - 0.5
    };
    let mut stats = FeatureStats::new(d);
    let mut row = vec![0.0; d];
    for _ in 0..n {
        let mut acc = 0.0;
        for v in row.iter_mut() {
            acc = 0.7 * acc + next();
            *v = acc + shift;
        }
        stats.push(&row).expect("finite synthetic features");
    }
    stats
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let t0 = Instant::now();
    let a = synthetic(args.samples, args.dim, 1, 0.0).gaussian(Covariance::Population)?;
    let b = synthetic(args.samples, args.dim, 2, 0.05).gaussian(Covariance::Population)?;
    let stats_s = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let fd = frechet_distance(&a, &b)?;
    println!(
        "frechet: d={} N={} per set: statistics {:.2} s, distance {:.2} s (FD {fd:.6})",
        args.dim,
        args.samples,
        stats_s,
        t1.elapsed().as_secs_f64()
    );

    let dir = args.dir.unwrap_or_else(crate::weights::default_dir);
    let device = Device::flex();
    // (network, input frames, side, what one input is)
    let lines = [(Net::I3d, 16, 224, "clips/s (16×224×224, batch 1"), (Net::Inception, 1, 256, "images/s (256→299, batch 1")];
    for (net, frames, side, unit) in lines {
        let spec = latte_metrics::weights::spec(if net == Net::I3d { "i3d" } else { "inception" }).expect("known networks");
        let path = dir.join(spec.converted);
        if !path.exists() {
            println!("{}: skipped, no weights at {} (cargo xtask weights fetch {})", spec.net, path.display(), spec.net);
            continue;
        }
        let model = Network::load(net, &path, &device)?;
        let input: Vec<u8> = (0..frames * side * side * 3).map(|i| (i * 7 % 251) as u8).collect();
        let s = timed(args.iters, || Ok(model.embed(&input, frames, side, side, &device).map(|_| ())?))?;
        println!("{}: {:.3} {unit}, {} inputs in {s:.2} s)", spec.net, args.iters as f64 / s, args.iters);
    }
    Ok(())
}

/// Seconds for `iters` calls of `run`, after one untimed warm-up call.
fn timed(iters: usize, run: impl Fn() -> anyhow::Result<()>) -> anyhow::Result<f64> {
    run()?;
    let t = Instant::now();
    for _ in 0..iters {
        run()?;
    }
    Ok(t.elapsed().as_secs_f64())
}
