//! The fused self-attention (`latte_nn::attention`): forward equal to the composed attention
//! (regroup, split heads, softmax(q kᵀ/√E) v, merge, ungroup) for spatial and temporal
//! sequences on both devices; its gradient equal to autodiff through the composed form at
//! every coordinate and to central finite differences.

mod common;

use burn::tensor::{Device, Tensor};
use common::{check, max_diff, rnd, tensor, vals};
use latte_nn::attention::{self_attention, Sequences};
use latte_nn::ops;

/// The composed reference: (B, T, N, 3D) → (B, T, N, D) through primitive ops only.
fn composed(qkv: Tensor<4>, heads: usize, seqs: Sequences) -> Tensor<4> {
    let [b, t, n, three_d] = qkv.dims();
    let (d, e) = (three_d / 3, three_d / 3 / heads);
    let grouped = match seqs {
        Sequences::Spatial => qkv.reshape([b * t, n, three_d]),
        Sequences::Temporal => qkv.permute([0, 2, 1, 3]).reshape([b * n, t, three_d]),
    };
    let [s, l, _] = grouped.dims();
    let split = |i: usize| grouped.clone().narrow(2, i * d, d).reshape([s, l, heads, e]).swap_dims(1, 2);
    let o = ops::attention_composed(split(0), split(1), split(2)).swap_dims(1, 2).reshape([s, l, d]);
    match seqs {
        Sequences::Spatial => o.reshape([b, t, n, d]),
        Sequences::Temporal => o.reshape([b, n, t, d]).permute([0, 2, 1, 3]),
    }
}

fn fused(qkv: Tensor<4>, heads: usize, seqs: Sequences) -> Tensor<4> {
    self_attention(&qkv, heads, seqs).expect("the fused kernel applies to f32 on flex")
}

#[test]
fn forward_matches_the_composed_attention() {
    for seqs in [Sequences::Spatial, Sequences::Temporal] {
        for (shape, heads) in [([2, 3, 5, 3 * 16], 4), ([1, 4, 9, 3 * 12], 1), ([3, 2, 7, 3 * 24], 3)] {
            let n = shape.iter().product();
            let x = rnd(11, "qkv", n, 1.5);
            for dev in [Device::flex(), Device::flex().autodiff()] {
                let a = vals(fused(tensor(&x, shape, &dev), heads, seqs));
                let b = vals(composed(tensor(&x, shape, &dev), heads, seqs));
                let d = max_diff(&a, &b);
                assert!(d <= 2e-6, "{seqs:?} {shape:?} heads {heads}: fused vs composed differ by {d}");
            }
        }
    }
}

#[test]
fn spatial_gradient() {
    check("attention spatial", [2, 3, 5, 3 * 8], |x| fused(x, 2, Sequences::Spatial), |x| composed(x, 2, Sequences::Spatial));
}

#[test]
fn temporal_gradient() {
    check("attention temporal", [2, 4, 3, 3 * 8], |x| fused(x, 2, Sequences::Temporal), |x| composed(x, 2, Sequences::Temporal));
}

#[test]
fn temporal_attention_stays_within_each_location() {
    // changing the tokens of location 0 changes no output at other locations
    let shape = [1, 4, 3, 3 * 8];
    let x = rnd(12, "qkv", shape.iter().product(), 1.0);
    let mut y = x.clone();
    for t in 0..4 {
        for j in 0..16 {
            y[t * 3 * 24 + j] += 0.1 * (t + j) as f32; // q and k of location 0 in frame t
        }
    }
    let dev = Device::flex();
    let a = vals(fused(tensor(&x, shape, &dev), 2, Sequences::Temporal));
    let b = vals(fused(tensor(&y, shape, &dev), 2, Sequences::Temporal));
    for (i, (p, q)) in a.iter().zip(&b).enumerate() {
        let location = (i / 8) % 3;
        assert_eq!(p == q, location != 0, "element {i} at location {location}");
    }
}

#[test]
fn inapplicable_shapes_are_refused() {
    let dev = Device::flex();
    let x = tensor(&rnd(13, "qkv", 2 * 3 * 4 * 30, 1.0), [2, 3, 4, 30], &dev);
    assert!(self_attention(&x, 4, Sequences::Spatial).is_none(), "D = 10 is not divisible by 4 heads");
    assert!(self_attention(&x, 0, Sequences::Spatial).is_none());
}
