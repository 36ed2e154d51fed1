//! diffusers' `AutoencoderKL` (the Stable Diffusion kl-f8 VAE and any smaller configuration of
//! it), ported from diffusers 0.42.1 `models/autoencoders/vae.py` (`Encoder`, `Decoder`),
//! `models/resnet.py` (`ResnetBlock2D`), `models/downsampling.py`, `models/upsampling.py` and
//! `models/attention_processor.py` (`Attention` + `AttnProcessor2_0`).
//!
//! Field names are diffusers' attribute names, so a parameter's module path is its state-dict
//! key (`encoder.down_blocks.0.resnets.1.conv2.weight`); `weights.rs` relies on it.
//!
//! Dimension letters: N batch, C channels, H/W height/width, L = H·W tokens, Z latent channels.

use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::activation::softmax;
use burn::tensor::ops::PadMode;
use burn::tensor::{Device, Tensor};
use latte_nn::init::ParamFactory;
use latte_nn::layers::{torch_linear, Conv2d, GroupNorm};
use latte_nn::ops::linear;
use latte_nn::ops::silu;

use crate::config::VaeConfig;
use crate::posterior::DiagonalGaussian;
use crate::VaeError;

/// `ResnetBlock2D` without time embedding: `shortcut(x) + conv2(silu(norm2(conv1(silu(norm1(x))))))`.
#[derive(Module, Debug)]
pub struct ResnetBlock2D {
    norm1: GroupNorm,
    conv1: Conv2d,
    norm2: GroupNorm,
    conv2: Conv2d,
    /// 1×1 projection, present only when the channel count changes.
    conv_shortcut: Option<Conv2d>,
}

