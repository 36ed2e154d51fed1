//! Reading and writing diffusers AutoencoderKL folders: `config.json` plus a safetensors
//! state dict under diffusers key names.
//!
//! Loading is strict: a tensor the config needs that is absent or has another shape, and a
//! tensor the config does not explain, are all errors, reported together by name.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Device, Tensor};
use sha2::{Digest, Sha256};

use crate::autoencoder::AutoencoderKL;
use crate::config::VaeConfig;
use crate::VaeError;
use latte_nn::host::{write_atomic, write_safetensors, HostTensor};
use latte_nn::init::ParamFactory;
use latte_nn::tensor_file::TensorFile;

/// Old diffusers uploads name the mid-block attention projections `query`/`key`/`value`/
/// `proj_attn`; diffusers renames them on load, and so do we.
const ATTENTION_ALIASES: [(&str, &str); 4] =
    [(".to_q.", ".query."), (".to_k.", ".key."), (".to_v.", ".value."), (".to_out.0.", ".proj_attn.")];

/// The weights file name `save_pretrained` writes.
pub const DIFFUSERS_WEIGHTS: &str = "diffusion_pytorch_model.safetensors";
/// The weights file name of the parity fixtures (`xtask vae forward`).
pub const FIXTURE_WEIGHTS: &str = "weights.safetensors";
pub const CONFIG: &str = "config.json";

/// The number of parameters of the autoencoder `config` describes, counted without building
/// it (the same layers as `autoencoder.rs`); `None` if it overflows.
fn parameter_count(config: &VaeConfig) -> Option<u128> {
    let n = |v: usize| v as u128;
    let conv = |c_in: u128, c_out: u128, k: u128| c_out.checked_mul(c_in)?.checked_mul(k * k)?.checked_add(c_out);
    let norm = |c: u128| c.checked_mul(2);
    let resnet = |c_in: u128, c_out: u128| -> Option<u128> {
        let shortcut = if c_in != c_out { conv(c_in, c_out, 1)? } else { 0 };
        norm(c_in)?
            .checked_add(conv(c_in, c_out, 3)?)?
            .checked_add(norm(c_out)?)?
            .checked_add(conv(c_out, c_out, 3)?)?
            .checked_add(shortcut)
    };
    // `count` blocks, the first from `c_in` to `c`, the others `c` to `c`.
    let resnets = |count: u128, c_in: u128, c: u128| -> Option<u128> {
        match count {
            0 => Some(0),
            _ => resnet(c_in, c)?.checked_add(resnet(c, c)?.checked_mul(count - 1)?),
        }
    };
    let mid = |c: u128| -> Option<u128> {
        let attention =
            if config.mid_block_add_attention { norm(c)?.checked_add(c.checked_mul(c)?.checked_add(c)?.checked_mul(4)?)? } else { 0 };
        resnet(c, c)?.checked_mul(2)?.checked_add(attention)
    };
    let (z, boc) = (n(config.latent_channels), &config.block_out_channels);
    let (first, last) = (n(*boc.first()?), n(*boc.last()?));
    let lpb = n(config.layers_per_block);
    let mut total = conv(n(config.in_channels), first, 3)?;
    let mut c_prev = first;
    for (i, &c) in boc.iter().enumerate() {
        let c = n(c);
        total = total.checked_add(resnets(lpb, c_prev, c)?)?;
        if i + 1 < boc.len() {
            total = total.checked_add(conv(c, c, 3)?)?;
        }
        c_prev = c;
    }
    total = total.checked_add(mid(last)?)?.checked_add(norm(last)?)?.checked_add(conv(last, 2 * z, 3)?)?;
    total = total.checked_add(conv(z, last, 3)?)?.checked_add(mid(last)?)?;
    c_prev = last;
    for (i, &c) in boc.iter().rev().enumerate() {
        let c = n(c);
        total = total.checked_add(resnets(lpb + 1, c_prev, c)?)?;
        if i + 1 < boc.len() {
            total = total.checked_add(conv(c, c, 3)?)?;
        }
        c_prev = c;
    }
    total = total.checked_add(norm(first)?)?.checked_add(conv(first, n(config.out_channels), 3)?)?;
    if config.use_quant_conv {
        total = total.checked_add(conv(2 * z, 2 * z, 1)?)?;
    }
    if config.use_post_quant_conv {
        total = total.checked_add(conv(z, z, 1)?)?;
    }
    Some(total)
}

/// Builds the autoencoder of `config` from the safetensors state dict at `path`.
pub fn load_weights(config: &VaeConfig, path: &Path, device: &Device) -> Result<AutoencoderKL, VaeError> {
    config.validate().map_err(|reason| VaeError::Config { path: path.with_file_name(CONFIG), reason })?;
    let file = ATTENTION_ALIASES.iter().fold(TensorFile::open(path)?, |file, (current, old)| file.with_alias(current, old));
    // Building allocates every parameter the config names (zeros where the file lacks one, so
    // that all problems are listed at once): a config claiming huge channel counts must be
    // refused against the file's size first, not after allocating what it claims. Every
    // parameter takes at least 2 bytes of the file (f16/bf16).
    let held = file.data_len() as u128;
    match parameter_count(config) {
        Some(needed) if needed.checked_mul(2).is_some_and(|bytes| bytes <= held) => {}
        needed => {
            let needed = needed.map_or("more than 2^128".to_owned(), |n| n.to_string());
            return Err(VaeError::Weights {
                path: path.to_owned(),
                problems: vec![format!(
                    "the file holds {held} bytes of tensor data, too few for the {needed} parameters its config.json describes (at least 2 bytes each)"
                )],
            });
        }
    }
    let factory = ParamFactory::from_file(file, device);
    let model = AutoencoderKL::build(&factory, config);
    let (mut problems, unused) = factory.finish();
    problems.extend(unused.iter().map(|k| format!("unexpected: {k} (not part of this config)")));
    if problems.is_empty() {
        Ok(model)
    } else {
        Err(VaeError::Weights { path: path.to_owned(), problems })
    }
}

