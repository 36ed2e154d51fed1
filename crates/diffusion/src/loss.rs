//! The hybrid training loss Latte optimises: MSE on ε plus the variational bound, with the
//! VLB's gradient reaching only the variance channels.
//!
//! Port of `GaussianDiffusion.training_losses` (LossType.MSE, ModelVarType.LEARNED_RANGE) and
//! `_vb_terms_bpd`, plus `normal_kl`, `approx_standard_normal_cdf` and
//! `discretized_gaussian_log_likelihood` from `diffusion_utils.py`.
//!
//! Shape legend: B batch, F frames, C latent channels, H, W latent height and width.

use std::f64::consts::{LN_2, PI};

use burn::tensor::{Bool, Tensor, TensorData};

use crate::{split_output, DiffusionError, GaussianDiffusion};

/// Per-sample loss terms, each (B). `loss = mse + vb`; the training script takes its mean.
#[derive(Clone, Debug)]
pub struct Losses {
    pub loss: Tensor<1>,
    pub mse: Tensor<1>,
    /// The VLB term in bits per dimension (the decoder NLL where t = 0).
    pub vb: Tensor<1>,
}

impl Losses {
    /// `loss = w·mse + vb` with one weight per sample (see [`LossWeighting`]); `mse` and `vb`
    /// stay the unweighted terms, so logs read the same under any weighting.
    pub fn with_mse_weights(self, weights: &[f32]) -> Self {
        let w = Tensor::<1>::from_data(TensorData::new(weights.to_vec(), [weights.len()]), &self.mse.device());
        Losses { loss: self.mse.clone() * w + self.vb.clone(), ..self }
    }
}

/// How each sample's ε-MSE term is weighted by its timestep. The reference weighs them
/// uniformly; min-SNR is [ours].
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum LossWeighting {
    #[default]
    Uniform,
    /// Min-SNR-γ (Hang et al. 2023, "Efficient Diffusion Training via Min-SNR Weighting
    /// Strategy"), for ε-prediction `min(SNR(t), γ) / SNR(t)` with `SNR(t) = ᾱ_t / (1 − ᾱ_t)`:
    /// the nearly noiseless steps, whose ε is the easiest to predict and whose gradients
    /// conflict with the rest, stop dominating; the paper reports DiT converging 3.4× faster.
    MinSnr { gamma: f64 },
}

impl GaussianDiffusion {
    /// The per-sample weights of `weighting` at original timesteps `t` (`None` for uniform).
    pub fn mse_weights(&self, weighting: LossWeighting, t: &[usize]) -> Option<Vec<f32>> {
        match weighting {
            LossWeighting::Uniform => None,
            LossWeighting::MinSnr { gamma } => Some(
                t.iter()
                    .map(|&t| {
                        let a = self.schedule.alphas_cumprod[t];
                        let snr = a / (1.0 - a);
                        (snr.min(gamma) / snr) as f32
                    })
                    .collect(),
            ),
        }
    }

    /// Noises `x_start` to `x_t` with `noise` at timesteps `t`, calls `model(x_t)` (which must
    /// return (B, F, 2C, H, W)) and returns the loss terms. The gradient of `loss` reaches the
    /// model through ε̂ (MSE) and through v (VLB, with ε̂ detached), as in the reference.
    pub fn training_losses(
        &self,
        model: impl FnOnce(Tensor<5>) -> Tensor<5>,
        x_start: Tensor<5>,
        t: &[usize],
        noise: Tensor<5>,
    ) -> Result<Losses, DiffusionError> {
        let x_t = self.q_sample(x_start.clone(), t, noise.clone())?;
        let model_out = model(x_t.clone());
        self.losses_from_output(model_out, x_start, x_t, t, noise)
    }

    /// The loss terms given an already computed model output on `x_t`.
    pub fn losses_from_output(
        &self,
        model_out: Tensor<5>,
        x_start: Tensor<5>,
        x_t: Tensor<5>,
        t: &[usize],
        noise: Tensor<5>,
    ) -> Result<Losses, DiffusionError> {
        self.check_t("training_losses", &x_t, t)?;
        Self::check_same("training_losses x_start", &x_t, &x_start)?;
        Self::check_same("training_losses noise", &x_t, &noise)?;
        let (eps, v) = split_output(model_out, &x_t)?;
        // Stop-gradient trick: the VLB sees a frozen ε̂ so it trains only the variance.
        let vb = self.vb_terms_bpd(eps.clone().detach(), v, x_start, x_t, t);
        let mse = mean_flat((noise - eps).powi_scalar(2));
        Ok(Losses { loss: mse.clone() + vb.clone(), mse, vb })
    }

