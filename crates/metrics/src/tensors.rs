//! Named host tensors for the metric networks: latte-nn's host tensors and safetensors files
//! (converted weights, parity inputs, features), plus the checked lookup the loaders use.

use std::collections::BTreeMap;
use std::path::Path;

pub use latte_nn::host::{read_safetensors, write_atomic, write_safetensors, HostData, HostTensor};

use crate::MetricsError;

/// Named tensors, sorted by name.
pub type TensorMap = BTreeMap<String, HostTensor>;

/// Looks up a float32 tensor of the expected shape (`None` in `shape` skips the check).
pub fn take_f32<'m>(map: &'m TensorMap, source: &Path, name: &str, shape: Option<&[usize]>) -> Result<&'m [f32], MetricsError> {
    let t = map.get(name).ok_or_else(|| MetricsError::MissingTensor { path: source.to_owned(), name: name.to_owned() })?;
    if let Some(s) = shape {
        if t.shape != s {
            return Err(MetricsError::TensorShape {
                path: source.to_owned(),
                name: name.to_owned(),
                expected: format!("{s:?}"),
                found: format!("{:?} {}", t.shape, t.dtype_name()),
            });
        }
    }
    t.as_f32().ok_or_else(|| MetricsError::TensorShape {
        path: source.to_owned(),
        name: name.to_owned(),
        expected: "float32".into(),
        found: t.dtype_name().into(),
    })
}