/// A diffusers AutoencoderKL folder: its config and the weights file found in it.
#[derive(Clone, Debug)]
pub struct VaeFolder {
    pub config: VaeConfig,
    pub weights: PathBuf,
}

impl VaeFolder {
    /// Finds `config.json` and `diffusion_pytorch_model.safetensors` (or `weights.safetensors`).
    pub fn open(dir: &Path) -> Result<Self, VaeError> {
        let config_path = dir.join(CONFIG);
        let weights = [DIFFUSERS_WEIGHTS, FIXTURE_WEIGHTS].iter().map(|f| dir.join(f)).find(|p| p.is_file());
        let (true, Some(weights)) = (config_path.is_file(), weights) else {
            return Err(VaeError::NotAVaeFolder { dir: dir.to_owned() });
        };
        Ok(Self { config: VaeConfig::from_file(&config_path)?, weights })
    }

    pub fn load(&self, device: &Device) -> Result<AutoencoderKL, VaeError> {
        load_weights(&self.config, &self.weights, device)
    }

    /// SHA-256 of the weights file, hex: identifies the VAE in downstream metadata.
    pub fn digest(&self) -> Result<String, VaeError> {
        let bytes = std::fs::read(&self.weights).map_err(|source| VaeError::Io { path: self.weights.clone(), source })?;
        Ok(hex::encode(Sha256::digest(&bytes)))
    }
}

/// Collects every parameter under its diffusers key, in PyTorch's layout.
struct StateDict {
    path: Vec<String>,
    containers: Vec<String>,
    tensors: BTreeMap<String, (Vec<usize>, Vec<f32>)>,
}

impl ModuleVisitor for StateDict {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        // `to_out` is diffusers' `ModuleList([Linear, Dropout])`: its Linear is `to_out.0`.
        self.path.push(if name == "to_out" { "to_out.0".to_owned() } else { name.to_owned() });
        self.containers.push(container_type.to_owned());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
        self.containers.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let tensor = param.val();
        let mut shape = tensor.dims().to_vec();
        // Parameters are created as f32 and never cast, so the conversion cannot fail.
        let mut values = tensor.into_data().convert::<f32>().try_into_vec::<f32>().expect("f32 parameter data");
        // burn's Linear holds its weight [in, out]; PyTorch's files hold [out, in].
        if D == 2 && self.containers.iter().any(|c| c == "Struct:Linear") {
            values = latte_nn::host::transpose(&values, shape[0], shape[1]);
            shape = vec![shape[1], shape[0]];
        }
        self.tensors.insert(self.path.join("."), (shape, values));
    }
}

/// The model's parameters under diffusers key names, as `(shape, values)`.
pub fn state_dict(model: &AutoencoderKL) -> BTreeMap<String, (Vec<usize>, Vec<f32>)> {
    let mut visitor = StateDict { path: Vec::new(), containers: Vec::new(), tensors: BTreeMap::new() };
    model.visit(&mut visitor);
    visitor.tensors
}

/// Writes a diffusers folder (`config.json` + `diffusion_pytorch_model.safetensors`, f32) into
/// `dir`, each file through a temporary name and a rename.
pub fn save_pretrained(model: &AutoencoderKL, config: &VaeConfig, dir: &Path) -> Result<(), VaeError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| VaeError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let tensors = state_dict(model).into_iter().map(|(k, (shape, values))| (k, HostTensor::f32(shape, values))).collect();
    write_safetensors(&dir.join(DIFFUSERS_WEIGHTS), &tensors, None)?;
    write_atomic(&dir.join(CONFIG), config.to_json().as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_count_equals_the_built_models() {
        let mut plain = VaeConfig::new(vec![8, 16, 16], 2, 4, 3);
        plain.mid_block_add_attention = false;
        plain.use_quant_conv = false;
        plain.in_channels = 1;
        plain.out_channels = 2;
        let mut post_only = VaeConfig::new(vec![4], 0, 2, 2);
        post_only.use_quant_conv = false;
        for cfg in [VaeConfig::new(vec![8, 16], 1, 4, 4), plain, post_only] {
            let model = AutoencoderKL::init(&cfg, 0, &Device::flex()).unwrap();
            let built: usize = state_dict(&model).values().map(|(shape, _)| shape.iter().product::<usize>()).sum();
            assert_eq!(parameter_count(&cfg), Some(built as u128), "{:?}", cfg.block_out_channels);
        }
        let mut huge = VaeConfig::new(vec![usize::MAX / 2], 1, 1, 4);
        huge.layers_per_block = usize::MAX;
        assert_eq!(parameter_count(&huge), None);
    }
}