impl ResnetBlock2D {
    fn new(f: &ParamFactory, key: &str, c_in: usize, c_out: usize, cfg: &VaeConfig) -> Self {
        let (groups, eps) = (cfg.norm_num_groups, cfg.norm_eps);
        Self {
            norm1: GroupNorm::new(f, &format!("{key}.norm1"), groups, c_in, eps),
            conv1: Conv2d::same3(f, &format!("{key}.conv1"), c_in, c_out),
            norm2: GroupNorm::new(f, &format!("{key}.norm2"), groups, c_out, eps),
            conv2: Conv2d::same3(f, &format!("{key}.conv2"), c_out, c_out),
            conv_shortcut: (c_in != c_out).then(|| Conv2d::pointwise(f, &format!("{key}.conv_shortcut"), c_in, c_out)),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let h = self.conv1.forward(silu(self.norm1.forward(x.clone()))); // N, Cout, H, W
        let h = self.conv2.forward(silu(self.norm2.forward(h))); // N, Cout, H, W
        let shortcut = match &self.conv_shortcut {
            Some(conv) => conv.forward(x),
            None => x,
        };
        shortcut + h
    }
}

/// `Downsample2D` of the VAE: zero-pad right and bottom by one, then a 3×3 stride-2 conv.
#[derive(Module, Debug)]
pub struct Downsample2D {
    conv: Conv2d,
}

impl Downsample2D {
    fn new(f: &ParamFactory, key: &str, c: usize) -> Self {
        Self { conv: Conv2d::new(f, &format!("{key}.conv"), c, c, 3, 2, [0; 4]) }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        // diffusers pads (0, 1, 0, 1) itself because `padding=0` was the original LDM choice;
        // an explicit pad keeps the backward pass to plain slicing.
        let padded = x.pad((0, 1, 0, 1), PadMode::Constant(0.0)); // N, C, H+1, W+1
        self.conv.forward(padded) // N, C, H/2, W/2
    }
}

/// `Upsample2D`: nearest-neighbour ×2, then a 3×3 conv.
#[derive(Module, Debug)]
pub struct Upsample2D {
    conv: Conv2d,
}

impl Upsample2D {
    fn new(f: &ParamFactory, key: &str, c: usize) -> Self {
        Self { conv: Conv2d::same3(f, &format!("{key}.conv"), c, c) }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [n, c, h, w] = x.dims();
        // Nearest ×2 is an exact repeat of every pixel; a broadcast avoids any rounding rule.
        let up = x.reshape([n, c, h, 1, w, 1]).expand([n, c, h, 2, w, 2]).reshape([n, c, 2 * h, 2 * w]); // N, C, 2H, 2W
        self.conv.forward(up)
    }
}

/// The mid-block self-attention: one head over all H·W positions, with a residual.
#[derive(Module, Debug)]
pub struct Attention {
    group_norm: GroupNorm,
    to_q: Linear,
    to_k: Linear,
    to_v: Linear,
    /// diffusers' `to_out` is `ModuleList([Linear, Dropout])`; its key is `to_out.0`.
    to_out: Linear,
}

impl Attention {
    fn new(f: &ParamFactory, key: &str, c: usize, cfg: &VaeConfig) -> Self {
        Self {
            group_norm: GroupNorm::new(f, &format!("{key}.group_norm"), cfg.norm_num_groups, c, cfg.norm_eps),
            to_q: torch_linear(f, &format!("{key}.to_q"), c, c),
            to_k: torch_linear(f, &format!("{key}.to_k"), c, c),
            to_v: torch_linear(f, &format!("{key}.to_v"), c, c),
            to_out: torch_linear(f, &format!("{key}.to_out.0"), c, c),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [n, c, h, w] = x.dims();
        let tokens = self.group_norm.forward(x.clone()).reshape([n, c, h * w]).swap_dims(1, 2); // N, L, C
        let q = linear(&self.to_q, tokens.clone()); // N, L, C
        let k = linear(&self.to_k, tokens.clone()); // N, L, C
        let v = linear(&self.to_v, tokens); // N, L, C
        let scores = q.matmul(k.swap_dims(1, 2)) * (1.0 / (c as f64).sqrt()); // N, L, L
        let attended = softmax(scores, 2).matmul(v); // N, L, C
        let out = linear(&self.to_out, attended).swap_dims(1, 2).reshape([n, c, h, w]); // N, C, H, W
        out + x
    }
}

/// `UNetMidBlock2D` without time embedding: resnet → (attention → resnet).
#[derive(Module, Debug)]
pub struct MidBlock {
    attentions: Vec<Attention>,
    resnets: Vec<ResnetBlock2D>,
}

impl MidBlock {
    fn new(f: &ParamFactory, key: &str, c: usize, cfg: &VaeConfig) -> Self {
        let resnets = (0..2).map(|j| ResnetBlock2D::new(f, &format!("{key}.resnets.{j}"), c, c, cfg)).collect();
        let attentions = match cfg.mid_block_add_attention {
            true => vec![Attention::new(f, &format!("{key}.attentions.0"), c, cfg)],
            false => Vec::new(),
        };
        Self { attentions, resnets }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mut h = self.resnets[0].forward(x);
        for attention in &self.attentions {
            h = attention.forward(h);
        }
        self.resnets[1].forward(h)
    }
}

/// `DownEncoderBlock2D`: resnets, then an optional downsampler.
#[derive(Module, Debug)]
pub struct DownBlock {
    resnets: Vec<ResnetBlock2D>,
    downsamplers: Vec<Downsample2D>,
}

/// `UpDecoderBlock2D`: resnets, then an optional upsampler.
#[derive(Module, Debug)]
pub struct UpBlock {
    resnets: Vec<ResnetBlock2D>,
    upsamplers: Vec<Upsample2D>,
}

#[derive(Module, Debug)]
pub struct Encoder {
    conv_in: Conv2d,
    down_blocks: Vec<DownBlock>,
    mid_block: MidBlock,
    conv_norm_out: GroupNorm,
    conv_out: Conv2d,
}

impl Encoder {
    fn new(f: &ParamFactory, cfg: &VaeConfig) -> Self {
        let boc = &cfg.block_out_channels;
        let last = boc.len() - 1;
        let conv_in = Conv2d::same3(f, "encoder.conv_in", cfg.in_channels, boc[0]);
        let mut c_prev = boc[0];
        let mut down_blocks = Vec::with_capacity(boc.len());
        for (i, &c) in boc.iter().enumerate() {
            let key = format!("encoder.down_blocks.{i}");
            let resnets = (0..cfg.layers_per_block)
                .map(|j| ResnetBlock2D::new(f, &format!("{key}.resnets.{j}"), if j == 0 { c_prev } else { c }, c, cfg))
                .collect();
            let downsamplers = match i < last {
                true => vec![Downsample2D::new(f, &format!("{key}.downsamplers.0"), c)],
                false => Vec::new(),
            };
            down_blocks.push(DownBlock { resnets, downsamplers });
            c_prev = c;
        }
        let c = boc[last];
        Self {
            conv_in,
            down_blocks,
            mid_block: MidBlock::new(f, "encoder.mid_block", c, cfg),
            conv_norm_out: GroupNorm::new(f, "encoder.conv_norm_out", cfg.norm_num_groups, c, cfg.norm_eps),
            conv_out: Conv2d::same3(f, "encoder.conv_out", c, 2 * cfg.latent_channels),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mut h = self.conv_in.forward(x); // N, C0, H, W
        for block in &self.down_blocks {
            for resnet in &block.resnets {
                h = resnet.forward(h);
            }
            for down in &block.downsamplers {
                h = down.forward(h);
            }
        } // N, Clast, H/f, W/f
        h = self.mid_block.forward(h);
        self.conv_out.forward(silu(self.conv_norm_out.forward(h))) // N, 2Z, H/f, W/f
    }
}

#[derive(Module, Debug)]
pub struct Decoder {
    conv_in: Conv2d,
    mid_block: MidBlock,
    up_blocks: Vec<UpBlock>,
    conv_norm_out: GroupNorm,
    conv_out: Conv2d,
}

impl Decoder {
    fn new(f: &ParamFactory, cfg: &VaeConfig) -> Self {
        let reversed: Vec<usize> = cfg.block_out_channels.iter().rev().copied().collect();
        let last = reversed.len() - 1;
        let conv_in = Conv2d::same3(f, "decoder.conv_in", cfg.latent_channels, reversed[0]);
        let mid_block = MidBlock::new(f, "decoder.mid_block", reversed[0], cfg);
        let mut c_prev = reversed[0];
        let mut up_blocks = Vec::with_capacity(reversed.len());
        for (i, &c) in reversed.iter().enumerate() {
            let key = format!("decoder.up_blocks.{i}");
            let resnets = (0..cfg.layers_per_block + 1)
                .map(|j| ResnetBlock2D::new(f, &format!("{key}.resnets.{j}"), if j == 0 { c_prev } else { c }, c, cfg))
                .collect();
            let upsamplers = match i < last {
                true => vec![Upsample2D::new(f, &format!("{key}.upsamplers.0"), c)],
                false => Vec::new(),
            };
            up_blocks.push(UpBlock { resnets, upsamplers });
            c_prev = c;
        }
        let c = reversed[last];
        Self {
            conv_in,
            mid_block,
            up_blocks,
            conv_norm_out: GroupNorm::new(f, "decoder.conv_norm_out", cfg.norm_num_groups, c, cfg.norm_eps),
            conv_out: Conv2d::same3(f, "decoder.conv_out", c, cfg.out_channels),
        }
    }

