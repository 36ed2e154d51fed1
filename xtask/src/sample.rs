//! `cargo xtask sample --checkpoint TRAIN_DIR --vae VAE_DIR --n N --out DIR`: the `sample`
//! stage's procedure outside a pipeline (same code, same outputs, same seeds). `--checkpoint`
//! may also be a weights file (an official Latte `.pt`, or a reference-keyed `.safetensors`)
//! described by `--model`, `--num-classes`, `--num-frames`, `--latent-size`, `--scale-factor`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use latte_model::LatteConfig;
use latte_sample::{parse_method, sample_to_dir, vae_folder, ModelSource, SampleOptions, SampleProgress};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The output folder of a `train` stage (config.json, model.safetensors, model_raw.safetensors),
    /// or a Latte weights file (.pt official checkpoint, EMA preferred; .safetensors).
    #[arg(long)]
    checkpoint: PathBuf,
    /// With a weights file: the model preset `Latte-{S,B,L,XL}/{2,4,8}`.
    #[arg(long, default_value = "Latte-XL/2")]
    model: String,
    /// With a weights file: 0 = unconditional, 101 for UCF101.
    #[arg(long, default_value_t = 0)]
    num_classes: usize,
    /// With a weights file: frames per video.
    #[arg(long, default_value_t = 16)]
    num_frames: usize,
    /// With a weights file: latent side (32 for 256×256 with SD's VAE).
    #[arg(long, default_value_t = 32)]
    latent_size: usize,
    /// With a weights file: the latent scale factor the model was trained at.
    #[arg(long, default_value_t = latte_vae::SD_SCALING_FACTOR)]
    scale_factor: f64,
    /// A `vae_train` output (holding `vae/`) or a diffusers AutoencoderKL folder.
    #[arg(long)]
    vae: PathBuf,
    /// Number of videos.
    #[arg(long, default_value_t = 16)]
    n: usize,
    /// The folder to create (must not exist or be empty); written whole, then renamed.
    #[arg(long)]
    out: PathBuf,
    /// Videos denoised at once (bounds memory; does not change the results).
    #[arg(long, default_value_t = 2)]
    batch_size: usize,
    /// `ddpm` (the reference) or `ddim`.
    #[arg(long, default_value = "ddpm")]
    method: String,
    /// Uniformly respaced sampling steps (1-1000).
    #[arg(long, default_value_t = 250)]
    steps: usize,
    /// DDIM noise scale (0 = deterministic).
    #[arg(long, default_value_t = 0.0)]
    eta: f64,
    /// Classifier-free guidance scale; 1.0 = none (7.0 for UCF101 in the paper).
    #[arg(long, default_value_t = 1.0)]
    cfg_scale: f64,
    /// Sample with the raw weights (model_raw.safetensors) instead of the EMA ones.
    #[arg(long)]
    raw: bool,
    /// Sample i draws its class and noise from the ChaCha8 stream (seed, i).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Frame rate of the mp4 and GIF files.
    #[arg(long, default_value_t = 8)]
    fps: u32,
    /// Samples tiled into grid.mp4 / grid.gif.
    #[arg(long, default_value_t = 16)]
    grid_n: usize,
    /// Frames decoded by the VAE at once.
    #[arg(long, default_value_t = 16)]
    decode_batch: usize,
    /// Compute device: `cpu`, `wgpu`, `cuda`, `cuda:N` (CUDA needs a build with `--features cuda`).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// The network's compute dtype: `f32`, `f16` (the reference samples in fp16) or `bf16`.
    #[arg(long, default_value = "f32")]
    precision: String,
}

struct Bar(ProgressBar);

impl SampleProgress for Bar {
    fn begin(&self, total_steps: u64, line: &str) {
        self.0.set_length(total_steps);
        self.0.set_position(0);
        self.0.reset_eta();
        self.0.println(line);
    }
    fn step(&self) {
        self.0.inc(1);
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let opts = SampleOptions {
        n: args.n,
        batch_size: args.batch_size,
        method: parse_method(&args.method, args.eta).context("--method / --eta")?,
        steps: args.steps,
        cfg_scale: args.cfg_scale,
        use_ema: !args.raw,
        seed: args.seed,
        fps: args.fps,
        grid_n: args.grid_n,
        decode_batch: args.decode_batch,
        device: args.device.clone(),
        precision: args.precision.clone(),
    };
    // Flags carry the parameters' names with dashes; the messages name the parameter.
    opts.validate().context("checking the flags")?;
    let source = if args.checkpoint.is_dir() {
        ModelSource::TrainDir(args.checkpoint.clone())
    } else if args.checkpoint.is_file() {
        let mut config = LatteConfig::preset(&args.model).context("--model")?;
        config.num_classes = Some(args.num_classes).filter(|&k| k > 0);
        config.num_frames = args.num_frames;
        config.input_size = args.latent_size;
        config.validate().context("--model / --num-classes / --num-frames / --latent-size")?;
        if !(args.scale_factor.is_finite() && args.scale_factor > 0.0) {
            bail!("--scale-factor is {}; use a positive number (0.18215 for SD's VAE)", args.scale_factor);
        }
        ModelSource::File { path: args.checkpoint.clone(), config, scale_factor: args.scale_factor }
    } else {
        bail!("--checkpoint {} does not exist; give a train output folder or a Latte weights file", args.checkpoint.display());
    };
    let out = &args.out;
    if out.exists() && std::fs::read_dir(out).with_context(|| format!("reading {}", out.display()))?.next().is_some() {
        bail!("{} exists and is not empty; give a new folder to --out", out.display());
    }
    let name = out.file_name().with_context(|| format!("--out {} has no folder name", out.display()))?;
    let tmp = out.with_file_name(format!(".{}.tmp-{}", name.to_string_lossy(), std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;

    let bar = ProgressBar::new(0);
    bar.set_style(ProgressStyle::with_template("[{bar:30}] {pos}/{len} steps, ETA {eta} {msg}").expect("static template"));
    let started = Instant::now();
    let result = sample_to_dir(&source, &vae_folder(&args.vae), &tmp, &opts, &Bar(bar.clone()));
    bar.finish_and_clear();
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e.into());
        }
    };
    if out.exists() {
        std::fs::remove_dir(out).with_context(|| format!("replacing the empty folder {}", out.display()))?;
    }
    std::fs::rename(&tmp, out).with_context(|| format!("renaming {} to {}", tmp.display(), out.display()))?;
    println!(
        "{} videos of {} frames at {}×{} in {:.1} s: {}/videos/, grid.mp4, grid.gif, samples.zarr",
        report.n,
        report.frames,
        report.width,
        report.height,
        started.elapsed().as_secs_f64(),
        out.display()
    );
    Ok(())
}
