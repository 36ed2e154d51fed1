//! `sample`: draws videos from a trained Latte as the reference's `sample/sample_ddp.py` does
//! (spec latte-reference §5.1), decodes them with the VAE and writes them out.
//!
//! Inputs: `train` (`config.json` + `model.safetensors` / `model_raw.safetensors`), or the
//! `checkpoint` parameter naming a weights file (an official `.pt`) with `model`,
//! `num_classes`, `num_frames`, `latent_size`, `scale_factor`; and `vae` (a `vae_train`
//! output), or the `weights` parameter naming a diffusers folder. Output:
//! `samples.zarr/` (latte-store ragged layout, array `samples` uint8 `[total_frames, H, W, 3]`,
//! one entry per sample with id `NNNN` and its class label), `videos/NNNN.mp4` (H.264),
//! `grid.mp4` and `grid.gif` (the first `grid_n` samples tiled).
//!
//! Sampling: DDPM (`p_sample_loop`) or DDIM over uniformly respaced steps; with a
//! class-conditional model and `cfg_scale ≠ 1` the batch is doubled with the null class and
//! guided by `Latte::forward_with_cfg` (§1.12), and the conditional half is kept. Only the
//! first half of the doubled x ever reaches the network, so stepping the B kept rows alone
//! gives the reference's kept half exactly. [ours] The reference guides only when
//! `cfg_scale > 1` and otherwise calls the network with `y = None`, which fails for a
//! class-conditional model; here `cfg_scale = 1` is the plain class-conditional forward and
//! `0 ≤ cfg_scale < 1` interpolates toward the unconditional output. A `cfg_scale ≠ 1` on an
//! unconditional model is an error rather than silently ignored. Everything runs in float32
//! (the reference's `use_fp16` is not reproduced).
//!
//! **Invariant:** every random draw of sample i (its class, its initial noise, each step's
//! noise, in that order) comes from the ChaCha8 stream `(seed, i)`, so a sample does not depend
//! on the batch it was drawn in, on `n`, or on the other samples.
//!
//! Shape legend: B batch, F frames, C latent channels, h, w latent side, H, W pixel side.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use latte_diffusion::{GaussianDiffusion, Method, SeededRun};
use latte_engine::{InputSpec, ParamSpec, ParamType, Params, Progress, Stage, StageContext, StageError};
use latte_model::burn::tensor::Device;
use latte_model::{Latte, LatteConfig};
use latte_store::{ArraySpec, GroupInfo, RaggedWriter, WindowRule};
use latte_train::{TrainOutputConfig, TRAIN_OUTPUT_CONFIG};
use latte_vae::VaeFolder;
use latte_video::{tile_grid, write_gif, write_video, EncodeOptions, Frame};

pub struct Sample;

const PARAMS: &[ParamSpec] = &[
    ParamSpec { name: "n", ty: ParamType::Int, default: Some("16"), help: "number of videos (2048 for FVD in the paper)" },
    ParamSpec { name: "batch_size", ty: ParamType::Int, default: Some("2"), help: "videos denoised at once (bounds memory; does not change the results)" },
    ParamSpec { name: "method", ty: ParamType::Str, default: Some("\"ddpm\""), help: "\"ddpm\" (ancestral, the reference) or \"ddim\"" },
    ParamSpec { name: "steps", ty: ParamType::Int, default: Some("250"), help: "uniformly respaced sampling steps (1-1000)" },
    ParamSpec { name: "eta", ty: ParamType::Float, default: Some("0.0"), help: "DDIM noise scale (0 = deterministic)" },
    ParamSpec { name: "cfg_scale", ty: ParamType::Float, default: Some("1.0"), help: "classifier-free guidance scale; 1.0 = none (7.0 for UCF101 in the paper)" },
    ParamSpec { name: "use_ema", ty: ParamType::Bool, default: Some("true"), help: "sample with the EMA weights (model.safetensors); false = the raw weights" },
    ParamSpec { name: "seed", ty: ParamType::Int, default: Some("0"), help: "sample i draws its class and noise from the ChaCha8 stream (seed, i)" },
    ParamSpec { name: "fps", ty: ParamType::Int, default: Some("8"), help: "frame rate of the written mp4 and GIF files" },
    ParamSpec { name: "grid_n", ty: ParamType::Int, default: Some("16"), help: "samples tiled into grid.mp4 / grid.gif (the first ones)" },
    ParamSpec { name: "decode_batch", ty: ParamType::Int, default: Some("16"), help: "frames decoded by the VAE at once (bounds memory)" },
    crate::DEVICE,
    ParamSpec {
        name: "precision",
        ty: ParamType::Str,
        default: Some("\"f32\""),
        help: "compute dtype of the network: \"f32\", \"f16\" (the reference samples in fp16) or \"bf16\"; the diffusion arithmetic stays f32",
    },
    ParamSpec {
        name: "weights",
        ty: ParamType::Path,
        default: Some("\"\""),
        help: "a diffusers AutoencoderKL folder (e.g. Stable Diffusion's sd-vae-ft-ema); empty = the `vae` input",
    },
    ParamSpec {
        name: "checkpoint",
        ty: ParamType::Path,
        default: Some("\"\""),
        help: "a Latte weights file instead of the `train` input: an official checkpoint (.pt, EMA weights) or a .safetensors under the reference's key names",
    },
    ParamSpec { name: "model", ty: ParamType::Str, default: Some("\"Latte-XL/2\""), help: "with `checkpoint`: the model preset `Latte-{S,B,L,XL}/{2,4,8}`" },
    ParamSpec { name: "num_classes", ty: ParamType::Int, default: Some("0"), help: "with `checkpoint`: 0 = unconditional, 101 for UCF101" },
    ParamSpec { name: "num_frames", ty: ParamType::Int, default: Some("16"), help: "with `checkpoint`: frames per video" },
    ParamSpec { name: "latent_size", ty: ParamType::Int, default: Some("32"), help: "with `checkpoint`: latent side (32 for 256×256 with SD's VAE)" },
    ParamSpec { name: "scale_factor", ty: ParamType::Float, default: Some("0.18215"), help: "with `checkpoint`: the latent scale factor the model was trained at" },
];

