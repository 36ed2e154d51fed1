//! The training loop (`train.py` of the reference, as the paper's code ran it: optimizer step,
//! zero grad and EMA update after every step).
//!
//! Shape legend: B clips per micro-batch, F video frames, K extra image frames, C latent
//! channels, H, W latent height and width.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use burn::module::Module;
use burn::optim::{GradientsAccumulator, GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Int, Tensor, TensorData};
use latte_diffusion::{GaussianDiffusion, LossWeighting};
use latte_nn::adamw::AdamW;

use crate::checkpoint::{self, list_checkpoints, read_state};
use crate::data::{Batch, BatchSampler, Loader};
use crate::grad_norm::clip_global_norm;
use crate::log::{read_log, LossLog, StepLog};
use crate::parallel::{
    all_gather_u64, all_reduce_grads_on_devices, fingerprint, grads_from_host, grads_to_host, presence_flags, run_ranks, Collective,
};
use crate::{plot_loss, update_ema, LatentClips, TrainConfig, TrainError};

/// What the network sees for one micro-batch.
pub struct ModelInput {
    pub x_t: Tensor<5>,    // (B, F + K, C, H, W)
    pub t: Tensor<1, Int>, // (B), original timesteps
    /// (B) class per clip after dropout; `None` when unconditional.
    pub y: Option<Tensor<1, Int>>,
    /// (B·K) class per image frame after dropout; `None` when unconditional or K = 0.
    pub y_image: Option<Tensor<1, Int>>,
    /// K: the trailing frames of `x_t` that are independent images.
    pub image_frames: usize,
}

/// Where a run keeps its files.
#[derive(Clone, Debug)]
pub struct RunPaths {
    /// Checkpoints (`step-NNNNNNNN/`); an existing complete checkpoint here is resumed.
    pub checkpoints: PathBuf,
    /// `loss.jsonl`.
    pub log: PathBuf,
    /// `loss.png`, drawn at the end.
    pub plot: PathBuf,
}

impl RunPaths {
    /// The standard layout inside one folder.
    pub fn in_dir(dir: &Path) -> Self {
        Self { checkpoints: dir.join("checkpoints"), log: dir.join("loss.jsonl"), plot: dir.join("loss.png") }
    }

    /// Puts the run's loss log and complete checkpoints into `out` as `loss.jsonl` and
    /// `checkpoints/` (see [`checkpoint::export_checkpoints`]), which outlive the run's folders.
    pub fn export(&self, out: &Path) -> Result<(), TrainError> {
        std::fs::copy(&self.log, out.join("loss.jsonl")).map_err(|source| TrainError::Copy { path: self.log.clone(), source })?;
        checkpoint::export_checkpoints(&self.checkpoints, &out.join("checkpoints"))
    }
}

/// A finished run.
pub struct Trained<M> {
    /// The raw weights (on the training device).
    pub model: M,
    /// The EMA weights (on the plain device), what sampling uses.
    pub ema: M,
    pub step: u64,
    /// The step a checkpoint was resumed from, if any.
    pub resumed_from: Option<u64>,
    pub last_checkpoint: Option<PathBuf>,
}

/// What `train`'s `on_step` returns: `()` to go on, or a `ControlFlow<()>` whose `Break` stops
/// the run after this step (Ctrl-C): a checkpoint of the step is written, off the schedule,
/// and `train` returns `TrainError::Interrupted`; the next call resumes from it exactly.
pub trait StepControl {
    fn stops(self) -> bool;
}

impl StepControl for () {
    fn stops(self) -> bool {
        false
    }
}

impl StepControl for ControlFlow<()> {
    fn stops(self) -> bool {
        self.is_break()
    }
}

/// Trains `model` (on an autodiff device, freshly initialised: a checkpoint in
/// `paths.checkpoints` overwrites it and the run continues from there) on `clips` up to
/// `cfg.steps` optimizer steps. `forward` runs the network; `model_meta` is stored in every
/// checkpoint and must equal the resumed checkpoint's (the architecture). `on_step` sees every
/// step's log record (progress bars) and may stop the run (see [`StepControl`]).
///
/// One rank alone: [`train_with`] and [`Collective::Single`].
pub fn train<M, F, S>(
    model: M,
    forward: F,
    clips: LatentClips,
    cfg: &TrainConfig,
    paths: &RunPaths,
    model_meta: &serde_json::Value,
    on_step: impl FnMut(&StepLog) -> S,
) -> Result<Trained<M>, TrainError>
where
    M: Module + 'static,
    F: FnMut(&M, ModelInput) -> Tensor<5>,
    S: StepControl,
{
    train_with(model, forward, clips, cfg, paths, model_meta, Collective::Single, on_step)
}

