//! The autoencoder's shape, read from and written to diffusers' `config.json`.
//!
//! Field names are diffusers' `AutoencoderKL.__init__` arguments, so a folder saved by
//! `save_pretrained` loads here and a folder saved here loads in diffusers.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::VaeError;

/// diffusers hard-codes this eps in every GroupNorm of `Encoder`, `Decoder` and their mid-block
/// attention; it is not an `AutoencoderKL` argument.
pub const DIFFUSERS_NORM_EPS: f64 = 1e-6;

/// Stable Diffusion's latent scale (`scaling_factor` of the kl-f8 VAE): latents are multiplied
/// by it after encoding and divided by it before decoding, outside the VAE.
pub const SD_SCALING_FACTOR: f64 = 0.18215;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VaeConfig {
    #[serde(rename = "_class_name", default = "class_name")]
    pub class_name: String,
    #[serde(default = "three")]
    pub in_channels: usize,
    #[serde(default = "three")]
    pub out_channels: usize,
    #[serde(default = "four")]
    pub latent_channels: usize,
    pub block_out_channels: Vec<usize>,
    #[serde(default = "one")]
    pub layers_per_block: usize,
    #[serde(default = "thirty_two")]
    pub norm_num_groups: usize,
    #[serde(default = "silu")]
    pub act_fn: String,
    /// diffusers fills one `DownEncoderBlock2D` per entry of `block_out_channels`.
    #[serde(default)]
    pub down_block_types: Vec<String>,
    #[serde(default)]
    pub up_block_types: Vec<String>,
    #[serde(default = "yes")]
    pub mid_block_add_attention: bool,
    #[serde(default = "yes")]
    pub use_quant_conv: bool,
    #[serde(default = "yes")]
    pub use_post_quant_conv: bool,
    #[serde(default = "sd_scale")]
    pub scaling_factor: f64,
    #[serde(default)]
    pub shift_factor: Option<f64>,
    #[serde(default = "thirty_two")]
    pub sample_size: usize,
    #[serde(default = "yes")]
    pub force_upcast: bool,
    /// Not a diffusers argument (diffusers fixes 1e-6); only written when it differs, so that
    /// folders stay loadable by diffusers.
    #[serde(default = "norm_eps", skip_serializing_if = "is_diffusers_eps")]
    pub norm_eps: f64,
}

fn class_name() -> String {
    "AutoencoderKL".into()
}
fn one() -> usize {
    1
}
fn three() -> usize {
    3
}
fn four() -> usize {
    4
}
fn thirty_two() -> usize {
    32
}
fn silu() -> String {
    "silu".into()
}
fn yes() -> bool {
    true
}
fn sd_scale() -> f64 {
    SD_SCALING_FACTOR
}
fn norm_eps() -> f64 {
    DIFFUSERS_NORM_EPS
}
fn is_diffusers_eps(eps: &f64) -> bool {
    *eps == DIFFUSERS_NORM_EPS
}

impl VaeConfig {
    /// A diffusers-style config with the given channels per resolution level; each level after
    /// the first halves the resolution.
    pub fn new(block_out_channels: Vec<usize>, layers_per_block: usize, norm_num_groups: usize, latent_channels: usize) -> Self {
        let n = block_out_channels.len();
        Self {
            class_name: class_name(),
            in_channels: 3,
            out_channels: 3,
            latent_channels,
            block_out_channels,
            layers_per_block,
            norm_num_groups,
            act_fn: silu(),
            down_block_types: vec!["DownEncoderBlock2D".into(); n],
            up_block_types: vec!["UpDecoderBlock2D".into(); n],
            mid_block_add_attention: true,
            use_quant_conv: true,
            use_post_quant_conv: true,
            scaling_factor: SD_SCALING_FACTOR,
            shift_factor: None,
            sample_size: 32,
            force_upcast: true,
            norm_eps: DIFFUSERS_NORM_EPS,
        }
    }

