//! Training a small AutoencoderKL from video frames: reconstruction loss plus a small KL term,
//! AdamW, every random draw from one seed.
//!
//! Dimension letters: N batch, C channels, H/W height/width, Z latent channels, h/w latent
//! height/width, S crop side.

use std::path::Path;

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor, TensorData};
use latte_nn::adamw::AdamW;
use latte_store::{RgbVideos, StoreError};
use latte_train::parallel::{grads_from_host, grads_to_host, run_ranks, Collective};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

use crate::{AutoencoderKL, VaeConfig, VaeError};

/// How far a reconstruction is from its input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReconstructionLoss {
    L1,
    Mse,
}

impl std::str::FromStr for ReconstructionLoss {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "l1" => Ok(Self::L1),
            "mse" => Ok(Self::Mse),
            other => Err(format!("unknown reconstruction loss \"{other}\"; use \"l1\" or \"mse\"")),
        }
    }
}

#[derive(Clone, Debug)]
pub struct VaeTrainConfig {
    pub steps: usize,
    pub batch_size: usize,
    /// Side of the random square crop trained on; 0 trains on whole frames. Whole 64×64
    /// frames lower the loss faster per step only because a step then sees 4× the pixels of
    /// 32×32 crops; for the same time they gave no better held-out PSNR.
    pub crop: usize,
    /// Peak learning rate, reached after `warmup_steps` and decayed by a cosine to a tenth.
    pub lr: f64,
    pub warmup_steps: usize,
    pub weight_decay: f64,
    /// Weight of the KL term, both terms taken per element: `rec + kl_weight · KL/pixels`.
    /// LDM's kl-f8 used 1e-6 on sums, i.e. the same ratio.
    pub kl_weight: f64,
    pub loss: ReconstructionLoss,
    /// Initial bias of the log-variance output (see [`AutoencoderKL::init_for_training`]).
    pub initial_logvar: f64,
    /// Start every residual branch at zero (see [`AutoencoderKL::init_for_training`]).
    pub zero_residual_init: bool,
    pub seed: u64,
    /// Data-parallel ranks: threads that each train on `batch_size / ranks` crops of every
    /// step with an equal share of the caller's threads, gradients summed in rank order
    /// (`latte_train::parallel`). The small VAE's convolutions keep a second core only partly
    /// busy, so two ranks on two cores train faster; the weights equal one rank's up to float
    /// rounding. 1 is the plain loop.
    pub ranks: usize,
}

impl VaeTrainConfig {
    /// Refuses settings that cannot train `vae` at any frame size (the message names the
    /// pipeline parameter).
    pub fn validate(&self, vae: &VaeConfig) -> Result<(), String> {
        let f = vae.downsample_factor();
        if !self.crop.is_multiple_of(f) {
            return Err(format!("parameter `crop` ({}) must be a multiple of the downsampling factor {f}", self.crop));
        }
        if self.steps == 0 || self.batch_size == 0 {
            return Err("parameters `steps` and `batch_size` must be at least 1".into());
        }
        if self.ranks == 0 || !self.batch_size.is_multiple_of(self.ranks) {
            return Err(format!("parameter `ranks` ({}) must be at least 1 and divide `batch_size` ({})", self.ranks, self.batch_size));
        }
        Ok(())
    }
}

impl Default for VaeTrainConfig {
    fn default() -> Self {
        Self {
            steps: 700,
            batch_size: 4,
            crop: 32,
            lr: 1e-3,
            warmup_steps: 20,
            weight_decay: 0.0,
            kl_weight: 1e-6,
            loss: ReconstructionLoss::Mse,
            initial_logvar: -6.0,
            zero_residual_init: true,
            seed: 0,
            ranks: 1,
        }
    }
}

/// Frames in memory: `[N, H, W, 3]` uint8, RGB, row-major.
#[derive(Clone, Copy, Debug)]
pub struct FrameBatch<'a> {
    pub pixels: &'a [u8],
    pub count: usize,
    pub height: usize,
    pub width: usize,
}

