//! Ancestral (DDPM) and DDIM sampling steps and loops over a (respaced) process.
//!
//! Port of `p_sample`/`p_sample_loop` and `ddim_sample`/`ddim_sample_loop` with Latte's
//! options: no x̂0 clipping, no noise at the last step, the network called with the original
//! timestep (`timestep_map`). Classifier-free guidance lives in the model's `forward_with_cfg`;
//! with a doubled batch both halves are stepped independently and the caller keeps the first.
//!
//! Shape legend: B batch, F frames, C latent channels, H, W latent height and width.

use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::Rng;
use rand_distr::StandardNormal;

use crate::{DiffusionError, GaussianDiffusion};

/// A standard normal tensor drawn on the host from `rng` (so that a seed fixes it on every
/// device), in row-major order.
pub fn gaussian_noise<const D: usize>(shape: [usize; D], rng: &mut impl Rng, device: &Device) -> Tensor<D> {
    let n: usize = shape.iter().product();
    let values: Vec<f32> = (0..n).map(|_| rng.sample(StandardNormal)).collect();
    Tensor::from_data(TensorData::new(values, shape), device)
}

/// `1[t ≠ 0]` per sample as (B, 1, 1, 1, 1).
fn nonzero_mask(t: &[usize], device: &Device) -> Tensor<5> {
    let m: Vec<f32> = t.iter().map(|&t| if t != 0 { 1.0 } else { 0.0 }).collect();
    Tensor::<1>::from_floats(m.as_slice(), device).reshape([t.len(), 1, 1, 1, 1])
}

impl GaussianDiffusion {
    /// The original (1000-step) timesteps the network sees for step indices `k`.
    pub fn original_timesteps(&self, k: &[usize], device: &Device) -> Tensor<1, Int> {
        let t: Vec<i64> = k.iter().map(|&k| self.schedule.timestep_map[k] as i64).collect();
        Tensor::from_data(TensorData::new(t, [k.len()]), device)
    }

    /// One ancestral step: `x_{k−1} = μ + 1[k ≠ 0]·exp(½·log σ²)·z`.
    pub fn ddpm_step(&self, model_out: Tensor<5>, x: Tensor<5>, k: &[usize], z: Tensor<5>) -> Result<Tensor<5>, DiffusionError> {
        Self::check_same("ddpm_step noise", &x, &z)?;
        let dev = x.device();
        let out = self.p_mean_variance(model_out, x, k, false)?;
        Ok(out.mean + nonzero_mask(k, &dev) * (out.log_variance * 0.5).exp() * z)
    }

    /// One DDIM step with noise scale `eta` (0 = deterministic; `z` is unused then but must
    /// have x's shape). The learned variance is ignored.
    pub fn ddim_step(
        &self,
        model_out: Tensor<5>,
        x: Tensor<5>,
        k: &[usize],
        eta: f64,
        z: Tensor<5>,
    ) -> Result<Tensor<5>, DiffusionError> {
        Self::check_same("ddim_step noise", &x, &z)?;
        let dev = x.device();
        let out = self.p_mean_variance(model_out, x.clone(), k, false)?;
        let eps = self.predict_eps_from_xstart(x, k, out.pred_xstart.clone());
        let s = &self.schedule;
        let alpha_bar = Self::extract(&s.alphas_cumprod, k, &dev); // (B, 1, 1, 1, 1)
        let alpha_bar_prev = Self::extract(&s.alphas_cumprod_prev, k, &dev); // (B, 1, 1, 1, 1)
        let sigma = ((alpha_bar_prev.clone().neg() + 1.0) / (alpha_bar.clone().neg() + 1.0)).sqrt() * eta
            * (alpha_bar / alpha_bar_prev.clone()).neg().add_scalar(1.0).sqrt();
        let mean_pred = out.pred_xstart * alpha_bar_prev.clone().sqrt()
            + ((alpha_bar_prev.neg() + 1.0) - sigma.clone().powi_scalar(2)).sqrt() * eps;
        Ok(mean_pred + nonzero_mask(k, &dev) * sigma * z)
    }

    /// `p_sample_loop`: runs k = K−1..0 from `noise` (B, F, C, H, W). `model(x, t)` gets the
    /// original timesteps and returns (B, F, 2C, H, W); `rng` draws each step's z; `on_step`
    /// is told how many of the K steps are done.
    pub fn ddpm_sample_loop(
        &self,
        mut model: impl FnMut(Tensor<5>, Tensor<1, Int>) -> Tensor<5>,
        noise: Tensor<5>,
        rng: &mut impl Rng,
        mut on_step: impl FnMut(usize),
    ) -> Result<Tensor<5>, DiffusionError> {
        let dims = noise.dims();
        let dev = noise.device();
        let mut x = noise;
        for (done, k) in (0..self.num_timesteps()).rev().enumerate() {
            let ks = vec![k; dims[0]];
            let out = model(x.clone(), self.original_timesteps(&ks, &dev));
            let z = gaussian_noise(dims, rng, &dev);
            x = self.ddpm_step(out, x, &ks, z)?;
            on_step(done + 1);
        }
        Ok(x)
    }

    /// `ddim_sample_loop` with noise scale `eta`; arguments as for [`Self::ddpm_sample_loop`].
    /// With `eta = 0` no noise is drawn and `rng` is left untouched.
    pub fn ddim_sample_loop(
        &self,
        mut model: impl FnMut(Tensor<5>, Tensor<1, Int>) -> Tensor<5>,
        noise: Tensor<5>,
        eta: f64,
        rng: &mut impl Rng,
        mut on_step: impl FnMut(usize),
    ) -> Result<Tensor<5>, DiffusionError> {
        let dims = noise.dims();
        let dev = noise.device();
        let mut x = noise;
        for (done, k) in (0..self.num_timesteps()).rev().enumerate() {
            let ks = vec![k; dims[0]];
            let out = model(x.clone(), self.original_timesteps(&ks, &dev));
            let z = if eta == 0.0 { x.zeros_like() } else { gaussian_noise(dims, rng, &dev) };
            x = self.ddim_step(out, x, &ks, eta, z)?;
            on_step(done + 1);
        }
        Ok(x)
    }
}
