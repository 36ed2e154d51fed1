//! The Latte network.
//!
//! Legend: B batch, F video frames, K extra image frames, T = F + K frames of the input,
//! T' frames of the token grid (T, or F/s with tubelets), C input channels, C' output
//! channels, H×W latent size, N tokens per frame, D hidden, P conditioning tokens.

use crate::block::{Block, BlockCtx, BlockKind, Cond, FinalLayer};
use crate::config::{Conditioning, LatteConfig, PatchEmbedKind, TemporalPos, Variant};
use crate::embed::{
    frozen_table, pos_embed_2d, temp_embed_1d, temporal_upsample, temporal_upsample_new, unpatchify, LabelEmbedder, PatchEmbed, Proj3d,
    TimestepEmbedder,
};
use crate::ModelError;
use burn::module::{Module, Param};
use burn::tensor::{Device, FloatDType, Int, Tensor, TensorData};
use latte_nn::init::ParamFactory;

#[derive(Module, Debug)]
pub struct Latte {
    pub x_embedder: PatchEmbed,
    pub t_embedder: TimestepEmbedder,
    pub y_embedder: Option<LabelEmbedder>,
    /// Frozen (1, N, D) spatial sin-cos table.
    pub pos_embed: Param<Tensor<3>>,
    /// Frozen (1, F', D) temporal sin-cos table; absent with RoPE.
    pub temp_embed: Option<Param<Tensor<3>>>,
    pub blocks: Vec<Block>,
    pub final_layer: FinalLayer,
    /// Tubelet embedding only: the temporal transposed convolution restoring F frames.
    pub temporal_upsample: Option<Proj3d>,
    #[module(skip)]
    cfg: LatteConfig,
    /// Runtime compute dtype of the forward (see [`Latte::with_compute_dtype`]); neither a
    /// weight nor part of the configuration, so checkpoints and configs do not depend on it.
    #[module(skip)]
    compute: Option<FloatDType>,
}

/// Which kind block `i` of a variant is.
pub fn block_kind(cfg: &LatteConfig, i: usize) -> BlockKind {
    match cfg.variant {
        Variant::Interleaved if i.is_multiple_of(2) => BlockKind::Spatial,
        Variant::Interleaved => BlockKind::Temporal,
        Variant::LateFusion if i < cfg.depth / 2 => BlockKind::Spatial,
        Variant::LateFusion => BlockKind::Temporal,
        Variant::Factorised => BlockKind::Factorised,
        Variant::SplitHeads => BlockKind::Split,
    }
}

impl Latte {
    /// A model initialised as the reference's `initialize_weights` (§1.10) from `seed`.
    /// Parameters are materialised lazily, on first use.
    pub fn new(cfg: &LatteConfig, device: &Device, seed: u64) -> Result<Self, ModelError> {
        cfg.validate()?;
        let f = ParamFactory::new(seed, device);
        let d = cfg.hidden_size;
        let grid = cfg.input_size / cfg.patch_size;
        let tokens = cfg.conditioning == Conditioning::Tokens;
        let p = cfg.patch_size;
        Ok(Latte {
            x_embedder: PatchEmbed::new(&f, cfg),
            t_embedder: TimestepEmbedder::new(&f, d),
            y_embedder: cfg.label_rows().map(|rows| LabelEmbedder::new(&f, rows, d)),
            pos_embed: frozen_table(&f, "pos_embed", grid * grid, d, pos_embed_2d(d, grid)),
            temp_embed: (cfg.temporal_pos == TemporalPos::Absolute)
                .then(|| frozen_table(&f, "temp_embed", cfg.token_frames(), d, temp_embed_1d(d, cfg.token_frames()))),
            blocks: (0..cfg.num_blocks())
                .map(|i| Block::new(&f, i, block_kind(cfg, i), d, cfg.num_heads, cfg.mlp_hidden(), tokens))
                .collect(),
            final_layer: FinalLayer::new(&f, d, p * p * cfg.out_channels(), tokens),
            temporal_upsample: match cfg.patch_embed {
                PatchEmbedKind::Uniform => None,
                PatchEmbedKind::Tubelet { stride } => Some(temporal_upsample_new(&f, cfg.out_channels(), stride)),
            },
            cfg: cfg.clone(),
            compute: None,
        })
    }

