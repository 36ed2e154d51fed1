//! Loading and saving a burn module under PyTorch key names.
//!
//! burn names a parameter by its field path (`blocks.0.attn.qkv.weight`); a PyTorch state dict
//! names it by attribute path, where `nn.Sequential` members are indices
//! (`t_embedder.mlp.0.weight`, `adaLN_modulation.1.weight`). A [`KeyMap`] lists the literal
//! renames between the two; Linear weights are transposed (`[out, in]` in PyTorch, `[in, out]`
//! in burn) by burn-store's PyTorch adapters.
//!
//! `.pt` files are read by burn-store's pickle *parser*, which never executes pickle code: it
//! interprets only the tensor-rebuilding calls and keeps every other call as an opaque name.
//! [`read_pytorch_state_dict_layout`] additionally refuses a checkpoint whose state dict holds
//! anything but tensors.
//!
//! Enum variant names (burn puts them in paths) are left out, as PyTorch has no such level.

use crate::NnError;
use burn::module::Module;
use burn::store::pytorch_reader::{PickleValue, PytorchReader};
use burn::store::{ApplyError, ApplyResult, BurnToPyTorchAdapter, ModuleSnapshot, PyTorchToBurnAdapter, PytorchStore, SafetensorsStore};
use std::path::Path;

/// Prefix given to file keys the caller asked to skip: they become unused keys under a name no
/// module has, and are then dropped from the report.
const SKIPPED: &str = "__skipped__.";

/// Literal renames between PyTorch key fragments and burn module paths.
#[derive(Clone, Debug, Default)]
pub struct KeyMap {
    /// `(pytorch fragment, burn fragment)`, applied as substring replacements.
    pairs: Vec<(String, String)>,
}

impl KeyMap {
    pub fn new() -> Self {
        KeyMap::default()
    }

    /// Renames `pytorch` (as written in the file) to `burn` (as the module's field path).
    pub fn rename(mut self, pytorch: &str, burn: &str) -> Self {
        self.pairs.push((pytorch.to_string(), burn.to_string()));
        self
    }

    /// The module path of a file key.
    pub fn to_module(&self, key: &str) -> String {
        self.pairs.iter().fold(key.to_string(), |k, (p, b)| k.replace(p.as_str(), b))
    }

    /// The file key of a module path.
    pub fn to_file(&self, path: &str) -> String {
        self.pairs.iter().fold(path.to_string(), |k, (p, b)| k.replace(b.as_str(), p))
    }

    fn load_patterns(&self) -> Vec<(String, String)> {
        self.pairs.iter().map(|(p, b)| (regex_escape(p), b.replace('$', "$$"))).collect()
    }

    fn save_patterns(&self) -> Vec<(String, String)> {
        self.pairs.iter().map(|(p, b)| (regex_escape(b), p.replace('$', "$$"))).collect()
    }
}

fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 2);
    for c in s.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// What a load may tolerate.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// Module parameters absent from the file keep their current values.
    pub allow_missing: bool,
    /// File tensors that no parameter takes are ignored.
    pub allow_unused: bool,
    /// File keys (exact, PyTorch names) to ignore entirely.
    pub skip: Vec<String>,
}

impl LoadOptions {
    /// Every parameter must be in the file and every tensor of the file must be used.
    pub fn strict() -> Self {
        LoadOptions::default()
    }
}

/// What a load did, in the file's key names.
#[derive(Clone, Debug, Default)]
pub struct LoadReport {
    pub applied: Vec<String>,
    /// Parameters that kept their values (only with `allow_missing`).
    pub missing: Vec<String>,
    /// File tensors that were not used (only with `allow_unused`), skipped keys excluded.
    pub unused: Vec<String>,
}

