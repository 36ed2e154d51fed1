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
    /// What the learning rate does after the warm-up. Left out of checkpoints while constant
    /// (the reference's), so their bytes are what they were before the option existed.
    #[serde(default, skip_serializing_if = "LrDecay::is_constant")]
    pub lr_decay: LrDecay,
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

/// The learning rate after the warm-up ([ours]; the reference keeps it constant).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LrDecay {
    #[default]
    Constant,
    /// Half a cosine from `lr` at the end of the warm-up to 0 at `steps`. The rate depends on
    /// `steps`, so a checkpoint of a longer cosine run is not a shorter run's final model.
    Cosine,
}

impl LrDecay {
    /// The pipeline parameter's spelling.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "constant" => Some(Self::Constant),
            "cosine" => Some(Self::Cosine),
            _ => None,
        }
    }

    fn is_constant(&self) -> bool {
        *self == Self::Constant
    }
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
            lr_decay: LrDecay::Constant,
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

    /// The learning rate of the 0-based optimizer step `step`: an optional linear warm-up,
    /// then [`LrDecay`].
    pub fn lr_at(&self, step: u64) -> f64 {
        if step < self.warmup_steps {
            return self.lr * (step + 1) as f64 / self.warmup_steps as f64;
        }
        match self.lr_decay {
            LrDecay::Constant => self.lr,
            LrDecay::Cosine => {
                // Step `steps - 1` is the last one taken; it gets a small positive rate, and a
                // run resumed past `steps` stays at 0 instead of climbing the cosine again.
                let span = self.steps.saturating_sub(self.warmup_steps).max(1) as f64;
                let t = ((step - self.warmup_steps) as f64 / span).min(1.0);
                self.lr * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_decay_runs_from_lr_after_warm_up_to_zero_at_the_last_step() {
        let cfg = TrainConfig { steps: 110, warmup_steps: 10, lr: 1e-3, lr_decay: LrDecay::Cosine, ..TrainConfig::default() };
        let close = |a: f64, b: f64| (a - b).abs() < 1e-15;
        assert!(close(cfg.lr_at(0), 1e-4) && close(cfg.lr_at(9), 1e-3), "warm-up");
        assert_eq!(cfg.lr_at(10), 1e-3);
        assert!(close(cfg.lr_at(60), 5e-4), "half way: {}", cfg.lr_at(60));
        assert!(cfg.lr_at(109) > 0.0 && cfg.lr_at(109) < 1e-6, "{}", cfg.lr_at(109));
        assert_eq!(cfg.lr_at(110), 0.0);
        // A run resumed past its steps does not climb the cosine again.
        assert_eq!(cfg.lr_at(500), 0.0);
        let rates: Vec<f64> = (10..110).map(|s| cfg.lr_at(s)).collect();
        assert!(rates.windows(2).all(|w| w[1] < w[0]), "the rate falls at every step");
    }

    #[test]
    fn constant_decay_is_the_reference_rate_and_stays_out_of_the_serialised_config() {
        let cfg = TrainConfig { steps: 100, warmup_steps: 4, lr: 2e-4, ..TrainConfig::default() };
        assert_eq!(cfg.lr_at(3), 2e-4);
        assert_eq!(cfg.lr_at(99), 2e-4);
        let text = serde_json::to_string(&cfg).unwrap();
        assert!(!text.contains("lr_decay"), "{text}");
        let back: TrainConfig = serde_json::from_str(&text).unwrap();
        assert_eq!(back, cfg);

        let cosine = TrainConfig { lr_decay: LrDecay::Cosine, ..cfg };
        let text = serde_json::to_string(&cosine).unwrap();
        assert!(text.contains("\"lr_decay\":\"cosine\""), "{text}");
        assert_eq!(serde_json::from_str::<TrainConfig>(&text).unwrap(), cosine);
        assert_eq!(LrDecay::parse("cosine"), Some(LrDecay::Cosine));
        assert_eq!(LrDecay::parse("linear"), None);
    }
}
