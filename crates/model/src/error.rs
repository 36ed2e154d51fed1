use std::path::PathBuf;

/// Errors of the Latte model crate. Messages name the file or setting and what to change.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("invalid model configuration: {0}")]
    Config(String),
    #[error("unknown model preset `{0}`: use Latte-{{S,B,L,XL}}/{{2,4,8}}, e.g. `Latte-XL/2`")]
    UnknownPreset(String),
    #[error("invalid model input: {0}")]
    Input(String),
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error(transparent)]
    Weights(#[from] latte_nn::NnError),
}
