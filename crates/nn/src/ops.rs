//! The ops of a DiT / Latte block.
//!
//! On flex (f32), LayerNorm + modulation, tanh GELU and the attention softmax run as the fused
//! kernels of [`crate::fused`], with and without autodiff. Elsewhere each op has a composed
//! form, built from primitive tensor ops so that burn's autodiff differentiates it on every
//! backend, and uses burn's fused kernel instead when the tensor is on a device without
//! autodiff (sampling, evaluation), where no backward is needed.
//!
//! Reduced precision: the activation's dtype drives every op. Parameters (stored in f32) are
//! cast to it at their use, so that under autodiff their gradients come back in f32 through the
//! cast; LayerNorm and the attention softmax of f16 / bf16 activations are computed in f32, as
//! PyTorch's autocast does. On f32 activations every cast is the identity (burn returns the
//! tensor untouched when the dtype already matches), so the f32 path is unchanged.

use crate::fused;
use burn::nn::{LayerNorm, Linear};
use burn::tensor::activation::{gelu_approximate, softmax};
use burn::tensor::module;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{DType, FloatDType, Tensor};

fn inference<const D: usize>(x: &Tensor<D>) -> bool {
    !x.device().is_autodiff()
}

/// `p` in the dtype of the activation `x` it is about to meet: burn does not promote, and flex
/// panics on binary ops and matmuls of mixed dtypes.
pub fn cast_like<const D: usize, const E: usize>(p: Tensor<D>, x: &Tensor<E>) -> Tensor<D> {
    p.cast(x.dtype())
}

/// Whether `dtype` is a 16-bit float, whose reductions (LayerNorm statistics, softmax) lose
/// too much to run in it.
pub fn is_half(dtype: DType) -> bool {
    matches!(dtype, DType::F16 | DType::BF16)
}

/// `f(x)` evaluated in f32 when `x` is f16 / bf16, the result cast back to `x`'s dtype.
pub fn widened<const D: usize>(x: Tensor<D>, f: impl FnOnce(Tensor<D>) -> Tensor<D>) -> Tensor<D> {
    let dtype = x.dtype();
    if is_half(dtype) {
        f(x.cast(FloatDType::F32)).cast(dtype)
    } else {
        f(x)
    }
}

/// `x·W + b` over the last axis, with every leading axis folded into the rows first.
///
/// burn's `Linear::forward` keeps `[.., rows, d]` inputs whose rows are a multiple of 32 as a
/// batched matmul against a broadcast weight; under autodiff the weight gradient is then one
/// small-K GEMM per batch into a `[batches, d_in, d_out]` buffer, summed afterwards. Folded,
/// it is a single GEMM over all rows (measured: the Latte-S block-pair step 447 → see
/// ARCHITECTURE.md). Weight and bias are cast to `x`'s dtype.
pub fn linear<const D: usize>(layer: &Linear, x: Tensor<D>) -> Tensor<D> {
    let dims = x.dims();
    let d_in = dims[D - 1];
    let rows = dims[..D - 1].iter().product::<usize>();
    let weight = cast_like(layer.weight.val(), &x);
    let bias = layer.bias.as_ref().map(|b| cast_like(b.val(), &x));
    let y = module::linear(x.reshape([rows, d_in]), weight, bias);
    let mut out = dims;
    out[D - 1] = y.dims()[1];
    y.reshape(out)
}

/// LayerNorm over the last axis without affine parameters (`elementwise_affine=False`): biased
/// variance, `eps` inside the square root, as PyTorch. f16 / bf16 inputs are normalised in f32.
pub fn layer_norm<const D: usize>(x: Tensor<D>, eps: f64) -> Tensor<D> {
    widened(x, |x| {
        if inference(&x) {
            let ones = Tensor::<1>::ones([x.dims()[D - 1]], &x.device());
            return module::layer_norm(x, ones, None, eps);
        }
        layer_norm_composed(x, eps)
    })
}

/// An affine LayerNorm (`burn::nn::LayerNorm`); f16 / bf16 inputs are normalised and scaled
/// in f32 against the f32 parameters, then cast back.
pub fn layer_norm_affine<const D: usize>(ln: &LayerNorm, x: Tensor<D>) -> Tensor<D> {
    widened(x, |x| ln.forward(x))
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
/// `shift`, `scale` broadcast against `x`. With f16 / bf16 `x` the whole expression runs in f32
/// (as autocast's f32 LayerNorm output promotes the modulation) and is cast back.
pub fn ln_modulate<const D: usize>(x: Tensor<D>, shift: Tensor<D>, scale: Tensor<D>, eps: f64) -> Tensor<D> {
    let dtype = x.dtype();
    if is_half(dtype) {
        let f32 = FloatDType::F32;
        return ln_modulate(x.cast(f32), shift.cast(f32), scale.cast(f32), eps).cast(dtype);
    }
    match fused::ln_modulate(&x, &shift, &scale, eps) {
        Some(y) => y,
        None => modulate(layer_norm(x, eps), shift, scale),
    }
}

/// GELU with the tanh approximation (PyTorch's `approximate="tanh"`).
pub fn gelu_tanh<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    fused::gelu_tanh(&x).unwrap_or_else(|| gelu_approximate(x))
}

/// SiLU, `x · sigmoid(x)`, with the bits of burn's `silu` either way.
pub fn silu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    fused::silu(&x).unwrap_or_else(|| burn::tensor::activation::silu(x))
}

/// Scaled dot-product attention `softmax(q kᵀ · E^-½) v` on `(S, H, L, E)` tensors
/// (S sequences, H heads, L tokens, E head dim); `Lk` may differ from `Lq`. With f16 / bf16
/// inputs the composed form (autodiff) runs the two products in that dtype and the scaled
/// softmax in f32; burn's kernel (inference) keeps its own accumulation (flex's computes the
/// whole attention in f32 and rounds the output).
pub fn attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>) -> Tensor<4> {
    if inference(&q) {
        return module::attention(q, k, v, None, None, AttentionModuleOptions::default());
    }
    attention_composed(q, k, v)
}

pub fn attention_composed(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>) -> Tensor<4> {
    let e = q.dims()[3];
    let scores = q.matmul(k.swap_dims(2, 3)); // S H Lq Lk
    let probs = widened(scores, |s| {
        let s = s * (e as f64).powf(-0.5);
        fused::softmax_last(&s).unwrap_or_else(|| softmax(s, 3))
    });
    probs.matmul(v) // S H Lq E
}