    pub fn config(&self) -> &LatteConfig {
        &self.cfg
    }

    /// The forward's compute dtype: `Some(BF16 | F16)` runs it in that dtype (mixed precision),
    /// `None` (the default) in the dtype of the input, i.e. the plain f32 path.
    ///
    /// In reduced precision the input is cast to `dtype`, every parameter is cast at its use
    /// (the cast is differentiable, so gradients reach the f32 parameters in f32: the f32
    /// parameters are the master weights, and the optimiser state stays f32), tensors made
    /// inside the forward are made in `dtype`, LayerNorm and the attention softmax run in f32,
    /// and the output is cast back to the input's dtype, so that a loss is reduced in f32.
    /// Parameters stay f32: this is a property of the forward, kept through `map`, `valid`,
    /// `clone` and optimiser steps, not of the weights.
    pub fn with_compute_dtype(mut self, dtype: Option<FloatDType>) -> Self {
        self.compute = dtype;
        self
    }

    /// See [`with_compute_dtype`](Self::with_compute_dtype).
    pub fn compute_dtype(&self) -> Option<FloatDType> {
        self.compute
    }

    /// Parameters the optimiser updates: everything except the frozen sin-cos tables.
    pub fn num_trainable_params(&self) -> usize {
        let frozen = self.pos_embed.lazy_shape().num_elements() + self.temp_embed.as_ref().map_or(0, |t| t.lazy_shape().num_elements());
        self.num_params() - frozen
    }

    /// Checks the shapes and dtypes of a forward call against the configuration.
    pub fn check_input(&self, x_dims: [usize; 5], t_len: usize, y_len: Option<usize>, use_image_num: usize) -> Result<(), ModelError> {
        self.check_joint_input(x_dims, t_len, y_len, None, use_image_num)
    }

    /// [`check_input`](Self::check_input) with the (B, K) shape of per-image labels.
    pub fn check_joint_input(
        &self,
        x_dims: [usize; 5],
        t_len: usize,
        y_len: Option<usize>,
        y_image_dims: Option<[usize; 2]>,
        use_image_num: usize,
    ) -> Result<(), ModelError> {
        let cfg = &self.cfg;
        let bad = |m: String| Err(ModelError::Input(m));
        let [b, t, c, h, w] = x_dims;
        if b == 0 {
            return bad("empty batch".into());
        }
        if c != cfg.in_channels || h != cfg.input_size || w != cfg.input_size {
            return bad(format!(
                "x has shape {x_dims:?}; expected (B, frames, {}, {}, {}) (frame axis before channels)",
                cfg.in_channels, cfg.input_size, cfg.input_size
            ));
        }
        if t != cfg.num_frames + use_image_num {
            return bad(format!("x has {t} frames; expected num_frames {} + use_image_num {use_image_num}", cfg.num_frames));
        }
        if use_image_num > 0 && cfg.temporal_stride() > 1 {
            return bad("extra image frames cannot be used with the tubelet patch embedding".into());
        }
        if t_len != b {
            return bad(format!("t has {t_len} timesteps for a batch of {b}"));
        }
        match (cfg.num_classes, y_len) {
            (Some(_), None) => return bad("the model is class-conditional: labels y are required".into()),
            (None, Some(_)) => return bad("the model is unconditional: labels y must not be given".into()),
            (Some(_), Some(n)) if n != b => return bad(format!("y has {n} labels for a batch of {b}")),
            _ => {}
        }
        match y_image_dims {
            None => Ok(()),
            Some(_) if cfg.num_classes.is_none() => bad("the model is unconditional: per-image labels y_image must not be given".into()),
            Some(dims) if dims != [b, use_image_num] => {
                bad(format!("y_image has shape {dims:?}; expected (B, use_image_num) = [{b}, {use_image_num}]"))
            }
            Some(_) => Ok(()),
        }
    }

