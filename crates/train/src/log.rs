//! The per-step loss log, `loss.jsonl`: one JSON object per optimizer step.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::TrainError;

/// What one optimizer step reports. Losses are means over the step's clips.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepLog {
    /// Optimizer steps completed, this one included (1-based).
    pub step: u64,
    pub loss: f64,
    pub mse: f64,
    pub vb: f64,
    pub lr: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    pub clipped: bool,
    /// Wall time of the step (progress display and benchmarks). Not written to the log: a
    /// stage's output must be a function of its cache key alone, so that a rerun (after
    /// damage, on another machine) reproduces it byte for byte; the engine records the
    /// stage's time in its lock entry.
    #[serde(skip)]
    pub secs: f64,
}

pub(crate) struct LossLog {
    path: PathBuf,
    file: File,
}

impl LossLog {
    /// Opens `path` for appending after dropping any lines past `keep_upto` (steps a crashed
    /// run logged after its last checkpoint are redone on resume).
    pub(crate) fn open(path: &Path, keep_upto: u64) -> Result<Self, TrainError> {
        let kept: Vec<StepLog> = read_log(path)?.into_iter().filter(|l| l.step <= keep_upto).collect();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(TrainError::io(dir))?;
        }
        let mut text = String::new();
        for l in &kept {
            text.push_str(&serde_json::to_string(l).expect("a step log serialises"));
            text.push('\n');
        }
        latte_nn::host::write_atomic(path, text.as_bytes())
            .map_err(|e| TrainError::Io { path: path.to_owned(), source: std::io::Error::other(e) })?;
        let file = OpenOptions::new().append(true).open(path).map_err(TrainError::io(path))?;
        Ok(Self { path: path.to_owned(), file })
    }

    /// Flushes the log to the disk (before a checkpoint, so a resumed run's log is complete
    /// up to it even after a power loss).
    pub(crate) fn sync(&self) -> Result<(), TrainError> {
        self.file.sync_data().map_err(TrainError::io(&self.path))
    }

    pub(crate) fn push(&mut self, l: &StepLog) -> Result<(), TrainError> {
        let mut line = serde_json::to_string(l).expect("a step log serialises");
        line.push('\n');
        self.file.write_all(line.as_bytes()).map_err(TrainError::io(&self.path))
    }
}

/// All records of a loss log (none when it does not exist yet).
pub fn read_log(path: &Path) -> Result<Vec<StepLog>, TrainError> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let file = File::open(path).map_err(TrainError::io(path))?;
    let mut out = Vec::new();
    for line in BufReader::new(file).lines() {
        let line = line.map_err(TrainError::io(path))?;
        if line.trim().is_empty() {
            continue;
        }
        // A crash can cut the last line short; everything before it is still good.
        match serde_json::from_str(&line) {
            Ok(l) => out.push(l),
            Err(_) => break,
        }
    }
    Ok(out)
}