impl FrameBatch<'_> {
    fn frame(&self, i: usize) -> &[u8] {
        let n = self.height * self.width * 3;
        &self.pixels[i * n..(i + 1) * n]
    }

    /// Frames `indices`, each cropped at `(top, left)` to `size` and optionally mirrored, as a
    /// `[N, 3, size, size]` tensor in [-1, 1].
    fn tensor(&self, picks: &[(usize, usize, usize, bool)], size: (usize, usize), device: &Device) -> Tensor<4> {
        let (sh, sw) = size;
        let mut values = vec![0f32; picks.len() * 3 * sh * sw];
        for (b, &(i, top, left, flip)) in picks.iter().enumerate() {
            let frame = self.frame(i);
            for y in 0..sh {
                for x in 0..sw {
                    let sx = if flip { left + sw - 1 - x } else { left + x };
                    let p = ((top + y) * self.width + sx) * 3;
                    for c in 0..3 {
                        values[((b * 3 + c) * sh + y) * sw + x] = frame[p + c] as f32 / 127.5 - 1.0;
                    }
                }
            }
        }
        Tensor::from_data(TensorData::new(values, [picks.len(), 3, sh, sw]), device)
    }
}

/// Converts `[N, H, W, 3]` uint8 frames to the VAE's `[N, 3, H, W]` input in [-1, 1],
/// mirrored left-right when `flip`.
pub fn frames_to_tensor(frames: FrameBatch<'_>, flip: bool, device: &Device) -> Tensor<4> {
    let picks: Vec<_> = (0..frames.count).map(|i| (i, 0, 0, flip)).collect();
    frames.tensor(&picks, (frames.height, frames.width), device)
}

#[derive(Debug)]
pub struct TrainOutcome {
    pub model: AutoencoderKL,
    /// The config with `scaling_factor` set to 1/std of the training latents (how Stable
    /// Diffusion's 0.18215 was chosen), so scaled latents have unit variance.
    pub config: VaeConfig,
    /// Mean PSNR (dB, 8-bit peak) of held-out frames decoded from their posterior mean.
    pub heldout_psnr: Option<f64>,
    pub train_psnr: f64,
    pub losses: Vec<f32>,
}

/// `report.json` of a `vae_train` output: how well the VAE reconstructs and how it was trained.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainReport {
    pub heldout_psnr_db: Option<f64>,
    pub train_psnr_db: f64,
    pub heldout_frames: usize,
    pub train_frames: usize,
    pub frame_size: [usize; 2],
    pub block_out_channels: Vec<usize>,
    pub downsample_factor: usize,
    pub scaling_factor: f64,
    pub final_loss: Option<f32>,
    pub steps: usize,
    /// (step, loss) every 10 steps and at the last.
    pub loss_curve: Vec<(usize, f32)>,
    /// The contact sheet of originals above their reconstructions, relative to the report.
    pub reconstructions: String,
}

impl TrainReport {
    /// One line for a log: held-out and training PSNR and the scaling factor.
    pub fn summary(&self) -> String {
        let heldout = self.heldout_psnr_db.map_or("n/a".into(), |v| format!("{v:.2}"));
        format!("held-out PSNR {heldout} dB, train PSNR {:.2} dB, scaling_factor {:.5}", self.train_psnr_db, self.scaling_factor)
    }
}

impl TrainOutcome {
    /// The config to save the model with: the fitted scaling factor, or SD's 0.18215 when
    /// `fit_scaling_factor` is off, and `sample_size` the frames' side.
    pub fn saved_config(&self, fit_scaling_factor: bool, sample_size: usize) -> VaeConfig {
        let scaling_factor = if fit_scaling_factor { self.config.scaling_factor } else { crate::SD_SCALING_FACTOR };
        VaeConfig { scaling_factor, sample_size, ..self.config.clone() }
    }

    /// The report of this run on `train_frames` and `heldout_frames` frames of `frame_size`,
    /// its VAE saved with `config` (whose `scaling_factor` may differ from the fitted one).
    pub fn report(&self, config: &VaeConfig, frames: (usize, usize), frame_size: [usize; 2], reconstructions: &str) -> TrainReport {
        let last = self.losses.len().saturating_sub(1);
        TrainReport {
            heldout_psnr_db: self.heldout_psnr,
            train_psnr_db: self.train_psnr,
            train_frames: frames.0,
            heldout_frames: frames.1,
            frame_size,
            block_out_channels: config.block_out_channels.clone(),
            downsample_factor: config.downsample_factor(),
            scaling_factor: config.scaling_factor,
            final_loss: self.losses.last().copied(),
            steps: self.losses.len(),
            loss_curve: self.losses.iter().copied().enumerate().filter(|&(i, _)| i % 10 == 0 || i == last).collect(),
            reconstructions: reconstructions.to_owned(),
        }
    }
}

