use std::path::PathBuf;

/// Errors of the shared burn utilities. Every variant names the file and, where there is one,
/// the tensor key, so the message tells the user what to fix.
#[derive(Debug, thiserror::Error)]
pub enum NnError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a valid safetensors file ({message})")]
    Safetensors { path: PathBuf, message: String },
    #[error("{path}: tensor `{key}` is missing{hint}")]
    MissingTensor { path: PathBuf, key: String, hint: String },
    #[error("{path}: tensor `{key}` has shape {found:?}, expected {expected:?}")]
    ShapeMismatch { path: PathBuf, key: String, expected: Vec<usize>, found: Vec<usize> },
    #[error("{path}: tensor `{key}` has dtype {found}, expected {expected}")]
    DType { path: PathBuf, key: String, expected: String, found: String },
    #[error("{path}: tensors {keys:?} are not used by this model (does the file match the configuration?)")]
    UnusedTensors { path: PathBuf, keys: Vec<String> },
    #[error("{path}: could not apply weights: {message}")]
    Apply { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    Checkpoint { path: PathBuf, message: String },
    #[error("device `{name}` is not valid{extra}")]
    Device { name: String, extra: String },
    #[error("device `{name}` cannot be used on this machine: {why}")]
    DeviceUnavailable { name: String, why: String },
}

impl NnError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        NnError::Io { path: path.into(), source }
    }
}
