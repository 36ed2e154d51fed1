//! diffusers' `DiagonalGaussianDistribution`: the encoder's posterior q(z | x).
//!
//! Dimension letters: N batch, Z latent channels, h/w latent height/width.

use burn::tensor::Tensor;

/// The log-variance is clamped to this range, as diffusers does, so `exp` stays finite.
pub const LOGVAR_RANGE: (f32, f32) = (-30.0, 20.0);

#[derive(Clone, Debug)]
pub struct DiagonalGaussian {
    pub mean: Tensor<4>,   // N, Z, h, w
    pub logvar: Tensor<4>, // N, Z, h, w
}

impl DiagonalGaussian {
    /// Splits encoder moments `[N, 2Z, h, w]` into mean (first Z channels) and log-variance.
    pub fn from_moments(moments: Tensor<4>) -> Self {
        let [n, c2, h, w] = moments.dims();
        let z = c2 / 2;
        let mean = moments.clone().slice([0..n, 0..z, 0..h, 0..w]);
        let logvar = moments.slice([0..n, z..c2, 0..h, 0..w]);
        let logvar = logvar.clamp(LOGVAR_RANGE.0, LOGVAR_RANGE.1);
        Self { mean, logvar }
    }

    pub fn std(&self) -> Tensor<4> {
        (self.logvar.clone() * 0.5).exp()
    }

    /// A reparameterised draw `mean + std · noise`; `noise` is standard normal, drawn by the
    /// caller from its own seeded generator.
    pub fn sample(&self, noise: Tensor<4>) -> Tensor<4> {
        self.mean.clone() + self.std() * noise
    }

    /// KL(q ‖ N(0, I)) per sample, summed over latent elements: `[N]`.
    pub fn kl(&self) -> Tensor<1> {
        let [n, z, h, w] = self.mean.dims();
        let var = self.logvar.clone().exp();
        let terms = self.mean.clone().square() + var - 1.0 - self.logvar.clone(); // N, Z, h, w
        terms.reshape([n, z * h * w]).sum_dim(1).reshape([n]) * 0.5
    }
}
