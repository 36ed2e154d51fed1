//! The model configuration: the reference's constructor arguments plus the paper's design
//! options that the released code lacks (variants 2-4, tubelet embedding, all-tokens
//! conditioning, RoPE).

use crate::ModelError;
use serde::{Deserialize, Serialize};

/// How frames become tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PatchEmbedKind {
    /// Per-frame `p×p` patches (the reference).
    #[default]
    Uniform,
    /// ViViT tubelets of `stride` frames × `p×p`; the output is restored to F frames by a
    /// temporal transposed convolution after unpatchify.
    Tubelet { stride: usize },
}

/// How the timestep (and class) enter the network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Conditioning {
    /// adaLN-Zero modulation of every block ("S-AdaLN", the reference).
    #[default]
    Adaln,
    /// Timestep (and class) embeddings prepended as extra tokens to every attention sequence.
    Tokens,
}

/// Temporal position information.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TemporalPos {
    /// Fixed sin-cos table added once before the first temporal operation (the reference).
    #[default]
    Absolute,
    /// Rotary embedding of queries and keys inside temporal attention.
    Rope,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LatteConfig {
    /// Latent side length (32 for 256×256 video).
    pub input_size: usize,
    pub patch_size: usize,
    pub in_channels: usize,
    pub hidden_size: usize,
    /// Number of blocks (`blocks.{i}` keys) of variants 1, 2 and 4; variant 3 builds
    /// [`LatteConfig::num_blocks`] blocks from it.
    pub depth: usize,
    pub num_heads: usize,
    pub mlp_ratio: f64,
    /// Video frames per clip (F).
    pub num_frames: usize,
    /// `None`: unconditional (reference `extras = 1`); `Some(n)`: class-conditional (`extras = 2`).
    #[serde(default)]
    pub num_classes: Option<usize>,
    /// With `> 0` the label table has a null row (index `num_classes`) for guidance. The
    /// dropout itself is done by the caller.
    #[serde(default = "default_class_dropout")]
    pub class_dropout_prob: f64,
    #[serde(default = "default_true")]
    pub learn_sigma: bool,
    #[serde(default)]
    pub variant: Variant,
    #[serde(default)]
    pub patch_embed: PatchEmbedKind,
    #[serde(default)]
    pub conditioning: Conditioning,
    #[serde(default)]
    pub temporal_pos: TemporalPos,
}

fn default_class_dropout() -> f64 {
    0.1
}
fn default_true() -> bool {
    true
}
/// How the blocks arrange spatial and temporal attention (the paper's Fig. 2). Written as its
/// number, 1-4, in configuration files.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub enum Variant {
    /// 1: spatial and temporal blocks alternate (the released code's only variant).
    #[default]
    Interleaved = 1,
    /// 2: late fusion: the first half of the blocks spatial, the second half temporal.
    LateFusion = 2,
    /// 3: factorised attention: each block holds a spatial and a temporal attention.
    Factorised = 3,
    /// 4: each block splits its heads, half spatial and half temporal.
    SplitHeads = 4,
}

impl TryFrom<u8> for Variant {
    type Error = String;
    fn try_from(v: u8) -> Result<Self, String> {
        match v {
            1 => Ok(Variant::Interleaved),
            2 => Ok(Variant::LateFusion),
            3 => Ok(Variant::Factorised),
            4 => Ok(Variant::SplitHeads),
            v => Err(format!("variant must be 1, 2, 3 or 4, got {v}")),
        }
    }
}

impl From<Variant> for u8 {
    fn from(v: Variant) -> u8 {
        v as u8
    }
}

impl std::fmt::Display for Variant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", *self as u8)
    }
}

