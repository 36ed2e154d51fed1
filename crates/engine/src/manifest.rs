//! The per-file record of a store entry, and the checks that find a damaged one.
//!
//! When a stage's output is installed, the engine writes `out/<key>/.latte-manifest.json`:
//! every file's relative path, size, mtime and SHA-256, and makes the files read-only (the
//! folders stay writable so that `clean` and `--force` can delete them without changing
//! permissions first). Two checks read it:
//!
//! - [`quick_check`], before anything consumes an entry (`status`, `run`, `--dry-run`): one
//!   `stat` per file; a missing file or another size is damage; another mtime costs a re-hash of
//!   that file only (a copied store keeps its content but not always its mtimes).
//! - [`full_check`], for `verify`: every file re-hashed, and files the manifest does not know
//!   reported too.
//!
//! Entries written before manifests existed have none; `quick_check` passes them and
//! `full_check` falls back to the directory digest recorded in `meta/<key>.json`.

use std::collections::BTreeMap;
use std::fmt;
use std::io::ErrorKind;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
/// The manifest's file name at the top of a store entry (left out of the entry's digest, so
/// defined where digests are computed).
pub use crate::hash::MANIFEST_FILE;
use crate::hash::{file_sha256, mtime_ns, tree_digest, FileDigest, Hasher};

const MANIFEST_SCHEMA: u32 = 1;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub schema: u32,
    /// Relative path -> what the file was when the entry was installed.
    pub files: BTreeMap<String, FileRecord>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FileRecord {
    pub size: u64,
    pub mtime_ns: i128,
    pub sha256: String,
}

/// One way in which an entry differs from its manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Damage {
    Missing {
        file: String,
    },
    Size {
        file: String,
        recorded: u64,
        found: u64,
    },
    Content {
        file: String,
    },
    /// A file the stage did not write (full check only).
    Unexpected {
        file: String,
    },
    /// The manifest itself is gone or unreadable: nothing can be trusted.
    Manifest {
        reason: String,
    },
    /// No manifest (an entry from before manifests) and the content digest differs from the
    /// one recorded when it was installed.
    Digest {
        recorded: String,
        found: String,
    },
}

impl Damage {
    /// The file concerned, relative to the entry (the manifest's name for manifest problems).
    pub fn file(&self) -> &str {
        match self {
            Damage::Missing { file } | Damage::Size { file, .. } | Damage::Content { file } | Damage::Unexpected { file } => file,
            Damage::Manifest { .. } => MANIFEST_FILE,
            Damage::Digest { .. } => ".",
        }
    }
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Damage::Missing { file } => write!(f, "{file} (missing)"),
            Damage::Size { file, recorded, found } => write!(f, "{file} ({found} bytes, {recorded} when installed)"),
            Damage::Content { file } => write!(f, "{file} (content changed)"),
            Damage::Unexpected { file } => write!(f, "{file} (not written by the stage)"),
            Damage::Manifest { reason } => write!(f, "{MANIFEST_FILE} ({reason})"),
            Damage::Digest { recorded, found } => write!(f, "content digest {found} ({recorded} when installed)"),
        }
    }
}

/// Records every file of the complete output `dir` in its manifest and makes the files
/// read-only. Returns the directory's content digest (as `Hasher::digest`).
pub fn seal(dir: &Path) -> Result<String> {
    let files = Hasher::without_memo().tree(dir)?;
    let manifest = Manifest {
        schema: MANIFEST_SCHEMA,
        files: files
            .iter()
            .map(|f| (f.path.clone(), FileRecord { size: f.size, mtime_ns: f.mtime_ns, sha256: f.sha256.clone() }))
            .collect(),
    };
    let path = dir.join(MANIFEST_FILE);
    let mut bytes = serde_json::to_vec_pretty(&manifest).unwrap_or_default();
    bytes.push(b'\n');
    std::fs::write(&path, bytes).map_err(|e| Error::io("cannot write", &path, e))?;
    for f in files.iter().map(|f| dir.join(&f.path)).chain([path]) {
        read_only(&f)?;
    }
    Ok(tree_digest(&files))
}

