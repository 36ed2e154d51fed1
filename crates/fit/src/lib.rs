//! Training a Latte on a latents store, as the reference's `train.py` does (spec
//! latte-reference §3): the store's videos as clips ([`StoreClips`]), the model built on each
//! device, `latte-train`'s loop over them ([`fit`]) and the written train output
//! ([`Fitted::write`]). The `train` stage calls it; `latte-train` itself knows neither the
//! store nor the model, and `latte-sample` reads what this writes.
//!
//! Checkpoints and the loss log go to the [`RunPaths`] the caller gives, where an interrupted
//! run leaves them: a later call with the same paths resumes from the newest complete
//! checkpoint, bit-identically.

mod clips;
mod error;

use std::path::Path;

use latte_model::burn::module::Module;
use latte_model::burn::tensor::Device;
use latte_model::{Latte, LatteConfig};
use latte_nn::device::{autodiff_with, compute_dtype, DeviceKind, DeviceSpec};
use latte_train::{Collective, DiffusionInfo, ModelInput, RunPaths, StepControl, StepLog, TrainConfig, TrainOutputConfig, Trained, World};
use latte_video::WindowSpec;

pub use clips::StoreClips;
pub use error::FitError;

/// The precisions training accepts: f32 (the reference, fp32/TF32) and bf16 compute with f32
/// weights, optimizer state and loss (Open-Sora's Latte recipe).
pub const PRECISIONS: &[&str] = &["f32", "bf16"];

/// Everything that decides a run besides the store and the paths.
#[derive(Clone, Debug)]
pub struct FitOptions {
    /// The architecture; latent size, channels, frames and classes come from the store and
    /// `train`.
    pub model: LatteConfig,
    /// The recipe; its `scale_factor` comes from the store.
    pub train: TrainConfig,
    /// Frame stride of the clip window.
    pub frame_interval: usize,
    /// Condition on the store's class labels when it has them.
    pub conditional: bool,
    /// A device name (`latte_nn::device::DeviceSpec`).
    pub device: String,
    /// One of [`PRECISIONS`].
    pub precision: String,
    /// Gradient checkpointing (less memory, more compute, the same results).
    pub checkpointing: bool,
    /// Data-parallel ranks on the CPU: threads of this process, each with an equal share of
    /// the threads it runs on and of every micro-batch's clips, their gradients summed in
    /// rank order each step. 1: one rank. A small model leaves a second core mostly idle
    /// inside one rank (its ops are too small to split well), so on two cores two ranks train
    /// faster; the weights equal one rank's up to float rounding, which makes them a
    /// different result, so `ranks` is part of what a run is.
    pub ranks: usize,
    /// The model's initialisation seed (the data draws use `train.data_seed`).
    pub seed: u64,
}

/// A finished run: the weights and the output's `config.json`.
pub struct Fitted {
    pub trained: Trained<Latte>,
    pub config: TrainOutputConfig<LatteConfig>,
    /// Rank 0 of a data-parallel group (or the only rank) keeps the log and checkpoints.
    pub rank0: bool,
}

impl Fitted {
    /// Writes a train output into `out`: `model.safetensors` (EMA weights, what sampling
    /// loads), `model_raw.safetensors`, `config.json`, and on rank 0 the run's `loss.jsonl` and
    /// `checkpoints/` from `paths` (`loss.png` is drawn by the run itself).
    pub fn write(&self, out: &Path, paths: &RunPaths) -> Result<(), FitError> {
        let write = |file: &'static str| move |e: latte_model::ModelError| FitError::Write { file, source: Box::new(e) };
        self.trained.ema.save_safetensors(&out.join("model.safetensors")).map_err(write("model.safetensors"))?;
        self.trained.model.valid().save_safetensors(&out.join("model_raw.safetensors")).map_err(write("model_raw.safetensors"))?;
        if self.rank0 {
            paths.export(out)?;
        }
        self.config.write(out).map_err(|e| FitError::Write { file: "config.json", source: Box::new(e) })
    }
}

