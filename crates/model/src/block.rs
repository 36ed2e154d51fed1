//! The transformer block (adaLN-Zero, "S-AdaLN", or all-tokens) and the final layer.
//!
//! Legend: B batch, T frames, N tokens per frame, D hidden, P prefix (conditioning) tokens.

use crate::attention::{Attention, Grouping};
use crate::embed::{linear_layer, xavier};
use burn::module::Module;
use burn::nn::{LayerNorm, LayerNormConfig, Linear};
use burn::tensor::activation::silu;
use burn::tensor::Tensor;
use latte_nn::init::{Init, ParamFactory};
use latte_nn::ops::{gelu_tanh, layer_norm_affine, linear, ln_modulate};

pub const LN_EPS: f64 = 1e-6;

/// What a block attends over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockKind {
    /// All heads over the tokens of each frame.
    Spatial,
    /// All heads over the video frames of each location; image frames pass through untouched.
    Temporal,
    /// Variant 3: spatial attention, then temporal attention, then the MLP, in one block.
    Factorised,
    /// Variant 4: half of the heads spatial, half temporal, in one attention.
    Split,
}

/// How the conditioning reaches a block.
// one per forward call, never stored in bulk: boxing would buy nothing
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum Cond {
    /// adaLN: `video` (B, D) conditions the video frames (and every frame without per-image
    /// labels); `images` (B, K, D), when the K trailing image frames have labels of their own
    /// (joint training, §1.11), conditions those frames in the spatial sub-layers and the
    /// final layer. Temporal sub-layers see video frames only, so they use `video`.
    Ada { video: Tensor<2>, images: Option<Tensor<3>> },
    /// All-tokens: embeddings prepended to every sequence, (B, 1, P, D) shared by all frames, or
    /// (B, T, P, D) when image frames have labels of their own (video frames all carry the
    /// clip's tokens, so temporal sequences take frame 0's).
    Tokens(Tensor<4>),
}

/// Per-call facts a block needs besides its input.
pub struct BlockCtx<'a> {
    pub cond: &'a Cond,
    /// Frames 0..video_frames are video; later frames are independent images.
    pub video_frames: usize,
    pub rope: bool,
    /// Variant 3, block 0: the temporal table (1, T, 1, D), zero on image frames, added between
    /// the spatial and the temporal attention.
    pub temp_embed: Option<Tensor<4>>,
}

/// timm `Mlp`: fc1 → GELU(tanh) → fc2.
#[derive(Module, Debug)]
pub struct Mlp {
    pub fc1: Linear,
    pub fc2: Linear,
}

impl Mlp {
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        linear(&self.fc2, gelu_tanh(linear(&self.fc1, x)))
    }
}

#[derive(Module, Debug)]
pub struct Block {
    /// All-tokens mode only: affine LayerNorms in place of the modulated ones.
    pub norm1: Option<LayerNorm>,
    pub attn: Attention,
    pub norm_temporal: Option<LayerNorm>,
    /// Variant 3 only: the temporal attention of the factorised block.
    pub attn_temporal: Option<Attention>,
    pub norm2: Option<LayerNorm>,
    pub mlp: Mlp,
    /// adaLN mode only: SiLU → Linear(D, 6D), key `adaLN_modulation.1`; variant 3's two
    /// attentions share the first three chunks (see [`crate::LatteConfig::num_blocks`]).
    pub ada_ln_modulation: Option<Linear>,
    #[module(skip)]
    pub kind: BlockKind,
}

fn affine_ln(d: usize, f: &ParamFactory) -> LayerNorm {
    LayerNormConfig::new(d).with_epsilon(LN_EPS).init(f.device())
}

