//! A safetensors state dict held in memory that hands out each tensor once, as f32, under its
//! key (or an older alias of it), and afterwards names the tensors nobody asked for: the file
//! source of [`crate::init::ParamFactory`]. Tensors are decoded one at a time as they are taken,
//! so a file is held once in memory, not twice.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use safetensors::tensor::TensorInfo;

use crate::NnError;

/// A safetensors file held in memory, handing out each tensor once as f32.
pub struct TensorFile {
    bytes: Vec<u8>,
    data_start: usize,
    infos: BTreeMap<String, TensorInfo>,
    used: BTreeSet<String>,
    /// `(current, old)` key fragments: a key containing `current` may be stored with `old` in
    /// its place.
    aliases: Vec<(String, String)>,
}

impl TensorFile {
    pub fn open(path: &Path) -> Result<Self, NnError> {
        let bytes = std::fs::read(path).map_err(|e| NnError::io(path, e))?;
        let (header_len, metadata) = safetensors::SafeTensors::read_metadata(&bytes)
            .map_err(|e| NnError::Safetensors { path: path.to_owned(), message: e.to_string() })?;
        let infos = metadata.tensors().into_iter().map(|(k, v)| (k, v.clone())).collect();
        Ok(Self { bytes, data_start: 8 + header_len, infos, used: BTreeSet::new(), aliases: Vec::new() })
    }

    /// Accepts the key fragment `old` wherever `current` is asked for (older uploads of a
    /// model that renamed its modules since).
    pub fn with_alias(mut self, current: &str, old: &str) -> Self {
        self.aliases.push((current.to_owned(), old.to_owned()));
        self
    }

    /// Bytes of tensor data the file holds (its size less the header).
    pub fn data_len(&self) -> usize {
        self.bytes.len() - self.data_start
    }

    fn candidates(&self, key: &str) -> Vec<String> {
        let mut keys = vec![key.to_owned()];
        keys.extend(
            self.aliases.iter().filter(|(current, _)| key.contains(current.as_str())).map(|(c, old)| key.replacen(c.as_str(), old, 1)),
        );
        keys
    }

    /// The tensor stored under `key` (or an alias of it) as f32, if it has `shape`; otherwise
    /// a one-line description of the problem.
    pub fn take(&mut self, key: &str, shape: &[usize]) -> Result<Vec<f32>, String> {
        let Some((found, info)) = self.candidates(key).into_iter().find_map(|k| self.infos.get(&k).map(|i| (k, i.clone()))) else {
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
        let values = crate::host::float_values(info.dtype, raw)
            .ok_or_else(|| format!("unsupported dtype: {found} is {:?}; expected F32, F16, BF16 or F64", info.dtype))?;
        if values.len() != shape.iter().product::<usize>() {
            return Err(format!("corrupt: {found} holds {} values for shape {:?}", values.len(), info.shape));
        }
        Ok(values)
    }

    /// The keys no [`take`](Self::take) has asked for yet.
    pub fn unused(&self) -> impl Iterator<Item = &String> {
        self.infos.keys().filter(|k| !self.used.contains(*k))
    }
}
