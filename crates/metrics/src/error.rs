//! The one error type of this crate.

use std::path::PathBuf;

use crate::network::Net;

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("cannot read {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a valid .npy file: {reason}")]
    Npy { path: PathBuf, reason: String },
    #[error("feature dimensions differ: {a} vs {b} (both sets must come from the same network)")]
    DimMismatch { a: usize, b: usize },
    #[error("not enough samples for statistics: {n} (need at least {need})")]
    TooFewSamples { n: usize, need: usize },
    #[error("features hold a non-finite value (NaN or infinity) in row {row}, column {col}")]
    NonFinite { row: usize, col: usize },
    #[error("{path}: tensor `{name}` is missing")]
    MissingTensor { path: PathBuf, name: String },
    #[error("{path}: tensor `{name}` should be {expected}, found {found}")]
    TensorShape { path: PathBuf, name: String, expected: String, found: String },
    #[error("{path}: cannot read the pickle: {reason}")]
    Pickle { path: PathBuf, reason: String },
    #[error("{path}: {reason}")]
    Weights { path: PathBuf, reason: String },
    #[error("bad input: {0}")]
    Input(String),
    #[error("{what}")]
    Read {
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error(transparent)]
    Tensors(#[from] latte_nn::NnError),
    #[error("stopped by the caller")]
    Stopped,
    /// A network's weights named by the caller's `setting` would not load.
    #[error("loading {} weights {} (parameter `{setting}`)", net.name(), path.display())]
    Load {
        net: Net,
        path: PathBuf,
        setting: String,
        #[source]
        source: Box<MetricsError>,
    },
    #[error("eigendecomposition failed to converge on a {d}×{d} matrix")]
    Eigen { d: usize },
}