    /// Like [`forward`](Self::forward), but checks the input first (labels included) instead
    /// of panicking on a mismatch.
    pub fn try_forward(
        &self,
        x: Tensor<5>,
        t: Tensor<1, Int>,
        y: Option<Tensor<1, Int>>,
        use_image_num: usize,
    ) -> Result<Tensor<5>, ModelError> {
        self.try_forward_joint(x, t, y, None, use_image_num)
    }

    /// Like [`forward_joint`](Self::forward_joint), but checks the input first (labels
    /// included) instead of panicking on a mismatch.
    pub fn try_forward_joint(
        &self,
        x: Tensor<5>,
        t: Tensor<1, Int>,
        y: Option<Tensor<1, Int>>,
        y_image: Option<Tensor<2, Int>>,
        use_image_num: usize,
    ) -> Result<Tensor<5>, ModelError> {
        self.check_joint_input(x.dims(), t.dims()[0], y.as_ref().map(|y| y.dims()[0]), y_image.as_ref().map(|y| y.dims()), use_image_num)?;
        if let Some(rows) = self.cfg.label_rows() {
            let mut labels: Vec<i64> = Vec::new();
            if let Some(y) = &y {
                labels.extend(y.clone().into_data().try_into_vec_as::<i64>().expect("converted to i64"));
            }
            if let Some(yi) = &y_image {
                labels.extend(yi.clone().into_data().try_into_vec_as::<i64>().expect("converted to i64"));
            }
            if let Some(l) = labels.iter().find(|&&l| l < 0 || l as usize >= rows) {
                return Err(ModelError::Input(format!("label {l} is outside the label table's {rows} rows")));
            }
        }
        Ok(self.forward_joint(x, t, y, y_image, use_image_num))
    }

    /// x (B, F+K, C, H, W) latents, t (B,) original timesteps, y (B,) labels when
    /// class-conditional (label dropout is the caller's), K = `use_image_num` extra independent
    /// image frames, conditioned on the clip's label y. Returns (B, F+K, C', H, W). No
    /// randomness inside. [`forward_joint`](Self::forward_joint) gives images their own labels.
    ///
    /// # Panics
    /// On shapes that do not match the configuration; [`try_forward`](Self::try_forward)
    /// returns an error instead.
    pub fn forward(&self, x: Tensor<5>, t: Tensor<1, Int>, y: Option<Tensor<1, Int>>, use_image_num: usize) -> Tensor<5> {
        self.forward_joint(x, t, y, None, use_image_num)
    }