    fn forward(&self, z: Tensor<4>) -> Tensor<4> {
        let mut h = self.conv_in.forward(z); // N, Clast, h, w
        h = self.mid_block.forward(h);
        for block in &self.up_blocks {
            for resnet in &block.resnets {
                h = resnet.forward(h);
            }
            for up in &block.upsamplers {
                h = up.forward(h);
            }
        } // N, C0, H, W
        self.conv_out.forward(silu(self.conv_norm_out.forward(h))) // N, 3, H, W
    }
}

/// The whole autoencoder. Images are `[N, C, H, W]` in [-1, 1]; H and W must be multiples of
/// the downsampling factor.
#[derive(Module, Debug)]
pub struct AutoencoderKL {
    encoder: Encoder,
    decoder: Decoder,
    quant_conv: Option<Conv2d>,
    post_quant_conv: Option<Conv2d>,
}

impl AutoencoderKL {
    pub(crate) fn build(f: &ParamFactory, cfg: &VaeConfig) -> Self {
        let z = cfg.latent_channels;
        Self {
            encoder: Encoder::new(f, cfg),
            decoder: Decoder::new(f, cfg),
            quant_conv: cfg.use_quant_conv.then(|| Conv2d::pointwise(f, "quant_conv", 2 * z, 2 * z)),
            post_quant_conv: cfg.use_post_quant_conv.then(|| Conv2d::pointwise(f, "post_quant_conv", z, z)),
        }
    }