/// [`train`] as one rank of a data-parallel group (`collective`; see [`crate::parallel`]).
///
/// `cfg.batch_size` is the *global* micro-batch, which must split evenly over the ranks: each
/// rank draws the same micro-batches from the seeded stream and trains on its contiguous share
/// of their clips (reading only those latents). Its loss is its share's mean divided by
/// world size · `grad_accum`, so the gradients summed over the ranks are those of the global
/// mean; clipping, the optimizer and the EMA then run on identical gradients and weights on
/// every rank. The trained weights do not depend on the number of ranks up to float rounding,
/// and a checkpoint resumes with any number of ranks.
///
/// Every rank must start from the same weights (the same model seed) and see the same
/// checkpoint folder: each loads the newest checkpoint of `paths.checkpoints` (on several
/// machines, a shared file system). Only rank 0 writes anything under `paths` (checkpoints,
/// loss log, plot); the logged losses are global means. `on_step` runs on every rank with the
/// same record; the run stops after a step when any rank's `on_step` asks.
///
/// `collective` is consumed: when a rank returns early (an error), the others' next gradient
/// sum fails instead of waiting forever.
#[allow(clippy::too_many_arguments)]
pub fn train_with<M, F, S>(
    model: M,
    mut forward: F,
    clips: LatentClips,
    cfg: &TrainConfig,
    paths: &RunPaths,
    model_meta: &serde_json::Value,
    mut collective: Collective,
    mut on_step: impl FnMut(&StepLog) -> S,
) -> Result<Trained<M>, TrainError>
where
    M: Module + 'static,
    F: FnMut(&M, ModelInput) -> Tensor<5>,
    S: StepControl,
{
    cfg.validate()?;
    let (rank, world) = (collective.rank(), collective.world_size());
    if !cfg.batch_size.is_multiple_of(world) {
        return Err(TrainError::Config {
            key: "batch_size",
            reason: format!(
                "the global batch of {} clips does not split evenly over {world} ranks; use a multiple of {world} \
                 or another number of ranks",
                cfg.batch_size
            ),
        });
    }
    let lead = rank == 0;
    let diffusion = GaussianDiffusion::create("")?;
    let device = model.devices().first().cloned().unwrap_or_else(Device::flex);
    // one pass per parameter on flex, bit-identical to burn's AdamW (whose state it keeps)
    let mut optim: ModuleOptimizer =
        AdamW { beta_1: cfg.beta1 as f32, beta_2: cfg.beta2 as f32, epsilon: cfg.eps as f32, weight_decay: cfg.weight_decay as f32 }.init();
    // The EMA starts as an exact copy (the reference syncs it with decay 0).
    let mut ema = model.valid();
    let mut model = model;

    // Resume from the newest complete checkpoint.
    let mut start = 0u64;
    let mut resumed_from = None;
    let mut last_checkpoint = None;
    if let Some((step, dir)) = list_checkpoints(&paths.checkpoints)?.pop() {
        let state = read_state(&dir)?;
        check_resumable(&state, cfg, model_meta, &dir)?;
        (model, ema, optim) = checkpoint::load(&dir, model, ema, optim)?;
        start = step;
        resumed_from = Some(step);
        last_checkpoint = Some(dir);
    }
    if world > 1 {
        check_same_start(&mut collective, start, &model)?;
    }
    let mut log = if lead { Some(LossLog::open(&paths.log, start)?) } else { None };

    if start < cfg.steps {
        let share = cfg.batch_size / world;
        let sampler = BatchSampler::new(Arc::new(clips), cfg, diffusion.num_timesteps())?.with_share(rank * share..(rank + 1) * share);
        let accum = cfg.grad_accum as u64;
        let loader = Loader::spawn(sampler, start * accum, cfg.steps * accum, cfg.prefetch, cfg.loader_threads)?;
        for step in start..cfg.steps {
            let began = Instant::now();
            let lr = cfg.lr_at(step);
            let batches = (0..accum).map(|_| loader.next()).collect::<Result<Vec<_>, _>>()?;
            let (mut micro, mut grads) =
                share_gradients(&model, &mut forward, &diffusion, batches, cfg.image_frames, cfg.loss_weighting(), world, &device)?;
            if world > 1 {
                grads = sum_over_ranks(&mut collective, &model, &grads, &mut micro, &device)?;
            }
            let (mut loss_sum, mut mse_sum, mut vb_sum) = (0.0, 0.0, 0.0);
            for m in &micro {
                for (what, v) in [("loss", m.loss), ("mse", m.mse), ("vb", m.vb)] {
                    if !v.is_finite() {
                        return Err(TrainError::NonFinite { what, value: v, step, last_good: last_checkpoint });
                    }
                }
                loss_sum += m.loss;
                mse_sum += m.mse;
                vb_sum += m.vb;
            }
            let clip = cfg.clip_from_step.is_some_and(|from| step >= from);
            let grad_norm = clip_global_norm(&model, &mut grads, cfg.clip_max_norm, clip);
            if !grad_norm.is_finite() {
                return Err(TrainError::NonFinite { what: "gradient norm", value: grad_norm, step, last_good: last_checkpoint });
            }
            model = optim.step(lr, model, grads);
            ema = update_ema(ema, &model, cfg.ema_decay);

            let done = step + 1;
            let record = StepLog {
                step: done,
                loss: loss_sum / accum as f64,
                mse: mse_sum / accum as f64,
                vb: vb_sum / accum as f64,
                lr,
                grad_norm,
                clipped: clip && grad_norm > cfg.clip_max_norm,
                secs: began.elapsed().as_secs_f64(),
            };
            if let Some(log) = &mut log {
                log.push(&record)?;
            }
            // Stopping after the last step is finishing.
            let mut stop = on_step(&record).stops() && done < cfg.steps;
            if world > 1 {
                // A Ctrl-C reaches the ranks at different steps; all must stop at the same one.
                let mut vote = [f32::from(u8::from(stop))];
                collective.all_reduce_sum(&mut vote)?;
                stop = vote[0] > 0.0 && done < cfg.steps;
            }
            let scheduled = done % cfg.checkpoint_every == 0 || done == cfg.steps;
            if scheduled || stop {
                let dir = match &log {
                    Some(log) => {
                        log.sync()?;
                        let state = checkpoint::new_state(done, cfg, model_meta, !scheduled);
                        checkpoint::save(&paths.checkpoints, &state, &model, &ema, &optim, cfg.keep_checkpoints)?
                    }
                    None => checkpoint::step_dir(&paths.checkpoints, done),
                };
                if stop {
                    if world > 1 {
                        // The others report the checkpoint only once rank 0 has written it.
                        collective.all_reduce_sum(&mut [])?;
                    }
                    return Err(TrainError::Interrupted { step: done, checkpoint: dir });
                }
                last_checkpoint = Some(dir);
            }
        }
    }
    if lead {
        let points: Vec<(u64, f64)> = read_log(&paths.log)?.iter().map(|l| (l.step, l.loss)).collect();
        plot_loss(&points, &paths.plot)?;
    }
    Ok(Trained { model, ema, step: cfg.steps.max(start), resumed_from, last_checkpoint })
}