impl Block {
    pub(crate) fn new(f: &ParamFactory, i: usize, kind: BlockKind, d: usize, heads: usize, mlp_hidden: usize, tokens: bool) -> Self {
        let path = format!("blocks.{i}");
        let factorised = kind == BlockKind::Factorised;
        Block {
            norm1: tokens.then(|| affine_ln(d, f)),
            attn: Attention::new(f, &format!("{path}.attn"), d, heads),
            norm_temporal: (tokens && factorised).then(|| affine_ln(d, f)),
            attn_temporal: factorised.then(|| Attention::new(f, &format!("{path}.attn_temporal"), d, heads)),
            norm2: tokens.then(|| affine_ln(d, f)),
            mlp: Mlp {
                fc1: linear_layer(f, &format!("{path}.mlp.fc1"), d, mlp_hidden, xavier(d, mlp_hidden)),
                fc2: linear_layer(f, &format!("{path}.mlp.fc2"), mlp_hidden, d, xavier(mlp_hidden, d)),
            },
            // adaLN-Zero: weight and bias zero, so the block starts as the identity
            ada_ln_modulation: (!tokens).then(|| linear_layer(f, &format!("{path}.adaLN_modulation.1"), d, 6 * d, Init::Zeros)),
            kind,
        }
    }

    fn norm(ln: &Option<LayerNorm>, x: Tensor<4>) -> Tensor<4> {
        match ln {
            Some(ln) => layer_norm_affine(ln, x),
            None => latte_nn::ops::layer_norm(x, LN_EPS),
        }
    }

    /// The modulation in the reference's chunk order, n tensors each, for all frames and for
    /// the video frames (see [`Modulation`]).
    fn modulation(&self, cond: &Cond, d: usize, video_frames: usize) -> Option<Modulation> {
        match (cond, &self.ada_ln_modulation) {
            (Cond::Ada { video, images }, Some(ada)) => Some(Modulation::new(ada, video, images.as_ref(), d, video_frames)),
            _ => None,
        }
    }

    /// Normalised prefix tokens (B, 1 or T, P, D) for all-tokens mode.
    fn prefix(ln: &Option<LayerNorm>, cond: &Cond) -> Option<Tensor<4>> {
        match (cond, ln) {
            (Cond::Tokens(e), Some(ln)) => Some(layer_norm_affine(ln, e.clone())),
            _ => None,
        }
    }

    /// One attention sub-layer and the residual: adaLN `x + gate·attn(LN(x)(1+scale)+shift)`
    /// with modulation chunks `m[o..o+3]`, or all-tokens `x + attn(LN(x))`.
    fn attn_sublayer(
        &self,
        x: Tensor<4>,
        m: &Option<Vec<Tensor<4>>>,
        o: usize,
        ln: &Option<LayerNorm>,
        ctx: &BlockCtx,
        run: impl FnOnce(Tensor<4>, Option<Tensor<4>>) -> Tensor<4>,
    ) -> Tensor<4> {
        match m {
            // adaLN blocks have no affine LayerNorm (`ln` is None)
            Some(m) => {
                let h = ln_modulate(x.clone(), m[o].clone(), m[o + 1].clone(), LN_EPS);
                x + m[o + 2].clone() * run(h, None)
            }
            None => {
                let h = Self::norm(ln, x.clone());
                x + run(h, Self::prefix(ln, ctx.cond))
            }
        }
    }

    fn mlp_sublayer(&self, x: Tensor<4>, m: &Option<Vec<Tensor<4>>>, o: usize) -> Tensor<4> {
        match m {
            Some(m) => {
                let h = ln_modulate(x.clone(), m[o].clone(), m[o + 1].clone(), LN_EPS);
                x + m[o + 2].clone() * self.mlp.forward(h)
            }
            None => x.clone() + self.mlp.forward(Self::norm(&self.norm2, x)),
        }
    }

    /// x (B, T, N, D) → (B, T, N, D).
    pub fn forward(&self, x: Tensor<4>, ctx: &BlockCtx) -> Tensor<4> {
        let [_, t, _, d] = x.dims();
        let fv = ctx.video_frames;
        let mods = self.modulation(ctx.cond, d, fv);
        // per-frame chunks for sub-layers that see every frame, video chunks for temporal ones
        let (m, mv) = match mods {
            Some(Modulation { all, video }) => (Some(all), Some(video)),
            None => (None, None),
        };
        match self.kind {
            BlockKind::Spatial => {
                let x = self.attn_sublayer(x, &m, 0, &self.norm1, ctx, |h, p| self.attn.forward(h, p, Grouping::Spatial, false));
                self.mlp_sublayer(x, &m, 3)
            }
            BlockKind::Temporal => on_video(x, t, fv, |v| {
                let v = self.attn_sublayer(v, &mv, 0, &self.norm1, ctx, |h, p| self.attn.forward(h, p, Grouping::Temporal, ctx.rope));
                self.mlp_sublayer(v, &mv, 3)
            }),
            BlockKind::Split => {
                let x = self.attn_sublayer(x, &m, 0, &self.norm1, ctx, |h, p| self.attn.forward_split(h, p, fv, ctx.rope));
                self.mlp_sublayer(x, &m, 3)
            }
            BlockKind::Factorised => {
                let x = self.attn_sublayer(x, &m, 0, &self.norm1, ctx, |h, p| self.attn.forward(h, p, Grouping::Spatial, false));
                let x = match &ctx.temp_embed {
                    Some(te) => x + te.clone(),
                    None => x,
                };
                let attn_t = self.attn_temporal.as_ref().expect("a factorised block has a temporal attention");
                let x = on_video(x, t, fv, |v| {
                    self.attn_sublayer(v, &mv, 0, &self.norm_temporal, ctx, |h, p| attn_t.forward(h, p, Grouping::Temporal, ctx.rope))
                });
                self.mlp_sublayer(x, &m, 3)
            }
        }
    }
}