/// Trains `opts.model` on the store `store_dir` with `latte-train`'s loop on every local device
/// of `opts.device` (one data-parallel rank each, plus the ranks of a multi-process launch from
/// the environment). `log` gets one-line reports (what is trained on what, resuming);
/// `on_step` sees every step and can stop the run (then [`latte_train::TrainError::Interrupted`], after a
/// checkpoint of that step).
pub fn fit<S: StepControl>(
    store_dir: &Path,
    opts: &FitOptions,
    paths: &RunPaths,
    log: impl Fn(&str),
    on_step: impl FnMut(&StepLog) -> S + Send,
) -> Result<Fitted, FitError> {
    let compute = match compute_dtype(&opts.precision) {
        Some(dtype) if PRECISIONS.contains(&opts.precision.as_str()) => dtype,
        _ => return Err(FitError::Options(format!("parameter `precision` is \"{}\"; use \"f32\" or \"bf16\"", opts.precision))),
    };
    let spec = DeviceSpec::parse(&opts.device).map_err(|e| FitError::Options(format!("parameter `device`: {e}")))?;
    let window = WindowSpec { num_frames: opts.train.num_frames, interval: opts.frame_interval };
    let data = StoreClips::open(store_dir, window, opts.conditional)?;
    if data.skipped > 0 {
        log(&format!("skipping {} videos too short for the window", data.skipped));
    }
    let [c, h, _] = data.frame_shape();
    let model_cfg = LatteConfig {
        input_size: h,
        in_channels: c,
        num_frames: opts.train.num_frames,
        num_classes: data.num_classes(),
        ..opts.model.clone()
    };
    model_cfg.validate().map_err(FitError::ModelConfig)?;
    let cfg = TrainConfig { scale_factor: data.info.scale_factor, ..opts.train.clone() };

    let world = World::from_env()?;
    let (devices, collectives) = match opts.ranks {
        0 => return Err(FitError::Options("parameter `ranks` must be at least 1".into())),
        1 => Collective::for_devices(&spec, &world, &log).map_err(|e| FitError::Options(format!("parameter `device`: {e}")))?,
        n => {
            if spec.kind != DeviceKind::Cpu || world.world_size > 1 {
                return Err(FitError::Options(format!(
                    "parameter `ranks` = {n} runs CPU ranks in one process; with `device = \"{}\"`{} set `ranks = 1` \
                     (GPUs are ranks already: list them in `device`, e.g. \"cuda:0,1\")",
                    opts.device,
                    if world.world_size > 1 { format!(" under a {}-process launch", world.world_size) } else { String::new() }
                )));
            }
            let device = spec.open().map_err(|e| FitError::Options(format!("parameter `device`: {e}")))?.remove(0);
            (vec![device; n], Collective::threads(n))
        }
    };
    // Each CPU rank gets its share of the threads this runs on (the stage's budget).
    let rank_threads = (opts.ranks > 1).then(|| (rayon::current_num_threads() / opts.ranks).max(1));
    let build = |device: &Device| {
        Latte::new(&model_cfg, &autodiff_with(device, opts.checkpointing), opts.seed).map(|m| m.with_compute_dtype(compute))
    };
    let model = build(&devices[0])?;
    log(&format!(
        "{} clips, latents {c}×{h}×{h}, {} trainable parameters, {} steps of {}×{} clips, on {}{}",
        data.len(),
        model.num_trainable_params(),
        cfg.steps,
        cfg.batch_size,
        cfg.grad_accum,
        opts.device,
        match collectives[0].world_size() {
            1 => String::new(),
            n => format!(" (rank {} of {n} data-parallel ranks)", collectives[0].rank()),
        }
    ));
    if let Some((step, dir)) = latte_train::checkpoint::list_checkpoints(&paths.checkpoints)?.pop() {
        log(&format!("resuming from step {step} ({})", dir.display()));
    }
    let rank0 = collectives[0].rank() == 0;
    let model_meta = serde_json::to_value(&model_cfg).map_err(|e| FitError::Options(format!("model configuration: {e}")))?;
    let forward = |m: &Latte, inp: ModelInput| m.forward_joint_flat(inp.x_t, inp.t, inp.y, inp.y_image, inp.image_frames);
    let trained = latte_train::train_on_devices(
        model,
        build,
        &devices,
        collectives,
        || data.clips(),
        forward,
        &cfg,
        paths,
        &model_meta,
        rank_threads,
        on_step,
    )?;
    let config = TrainOutputConfig {
        checkpointing: opts.checkpointing,
        ranks: opts.ranks,
        device: spec.cache_kind().to_string(),
        diffusion: DiffusionInfo::latte(),
        latents: data.info.clone(),
        model: model_cfg,
        precision: opts.precision.clone(),
        resumed_from: trained.resumed_from,
        seed: opts.seed,
        train: cfg,
    };
    Ok(Fitted { trained, config, rank0 })
}
