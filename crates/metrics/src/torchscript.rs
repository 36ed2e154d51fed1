//! Tensors of a TorchScript (or `torch.save`) zip, read without executing its pickle.
//!
//! The zip holds `<root>/data.pkl`, a pickled module tree whose tensors are
//! `torch._utils._rebuild_tensor_v2(persistent_id(('storage', <type>, key, device, numel)),
//! offset, size, stride, ...)`, and one raw little-endian file per storage, `<root>/data/<key>`.
//! Names are the attribute paths joined with `.`, as `state_dict()` names them.

use std::io::Read;
use std::path::Path;

use crate::pickle::{self, Value};
use crate::tensors::{HostTensor, TensorMap};
use crate::MetricsError;

fn bad(path: &Path, reason: impl Into<String>) -> MetricsError {
    MetricsError::Weights { path: path.to_owned(), reason: reason.into() }
}

/// Reads every float32 tensor reachable from the pickled module tree.
pub fn read_file(path: &Path) -> Result<TensorMap, MetricsError> {
    let file = std::fs::File::open(path).map_err(|source| MetricsError::Io { path: path.to_owned(), source })?;
    let file_len = file.metadata().map_err(|source| MetricsError::Io { path: path.to_owned(), source })?.len();
    let mut zip = zip::ZipArchive::new(file).map_err(|e| bad(path, format!("not a TorchScript zip: {e}")))?;
    let pkl_name = zip
        .file_names()
        .filter_map(Result::ok)
        .find(|n| n.ends_with("/data.pkl") && n.matches('/').count() == 1)
        .map(|n| n.into_owned())
        .ok_or_else(|| bad(path, "the zip has no <root>/data.pkl: not a TorchScript or torch.save file"))?;
    let root = pkl_name.trim_end_matches("data.pkl").to_owned();
    let mut read_entry = |name: &str| -> Result<Vec<u8>, MetricsError> {
        let mut f = zip.by_name(name).map_err(|e| bad(path, format!("entry `{name}`: {e}")))?;
        // The declared size is a claim of the file: reserve no more than the archive holds
        // (torch writes its members stored), and read no more than was declared.
        let declared = f.size();
        let mut buf = Vec::with_capacity(declared.min(file_len) as usize);
        (&mut f).take(declared).read_to_end(&mut buf).map_err(|e| bad(path, format!("entry `{name}`: {e}")))?;
        Ok(buf)
    };
    let pkl = read_entry(&pkl_name)?;
    let tree = pickle::parse(&pkl).map_err(|e| MetricsError::Pickle { path: path.to_owned(), reason: e.to_string() })?;
    let mut refs = Vec::new();
    collect(&tree, "", &mut refs, 0).map_err(|e| bad(path, e))?;
    if refs.is_empty() {
        return Err(bad(path, "data.pkl references no tensors"));
    }
    let mut out = TensorMap::new();
    for r in refs {
        let bytes = read_entry(&format!("{root}data/{}", r.key))?;
        let numel: usize = r.size.iter().product();
        let contiguous = contiguous_strides(&r.size);
        if r.stride != contiguous && numel > 1 {
            return Err(bad(path, format!("tensor `{}` is not contiguous (stride {:?})", r.name, r.stride)));
        }
        let start = r.offset * 4;
        let end = start + numel * 4;
        if end > bytes.len() {
            return Err(bad(
                path,
                format!("tensor `{}` needs bytes {start}..{end} of storage `{}` ({} bytes)", r.name, r.key, bytes.len()),
            ));
        }
        let data = bytes[start..end].chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        out.insert(r.name, HostTensor::f32(r.size, data));
    }
    Ok(out)
}

struct TensorRef {
    name: String,
    key: String,
    offset: usize,
    size: Vec<usize>,
    stride: Vec<usize>,
}

fn contiguous_strides(size: &[usize]) -> Vec<usize> {
    let mut s = vec![1; size.len()];
    for d in (0..size.len().saturating_sub(1)).rev() {
        s[d] = s[d + 1] * size[d + 1];
    }
    s
}

fn ints(v: &Value, what: &str) -> Result<Vec<usize>, String> {
    v.items()
        .ok_or_else(|| format!("{what} is not a tuple"))?
        .iter()
        .map(|x| x.as_int().and_then(|i| usize::try_from(i).ok()).ok_or_else(|| format!("bad {what} entry")))
        .collect()
}

fn collect(v: &Value, prefix: &str, out: &mut Vec<TensorRef>, depth: usize) -> Result<(), String> {
    if depth > 64 {
        return Err("module tree nested deeper than 64 levels".into());
    }
    let Value::Call(call) = v else { return Ok(()) };
    if let Some((m, n)) = call.func.global() {
        if m == "torch._utils" && n == "_rebuild_tensor_v2" {
            out.push(tensor_ref(&call.args, prefix)?);
            return Ok(());
        }
    }
    // A module object: its attributes are the BUILD state dict.
    let state = call.state.borrow().clone();
    if let Some(Value::Dict(d)) = state {
        for (k, child) in d.borrow().iter() {
            let Some(key) = k.as_str() else { continue };
            let name = if prefix.is_empty() { key.to_owned() } else { format!("{prefix}.{key}") };
            collect(child, &name, out, depth + 1)?;
        }
    }
    Ok(())
}

fn tensor_ref(args: &Value, name: &str) -> Result<TensorRef, String> {
    let args = args.items().ok_or_else(|| format!("`{name}`: tensor args are not a tuple"))?;
    let (Some(Value::PersistentId(pid)), Some(offset), Some(size), Some(stride)) = (args.first(), args.get(1), args.get(2), args.get(3))
    else {
        return Err(format!("`{name}`: unexpected tensor layout"));
    };
    let pid = pid.items().ok_or_else(|| format!("`{name}`: storage id is not a tuple"))?;
    let storage_type = pid.get(1).and_then(|g| g.global().map(|(_, n)| n.to_owned())).unwrap_or_default();
    if storage_type != "FloatStorage" {
        return Err(format!("`{name}`: storage type `{storage_type}` is not FloatStorage (float32)"));
    }
    let key = pid.get(2).and_then(Value::as_str).ok_or_else(|| format!("`{name}`: storage key missing"))?.to_owned();
    if key.contains('/') || key.contains("..") {
        return Err(format!("`{name}`: storage key `{key}` is not a plain name"));
    }
    Ok(TensorRef {
        name: name.to_owned(),
        key,
        offset: offset.as_int().and_then(|i| usize::try_from(i).ok()).ok_or_else(|| format!("`{name}`: bad storage offset"))?,
        size: ints(size, "size")?,
        stride: ints(stride, "stride")?,
    })
}
