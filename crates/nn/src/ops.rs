//! The ops of a DiT / Latte block.
//!
//! On flex (f32), LayerNorm + modulation, tanh GELU and the attention softmax run as the fused
//! kernels of [`crate::fused`], with and without autodiff. Elsewhere each op has a composed
//! form, built from primitive tensor ops so that burn's autodiff differentiates it on every
//! backend, and uses burn's fused kernel instead when the tensor is on a device without
//! autodiff (sampling, evaluation), where no backward is needed.

use crate::fused;
use burn::nn::Linear;
use burn::tensor::activation::{gelu_approximate, softmax};
use burn::tensor::module;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::Tensor;

fn inference<const D: usize>(x: &Tensor<D>) -> bool {
    !x.device().is_autodiff()
}

/// `x·W + b` over the last axis, with every leading axis folded into the rows first.
///
/// burn's `Linear::forward` keeps `[.., rows, d]` inputs whose rows are a multiple of 32 as a
/// batched matmul against a broadcast weight; under autodiff the weight gradient is then one
/// small-K GEMM per batch into a `[batches, d_in, d_out]` buffer, summed afterwards. Folded,
/// it is a single GEMM over all rows (measured: the Latte-S block-pair step 447 → see
/// ARCHITECTURE.md).
pub fn linear<const D: usize>(layer: &Linear, x: Tensor<D>) -> Tensor<D> {
    let dims = x.dims();
    let d_in = dims[D - 1];
    let rows = dims[..D - 1].iter().product::<usize>();
    let y = module::linear(x.reshape([rows, d_in]), layer.weight.val(), layer.bias.as_ref().map(|b| b.val()));
    let mut out = dims;
    out[D - 1] = y.dims()[1];
    y.reshape(out)
}

/// LayerNorm over the last axis without affine parameters (`elementwise_affine=False`): biased
/// variance, `eps` inside the square root, as PyTorch.
pub fn layer_norm<const D: usize>(x: Tensor<D>, eps: f64) -> Tensor<D> {
    if inference(&x) {
        let ones = Tensor::<1>::ones([x.dims()[D - 1]], &x.device());
        return module::layer_norm(x, ones, None, eps);
    }
    layer_norm_composed(x, eps)
}

pub fn layer_norm_composed<const D: usize>(x: Tensor<D>, eps: f64) -> Tensor<D> {
    let last = D - 1;
    let mean = x.clone().mean_dim(last);
    let xc = x - mean;
    let var = xc.clone().powi_scalar(2).mean_dim(last);
    xc / (var + eps).sqrt()
}

/// adaLN modulation `x * (1 + scale) + shift`; `shift`, `scale` broadcast against `x`.
pub fn modulate<const D: usize>(x: Tensor<D>, shift: Tensor<D>, scale: Tensor<D>) -> Tensor<D> {
    x * (scale + 1.0) + shift
}

/// adaLN's `LN(x)·(1 + scale) + shift` (LayerNorm without affine over the last axis);
/// `shift`, `scale` broadcast against `x`.
pub fn ln_modulate<const D: usize>(x: Tensor<D>, shift: Tensor<D>, scale: Tensor<D>, eps: f64) -> Tensor<D> {
    match fused::ln_modulate(&x, &shift, &scale, eps) {
        Some(y) => y,
        None => modulate(layer_norm(x, eps), shift, scale),
    }
}

/// GELU with the tanh approximation (PyTorch's `approximate="tanh"`).
pub fn gelu_tanh<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    fused::gelu_tanh(&x).unwrap_or_else(|| gelu_approximate(x))
}

/// Scaled dot-product attention `softmax(q kᵀ · E^-½) v` on `(S, H, L, E)` tensors
/// (S sequences, H heads, L tokens, E head dim); `Lk` may differ from `Lq`.
pub fn attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>) -> Tensor<4> {
    if inference(&q) {
        return module::attention(q, k, v, None, None, AttentionModuleOptions::default());
    }
    attention_composed(q, k, v)
}

pub fn attention_composed(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>) -> Tensor<4> {
    let e = q.dims()[3];
    let scores = q.matmul(k.swap_dims(2, 3)) * (e as f64).powf(-0.5); // S H Lq Lk
    let probs = fused::softmax_last(&scores).unwrap_or_else(|| softmax(scores, 3));
    probs.matmul(v) // S H Lq E
}
