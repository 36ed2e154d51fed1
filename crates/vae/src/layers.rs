//! The three parametrised layers of the autoencoder, with PyTorch's parameter names and layouts
//! (`weight`/`bias`, convolution `[out, in, kh, kw]`, linear `[out, in]`) so that a module's
//! path is its diffusers state-dict key, and the builder that creates their parameters either
//! from a seeded initialiser or from a weights file.
//!
//! Dimension letters: N batch, C channels, H/W height/width, L = H·W tokens.

use burn::module::{Module, Param};
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Tensor, TensorData};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::weight_file::WeightFile;

/// How a parameter is initialised when it is not loaded.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Init {
    /// PyTorch's default for conv and linear weights and biases: U(-1/√fan_in, 1/√fan_in).
    Uniform {
        fan_in: usize,
    },
    Ones,
    Zeros,
}

enum Source<'a> {
    Random(ChaCha8Rng),
    File(&'a mut WeightFile),
}

/// Creates every parameter of a module tree, keyed by its diffusers name. Loading does not
/// stop at the first bad tensor: problems are collected so the error can list them all.
pub(crate) struct Builder<'a> {
    device: Device,
    source: Source<'a>,
    pub(crate) problems: Vec<String>,
    /// Added to the freshly drawn values of one parameter from an index on: `(key, from, shift)`.
    shift: Option<(String, usize, f32)>,
    /// Zero the last layer of every residual branch (random init only), see
    /// [`crate::AutoencoderKL::init_for_training`].
    zero_residual_branches: bool,
}

impl<'a> Builder<'a> {
    pub(crate) fn random(rng: ChaCha8Rng, device: &Device) -> Self {
        Self { device: device.clone(), source: Source::Random(rng), problems: Vec::new(), shift: None, zero_residual_branches: false }
    }

    /// Shifts the initial values `from..` of the parameter `key` by `shift` (random init only).
    pub(crate) fn with_shift(mut self, key: &str, from: usize, shift: f32) -> Self {
        self.shift = Some((key.to_owned(), from, shift));
        self
    }

    /// Initialises the last layer of every residual branch (ResNet `conv2`, attention
    /// `to_out.0`) to zero (random init only).
    pub(crate) fn with_zero_residual_branches(mut self) -> Self {
        self.zero_residual_branches = true;
        self
    }

    pub(crate) fn file(file: &'a mut WeightFile, device: &Device) -> Self {
        Self { device: device.clone(), source: Source::File(file), problems: Vec::new(), shift: None, zero_residual_branches: false }
    }

    pub(crate) fn param<const D: usize>(&mut self, key: &str, shape: [usize; D], init: Init) -> Param<Tensor<D>> {
        let numel: usize = shape.iter().product();
        let mut values: Vec<f32> = match &mut self.source {
            Source::Random(rng) => match init {
                Init::Uniform { fan_in } => {
                    let bound = 1.0 / (fan_in as f32).sqrt();
                    (0..numel).map(|_| rng.random_range(-bound..bound)).collect()
                }
                Init::Ones => vec![1.0; numel],
                Init::Zeros => vec![0.0; numel],
            },
            Source::File(file) => match file.take(key, &shape) {
                Ok(values) => values,
                Err(problem) => {
                    self.problems.push(problem);
                    vec![0.0; numel]
                }
            },
        };
        if matches!(self.source, Source::Random(_)) && self.zero_residual_branches && is_residual_branch_end(key) {
            values.fill(0.0);
        }
        if let (Source::Random(_), Some((shift_key, from, shift))) = (&self.source, &self.shift) {
            if shift_key == key {
                values.iter_mut().skip(*from).for_each(|v| *v += shift);
            }
        }
        Param::from_data(TensorData::new(values, shape), &self.device)
    }
}

/// Whether `key` is a parameter of the layer that ends a residual branch.
fn is_residual_branch_end(key: &str) -> bool {
    key.contains(".conv2.") || key.contains(".to_out.0.")
}

