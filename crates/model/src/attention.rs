//! Multi-head self-attention over spatial or temporal token groups.
//!
//! The hidden state is kept as (B, T, N, D) throughout the model; an attention call regroups
//! it into sequences: spatial = the N tokens of one frame (B·T sequences), temporal = the T
//! frames of one location (B·N sequences), as the reference's `(b f) n d` / `(b n) f d`
//! rearranges. In all-tokens mode P conditioning tokens are prepended to every sequence and
//! dropped again after attention.
//!
//! Legend: B batch, T frames, N tokens per frame, D hidden, H heads, E head dim, P prefix
//! tokens, S sequences, L sequence length, X any feature width.

use crate::rope::apply_rope;
use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::Tensor;
use latte_nn::attention::{self_attention, Sequences};
use latte_nn::init::ParamFactory;
use latte_nn::ops;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grouping {
    Spatial,
    Temporal,
}

/// (B, T, N, X) → (S, L, X).
pub fn group(x: Tensor<4>, g: Grouping) -> Tensor<3> {
    let [b, t, n, d] = x.dims();
    match g {
        Grouping::Spatial => x.reshape([b * t, n, d]),
        Grouping::Temporal => x.permute([0, 2, 1, 3]).reshape([b * n, t, d]),
    }
}

/// (S, L, X) → (B, T, N, X).
pub fn ungroup(x: Tensor<3>, g: Grouping, b: usize, t: usize, n: usize) -> Tensor<4> {
    let d = x.dims()[2];
    match g {
        Grouping::Spatial => x.reshape([b, t, n, d]),
        Grouping::Temporal => x.reshape([b, n, t, d]).permute([0, 2, 1, 3]),
    }
}

/// Prefix tokens (B, 1 or T, P, X), shared or per frame, for every sequence → (S, P, X):
/// spatial sequences take their frame's tokens, temporal ones frame 0's (see `Cond::Tokens`).
fn repeat_prefix(prefix: Tensor<4>, g: Grouping, t: usize, n: usize) -> Tensor<3> {
    let [b, tp, p, d] = prefix.dims();
    match g {
        Grouping::Spatial if tp == t => prefix.reshape([b * t, p, d]),
        Grouping::Spatial => prefix.narrow(1, 0, 1).repeat_dim(1, t).reshape([b * t, p, d]),
        Grouping::Temporal => prefix.narrow(1, 0, 1).repeat_dim(1, n).reshape([b * n, p, d]),
    }
}

/// Attention of `heads` heads given fused projections `qkv` (B, T, N, 3·H·E) laid out
/// `[q | k | v]`, each head-major, and optional prefix projections (B, 1 or T, P, 3·H·E).
/// Returns (B, T, N, H·E), heads concatenated in order.
pub fn attend(qkv: Tensor<4>, prefix_qkv: Option<Tensor<4>>, heads: usize, g: Grouping, rope: bool) -> Tensor<4> {
    let [b, t, n, three_d] = qkv.dims();
    let d = three_d / 3;
    let e = d / heads;
    if prefix_qkv.is_none() && !rope {
        let seqs = match g {
            Grouping::Spatial => Sequences::Spatial,
            Grouping::Temporal => Sequences::Temporal,
        };
        if let Some(out) = self_attention(&qkv, heads, seqs) {
            return out;
        }
    }
    let device = qkv.device();
    let seqs = group(qkv, g); // S L 3D
    let l = seqs.dims()[1];
    let (seqs, p) = match prefix_qkv {
        Some(pre) => {
            let p = pre.dims()[2];
            (Tensor::cat(vec![repeat_prefix(pre, g, t, n), seqs], 1), p) // S P+L 3D
        }
        None => (seqs, 0),
    };
    let s = seqs.dims()[0];
    let split = |i: usize| seqs.clone().narrow(2, i * d, d).reshape([s, p + l, heads, e]).swap_dims(1, 2); // S H P+L E
    let (mut q, mut k, v) = (split(0), split(1), split(2));
    if rope {
        q = apply_rope(q, p, &device);
        k = apply_rope(k, p, &device);
    }
    let o = ops::attention(q, k, v); // S H P+L E
    let o = o.swap_dims(1, 2).reshape([s, p + l, d]);
    let o = if p > 0 { o.narrow(1, p, l) } else { o };
    ungroup(o, g, b, t, n)
}

/// `qkv` Linear(D, 3D, bias) and `proj` Linear(D, D, bias), as the reference's `Attention`.
#[derive(Module, Debug)]
pub struct Attention {
    pub qkv: Linear,
    pub proj: Linear,
    #[module(skip)]
    pub num_heads: usize,
}

impl Attention {
    pub(crate) fn new(f: &ParamFactory, path: &str, d: usize, num_heads: usize) -> Self {
        use crate::embed::{linear_layer, xavier};
        Attention {
            qkv: linear_layer(f, &format!("{path}.qkv"), d, 3 * d, xavier(d, 3 * d)),
            proj: linear_layer(f, &format!("{path}.proj"), d, d, xavier(d, d)),
            num_heads,
        }
    }

    /// h (B, T, N, D), normalised prefix (B, 1 or T, P, D) → (B, T, N, D).
    pub fn forward(&self, h: Tensor<4>, prefix: Option<Tensor<4>>, g: Grouping, rope: bool) -> Tensor<4> {
        let qkv = ops::linear(&self.qkv, h);
        let pre = prefix.map(|p| ops::linear(&self.qkv, p));
        ops::linear(&self.proj, attend(qkv, pre, self.num_heads, g, rope))
    }

    /// Variant 4: heads `0..H/2` attend spatially, heads `H/2..H` temporally (on the first
    /// `video_frames` frames; each later, independent image frame is a temporal sequence of its
    /// own), outputs concatenated in head order before the shared `proj`.
    pub fn forward_split(&self, h: Tensor<4>, prefix: Option<Tensor<4>>, video_frames: usize, rope: bool) -> Tensor<4> {
        let [b, t, n, d] = h.dims();
        let hh = self.num_heads / 2;
        let dh = d / 2;
        let qkv = ops::linear(&self.qkv, h); // B T N 3D
        let pre = prefix.map(|p| ops::linear(&self.qkv, p)); // B 1|T P 3D
        let half3 = |x: Tensor<4>, o: usize| Tensor::cat((0..3).map(|i| x.clone().narrow(3, i * d + o, dh)).collect(), 3);
        let spatial = attend(half3(qkv.clone(), 0), pre.clone().map(|p| half3(p, 0)), hh, Grouping::Spatial, false);
        let tq = half3(qkv, dh); // B T N 3D/2
        let tp = pre.map(|p| half3(p, dh)); // B 1|T P 3D/2
        let video = attend(tq.clone().narrow(1, 0, video_frames), tp.clone(), hh, Grouping::Temporal, rope);
        let temporal = if t > video_frames {
            let k = t - video_frames;
            let images = tq.narrow(1, video_frames, k).reshape([b * k, 1, n, 3 * dh]);
            // each image's own prefix when per frame, else the shared one
            let ip = tp.map(|p| {
                let [_, tpp, pp, x] = p.dims();
                let p = if tpp == t { p.narrow(1, video_frames, k) } else { p.repeat_dim(1, k) };
                p.reshape([b * k, 1, pp, x])
            });
            let img = attend(images, ip, hh, Grouping::Temporal, rope).reshape([b, k, n, dh]);
            Tensor::cat(vec![video, img], 1)
        } else {
            video
        };
        ops::linear(&self.proj, Tensor::cat(vec![spatial, temporal], 3))
    }
}
