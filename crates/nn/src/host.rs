//! Host-side tensors read from and written to safetensors files: model inputs and outputs,
//! parity fixtures, converted metric-network weights and features (latte-metrics uses these
//! too). They live outside any module, so they carry their own shape and dtype.

use crate::NnError;
use burn::tensor::{Device, Int, Tensor, TensorData};
use safetensors::{Dtype, SafeTensors};
use std::collections::BTreeMap;
use std::path::Path;

/// Element storage of a [`HostTensor`]. Floats of every width are widened to `f32`, signed
/// integers to `i64` (the two types the model consumes); `u8` holds video frames.
#[derive(Clone, Debug, PartialEq)]
pub enum HostData {
    F32(Vec<f32>),
    I64(Vec<i64>),
    U8(Vec<u8>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct HostTensor {
    pub shape: Vec<usize>,
    pub data: HostData,
}

impl HostTensor {
    pub fn f32(shape: Vec<usize>, values: Vec<f32>) -> Self {
        debug_assert_eq!(shape.iter().product::<usize>(), values.len());
        HostTensor { shape, data: HostData::F32(values) }
    }

    pub fn i64(shape: Vec<usize>, values: Vec<i64>) -> Self {
        debug_assert_eq!(shape.iter().product::<usize>(), values.len());
        HostTensor { shape, data: HostData::I64(values) }
    }

    pub fn u8(shape: Vec<usize>, values: Vec<u8>) -> Self {
        debug_assert_eq!(shape.iter().product::<usize>(), values.len());
        HostTensor { shape, data: HostData::U8(values) }
    }

    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn dtype_name(&self) -> &'static str {
        match self.data {
            HostData::F32(_) => "float32",
            HostData::I64(_) => "int64",
            HostData::U8(_) => "uint8",
        }
    }

    /// The float values; `None` for an integer tensor.
    pub fn as_f32(&self) -> Option<&[f32]> {
        match &self.data {
            HostData::F32(v) => Some(v),
            _ => None,
        }
    }

    /// The integer values; `None` for a float tensor.
    pub fn as_i64(&self) -> Option<&[i64]> {
        match &self.data {
            HostData::I64(v) => Some(v),
            _ => None,
        }
    }

    /// The bytes of a uint8 tensor; `None` otherwise.
    pub fn as_u8(&self) -> Option<&[u8]> {
        match &self.data {
            HostData::U8(v) => Some(v),
            _ => None,
        }
    }

    /// A device tensor of rank `D`. Fails (naming `what`) when the rank or dtype differs.
    pub fn to_float<const D: usize>(&self, what: &str, device: &Device) -> Result<Tensor<D>, String> {
        let values = self.as_f32().ok_or_else(|| format!("`{what}` must be a float tensor"))?;
        if self.shape.len() != D {
            return Err(format!("`{what}` must have {D} dimensions, has shape {:?}", self.shape));
        }
        Ok(Tensor::from_data(TensorData::new(values.to_vec(), self.shape.clone()), device))
    }

    /// A device integer tensor of rank `D`.
    pub fn to_int<const D: usize>(&self, what: &str, device: &Device) -> Result<Tensor<D, Int>, String> {
        let values = self.as_i64().ok_or_else(|| format!("`{what}` must be an integer tensor"))?;
        if self.shape.len() != D {
            return Err(format!("`{what}` must have {D} dimensions, has shape {:?}", self.shape));
        }
        Ok(Tensor::from_data(TensorData::new(values.to_vec(), self.shape.clone()), device))
    }

    /// Copies a float device tensor to the host.
    pub fn from_float<const D: usize>(tensor: Tensor<D>) -> Self {
        let shape = tensor.dims().to_vec();
        let values = tensor.into_data().try_into_vec_as::<f32>().expect("a float tensor converts to f32");
        HostTensor::f32(shape, values)
    }
}

/// The little-endian values `raw` of a float tensor stored as `dtype`, widened to f32; `None`
/// for a dtype other than F32, F64, F16 and BF16. The one decoding of stored floats (every
/// weights file, the VAE's lazy reader included).
pub fn float_values(dtype: Dtype, raw: &[u8]) -> Option<Vec<f32>> {
    Some(match dtype {
        Dtype::F32 => raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
        Dtype::F64 => raw.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().expect("chunk of 8")) as f32).collect(),
        Dtype::F16 => raw.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        Dtype::BF16 => raw.chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        _ => return None,
    })
}