/// `torch.nn.Conv2d` with bias.
#[derive(Module, Debug)]
pub struct Conv2d {
    pub weight: Param<Tensor<4>>,
    pub bias: Param<Tensor<1>>,
    stride: usize,
    /// (top, bottom, left, right) zero padding.
    padding: [usize; 4],
}

impl Conv2d {
    pub(crate) fn new(b: &mut Builder, key: &str, c_in: usize, c_out: usize, kernel: usize, stride: usize, padding: [usize; 4]) -> Self {
        let fan_in = c_in * kernel * kernel;
        Self {
            weight: b.param(&format!("{key}.weight"), [c_out, c_in, kernel, kernel], Init::Uniform { fan_in }),
            bias: b.param(&format!("{key}.bias"), [c_out], Init::Uniform { fan_in }),
            stride,
            padding,
        }
    }

    /// A 3×3 convolution that keeps the resolution.
    pub(crate) fn same3(b: &mut Builder, key: &str, c_in: usize, c_out: usize) -> Self {
        Self::new(b, key, c_in, c_out, 3, 1, [1; 4])
    }

    pub(crate) fn pointwise(b: &mut Builder, key: &str, c_in: usize, c_out: usize) -> Self {
        Self::new(b, key, c_in, c_out, 1, 1, [0; 4])
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [top, bottom, left, right] = self.padding;
        let s = self.stride;
        let options = ConvOptions::new_with_padding([s, s], [(top, bottom), (left, right)], [1, 1], 1);
        conv2d(x, self.weight.val(), Some(self.bias.val()), options)
    }
}

/// `torch.nn.GroupNorm` with affine parameters.
#[derive(Module, Debug)]
pub struct GroupNorm {
    pub weight: Param<Tensor<1>>,
    pub bias: Param<Tensor<1>>,
    groups: usize,
    eps: f64,
}

impl GroupNorm {
    pub(crate) fn new(b: &mut Builder, key: &str, groups: usize, channels: usize, eps: f64) -> Self {
        Self {
            weight: b.param(&format!("{key}.weight"), [channels], Init::Ones),
            bias: b.param(&format!("{key}.bias"), [channels], Init::Zeros),
            groups,
            eps,
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [n, c, h, w] = x.dims();
        let g = x.reshape([n, self.groups, (c / self.groups) * h * w]); // N, G, C/G·H·W
        let mean = g.clone().mean_dim(2);
        let centred = g - mean;
        let var = centred.clone().square().mean_dim(2);
        let normed = (centred / (var + self.eps).sqrt()).reshape([n, c, h, w]);
        let scale = self.weight.val().reshape([1, c, 1, 1]);
        let shift = self.bias.val().reshape([1, c, 1, 1]);
        normed * scale + shift
    }
}

/// `torch.nn.Linear` with bias, weight stored `[out, in]` as PyTorch does.
#[derive(Module, Debug)]
pub struct Linear {
    pub weight: Param<Tensor<2>>,
    pub bias: Param<Tensor<1>>,
}

impl Linear {
    pub(crate) fn new(b: &mut Builder, key: &str, d_in: usize, d_out: usize) -> Self {
        let fan_in = d_in;
        Self {
            weight: b.param(&format!("{key}.weight"), [d_out, d_in], Init::Uniform { fan_in }),
            bias: b.param(&format!("{key}.bias"), [d_out], Init::Uniform { fan_in }),
        }
    }

    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let [n, l, d_in] = x.dims();
        let d_out = self.bias.dims()[0];
        // one GEMM over all rows: against a broadcast weight, the weight gradient would be a
        // GEMM per batch element and a sum
        let y = x.reshape([n * l, d_in]).matmul(self.weight.val().transpose()) + self.bias.val().reshape([1, d_out]);
        y.reshape([n, l, d_out])
    }
}