    /// Stable Diffusion's kl-f8 VAE (SD 1.x, sd-vae-ft-ema, sd-vae-ft-mse): 83.7M parameters.
    pub fn stable_diffusion() -> Self {
        let mut c = Self::new(vec![128, 256, 512, 512], 2, 32, 4);
        c.sample_size = 256;
        c
    }

    /// Spatial downsampling factor between frames and latents (8 for Stable Diffusion).
    pub fn downsample_factor(&self) -> usize {
        1 << self.block_out_channels.len().saturating_sub(1)
    }

    pub fn from_file(path: &Path) -> Result<Self, VaeError> {
        let text = std::fs::read_to_string(path).map_err(|source| VaeError::Io { path: path.to_owned(), source })?;
        let config: Self = serde_json::from_str(&text).map_err(|source| VaeError::ConfigParse { path: path.to_owned(), source })?;
        config.validate().map_err(|reason| VaeError::Config { path: path.to_owned(), reason })?;
        Ok(config)
    }

    pub fn to_json(&self) -> String {
        // Serialising a struct of plain fields cannot fail.
        serde_json::to_string_pretty(self).expect("VaeConfig serialises")
    }

    /// Checks what serde cannot: the architecture is one this crate implements.
    pub fn validate(&self) -> Result<(), String> {
        if self.class_name != "AutoencoderKL" {
            return Err(format!("`_class_name` is \"{}\"; only \"AutoencoderKL\" is supported", self.class_name));
        }
        if self.block_out_channels.is_empty() {
            return Err("`block_out_channels` is empty; give one channel count per level, e.g. [128, 256, 512, 512]".into());
        }
        if self.act_fn != "silu" {
            return Err(format!("`act_fn` is \"{}\"; only \"silu\" is supported", self.act_fn));
        }
        if self.norm_num_groups == 0 {
            return Err("`norm_num_groups` must be at least 1".into());
        }
        for &c in &self.block_out_channels {
            if c == 0 || c % self.norm_num_groups != 0 {
                return Err(format!(
                    "`block_out_channels` entry {c} is not a positive multiple of `norm_num_groups` ({})",
                    self.norm_num_groups
                ));
            }
        }
        if self.in_channels == 0 || self.out_channels == 0 || self.latent_channels == 0 {
            return Err("`in_channels`, `out_channels` and `latent_channels` must be at least 1".into());
        }
        let n = self.block_out_channels.len();
        for (key, types, want) in [
            ("down_block_types", &self.down_block_types, "DownEncoderBlock2D"),
            ("up_block_types", &self.up_block_types, "UpDecoderBlock2D"),
        ] {
            if !types.is_empty() && types.len() != n {
                return Err(format!("`{key}` has {} entries but `block_out_channels` has {n}", types.len()));
            }
            if let Some(t) = types.iter().find(|t| *t != want) {
                return Err(format!("`{key}` holds \"{t}\"; only \"{want}\" is supported"));
            }
        }
        if self.norm_eps.is_nan() || self.norm_eps <= 0.0 {
            return Err(format!("`norm_eps` must be positive, got {}", self.norm_eps));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_diffusion_downsamples_by_eight() {
        assert_eq!(VaeConfig::stable_diffusion().downsample_factor(), 8);
        assert!(VaeConfig::stable_diffusion().validate().is_ok());
    }

    #[test]
    fn rejects_channels_not_divisible_by_groups() {
        let c = VaeConfig::new(vec![30, 64], 1, 8, 4);
        let err = c.validate().unwrap_err();
        assert!(err.contains("block_out_channels") && err.contains("30"), "{err}");
    }

    #[test]
    fn json_round_trip_keeps_diffusers_keys() {
        let c = VaeConfig::new(vec![32, 64], 1, 8, 4);
        let json = c.to_json();
        assert!(json.contains("\"_class_name\": \"AutoencoderKL\""));
        assert!(!json.contains("norm_eps"), "non-diffusers key written: {json}");
        let back: VaeConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, c);
    }
}