const INPUTS: &[InputSpec] = &[
    InputSpec {
        name: "train",
        required: false,
        help: "the `train` stage (config.json, model.safetensors); not needed when `checkpoint` is set",
    },
    InputSpec { name: "vae", required: false, help: "a `vae_train` stage (vae/); not needed when `weights` is set" },
];

/// The `method` and `eta` parameters as a reverse process.
pub fn parse_method(name: &str, eta: f64) -> anyhow::Result<Method> {
    if !(eta.is_finite() && eta >= 0.0) {
        bail!("parameter `eta` is {eta}; use a number >= 0 (0 = deterministic DDIM)");
    }
    match name {
        "ddpm" => Ok(Method::Ddpm),
        "ddim" => Ok(Method::Ddim { eta }),
        other => bail!("parameter `method` is \"{other}\"; use \"ddpm\" or \"ddim\""),
    }
}

/// Everything that decides what is sampled and how it is written.
#[derive(Clone, Debug)]
pub struct SampleOptions {
    pub n: usize,
    pub batch_size: usize,
    pub method: Method,
    /// Uniformly respaced steps out of the 1000 of training.
    pub steps: usize,
    pub cfg_scale: f64,
    pub use_ema: bool,
    pub seed: u64,
    pub fps: u32,
    pub grid_n: usize,
    pub decode_batch: usize,
    /// A device name (`latte_nn::device::DeviceSpec`).
    pub device: String,
    /// `f32`, `f16` or `bf16`: the network's compute dtype.
    pub precision: String,
}

/// The precisions sampling accepts.
pub const PRECISIONS: &[&str] = &["f32", "f16", "bf16"];

impl SampleOptions {
    pub fn validate(&self) -> anyhow::Result<()> {
        for (key, v) in [("n", self.n), ("batch_size", self.batch_size), ("decode_batch", self.decode_batch), ("fps", self.fps as usize)] {
            if v == 0 {
                bail!("parameter `{key}` must be at least 1");
            }
        }
        if !(1..=1000).contains(&self.steps) {
            bail!("parameter `steps` is {}; use 1 to 1000 (the reference samples with 250)", self.steps);
        }
        if let Method::Ddim { eta } = self.method {
            if !(eta.is_finite() && eta >= 0.0) {
                bail!("parameter `eta` is {eta}; use a number >= 0 (0 = deterministic DDIM)");
            }
        }
        if !(self.cfg_scale.is_finite() && self.cfg_scale >= 0.0) {
            bail!("parameter `cfg_scale` is {}; use a number >= 0 (1.0 = no guidance)", self.cfg_scale);
        }
        if self.fps > 1000 {
            bail!("parameter `fps` is {}; use 1 to 1000", self.fps);
        }
        latte_nn::device::DeviceSpec::parse(&self.device).context("parameter `device`")?;
        self.compute_dtype()?;
        Ok(())
    }

    /// The network's compute dtype (`None`: f32).
    pub fn compute_dtype(&self) -> anyhow::Result<Option<latte_nn::burn::tensor::FloatDType>> {
        latte_nn::device::compute_dtype(&self.precision)
            .ok_or_else(|| anyhow!("parameter `precision` is \"{}\"; use \"f32\", \"f16\" or \"bf16\"", self.precision))
    }

