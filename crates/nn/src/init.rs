//! Seeded, lazy parameter initialisers.
//!
//! Each parameter draws from its own ChaCha8 stream, selected by a hash of its path in the
//! module, so that (1) the same seed gives the same bits, (2) adding a parameter elsewhere does
//! not shift the values of the others, and (3) nothing is allocated until the parameter is first
//! used: a Latte-XL model can be built and its parameters counted without 2.7 GB of weights.

use burn::module::{Param, ParamId};
use burn::tensor::{Device, Shape, Tensor, TensorData};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

/// How a parameter's values are drawn.
#[derive(Clone, Debug)]
pub enum Init {
    Zeros,
    /// `U(-a, a)` with `a = sqrt(6 / (fan_in + fan_out))` (PyTorch `xavier_uniform_`).
    XavierUniform {
        fan_in: usize,
        fan_out: usize,
    },
    /// `N(0, std²)` (PyTorch `normal_(std=...)`).
    Normal {
        std: f32,
    },
    /// Fixed values (row-major), e.g. sin-cos tables or an identity map.
    Values(Vec<f32>),
}

impl Init {
    fn sample(&self, numel: usize, rng: &mut ChaCha8Rng) -> Vec<f32> {
        match self {
            Init::Zeros => vec![0.0; numel],
            Init::XavierUniform { fan_in, fan_out } => {
                let a = (6.0 / (*fan_in + *fan_out) as f64).sqrt() as f32;
                (0..numel).map(|_| a * (2.0 * rng.random::<f32>() - 1.0)).collect()
            }
            Init::Normal { std } => {
                let normal = Normal::new(0.0f32, *std).expect("a finite, non-negative std");
                (0..numel).map(|_| normal.sample(rng)).collect()
            }
            Init::Values(v) => {
                assert_eq!(v.len(), numel, "Init::Values has {} values for {numel} elements", v.len());
                v.clone()
            }
        }
    }
}

/// Makes the parameters of one module from one seed.
#[derive(Clone, Debug)]
pub struct ParamFactory {
    seed: u64,
    device: Device,
}

impl ParamFactory {
    pub fn new(seed: u64, device: &Device) -> Self {
        ParamFactory { seed, device: device.clone() }
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// A lazily initialised float parameter. `path` names it (its key in the state dict) and
    /// selects its random stream; `trainable: false` makes a frozen buffer (no gradient).
    pub fn float<const D: usize>(&self, path: &str, shape: [usize; D], init: Init, trainable: bool) -> Param<Tensor<D>> {
        let (seed, stream) = (self.seed, stream_of(path));
        let numel: usize = shape.iter().product();
        Param::uninitialized(
            // Named, not random (burn's `ParamId::new()`): the ids are written into checkpoints
            // and optimizer records, which must be the same bytes whenever the same run is
            // repeated (a store entry is a function of its cache key).
            ParamId::from(stream_of(path)),
            move |device: &Device, require_grad: bool| {
                let mut rng = latte_seed::stream(seed, stream);
                let values = init.sample(numel, &mut rng);
                let tensor = Tensor::<D>::from_data(TensorData::new(values, shape), device);
                if require_grad {
                    tensor.require_grad()
                } else {
                    tensor
                }
            },
            self.device.clone(),
            trainable,
            Shape::from(shape),
        )
    }
}

/// FNV-1a: stable across Rust versions and platforms, unlike `DefaultHasher`.
fn stream_of(path: &str) -> u64 {
    path.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(p: &Param<Tensor<2>>) -> Vec<f32> {
        p.val().into_data().try_into_vec_as::<f32>().unwrap()
    }

    #[test]
    fn same_seed_same_bits_and_paths_are_independent() {
        let dev = Device::flex();
        let a = ParamFactory::new(7, &dev);
        let b = ParamFactory::new(7, &dev);
        let init = Init::XavierUniform { fan_in: 16, fan_out: 8 };
        let pa = a.float("blocks.0.attn.qkv.weight", [16, 8], init.clone(), true);
        let pb = b.float("blocks.0.attn.qkv.weight", [16, 8], init.clone(), true);
        assert_eq!(values(&pa), values(&pb));
        let other = a.float("blocks.1.attn.qkv.weight", [16, 8], init.clone(), true);
        assert_ne!(values(&pa), values(&other));
        let reseeded = ParamFactory::new(8, &dev).float("blocks.0.attn.qkv.weight", [16, 8], init, true);
        assert_ne!(values(&pa), values(&reseeded));
    }

    #[test]
    fn xavier_bound_and_normal_std() {
        let dev = Device::flex();
        let f = ParamFactory::new(1, &dev);
        let v = values(&f.float("w", [200, 100], Init::XavierUniform { fan_in: 100, fan_out: 200 }, true));
        let a = (6.0f32 / 300.0).sqrt();
        assert!(v.iter().all(|x| x.abs() <= a));
        assert!(v.iter().any(|x| x.abs() > 0.95 * a));
        let v = values(&f.float("n", [200, 100], Init::Normal { std: 0.02 }, true));
        let var = v.iter().map(|x| (x * x) as f64).sum::<f64>() / v.len() as f64;
        assert!((var.sqrt() - 0.02).abs() < 0.001, "std {}", var.sqrt());
    }

    #[test]
    fn lazy_params_are_counted_without_allocation() {
        use burn::module::Module;
        let f = ParamFactory::new(1, &Device::flex());
        let p = f.float("huge", [1 << 20, 1 << 12], Init::Zeros, true);
        assert!(!p.is_initialized());
        assert_eq!(p.num_params(), 1 << 32);
        assert!(!p.is_initialized());
    }
}
