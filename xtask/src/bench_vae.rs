//! `cargo xtask bench vae`: encode throughput (frames/s) of the default small VAE and of a
//! full-size Stable Diffusion kl-f8 config with random weights (the same code path; only the
//! weights differ from the real SD VAE).

use std::time::Instant;

use latte_vae::burn::module::Module;
use latte_vae::burn::tensor::{Device, Tensor, TensorData};
use latte_vae::{AutoencoderKL, VaeConfig};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Frame side for the small VAE (the default pipeline's frames are 64).
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Frames per encode call for the small VAE.
    #[arg(long, default_value_t = 16)]
    frames: usize,
    /// Frame side for the SD config (the paper's 256).
    #[arg(long, default_value_t = 256)]
    sd_size: usize,
    /// Frames per encode call for the SD config; 0 skips it.
    #[arg(long, default_value_t = 1)]
    sd_frames: usize,
    /// Timed repetitions after one warm-up call (the median is reported).
    #[arg(long, default_value_t = 3)]
    iters: usize,
}

/// A smooth deterministic image batch in [-1, 1].
fn input(n: usize, s: usize, device: &Device) -> Tensor<4> {
    let values: Vec<f32> = (0..n * 3 * s * s)
        .map(|i| {
            let (x, y, c) = ((i % s) as f32, ((i / s) % s) as f32, (i / (s * s)) as f32);
            (0.3 * y + 0.5 * x + 1.1 * c).sin() * (0.2 * y - 0.15 * x).cos()
        })
        .collect();
    Tensor::from_data(TensorData::new(values, [n, 3, s, s]), device)
}

fn bench(name: &str, cfg: &VaeConfig, n: usize, s: usize, iters: usize) -> anyhow::Result<()> {
    let device = Device::default();
    let vae = AutoencoderKL::init(cfg, 0, &device)?;
    let x = input(n, s, &device);
    let mut times = Vec::with_capacity(iters);
    for i in 0..=iters {
        let started = Instant::now();
        let posterior = vae.encode(x.clone());
        let _ = posterior.mean.into_data();
        if i > 0 {
            times.push(started.elapsed().as_secs_f64());
        }
    }
    times.sort_by(f64::total_cmp);
    let t = times[times.len() / 2];
    let f = cfg.downsample_factor();
    println!(
        "{name:<28} {:>11} params  {n:>3}×3×{s}×{s} → {}×{}×{}  {:>8.1} ms/call  {:>8.2} frames/s",
        vae.num_params(),
        cfg.latent_channels,
        s / f,
        s / f,
        t * 1e3,
        n as f64 / t
    );
    Ok(())
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let iters = args.iters.max(1);
    println!("VAE encode throughput (burn {:?}, median of {iters} after 1 warm-up)", Device::default());
    let small = VaeConfig::new(vec![32, 32, 64, 64], 1, 8, 4);
    bench("small (vae_train default)", &small, args.frames.max(1), args.size, iters)?;
    if args.sd_frames > 0 {
        bench("SD kl-f8 (random weights)", &VaeConfig::stable_diffusion(), args.sd_frames, args.sd_size, iters)?;
    }
    Ok(())
}