/// Frames read from a frames store for training, in memory: [`select_frames`]'s training
/// frames, then its held-out ones; `train` and `heldout` index [`TrainFrames::batch`].
pub struct TrainFrames {
    pub pixels: Vec<u8>,
    pub height: usize,
    pub width: usize,
    pub train: Vec<usize>,
    pub heldout: Vec<usize>,
}

impl TrainFrames {
    /// Reads the frames of the frames store `dir` (array `frames`).
    pub fn read(dir: &Path, heldout_fraction: f64, max_frames: usize) -> Result<Self, StoreError> {
        let videos = RgbVideos::open(dir, &["frames"])?;
        let meta = videos.meta();
        let (train, heldout) = select_frames(&meta.counts, &meta.offsets, heldout_fraction, max_frames);
        if train.is_empty() {
            return Err(StoreError::Invalid { path: videos.dir().to_owned(), message: "no frames to train the VAE on".into() });
        }
        let all: Vec<u64> = train.iter().chain(&heldout).copied().collect();
        let pixels = videos.read_frames(&all)?;
        let (height, width) = videos.frame_size();
        Ok(TrainFrames { pixels, height, width, train: (0..train.len()).collect(), heldout: (train.len()..all.len()).collect() })
    }

    pub fn batch(&self) -> FrameBatch<'_> {
        FrameBatch { pixels: &self.pixels, count: self.train.len() + self.heldout.len(), height: self.height, width: self.width }
    }
}

/// The cells of a reconstruction sheet, `columns` to a row: up to `columns` held-out frames
/// spread over the set, the row below their decodings, then the same for training frames; short
/// rows padded with black, a set without frames left out. `[H, W, 3]` uint8 each. The colour
/// and shape a VAE loses show at a glance, and whether it loses more on unseen videos.
pub fn reconstruction_cells(
    model: &AutoencoderKL,
    frames: &TrainFrames,
    columns: usize,
    device: &Device,
) -> Result<Vec<Vec<u8>>, VaeError> {
    let batch = frames.batch();
    let size = frames.height * frames.width * 3;
    let mut cells = Vec::new();
    for set in [&frames.heldout, &frames.train] {
        let picks = spread(set, columns);
        if picks.is_empty() {
            continue;
        }
        let originals = picks.iter().map(|&i| batch.frame(i).to_vec());
        cells.extend(originals.chain(std::iter::repeat(vec![0; size])).take(columns));
        let decoded = reconstruct(model, batch, &picks, device)?;
        cells.extend(decoded.into_iter().chain(std::iter::repeat(vec![0; size])).take(columns));
    }
    Ok(cells)
}

/// The store frames (indices into a ragged store of videos with `counts` frames at `offsets`)
/// to train on and to hold out, at most `max_frames` (≥ 2) in all, an eighth of them held out.
pub fn select_frames(counts: &[u64], offsets: &[u64], heldout_fraction: f64, max_frames: usize) -> (Vec<u64>, Vec<u64>) {
    let max_frames = max_frames.max(2);
    let (train, heldout) = split_heldout(counts, offsets, heldout_fraction);
    let held_budget = (max_frames / 8).max(1).min(heldout.len());
    (spread(&train, max_frames - held_budget), spread(&heldout, held_budget))
}

fn learning_rate(cfg: &VaeTrainConfig, step: usize) -> f64 {
    if step < cfg.warmup_steps {
        return cfg.lr * (step + 1) as f64 / cfg.warmup_steps as f64;
    }
    let span = cfg.steps.saturating_sub(cfg.warmup_steps).max(1) as f64;
    let t = (step - cfg.warmup_steps) as f64 / span;
    cfg.lr * (0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * t).cos()))
}

