//! Everything that decides what is sampled and how it is written.

use latte_diffusion::Method;

use crate::error::{Context, SampleError};

/// The `method` and `eta` options as a reverse process.
pub fn parse_method(name: &str, eta: f64) -> Result<Method, SampleError> {
    if !(eta.is_finite() && eta >= 0.0) {
        return Err(SampleError::Options(format!("parameter `eta` is {eta}; use a number >= 0 (0 = deterministic DDIM)")));
    }
    match name {
        "ddpm" => Ok(Method::Ddpm),
        "ddim" => Ok(Method::Ddim { eta }),
        other => Err(SampleError::Options(format!("parameter `method` is \"{other}\"; use \"ddpm\" or \"ddim\""))),
    }
}

/// The precisions sampling accepts.
pub const PRECISIONS: &[&str] = &["f32", "f16", "bf16"];

/// Everything that decides what is sampled and how it is written.
#[derive(Clone, Debug)]
pub struct SampleOptions {
    pub n: usize,
    pub batch_size: usize,
    pub method: Method,
    /// Uniformly respaced steps out of the 1000 of training.
    pub steps: usize,
    pub cfg_scale: f64,
    pub use_ema: bool,
    pub seed: u64,
    pub fps: u32,
    pub grid_n: usize,
    pub decode_batch: usize,
    /// A device name (`latte_nn::device::DeviceSpec`).
    pub device: String,
    /// `f32`, `f16` or `bf16`: the network's compute dtype.
    pub precision: String,
}

impl SampleOptions {
    /// Refuses options that cannot work, naming the parameter and what to use.
    pub fn validate(&self) -> Result<(), SampleError> {
        let bad = |m: String| Err(SampleError::Options(m));
        for (key, v) in [("n", self.n), ("batch_size", self.batch_size), ("decode_batch", self.decode_batch), ("fps", self.fps as usize)] {
            if v == 0 {
                return bad(format!("parameter `{key}` must be at least 1"));
            }
        }
        if !(1..=1000).contains(&self.steps) {
            return bad(format!("parameter `steps` is {}; use 1 to 1000 (the reference samples with 250)", self.steps));
        }
        if let Method::Ddim { eta } = self.method {
            if !(eta.is_finite() && eta >= 0.0) {
                return bad(format!("parameter `eta` is {eta}; use a number >= 0 (0 = deterministic DDIM)"));
            }
        }
        if !(self.cfg_scale.is_finite() && self.cfg_scale >= 0.0) {
            return bad(format!("parameter `cfg_scale` is {}; use a number >= 0 (1.0 = no guidance)", self.cfg_scale));
        }
        if self.fps > 1000 {
            return bad(format!("parameter `fps` is {}; use 1 to 1000", self.fps));
        }
        latte_nn::device::DeviceSpec::parse(&self.device).context("parameter `device`")?;
        self.compute_dtype()?;
        Ok(())
    }

    /// The network's compute dtype (`None`: f32).
    pub fn compute_dtype(&self) -> Result<Option<latte_nn::burn::tensor::FloatDType>, SampleError> {
        latte_nn::device::compute_dtype(&self.precision).ok_or_else(|| {
            SampleError::Options(format!("parameter `precision` is \"{}\"; use \"f32\", \"f16\" or \"bf16\"", self.precision))
        })
    }

    /// The method's name and DDIM noise scale, as the sample folder records them.
    pub fn method_name_eta(&self) -> (&'static str, f64) {
        match self.method {
            Method::Ddpm => ("ddpm", 0.0),
            Method::Ddim { eta } => ("ddim", eta),
        }
    }
}
