//! The Gaussian diffusion process on video latents: forward noising, the posterior, and the
//! reverse-step mean and learned-range variance.
//!
//! Port of `GaussianDiffusion` (`q_sample`, `q_posterior_mean_variance`, `p_mean_variance`,
//! `_predict_xstart_from_eps`, `_predict_eps_from_xstart`) in Latte's 5-D form. Tables are
//! float64; as in the reference's `_extract_into_tensor`, each step indexes them per sample and
//! casts the value to float32 before any tensor arithmetic.
//!
//! Shape legend: B batch, F frames, C latent channels (4), H, W latent height and width.
//! Model outputs are (B, F, 2C, H, W): ε̂ in channels 0..C, the variance value v in C..2C.

use burn::tensor::{Device, Tensor};

use crate::{space_timesteps, DiffusionError, Schedule};

/// The reverse-step distribution `p(x_{t−1} | x_t)` and the x̂0 it was built from.
#[derive(Clone, Debug)]
pub struct MeanVariance {
    pub mean: Tensor<5>,         // (B, F, C, H, W)
    pub log_variance: Tensor<5>, // (B, F, C, H, W)
    pub pred_xstart: Tensor<5>,  // (B, F, C, H, W)
}

/// One diffusion process (1000 steps for training, respaced for sampling).
#[derive(Clone, Debug)]
pub struct GaussianDiffusion {
    pub schedule: Schedule,
}

impl GaussianDiffusion {
    pub fn new(schedule: Schedule) -> Self {
        Self { schedule }
    }

    /// `create_diffusion(timestep_respacing)` with Latte's fixed options: linear schedule of
    /// 1000 steps, ε prediction, learned-range variance. `""` keeps all 1000 steps (training);
    /// `"250"` is what the sample scripts use.
    pub fn create(timestep_respacing: &str) -> Result<Self, DiffusionError> {
        let base = Schedule::linear(1000)?;
        if timestep_respacing.is_empty() {
            return Ok(Self::new(base));
        }
        let kept = space_timesteps(base.num_timesteps(), timestep_respacing)?;
        Ok(Self::new(base.respaced(&kept)?))
    }

    pub fn num_timesteps(&self) -> usize {
        self.schedule.num_timesteps()
    }

    /// Every timestep in range and one per sample of `x`.
    pub(crate) fn check_t(&self, what: &'static str, x: &Tensor<5>, t: &[usize]) -> Result<(), DiffusionError> {
        let batch = x.dims()[0];
        if t.len() != batch {
            return Err(DiffusionError::BatchMismatch { what, got: t.len(), batch });
        }
        match t.iter().find(|&&t| t >= self.num_timesteps()) {
            Some(&t) => Err(DiffusionError::TimestepOutOfRange { t, num_timesteps: self.num_timesteps() }),
            None => Ok(()),
        }
    }

    pub(crate) fn check_same(what: &'static str, a: &Tensor<5>, b: &Tensor<5>) -> Result<(), DiffusionError> {
        if a.dims() != b.dims() {
            return Err(DiffusionError::ShapeMismatch { what, expected: a.dims().to_vec(), got: b.dims().to_vec() });
        }
        Ok(())
    }

    /// `_extract_into_tensor`: `table[t]` per sample, cast to float32, as (B, 1, 1, 1, 1).
    pub(crate) fn extract(table: &[f64], t: &[usize], device: &Device) -> Tensor<5> {
        let values: Vec<f32> = t.iter().map(|&t| table[t] as f32).collect();
        Tensor::<1>::from_floats(values.as_slice(), device).reshape([t.len(), 1, 1, 1, 1])
    }

    /// `x_t = sqrt(ᾱ_t)·x0 + sqrt(1 − ᾱ_t)·ε`.
    pub fn q_sample(&self, x_start: Tensor<5>, t: &[usize], noise: Tensor<5>) -> Result<Tensor<5>, DiffusionError> {
        self.check_t("q_sample", &x_start, t)?;
        Self::check_same("q_sample noise", &x_start, &noise)?;
        let s = &self.schedule;
        let dev = x_start.device();
        Ok(Self::extract(&s.sqrt_alphas_cumprod, t, &dev) * x_start + Self::extract(&s.sqrt_one_minus_alphas_cumprod, t, &dev) * noise)
    }

    /// Mean and clipped log variance of `q(x_{t−1} | x_t, x0)`.
    pub fn q_posterior(&self, x_start: Tensor<5>, x_t: Tensor<5>, t: &[usize]) -> Result<(Tensor<5>, Tensor<5>), DiffusionError> {
        self.check_t("q_posterior", &x_t, t)?;
        Self::check_same("q_posterior x_start", &x_t, &x_start)?;
        Ok(self.q_posterior_unchecked(x_start, x_t, t))
    }