    pub(crate) fn from_params(p: &Params) -> anyhow::Result<Self> {
        let e = |e: StageError| anyhow!("{e}");
        let fps = p.usize("fps").map_err(e)?;
        Ok(SampleOptions {
            n: p.usize("n").map_err(e)?,
            batch_size: p.usize("batch_size").map_err(e)?,
            method: parse_method(p.str("method").map_err(e)?, p.float("eta").map_err(e)?)?,
            steps: p.usize("steps").map_err(e)?,
            cfg_scale: p.float("cfg_scale").map_err(e)?,
            use_ema: p.bool("use_ema").map_err(e)?,
            seed: p.u64("seed").map_err(e)?,
            fps: u32::try_from(fps).map_err(|_| anyhow!("parameter `fps` is {fps}; use 1 to 1000"))?,
            grid_n: p.usize("grid_n").map_err(e)?,
            decode_batch: p.usize("decode_batch").map_err(e)?,
            device: p.str("device").map_err(e)?.to_owned(),
            precision: p.str("precision").map_err(e)?.to_owned(),
        })
    }
}

impl Stage for Sample {
    fn kind(&self) -> &'static str {
        "sample"
    }

    fn version(&self) -> &'static str {
        // 2: H.264 without x264's lookahead (byte-reproducible encodes)
        // 3: `device` and `precision` parameters; samples.zarr records the precision
        "3"
    }

    fn params(&self) -> &'static [ParamSpec] {
        PARAMS
    }

    fn inputs(&self) -> &'static [InputSpec] {
        INPUTS
    }

    fn validate(&self, params: &Params) -> Result<(), String> {
        let opts = SampleOptions::from_params(params).map_err(|e| e.to_string())?;
        opts.validate().map_err(|e| e.to_string())?;
        file_config(params).map(|_| ()).map_err(|e| format!("{e:#}"))
    }

    fn run(&self, ctx: &StageContext<'_>) -> Result<(), StageError> {
        let opts = SampleOptions::from_params(ctx.params)?;
        let source = model_source(ctx)?;
        let vae = vae_dir(ctx)?;
        // Stops between two denoising steps once the run is cancelled.
        let progress = crate::cancel::Stopping { inner: ctx.progress, cancel: ctx.cancel };
        let report = crate::cancel::stoppable(|| sample_to_dir(&source, &vae, ctx.out, &opts, &progress))?.map_err(crate::stage_error)?;
        ctx.progress.log(&format!("sample: {} videos of {} frames at {}×{}", report.n, report.frames, report.height, report.width));
        Ok(())
    }
}

/// The model configuration the `checkpoint` parameter's file is read with.
fn file_config(p: &Params) -> anyhow::Result<(LatteConfig, f64)> {
    let e = |e: StageError| anyhow!("{e}");
    let mut cfg = LatteConfig::preset(p.str("model").map_err(e)?).context("parameter `model`")?;
    cfg.num_classes = Some(p.usize("num_classes").map_err(e)?).filter(|&k| k > 0);
    cfg.num_frames = p.usize("num_frames").map_err(e)?;
    cfg.input_size = p.usize("latent_size").map_err(e)?;
    cfg.validate().context("parameters `model`, `num_classes`, `num_frames`, `latent_size`")?;
    let scale = p.float("scale_factor").map_err(e)?;
    if !(scale.is_finite() && scale > 0.0) {
        bail!("parameter `scale_factor` is {scale}; use a positive number (0.18215 for SD's VAE)");
    }
    Ok((cfg, scale))
}

fn model_source(ctx: &StageContext<'_>) -> anyhow::Result<ModelSource> {
    if let Some(path) = ctx.params.opt_str("checkpoint").map_err(|e| anyhow!("{e}"))? {
        let (config, scale_factor) = file_config(ctx.params)?;
        return Ok(ModelSource::File { path: PathBuf::from(path), config, scale_factor });
    }
    match ctx.inputs.get("train") {
        Some(dir) => Ok(ModelSource::TrainDir(dir.clone())),
        None => {
            bail!("stage `{}` needs a model: bind the `train` input to a train stage or set `checkpoint` to a Latte weights file", ctx.name)
        }
    }
}

fn vae_dir(ctx: &StageContext<'_>) -> anyhow::Result<PathBuf> {
    if let Some(path) = ctx.params.opt_str("weights").map_err(|e| anyhow!("{e}"))? {
        return Ok(PathBuf::from(path));
    }
    match ctx.inputs.get("vae") {
        Some(dir) => Ok(vae_folder(dir)),
        None => bail!(
            "stage `{}` needs a VAE: bind the `vae` input to a vae_train stage or set `weights` to a diffusers AutoencoderKL folder",
            ctx.name
        ),
    }
}

