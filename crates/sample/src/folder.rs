//! The sample folder: `opts.n` videos drawn, decoded and written as the `sample` stage's
//! output. Layout: `samples.zarr/` (latte-store ragged layout, array `samples` uint8
//! `[total_frames, H, W, 3]`, one entry per sample with id `NNNN` and its class label, the
//! settings in its attributes), `videos/NNNN.mp4` (H.264), `grid.mp4` and `grid.gif` (the first
//! `grid_n` samples tiled).
//!
//! Shape legend: B batch, F frames, C latent channels, h, w latent side, H, W pixel side.

use std::path::Path;

use latte_diffusion::{GaussianDiffusion, SeededRun};
use latte_store::{ArraySpec, GroupInfo, RaggedWriter, WindowRule};
use latte_vae::VaeFolder;
use latte_video::{tile_grid, write_gif, write_video, EncodeOptions, Frame};

use crate::error::{Context, SampleError};
use crate::options::SampleOptions;
use crate::source::{load_model, ModelSource};

/// Where a sampling run reports its progress. A caller that must stop the run early unwinds
/// from `step` (the loop holds no state that outlives the call).
pub trait SampleProgress {
    /// Sampling of `total_steps` denoising steps (all batches) starts; `line` says what.
    fn begin(&self, _total_steps: u64, _line: &str) {}
    /// One denoising step of one batch is done.
    fn step(&self) {}
}

/// Shows nothing.
pub struct Silent;

impl SampleProgress for Silent {}

/// What [`sample_to_dir`] wrote.
#[derive(Clone, Debug, PartialEq)]
pub struct SampleReport {
    pub n: usize,
    pub frames: usize,
    pub height: usize,
    pub width: usize,
    /// The class of each sample (class-conditional models only).
    pub labels: Option<Vec<usize>>,
}

