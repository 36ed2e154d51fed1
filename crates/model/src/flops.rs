//! Multiply-accumulate counts of one forward pass, from the configuration alone.
//!
//! Counted: every matrix product (linear layers, patch embedding, attention `q·kᵀ` and
//! `softmax·v`) and the adaLN modulation linears, each once per row the reference computes
//! them for (adaLN per sequence: B·T rows in spatial blocks, B·N in temporal ones).
//! Not counted: elementwise ops, softmax, LayerNorm (lower order). FLOPs = 2 × MACs.

use crate::block::BlockKind;
use crate::config::{Conditioning, LatteConfig};
use crate::latte::block_kind;

/// MACs of one forward of a batch of one clip (F video frames, no extra images).
pub fn forward_macs(cfg: &LatteConfig) -> u64 {
    let d = cfg.hidden_size as u64;
    let n = cfg.tokens_per_frame() as u64;
    let t = cfg.token_frames() as u64;
    let tokens = n * t;
    let mlp = cfg.mlp_hidden() as u64;
    let p = cfg.patch_size as u64;
    let c = cfg.in_channels as u64;
    let co = cfg.out_channels() as u64;
    let s = cfg.temporal_stride() as u64;
    let pre = cfg.prefix_tokens() as u64;
    let ada = cfg.conditioning == Conditioning::Adaln;

    // attention over `seqs` sequences of `len` tokens (+ prefix), `heads_frac` of the width
    let attn = |seqs: u64, len: u64, width: u64| 2 * seqs * (len + pre) * (len + pre) * width;
    let qkv_proj = |rows: u64| rows * d * 4 * d;
    let mlp_macs = tokens * 2 * d * mlp;

    let mut total = 0u64;
    total += tokens * c * s * p * p * d; // patch embedding
    total += 256 * d + d * d; // timestep MLP (one row)
    for i in 0..cfg.num_blocks() {
        let kind = block_kind(cfg, i);
        let (attn_macs, n_mod, mod_rows) = match kind {
            BlockKind::Spatial => (qkv_proj(tokens + pre * t) + attn(t, n, d), 6, t),
            BlockKind::Temporal => (qkv_proj(tokens + pre * n) + attn(n, t, d), 6, n),
            BlockKind::Factorised => (qkv_proj(tokens + pre * t) + attn(t, n, d) + qkv_proj(tokens + pre * n) + attn(n, t, d), 6, t),
            BlockKind::Split => (qkv_proj(tokens + pre) + attn(t, n, d / 2) + attn(n, t, d / 2), 6, t),
        };
        total += attn_macs + mlp_macs;
        if ada {
            total += mod_rows * d * n_mod * d;
        }
    }
    if ada {
        total += t * d * 2 * d;
    }
    total += tokens * d * p * p * co; // final linear
    if s > 1 {
        total += t * s * n * p * p * co * co; // temporal transposed convolution (per output pixel)
    }
    total
}

/// GFLOPs (2 × MACs / 1e9) of one forward of one clip.
pub fn forward_gflops(cfg: &LatteConfig) -> f64 {
    2.0 * forward_macs(cfg) as f64 / 1e9
}
