//! Layers with PyTorch's parameter names and layouts (`weight`/`bias`, convolution
//! `[out, in, kh, kw]`), so that a module's path is its PyTorch state-dict key. Linear layers
//! are burn's [`burn::nn::Linear`] (created with [`ParamFactory::linear_weight`] from PyTorch's
//! layout, applied with [`crate::ops::linear`]).
//!
//! Dimension letters: N batch, C channels, H/W height/width, G groups.

use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::tensor::ops::ConvOptions;
use burn::tensor::Tensor;

use crate::init::{Init, ParamFactory};

/// `torch.nn.Conv2d` with bias (no groups, no dilation), with an explicit zero padding per side.
#[derive(Module, Debug)]
pub struct Conv2d {
    pub weight: Param<Tensor<4>>,
    pub bias: Param<Tensor<1>>,
    stride: usize,
    /// (top, bottom, left, right) zero padding.
    padding: [usize; 4],
}

impl Conv2d {
    /// A `kernel`×`kernel` convolution under `key`, initialised as PyTorch's default.
    pub fn new(f: &ParamFactory, key: &str, c_in: usize, c_out: usize, kernel: usize, stride: usize, padding: [usize; 4]) -> Self {
        let fan_in = c_in * kernel * kernel;
        Self {
            weight: f.float(&format!("{key}.weight"), [c_out, c_in, kernel, kernel], Init::TorchDefault { fan_in }, true),
            bias: f.float(&format!("{key}.bias"), [c_out], Init::TorchDefault { fan_in }, true),
            stride,
            padding,
        }
    }

    /// A 3×3 convolution that keeps the resolution.
    pub fn same3(f: &ParamFactory, key: &str, c_in: usize, c_out: usize) -> Self {
        Self::new(f, key, c_in, c_out, 3, 1, [1; 4])
    }

    /// A 1×1 convolution.
    pub fn pointwise(f: &ParamFactory, key: &str, c_in: usize, c_out: usize) -> Self {
        Self::new(f, key, c_in, c_out, 1, 1, [0; 4])
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [top, bottom, left, right] = self.padding;
        let s = self.stride;
        let options = ConvOptions::new_with_padding([s, s], [(top, bottom), (left, right)], [1, 1], 1);
        crate::conv::conv2d(x, self.weight.val(), self.bias.val(), options)
    }
}

/// `torch.nn.GroupNorm` with affine parameters: biased variance, `eps` inside the square root.
#[derive(Module, Debug)]
pub struct GroupNorm {
    pub weight: Param<Tensor<1>>,
    pub bias: Param<Tensor<1>>,
    groups: usize,
    eps: f64,
}

impl GroupNorm {
    pub fn new(f: &ParamFactory, key: &str, groups: usize, channels: usize, eps: f64) -> Self {
        Self {
            weight: f.float(&format!("{key}.weight"), [channels], Init::Ones, true),
            bias: f.float(&format!("{key}.bias"), [channels], Init::Zeros, true),
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

/// `torch.nn.Linear(d_in, d_out)` under `key`, initialised as PyTorch's default.
pub fn torch_linear(f: &ParamFactory, key: &str, d_in: usize, d_out: usize) -> Linear {
    let init = Init::TorchDefault { fan_in: d_in };
    Linear {
        weight: f.linear_weight(&format!("{key}.weight"), [d_out, d_in], init.clone(), true),
        bias: Some(f.float(&format!("{key}.bias"), [d_out], init, true)),
    }
}
