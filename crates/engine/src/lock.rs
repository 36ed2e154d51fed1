//! The lock file beside a pipeline (like `dvc.lock`): for each stage that completed, its
//! cache key and what went into it, its output digest and its timings. It is a record for
//! people and scripts and the source of "why is this stale" answers; whether a stage is cached
//! is decided by the store alone. It also names the stages a run started and has not finished
//! (`pending`), so that `clean` keeps their scratch directories and a rerun can resume.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::atomic::write_atomic;
use crate::error::Result;

pub const LOCK_SCHEMA: u32 = 1;

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct LockFile {
    pub schema: u32,
    /// The pipeline file this lock belongs to.
    pub pipeline: PathBuf,
    pub stages: BTreeMap<String, LockEntry>,
    /// Stage name -> cache key of a stage that started under this pipeline and has not
    /// completed (running, failed or killed). Its scratch directory `work/<key>` is what a
    /// rerun resumes from, so `clean` keeps it. Absent from the file when empty.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pending: BTreeMap<String, String>,
}

/// One stage's record.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct LockEntry {
    pub kind: String,
    pub version: String,
    /// SHA-256 cache key (hex).
    pub key: String,
    /// Resolved parameters (defaults filled in, paths absolute).
    pub params: BTreeMap<String, serde_json::Value>,
    /// Content digest of each non-empty `Path` parameter (these, not the paths, are in the key).
    pub path_digests: BTreeMap<String, String>,
    /// Input slot -> the upstream stage's cache key.
    pub inputs: BTreeMap<String, String>,
    /// The output directory in the store.
    pub output: PathBuf,
    /// Content digest of the output directory.
    pub output_digest: String,
    /// When the stage started (seconds since the Unix epoch) and how long it ran.
    pub started_unix: u64,
    pub seconds: f64,
}

impl LockFile {
    /// Reads a lock file; a missing file is an empty lock. A corrupt one is also treated as
    /// empty (everything is looked up in the store anyway) and reported through the `Err` of
    /// the second field so the caller can warn.
    pub fn read(path: &Path) -> (LockFile, Option<String>) {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(_) => return (LockFile::default(), None),
        };
        match serde_json::from_slice::<LockFile>(&bytes) {
            Ok(l) if l.schema == LOCK_SCHEMA => (l, None),
            Ok(l) => (LockFile::default(), Some(format!("{}: lock schema {} is not {LOCK_SCHEMA}; ignoring it", path.display(), l.schema))),
            Err(e) => (LockFile::default(), Some(format!("{}: unreadable lock file ({e}); ignoring it", path.display()))),
        }
    }

    pub fn write(&self, path: &Path) -> Result<()> {
        let mut bytes = serde_json::to_vec_pretty(self).unwrap_or_default();
        bytes.push(b'\n');
        write_atomic(path, &bytes)
    }
}
