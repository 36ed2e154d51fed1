//! The content-addressed output store.
//!
//! ```text
//! .latte/
//!   out/<key>/         complete stage outputs, named by cache key; never modified once here
//!     .latte-manifest.json  each file's size, mtime and SHA-256 at install (files read-only)
//!   tmp/<key>.<pid>.<n>/  outputs being written; renamed to out/<key> only when complete
//!   work/<key>/        a stage's scratch that survives failures and kills (checkpoints of an
//!                      interrupted training run); deleted once out/<key> is installed
//!   work/<key>.lock    advisory lock: one process at a time runs the stage with <key>
//!   meta/<key>.json    what produced out/<key>: lock entry with output digest and timings
//!   logs/<key>.log     the stage's log lines
//!   locks/<hash>.path  lock files that reference this store (so `clean` can find them)
//!   hashes.json        stat memo of external files' digests
//!   lock               advisory file lock: runs hold it shared, `clean` exclusive
//! ```
//!
//! **Invariant:** `out/<key>` exists if and only if a stage with that key ran to completion.
//! A killed run leaves only a `tmp/` directory, which nothing reads and `clean` deletes, and
//! the stage's `work/<key>/`, which only a rerun of the same key reads (to resume) and `clean`
//! deletes unless a lock file names the key as pending.

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::hash::{sha256_hex, Hasher};
use crate::lock::LockEntry;
use crate::manifest::{self, Damage};

#[derive(Clone, Debug)]
pub struct Store {
    root: PathBuf,
}

pub use crate::atomic::write_atomic;

/// Holds the store's advisory lock until dropped.
pub struct StoreGuard {
    _file: File,
}

impl Store {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Store { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the output of `key` lives (or will live).
    pub fn output(&self, key: &str) -> PathBuf {
        self.root.join("out").join(key)
    }

    pub fn is_complete(&self, key: &str) -> bool {
        self.output(key).is_dir()
    }

    /// What the cheap check finds wrong with the complete output of `key` (see `manifest`).
    pub fn damage(&self, key: &str) -> Vec<Damage> {
        manifest::quick_check(&self.output(key))
    }

    /// Every file of the complete output of `key` re-hashed against its manifest (or, for an
    /// entry without one, against the digest in its record).
    pub fn verify(&self, key: &str) -> Result<Vec<Damage>> {
        let recorded = self.read_meta(key).map(|m| m.output_digest);
        manifest::full_check(&self.output(key), recorded.as_deref())
    }

    pub fn log_path(&self, key: &str) -> PathBuf {
        self.root.join("logs").join(format!("{key}.log"))
    }

    fn meta_path(&self, key: &str) -> PathBuf {
        self.root.join("meta").join(format!("{key}.json"))
    }