/// Trains a fresh autoencoder of `vae_cfg` on the frames `train` (indices into `frames`) and
/// evaluates it on `heldout`. `on_step(step, loss)` is called after every step.
pub fn train(
    vae_cfg: &VaeConfig,
    cfg: &VaeTrainConfig,
    frames: FrameBatch<'_>,
    train: &[usize],
    heldout: &[usize],
    device: &Device,
    on_step: &mut (dyn FnMut(usize, f32) + Send),
) -> Result<TrainOutcome, VaeError> {
    let f = vae_cfg.downsample_factor();
    let (h, w) = (frames.height, frames.width);
    let (ch, cw) = if cfg.crop == 0 { (h, w) } else { (cfg.crop, cfg.crop) };
    if train.is_empty() {
        return Err(VaeError::Train("no training frames".into()));
    }
    if frames.pixels.len() != frames.count * h * w * 3 {
        return Err(VaeError::Train(format!("{} bytes do not hold {} frames of {h}×{w}×3", frames.pixels.len(), frames.count)));
    }
    if let Some(&bad) = train.iter().chain(heldout).find(|&&i| i >= frames.count) {
        return Err(VaeError::Train(format!("frame index {bad} is out of range (there are {} frames)", frames.count)));
    }
    if ch > h || cw > w || ch % f != 0 || cw % f != 0 || h % f != 0 || w % f != 0 {
        return Err(VaeError::Train(format!(
            "crop {ch}×{cw} of {h}×{w} frames: both must be multiples of the downsampling factor {f} and the crop no larger than the frame"
        )));
    }
    if cfg.steps == 0 || cfg.batch_size == 0 {
        return Err(VaeError::Train("steps and batch_size must be at least 1".into()));
    }
    if cfg.ranks == 0 || !cfg.batch_size.is_multiple_of(cfg.ranks) {
        return Err(VaeError::Train(format!("{} ranks cannot share batches of {} crops evenly", cfg.ranks, cfg.batch_size)));
    }

    let run = |collective: Collective, on_step: Option<&mut (dyn FnMut(usize, f32) + Send)>| {
        train_rank(vae_cfg, cfg, frames, train, (ch, cw), device, collective, on_step)
    };
    let (model, losses) = if cfg.ranks == 1 {
        run(Collective::Single, Some(on_step))?
    } else {
        let threads = Some((rayon::current_num_threads() / cfg.ranks).max(1));
        run_ranks(
            Collective::threads(cfg.ranks),
            threads,
            |lead| run(lead, Some(on_step)),
            |_, c| run(c, None).map(drop),
            |rank, e| VaeError::Train(format!("rank {rank}: {e}")),
        )?
    };

    let model = model.valid();
    let mut config = vae_cfg.clone();
    let sample: Vec<usize> = spread(train, 64);
    config.scaling_factor = 1.0 / latent_std(&model, frames, &sample, device).max(1e-6);
    let heldout_psnr = (!heldout.is_empty()).then(|| mean_psnr(&model, frames, &spread(heldout, 64), device));
    let train_psnr = mean_psnr(&model, frames, &sample, device);
    Ok(TrainOutcome { model, config, heldout_psnr, train_psnr, losses })
}

