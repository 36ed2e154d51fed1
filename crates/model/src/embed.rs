//! Embeddings: fixed sin-cos position tables, the timestep and label embedders, the patch
//! embedding (uniform or tubelet), unpatchify and the tubelet's temporal upsampling.
//!
//! Legend: B batch, T frames in the token grid, C channels, H×W latent size, p patch,
//! h×w = H/p × W/p, N = h·w tokens per frame, D hidden size, s tubelet stride.

use crate::config::{LatteConfig, PatchEmbedKind};
use burn::module::{Module, Param};
use burn::nn::{Embedding, Linear};
use burn::tensor::activation::silu;
use burn::tensor::{DType, Int, Tensor, TensorData};
use latte_nn::init::{Init, ParamFactory};
use latte_nn::ops::{cast_like, linear};

/// MAE's 1-D table: `[sin(pos·ω) | cos(pos·ω)]`, `ω_k = 10000^(-k/(dim/2))`, in float64.
pub fn sincos_1d(dim: usize, positions: &[f64]) -> Vec<f64> {
    let half = dim / 2;
    let omega: Vec<f64> = (0..half).map(|k| 1.0 / 10000f64.powf(k as f64 / half as f64)).collect();
    let mut out = Vec::with_capacity(positions.len() * dim);
    for &p in positions {
        out.extend(omega.iter().map(|w| (p * w).sin()));
        out.extend(omega.iter().map(|w| (p * w).cos()));
    }
    out
}

/// The spatial table `(N, D)`: first half from the column index, second half from the row
/// index, tokens row-major (the reference's `meshgrid(w, h)` order).
pub fn pos_embed_2d(dim: usize, grid: usize) -> Vec<f32> {
    let cols: Vec<f64> = (0..grid * grid).map(|i| (i % grid) as f64).collect();
    let rows: Vec<f64> = (0..grid * grid).map(|i| (i / grid) as f64).collect();
    let (a, b) = (sincos_1d(dim / 2, &cols), sincos_1d(dim / 2, &rows));
    let half = dim / 2;
    (0..grid * grid)
        .flat_map(|i| a[i * half..(i + 1) * half].iter().chain(&b[i * half..(i + 1) * half]).map(|&v| v as f32).collect::<Vec<_>>())
        .collect()
}

/// The temporal table `(F, D)`.
pub fn temp_embed_1d(dim: usize, frames: usize) -> Vec<f32> {
    let pos: Vec<f64> = (0..frames).map(|f| f as f64).collect();
    sincos_1d(dim, &pos).into_iter().map(|v| v as f32).collect()
}

/// Width of the timestep frequency vector.
pub const FREQ_DIM: usize = 256;

/// `timestep_embedding(t, 256)`: `[cos(t·f) | sin(t·f)]`, `f_k = exp(-ln(10000)·k/128)`.
/// The float32 rounding steps of the reference (`-ln(10000)` and the product with `k` and the
/// division by 128 in float32, then `t·f` in float32) are reproduced; exp, cos and sin are
/// evaluated in float64 and rounded, i.e. correctly rounded where PyTorch is within an ulp.
pub fn timestep_frequencies(t: &[i64]) -> Vec<f32> {
    let half = FREQ_DIM / 2;
    let c = (-(10000f64.ln())) as f32;
    let freqs: Vec<f32> = (0..half).map(|k| (((c * k as f32) / half as f32) as f64).exp() as f32).collect();
    let mut out = Vec::with_capacity(t.len() * FREQ_DIM);
    for &ti in t {
        let args: Vec<f32> = freqs.iter().map(|f| ti as f32 * f).collect();
        out.extend(args.iter().map(|a| (*a as f64).cos() as f32));
        out.extend(args.iter().map(|a| (*a as f64).sin() as f32));
    }
    out
}

/// A Linear layer whose weight is drawn from a seeded stream (burn layout `[in, out]`).
pub(crate) fn linear_layer(f: &ParamFactory, path: &str, d_in: usize, d_out: usize, weight: Init) -> Linear {
    Linear {
        weight: f.float(&format!("{path}.weight"), [d_in, d_out], weight, true),
        bias: Some(f.float(&format!("{path}.bias"), [d_out], Init::Zeros, true)),
    }
}

pub(crate) fn xavier(d_in: usize, d_out: usize) -> Init {
    Init::XavierUniform { fan_in: d_in, fan_out: d_out }
}

