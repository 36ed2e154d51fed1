//! Creating a module's parameters, each under its state-dict key: drawn from a seed, or read
//! from a weights file. One builder, [`ParamFactory`], with three sources:
//!
//! - **per-path streams** ([`ParamFactory::new`]): each parameter draws from its own ChaCha8
//!   stream, selected by a hash of its path in the module, so that (1) the same seed gives the
//!   same bits, (2) adding a parameter elsewhere does not shift the values of the others, and
//!   (3) nothing is allocated until the parameter is first used: a Latte-XL model can be built
//!   and its parameters counted without 2.7 GB of weights. Latte uses it.
//! - **one sequential stream** ([`ParamFactory::sequential`]): parameters draw one after the
//!   other from a single stream, in the order the module creates them. The VAE uses it: every
//!   cached VAE was trained from that draw, so it stays.
//! - **a weights file** ([`ParamFactory::from_file`]): each parameter is read by its key; the
//!   problems (missing, wrong shape, unreadable) are collected rather than stopping at the
//!   first, so one error lists them all ([`ParamFactory::finish`]).

use std::cell::RefCell;
use std::sync::Arc;

use burn::module::{Param, ParamId};
use burn::tensor::{Device, Shape, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

use crate::tensor_file::TensorFile;

/// How a parameter's values are drawn.
#[derive(Clone, Debug)]
pub enum Init {
    Zeros,
    Ones,
    /// PyTorch's default for `nn.Conv2d` and `nn.Linear` weights and biases:
    /// `U(-1/√fan_in, 1/√fan_in)`.
    TorchDefault {
        fan_in: usize,
    },
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
            Init::Ones => vec![1.0; numel],
            Init::TorchDefault { fan_in } => {
                let bound = 1.0 / (*fan_in as f32).sqrt();
                (0..numel).map(|_| rng.random_range(-bound..bound)).collect()
            }
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

/// A change applied to freshly drawn values (never to values read from a file), given the
/// parameter's key: e.g. zeroing the last layer of every residual branch.
pub type FreshEdit = Arc<dyn Fn(&str, &mut [f32]) + Send + Sync>;

enum Source {
    PerPath {
        seed: u64,
    },
    Sequential(RefCell<Box<ChaCha8Rng>>),
    /// The file, and one line per tensor that could not be read.
    File(RefCell<TensorFile>, RefCell<Vec<String>>),
}

/// Makes the parameters of one module, each under its state-dict key, from one source.
pub struct ParamFactory {
    device: Device,
    source: Source,
    edit: Option<FreshEdit>,
}

impl ParamFactory {
    /// Per-path streams of `seed`, drawn lazily (see the module documentation).
    pub fn new(seed: u64, device: &Device) -> Self {
        Self::with_source(Source::PerPath { seed }, device)
    }

    /// One stream, `ChaCha8Rng::seed_from_u64(seed)`, drawn in creation order.
    pub fn sequential(seed: u64, device: &Device) -> Self {
        Self::with_source(Source::Sequential(RefCell::new(Box::new(ChaCha8Rng::seed_from_u64(seed)))), device)
    }

    /// Every parameter read from `file` by its key.
    pub fn from_file(file: TensorFile, device: &Device) -> Self {
        Self::with_source(Source::File(RefCell::new(file), RefCell::new(Vec::new())), device)
    }

    fn with_source(source: Source, device: &Device) -> Self {
        ParamFactory { device: device.clone(), source, edit: None }
    }

    /// Applies `edit` to every freshly drawn parameter (a file source ignores it).
    pub fn with_fresh_edit(mut self, edit: impl Fn(&str, &mut [f32]) + Send + Sync + 'static) -> Self {
        self.edit = Some(Arc::new(edit));
        self
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// A float parameter. `path` names it (its key in the state dict, and for per-path
    /// streams its random stream); `trainable: false` makes a frozen buffer (no gradient).
    pub fn float<const D: usize>(&self, path: &str, shape: [usize; D], init: Init, trainable: bool) -> Param<Tensor<D>> {
        self.param(path, shape, shape, init, trainable, |v| v)
    }

    /// A Linear weight whose values come in PyTorch's `[out, in]` order (the order drawn, and
    /// the layout of weights files), held in burn's `[in, out]` layout.
    pub fn linear_weight(&self, path: &str, [d_out, d_in]: [usize; 2], init: Init, trainable: bool) -> Param<Tensor<2>> {
        self.param(path, [d_out, d_in], [d_in, d_out], init, trainable, move |v| crate::host::transpose(&v, d_out, d_in))
    }

    /// The values of a parameter with `stored` shape (as drawn and as read), turned into its
    /// `shape` by `arrange`.
    fn param<const D: usize>(
        &self,
        path: &str,
        stored: [usize; D],
        shape: [usize; D],
        init: Init,
        trainable: bool,
        arrange: impl Fn(Vec<f32>) -> Vec<f32> + Send + Sync + 'static,
    ) -> Param<Tensor<D>> {
        let numel: usize = stored.iter().product();
        let values = match &self.source {
            Source::PerPath { seed } => {
                let (seed, stream, key, edit) = (*seed, stream_of(path), path.to_owned(), self.edit.clone());
                return Param::uninitialized(
                    // Named, not random (burn's `ParamId::new()`): the ids are written into
                    // checkpoints and optimizer records, which must be the same bytes whenever
                    // the same run is repeated (a store entry is a function of its cache key).
                    ParamId::from(stream),
                    move |device: &Device, require_grad: bool| {
                        let mut values = init.sample(numel, &mut latte_seed::stream(seed, stream));
                        if let Some(edit) = &edit {
                            edit(&key, &mut values);
                        }
                        let tensor = Tensor::<D>::from_data(TensorData::new(arrange(values), shape), device);
                        if require_grad {
                            tensor.require_grad()
                        } else {
                            tensor
                        }
                    },
                    self.device.clone(),
                    trainable,
                    Shape::from(shape),
                );
            }
            Source::Sequential(rng) => {
                let mut values = init.sample(numel, &mut rng.borrow_mut());
                if let Some(edit) = &self.edit {
                    edit(path, &mut values);
                }
                values
            }
            Source::File(file, problems) => file.borrow_mut().take(path, &stored).unwrap_or_else(|problem| {
                problems.borrow_mut().push(problem);
                vec![0.0; numel]
            }),
        };
        let data = TensorData::new(arrange(values), shape);
        if trainable {
            Param::from_data(data, &self.device)
        } else {
            Param::initialized(ParamId::new(), Tensor::from_data(data, &self.device))
        }
    }

    /// What went wrong while reading a file source (one line per tensor: missing, wrong shape,
    /// unreadable), and the file's keys no parameter asked for. Both are empty for a drawn
    /// module.
    pub fn finish(self) -> (Vec<String>, Vec<String>) {
        match self.source {
            Source::File(file, problems) => (problems.into_inner(), file.borrow().unused().cloned().collect()),
            _ => (Vec::new(), Vec::new()),
        }
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

    #[test]
    fn sequential_source_draws_one_stream_in_creation_order() {
        let dev = Device::flex();
        let f = ParamFactory::sequential(3, &dev);
        let a = values(&f.float("a", [2, 3], Init::TorchDefault { fan_in: 4 }, true));
        let b = values(&f.float("b", [3, 1], Init::TorchDefault { fan_in: 9 }, true));
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let expect_a: Vec<f32> = (0..6).map(|_| rng.random_range(-0.5f32..0.5)).collect();
        let bound = 1.0 / 3.0f32;
        let expect_b: Vec<f32> = (0..3).map(|_| rng.random_range(-bound..bound)).collect();
        assert_eq!((a, b), (expect_a, expect_b));
        // Zeros and ones draw nothing: the next parameter continues the stream.
        let _ = f.float::<1>("ones", [5], Init::Ones, true);
        let c = values(&f.float("c", [1, 1], Init::TorchDefault { fan_in: 1 }, true));
        assert_eq!(c, vec![rng.random_range(-1.0f32..1.0)]);
    }

    #[test]
    fn linear_weights_are_drawn_and_read_in_pytorch_order_and_held_transposed() {
        let dev = Device::flex();
        let init = Init::Values(vec![1., 2., 3., 4., 5., 6.]); // [out 2, in 3]
        for f in [ParamFactory::new(0, &dev), ParamFactory::sequential(0, &dev)] {
            let w = f.linear_weight("w", [2, 3], init.clone(), true);
            assert_eq!(w.val().dims(), [3, 2]);
            assert_eq!(values(&w), vec![1., 4., 2., 5., 3., 6.]);
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.safetensors");
        let tensors = [("w".to_owned(), crate::host::HostTensor::f32(vec![2, 3], vec![1., 2., 3., 4., 5., 6.]))].into_iter().collect();
        crate::host::write_safetensors(&path, &tensors, None).unwrap();
        let f = ParamFactory::from_file(TensorFile::open(&path).unwrap(), &dev);
        assert_eq!(values(&f.linear_weight("w", [2, 3], Init::Zeros, true)), vec![1., 4., 2., 5., 3., 6.]);
        assert_eq!(f.finish(), (Vec::new(), Vec::new()));
    }

    #[test]
    fn a_file_source_lists_every_problem_and_unused_key_and_takes_aliases() {
        let dev = Device::flex();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.safetensors");
        let t = |shape: Vec<usize>| crate::host::HostTensor::f32(shape.clone(), vec![0.5; shape.iter().product()]);
        let tensors = [("old.proj.weight".to_owned(), t(vec![2, 2])), ("b".to_owned(), t(vec![3])), ("extra".to_owned(), t(vec![1]))]
            .into_iter()
            .collect();
        crate::host::write_safetensors(&path, &tensors, None).unwrap();
        let file = TensorFile::open(&path).unwrap().with_alias(".to_out.", ".proj.");
        // A fresh edit never touches loaded values.
        let f = ParamFactory::from_file(file, &dev).with_fresh_edit(|_, v| v.fill(9.0));
        assert_eq!(values(&f.float("old.to_out.weight", [2, 2], Init::Ones, true)), vec![0.5; 4]);
        let _ = f.float::<1>("b", [4], Init::Zeros, true);
        let _ = f.float::<1>("c", [1], Init::Zeros, true);
        let (problems, unused) = f.finish();
        assert_eq!(problems, vec!["wrong shape: b is [3], expected [4]".to_owned(), "missing: c (expected shape [1])".to_owned()]);
        assert_eq!(unused, vec!["extra".to_owned()]);
    }

    #[test]
    fn fresh_edits_see_the_key_and_apply_to_every_drawing_source() {
        let dev = Device::flex();
        let edit = |key: &str, v: &mut [f32]| {
            if key.ends_with(".zeroed") {
                v.fill(0.0)
            }
        };
        for f in [ParamFactory::new(1, &dev), ParamFactory::sequential(1, &dev)] {
            let f = f.with_fresh_edit(edit);
            assert_eq!(values(&f.float("x.zeroed", [2, 2], Init::Ones, true)), vec![0.0; 4]);
            assert_eq!(values(&f.float("x.kept", [2, 2], Init::Ones, true)), vec![1.0; 4]);
        }
    }
}
