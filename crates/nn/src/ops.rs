//! The composed ops of a DiT / Latte block. They are written from primitive tensor ops so that
//! burn's autodiff differentiates them on every backend; the reference semantics are in the
//! comments of each function.

use burn::tensor::activation::softmax;
use burn::tensor::Tensor;

/// LayerNorm over the last axis without affine parameters (`elementwise_affine=False`): biased
/// variance, `eps` inside the square root, as PyTorch.
pub fn layer_norm<const D: usize>(x: Tensor<D>, eps: f64) -> Tensor<D> {
    let last = D - 1;
    let mean = x.clone().mean_dim(last);
    let xc = x - mean;
    let var = xc.clone().powi_scalar(2).mean_dim(last);
    xc / (var + eps).sqrt()
}

/// LayerNorm over the last axis with affine `gamma`, `beta` (length = last axis).
pub fn layer_norm_affine<const D: usize>(x: Tensor<D>, gamma: Tensor<1>, beta: Tensor<1>, eps: f64) -> Tensor<D> {
    let n = layer_norm(x, eps);
    n * gamma.unsqueeze::<D>() + beta.unsqueeze::<D>()
}

/// adaLN modulation `x * (1 + scale) + shift`; `shift`, `scale` broadcast against `x`.
pub fn modulate<const D: usize>(x: Tensor<D>, shift: Tensor<D>, scale: Tensor<D>) -> Tensor<D> {
    x * (scale + 1.0) + shift
}

/// Scaled dot-product attention `softmax(q kᵀ · hd^-½) v` on `(S, H, L, E)` tensors
/// (S sequences, H heads, L tokens, E head dim); `Lk` may differ from `Lq`.
pub fn attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>) -> Tensor<4> {
    let e = q.dims()[3];
    let scores = q.matmul(k.swap_dims(2, 3)) * (e as f64).powf(-0.5); // S H Lq Lk
    softmax(scores, 3).matmul(v) // S H Lq E
}
