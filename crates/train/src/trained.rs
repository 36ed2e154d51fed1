//! A trained model as others read it: the `config.json` a train output carries beside its
//! weights (`model.safetensors`: EMA, `model_raw.safetensors`: raw, under the reference's key
//! names). Written by the train stage and read by whoever samples, through this one type.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::{TrainConfig, TrainError};

/// The file name of [`TrainOutputConfig`] in a train output.
pub const TRAIN_OUTPUT_CONFIG: &str = "config.json";

/// The process the model was trained under.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DiffusionInfo {
    pub steps: usize,
    pub schedule: String,
    pub learn_sigma: bool,
    pub loss: String,
}

impl DiffusionInfo {
    /// Latte's: 1000 linear steps, learned variance, the hybrid loss.
    pub fn latte() -> Self {
        DiffusionInfo { steps: 1000, schedule: "linear".into(), learn_sigma: true, loss: "mse+vlb".into() }
    }
}

/// The latents the model was trained on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LatentsInfo {
    /// What the VAE's latents were multiplied by before training (divide before decoding).
    pub scale_factor: f64,
    /// (C, h, w) of one latent frame.
    pub latent_shape: [u64; 3],
    pub num_classes: Option<u32>,
    pub dataset: String,
}

/// `config.json` of a train output. `M` is the model's architecture configuration (this crate
/// trains any model; Latte's train outputs hold a `LatteConfig`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainOutputConfig<M> {
    pub model: M,
    pub train: TrainConfig,
    pub diffusion: DiffusionInfo,
    pub latents: LatentsInfo,
    /// The seed of the model's initialisation and of the data draws.
    pub seed: u64,
    /// The checkpoint step a resumed run continued from.
    pub resumed_from: Option<u64>,
    /// The device kind it trained on (`cpu`, `cuda`, ...).
    pub device: String,
    pub precision: String,
    pub checkpointing: bool,
    /// Data-parallel CPU ranks of one process (threads; see `latte_fit::FitOptions::ranks`):
    /// the weights depend on it by float rounding. Written only when more than one, so the
    /// outputs of single-rank runs keep their bytes.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub ranks: usize,
}

fn one() -> usize {
    1
}

fn is_one(n: &usize) -> bool {
    *n == 1
}

impl<M: Serialize + DeserializeOwned> TrainOutputConfig<M> {
    /// The config of a model trained outside a train stage (a converted checkpoint, a test
    /// fixture): Latte's diffusion, the default training settings, seed 0, f32 on the CPU,
    /// not resumed, no activation checkpointing.
    pub fn new(model: M, latents: LatentsInfo) -> Self {
        TrainOutputConfig {
            model,
            train: TrainConfig::default(),
            diffusion: DiffusionInfo::latte(),
            latents,
            seed: 0,
            resumed_from: None,
            device: "cpu".into(),
            precision: "f32".into(),
            checkpointing: false,
            ranks: 1,
        }
    }

    /// Writes `dir/config.json`, pretty-printed, keys in the order of the fields (serde_json
    /// keeps insertion order in this workspace): the layout train outputs always had.
    pub fn write(&self, dir: &Path) -> Result<(), TrainError> {
        let path = dir.join(TRAIN_OUTPUT_CONFIG);
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| TrainError::Data(format!("{}: {e}", path.display())))?;
        std::fs::write(&path, bytes).map_err(TrainError::io(&path))
    }

    pub fn read(dir: &Path) -> Result<Self, TrainError> {
        let path = dir.join(TRAIN_OUTPUT_CONFIG);
        let bytes = std::fs::read(&path).map_err(|e| TrainError::Checkpoint {
            path: path.clone(),
            message: format!("{e} (is {} the output folder of a `train` stage?)", dir.display()),
        })?;
        let config: Self = serde_json::from_slice(&bytes)
            .map_err(|e| TrainError::Checkpoint { path: path.clone(), message: format!("not a train output's config: {e}") })?;
        if !(config.latents.scale_factor.is_finite() && config.latents.scale_factor > 0.0) {
            return Err(TrainError::Checkpoint {
                path,
                message: format!("`latents.scale_factor` is {}; expected a positive number", config.latents.scale_factor),
            });
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> TrainOutputConfig<serde_json::Value> {
        TrainOutputConfig {
            checkpointing: false,
            device: "cpu".into(),
            diffusion: DiffusionInfo::latte(),
            latents: LatentsInfo { dataset: "synthetic".into(), latent_shape: [4, 8, 8], num_classes: Some(3), scale_factor: 0.5 },
            model: serde_json::json!({"depth": 12, "hidden_size": 384}),
            precision: "f32".into(),
            resumed_from: Some(2),
            seed: 7,
            train: TrainConfig::default(),
            ranks: 1,
        }
    }

    /// The file has the key order the train stage's `json!` always wrote, and reads back to the
    /// same value.
    #[test]
    fn config_json_round_trips_in_its_key_order() {
        let dir = std::env::temp_dir().join(format!("latte-trained-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let c = config();
        c.write(&dir).unwrap();
        let text = std::fs::read_to_string(dir.join("config.json")).unwrap();
        let keys: Vec<&str> = text.lines().filter(|l| l.starts_with("  \"")).map(|l| l.trim().split('"').nth(1).unwrap()).collect();
        assert_eq!(keys, ["model", "train", "diffusion", "latents", "seed", "resumed_from", "device", "precision", "checkpointing"]);
        assert!(text.contains("\"diffusion\": {\n    \"steps\": 1000,\n    \"schedule\": \"linear\""), "{text}");
        assert_eq!(TrainOutputConfig::<serde_json::Value>::read(&dir).unwrap(), c);
        // CPU ranks are written only when there are several (one-rank files keep their bytes).
        let two = TrainOutputConfig { ranks: 2, ..c.clone() };
        two.write(&dir).unwrap();
        let text = std::fs::read_to_string(dir.join("config.json")).unwrap();
        assert!(text.ends_with("\"checkpointing\": false,\n  \"ranks\": 2\n}"), "{text}");
        assert_eq!(TrainOutputConfig::<serde_json::Value>::read(&dir).unwrap(), two);
        // A missing key and a bad scale factor name the file.
        std::fs::write(dir.join("config.json"), br#"{"model": {}}"#).unwrap();
        assert!(TrainOutputConfig::<serde_json::Value>::read(&dir).unwrap_err().to_string().contains("config.json"));
        let mut bad = c.clone();
        bad.latents.scale_factor = -1.0;
        bad.write(&dir).unwrap();
        let e = TrainOutputConfig::<serde_json::Value>::read(&dir).unwrap_err().to_string();
        assert!(e.contains("config.json") && e.contains("scale_factor"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