impl LatteConfig {
    /// `Latte-{S,B,L,XL}/{2,4,8}` of the reference (`Latte_models`): unconditional, 16 frames,
    /// 32×32×4 latents, learned sigma, variant 1 with the reference options.
    pub fn preset(name: &str) -> Result<Self, ModelError> {
        let unknown = || ModelError::UnknownPreset(name.to_string());
        let rest = name.strip_prefix("Latte-").ok_or_else(unknown)?;
        let (size, patch) = rest.split_once('/').ok_or_else(unknown)?;
        let (depth, hidden_size, num_heads) = match size {
            "S" => (12, 384, 6),
            "B" => (12, 768, 12),
            "L" => (24, 1024, 16),
            "XL" => (28, 1152, 16),
            _ => return Err(unknown()),
        };
        let patch_size = match patch {
            "2" => 2,
            "4" => 4,
            "8" => 8,
            _ => return Err(unknown()),
        };
        Ok(LatteConfig {
            input_size: 32,
            patch_size,
            in_channels: 4,
            hidden_size,
            depth,
            num_heads,
            mlp_ratio: 4.0,
            num_frames: 16,
            num_classes: None,
            class_dropout_prob: 0.1,
            learn_sigma: true,
            variant: Variant::Interleaved,
            patch_embed: PatchEmbedKind::Uniform,
            conditioning: Conditioning::Adaln,
            temporal_pos: TemporalPos::Absolute,
        })
    }