/// [`train_with`] on every device of this process: rank r of the group trains on
/// `devices[r]` through `collectives[r]` (as [`Collective::for_devices`] gives them). Rank 0
/// trains `model` (on the caller's thread when `rank_threads` is `None`); ranks 1.. run beside
/// it on threads of their own, each on a fresh model from `build` and clips from `clips`. Only rank 0's `on_step` is
/// called: the trainer makes the ranks stop at the same step, so rank 0 speaks for all.
/// `rank_threads`: each rank, rank 0 included, runs in a rayon pool of that many threads of
/// its own (CPU ranks sharing the cores); `None` leaves the ranks on the caller's pool.
///
/// Rank 0's result is returned unless it succeeded while another rank failed: then that rank's
/// error, as [`TrainError::Rank`]. When the group breaks up under rank 0, its own error says
/// more than the others' lost-peer errors.
#[allow(clippy::too_many_arguments)]
pub fn train_on_devices<M, E, F, S>(
    model: M,
    build: impl Fn(&Device) -> Result<M, E> + Sync,
    devices: &[Device],
    collectives: Vec<Collective>,
    clips: impl Fn() -> LatentClips + Sync,
    forward: F,
    cfg: &TrainConfig,
    paths: &RunPaths,
    model_meta: &serde_json::Value,
    rank_threads: Option<usize>,
    on_step: impl FnMut(&StepLog) -> S + Send,
) -> Result<Trained<M>, TrainError>
where
    M: Module + 'static,
    E: std::error::Error + Send + Sync + 'static,
    F: Fn(&M, ModelInput) -> Tensor<5> + Copy + Send,
    S: StepControl,
{
    if collectives.len() != devices.len() || devices.is_empty() {
        return Err(TrainError::Device(format!("{} devices but {} collectives", devices.len(), collectives.len())));
    }
    let (build, clips, clips0) = (&build, &clips, clips());
    run_ranks(
        collectives,
        rank_threads,
        move |lead| train_with(model, forward, clips0, cfg, paths, model_meta, lead, on_step),
        move |rank, collective| -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
            let never = |_: &StepLog| ControlFlow::<()>::Continue(());
            train_with(build(&devices[rank])?, forward, clips(), cfg, paths, model_meta, collective, never)?;
            Ok(())
        },
        |rank, source| TrainError::Rank { rank, source },
    )
}