/// Loads `path` (safetensors, PyTorch key names) into `module`.
pub fn load_safetensors<M: Module>(module: &mut M, path: &Path, keys: &KeyMap, opts: &LoadOptions) -> Result<LoadReport, NnError> {
    if !path.is_file() {
        return Err(NnError::io(path, std::io::Error::new(std::io::ErrorKind::NotFound, "weights file not found")));
    }
    let mut store = SafetensorsStore::from_file(path)
        .with_from_adapter(PyTorchToBurnAdapter)
        .allow_partial(true)
        .validate(false)
        .skip_enum_variants(true);
    for (from, to) in skip_patterns(&opts.skip).into_iter().chain(keys.load_patterns()) {
        // patterns are built from escaped literals, so they always compile
        store = store.with_key_remapping(&from, &to);
    }
    let result = module.load_from(&mut store).map_err(|e| NnError::Apply { path: path.into(), message: e.to_string() })?;
    check(result, path, keys, opts)
}

/// Saves `module` to `path` as safetensors under PyTorch key names (Linear weights transposed
/// back to `[out, in]`). The file is written beside `path` and renamed into place.
pub fn save_safetensors<M: Module>(module: &M, path: &Path, keys: &KeyMap) -> Result<(), NnError> {
    let mut store = SafetensorsStore::from_file(path)
        .with_to_adapter(BurnToPyTorchAdapter)
        .overwrite(true)
        .skip_enum_variants(true)
        // burn writes its metadata map in hash order, so the same weights would give different
        // bytes (and cache digests) per run; one entry, as PyTorch's safetensors writer does
        .clear_metadata()
        .metadata("format", "pt");
    for (from, to) in keys.save_patterns() {
        // patterns are built from escaped literals, so they always compile
        store = store.with_key_remapping(&from, &to);
    }
    module.save_into(&mut store).map_err(|e| NnError::Apply { path: path.into(), message: format!("saving failed: {e}") })
}

/// Which state dict of a `.pt` checkpoint holds the weights.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StateDictLocation {
    /// The file is itself a state dict (e.g. `DiT-XL-2-256x256.pt`).
    Root,
    /// `checkpoint[key]`, e.g. `"ema"` or `"model"`.
    Key(String),
}

/// Reads only the pickle's structure (never executing it) and picks the state dict as the
/// reference's `find_model` does: `"ema"` if present, else `"model"`, else the root dict.
/// Refuses the file unless that state dict holds tensors and nothing else; returns the
/// location and the tensor names.
pub fn read_pytorch_state_dict_layout(path: &Path) -> Result<(StateDictLocation, Vec<String>), NnError> {
    let bad = |message: String| NnError::Checkpoint { path: path.into(), message };
    let root = PytorchReader::read_pickle_data(path, None).map_err(|e| bad(format!("not a readable PyTorch checkpoint: {e}")))?;
    let PickleValue::Dict(root) = root else {
        return Err(bad(format!(
            "the pickle's top-level object is {}, expected a dict of tensors or a dict with an `ema` / `model` state dict",
            describe(&root)
        )));
    };
    let (location, dict) = match ["ema", "model"].iter().find(|k| root.contains_key(**k)) {
        Some(k) => match &root[*k] {
            PickleValue::Dict(d) => (StateDictLocation::Key(k.to_string()), d),
            other => return Err(bad(format!("checkpoint[\"{k}\"] is {}, expected a state dict", describe(other)))),
        },
        None => (StateDictLocation::Root, &root),
    };
    let mut names = Vec::with_capacity(dict.len());
    for (name, value) in dict {
        match value {
            PickleValue::Unsupported(t) if t == "torch.Tensor" => names.push(name.clone()),
            // `OrderedDict._metadata` of `Module.state_dict()`: per-module version numbers
            PickleValue::Dict(_) if name == "_metadata" && plain_data(value) => {}
            other => {
                return Err(bad(format!(
                    "state dict entry `{name}` is {}, not a tensor; refusing a checkpoint that holds anything but tensors",
                    describe(other)
                )))
            }
        }
    }
    if names.is_empty() {
        return Err(bad("the state dict holds no tensors".into()));
    }
    names.sort();
    Ok((location, names))
}

