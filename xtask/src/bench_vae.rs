//! `cargo xtask bench vae`: encode throughput (frames/s) of the default small VAE and of a
//! full-size Stable Diffusion kl-f8 config with random weights (the same code path; only the
//! weights differ from the real SD VAE), and reading latents from the Zarr store against
//! reading the same bytes from one raw file per video (the baseline), in the same run.

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
    /// Videos in the latent read benchmark (16 frames of [2, 4, 32, 32] f32 each, as the
    /// paper's latents); 0 skips it.
    #[arg(long, default_value_t = 256)]
    read_videos: usize,
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
    let device = Device::flex();
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
    println!("VAE encode throughput (burn {:?}, median of {iters} after 1 warm-up)", Device::flex());
    let small = VaeConfig::new(vec![32, 32, 64, 64], 1, 8, 4);
    bench("small (vae_train default)", &small, args.frames.max(1), args.size, iters)?;
    if args.sd_frames > 0 {
        bench("SD kl-f8 (random weights)", &VaeConfig::stable_diffusion(), args.sd_frames, args.sd_size, iters)?;
    }
    if args.read_videos > 0 {
        read_bench(args.read_videos)?;
    }
    Ok(())
}

/// Writes `videos` videos of latents (`mean`, [2, 16, 4, 32, 32] f32 each) to a ragged Zarr
/// store and, as the baseline, to one raw little-endian file per video; then reads every video
/// once in a seeded random order from each and prints MB/s and the ratio. Warm page cache for
/// both (the files were just written), so this measures decoding and store overhead.
fn read_bench(videos: usize) -> anyhow::Result<()> {
    use latte_store::{ArraySpec, GroupInfo, RaggedReader, RaggedWriter, WindowRule};
    use rand::seq::SliceRandom;
    use rand::SeedableRng;

    const FRAMES: usize = 16;
    let frame_shape = [4u64, 32, 32];
    let per_video = 2 * FRAMES * 4 * 32 * 32;
    let dir = tempfile::tempdir()?;
    let store = dir.path().join("latents.zarr");
    let raw = dir.path().join("raw");
    std::fs::create_dir(&raw)?;
    let mut writer = RaggedWriter::create(&store)?;
    writer.add_array::<f32>(&ArraySpec::new("mean", &[2], &frame_shape))?;
    for v in 0..videos {
        // Latent-like values: a smooth field plus per-video variation (compresses a little).
        let data: Vec<f32> =
            (0..per_video).map(|i| ((i % 1024) as f32 * 0.01 + v as f32).sin() * 0.8 + ((i * 7919 + v) % 101) as f32 * 0.002).collect();
        writer.append::<f32>("mean", &data)?;
        writer.end_video(&format!("v{v:05}"), None)?;
        let bytes: Vec<u8> = data.iter().flat_map(|x| x.to_le_bytes()).collect();
        std::fs::write(raw.join(format!("v{v:05}.bin")), bytes)?;
    }
    writer.finish(GroupInfo {
        dataset: "bench".into(),
        num_classes: None,
        window: WindowRule::Linspace,
        flip: true,
        extra: Default::default(),
    })?;

    let mut order: Vec<usize> = (0..videos).collect();
    order.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(0));
    let mb = (videos * per_video * 4) as f64 / 1e6;

    let t = Instant::now();
    let mut check = 0.0f64;
    for &v in &order {
        let bytes = std::fs::read(raw.join(format!("v{v:05}.bin")))?;
        let vals: Vec<f32> = bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        check += vals[0] as f64;
    }
    let raw_s = t.elapsed().as_secs_f64();

    let reader = RaggedReader::open(&store)?;
    let array = reader.array::<f32>("mean")?;
    let t = Instant::now();
    let mut check_zarr = 0.0f64;
    for &v in &order {
        // Both orientations of the video, as the train stage may draw either.
        let a = array.read_video(&[0], v)?;
        let b = array.read_video(&[1], v)?;
        anyhow::ensure!(a.len() + b.len() == per_video, "video {v}: read {} values, expected {per_video}", a.len() + b.len());
        check_zarr += a[0] as f64;
    }
    let zarr_s = t.elapsed().as_secs_f64();
    anyhow::ensure!((check - check_zarr).abs() < 1e-6, "the Zarr store and the raw files disagree");
    println!(
        "latent reads, {videos} videos × {:.2} MB: raw files {:.0} MB/s, Zarr store {:.0} MB/s, Zarr ÷ raw throughput = {:.2}",
        (per_video * 4) as f64 / 1e6,
        mb / raw_s,
        mb / zarr_s,
        raw_s / zarr_s
    );
    Ok(())
}
