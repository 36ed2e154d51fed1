//! Host-side named tensors and their safetensors files (converted weights, parity inputs,
//! features).

use std::collections::BTreeMap;
use std::path::Path;

use safetensors::tensor::{Dtype, TensorView};

use crate::MetricsError;

/// The element storage of a [`HostTensor`].
#[derive(Clone, Debug, PartialEq)]
pub enum HostData {
    F32(Vec<f32>),
    U8(Vec<u8>),
}

/// A tensor in host memory, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct HostTensor {
    pub shape: Vec<usize>,
    pub data: HostData,
}

impl HostTensor {
    pub fn f32(shape: Vec<usize>, data: Vec<f32>) -> Self {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        HostTensor { shape, data: HostData::F32(data) }
    }

    pub fn u8(shape: Vec<usize>, data: Vec<u8>) -> Self {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        HostTensor { shape, data: HostData::U8(data) }
    }

    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn as_f32(&self) -> Option<&[f32]> {
        match &self.data {
            HostData::F32(v) => Some(v),
            HostData::U8(_) => None,
        }
    }

    pub fn as_u8(&self) -> Option<&[u8]> {
        match &self.data {
            HostData::U8(v) => Some(v),
            HostData::F32(_) => None,
        }
    }

    fn dtype_name(&self) -> &'static str {
        match self.data {
            HostData::F32(_) => "float32",
            HostData::U8(_) => "uint8",
        }
    }
}

/// Named tensors, sorted by name.
pub type TensorMap = BTreeMap<String, HostTensor>;

fn st_err(path: &Path, reason: impl std::fmt::Display) -> MetricsError {
    MetricsError::Safetensors { path: path.to_owned(), reason: reason.to_string() }
}

/// Reads every float32/uint8 tensor of a safetensors file (float16/bfloat16/float64 are
/// widened or narrowed to float32).
pub fn read_safetensors(path: &Path) -> Result<TensorMap, MetricsError> {
    let bytes = std::fs::read(path).map_err(|source| MetricsError::Io { path: path.to_owned(), source })?;
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| st_err(path, e))?;
    let mut out = TensorMap::new();
    for (name, view) in st.tensors() {
        let shape = view.shape().to_vec();
        let raw = view.data();
        let data = match view.dtype() {
            Dtype::F32 => HostData::F32(raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()),
            Dtype::F64 => HostData::F32(raw.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")) as f32).collect()),
            Dtype::F16 => HostData::F32(raw.chunks_exact(2).map(|c| half_to_f32(u16::from_le_bytes([c[0], c[1]]))).collect()),
            Dtype::BF16 => {
                HostData::F32(raw.chunks_exact(2).map(|c| f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16)).collect())
            }
            Dtype::U8 => HostData::U8(raw.to_vec()),
            other => return Err(st_err(path, format!("tensor `{name}` has dtype {other:?}; only float and uint8 tensors are supported"))),
        };
        out.insert(name, HostTensor { shape, data });
    }
    Ok(out)
}

fn half_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as i32;
    let mant = (h & 0x3ff) as u32;
    let bits = match (exp, mant) {
        (0, 0) => sign,
        (0, m) => {
            // Subnormal: value = m * 2^-24.
            return f32::from_bits(sign) + (if sign != 0 { -1.0 } else { 1.0 }) * (m as f32) * 2f32.powi(-24);
        }
        (31, 0) => sign | 0x7f80_0000,
        (31, m) => sign | 0x7f80_0000 | (m << 13),
        (e, m) => sign | (((e - 15 + 127) as u32) << 23) | (m << 13),
    };
    f32::from_bits(bits)
}

/// Writes tensors to a safetensors file through a temporary file and a rename, so that a
/// crash never leaves a truncated file under the final name.
pub fn write_safetensors(
    path: &Path,
    tensors: &TensorMap,
    metadata: Option<std::collections::HashMap<String, String>>,
) -> Result<(), MetricsError> {
    let buffers: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(name, t)| {
            let (dtype, bytes) = match &t.data {
                HostData::F32(v) => (Dtype::F32, v.iter().flat_map(|x| x.to_le_bytes()).collect()),
                HostData::U8(v) => (Dtype::U8, v.clone()),
            };
            (name.clone(), dtype, t.shape.clone(), bytes)
        })
        .collect();
    let mut views = Vec::with_capacity(buffers.len());
    for (name, dtype, shape, bytes) in &buffers {
        let view = TensorView::new(*dtype, shape.clone(), bytes).map_err(|e| st_err(path, format!("tensor `{name}`: {e}")))?;
        views.push((name.as_str(), view));
    }
    let bytes = safetensors::serialize(views, metadata).map_err(|e| st_err(path, e))?;
    write_atomic(path, &bytes)
}

/// Writes bytes through `<path>.tmp` and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), MetricsError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    std::fs::write(&tmp, bytes).map_err(|source| MetricsError::Io { path: tmp.clone(), source })?;
    std::fs::rename(&tmp, path).map_err(|source| MetricsError::Io { path: path.to_owned(), source })
}

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