/// Every tensor of a safetensors file, by name.
pub fn read_safetensors(path: &Path) -> Result<BTreeMap<String, HostTensor>, NnError> {
    let bytes = std::fs::read(path).map_err(|e| NnError::io(path, e))?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| NnError::Safetensors { path: path.into(), message: e.to_string() })?;
    let mut out = BTreeMap::new();
    for (name, view) in st.iter() {
        let shape = view.shape().to_vec();
        let raw = view.data();
        let data = match view.dtype() {
            float @ (Dtype::F32 | Dtype::F64 | Dtype::F16 | Dtype::BF16) => HostData::F32(float_values(float, raw).unwrap_or_default()),
            Dtype::I64 => HostData::I64(raw.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().expect("chunk of 8"))).collect()),
            Dtype::I32 => HostData::I64(raw.chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64).collect()),
            Dtype::U8 => HostData::U8(raw.to_vec()),
            other => {
                return Err(NnError::DType {
                    path: path.into(),
                    key: name.to_string(),
                    expected: "F32, F64, F16, BF16, I64, I32 or U8".into(),
                    found: format!("{other:?}"),
                })
            }
        };
        out.insert(name.to_string(), HostTensor { shape, data });
    }
    Ok(out)
}

/// Writes tensors as a safetensors file (f32 / i64 / u8) with optional header metadata, through
/// a temporary file renamed into place so a crash never leaves a truncated file behind.
pub fn write_safetensors(
    path: &Path,
    tensors: &BTreeMap<String, HostTensor>,
    metadata: Option<std::collections::HashMap<String, String>>,
) -> Result<(), NnError> {
    let bytes: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(name, t)| {
            let (dtype, raw) = match &t.data {
                HostData::F32(v) => (Dtype::F32, v.iter().flat_map(|x| x.to_le_bytes()).collect()),
                HostData::I64(v) => (Dtype::I64, v.iter().flat_map(|x| x.to_le_bytes()).collect()),
                HostData::U8(v) => (Dtype::U8, v.clone()),
            };
            (name.clone(), dtype, t.shape.clone(), raw)
        })
        .collect();
    let views = bytes
        .iter()
        .map(|(name, dtype, shape, raw)| {
            safetensors::tensor::TensorView::new(*dtype, shape.clone(), raw)
                .map(|v| (name.clone(), v))
                .map_err(|e| NnError::Safetensors { path: path.into(), message: format!("tensor `{name}`: {e}") })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let buffer = safetensors::serialize(views, metadata).map_err(|e| NnError::Safetensors { path: path.into(), message: e.to_string() })?;
    write_atomic(path, &buffer)
}

/// Writes `bytes` to `path` (`latte_atomic::write`): it holds its old content or all of `bytes`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), NnError> {
    latte_atomic::write(path, bytes).map_err(|e| NnError::io(path, e))
}

/// `[rows, cols]` row-major values laid out as `[cols, rows]`: a Linear weight between
/// PyTorch's `[out, in]` and burn's `[in, out]`.
pub fn transpose(values: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    (0..cols * rows).map(|i| values[(i % rows) * cols + i / rows]).collect()
}

/// Largest absolute difference between two equally long slices (NaN counts as infinite).
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "max_abs_diff of slices of different lengths");
    a.iter()
        .zip(b)
        .map(|(x, y)| {
            let d = (x - y).abs();
            if d.is_nan() {
                f32::INFINITY
            } else {
                d
            }
        })
        .fold(0.0, f32::max)
}
