//! Garbage collection of the store: outputs that no lock file references, temporary
//! directories left by interrupted or failed runs, and scratch directories (`work/<key>`) that
//! no rerun will resume from.

use std::collections::BTreeSet;
use std::path::PathBuf;

use crate::error::Result;
use crate::lock::LockFile;
use crate::store::{disk_usage, remove_dir, Store};

#[derive(Clone, Debug, Default)]
pub struct GcReport {
    /// Lock files whose entries were kept.
    pub locks: Vec<PathBuf>,
    /// Output keys deleted (or that would be, on a dry run).
    pub removed: Vec<String>,
    /// Temporary directories deleted: `tmp/` leftovers, and `work/<key>` scratch directories
    /// whose key is complete or pending in no lock file.
    pub tmp_removed: Vec<PathBuf>,
    pub kept: usize,
    pub bytes: u64,
}

/// Deletes what no registered lock file references. Takes the store's exclusive lock, so it
/// refuses to run while a pipeline is running (a running stage's temporary directory is not
/// garbage).
pub fn gc(store: &Store, dry_run: bool) -> Result<GcReport> {
    let _guard = store.lock_exclusive()?;
    let mut report = GcReport { locks: store.lock_files(), ..Default::default() };
    let mut referenced = BTreeSet::new();
    let mut pending = BTreeSet::new();
    for lock in &report.locks {
        // A corrupt lock protects nothing; its stages are simply rerun later.
        let (l, _) = LockFile::read(lock);
        referenced.extend(l.stages.into_values().map(|e| e.key));
        pending.extend(l.pending.into_values());
    }
    for key in store.keys() {
        if referenced.contains(&key) {
            report.kept += 1;
            continue;
        }
        report.bytes += disk_usage(&store.output(&key));
        if !dry_run {
            store.remove(&key)?;
        }
        report.removed.push(key);
    }
    for tmp in store.tmp_dirs() {
        report.bytes += disk_usage(&tmp);
        if !dry_run {
            remove_dir(&tmp)?;
        }
        report.tmp_removed.push(tmp);
    }
    // An interrupted stage's scratch is kept for its rerun while a pipeline still plans that
    // key; a complete key's scratch is a leftover of a kill between install and cleanup.
    for key in store.work_keys() {
        if pending.contains(&key) && !store.is_complete(&key) {
            continue;
        }
        let work = store.work(&key);
        report.bytes += disk_usage(&work);
        if !dry_run {
            store.remove_work(&key)?;
        }
        report.tmp_removed.push(work);
    }
    Ok(report)
}