    /// `_vb_terms_bpd` with `clip_denoised = False`: KL(q ‖ p) in bits per dimension, or the
    /// discretized-Gaussian decoder NLL where t = 0.
    fn vb_terms_bpd(&self, eps: Tensor<5>, v: Tensor<5>, x_start: Tensor<5>, x_t: Tensor<5>, t: &[usize]) -> Tensor<1> {
        let (true_mean, true_log_var) = self.q_posterior_unchecked(x_start.clone(), x_t.clone(), t);
        let out = self.p_mean_variance_split(eps, v, x_t, t, false);
        let kl = mean_flat(normal_kl(true_mean, true_log_var, out.mean.clone(), out.log_variance.clone())) / LN_2;
        if t.iter().all(|&t| t != 0) {
            return kl;
        }
        let nll = discretized_gaussian_log_likelihood(x_start, out.mean, out.log_variance * 0.5).neg();
        let nll = mean_flat(nll) / LN_2;
        let at_zero: Vec<bool> = t.iter().map(|&t| t == 0).collect();
        let mask = Tensor::<1, Bool>::from_bool(TensorData::new(at_zero, [t.len()]), &kl.device());
        kl.mask_where(mask, nll)
    }
}

/// Mean over every axis but the batch axis: (B, ...) -> (B).
pub fn mean_flat(x: Tensor<5>) -> Tensor<1> {
    let b = x.dims()[0];
    x.reshape([b as i64, -1]).mean_dim(1).reshape([b])
}

/// KL divergence between two diagonal Gaussians given means and log variances, elementwise.
pub fn normal_kl(mean1: Tensor<5>, logvar1: Tensor<5>, mean2: Tensor<5>, logvar2: Tensor<5>) -> Tensor<5> {
    let diff = mean1 - mean2;
    // Same association as the reference: ((−1 + lv2 − lv1) + exp(lv1 − lv2)) + Δ²·exp(−lv2).
    (((logvar2.clone() - 1.0) - logvar1.clone()) + (logvar1 - logvar2.clone()).exp() + diff.powi_scalar(2) * logvar2.neg().exp()) * 0.5
}

/// The standard normal CDF by the tanh approximation IDDPM uses.
pub fn approx_standard_normal_cdf(x: Tensor<5>) -> Tensor<5> {
    let inner = (x.clone() + x.powi_scalar(3) * 0.044715) * (2.0 / PI).sqrt();
    (inner.tanh() + 1.0) * 0.5
}

/// Log-likelihood of `x` under a Gaussian discretized to bins of half-width 1/255, with
/// one-sided edge bins below −0.999 and above 0.999 (as for 8-bit images; IDDPM applies it to
/// latents unchanged).
pub fn discretized_gaussian_log_likelihood(x: Tensor<5>, means: Tensor<5>, log_scales: Tensor<5>) -> Tensor<5> {
    let centered = x.clone() - means;
    let inv_stdv = log_scales.neg().exp();
    let cdf_plus = approx_standard_normal_cdf(inv_stdv.clone() * (centered.clone() + 1.0 / 255.0));
    let cdf_min = approx_standard_normal_cdf(inv_stdv * (centered - 1.0 / 255.0));
    let log_cdf_plus = cdf_plus.clone().clamp_min(1e-12).log();
    let log_one_minus_cdf_min = (cdf_min.clone().neg() + 1.0).clamp_min(1e-12).log();
    let log_cdf_delta = (cdf_plus - cdf_min).clamp_min(1e-12).log();
    let upper = log_cdf_delta.mask_where(x.clone().greater_elem(0.999), log_one_minus_cdf_min);
    upper.mask_where(x.lower_elem(-0.999), log_cdf_plus)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;

    #[test]
    fn min_snr_weights_cap_the_snr_at_gamma_and_leave_noisy_steps_at_one() {
        let d = GaussianDiffusion::create("").unwrap();
        let t: Vec<usize> = (0..1000).collect();
        assert_eq!(d.mse_weights(LossWeighting::Uniform, &t), None);
        let w = d.mse_weights(LossWeighting::MinSnr { gamma: 5.0 }, &t).unwrap();
        let snr = |t: usize| d.schedule.alphas_cumprod[t] / (1.0 - d.schedule.alphas_cumprod[t]);
        // t = 0: ᾱ = 1 − β₀ = 0.9999, SNR = 9999.
        assert!((w[0] as f64 - 5.0 / 9999.0).abs() < 1e-7, "{}", w[0]);
        let first_capped_free = t.iter().position(|&t| snr(t) <= 5.0).unwrap();
        assert!(w[..first_capped_free].iter().zip(&t).all(|(&w, &t)| (w as f64 - 5.0 / snr(t)).abs() < 1e-6));
        assert!(w[first_capped_free..].iter().all(|&w| w == 1.0));
        assert!(w.windows(2).all(|p| p[0] <= p[1]), "weights rise with the noise level");
    }

    #[test]
    fn weighted_loss_is_w_mse_plus_vb_and_keeps_the_terms() {
        let dev = Device::flex();
        let t = |v: Vec<f32>| Tensor::<1>::from_data(TensorData::new(v, [2]), &dev);
        let losses = Losses { loss: t(vec![3.0, 5.0]), mse: t(vec![1.0, 2.0]), vb: t(vec![2.0, 3.0]) };
        let weighted = losses.with_mse_weights(&[0.5, 0.25]);
        let vals = |x: Tensor<1>| x.into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(vals(weighted.loss), vec![2.5, 3.5]);
        assert_eq!(vals(weighted.mse), vec![1.0, 2.0]);
        assert_eq!(vals(weighted.vb), vec![2.0, 3.0]);
    }
}