    pub fn out_channels(&self) -> usize {
        if self.learn_sigma {
            2 * self.in_channels
        } else {
            self.in_channels
        }
    }

    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_heads
    }

    pub fn mlp_hidden(&self) -> usize {
        (self.hidden_size as f64 * self.mlp_ratio) as usize
    }

    /// Tokens per frame (N).
    pub fn tokens_per_frame(&self) -> usize {
        let g = self.input_size / self.patch_size;
        g * g
    }

    /// Temporal stride of the patch embedding (1 for uniform).
    pub fn temporal_stride(&self) -> usize {
        match self.patch_embed {
            PatchEmbedKind::Uniform => 1,
            PatchEmbedKind::Tubelet { stride } => stride,
        }
    }

    /// Video frames in the token grid (F, or F/s with tubelets).
    pub fn token_frames(&self) -> usize {
        self.num_frames / self.temporal_stride()
    }

    /// Rows of the label table: the classes plus the null class when dropout is on.
    pub fn label_rows(&self) -> Option<usize> {
        self.num_classes.map(|n| n + usize::from(self.class_dropout_prob > 0.0))
    }

    /// Conditioning tokens per sequence in all-tokens mode (timestep, and class if any).
    pub fn prefix_tokens(&self) -> usize {
        match self.conditioning {
            Conditioning::Adaln => 0,
            Conditioning::Tokens => 1 + usize::from(self.num_classes.is_some()),
        }
    }

    /// Blocks the model builds. Variants 1, 2 and 4: `depth`. Variant 3's blocks hold two
    /// attentions, so it builds fewer, as many as give it about variant 1's parameters, as the
    /// paper's Table 3 does (XL/2: 673.68 M for V1, 676.33 M for V3): a V1 block has
    /// (4 + 2r + 6)·D² weights (attention, MLP of ratio r, 6-chunk adaLN), a V3 block
    /// (8 + 2r + 6)·D², so V3 builds `round(depth·(10 + 2r)/(14 + 2r))`: 23 for depth 28 (r = 4),
    /// 676.35 M at XL/2.
    pub fn num_blocks(&self) -> usize {
        match self.variant {
            Variant::Factorised => {
                let r = self.mlp_ratio;
                ((self.depth as f64 * (10.0 + 2.0 * r) / (14.0 + 2.0 * r)).round() as usize).max(1)
            }
            _ => self.depth,
        }
    }

    /// Index of the first block that operates temporally; the absolute temporal embedding is
    /// added just before it (V1: block 1, after the first spatial block, as the reference;
    /// V2: the first temporal block; V3: block 0, between its spatial and temporal attention;
    /// V4: block 0, whose temporal heads see it from the start).
    pub fn first_temporal_block(&self) -> usize {
        match self.variant {
            Variant::Interleaved => 1,
            Variant::LateFusion => self.depth / 2,
            Variant::Factorised | Variant::SplitHeads => 0,
        }
    }

    pub fn validate(&self) -> Result<(), ModelError> {
        let bad = |m: String| Err(ModelError::Config(m));
        if self.hidden_size == 0 || self.num_heads == 0 || !self.hidden_size.is_multiple_of(self.num_heads) {
            return bad(format!("hidden_size {} must be a positive multiple of num_heads {}", self.hidden_size, self.num_heads));
        }
        if self.patch_size == 0 || self.input_size == 0 || !self.input_size.is_multiple_of(self.patch_size) {
            return bad(format!("input_size {} must be a positive multiple of patch_size {}", self.input_size, self.patch_size));
        }
        if self.in_channels == 0 || self.num_frames == 0 || self.depth == 0 {
            return bad("in_channels, num_frames and depth must be positive".into());
        }
        // NaN is refused too
        if self.mlp_ratio.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) || self.mlp_hidden() == 0 {
            return bad(format!("mlp_ratio {} must be positive", self.mlp_ratio));
        }
        if !(0.0..1.0).contains(&self.class_dropout_prob) {
            return bad(format!("class_dropout_prob {} must be in [0, 1)", self.class_dropout_prob));
        }
        if self.num_classes == Some(0) {
            return bad("num_classes must be positive (or absent for an unconditional model)".into());
        }
        let pos_dim_ok = self.hidden_size.is_multiple_of(4);
        if !pos_dim_ok {
            return bad(format!("hidden_size {} must be divisible by 4 (2-D sin-cos position table)", self.hidden_size));
        }
        match self.variant {
            Variant::Interleaved | Variant::LateFusion if !self.depth.is_multiple_of(2) => {
                return bad(format!("variant {} needs an even depth (spatial/temporal pairs), got {}", self.variant, self.depth))
            }
            Variant::SplitHeads if !self.num_heads.is_multiple_of(2) => {
                return bad(format!("variant 4 splits the heads in two halves: num_heads {} must be even", self.num_heads))
            }
            _ => {}
        }
        if let PatchEmbedKind::Tubelet { stride } = self.patch_embed {
            if stride == 0 || !self.num_frames.is_multiple_of(stride) {
                return bad(format!("tubelet stride {stride} must divide num_frames {}", self.num_frames));
            }
        }
        if self.temporal_pos == TemporalPos::Rope && !self.head_dim().is_multiple_of(2) {
            return bad(format!("RoPE needs an even head dimension, got {}", self.head_dim()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_deserialize_from_plain_names_and_default_to_the_reference() {
        let json = r#"{"input_size": 32, "patch_size": 2, "in_channels": 4, "hidden_size": 384, "depth": 12,
            "num_heads": 6, "mlp_ratio": 4.0, "num_frames": 16}"#;
        let cfg: LatteConfig = serde_json::from_str(json).unwrap();
        assert_eq!(cfg, LatteConfig::preset("Latte-S/2").unwrap());
        let json = r#"{"input_size": 32, "patch_size": 2, "in_channels": 4, "hidden_size": 384, "depth": 12,
            "num_heads": 6, "mlp_ratio": 4.0, "num_frames": 16, "num_classes": 101, "variant": 3,
            "patch_embed": {"tubelet": {"stride": 2}}, "conditioning": "tokens", "temporal_pos": "rope"}"#;
        let cfg: LatteConfig = serde_json::from_str(json).unwrap();
        assert_eq!(cfg.patch_embed, PatchEmbedKind::Tubelet { stride: 2 });
        assert_eq!((cfg.variant, cfg.conditioning, cfg.temporal_pos), (Variant::Factorised, Conditioning::Tokens, TemporalPos::Rope));
        assert_eq!((cfg.token_frames(), cfg.prefix_tokens(), cfg.label_rows()), (8, 2, Some(102)));
        cfg.validate().unwrap();
        let back: LatteConfig = serde_json::from_str(&serde_json::to_string(&cfg).unwrap()).unwrap();
        assert_eq!(back, cfg);
    }

    #[test]
    fn invalid_options_are_rejected_with_the_setting_named() {
        let base = LatteConfig::preset("Latte-S/2").unwrap();
        let check = |cfg: LatteConfig, needle: &str| {
            let e = cfg.validate().unwrap_err().to_string();
            assert!(e.contains(needle), "{e}");
        };
        assert!(Variant::try_from(5).unwrap_err().contains("variant"));
        let json = serde_json::to_string(&base).unwrap().replace("\"variant\":1", "\"variant\":5");
        assert!(serde_json::from_str::<LatteConfig>(&json).unwrap_err().to_string().contains("variant must be 1, 2, 3 or 4"));
        check(LatteConfig { patch_embed: PatchEmbedKind::Tubelet { stride: 3 }, ..base.clone() }, "stride 3");
        check(LatteConfig { variant: Variant::SplitHeads, num_heads: 3, hidden_size: 384, ..base.clone() }, "num_heads");
        check(LatteConfig { input_size: 31, ..base.clone() }, "input_size");
        check(LatteConfig { num_classes: Some(0), ..base }, "num_classes");
    }
}