/// adaLN modulation chunks: `all` broadcasts over every frame, (B, 1, 1, D) each, or (B, T, 1, D)
/// when image frames carry labels of their own; `video` (B, 1, 1, D) each is the video frames'.
pub struct Modulation {
    pub all: Vec<Tensor<4>>,
    pub video: Vec<Tensor<4>>,
}

impl Modulation {
    /// `SiLU → Linear` of the video condition (B, D) and of the image conditions (B, K, D).
    fn new(ada: &Linear, video: &Tensor<2>, images: Option<&Tensor<3>>, d: usize, video_frames: usize) -> Self {
        let m = linear(ada, silu(video.clone())); // B n·D
        let [b, nd] = m.dims();
        let mv = m.reshape([b, 1, 1, nd]);
        let all = match images {
            None => mv.clone(),
            Some(img) => {
                let k = img.dims()[1];
                let mi = linear(ada, silu(img.clone())).reshape([b, k, 1, nd]); // B K 1 n·D
                Tensor::cat(vec![mv.clone().expand([b, video_frames, 1, nd]), mi], 1)
                // B T 1 n·D
            }
        };
        Modulation { all: all.chunk(nd / d, 3), video: mv.chunk(nd / d, 3) }
    }
}

/// Applies `f` to the video frames `0..fv` of x (B, T, N, D) and passes image frames through.
fn on_video(x: Tensor<4>, t: usize, fv: usize, f: impl FnOnce(Tensor<4>) -> Tensor<4>) -> Tensor<4> {
    if t == fv {
        return f(x);
    }
    let images = x.clone().narrow(1, fv, t - fv);
    Tensor::cat(vec![f(x.narrow(1, 0, fv)), images], 1)
}

/// `norm_final` → (adaLN `shift, scale`) → `linear` to p·p·C_out.
#[derive(Module, Debug)]
pub struct FinalLayer {
    /// All-tokens mode only (affine); adaLN mode uses a LayerNorm without affine.
    pub norm_final: Option<LayerNorm>,
    pub linear: Linear,
    pub ada_ln_modulation: Option<Linear>,
}

impl FinalLayer {
    pub(crate) fn new(f: &ParamFactory, d: usize, out: usize, tokens: bool) -> Self {
        FinalLayer {
            norm_final: tokens.then(|| affine_ln(d, f)),
            linear: linear_layer(f, "final_layer.linear", d, out, Init::Zeros),
            ada_ln_modulation: (!tokens).then(|| linear_layer(f, "final_layer.adaLN_modulation.1", d, 2 * d, Init::Zeros)),
        }
    }

    /// x (B, T, N, D), the adaLN condition (as in [`Cond::Ada`]) → (B, T, N, p·p·C_out).
    pub fn forward(&self, x: Tensor<4>, cond: &Cond, video_frames: usize) -> Tensor<4> {
        let h = match (&self.ada_ln_modulation, cond) {
            (Some(ada), Cond::Ada { video, images }) => {
                let d = x.dims()[3];
                let m = Modulation::new(ada, video, images.as_ref(), d, video_frames).all;
                ln_modulate(x, m[0].clone(), m[1].clone(), LN_EPS)
            }
            _ => Block::norm(&self.norm_final, x),
        };
        linear(&self.linear, h)
    }
}