    /// The record of how `out/<key>` was produced; `None` if absent or corrupt (a miss).
    pub fn read_meta(&self, key: &str) -> Option<LockEntry> {
        let bytes = std::fs::read(self.meta_path(key)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    pub fn write_meta(&self, entry: &LockEntry) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(entry).unwrap_or_default();
        write_atomic(&self.meta_path(&entry.key), &bytes)
    }

    pub fn hasher(&self) -> Hasher {
        Hasher::with_memo(self.root.join("hashes.json"))
    }

    fn create_dirs(&self) -> Result<()> {
        for sub in ["out", "tmp", "work", "meta", "logs", "locks"] {
            let d = self.root.join(sub);
            std::fs::create_dir_all(&d).map_err(|e| Error::io("cannot create", &d, e))?;
        }
        Ok(())
    }

    fn lock_file(&self) -> Result<File> {
        self.create_dirs()?;
        let path = self.root.join("lock");
        File::options().create(true).truncate(false).write(true).open(&path).map_err(|e| Error::io("cannot open", &path, e))
    }

    /// Shared use for a run: several runs may share the store, `clean` may not run meanwhile.
    pub fn lock_shared(&self) -> Result<StoreGuard> {
        let file = self.lock_file()?;
        file.lock_shared().map_err(|e| Error::io("cannot lock", self.root.join("lock"), e))?;
        Ok(StoreGuard { _file: file })
    }

    /// Exclusive use (`clean`); fails at once rather than waiting for a long run.
    pub fn lock_exclusive(&self) -> Result<StoreGuard> {
        let file = self.lock_file()?;
        match file.try_lock() {
            Ok(()) => Ok(StoreGuard { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => Err(Error::StoreBusy(self.root.clone())),
            Err(std::fs::TryLockError::Error(e)) => Err(Error::io("cannot lock", self.root.join("lock"), e)),
        }
    }

    /// A fresh, empty directory for a stage with `key` to write into.
    pub fn create_tmp(&self, key: &str) -> Result<PathBuf> {
        let n = crate::atomic::unique();
        let dir = self.root.join("tmp").join(format!("{key}.{}.{n}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| Error::io("cannot create", &dir, e))?;
        Ok(dir)
    }

    /// The memo directory of stage kind `kind` (see `StageContext::memo`).
    pub fn memo(&self, kind: &str) -> PathBuf {
        self.root.join("memo").join(kind)
    }

    /// The persistent scratch directory of the stage with `key` (see `StageContext::work`).
    pub fn work(&self, key: &str) -> PathBuf {
        self.root.join("work").join(key)
    }

    fn work_lock_path(&self, key: &str) -> PathBuf {
        self.root.join("work").join(format!("{key}.lock"))
    }

    /// Takes the exclusive lock on `work/<key>` without waiting; `None` when another process
    /// holds it (it is running the same stage).
    pub fn try_lock_work(&self, key: &str) -> Result<Option<StoreGuard>> {
        let path = self.work_lock_path(key);
        let file = self.open_work_lock(&path)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(StoreGuard { _file: file })),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(Error::io("cannot lock", path, e)),
        }
    }

    /// Takes the exclusive lock on `work/<key>`, waiting for the process that holds it.
    pub fn lock_work(&self, key: &str) -> Result<StoreGuard> {
        let path = self.work_lock_path(key);
        let file = self.open_work_lock(&path)?;
        file.lock().map_err(|e| Error::io("cannot lock", &path, e))?;
        Ok(StoreGuard { _file: file })
    }

    fn open_work_lock(&self, path: &Path) -> Result<File> {
        self.create_dirs()?;
        File::options().create(true).truncate(false).write(true).open(path).map_err(|e| Error::io("cannot open", path, e))
    }

    /// Deletes `work/<key>` and its lock file (the caller holds that lock, or the store's
    /// exclusive one).
    pub fn remove_work(&self, key: &str) -> Result<()> {
        remove_dir(&self.work(key))?;
        match std::fs::remove_file(self.work_lock_path(key)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io("cannot delete", self.work_lock_path(key), e)),
            _ => Ok(()),
        }
    }

    /// Keys that have a scratch directory or a lock file under `work/`.
    pub fn work_keys(&self) -> Vec<String> {
        let keys: std::collections::BTreeSet<String> =
            list_names(&self.root.join("work")).into_iter().map(|n| n.strip_suffix(".lock").map(str::to_owned).unwrap_or(n)).collect();
        keys.into_iter().collect()
    }

    /// Renames a complete temporary directory to `out/<key>`. If the output exists already
    /// (another run finished the same key first), the new copy is dropped, unless `replace`
    /// (`--force`), in which case the old one is moved aside first and then deleted.
    pub fn install(&self, tmp: &Path, key: &str, replace: bool) -> Result<()> {
        let out = self.output(key);
        if out.exists() {
            if !replace {
                return remove_dir(tmp);
            }
            let old = self.root.join("tmp").join(format!("{key}.old.{}.{}", std::process::id(), crate::atomic::unique()));
            std::fs::rename(&out, &old).map_err(|e| Error::io("cannot move aside", &out, e))?;
            std::fs::rename(tmp, &out).map_err(|e| Error::io("cannot rename into place", tmp, e))?;
            return remove_dir(&old);
        }
        std::fs::rename(tmp, &out).map_err(|e| Error::io("cannot rename into place", tmp, e))
    }

    /// Records that the lock file at `lock` references this store.
    pub fn register_lock(&self, lock: &Path) -> Result<()> {
        let path = self.root.join("locks").join(format!("{}.path", &sha256_hex(lock.to_string_lossy().as_bytes())[..16]));
        if path.exists() {
            return Ok(());
        }
        write_atomic(&path, lock.to_string_lossy().as_bytes())
    }

    /// Every lock file registered with this store that still exists.
    pub fn lock_files(&self) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(self.root.join("locks")) else { return Vec::new() };
        let mut out: Vec<PathBuf> =
            entries.filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok()).map(PathBuf::from).filter(|p| p.is_file()).collect();
        out.sort();
        out
    }

    /// Keys with a complete output.
    pub fn keys(&self) -> Vec<String> {
        list_names(&self.root.join("out"))
    }

    /// Leftover temporary directories (interrupted or failed runs).
    pub fn tmp_dirs(&self) -> Vec<PathBuf> {
        list_names(&self.root.join("tmp")).into_iter().map(|n| self.root.join("tmp").join(n)).collect()
    }

    /// Deletes `out/<key>` and its meta and log.
    pub fn remove(&self, key: &str) -> Result<()> {
        // Delete the meta and log first: an output without meta is still valid (its digest is
        // recomputed), whereas a meta without output is merely ignored.
        let _ = std::fs::remove_file(self.meta_path(key));
        let _ = std::fs::remove_file(self.log_path(key));
        remove_dir(&self.output(key))
    }
}

fn list_names(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut names: Vec<String> = entries.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect();
    names.sort();
    names
}

pub(crate) fn remove_dir(dir: &Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("cannot delete", dir, e)),
    }
}

/// Total size of the files below `path`.
pub fn disk_usage(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else { return 0 };
    if !meta.is_dir() {
        return meta.len();
    }
    std::fs::read_dir(path).map(|entries| entries.filter_map(|e| e.ok()).map(|e| disk_usage(&e.path())).sum()).unwrap_or(0)
}