/// `Linear(256, D) → SiLU → Linear(D, D)` on the frequency vector (keys `t_embedder.mlp.0`,
/// `t_embedder.mlp.2`).
#[derive(Module, Debug)]
pub struct TimestepEmbedder {
    pub mlp0: Linear,
    pub mlp2: Linear,
}

impl TimestepEmbedder {
    pub(crate) fn new(f: &ParamFactory, d: usize) -> Self {
        TimestepEmbedder {
            mlp0: linear_layer(f, "t_embedder.mlp.0", FREQ_DIM, d, Init::Normal { std: 0.02 }),
            mlp2: linear_layer(f, "t_embedder.mlp.2", d, d, Init::Normal { std: 0.02 }),
        }
    }

    /// `t` (B,) original integer timesteps → (B, D).
    pub fn forward(&self, t: Tensor<1, Int>) -> Tensor<2> {
        let freq = Self::frequencies(t);
        linear(&self.mlp2, silu(linear(&self.mlp0, freq)))
    }

    /// [`forward`](Self::forward) computed in `dtype`: the f32 sinusoids are rounded to it
    /// before the MLP, as autocast feeds them to its first Linear.
    pub fn forward_as(&self, t: Tensor<1, Int>, dtype: DType) -> Tensor<2> {
        let freq = Self::frequencies(t).cast(dtype);
        linear(&self.mlp2, silu(linear(&self.mlp0, freq)))
    }

    /// The (B, 256) sinusoids, f32.
    fn frequencies(t: Tensor<1, Int>) -> Tensor<2> {
        let device = t.device();
        let values: Vec<i64> = t.into_data().try_into_vec_as::<i64>().expect("converted to i64");
        let b = values.len();
        Tensor::<2>::from_data(TensorData::new(timestep_frequencies(&values), [b, FREQ_DIM]), &device)
    }
}

/// The class table (`y_embedder.embedding_table`), with a null row when dropout is on.
#[derive(Module, Debug)]
pub struct LabelEmbedder {
    pub embedding_table: Embedding,
}

impl LabelEmbedder {
    pub(crate) fn new(f: &ParamFactory, rows: usize, d: usize) -> Self {
        LabelEmbedder {
            embedding_table: Embedding {
                weight: f.float("y_embedder.embedding_table.weight", [rows, d], Init::Normal { std: 0.02 }, true),
            },
        }
    }

    pub fn rows(&self) -> usize {
        self.embedding_table.weight.lazy_shape().dims::<2>()[0]
    }

    /// `y` (B,) labels → (B, D).
    pub fn forward(&self, y: Tensor<1, Int>) -> Tensor<2> {
        self.embedding_table.weight.val().select(0, y)
    }
}

/// Weights of a convolution whose stride equals its kernel, stored in PyTorch's layout
/// (`[out, in, kernel...]` for a convolution, `[in, out, kernel...]` for a transposed one).
/// With stride = kernel both are a reshape plus a matrix product, which is how they run here.
#[derive(Module, Debug)]
pub struct Proj2d {
    pub weight: Param<Tensor<4>>,
    pub bias: Param<Tensor<1>>,
}

#[derive(Module, Debug)]
pub struct Proj3d {
    pub weight: Param<Tensor<5>>,
    pub bias: Param<Tensor<1>>,
}

#[derive(Module, Debug)]
pub enum PatchProj {
    Uniform(Proj2d),
    Tubelet(Proj3d),
}

/// `x_embedder.proj`: Conv2d(C, D, p, stride p) per frame, or Conv3d(C, D, (s, p, p),
/// stride (s, p, p)) over tubelets.
#[derive(Module, Debug)]
pub struct PatchEmbed {
    pub proj: PatchProj,
}

impl PatchEmbed {
    pub(crate) fn new(f: &ParamFactory, cfg: &LatteConfig) -> Self {
        let (c, d, p) = (cfg.in_channels, cfg.hidden_size, cfg.patch_size);
        let bias = f.float("x_embedder.proj.bias", [d], Init::Zeros, true);
        // xavier on the weight viewed as (D, C·kernel), as the reference's initialize_weights
        let proj = match cfg.patch_embed {
            PatchEmbedKind::Uniform => {
                PatchProj::Uniform(Proj2d { weight: f.float("x_embedder.proj.weight", [d, c, p, p], xavier(c * p * p, d), true), bias })
            }
            PatchEmbedKind::Tubelet { stride: s } => PatchProj::Tubelet(Proj3d {
                weight: f.float("x_embedder.proj.weight", [d, c, s, p, p], xavier(c * s * p * p, d), true),
                bias,
            }),
        };
        PatchEmbed { proj }
    }

