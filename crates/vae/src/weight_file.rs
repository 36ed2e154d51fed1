//! A safetensors state dict held in memory that hands out each tensor once, as f32, under its
//! diffusers key (or an older alias), and afterwards names the tensors nobody asked for: the
//! reader under both the layer builder and strict loading.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use safetensors::tensor::TensorInfo;

use crate::VaeError;

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

    /// Bytes of tensor data the file holds (its size less the header).
    pub(crate) fn data_len(&self) -> usize {
        self.bytes.len() - self.data_start
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
        let values = latte_nn::host::float_values(info.dtype, raw)
            .ok_or_else(|| format!("unsupported dtype: {found} is {:?}; expected F32, F16, BF16 or F64", info.dtype))?;
        if values.len() != shape.iter().product::<usize>() {
            return Err(format!("corrupt: {found} holds {} values for shape {:?}", values.len(), info.shape));
        }
        Ok(values)
    }

    pub(crate) fn unused(&self) -> impl Iterator<Item = &String> {
        self.infos.keys().filter(|k| !self.used.contains(*k))
    }
}