    /// A freshly initialised autoencoder (PyTorch's default initialisation), drawn from `seed`.
    pub fn init(cfg: &VaeConfig, seed: u64, device: &Device) -> Result<Self, VaeError> {
        cfg.validate().map_err(|reason| VaeError::Config { path: "<in-memory config>".into(), reason })?;
        Ok(Self::build(&ParamFactory::sequential(seed, device), cfg))
    }

    /// Like [`AutoencoderKL::init`], with the log-variance output's bias shifted by
    /// `logvar_bias`. A fresh encoder's posterior has variance ≈ 1 against means ≈ 0, so its
    /// samples carry almost no signal and the decoder first learns to ignore them; starting
    /// near-deterministic (e.g. -6, std 0.05) lets a short training run learn reconstructions
    /// at once, and the KL term widens the posterior where it can.
    ///
    /// With `zero_residual_branches`, the last layer of every residual branch (each ResNet's
    /// `conv2`, the attention's `to_out.0`) starts at zero, so every block starts as the
    /// identity and the fresh network is a shallow chain of convolutions that trains fast
    /// (the "zero-init residual" of Goyal et al. 2017 / Fixup); the values drawn for those
    /// layers are still consumed from the generator, so other layers are unchanged.
    pub fn init_for_training(
        cfg: &VaeConfig,
        seed: u64,
        logvar_bias: f32,
        zero_residual_branches: bool,
        device: &Device,
    ) -> Result<Self, VaeError> {
        cfg.validate().map_err(|reason| VaeError::Config { path: "<in-memory config>".into(), reason })?;
        let logvar_key = if cfg.use_quant_conv { "quant_conv.bias" } else { "encoder.conv_out.bias" };
        let logvar_from = cfg.latent_channels;
        let f = ParamFactory::sequential(seed, device).with_fresh_edit(move |key, values| {
            if zero_residual_branches && is_residual_branch_end(key) {
                values.fill(0.0);
            }
            if key == logvar_key {
                values.iter_mut().skip(logvar_from).for_each(|v| *v += logvar_bias);
            }
        });
        Ok(Self::build(&f, cfg))
    }

    /// The posterior q(z | x): diffusers' `encode(x).latent_dist`.
    pub fn encode(&self, x: Tensor<4>) -> DiagonalGaussian {
        let h = self.encoder.forward(x); // N, 2Z, h, w
        let moments = match &self.quant_conv {
            Some(conv) => conv.forward(h),
            None => h,
        };
        DiagonalGaussian::from_moments(moments)
    }

    /// diffusers' `decode(z).sample`: no scaling factor is applied here.
    pub fn decode(&self, z: Tensor<4>) -> Tensor<4> {
        let z = match &self.post_quant_conv {
            Some(conv) => conv.forward(z),
            None => z,
        };
        self.decoder.forward(z) // N, 3, H, W
    }
}

/// Whether `key` is a parameter of the layer that ends a residual branch.
fn is_residual_branch_end(key: &str) -> bool {
    key.contains(".conv2.") || key.contains(".to_out.0.")
}

/// Checks that an image batch fits the autoencoder before any tensor work.
pub fn check_input(shape: [usize; 4], cfg: &VaeConfig) -> Result<(), VaeError> {
    let [_, c, h, w] = shape;
    let f = cfg.downsample_factor();
    let reason = if c != cfg.in_channels {
        format!("expected {} channels, got {c}", cfg.in_channels)
    } else if h == 0 || w == 0 || h % f != 0 || w % f != 0 {
        format!("height and width must be positive multiples of the downsampling factor {f}, got {h}×{w}")
    } else {
        return Ok(());
    };
    Err(VaeError::Input { shape: shape.to_vec(), reason })
}
