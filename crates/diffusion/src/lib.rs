//! IDDPM Gaussian diffusion exactly as Latte (via DiT) trains and samples it.
//!
//! - [`Schedule`]: the float64 tables of the linear 1000-step schedule and of a respaced one
//!   ([`space_timesteps`]).
//! - [`GaussianDiffusion`]: `q_sample`, the posterior, `p_mean_variance` with learned-range
//!   variance, the hybrid loss ([`Losses`]: MSE on ε + VLB in bits/dim with the mean detached),
//!   the DDPM and DDIM steps, and one sampling loop ([`GaussianDiffusion::sample_loop`], and
//!   [`GaussianDiffusion::sample_rows`] for seeded per-sample streams).
//!
//! Tensors are burn tensors (B, F, C, H, W) so that the loss backpropagates into the model;
//! timesteps are host-side `&[usize]`, one per sample. The reference is `diffusion/` of
//! Vchitect/Latte at `f8980c5` (itself DiT's port of openai/improved-diffusion).

mod error;
mod gaussian;
mod loss;
mod sampler;
mod schedule;

pub use error::DiffusionError;
pub use gaussian::{split_output, GaussianDiffusion, MeanVariance};
pub use loss::{approx_standard_normal_cdf, discretized_gaussian_log_likelihood, mean_flat, normal_kl, LossWeighting, Losses};
pub use sampler::{gaussian_noise, sample_stream, Method, SeededRun};
pub use schedule::{linear_betas, space_timesteps, Schedule};
