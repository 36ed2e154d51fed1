//! The parity contract: a directory in the format of `shared/fixtures/latte-*` (the reference's
//! constructor kwargs and call arguments in `config.json`, `weights.safetensors`,
//! `inputs.safetensors`) → the model output. Used by `cargo xtask model forward` and the
//! parity tests.

use crate::{Latte, PatchEmbedKind};
use crate::{LatteConfig, ModelError};
use burn::tensor::Device;
use latte_nn::host::{read_safetensors, HostTensor};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Deserialize)]
struct RefFile {
    model: String,
    kwargs: RefKwargs,
    #[serde(default)]
    call: RefCall,
}

#[derive(Debug, Deserialize)]
struct RefKwargs {
    input_size: usize,
    patch_size: usize,
    in_channels: usize,
    hidden_size: usize,
    depth: usize,
    num_heads: usize,
    mlp_ratio: f64,
    num_frames: usize,
    #[serde(default = "default_dropout")]
    class_dropout_prob: f64,
    #[serde(default)]
    num_classes: Option<usize>,
    #[serde(default = "default_true")]
    learn_sigma: bool,
    #[serde(default = "default_extras")]
    extras: u32,
}

fn default_dropout() -> f64 {
    0.1
}
fn default_true() -> bool {
    true
}
fn default_extras() -> u32 {
    1
}

#[derive(Debug, Deserialize, Default)]
pub struct RefCall {
    #[serde(default)]
    pub use_image_num: usize,
    #[serde(default)]
    pub cfg_scale: Option<f32>,
    #[serde(default)]
    pub train_mode: bool,
}

/// A parsed `config.json` of the parity format.
#[derive(Debug)]
pub struct RefSpec {
    pub config: LatteConfig,
    pub call: RefCall,
}

impl RefSpec {
    pub fn from_file(path: &Path) -> Result<Self, ModelError> {
        let err = |message: String| ModelError::File { path: path.into(), message };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let file: RefFile = serde_json::from_str(&text).map_err(|e| err(format!("not a parity config.json: {e}")))?;
        if file.model != "Latte" && file.model != "LatteIMG" {
            return Err(err(format!("`model` is `{}`; only `Latte` and `LatteIMG` are supported", file.model)));
        }
        let k = file.kwargs;
        let num_classes = match k.extras {
            1 => None,
            2 => Some(k.num_classes.ok_or_else(|| err("`extras` = 2 (class-conditional) needs `num_classes`".into()))?),
            e => return Err(err(format!("`extras` = {e} is not supported: use 1 (unconditional) or 2 (class-conditional)"))),
        };
        let config = LatteConfig {
            input_size: k.input_size,
            patch_size: k.patch_size,
            in_channels: k.in_channels,
            hidden_size: k.hidden_size,
            depth: k.depth,
            num_heads: k.num_heads,
            mlp_ratio: k.mlp_ratio,
            num_frames: k.num_frames,
            num_classes,
            class_dropout_prob: k.class_dropout_prob,
            learn_sigma: k.learn_sigma,
            variant: crate::Variant::Interleaved,
            patch_embed: PatchEmbedKind::Uniform,
            conditioning: Default::default(),
            temporal_pos: Default::default(),
        };
        config.validate().map_err(|e| err(e.to_string()))?;
        if file.call.use_image_num > 0 && file.model != "LatteIMG" {
            return Err(err("`use_image_num` > 0 needs `model` = `LatteIMG`".into()));
        }
        if file.call.train_mode && num_classes.is_some() {
            return Err(err("`train_mode` with class labels draws random label dropout in the reference; not reproducible".into()));
        }
        Ok(RefSpec { config, call: file.call })
    }
}

/// Runs the parity contract on `dir`: returns `out` and, when `cfg_scale` is set, `out_cfg`
/// (the guided forward on `[x; x]` with labels `[y; num_classes]`).
pub fn run_dir(dir: &Path, device: &Device) -> Result<BTreeMap<String, HostTensor>, ModelError> {
    run_dir_as(dir, device, None)
}

/// [`run_dir`] with the network computing in `compute` (`None`: f32; see
/// [`Latte::with_compute_dtype`]); the outputs are f32 either way.
pub fn run_dir_as(
    dir: &Path,
    device: &Device,
    compute: Option<burn::tensor::FloatDType>,
) -> Result<BTreeMap<String, HostTensor>, ModelError> {
    let spec = RefSpec::from_file(&dir.join("config.json"))?;
    let mut model = Latte::new(&spec.config, device, 0)?;
    model.load_safetensors(&dir.join("weights.safetensors"))?;
    let model = model.with_compute_dtype(compute);
    let inputs_path = dir.join("inputs.safetensors");
    let inputs = read_safetensors(&inputs_path)?;
    let file_err = |message: String| ModelError::File { path: inputs_path.clone(), message };
    let get = |name: &str| inputs.get(name).ok_or_else(|| file_err(format!("tensor `{name}` is missing")));
    let x = get("x")?.to_float::<5>("x", device).map_err(file_err)?;
    let t = get("t")?.to_int::<1>("t", device).map_err(file_err)?;
    let y = match spec.config.num_classes {
        Some(_) => Some(get("y")?.to_int::<1>("y", device).map_err(file_err)?),
        None => None,
    };
    let mut out = BTreeMap::new();
    let o = model.try_forward(x.clone(), t.clone(), y.clone(), spec.call.use_image_num)?;
    out.insert("out".to_string(), HostTensor::from_float(o));
    if let Some(scale) = spec.call.cfg_scale {
        let y = y.ok_or_else(|| file_err("`cfg_scale` needs class labels `y`".into()))?;
        let b = x.dims()[0];
        let null = spec.config.num_classes.expect("labels imply classes") as i64;
        let y2 = burn::tensor::Tensor::cat(vec![y, burn::tensor::Tensor::full([b], null, device)], 0);
        let x2 = burn::tensor::Tensor::cat(vec![x.clone(), x], 0);
        let t2 = burn::tensor::Tensor::cat(vec![t.clone(), t], 0);
        model.check_cfg_input(x2.dims(), 2 * b, 2 * b)?;
        out.insert("out_cfg".to_string(), HostTensor::from_float(model.forward_with_cfg(x2, t2, y2, scale)));
    }
    Ok(out)
}

/// `dir/expected.safetensors`, when present.
pub fn expected_path(dir: &Path) -> PathBuf {
    dir.join("expected.safetensors")
}