/// Samples `opts.n` videos from the model of `source`, decodes them with the diffusers VAE
/// folder `vae_dir` and writes the sample folder into `out` (which must be empty).
pub fn sample_to_dir(
    source: &ModelSource,
    vae_dir: &Path,
    out: &Path,
    opts: &SampleOptions,
    progress: &dyn SampleProgress,
) -> Result<SampleReport, SampleError> {
    opts.validate()?;
    let device = latte_nn::device::device_from_name(&opts.device).context("parameter `device`")?;
    let (model, scale_factor) = load_model(source, opts.use_ema, &device)?;
    let model = model.with_compute_dtype(opts.compute_dtype()?);
    let folder = VaeFolder::open(vae_dir).with_context(|| format!("opening the VAE folder {}", vae_dir.display()))?;
    let vae = folder.load(&device).with_context(|| format!("loading the VAE in {}", vae_dir.display()))?;
    let cfg = model.config().clone();
    if folder.config.latent_channels != cfg.in_channels {
        return Err(SampleError::Mismatch(format!(
            "the VAE in {} has {} latent channels but the model in {} takes {}; give the VAE the model was trained on",
            vae_dir.display(),
            folder.config.latent_channels,
            source,
            cfg.in_channels
        )));
    }
    let side = cfg.input_size * folder.config.downsample_factor();
    let diffusion = GaussianDiffusion::create(&opts.steps.to_string())?;
    if opts.cfg_scale != 1.0 && cfg.num_classes.is_none() {
        return Err(SampleError::Options(format!(
            "parameter `cfg_scale` is {} but the model is unconditional; guidance needs a class-conditional model (use 1.0)",
            opts.cfg_scale
        )));
    }
    let run = SeededRun {
        method: opts.method,
        seed: opts.seed,
        sample_shape: [cfg.num_frames, cfg.in_channels, cfg.input_size, cfg.input_size],
        num_classes: cfg.num_classes,
    };
    let network = |x, t, labels: Option<&[usize]>| {
        model.guided_forward(x, t, labels, opts.cfg_scale).context("the network call (with `cfg_scale` ≠ 1: guidance)")
    };

    let batches = opts.n.div_ceil(opts.batch_size);
    progress.begin(
        (batches * diffusion.num_timesteps()) as u64,
        &format!(
            "sample: {} videos of {} frames ({side}×{side}), {:?} over {} steps, cfg_scale {}, {} weights, batches of {}",
            opts.n,
            cfg.num_frames,
            opts.method,
            diffusion.num_timesteps(),
            opts.cfg_scale,
            if opts.use_ema { "EMA" } else { "raw" },
            opts.batch_size
        ),
    );

    let videos_dir = out.join("videos");
    std::fs::create_dir_all(&videos_dir).with_context(|| format!("creating {}", videos_dir.display()))?;
    let mut store = RaggedWriter::create(&out.join("samples.zarr"))?;
    store.add_array::<u8>(&ArraySpec::new("samples", &[], &[side as u64, side as u64, 3]))?;
    let mut grid: Vec<Vec<Frame>> = Vec::new();
    let mut all_labels = cfg.num_classes.map(|_| Vec::with_capacity(opts.n));

    for batch in 0..batches {
        let rows = batch * opts.batch_size..((batch + 1) * opts.batch_size).min(opts.n);
        let (latents, labels) = diffusion.sample_rows(&run, rows.clone(), network, &device, |_| progress.step())?;
        for (j, video) in vae.decode_videos(latents, scale_factor, opts.decode_batch)?.into_iter().enumerate() {
            let i = rows.start + j;
            if (video.width, video.height) != (side, side) {
                return Err(SampleError::Mismatch(format!(
                    "the VAE decoded {}×{} frames; expected {side}×{side} from its config.json",
                    video.width, video.height
                )));
            }
            let video: Vec<Frame> = video.frames.into_iter().map(|data| Frame::new(side, side, data)).collect();
            let label = labels.as_ref().map(|l| l[j]);
            for frame in &video {
                store.append("samples", &frame.data)?;
            }
            store.end_video(&format!("{i:04}"), label.map(|l| l as u32))?;
            let path = videos_dir.join(format!("{i:04}.mp4"));
            write_video(&path, &video, EncodeOptions::h264(opts.fps)).with_context(|| format!("writing {}", path.display()))?;
            if let (Some(all), Some(l)) = (all_labels.as_mut(), label) {
                all.push(l);
            }
            if i < opts.grid_n {
                grid.push(video);
            }
        }
    }

    let (method, eta) = opts.method_name_eta();
    let mut extra = serde_json::Map::new();
    for (k, v) in [
        ("method", serde_json::json!(method)),
        ("eta", serde_json::json!(eta)),
        ("steps", serde_json::json!(diffusion.num_timesteps())),
        ("cfg_scale", serde_json::json!(opts.cfg_scale)),
        ("use_ema", serde_json::json!(opts.use_ema)),
        ("precision", serde_json::json!(opts.precision)),
        ("seed", serde_json::json!(opts.seed)),
        ("fps", serde_json::json!(opts.fps)),
        ("num_frames", serde_json::json!(cfg.num_frames)),
        ("scale_factor", serde_json::json!(scale_factor)),
        ("size", serde_json::json!(side)),
    ] {
        extra.insert(k.into(), v);
    }
    store.finish(GroupInfo {
        dataset: "samples".into(),
        num_classes: cfg.num_classes.map(|k| k as u32),
        window: WindowRule::Stride,
        flip: false,
        extra,
    })?;
    if !grid.is_empty() {
        let tiled = tile_grid(&grid);
        let mp4 = out.join("grid.mp4");
        write_video(&mp4, &tiled, EncodeOptions::h264(opts.fps)).with_context(|| format!("writing {}", mp4.display()))?;
        let gif = out.join("grid.gif");
        write_gif(&gif, &tiled, opts.fps).with_context(|| format!("writing {}", gif.display()))?;
    }
    Ok(SampleReport { n: opts.n, frames: cfg.num_frames, height: side, width: side, labels: all_labels })
}