/// Every rank must resume from the same step with the same weights, or their updates diverge
/// silently.
fn check_same_start<M: Module>(collective: &mut Collective, start: u64, model: &M) -> Result<(), TrainError> {
    let steps = all_gather_u64(collective, start)?;
    if let Some(r) = steps.iter().position(|&s| s != steps[0]) {
        return Err(TrainError::Collective {
            peer: format!("rank {r}"),
            message: format!(
                "resumes from step {} but rank 0 from step {}: give every rank the same checkpoint folder",
                steps[r], steps[0]
            ),
        });
    }
    let prints = all_gather_u64(collective, fingerprint(model))?;
    if let Some(r) = prints.iter().position(|&p| p != prints[0]) {
        return Err(TrainError::Collective {
            peer: format!("rank {r}"),
            message: "starts from other weights than rank 0: build the model with the same seed on every rank".into(),
        });
    }
    Ok(())
}

/// Sums the step's gradients and loss terms over the ranks: one all-reduce of the gradients
/// with the micro-batches' (loss, mse, vb) appended. `micro` becomes the global means.
fn sum_over_ranks<M: Module>(
    collective: &mut Collective,
    model: &M,
    grads: &GradientsParams,
    micro: &mut [MicroLosses],
    device: &Device,
) -> Result<GradientsParams, TrainError> {
    // On a device group only the presence flags and loss terms cross the host; the gradients
    // are summed on the devices below.
    let mut flat = match collective.device_group() {
        Some(_) => presence_flags(model, grads),
        None => grads_to_host(model, grads),
    };
    let n = flat.len();
    for m in micro.iter() {
        flat.extend([m.loss as f32, m.mse as f32, m.vb as f32]);
    }
    collective.all_reduce_sum(&mut flat)?;
    let world = collective.world_size() as f64;
    for (m, terms) in micro.iter_mut().zip(flat[n..].chunks_exact(3)) {
        *m = MicroLosses { loss: f64::from(terms[0]) / world, mse: f64::from(terms[1]) / world, vb: f64::from(terms[2]) / world };
    }
    match collective.device_group() {
        Some(devices) => all_reduce_grads_on_devices(model, grads, &flat[..n], devices, &device.clone().inner()),
        None => grads_from_host(model, &flat[..n], grads, &device.clone().inner()),
    }
}

/// A resumed run must draw the same data stream and build the same network.
fn check_resumable(
    state: &checkpoint::CheckpointState,
    cfg: &TrainConfig,
    model_meta: &serde_json::Value,
    dir: &Path,
) -> Result<(), TrainError> {
    let old = &state.config;
    let stream = [
        ("batch_size", old.batch_size as u64, cfg.batch_size as u64),
        ("grad_accum", old.grad_accum as u64, cfg.grad_accum as u64),
        ("num_frames", old.num_frames as u64, cfg.num_frames as u64),
        ("image_frames", old.image_frames as u64, cfg.image_frames as u64),
        ("data_seed", old.data_seed, cfg.data_seed),
    ];
    for (key, was, now) in stream {
        if was != now {
            return Err(TrainError::Checkpoint {
                path: dir.to_owned(),
                message: format!(
                    "was trained with {key} = {was} but the config now says {now}; resume with the same value \
                     or train into a fresh checkpoint folder"
                ),
            });
        }
    }
    if &state.model != model_meta {
        return Err(TrainError::Checkpoint {
            path: dir.to_owned(),
            message: format!(
                "holds a different model ({}) than the one configured ({model_meta}); train into a fresh checkpoint folder",
                state.model
            ),
        });
    }
    Ok(())
}