/// Only plain values (no Python objects, no tensors) anywhere inside.
fn plain_data(v: &PickleValue) -> bool {
    match v {
        PickleValue::Unsupported(_) => false,
        PickleValue::List(items) => items.iter().all(plain_data),
        PickleValue::Dict(d) => d.values().all(plain_data),
        _ => true,
    }
}

fn describe(v: &PickleValue) -> String {
    match v {
        PickleValue::None => "None".into(),
        PickleValue::Bool(_) => "a bool".into(),
        PickleValue::Int(_) => "an int".into(),
        PickleValue::Float(_) => "a float".into(),
        PickleValue::String(_) => "a string".into(),
        PickleValue::List(_) => "a list".into(),
        PickleValue::Dict(_) => "a dict".into(),
        PickleValue::Bytes(_) => "bytes".into(),
        PickleValue::Unsupported(t) => format!("a Python object of type `{t}`"),
    }
}

/// Loads the state dict of a `.pt` checkpoint (see [`read_pytorch_state_dict_layout`]) into
/// `module`.
pub fn load_pytorch<M: Module>(
    module: &mut M,
    path: &Path,
    keys: &KeyMap,
    opts: &LoadOptions,
) -> Result<(StateDictLocation, LoadReport), NnError> {
    let (location, _) = read_pytorch_state_dict_layout(path)?;
    let mut store = PytorchStore::from_file(path).map_indices_contiguous(false).allow_partial(true).validate(false);
    if let StateDictLocation::Key(k) = &location {
        store = store.with_top_level_key(k.clone());
    }
    for (from, to) in skip_patterns(&opts.skip).into_iter().chain(keys.load_patterns()) {
        // patterns are built from escaped literals, so they always compile
        store = store.with_key_remapping(&from, &to);
    }
    let result = module.load_from(&mut store).map_err(|e| NnError::Apply { path: path.into(), message: e.to_string() })?;
    Ok((location, check(result, path, keys, opts)?))
}

fn skip_patterns(skip: &[String]) -> Vec<(String, String)> {
    skip.iter().map(|k| (format!("^{}$", regex_escape(k)), format!("{SKIPPED}{}", k.replace('$', "$$")))).collect()
}

fn check(result: ApplyResult, path: &Path, keys: &KeyMap, opts: &LoadOptions) -> Result<LoadReport, NnError> {
    if let Some(err) = result.errors.first() {
        return Err(match err {
            ApplyError::ShapeMismatch { path: p, expected, found } => {
                NnError::ShapeMismatch { path: path.into(), key: keys.to_file(p), expected: expected.to_vec(), found: found.to_vec() }
            }
            ApplyError::DTypeMismatch { path: p, expected, found } => {
                NnError::DType { path: path.into(), key: keys.to_file(p), expected: format!("{expected:?}"), found: format!("{found:?}") }
            }
            other => NnError::Apply { path: path.into(), message: other.to_string() },
        });
    }
    let missing: Vec<String> = result.missing.iter().map(|(p, _)| keys.to_file(p)).collect();
    if !opts.allow_missing {
        if let Some(key) = missing.first() {
            return Err(NnError::MissingTensor {
                path: path.into(),
                key: key.clone(),
                hint: format!(" ({} missing in all; does the file match the model configuration?)", missing.len()),
            });
        }
    }
    let unused: Vec<String> = result.unused.iter().filter(|k| !k.starts_with(SKIPPED)).map(|k| keys.to_file(k)).collect();
    if !opts.allow_unused && !unused.is_empty() {
        return Err(NnError::UnusedTensors { path: path.into(), keys: unused });
    }
    Ok(LoadReport { applied: result.applied.iter().map(|k| keys.to_file(k)).collect(), missing, unused })
}
