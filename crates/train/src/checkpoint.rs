//! Checkpoints: everything a run needs to continue bit-identically, written atomically.
//!
//! `checkpoints/step-NNNNNNNN/` holds `model.bpk` and `ema.bpk` (burn module records, which
//! keep parameter ids so the optimizer state re-attaches), `optim.bpk` (AdamW moments and step
//! counts) and `state.json` (the step, the training config and the caller's model metadata).
//! The data stream needs no saved state: each micro-batch's draws come from (data seed,
//! micro-batch index) alone. A checkpoint is written into a `.tmp-` directory, flushed to the
//! disk and renamed, so a crash or power loss leaves either the previous complete checkpoint or
//! the new one.
//!
//! An interrupted run (Ctrl-C) saves a checkpoint of the step it stopped at, off the
//! `checkpoint_every` schedule and marked `interrupted` in its `state.json`. It does not count
//! toward `keep_checkpoints` (it prunes none of the regular ones) and is deleted as soon as a
//! newer checkpoint exists, so a run resumed from it keeps the same checkpoints on disk as one
//! never interrupted.

use std::fs;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::optim::ModuleOptimizer;
use serde::{Deserialize, Serialize};

use crate::{TrainConfig, TrainError};

const FORMAT: &str = "latte-train-checkpoint";
const VERSION: u32 = 1;

/// `state.json` of a checkpoint.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct CheckpointState {
    pub format: String,
    pub version: u32,
    /// Optimizer steps completed.
    pub step: u64,
    pub config: TrainConfig,
    /// Whatever the caller needs to rebuild the model (its architecture config).
    pub model: serde_json::Value,
    /// Written because the run was interrupted, not by the schedule (absent: false, so
    /// regular checkpoints are byte for byte what they were before interrupts existed).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub interrupted: bool,
}

pub(crate) fn step_dir(root: &Path, step: u64) -> PathBuf {
    root.join(format!("step-{step:08}"))
}

/// Complete checkpoints under `root`, oldest first.
pub fn list_checkpoints(root: &Path) -> Result<Vec<(u64, PathBuf)>, TrainError> {
    if !root.exists() {
        return Ok(Vec::new());
    }
    let mut found = Vec::new();
    for entry in fs::read_dir(root).map_err(TrainError::io(root))? {
        let entry = entry.map_err(TrainError::io(root))?;
        let name = entry.file_name();
        let Some(step) = name.to_str().and_then(|n| n.strip_prefix("step-")).and_then(|s| s.parse::<u64>().ok()) else {
            continue;
        };
        if entry.path().join("state.json").is_file() {
            found.push((step, entry.path()));
        }
    }
    found.sort();
    Ok(found)
}

pub(crate) fn save<M: Module>(
    root: &Path,
    state: &CheckpointState,
    model: &M,
    ema: &M,
    optim: &ModuleOptimizer,
    keep: usize,
) -> Result<PathBuf, TrainError> {
    fs::create_dir_all(root).map_err(TrainError::io(root))?;
    let dir = step_dir(root, state.step);
    let tmp = root.join(format!(".tmp-step-{:08}", state.step));
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(TrainError::io(&tmp))?;
    }
    fs::create_dir_all(&tmp).map_err(TrainError::io(&tmp))?;
    let fail = |path: PathBuf| move |e: burn::store::RecordError| TrainError::Checkpoint { path, message: e.to_string() };
    model.clone().save_file(tmp.join("model.bpk")).map_err(fail(tmp.join("model.bpk")))?;
    ema.clone().save_file(tmp.join("ema.bpk")).map_err(fail(tmp.join("ema.bpk")))?;
    save_optimizer(optim, &tmp.join("optim.bpk"))?;
    let json = serde_json::to_vec_pretty(state).expect("checkpoint state serialises");
    fs::write(tmp.join("state.json"), json).map_err(TrainError::io(tmp.join("state.json")))?;
    // On disk before the rename makes the checkpoint visible: after a power loss a complete
    // name must not hold empty files.
    for f in ["model.bpk", "ema.bpk", "optim.bpk", "state.json"] {
        sync(&tmp.join(f))?;
    }
    sync(&tmp)?;
    if dir.exists() {
        fs::remove_dir_all(&dir).map_err(TrainError::io(&dir))?;
    }
    fs::rename(&tmp, &dir).map_err(TrainError::io(&dir))?;
    sync(root)?;
    prune(root, state.step, keep)?;
    Ok(dir)
}

/// Deletes every interrupt checkpoint older than `newest` and all but the newest `keep`
/// regular ones.
fn prune(root: &Path, newest: u64, keep: usize) -> Result<(), TrainError> {
    let (interrupts, regular): (Vec<_>, Vec<_>) = list_checkpoints(root)?.into_iter().partition(|(_, dir)| is_interrupt(dir));
    let old_interrupts = interrupts.iter().filter(|(step, _)| *step < newest);
    for (_, old) in old_interrupts.chain(regular.iter().take(regular.len().saturating_sub(keep))) {
        fs::remove_dir_all(old).map_err(TrainError::io(old))?;
    }
    Ok(())
}

/// Whether the checkpoint in `dir` was written by an interrupt. An unreadable `state.json`
/// counts as regular: pruning must not delete what resume would report as broken.
fn is_interrupt(dir: &Path) -> bool {
    #[derive(Deserialize)]
    struct Marker {
        #[serde(default)]
        interrupted: bool,
    }
    fs::read(dir.join("state.json")).ok().and_then(|b| serde_json::from_slice::<Marker>(&b).ok()).is_some_and(|m| m.interrupted)
}