    /// x (B, T, C, H, W) → (B, T/s, N, D).
    pub fn forward(&self, x: Tensor<5>, p: usize) -> Tensor<4> {
        let [b, t, c, hh, ww] = x.dims();
        let (h, w) = (hh / p, ww / p);
        match &self.proj {
            PatchProj::Uniform(proj) => {
                let d = proj.bias.lazy_shape().dims::<1>()[0];
                let patches = x
                    .reshape([b * t, c, h, p, w, p])
                    .permute([0, 2, 4, 1, 3, 5]) // (B·T) h w C p p
                    .reshape([b * t * h * w, c * p * p]);
                let wt = cast_like(proj.weight.val(), &patches).reshape([d, c * p * p]).transpose(); // (C·p·p) D
                let bias = cast_like(proj.bias.val(), &patches);
                (patches.matmul(wt) + bias.unsqueeze::<2>()).reshape([b, t, h * w, d])
            }
            PatchProj::Tubelet(proj) => {
                let [d, _, s, _, _] = proj.weight.dims();
                let tf = t / s;
                let patches = x
                    .reshape([b * tf, s * c, h, p, w, p])
                    .permute([0, 2, 4, 1, 3, 5]) // (B·T/s) h w (s·C) p p
                    .reshape([b * tf * h * w, s, c, p * p])
                    .swap_dims(1, 2) // M C s (p·p)
                    .reshape([b * tf * h * w, c * s * p * p]);
                let wt = cast_like(proj.weight.val(), &patches).reshape([d, c * s * p * p]).transpose();
                let bias = cast_like(proj.bias.val(), &patches);
                (patches.matmul(wt) + bias.unsqueeze::<2>()).reshape([b, tf, h * w, d])
            }
        }
    }
}

/// The reference's unpatchify: per-token vectors ordered (row-in-patch, col-in-patch,
/// channel) → images. x (B, T, N, p·p·C) → (B, T, C, H, W).
pub fn unpatchify(x: Tensor<4>, p: usize, c: usize) -> Tensor<5> {
    let [b, t, n, _] = x.dims();
    let h = (n as f64).sqrt().round() as usize;
    let w = n / h;
    x.reshape([b * t, h, w, p, p, c])
        .permute([0, 5, 1, 3, 2, 4]) // nhwpqc -> nchpwq
        .reshape([b, t, c, h * p, w * p])
}

/// ConvTranspose3d(C, C, (s, 1, 1), stride (s, 1, 1)) after unpatchify, restoring F frames
/// from F/s. [ours] Initialised as frame repetition (weight δ(in, out) for every sub-frame,
/// bias 0): a zero init would block every gradient to the (zero-initialised) final layer.
pub(crate) fn temporal_upsample_new(f: &ParamFactory, c: usize, s: usize) -> Proj3d {
    let mut eye = vec![0f32; c * c * s];
    for i in 0..c {
        for j in 0..s {
            eye[(i * c + i) * s + j] = 1.0;
        }
    }
    Proj3d {
        weight: f.float("temporal_upsample.weight", [c, c, s, 1, 1], Init::Values(eye), true),
        bias: f.float("temporal_upsample.bias", [c], Init::Zeros, true),
    }
}

/// y (B, T/s, C, H, W) → (B, T, C, H, W): out[f·s + j, o] = Σ_i y[f, i] · W[i, o, j] + bias[o].
pub fn temporal_upsample(up: &Proj3d, y: Tensor<5>) -> Tensor<5> {
    let [b, tf, c, hh, ww] = y.dims();
    let [_, co, s, _, _] = up.weight.dims();
    let flat = y.permute([0, 1, 3, 4, 2]).reshape([b * tf * hh * ww, c]); // M C
    let w = cast_like(up.weight.val(), &flat).reshape([c, co * s]);
    let bias = cast_like(up.bias.val(), &flat).unsqueeze_dim::<2>(1).repeat_dim(1, s).reshape([1, co * s]);
    (flat.matmul(w) + bias)
        .reshape([b, tf, hh, ww, co, s])
        .permute([0, 1, 5, 4, 2, 3]) // B T/s s C H W
        .reshape([b, tf * s, co, hh, ww])
}

/// Frozen sin-cos tables as parameters (saved in checkpoints like the reference's
/// `requires_grad=False` parameters).
pub(crate) fn frozen_table(f: &ParamFactory, path: &str, rows: usize, d: usize, values: Vec<f32>) -> Param<Tensor<3>> {
    f.float(path, [1, rows, d], Init::Values(values), false)
}
