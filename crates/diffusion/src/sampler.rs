//! Ancestral (DDPM) and DDIM sampling steps and loops over a (respaced) process.
//!
//! Port of `p_sample`/`p_sample_loop` and `ddim_sample`/`ddim_sample_loop` with Latte's
//! options: no x̂0 clipping, no noise at the last step, the network called with the original
//! timestep (`timestep_map`). Classifier-free guidance lives in the model (`guided_forward`),
//! which returns only the kept (conditional) half, so the loop steps B rows.
//!
//! Shape legend: B batch, F frames, C latent channels, H, W latent height and width.

use std::ops::Range;

use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
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
    pub fn ddim_step(&self, model_out: Tensor<5>, x: Tensor<5>, k: &[usize], eta: f64, z: Tensor<5>) -> Result<Tensor<5>, DiffusionError> {
        Self::check_same("ddim_step noise", &x, &z)?;
        let dev = x.device();
        let out = self.p_mean_variance(model_out, x.clone(), k, false)?;
        let eps = self.predict_eps_from_xstart(x, k, out.pred_xstart.clone());
        let s = &self.schedule;
        let alpha_bar = Self::extract(&s.alphas_cumprod, k, &dev); // (B, 1, 1, 1, 1)
        let alpha_bar_prev = Self::extract(&s.alphas_cumprod_prev, k, &dev); // (B, 1, 1, 1, 1)
        let sigma = ((alpha_bar_prev.clone().neg() + 1.0) / (alpha_bar.clone().neg() + 1.0)).sqrt()
            * eta
            * (alpha_bar / alpha_bar_prev.clone()).neg().add_scalar(1.0).sqrt();
        let mean_pred =
            out.pred_xstart * alpha_bar_prev.clone().sqrt() + ((alpha_bar_prev.neg() + 1.0) - sigma.clone().powi_scalar(2)).sqrt() * eps;
        Ok(mean_pred + nonzero_mask(k, &dev) * sigma * z)
    }

    /// The reverse process (`p_sample_loop` or `ddim_sample_loop`) over the respaced step
    /// indices `ks` (descending; `0..K` reversed for a full run) from `x` (B, F, C, H, W).
    /// `model(x, t)` gets the original timesteps and returns (B, F, 2C, H, W); `noise(dims)`
    /// gives each step's z and is called only when the step uses noise (never by deterministic
    /// DDIM, so its streams stay as η = 0 left them); `on_step` is told how many steps are done.
    pub fn sample_loop<E: From<DiffusionError>>(
        &self,
        method: Method,
        mut model: impl FnMut(Tensor<5>, Tensor<1, Int>) -> Result<Tensor<5>, E>,
        x: Tensor<5>,
        ks: &[usize],
        mut noise: impl FnMut([usize; 5]) -> Tensor<5>,
        mut on_step: impl FnMut(usize),
    ) -> Result<Tensor<5>, E> {
        let dims = x.dims();
        let dev = x.device();
        let mut x = x;
        for (done, &k) in ks.iter().enumerate() {
            let kb = vec![k; dims[0]];
            let out = model(x.clone(), self.original_timesteps(&kb, &dev))?;
            x = match method {
                Method::Ddpm => self.ddpm_step(out, x, &kb, noise(dims))?,
                Method::Ddim { eta } => {
                    let z = if eta == 0.0 { x.zeros_like() } else { noise(dims) };
                    self.ddim_step(out, x, &kb, eta, z)?
                }
            };
            on_step(done + 1);
        }
        Ok(x)
    }

    /// Samples `rows` of a seeded run over all the process's steps: returns their latents
    /// (B, F, C, H, W) and, with `num_classes`, their classes. Every draw of sample i (its class,
    /// its initial noise, each step's noise, in that order) comes from [`sample_stream`]`(seed,
    /// i)`, so a sample does not depend on the batch it is drawn in or on the other samples.
    /// `model(x, t, labels)` is the network call (guidance included).
    pub fn sample_rows<E: From<DiffusionError>>(
        &self,
        run: &SeededRun,
        rows: Range<usize>,
        mut model: impl FnMut(Tensor<5>, Tensor<1, Int>, Option<&[usize]>) -> Result<Tensor<5>, E>,
        device: &Device,
        on_step: impl FnMut(usize),
    ) -> Result<(Tensor<5>, Option<Vec<usize>>), E> {
        let mut rngs: Vec<ChaCha8Rng> = rows.map(|i| sample_stream(run.seed, i)).collect();
        let labels: Option<Vec<usize>> = run.num_classes.map(|k| rngs.iter_mut().map(|r| r.random_range(0..k)).collect());
        let [f, c, h, w] = run.sample_shape;
        let draw = |rngs: &mut [ChaCha8Rng]| {
            let rows: Vec<Tensor<5>> = rngs.iter_mut().map(|r| gaussian_noise([1, f, c, h, w], r, device)).collect(); // 1 F C H W each
            Tensor::cat(rows, 0) // B F C H W
        };
        let x = draw(&mut rngs);
        let ks: Vec<usize> = (0..self.num_timesteps()).rev().collect();
        let forward = |x, t| model(x, t, labels.as_deref());
        let x = self.sample_loop(run.method, forward, x, &ks, |_| draw(&mut rngs), on_step)?;
        Ok((x, labels))
    }
}

/// The reverse process to run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Method {
    /// Ancestral sampling (`p_sample_loop`), the reference's.
    Ddpm,
    /// DDIM with noise scale `eta` (0 = deterministic).
    Ddim { eta: f64 },
}

/// What fixes a sampling run's draws: the method, the seed, one sample's latent shape
/// (F, C, H, W) and the model's class count (`None`: unconditional).
#[derive(Clone, Debug)]
pub struct SeededRun {
    pub method: Method,
    pub seed: u64,
    pub sample_shape: [usize; 4],
    pub num_classes: Option<usize>,
}

/// The RNG of sample `index` of a run seeded with `seed`: ChaCha8 seeded with `seed`, on stream
/// `index`.
pub fn sample_stream(seed: u64, index: usize) -> ChaCha8Rng {
    latte_seed::stream(seed, index as u64)
}