/// Puts the complete checkpoints under `root` into `to` (created). Files are hard-linked when
/// the file system allows (checkpoints of a large model are gigabytes, and a checkpoint file is
/// never modified in place, only replaced), copied otherwise.
pub fn export_checkpoints(root: &Path, to: &Path) -> Result<(), TrainError> {
    fs::create_dir_all(to).map_err(TrainError::io(to))?;
    for (_, dir) in list_checkpoints(root)? {
        let name = dir.file_name().ok_or_else(|| TrainError::Checkpoint { path: dir.clone(), message: "no folder name".into() })?;
        link_or_copy_dir(&dir, &to.join(name))?;
    }
    Ok(())
}

fn link_or_copy_dir(from: &Path, to: &Path) -> Result<(), TrainError> {
    fs::create_dir_all(to).map_err(TrainError::io(to))?;
    for entry in fs::read_dir(from).map_err(TrainError::io(from))? {
        let entry = entry.map_err(TrainError::io(from))?;
        let target = to.join(entry.file_name());
        if entry.file_type().map_err(TrainError::io(entry.path()))?.is_dir() {
            link_or_copy_dir(&entry.path(), &target)?;
        } else if fs::hard_link(entry.path(), &target).is_err() {
            fs::copy(entry.path(), &target).map_err(TrainError::io(&target))?;
        }
    }
    Ok(())
}

/// Flushes a file's or a folder's content (a folder: its entries) to the disk.
pub(crate) fn sync(path: &Path) -> Result<(), TrainError> {
    fs::File::open(path).and_then(|f| f.sync_all()).map_err(TrainError::io(path))
}

pub fn read_state(dir: &Path) -> Result<CheckpointState, TrainError> {
    let path = dir.join("state.json");
    let bytes = fs::read(&path).map_err(TrainError::io(&path))?;
    let state: CheckpointState = serde_json::from_slice(&bytes)
        .map_err(|e| TrainError::Checkpoint { path: path.clone(), message: format!("unreadable state: {e}") })?;
    if state.format != FORMAT || state.version != VERSION {
        return Err(TrainError::Checkpoint {
            path,
            message: format!("format {} v{} is not {FORMAT} v{VERSION}", state.format, state.version),
        });
    }
    Ok(state)
}

pub(crate) fn new_state(step: u64, config: &TrainConfig, model: &serde_json::Value, interrupted: bool) -> CheckpointState {
    CheckpointState { format: FORMAT.into(), version: VERSION, step, config: config.clone(), model: model.clone(), interrupted }
}

/// The file of the EMA weights (`ema = true`) or of the raw ones of the checkpoint in `dir`.
pub fn weights_file(dir: &Path, ema: bool) -> PathBuf {
    dir.join(if ema { "ema.bpk" } else { "model.bpk" })
}

/// Writes the optimizer state with its tensors in name order. burn-optim lists them in the
/// order of a `HashMap` seeded per map, so the same state written by two processes (or two
/// optimizers) came out as different bytes, and a `train` output was not a function of its
/// cache key. The reader finds tensors by name, so the order changes nothing on loading.
fn save_optimizer(optim: &ModuleOptimizer, path: &Path) -> Result<(), TrainError> {
    let fail = |message: String| TrainError::Checkpoint { path: path.to_owned(), message };
    let bytes = optim.to_record().into_bytes().map_err(|e| fail(e.to_string()))?;
    let reader = burn_pack::Reader::from_bytes(bytes).map_err(|e| fail(e.to_string()))?;
    let (scalars, metadata) = (reader.scalars().clone(), reader.metadata().clone());
    let mut parts = Vec::new();
    for tensor in reader.into_tensors().map_err(|e| fail(e.to_string()))? {
        parts.push(tensor.into_parts().map_err(|e| fail(e.to_string()))?);
    }
    parts.sort_by(|a, b| a.0.cmp(&b.0));
    let tensors = parts.into_iter().map(|(name, dtype, shape, id, data)| burn_pack::Tensor::new(name, dtype, shape, id, data)).collect();
    let mut writer = burn_pack::Writer::new(tensors).auto_extension(false);
    for (key, value) in &scalars {
        writer = writer.with_scalar(key, *value);
    }
    for (key, value) in &metadata {
        writer = writer.with_metadata(key, value);
    }
    writer.write_to_file(path).map_err(|e| fail(e.to_string()))
}

/// The EMA weights (`ema.bpk`, `ema = true`) or the raw ones (`model.bpk`) of the checkpoint
/// in `dir`, loaded into `model`: a fresh module of the architecture its `state.json` names.
pub fn load_weights<M: Module>(dir: &Path, model: M, ema: bool) -> Result<M, TrainError> {
    let file = weights_file(dir, ema);
    model.try_load_file(file.clone()).map_err(|e| TrainError::Checkpoint { path: file, message: e.to_string() })
}

/// Model, EMA and optimizer of the checkpoint in `dir`, loaded into the given fresh ones.
pub(crate) fn load<M: Module>(dir: &Path, model: M, ema: M, optim: ModuleOptimizer) -> Result<(M, M, ModuleOptimizer), TrainError> {
    let fail = |path: PathBuf| move |e: burn::store::RecordError| TrainError::Checkpoint { path, message: e.to_string() };
    let model = model.try_load_file(dir.join("model.bpk")).map_err(fail(dir.join("model.bpk")))?;
    let ema = ema.try_load_file(dir.join("ema.bpk")).map_err(fail(dir.join("ema.bpk")))?;
    let optim = optim.load(dir.join("optim.bpk")).map_err(fail(dir.join("optim.bpk")))?;
    Ok((model, ema, optim))
}