fn read_only(path: &Path) -> Result<()> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io("cannot read", path, e))?;
    let mut perms = meta.permissions();
    perms.set_mode(perms.mode() & !0o222);
    std::fs::set_permissions(path, perms).map_err(|e| Error::io("cannot make read-only", path, e))
}

/// The manifest of entry `dir`: `Ok(None)` when it has none (an entry from before manifests),
/// `Err` with the reason when it is unreadable.
fn read(dir: &Path) -> std::result::Result<Option<Manifest>, String> {
    let bytes = match std::fs::read(dir.join(MANIFEST_FILE)) {
        Ok(b) => b,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("unreadable ({e})")),
    };
    match serde_json::from_slice::<Manifest>(&bytes) {
        Ok(m) if m.schema == MANIFEST_SCHEMA => Ok(Some(m)),
        Ok(m) => Err(format!("schema {} is not {MANIFEST_SCHEMA}", m.schema)),
        Err(e) => Err(format!("corrupt ({e})")),
    }
}

/// The cheap check: one `stat` per recorded file, a re-hash only where the mtime moved.
/// An entry without a manifest (from before manifests) passes.
pub fn quick_check(dir: &Path) -> Vec<Damage> {
    let manifest = match read(dir) {
        Ok(Some(m)) => m,
        Ok(None) => return Vec::new(),
        Err(reason) => return vec![Damage::Manifest { reason }],
    };
    let mut damage = Vec::new();
    for (file, rec) in &manifest.files {
        let path = dir.join(file);
        let meta = match std::fs::metadata(&path) {
            Ok(m) if m.is_file() => m,
            _ => {
                damage.push(Damage::Missing { file: file.clone() });
                continue;
            }
        };
        if meta.len() != rec.size {
            damage.push(Damage::Size { file: file.clone(), recorded: rec.size, found: meta.len() });
        } else if mtime_ns(&meta) != rec.mtime_ns && file_sha256(&path).ok().as_ref() != Some(&rec.sha256) {
            damage.push(Damage::Content { file: file.clone() });
        }
    }
    damage
}

/// The thorough check (`verify`): every file re-hashed; files not in the manifest reported.
/// `recorded_digest` is the entry's digest from `meta/<key>.json`, used when it has no
/// manifest.
pub fn full_check(dir: &Path, recorded_digest: Option<&str>) -> Result<Vec<Damage>> {
    let files = Hasher::without_memo().tree(dir)?;
    let manifest = match read(dir) {
        Ok(Some(m)) => m,
        Ok(None) => {
            let found = tree_digest(&files);
            return Ok(match recorded_digest {
                Some(recorded) if recorded != found => vec![Damage::Digest { recorded: recorded.to_owned(), found }],
                _ => Vec::new(),
            });
        }
        Err(reason) => return Ok(vec![Damage::Manifest { reason }]),
    };
    let found: BTreeMap<&str, &FileDigest> = files.iter().map(|f| (f.path.as_str(), f)).collect();
    let mut damage = Vec::new();
    for (file, rec) in &manifest.files {
        match found.get(file.as_str()) {
            None => damage.push(Damage::Missing { file: file.clone() }),
            Some(f) if f.size != rec.size => damage.push(Damage::Size { file: file.clone(), recorded: rec.size, found: f.size }),
            Some(f) if f.sha256 != rec.sha256 => damage.push(Damage::Content { file: file.clone() }),
            Some(_) => {}
        }
    }
    for f in files.iter().filter(|f| !manifest.files.contains_key(&f.path)) {
        damage.push(Damage::Unexpected { file: f.path.clone() });
    }
    Ok(damage)
}

