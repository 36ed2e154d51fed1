//! Weights under the reference's key names: safetensors load/save, official Latte `.pt`
//! checkpoints and DiT initialisation, all without executing pickle code.

use crate::{Latte, LoadReport, ModelError};
use latte_nn::weights::{self as w, KeyMap, LoadOptions, StateDictLocation};
use std::path::Path;

/// burn field paths that differ from the reference's attribute paths (`nn.Sequential` indices).
pub fn key_map() -> KeyMap {
    KeyMap::new()
        .rename("adaLN_modulation.1.", "ada_ln_modulation.")
        .rename("t_embedder.mlp.0.", "t_embedder.mlp0.")
        .rename("t_embedder.mlp.2.", "t_embedder.mlp2.")
}

impl Latte {
    /// Loads a full state dict saved under the reference's key names. Every parameter must be
    /// present with its exact shape, and every tensor of the file must be used.
    pub fn load_safetensors(&mut self, path: &Path) -> Result<LoadReport, ModelError> {
        Ok(w::load_safetensors(self, path, &key_map(), &LoadOptions::strict())?)
    }

    /// Saves every parameter (frozen tables included) under the reference's key names.
    pub fn save_safetensors(&self, path: &Path) -> Result<(), ModelError> {
        Ok(w::save_safetensors(self, path, &key_map())?)
    }

    /// Loads an official Latte checkpoint (`.pt` zip archive with `{"ema": …}` and/or
    /// `{"model": …}`; `ema` preferred, as the reference's `find_model`), strictly.
    pub fn load_latte_checkpoint(&mut self, path: &Path) -> Result<(StateDictLocation, LoadReport), ModelError> {
        Ok(w::load_pytorch(self, path, &key_map(), &LoadOptions::strict())?)
    }

    /// Loads a weights file by its extension: an official checkpoint (`.pt`/`.pth`, as
    /// [`load_latte_checkpoint`](Self::load_latte_checkpoint)) or a `.safetensors` under the
    /// reference's key names.
    pub fn load_weights_file(&mut self, path: &Path) -> Result<LoadReport, ModelError> {
        match path.extension().and_then(|e| e.to_str()) {
            Some("pt" | "pth") => Ok(self.load_latte_checkpoint(path)?.1),
            _ => self.load_safetensors(path),
        }
    }

    /// DiT initialisation (§1.13): every DiT tensor whose name exists in the model is copied,
    /// so DiT block k initialises Latte block k (spatial blocks get DiT's even blocks, temporal
    /// blocks the odd ones); `temp_embed` keeps its sin-cos values. DiT's class table
    /// (1001 ImageNet rows) is dropped, so a class-conditional model keeps its N(0, 0.02) table
    /// [ours]. Shapes must match (the reference would crash on a mismatch too); DiT tensors the
    /// model has no place for are an error (wrong model size or variant).
    pub fn init_from_dit(&mut self, path: &Path) -> Result<LoadReport, ModelError> {
        let opts = LoadOptions { allow_missing: true, allow_unused: false, skip: vec!["y_embedder.embedding_table.weight".into()] };
        let is_pt = path.extension().is_some_and(|e| e == "pt" || e == "pth");
        let report =
            if is_pt { w::load_pytorch(self, path, &key_map(), &opts)?.1 } else { w::load_safetensors(self, path, &key_map(), &opts)? };
        if report.applied.is_empty() {
            return Err(ModelError::File {
                path: path.into(),
                message: "no tensor of this file matches a Latte parameter name; is it a DiT checkpoint?".into(),
            });
        }
        Ok(report)
    }
}