/// A `vae_train` output holds the diffusers folder as `vae/`; anything else may be the folder.
pub fn vae_folder(dir: &Path) -> PathBuf {
    if dir.join("vae").is_dir() {
        dir.join("vae")
    } else {
        dir.to_owned()
    }
}

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

/// Where the model's weights and configuration come from.
#[derive(Clone, Debug)]
pub enum ModelSource {
    /// The output folder of a `train` stage (`config.json`, `model.safetensors`,
    /// `model_raw.safetensors`).
    TrainDir(PathBuf),
    /// A checkpoint folder of a training run (`state.json`, `ema.bpk`, `model.bpk`).
    Checkpoint(PathBuf),
    /// A weights file with the configuration it was trained with: an official Latte checkpoint
    /// (`.pt`/`.pth`, EMA weights when present, as the reference's `find_model`) or a
    /// `.safetensors` under the reference's key names.
    File { path: PathBuf, config: LatteConfig, scale_factor: f64 },
}

impl std::fmt::Display for ModelSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ModelSource::TrainDir(p) | ModelSource::Checkpoint(p) | ModelSource::File { path: p, .. } => write!(f, "{}", p.display()),
        }
    }
}

/// The EMA (`use_ema`) or raw weights of `source` on `device`, and the latent scale factor the
/// model was trained at.
pub fn load_model(source: &ModelSource, use_ema: bool, device: &Device) -> anyhow::Result<(Latte, f64)> {
    match source {
        ModelSource::TrainDir(dir) => {
            let config = TrainOutputConfig::<LatteConfig>::read(dir)?;
            let mut model = Latte::new(&config.model, device, 0)
                .with_context(|| format!("{}: key `model`", dir.join(TRAIN_OUTPUT_CONFIG).display()))?;
            let weights = dir.join(if use_ema { "model.safetensors" } else { "model_raw.safetensors" });
            model.load_safetensors(&weights).with_context(|| format!("loading the weights {}", weights.display()))?;
            Ok((model, config.latents.scale_factor))
        }
        ModelSource::Checkpoint(dir) => {
            let state = latte_train::checkpoint::read_state(dir)?;
            let config: LatteConfig = serde_json::from_value(state.model.clone())
                .with_context(|| format!("{}: `model` is not a Latte configuration", dir.join("state.json").display()))?;
            let model = latte_train::checkpoint::load_weights(dir, Latte::new(&config, device, 0)?, use_ema)?;
            Ok((model, state.config.scale_factor))
        }
        ModelSource::File { path, config, scale_factor } => {
            if !use_ema {
                bail!("`use_ema = false` needs the `train` input (model_raw.safetensors); a checkpoint file gives its EMA weights");
            }
            let mut model = Latte::new(config, device, 0)?;
            model.load_weights_file(path).with_context(|| {
                format!("loading the Latte weights {} (check `model`, `num_classes`, `num_frames`, `latent_size`)", path.display())
            })?;
            Ok((model, *scale_factor))
        }
    }
}