    /// Image-video joint forward (`LatteIMG.forward`, §1.11): as [`forward`](Self::forward),
    /// plus `y_image` (B, K) labels of the K image frames (after the caller's label dropout,
    /// one coin per sample for all K images in the reference). Image frame k of sample b is then
    /// conditioned on `temb + y_embed(y_image[b, k])` in spatial sub-layers and the final layer;
    /// temporal sub-layers see video frames only. With all-tokens conditioning an image frame's
    /// spatial attention sees `[timestep, y_image[b, k]]` as its prefix tokens.
    ///
    /// # Panics
    /// On shapes that do not match the configuration; [`try_forward_joint`](Self::try_forward_joint)
    /// returns an error instead.
    pub fn forward_joint(
        &self,
        x: Tensor<5>,
        t: Tensor<1, Int>,
        y: Option<Tensor<1, Int>>,
        y_image: Option<Tensor<2, Int>>,
        use_image_num: usize,
    ) -> Tensor<5> {
        let y_len = y.as_ref().map(|y| y.dims()[0]);
        if let Err(e) = self.check_joint_input(x.dims(), t.dims()[0], y_len, y_image.as_ref().map(|y| y.dims()), use_image_num) {
            panic!("{e}");
        }
        let cfg = &self.cfg;
        let p = cfg.patch_size;
        let fv = cfg.token_frames();
        let out_dtype = x.dtype();
        let x = match self.compute {
            Some(dtype) => x.cast(dtype),
            None => x,
        };
        let dtype = x.dtype();

        let x = self.x_embedder.forward(x, p) + self.pos_embed.val().cast(dtype).unsqueeze_dim::<4>(1); // B T' N D
        let [b, tt, _, d] = x.dims();

        let temb = self.t_embedder.forward_as(t, dtype); // B D
                                                         // rows are gathered from the f32 table, then cast: the gradient scatters in f32
        let yemb = match (&self.y_embedder, y) {
            (Some(e), Some(y)) => Some(e.forward(y).cast(dtype)), // B D
            _ => None,
        };
        // B K D: the image frames' own label embeddings
        let img_emb = match (&self.y_embedder, y_image) {
            (Some(e), Some(yi)) => {
                let [bi, k] = yi.dims();
                Some(e.forward(yi.reshape([bi * k])).cast(dtype).reshape([bi, k, d]))
            }
            _ => None,
        };
        let cond = match cfg.conditioning {
            Conditioning::Adaln => Cond::Ada {
                video: match &yemb {
                    Some(ye) => temb.clone() + ye.clone(),
                    None => temb.clone(),
                },
                images: img_emb.map(|ie| temb.clone().unsqueeze_dim::<3>(1) + ie), // B K D
            },
            Conditioning::Tokens => {
                let mut toks = vec![temb.clone().unsqueeze_dim::<3>(1)];
                toks.extend(yemb.clone().map(|ye| ye.unsqueeze_dim::<3>(1)));
                let clip = Tensor::cat(toks, 1).unsqueeze_dim::<4>(1); // B 1 P D
                match img_emb {
                    None => Cond::Tokens(clip),
                    Some(ie) => {
                        // per frame: the clip's tokens on video frames, [timestep, own label] on images
                        let [_, k, _] = ie.dims();
                        let [_, _, pp, _] = clip.dims();
                        let t_img = temb.clone().reshape([b, 1, 1, d]).expand([b, k, 1, d]);
                        let images = Tensor::cat(vec![t_img, ie.unsqueeze_dim::<4>(2)], 2); // B K P D
                        Cond::Tokens(Tensor::cat(vec![clip.expand([b, fv, pp, d]), images], 1))
                        // B T P D
                    }
                }
            }
        };

        // (1, T', 1, D): the temporal table on video frames, zero on image frames
        let temp = self.temp_embed.as_ref().map(|te| {
            let te = te.val().cast(dtype).reshape([1, fv, 1, d]);
            if tt > fv {
                Tensor::cat(vec![te, Tensor::zeros([1, tt - fv, 1, d], (&x.device(), dtype))], 1)
            } else {
                te
            }
        });
        let first_temporal = cfg.first_temporal_block();
        let mut x = x;
        for (i, block) in self.blocks.iter().enumerate() {
            let factorised = block.kind == BlockKind::Factorised;
            if i == first_temporal && !factorised {
                if let Some(te) = &temp {
                    x = x + te.clone();
                }
            }
            let ctx = BlockCtx {
                cond: &cond,
                video_frames: fv,
                rope: cfg.temporal_pos == TemporalPos::Rope,
                temp_embed: if factorised && i == first_temporal { temp.clone() } else { None },
            };
            x = block.forward(x, &ctx);
        }

        let out = self.final_layer.forward(x, &cond, fv); // B T' N p·p·C'
        let out = unpatchify(out, p, cfg.out_channels()); // B T' C' H W
        let out = match &self.temporal_upsample {
            Some(up) => temporal_upsample(up, out), // B F C' H W
            None => out,
        };
        debug_assert_eq!(out.dims()[0], b);
        out.cast(out_dtype)
    }

    /// [`forward_joint`](Self::forward_joint) with the image labels as a training batch holds
    /// them: (B·K) labels, clip-major, reshaped to (B, K) so each extra image frame is
    /// conditioned on its own class (§1.11).
    pub fn forward_joint_flat(
        &self,
        x: Tensor<5>,
        t: Tensor<1, Int>,
        y: Option<Tensor<1, Int>>,
        y_image: Option<Tensor<1, Int>>,
        use_image_num: usize,
    ) -> Tensor<5> {
        let k = use_image_num;
        let y_image = y_image.filter(|_| k > 0).map(|yi| {
            let b = yi.dims()[0] / k;
            yi.reshape([b, k])
        });
        self.forward_joint(x, t, y, y_image, k)
    }

