//! Where a model's weights and configuration come from, and the VAE folder beside them.

use std::path::{Path, PathBuf};

use latte_model::burn::tensor::Device;
use latte_model::{Latte, LatteConfig};
use latte_train::{TrainOutputConfig, TRAIN_OUTPUT_CONFIG};

use crate::error::{Context, SampleError};

/// Where the model's weights and configuration come from.
#[derive(Clone, Debug)]
pub enum ModelSource {
    /// The output folder of a `train` stage (`config.json`, `model.safetensors`,
    /// `model_raw.safetensors`).
    TrainDir(PathBuf),
    /// A checkpoint folder of a training run (`state.json`, `ema.bpk`, `model.bpk`).
    Checkpoint(PathBuf),
    /// A weights file with the configuration it was trained with: an official Latte checkpoint
    /// (`.pt`/`.pth`, EMA weights when present, as the reference's `find_model`) or a
    /// `.safetensors` under the reference's key names.
    File { path: PathBuf, config: LatteConfig, scale_factor: f64 },
}

impl std::fmt::Display for ModelSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ModelSource::TrainDir(p) | ModelSource::Checkpoint(p) | ModelSource::File { path: p, .. } => write!(f, "{}", p.display()),
        }
    }
}

/// The EMA (`use_ema`) or raw weights of `source` on `device`, and the latent scale factor the
/// model was trained at.
pub fn load_model(source: &ModelSource, use_ema: bool, device: &Device) -> Result<(Latte, f64), SampleError> {
    match source {
        ModelSource::TrainDir(dir) => {
            let config = TrainOutputConfig::<LatteConfig>::read(dir)?;
            let mut model = Latte::new(&config.model, device, 0)
                .with_context(|| format!("{}: key `model`", dir.join(TRAIN_OUTPUT_CONFIG).display()))?;
            let weights = dir.join(if use_ema { "model.safetensors" } else { "model_raw.safetensors" });
            model.load_safetensors(&weights).with_context(|| format!("loading the weights {}", weights.display()))?;
            Ok((model, config.latents.scale_factor))
        }
        ModelSource::Checkpoint(dir) => {
            let state = latte_train::checkpoint::read_state(dir)?;
            let config: LatteConfig = serde_json::from_value(state.model.clone())
                .with_context(|| format!("{}: `model` is not a Latte configuration", dir.join("state.json").display()))?;
            let model = latte_train::checkpoint::load_weights(dir, Latte::new(&config, device, 0)?, use_ema)?;
            Ok((model, state.config.scale_factor))
        }
        ModelSource::File { path, config, scale_factor } => {
            if !use_ema {
                return Err(SampleError::Options(
                    "`use_ema = false` needs the `train` input (model_raw.safetensors); a checkpoint file gives its EMA weights".into(),
                ));
            }
            let mut model = Latte::new(config, device, 0)?;
            model.load_weights_file(path).with_context(|| {
                format!("loading the Latte weights {} (check `model`, `num_classes`, `num_frames`, `latent_size`)", path.display())
            })?;
            Ok((model, *scale_factor))
        }
    }
}

/// A `vae_train` output holds the diffusers folder as `vae/`; anything else may be the folder.
pub fn vae_folder(dir: &Path) -> PathBuf {
    if dir.join("vae").is_dir() {
        dir.join("vae")
    } else {
        dir.to_owned()
    }
}