/// Mean loss terms of one micro-batch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MicroLosses {
    pub loss: f64,
    pub mse: f64,
    pub vb: f64,
}

/// Forward and backward over the micro-batches of one optimizer step, gradients summed.
/// Each micro-batch's mean loss is divided by the number of micro-batches, so with equal
/// micro-batch sizes the sum is the gradient of the mean loss over all the step's clips: A
/// micro-batches of B clips give the update of one batch of A·B clips (up to float rounding).
/// `image_frames` is K, the trailing frames of each clip that are independent images;
/// `weighting` weighs each clip's ε-MSE by its timestep.
pub fn step_gradients<M: Module, F: FnMut(&M, ModelInput) -> Tensor<5>>(
    model: &M,
    forward: &mut F,
    diffusion: &GaussianDiffusion,
    micro_batches: Vec<Batch>,
    image_frames: usize,
    weighting: LossWeighting,
    device: &Device,
) -> Result<(Vec<MicroLosses>, GradientsParams), TrainError> {
    share_gradients(model, forward, diffusion, micro_batches, image_frames, weighting, 1, device)
}

/// [`step_gradients`] on one rank's shares of the micro-batches: every loss is further divided
/// by `world` (the ranks), so the sum over the ranks is the global mean's gradient. The losses
/// returned are the shares' means.
#[allow(clippy::too_many_arguments)]
fn share_gradients<M: Module, F: FnMut(&M, ModelInput) -> Tensor<5>>(
    model: &M,
    forward: &mut F,
    diffusion: &GaussianDiffusion,
    micro_batches: Vec<Batch>,
    image_frames: usize,
    weighting: LossWeighting,
    world: usize,
    device: &Device,
) -> Result<(Vec<MicroLosses>, GradientsParams), TrainError> {
    let divisor = micro_batches.len() * world;
    let mut acc = GradientsAccumulator::<M>::new();
    let mut losses = Vec::with_capacity(micro_batches.len());
    for batch in micro_batches {
        let (l, grads) = micro_step(model, forward, diffusion, batch, image_frames, weighting, divisor, device)?;
        losses.push(l);
        acc.accumulate(model, grads);
    }
    Ok((losses, acc.grads()))
}

/// Forward and backward on one micro-batch; returns its mean loss terms and the gradients of
/// its mean loss divided by `count` (the micro-batches of the step, times the ranks).
#[allow(clippy::too_many_arguments)]
fn micro_step<M: Module, F: FnMut(&M, ModelInput) -> Tensor<5>>(
    model: &M,
    forward: &mut F,
    diffusion: &GaussianDiffusion,
    batch: Batch,
    image_frames: usize,
    weighting: LossWeighting,
    count: usize,
    device: &Device,
) -> Result<(MicroLosses, GradientsParams), TrainError> {
    let ints = |v: &[usize]| {
        let v: Vec<i64> = v.iter().map(|&x| x as i64).collect();
        let n = v.len();
        Tensor::<1, Int>::from_data(TensorData::new(v, [n]), device)
    };
    let x0 = Tensor::<5>::from_data(TensorData::new(batch.x0, batch.shape), device); // (B, F + K, C, H, W)
    let noise = Tensor::<5>::from_data(TensorData::new(batch.noise, batch.shape), device); // (B, F + K, C, H, W)
    let t = ints(&batch.t);
    let y = batch.y.as_deref().map(ints);
    let y_image = batch.y_image.as_deref().map(ints);
    let losses = diffusion.training_losses(|x_t| forward(model, ModelInput { x_t, t, y, y_image, image_frames }), x0, &batch.t, noise)?;
    let losses = match diffusion.mse_weights(weighting, &batch.t) {
        Some(w) => losses.with_mse_weights(&w),
        None => losses,
    };
    let loss = losses.loss.mean() / count as f64;
    let mse = f64::from(losses.mse.mean().into_scalar::<f32>());
    let vb = f64::from(losses.vb.mean().into_scalar::<f32>());
    let total = f64::from(loss.clone().into_scalar::<f32>()) * count as f64;
    let grads = GradientsParams::from_grads(loss.backward(), model);
    Ok((MicroLosses { loss: total, mse, vb }, grads))
}
