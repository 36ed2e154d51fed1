//! The crate's error type: every variant names the file involved and what to do about it.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum VaeError {
    #[error("cannot read or write {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },

    #[error("{path} is not a valid diffusers AutoencoderKL config.json: {source}")]
    ConfigParse { path: PathBuf, source: serde_json::Error },

    #[error("{path}: {reason}")]
    Config { path: PathBuf, reason: String },

    /// The weights do not fit the config: every offending tensor is listed, so one run shows
    /// the whole mismatch.
    #[error(
        "{path} does not match its config.json ({} problem(s)); check that the weights and the config come from the same model:\n  {}",
        problems.len(),
        problems.join("\n  ")
    )]
    Weights { path: PathBuf, problems: Vec<String> },

    #[error("{path}: tensor `{key}`: {reason}")]
    Tensor { path: PathBuf, key: String, reason: String },

    #[error("no `config.json` and weights in {dir}: expected `config.json` plus `diffusion_pytorch_model.safetensors` or `weights.safetensors` (a diffusers AutoencoderKL folder)")]
    NotAVaeFolder { dir: PathBuf },

    #[error("input of shape {shape:?} cannot be encoded: {reason}")]
    Input { shape: Vec<usize>, reason: String },

    #[error("training: {0}")]
    Train(String),

    #[error(transparent)]
    Nn(#[from] latte_nn::NnError),
}
