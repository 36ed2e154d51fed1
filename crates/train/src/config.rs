//! Training hyper-parameters. Defaults are the reference's (`train.py`, spec §3.1); tiny runs
//! override a few (EMA decay, steps, batch size).

use serde::{Deserialize, Serialize};

use latte_diffusion::LossWeighting;

use crate::TrainError;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Optimizer steps to reach (a resumed run continues up to this step).
    pub steps: u64,
    /// Clips per micro-batch.
    pub batch_size: usize,
    /// Micro-batches whose gradients are summed (each loss divided by this) per optimizer step.
    pub grad_accum: usize,
    /// Frames per clip (16 in the reference).
    pub num_frames: usize,
    /// Extra independent image frames per clip for joint image-video training (0 = video only;
    /// the reference's LatteIMG uses 8).
    pub image_frames: usize,
    /// AdamW learning rate; the reference hard-codes 1e-4.
    pub lr: f64,
    /// Linear warm-up from lr/warmup_steps to lr over this many steps (0 = constant, as the
    /// reference).
    pub warmup_steps: u64,
    pub weight_decay: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// EMA decay per optimizer step (0.9999 in the reference; short runs need less).
    pub ema_decay: f64,
    /// Global gradient L2 norm limit (0.1 in the reference) ...
    pub clip_max_norm: f64,
    /// ... applied from this (0-based) step on (`start_clip_iter`; dataset-specific, e.g.
    /// 20k for FFS/Sky, 100k for UCF101). `None` never clips.
    pub clip_from_step: Option<u64>,
    /// Probability of replacing a clip's class label by the null class (classifier-free
    /// guidance dropout, 0.1 in the reference). Unused for unconditional data.
    pub class_dropout_prob: f64,
    /// Seed of the data stream (clip order, windows, flips, posterior samples, timesteps,
    /// noise, label dropout).
    pub data_seed: u64,
    /// Save a checkpoint every this many optimizer steps (and at the end).
    pub checkpoint_every: u64,
    /// How many of the newest checkpoints to keep on disk.
    pub keep_checkpoints: usize,
    /// Micro-batches prepared ahead of compute by each loader thread.
    pub prefetch: usize,
    /// Loader threads drawing micro-batches in parallel (a GPU step outpaces one thread on
    /// large clips); the batches do not depend on it.
    pub loader_threads: usize,
    /// Latent scale factor applied after sampling the posterior (SD's VAE: 0.18215).
    pub scale_factor: f64,
    /// γ of min-SNR loss weighting ([`LossWeighting::MinSnr`]); 0 weighs every timestep
    /// alike, as the reference. Left out of checkpoints while 0, so their bytes are what they
    /// were before the option existed.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub min_snr_gamma: f64,
}

fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            steps: 1_000_000,
            batch_size: 5,
            grad_accum: 1,
            num_frames: 16,
            image_frames: 0,
            lr: 1e-4,
            warmup_steps: 0,
            weight_decay: 0.0,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            ema_decay: 0.9999,
            clip_max_norm: 0.1,
            clip_from_step: None,
            class_dropout_prob: 0.1,
            data_seed: 3407,
            checkpoint_every: 10_000,
            keep_checkpoints: 2,
            prefetch: 2,
            loader_threads: 1,
            scale_factor: 0.18215,
            min_snr_gamma: 0.0,
        }
    }
}

impl TrainConfig {
    /// How the ε-MSE of each clip is weighted by its timestep.
    pub fn loss_weighting(&self) -> LossWeighting {
        match self.min_snr_gamma {
            g if g > 0.0 => LossWeighting::MinSnr { gamma: g },
            _ => LossWeighting::Uniform,
        }
    }

    /// Rejects values no run can use, naming the key.
    pub fn validate(&self) -> Result<(), TrainError> {
        let bad = |key: &'static str, reason: String| Err(TrainError::Config { key, reason });
        if self.batch_size == 0 {
            return bad("batch_size", "must be at least 1".into());
        }
        if self.grad_accum == 0 {
            return bad("grad_accum", "must be at least 1".into());
        }
        if self.num_frames == 0 {
            return bad("num_frames", "must be at least 1".into());
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad("lr", format!("must be a positive number, got {}", self.lr));
        }
        if !(0.0..=1.0).contains(&self.ema_decay) {
            return bad("ema_decay", format!("must be in [0, 1], got {}", self.ema_decay));
        }
        if !(0.0..=1.0).contains(&self.class_dropout_prob) {
            return bad("class_dropout_prob", format!("must be in [0, 1], got {}", self.class_dropout_prob));
        }
        for (key, b) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            if !(0.0..1.0).contains(&b) {
                return bad(key, format!("must be in [0, 1), got {b}"));
            }
        }
        if !(self.eps > 0.0) {
            return bad("eps", format!("must be positive, got {}", self.eps));
        }
        if self.weight_decay < 0.0 {
            return bad("weight_decay", format!("must be >= 0, got {}", self.weight_decay));
        }
        if !(self.min_snr_gamma >= 0.0 && self.min_snr_gamma.is_finite()) {
            return bad("min_snr_gamma", format!("must be a number >= 0 (0 = uniform weighting), got {}", self.min_snr_gamma));
        }
        if self.clip_from_step.is_some() && !(self.clip_max_norm > 0.0) {
            return bad("clip_max_norm", format!("must be positive when clipping, got {}", self.clip_max_norm));
        }
        if self.checkpoint_every == 0 {
            return bad("checkpoint_every", "must be at least 1".into());
        }
        if self.keep_checkpoints == 0 {
            return bad("keep_checkpoints", "must be at least 1 (resume needs the last one)".into());
        }
        Ok(())
    }

    /// The learning rate of the 0-based optimizer step `step`: constant, after an optional
    /// linear warm-up.
    pub fn lr_at(&self, step: u64) -> f64 {
        if step < self.warmup_steps {
            self.lr * (step + 1) as f64 / self.warmup_steps as f64
        } else {
            self.lr
        }
    }
}