/// The training loop on one rank of `collective`: every rank draws the whole batch's crops
/// and noise from the seeded streams and trains on its contiguous share; its loss is its
/// share's mean divided by the ranks, so the summed gradients are the whole batch's. One rank
/// (`Collective::Single`) is the plain loop. Returns the trained weights (the same bits on
/// every rank) and the whole batch's loss per step.
#[allow(clippy::too_many_arguments)]
fn train_rank(
    vae_cfg: &VaeConfig,
    cfg: &VaeTrainConfig,
    frames: FrameBatch<'_>,
    train: &[usize],
    (ch, cw): (usize, usize),
    device: &Device,
    mut collective: Collective,
    mut on_step: Option<&mut (dyn FnMut(usize, f32) + Send)>,
) -> Result<(AutoencoderKL, Vec<f32>), VaeError> {
    let f = vae_cfg.downsample_factor();
    let (h, w) = (frames.height, frames.width);
    let (rank, world) = (collective.rank(), collective.world_size());
    let share = cfg.batch_size / world;
    let mine = rank * share..(rank + 1) * share;
    let ad = device.clone().autodiff();
    let mut model = AutoencoderKL::init_for_training(vae_cfg, cfg.seed, cfg.initial_logvar as f32, cfg.zero_residual_init, &ad)?;
    let mut optimizer = AdamW { beta_1: 0.9, beta_2: 0.999, epsilon: 1e-8, weight_decay: cfg.weight_decay as f32 }.init();
    // One stream for data, one for posterior noise, both derived from the seed; the model's
    // initialisation uses the seed itself.
    let mut data_rng = ChaCha8Rng::seed_from_u64(cfg.seed.wrapping_add(1));
    let mut noise_rng = ChaCha8Rng::seed_from_u64(cfg.seed.wrapping_add(2));
    let per_crop = vae_cfg.latent_channels * (ch / f) * (cw / f);
    let latent = [share, vae_cfg.latent_channels, ch / f, cw / f];
    let pixels_per_sample = (3 * ch * cw) as f64;
    let mut losses = Vec::with_capacity(cfg.steps);
    let collective_err = |e: latte_train::TrainError| VaeError::Train(format!("summing gradients over {world} ranks: {e}"));

    for step in 0..cfg.steps {
        let picks: Vec<_> = (0..cfg.batch_size)
            .map(|_| {
                let i = train[data_rng.random_range(0..train.len())];
                let top = data_rng.random_range(0..=h - ch);
                let left = data_rng.random_range(0..=w - cw);
                (i, top, left, data_rng.random_bool(0.5))
            })
            .collect();
        let x = frames.tensor(&picks[mine.clone()], (ch, cw), &ad); // N, 3, S, S
        let mut noise: Vec<f32> = (0..cfg.batch_size * per_crop).map(|_| noise_rng.sample(StandardNormal)).collect();
        let noise: Vec<f32> = noise.drain(mine.start * per_crop..mine.end * per_crop).collect();
        let noise = Tensor::<4>::from_data(TensorData::new(noise, latent), &ad); // N, Z, h, w

        let posterior = model.encode(x.clone());
        let reconstruction = model.decode(posterior.sample(noise)); // N, 3, S, S
        let diff = reconstruction - x;
        let rec = match cfg.loss {
            ReconstructionLoss::L1 => diff.abs().mean(),
            ReconstructionLoss::Mse => diff.square().mean(),
        };
        let kl = posterior.kl().mean() / pixels_per_sample;
        let mut loss = rec + kl * cfg.kl_weight;
        if world > 1 {
            loss = loss / world as f64;
        }

        let mut value = loss.clone().into_scalar::<f32>();
        let non_finite =
            |value: f32| VaeError::Train(format!("loss became {value} at step {step}; lower the learning rate (lr = {})", cfg.lr));
        if world == 1 && !value.is_finite() {
            return Err(non_finite(value));
        }
        let mut grads = GradientsParams::from_grads(loss.backward(), &model);
        if world > 1 {
            let mut flat = grads_to_host(&model, &grads);
            flat.push(value);
            collective.all_reduce_sum(&mut flat).map_err(collective_err)?;
            value = flat.pop().unwrap_or(f32::NAN);
            if !value.is_finite() {
                return Err(non_finite(value));
            }
            grads = grads_from_host(&model, &flat, &grads, device).map_err(collective_err)?;
        }
        model = optimizer.step(learning_rate(cfg, step), model, grads);
        losses.push(value);
        if let Some(on_step) = on_step.as_mut() {
            on_step(step, value);
        }
    }
    Ok((model, losses))
}

/// At most `n` of `indices`, spread evenly.
pub fn spread<T: Copy>(indices: &[T], n: usize) -> Vec<T> {
    if indices.len() <= n {
        return indices.to_vec();
    }
    (0..n).map(|k| indices[k * indices.len() / n]).collect()
}

/// Frame indices of the training and held-out sets: whole videos, evenly spread over the
/// store's order, are held out so the PSNR measures frames the VAE has never seen; a single
/// video gives up its last frames instead.
pub fn split_heldout(counts: &[u64], offsets: &[u64], fraction: f64) -> (Vec<u64>, Vec<u64>) {
    let n = counts.len();
    if n == 0 {
        return (Vec::new(), Vec::new());
    }
    if n == 1 {
        let c = counts[0];
        let held = ((c as f64 * fraction).round() as u64).min(c.saturating_sub(1));
        return ((0..c - held).collect(), (c - held..c).collect());
    }
    let held = if fraction > 0.0 { ((n as f64 * fraction).round() as usize).clamp(1, n - 1) } else { 0 };
    let held_videos: Vec<usize> = (0..held).map(|k| (2 * k + 1) * n / (2 * held)).collect();
    let (mut train, mut heldout) = (Vec::new(), Vec::new());
    for v in 0..n {
        let frames = offsets[v]..offsets[v] + counts[v];
        if held_videos.contains(&v) {
            heldout.extend(frames)
        } else {
            train.extend(frames)
        }
    }
    (train, heldout)
}

