//! Rotary position embedding for temporal attention ([ours]; the reference has only absolute
//! sin-cos). GPT-NeoX / Llama "rotate-half" pairing: with `x = [x1 | x2]` (first and second
//! half of the head dims), `x' = [x1·cos − x2·sin | x2·cos + x1·sin]`, angles `pos·θ_i`,
//! `θ_i = 10000^(−2i/E)`, `cos`/`sin` duplicated over both halves. Conditioning tokens (all-tokens
//! mode) are not rotated. The pairing matters numerically: interleaved pairs `(x_{2i}, x_{2i+1})`
//! give a different (equally valid) function.
//!
//! Legend: S sequences, H heads, L tokens per sequence, E head dim, P prefix tokens.

use burn::tensor::{Device, Tensor, TensorData};
use latte_nn::ops::cast_like;

/// `(cos, sin)` tables of shape `(P + L, E)`: identity for the `P` prefix rows, then positions
/// `0..L`.
pub fn rope_tables(prefix: usize, len: usize, e: usize) -> (Vec<f32>, Vec<f32>) {
    let half = e / 2;
    let mut cos = vec![1f32; prefix * e];
    let mut sin = vec![0f32; prefix * e];
    for pos in 0..len {
        for j in 0..e {
            let i = j % half;
            let theta = 10000f64.powf(-2.0 * i as f64 / e as f64);
            let a = pos as f64 * theta;
            cos.push(a.cos() as f32);
            sin.push(a.sin() as f32);
        }
    }
    (cos, sin)
}

/// Rotates `x` (S, H, P + L, E); the first `prefix` tokens are left as they are. The tables
/// take `x`'s dtype.
pub fn apply_rope(x: Tensor<4>, prefix: usize, device: &Device) -> Tensor<4> {
    let [_, _, l, e] = x.dims();
    let (cos, sin) = rope_tables(prefix, l - prefix, e);
    let cos = cast_like(Tensor::<2>::from_data(TensorData::new(cos, [l, e]), device), &x).unsqueeze::<4>(); // 1 1 L E
    let sin = cast_like(Tensor::<2>::from_data(TensorData::new(sin, [l, e]), device), &x).unsqueeze::<4>();
    let half = e / 2;
    let x1 = x.clone().narrow(3, 0, half);
    let x2 = x.clone().narrow(3, half, half);
    let rotated = Tensor::cat(vec![x2.neg(), x1], 3); // [-x2 | x1]
    x * cos + rotated * sin
}