    /// The reference's `forward_with_cfg` (§1.12): x (2B, ...) whose second half is ignored
    /// (the first half is used twice), t (2B,), y (2B,) = `[labels; null class]`. The first
    /// C (= in_channels) output channels are guided, `ε_u + s·(ε_c − ε_u)`, in both halves;
    /// the remaining (variance) channels are each half's own.
    pub fn forward_with_cfg(&self, x: Tensor<5>, t: Tensor<1, Int>, y: Tensor<1, Int>, cfg_scale: f32) -> Tensor<5> {
        let n = x.dims()[0];
        let half = n / 2;
        let first = x.narrow(0, 0, half);
        let combined = Tensor::cat(vec![first.clone(), first], 0);
        let out = self.forward(combined, t, Some(y), 0);
        let c = self.cfg.in_channels;
        let co = self.cfg.out_channels();
        let eps = out.clone().narrow(2, 0, c);
        let cond_eps = eps.clone().narrow(0, 0, half);
        let uncond_eps = eps.narrow(0, half, n - half);
        let guided = uncond_eps.clone() + (cond_eps - uncond_eps) * cfg_scale;
        let eps = Tensor::cat(vec![guided.clone(), guided], 0);
        if co > c {
            Tensor::cat(vec![eps, out.narrow(2, c, co - c)], 2)
        } else {
            eps
        }
    }

    /// The network call of one sampling step for B samples: with `labels` and `cfg_scale ≠ 1`
    /// the batch is doubled with the null class (index `num_classes`), guided by
    /// [`forward_with_cfg`](Self::forward_with_cfg), and the conditional half is kept; otherwise
    /// the plain forward (`cfg_scale = 1` is the class-conditional one). Only the first half
    /// of the doubled x ever reaches the network, so stepping the kept B rows alone gives the
    /// reference's kept half exactly. Returns (B, F, 2C, H, W).
    pub fn guided_forward(
        &self,
        x: Tensor<5>,
        t: Tensor<1, Int>,
        labels: Option<&[usize]>,
        cfg_scale: f64,
    ) -> Result<Tensor<5>, ModelError> {
        let b = x.dims()[0];
        let dev = x.device();
        let ints = |v: Vec<i64>| Tensor::<1, Int>::from_data(TensorData::new(v.clone(), [v.len()]), &dev);
        match (labels, self.cfg.num_classes) {
            (Some(labels), Some(null)) if cfg_scale != 1.0 => {
                let x2 = Tensor::cat(vec![x.clone(), x], 0); // 2B F C H W
                let t2 = Tensor::cat(vec![t.clone(), t], 0); // 2B
                let y: Vec<i64> = labels.iter().map(|&l| l as i64).chain(std::iter::repeat_n(null as i64, b)).collect();
                self.check_cfg_input(x2.dims(), t2.dims()[0], y.len())?;
                let out = self.forward_with_cfg(x2, t2, ints(y), cfg_scale as f32); // 2B F 2C H W
                Ok(out.narrow(0, 0, b)) // B F 2C H W
            }
            (labels, _) => {
                let y = labels.map(|l| ints(l.iter().map(|&l| l as i64).collect()));
                self.check_input(x.dims(), t.dims()[0], y.as_ref().map(|y| y.dims()[0]), 0)?;
                Ok(self.forward(x, t, y, 0)) // B F 2C H W
            }
        }
    }

    /// Checks the arguments of [`forward_with_cfg`](Self::forward_with_cfg).
    pub fn check_cfg_input(&self, x_dims: [usize; 5], t_len: usize, y_len: usize) -> Result<(), ModelError> {
        if self.cfg.num_classes.is_none() || self.cfg.class_dropout_prob <= 0.0 {
            return Err(ModelError::Input(
                "classifier-free guidance needs a class-conditional model with a null class (class_dropout_prob > 0)".into(),
            ));
        }
        if !x_dims[0].is_multiple_of(2) {
            return Err(ModelError::Input(format!("guidance needs a doubled batch, got {} samples", x_dims[0])));
        }
        self.check_input(x_dims, t_len, Some(y_len), 0)
    }
}
