//! Reading and writing diffusers AutoencoderKL folders: `config.json` plus a safetensors
//! state dict under diffusers key names.
//!
//! Loading is strict: a tensor the config needs that is absent or has another shape, and a
//! tensor the config does not explain, are all errors, reported together by name.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Device, Tensor};
use safetensors::tensor::{Dtype, TensorInfo, TensorView};
use sha2::{Digest, Sha256};

use crate::autoencoder::AutoencoderKL;
use crate::config::VaeConfig;
use crate::layers::Builder;
use crate::VaeError;

/// The weights file name `save_pretrained` writes.
pub const DIFFUSERS_WEIGHTS: &str = "diffusion_pytorch_model.safetensors";
/// The weights file name of the parity fixtures (`xtask vae forward`).
pub const FIXTURE_WEIGHTS: &str = "weights.safetensors";
pub const CONFIG: &str = "config.json";

/// Old diffusers uploads name the mid-block attention projections `query`/`key`/`value`/
/// `proj_attn`; diffusers renames them on load, and so do we.
const ATTENTION_ALIASES: [(&str, &str); 4] =
    [(".to_q.", ".query."), (".to_k.", ".key."), (".to_v.", ".value."), (".to_out.0.", ".proj_attn.")];

/// A safetensors file held in memory, handing out each tensor once as f32.
pub(crate) struct WeightFile {
    bytes: Vec<u8>,
    data_start: usize,
    infos: BTreeMap<String, TensorInfo>,
    used: BTreeSet<String>,
}

impl WeightFile {
    pub(crate) fn open(path: &Path) -> Result<Self, VaeError> {
        let bytes = std::fs::read(path).map_err(|source| VaeError::Io { path: path.to_owned(), source })?;
        let (header_len, metadata) = safetensors::SafeTensors::read_metadata(&bytes)
            .map_err(|e| VaeError::Safetensors { path: path.to_owned(), reason: e.to_string() })?;
        let infos = metadata.tensors().into_iter().map(|(k, v)| (k, v.clone())).collect();
        Ok(Self { bytes, data_start: 8 + header_len, infos, used: BTreeSet::new() })
    }

    fn candidates(key: &str) -> Vec<String> {
        let mut keys = vec![key.to_owned()];
        for (new, old) in ATTENTION_ALIASES {
            if key.contains(".attentions.") && key.contains(new) {
                keys.push(key.replacen(new, old, 1));
            }
        }
        keys
    }

    /// The tensor stored under `key` (or an alias of it) as f32, if it has `shape`; otherwise
    /// a one-line description of the problem.
    pub(crate) fn take(&mut self, key: &str, shape: &[usize]) -> Result<Vec<f32>, String> {
        let Some((found, info)) = Self::candidates(key).into_iter().find_map(|k| self.infos.get(&k).map(|i| (k, i.clone()))) else {
            return Err(format!("missing: {key} (expected shape {shape:?})"));
        };
        self.used.insert(found.clone());
        // A (C, C) projection stored as a 1×1 convolution (C, C, 1, 1), as in LDM checkpoints.
        let as_pointwise = shape.len() == 2 && info.shape.len() == 4 && info.shape[..2] == *shape && info.shape[2..] == [1, 1];
        if info.shape != shape && !as_pointwise {
            return Err(format!("wrong shape: {found} is {:?}, expected {shape:?}", info.shape));
        }
        let (begin, end) = info.data_offsets;
        let raw = self
            .bytes
            .get(self.data_start + begin..self.data_start + end)
            .ok_or_else(|| format!("truncated: {found} lies beyond the end of the file"))?;
        let values: Vec<f32> = match info.dtype {
            Dtype::F32 => raw.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
            Dtype::F16 => raw.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
            Dtype::BF16 => raw.chunks_exact(2).map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
            Dtype::F64 => raw
                .chunks_exact(8)
                .map(|b| f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32)
                .collect(),
            other => return Err(format!("unsupported dtype: {found} is {other:?}; expected F32, F16, BF16 or F64")),
        };
        if values.len() != shape.iter().product::<usize>() {
            return Err(format!("corrupt: {found} holds {} values for shape {:?}", values.len(), info.shape));
        }
        Ok(values)
    }

    fn unused(&self) -> impl Iterator<Item = &String> {
        self.infos.keys().filter(|k| !self.used.contains(*k))
    }
}

/// Builds the autoencoder of `config` from the safetensors state dict at `path`.
pub fn load_weights(config: &VaeConfig, path: &Path, device: &Device) -> Result<AutoencoderKL, VaeError> {
    config.validate().map_err(|reason| VaeError::Config { path: path.with_file_name(CONFIG), reason })?;
    let mut file = WeightFile::open(path)?;
    let mut builder = Builder::file(&mut file, device);
    let model = AutoencoderKL::build(&mut builder, config);
    let mut problems = std::mem::take(&mut builder.problems);
    problems.extend(file.unused().map(|k| format!("unexpected: {k} (not part of this config)")));
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

/// Collects every parameter under its diffusers key.
struct StateDict {
    path: Vec<String>,
    tensors: BTreeMap<String, (Vec<usize>, Vec<f32>)>,
}

impl ModuleVisitor for StateDict {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        // `to_out` is diffusers' `ModuleList([Linear, Dropout])`: its Linear is `to_out.0`.
        self.path.push(if name == "to_out" { "to_out.0".to_owned() } else { name.to_owned() });
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let tensor = param.val();
        let shape = tensor.dims().to_vec();
        // Parameters are created as f32 and never cast, so the conversion cannot fail.
        let values = tensor.into_data().convert::<f32>().try_into_vec::<f32>().expect("f32 parameter data");
        self.tensors.insert(self.path.join("."), (shape, values));
    }
}

/// The model's parameters under diffusers key names, as `(shape, values)`.
pub fn state_dict(model: &AutoencoderKL) -> BTreeMap<String, (Vec<usize>, Vec<f32>)> {
    let mut visitor = StateDict { path: Vec::new(), tensors: BTreeMap::new() };
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
    let tensors = state_dict(model);
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .into_iter()
        .map(|(k, (shape, values))| (k, shape, bytemuck::cast_slice::<f32, u8>(&values).to_vec()))
        .collect();
    let views = bytes
        .iter()
        .map(|(k, shape, b)| TensorView::new(Dtype::F32, shape.clone(), b).map(|v| (k.as_str(), v)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| VaeError::Safetensors { path: dir.join(DIFFUSERS_WEIGHTS), reason: e.to_string() })?;
    let weights = dir.join(DIFFUSERS_WEIGHTS);
    let tmp = dir.join(format!(".{DIFFUSERS_WEIGHTS}.tmp"));
    safetensors::serialize_to_file(views, None, &tmp)
        .map_err(|e| VaeError::Safetensors { path: tmp.clone(), reason: e.to_string() })?;
    std::fs::rename(&tmp, &weights).map_err(io(&weights))?;
    let config_path = dir.join(CONFIG);
    let tmp = dir.join(format!(".{CONFIG}.tmp"));
    std::fs::write(&tmp, config.to_json()).map_err(io(&tmp))?;
    std::fs::rename(&tmp, &config_path).map_err(io(&config_path))?;
    Ok(())
}