/// Samples `opts.n` videos from the model of `source`, decodes them with the diffusers VAE
/// folder `vae_dir` and writes the stage's outputs into `out` (which must be empty).
pub fn sample_to_dir(
    source: &ModelSource,
    vae_dir: &Path,
    out: &Path,
    opts: &SampleOptions,
    progress: &dyn Progress,
) -> anyhow::Result<SampleReport> {
    opts.validate()?;
    let device = latte_nn::device::device_from_name(&opts.device).context("parameter `device`")?;
    let (model, scale_factor) = load_model(source, opts.use_ema, &device)?;
    let model = model.with_compute_dtype(opts.compute_dtype()?);
    let folder = VaeFolder::open(vae_dir).with_context(|| format!("opening the VAE folder {}", vae_dir.display()))?;
    let vae = folder.load(&device).with_context(|| format!("loading the VAE in {}", vae_dir.display()))?;
    let cfg = model.config().clone();
    if folder.config.latent_channels != cfg.in_channels {
        bail!(
            "the VAE in {} has {} latent channels but the model in {} takes {}; give the VAE the model was trained on",
            vae_dir.display(),
            folder.config.latent_channels,
            source,
            cfg.in_channels
        );
    }
    let side = cfg.input_size * folder.config.downsample_factor();
    let diffusion = GaussianDiffusion::create(&opts.steps.to_string())?;
    if opts.cfg_scale != 1.0 && cfg.num_classes.is_none() {
        bail!(
            "parameter `cfg_scale` is {} but the model is unconditional; guidance needs a class-conditional model (use 1.0)",
            opts.cfg_scale
        );
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
    progress.set_length((batches * diffusion.num_timesteps()) as u64);
    progress.log(&format!(
        "sample: {} videos of {} frames ({side}×{side}), {:?} over {} steps, cfg_scale {}, {} weights, batches of {}",
        opts.n,
        cfg.num_frames,
        opts.method,
        diffusion.num_timesteps(),
        opts.cfg_scale,
        if opts.use_ema { "EMA" } else { "raw" },
        opts.batch_size
    ));

    let videos_dir = out.join("videos");
    std::fs::create_dir_all(&videos_dir).with_context(|| format!("creating {}", videos_dir.display()))?;
    let store_dir = out.join("samples.zarr");
    let mut store = RaggedWriter::create(&store_dir)?;
    store.add_array::<u8>(&ArraySpec::new("samples", &[], &[side as u64, side as u64, 3]))?;
    let mut grid: Vec<Vec<Frame>> = Vec::new();
    let mut all_labels = cfg.num_classes.map(|_| Vec::with_capacity(opts.n));

    for batch in 0..batches {
        let rows = batch * opts.batch_size..((batch + 1) * opts.batch_size).min(opts.n);
        let (latents, labels) = diffusion.sample_rows(&run, rows.clone(), network, &device, |_| progress.inc(1))?;
        for (j, video) in vae.decode_videos(latents, scale_factor, opts.decode_batch)?.into_iter().enumerate() {
            let i = rows.start + j;
            if (video.width, video.height) != (side, side) {
                bail!("the VAE decoded {}×{} frames; expected {side}×{side} from its config.json", video.width, video.height);
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

    let mut extra = serde_json::Map::new();
    for (k, v) in [
        (
            "method",
            serde_json::json!(match opts.method {
                Method::Ddpm => "ddpm",
                Method::Ddim { .. } => "ddim",
            }),
        ),
        (
            "eta",
            serde_json::json!(match opts.method {
                Method::Ddpm => 0.0,
                Method::Ddim { eta } => eta,
            }),
        ),
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

#[cfg(test)]
mod tests {
    //! The stage on a tiny random Latte and a tiny random VAE (seconds): determinism, batch
    //! independence, the files per the contract, and weights files sampled like train outputs.

    use std::collections::BTreeMap;

    use latte_engine::{Cancel, Interrupted, NoProgress, Registry};
    use latte_store::RaggedReader;
    use latte_vae::{AutoencoderKL, VaeConfig};
    use latte_video::VideoReader;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;

    const FRAMES: usize = 3;
    const LATENT: usize = 8;

    fn tmp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("latte-sample-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// A safetensors file: (header, data start, bytes).
    fn safetensors_header(bytes: &[u8]) -> (serde_json::Map<String, serde_json::Value>, usize) {
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
        (header.as_object().unwrap().clone(), 8 + n)
    }

    fn tensor_range(info: &serde_json::Value, start: usize) -> std::ops::Range<usize> {
        let off = info["data_offsets"].as_array().unwrap();
        start + off[0].as_u64().unwrap() as usize..start + off[1].as_u64().unwrap() as usize
    }

    /// Replaces every f32 tensor of a safetensors file with seeded uniform values in ±0.2, so
    /// that the (zero-initialised) final layer gives a non-trivial output.
    fn randomise_safetensors(path: &Path, seed: u64) {
        let mut bytes = std::fs::read(path).unwrap();
        let (header, start) = safetensors_header(&bytes);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        for (name, info) in &header {
            if name == "__metadata__" {
                continue;
            }
            assert_eq!(info["dtype"], "F32", "{name}");
            for chunk in bytes[tensor_range(info, start)].chunks_exact_mut(4) {
                chunk.copy_from_slice(&rng.random_range(-0.2f32..0.2).to_le_bytes());
            }
        }
        std::fs::write(path, bytes).unwrap();
    }

    fn tiny_config(num_classes: Option<usize>) -> LatteConfig {
        let mut cfg = LatteConfig::preset("Latte-S/2").unwrap();
        (cfg.input_size, cfg.hidden_size, cfg.depth, cfg.num_heads, cfg.num_frames) = (LATENT, 32, 2, 2, FRAMES);
        cfg.num_classes = num_classes;
        cfg
    }

    fn train_output_config(model: LatteConfig, scale_factor: f64) -> TrainOutputConfig<LatteConfig> {
        let latents = latte_train::LatentsInfo {
            dataset: "test".into(),
            latent_shape: [4, LATENT as u64, LATENT as u64],
            num_classes: model.num_classes.map(|k| k as u32),
            scale_factor,
        };
        TrainOutputConfig {
            checkpointing: false,
            device: "cpu".into(),
            diffusion: latte_train::DiffusionInfo::latte(),
            latents,
            model,
            precision: "f32".into(),
            resumed_from: None,
            seed: 0,
            train: latte_train::TrainConfig::default(),
        }
    }

    /// A `train` output holding a random tiny Latte (EMA and raw weights differ).
    fn train_dir(root: &Path, num_classes: Option<usize>) -> PathBuf {
        let dir = root.join(if num_classes.is_some() { "train-cond" } else { "train-uncond" });
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = tiny_config(num_classes);
        let model = Latte::new(&cfg, &Device::flex(), 0).unwrap();
        for (i, f) in ["model.safetensors", "model_raw.safetensors"].iter().enumerate() {
            model.save_safetensors(&dir.join(f)).unwrap();
            randomise_safetensors(&dir.join(f), 10 + i as u64);
        }
        train_output_config(cfg, 0.18215).write(&dir).unwrap();
        dir
    }

    /// A `vae_train`-shaped output (`vae/`) with a random two-level VAE (8×8 latents → 16×16).
    fn vae_dir(root: &Path) -> PathBuf {
        let dir = root.join("vae_train");
        let cfg = VaeConfig::new(vec![8, 16], 1, 4, 4);
        let vae = AutoencoderKL::init(&cfg, 0, &Device::flex()).unwrap();
        latte_vae::save_pretrained(&vae, &cfg, &dir.join("vae")).unwrap();
        dir
    }

    fn opts(n: usize, batch_size: usize) -> SampleOptions {
        SampleOptions {
            n,
            batch_size,
            method: Method::Ddpm,
            steps: 6,
            cfg_scale: 1.0,
            use_ema: true,
            seed: 7,
            fps: 8,
            grid_n: 4,
            decode_batch: 4,
            device: "cpu".into(),
            precision: "f32".into(),
        }
    }

    fn run(train: &Path, vae: &Path, out: &Path, o: &SampleOptions) -> anyhow::Result<SampleReport> {
        let _ = std::fs::remove_dir_all(out);
        std::fs::create_dir_all(out).unwrap();
        sample_to_dir(&ModelSource::TrainDir(train.to_owned()), &vae_folder(vae), out, o, &NoProgress)
    }

    fn stored_samples(out: &Path) -> (Vec<u8>, latte_store::RaggedMeta) {
        let store = RaggedReader::open(&out.join("samples.zarr")).unwrap();
        let a = store.array::<u8>("samples").unwrap();
        (a.read_range(&[], 0, a.total_frames()).unwrap(), store.meta().clone())
    }

    #[test]
    fn same_seed_same_bytes_whatever_the_batch_size() {
        let root = tmp("determinism");
        let (train, vae) = (train_dir(&root, Some(3)), vae_dir(&root));
        let guided = SampleOptions { cfg_scale: 4.0, ..opts(3, 2) };
        let report = run(&train, &vae, &root.join("a"), &guided).unwrap();
        run(&train, &vae, &root.join("b"), &guided).unwrap();
        run(&train, &vae, &root.join("c"), &SampleOptions { batch_size: 3, ..guided.clone() }).unwrap();
        run(&train, &vae, &root.join("d"), &SampleOptions { seed: 8, ..guided.clone() }).unwrap();

        for f in ["videos/0000.mp4", "videos/0001.mp4", "videos/0002.mp4", "grid.mp4", "grid.gif"] {
            let (a, b) = (std::fs::read(root.join("a").join(f)).unwrap(), std::fs::read(root.join("b").join(f)).unwrap());
            assert!(a == b, "{f}: two runs with the same seed wrote different bytes");
        }
        let (a, meta) = stored_samples(&root.join("a"));
        let (c, meta_c) = stored_samples(&root.join("c"));
        let (d, _) = stored_samples(&root.join("d"));
        assert_eq!(a.len(), 3 * FRAMES * 16 * 16 * 3);
        assert_eq!(meta.counts, vec![FRAMES as u64; 3]);
        assert_eq!(meta.ids, vec!["0000", "0001", "0002"]);
        let labels: Vec<Option<u32>> = report.labels.unwrap().iter().map(|&l| Some(l as u32)).collect();
        assert_eq!(meta.labels, labels);
        assert_eq!((meta_c.labels.clone(), meta.num_classes), (labels, Some(3)));
        // Batches of 2 + 1 and one batch of 3 give the same videos.
        let diff = a.iter().zip(&c).filter(|(x, y)| x != y).count();
        assert_eq!(diff, 0, "{diff} of {} bytes depend on the batch size", a.len());
        assert!(a != d, "another seed gave the same videos");
        // The samples are not flat: the random model and VAE give varied pixels.
        let distinct = a.iter().collect::<std::collections::BTreeSet<_>>().len();
        assert!(distinct > 50, "only {distinct} distinct byte values");
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn videos_decode_back_with_their_frame_count_and_size() {
        let root = tmp("files");
        let (train, vae) = (train_dir(&root, None), vae_dir(&root));
        let out = root.join("out");
        let o = SampleOptions { method: Method::Ddim { eta: 0.0 }, use_ema: false, grid_n: 3, ..opts(3, 2) };
        run(&train, &vae, &out, &o).unwrap();
        for i in 0..3 {
            let frames = VideoReader::open(&out.join(format!("videos/{i:04}.mp4"))).unwrap().read_all().unwrap();
            assert_eq!(frames.len(), FRAMES, "video {i}");
            assert_eq!((frames[0].width, frames[0].height), (16, 16));
        }
        // Three tiles: 2 columns × 2 rows of 16 px with 2 px borders = 38 × 38.
        let grid = VideoReader::open(&out.join("grid.mp4")).unwrap().read_all().unwrap();
        assert_eq!((grid.len(), grid[0].width, grid[0].height), (FRAMES, 38, 38));
        assert_eq!(&std::fs::read(out.join("grid.gif")).unwrap()[..6], b"GIF89a");
        let (pixels, meta) = stored_samples(&out);
        assert_eq!(meta.labels, vec![None; 3]);
        assert_eq!(meta.num_classes, None);
        // H.264 4:2:0 is lossy, and the random model's frames are noise, so chroma suffers;
        // luma (kept at full resolution) of the decoded first frame stays near the stored one.
        let first = VideoReader::open(&out.join("videos/0000.mp4")).unwrap().read_all().unwrap();
        let luma = |p: &[u8]| 0.299 * p[0] as f64 + 0.587 * p[1] as f64 + 0.114 * p[2] as f64;
        let n = 16 * 16;
        let mean_err: f64 =
            first[0].data.chunks(3).zip(pixels[..n * 3].chunks(3)).map(|(a, b)| (luma(a) - luma(b)).abs()).sum::<f64>() / n as f64;
        println!("luma mean abs error of the mp4's first frame: {mean_err:.2}");
        assert!(mean_err < 8.0, "mp4 frame differs from the stored one by {mean_err} (luma) on average");
        let _ = std::fs::remove_dir_all(&root);
    }

    /// A weights file with its configuration (how official checkpoints are sampled) gives the
    /// same videos as a train output holding the same weights; a wrong configuration is an
    /// error that names the file and the parameters to check.
    #[test]
    fn a_checkpoint_file_samples_like_a_train_output() {
        let root = tmp("file");
        let fixture = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/fixtures/latte-v1-class-cfg"));
        let spec = latte_model::reference::RefSpec::from_file(&fixture.join("config.json")).unwrap();
        let weights = fixture.join("weights.safetensors");
        let vae = vae_dir(&root);
        let train = root.join("train");
        std::fs::create_dir_all(&train).unwrap();
        std::fs::copy(&weights, train.join("model.safetensors")).unwrap();
        train_output_config(spec.config.clone(), 0.5).write(&train).unwrap();
        let o = SampleOptions { cfg_scale: 4.0, ..opts(2, 2) };
        let file = ModelSource::File { path: weights.clone(), config: spec.config.clone(), scale_factor: 0.5 };
        let (a, b) = (root.join("a"), root.join("b"));
        std::fs::create_dir_all(&a).unwrap();
        let report = sample_to_dir(&file, &vae_folder(&vae), &a, &o, &NoProgress).unwrap();
        assert!(report.labels.unwrap().iter().all(|&l| l < 5));
        run(&train, &vae, &b, &o).unwrap();
        assert_eq!(stored_samples(&a).0, stored_samples(&b).0);
        assert_eq!(std::fs::read(a.join("grid.mp4")).unwrap(), std::fs::read(b.join("grid.mp4")).unwrap());

        let mut wrong = spec.config.clone();
        wrong.depth = 2;
        let bad = ModelSource::File { path: weights.clone(), config: wrong, scale_factor: 0.5 };
        let c = root.join("c");
        std::fs::create_dir_all(&c).unwrap();
        let e = format!("{:#}", sample_to_dir(&bad, &vae_folder(&vae), &c, &o, &NoProgress).unwrap_err());
        assert!(e.contains("weights.safetensors") && e.contains("num_classes"), "{e}");
        let _ = std::fs::remove_dir_all(&root);
    }

    /// Stands in for an upstream kind so that a pipeline text can bind the input slots.
    struct Upstream(&'static str);
    impl Stage for Upstream {
        fn kind(&self) -> &'static str {
            self.0
        }
        fn version(&self) -> &'static str {
            "0"
        }
        fn params(&self) -> &'static [ParamSpec] {
            &[]
        }
        fn inputs(&self) -> &'static [InputSpec] {
            &[]
        }
        fn run(&self, _: &StageContext<'_>) -> Result<(), StageError> {
            Ok(())
        }
    }

    fn params(root: &Path, extra: &str) -> Result<Params, String> {
        let mut r = Registry::new();
        r.register(Upstream("train"));
        r.register(Upstream("vae_train"));
        r.register(Sample);
        let text = format!(
            "[stages.train]\nkind = \"train\"\n[stages.vae]\nkind = \"vae_train\"\n\
             [stages.sample]\nkind = \"sample\"\ninputs = {{ train = \"train\", vae = \"vae\" }}\n{extra}\n"
        );
        let p = latte_engine::pipeline::parse(&text, &root.join("pipeline.toml"), &r, &Default::default()).map_err(|e| format!("{e}"))?;
        let params = p.stage("sample").unwrap().params.clone();
        Sample.validate(&params)?;
        Ok(params)
    }

    #[test]
    fn the_stage_runs_from_a_pipeline_and_rejects_bad_input() {
        let root = tmp("stage");
        let (train, vae) = (train_dir(&root, None), vae_dir(&root));
        let p = params(&root, "n = 2\nbatch_size = 2\nsteps = 3\ngrid_n = 1").unwrap();
        let out = root.join("out");
        std::fs::create_dir_all(&out).unwrap();
        let inputs = BTreeMap::from([("train".to_string(), train.clone()), ("vae".to_string(), vae.clone())]);
        let never = Cancel::new();
        let ctx = StageContext {
            name: "sample",
            params: &p,
            inputs: &inputs,
            out: &out,
            work: &out.with_extension("work"),
            memo: &out.with_extension("work"),
            threads: 1,
            progress: &NoProgress,
            cancel: &never,
        };
        Sample.run(&ctx).unwrap();
        for f in ["videos/0000.mp4", "videos/0001.mp4", "grid.mp4", "grid.gif", "samples.zarr/zarr.json"] {
            assert!(out.join(f).is_file(), "{f} is missing");
        }
        // A cancelled run stops at its first denoising step: `Interrupted`, no videos.
        let cancelled = Cancel::new();
        cancelled.cancel();
        let out_c = root.join("out_cancelled");
        std::fs::create_dir_all(&out_c).unwrap();
        let ctx = StageContext {
            name: "sample",
            params: &p,
            inputs: &inputs,
            out: &out_c,
            work: &out_c.with_extension("work"),
            memo: &out_c.with_extension("work"),
            threads: 1,
            progress: &NoProgress,
            cancel: &cancelled,
        };
        let e = Sample.run(&ctx).unwrap_err();
        assert!(Interrupted::is_in(e.as_ref()), "{e}");
        assert!(!out_c.join("videos/0000.mp4").exists());

        for (extra, key) in [
            ("method = \"euler\"", "method"),
            ("steps = 0", "steps"),
            ("steps = 1001", "steps"),
            ("eta = -1.0", "eta"),
            ("n = 0", "n"),
            ("fps = 0", "fps"),
        ] {
            let e = params(&root, extra).unwrap_err();
            assert!(e.contains(key), "{extra}: {e}");
        }
        // Guidance on an unconditional model, a missing checkpoint: errors that say what to do.
        let e = run(&train, &vae, &root.join("x"), &SampleOptions { cfg_scale: 7.0, ..opts(1, 1) }).unwrap_err();
        assert!(format!("{e:#}").contains("cfg_scale"), "{e:#}");
        let e = run(&root.join("nowhere"), &vae, &root.join("x"), &opts(1, 1)).unwrap_err();
        assert!(format!("{e:#}").contains("config.json"), "{e:#}");
        let e = run(&train, &root.join("nowhere"), &root.join("x"), &opts(1, 1)).unwrap_err();
        assert!(format!("{e:#}").contains("nowhere"), "{e:#}");
        // Neither a `train` input nor `checkpoint`: the stage says how to give it a model.
        let no_model = BTreeMap::from([("vae".to_string(), vae.clone())]);
        let out2 = root.join("out2");
        std::fs::create_dir_all(&out2).unwrap();
        let ctx = StageContext {
            name: "sample",
            params: &p,
            inputs: &no_model,
            out: &out2,
            work: &out2.with_extension("work"),
            memo: &out2.with_extension("work"),
            threads: 1,
            progress: &NoProgress,
            cancel: &never,
        };
        let e = Sample.run(&ctx).unwrap_err().to_string();
        assert!(e.contains("`train`") && e.contains("`checkpoint`"), "{e}");
        std::fs::write(root.join("w.pt"), b"").unwrap();
        let e = params(&root, "checkpoint = \"w.pt\"\nmodel = \"Latte-M/2\"").unwrap_err();
        assert!(e.contains("model"), "{e}");
        let _ = std::fs::remove_dir_all(&root);
    }
}