    pub(crate) fn q_posterior_unchecked(&self, x_start: Tensor<5>, x_t: Tensor<5>, t: &[usize]) -> (Tensor<5>, Tensor<5>) {
        let s = &self.schedule;
        let dev = x_t.device();
        let [b, f, c, h, w] = x_t.dims();
        let mean = Self::extract(&s.posterior_mean_coef1, t, &dev) * x_start + Self::extract(&s.posterior_mean_coef2, t, &dev) * x_t;
        let log_var = Self::extract(&s.posterior_log_variance_clipped, t, &dev).expand([b, f, c, h, w]);
        (mean, log_var)
    }

    /// `x̂0 = sqrt(1/ᾱ_t)·x_t − sqrt(1/ᾱ_t − 1)·ε̂`.
    pub fn predict_xstart_from_eps(&self, x_t: Tensor<5>, t: &[usize], eps: Tensor<5>) -> Tensor<5> {
        let s = &self.schedule;
        let dev = x_t.device();
        Self::extract(&s.sqrt_recip_alphas_cumprod, t, &dev) * x_t - Self::extract(&s.sqrt_recipm1_alphas_cumprod, t, &dev) * eps
    }

    /// `ε = (sqrt(1/ᾱ_t)·x_t − x̂0) / sqrt(1/ᾱ_t − 1)`.
    pub fn predict_eps_from_xstart(&self, x_t: Tensor<5>, t: &[usize], pred_xstart: Tensor<5>) -> Tensor<5> {
        let s = &self.schedule;
        let dev = x_t.device();
        (Self::extract(&s.sqrt_recip_alphas_cumprod, t, &dev) * x_t - pred_xstart) / Self::extract(&s.sqrt_recipm1_alphas_cumprod, t, &dev)
    }

    /// `p_mean_variance` with learned-range variance: splits `model_out` (B, F, 2C, H, W) on the
    /// channel axis into ε̂ and v, interpolates `log σ² = frac·log β_t + (1 − frac)·log β̃_t`
    /// with `frac = (v + 1)/2` (v unconstrained), and takes the posterior mean at x̂0.
    /// `clip_denoised` clamps x̂0 to [−1, 1]; Latte's sampler and loss pass `false`.
    pub fn p_mean_variance(
        &self,
        model_out: Tensor<5>,
        x_t: Tensor<5>,
        t: &[usize],
        clip_denoised: bool,
    ) -> Result<MeanVariance, DiffusionError> {
        self.check_t("p_mean_variance", &x_t, t)?;
        let (eps, v) = split_output(model_out, &x_t)?;
        Ok(self.p_mean_variance_split(eps, v, x_t, t, clip_denoised))
    }

    pub(crate) fn p_mean_variance_split(
        &self,
        eps: Tensor<5>,
        v: Tensor<5>,
        x_t: Tensor<5>,
        t: &[usize],
        clip_denoised: bool,
    ) -> MeanVariance {
        let s = &self.schedule;
        let dev = x_t.device();
        let min_log = Self::extract(&s.posterior_log_variance_clipped, t, &dev); // (B, 1, 1, 1, 1)
        let max_log = Self::extract(&s.log_betas, t, &dev); // (B, 1, 1, 1, 1)
        let frac = (v + 1.0) / 2.0; // (B, F, C, H, W)
        let log_variance = frac.clone() * max_log + (frac.neg() + 1.0) * min_log;
        let mut pred_xstart = self.predict_xstart_from_eps(x_t.clone(), t, eps);
        if clip_denoised {
            pred_xstart = pred_xstart.clamp(-1.0, 1.0);
        }
        let (mean, _) = self.q_posterior_unchecked(pred_xstart.clone(), x_t, t);
        MeanVariance { mean, log_variance, pred_xstart }
    }
}

/// Splits a model output (B, F, 2C, H, W) into ε̂ and v, each (B, F, C, H, W) like `x_t`.
pub fn split_output(model_out: Tensor<5>, x_t: &Tensor<5>) -> Result<(Tensor<5>, Tensor<5>), DiffusionError> {
    let [b, f, c, h, w] = x_t.dims();
    if model_out.dims() != [b, f, 2 * c, h, w] {
        return Err(DiffusionError::ShapeMismatch {
            what: "model output (ε̂ and learned variance on axis 2)",
            expected: vec![b, f, 2 * c, h, w],
            got: model_out.dims().to_vec(),
        });
    }
    let eps = model_out.clone().narrow(2, 0, c);
    let v = model_out.narrow(2, c, c);
    Ok((eps, v))
}