/// Files recorded in the manifest of `dir` (0 without one).
pub fn file_count(dir: &Path) -> usize {
    read(dir).ok().flatten().map_or(0, |m| m.files.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> (tempfile::TempDir, std::path::PathBuf, String) {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join("e");
        std::fs::create_dir_all(d.join("sub")).unwrap();
        std::fs::write(d.join("a.txt"), "hello").unwrap();
        std::fs::write(d.join("sub/b.bin"), [1u8, 2, 3, 4]).unwrap();
        let digest = seal(&d).unwrap();
        (tmp, d, digest)
    }

    fn writable(p: &Path) {
        let mut perms = std::fs::metadata(p).unwrap().permissions();
        perms.set_mode(0o644);
        std::fs::set_permissions(p, perms).unwrap();
    }

    #[test]
    fn sealing_records_every_file_keeps_the_digest_and_makes_files_read_only() {
        let (_t, d, digest) = entry();
        assert_eq!(digest, Hasher::without_memo().digest(&d).unwrap(), "the manifest is not part of the content");
        assert_eq!(file_count(&d), 2);
        for f in ["a.txt", "sub/b.bin", MANIFEST_FILE] {
            assert_eq!(std::fs::metadata(d.join(f)).unwrap().permissions().mode() & 0o222, 0, "{f} is writable");
        }
        assert!(quick_check(&d).is_empty());
        assert!(full_check(&d, None).unwrap().is_empty());
    }

    #[test]
    fn truncated_deleted_and_overwritten_files_are_named() {
        let (_t, d, _) = entry();
        writable(&d.join("a.txt"));
        std::fs::write(d.join("a.txt"), "he").unwrap();
        std::fs::remove_file(d.join("sub/b.bin")).unwrap();
        std::fs::write(d.join("extra"), "x").unwrap();
        let want = vec![Damage::Size { file: "a.txt".into(), recorded: 5, found: 2 }, Damage::Missing { file: "sub/b.bin".into() }];
        assert_eq!(quick_check(&d), want);
        let mut full = want.clone();
        full.push(Damage::Unexpected { file: "extra".into() });
        assert_eq!(full_check(&d, None).unwrap(), full);
    }

    #[test]
    fn same_size_overwrite_is_caught_by_mtime_and_a_forged_mtime_by_the_full_check() {
        let (_t, d, _) = entry();
        let a = d.join("a.txt");
        let mtime = std::fs::metadata(&a).unwrap().modified().unwrap();
        writable(&a);
        std::thread::sleep(std::time::Duration::from_millis(10));
        std::fs::write(&a, "HELLO").unwrap();
        assert_eq!(quick_check(&d), vec![Damage::Content { file: "a.txt".into() }]);
        // The same bytes rewritten (a copy without timestamps) is no damage.
        std::fs::write(&a, "hello").unwrap();
        assert!(quick_check(&d).is_empty());
        // New bytes with the old mtime put back: only re-hashing sees it.
        std::fs::write(&a, "jello").unwrap();
        std::fs::File::options().write(true).open(&a).unwrap().set_modified(mtime).unwrap();
        assert!(quick_check(&d).is_empty());
        assert_eq!(full_check(&d, None).unwrap(), vec![Damage::Content { file: "a.txt".into() }]);
    }

    #[test]
    fn a_broken_manifest_is_damage_and_a_missing_one_falls_back_to_the_recorded_digest() {
        let (_t, d, digest) = entry();
        let m = d.join(MANIFEST_FILE);
        writable(&m);
        std::fs::write(&m, "{ not json").unwrap();
        assert!(matches!(quick_check(&d).as_slice(), [Damage::Manifest { .. }]), "{:?}", quick_check(&d));
        std::fs::remove_file(&m).unwrap();
        assert!(quick_check(&d).is_empty(), "an entry from before manifests passes the quick check");
        assert!(full_check(&d, Some(&digest)).unwrap().is_empty());
        writable(&d.join("a.txt"));
        std::fs::write(d.join("a.txt"), "other").unwrap();
        assert!(matches!(full_check(&d, Some(&digest)).unwrap().as_slice(), [Damage::Digest { .. }]));
    }
}