fn batches(indices: &[usize]) -> impl Iterator<Item = &[usize]> {
    indices.chunks(8)
}

fn gather(frames: FrameBatch<'_>, indices: &[usize], device: &Device) -> Tensor<4> {
    let picks: Vec<_> = indices.iter().map(|&i| (i, 0, 0, false)).collect();
    frames.tensor(&picks, (frames.height, frames.width), device)
}

/// Standard deviation of the posterior means over `indices`.
fn latent_std(model: &AutoencoderKL, frames: FrameBatch<'_>, indices: &[usize], device: &Device) -> f64 {
    let (mut sum, mut sum_sq, mut n) = (0f64, 0f64, 0usize);
    for chunk in batches(indices) {
        let mean = model.encode(gather(frames, chunk, device)).mean;
        let values = mean.into_data().try_into_vec::<f32>().unwrap_or_default();
        n += values.len();
        for v in values {
            sum += v as f64;
            sum_sq += (v as f64) * (v as f64);
        }
    }
    let m = sum / n.max(1) as f64;
    (sum_sq / n.max(1) as f64 - m * m).max(0.0).sqrt()
}

/// The frames `indices` decoded from their posterior means, as the sampling script converts
/// decoded videos ([`crate::to_u8`]): `[H, W, 3]` uint8 each.
pub fn reconstruct(model: &AutoencoderKL, frames: FrameBatch<'_>, indices: &[usize], device: &Device) -> Result<Vec<Vec<u8>>, VaeError> {
    let mut images = Vec::with_capacity(indices.len());
    for chunk in batches(indices) {
        images.extend(model.decode_rgb8(model.encode(gather(frames, chunk, device)).mean)?.frames);
    }
    Ok(images)
}

/// Mean over frames of the PSNR (8-bit peak) of the decoded posterior mean.
pub fn mean_psnr(model: &AutoencoderKL, frames: FrameBatch<'_>, indices: &[usize], device: &Device) -> f64 {
    let mut total = 0.0;
    for chunk in batches(indices) {
        let x = gather(frames, chunk, device);
        let decoded = model.decode(model.encode(x.clone()).mean).clamp(-1.0, 1.0);
        let n = chunk.len();
        // Errors in [-1, 1] units; the 8-bit peak 255 is 2 in these units.
        let mse = (decoded - x).square().reshape([n, 3 * frames.height * frames.width]).mean_dim(1);
        for m in mse.into_data().try_into_vec::<f32>().unwrap_or_default() {
            total += 10.0 * (4.0 / (m as f64).max(1e-12)).log10();
        }
    }
    total / indices.len().max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_holds_out_whole_videos() {
        let (train, held) = split_heldout(&[3, 2, 4], &[0, 3, 5], 0.34);
        assert_eq!(train.len() + held.len(), 9);
        assert!(!held.is_empty() && !train.is_empty());
        // Every held-out frame's video is entirely held out.
        for v in [(0u64..3), (3..5), (5..9)] {
            let in_held = v.clone().filter(|i| held.contains(i)).count();
            assert!(in_held == 0 || in_held == v.count());
        }
        assert_eq!(held, vec![3, 4], "the middle video is held out");
    }

    #[test]
    fn single_video_gives_up_its_last_frames() {
        assert_eq!(split_heldout(&[10], &[0], 0.2), ((0..8).collect(), vec![8, 9]));
    }

    #[test]
    fn selection_keeps_an_eighth_of_the_budget_for_held_out_frames() {
        // Videos of 10, 10, 10 frames: the middle one is held out (fraction 0.3).
        let (train, held) = select_frames(&[10, 10, 10], &[0, 10, 20], 0.3, 16);
        assert_eq!(held, [10, 15], "16 / 8 = 2 held-out frames, spread over the middle video");
        assert_eq!(train.len(), 14);
        assert!(train.iter().all(|i| !(10..20).contains(i)));
        let (train, held) = select_frames(&[10, 10, 10], &[0, 10, 20], 0.3, 4096);
        assert_eq!((train.len(), held.len()), (20, 10), "a budget above the store keeps every frame");
    }
}
