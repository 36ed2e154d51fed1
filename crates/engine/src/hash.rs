//! Content hashing: the canonical encoding of parameters, file and directory digests, and a
//! stat memo so that unchanged external data is not re-read on every run.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// The file name of a store entry's sealed manifest (`manifest`), which a directory digest
/// leaves out: the manifest describes the content, it is not part of it.
pub const MANIFEST_FILE: &str = ".latte-manifest.json";

/// Canonical JSON for a TOML value: object keys sorted, floats in Rust's shortest round-trip
/// form (`1.0`, `0.0001`, `1e-10`), no whitespace. Written by hand rather than through
/// `serde_json` so that the key cannot change if some crate turns on `preserve_order`.
pub fn canonical(v: &toml::Value, out: &mut String) {
    match v {
        toml::Value::String(s) => canonical_str(s, out),
        toml::Value::Integer(i) => {
            let _ = write!(out, "{i}");
        }
        toml::Value::Float(f) => {
            let _ = if f.is_finite() { write!(out, "{f:?}") } else { write!(out, "\"{f}\"") };
        }
        toml::Value::Boolean(b) => {
            let _ = write!(out, "{b}");
        }
        toml::Value::Datetime(d) => canonical_str(&d.to_string(), out),
        toml::Value::Array(a) => {
            out.push('[');
            for (i, e) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(e, out);
            }
            out.push(']');
        }
        toml::Value::Table(t) => {
            let sorted: BTreeMap<&String, &toml::Value> = t.iter().collect();
            out.push('{');
            for (i, (k, e)) in sorted.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical_str(k, out);
                out.push(':');
                canonical(e, out);
            }
            out.push('}');
        }
    }
}

fn canonical_str(s: &str, out: &mut String) {
    // serde_json's string escaping is canonical (it does not depend on map ordering).
    out.push_str(&serde_json::to_string(s).unwrap_or_default());
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

pub(crate) fn file_sha256(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).map_err(|e| Error::io("cannot open", path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::io("cannot read", path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// What a file looked like when it was hashed. ctime is included because mtime can be set
/// back by tools (Bazel #14723); inode because a file replaced by rename keeps its mtime.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Stat {
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
    ino: u64,
}

impl Stat {
    fn of(m: &std::fs::Metadata) -> Self {
        Stat { size: m.len(), mtime_ns: mtime_ns(m), ctime_ns: m.ctime() as i128 * 1_000_000_000 + m.ctime_nsec() as i128, ino: m.ino() }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct MemoEntry {
    stat: Stat,
    sha256: String,
}

/// Hashes files and directories, remembering each file's digest by path and stat so that
/// only files whose stat changed are read again.
pub struct Hasher {
    memo_file: Option<PathBuf>,
    memo: Mutex<BTreeMap<String, MemoEntry>>,
    dirty: Mutex<bool>,
}

impl Hasher {
    /// A hasher that remembers nothing (for fresh outputs, hashed once).
    pub fn without_memo() -> Self {
        Hasher { memo_file: None, memo: Mutex::new(BTreeMap::new()), dirty: Mutex::new(false) }
    }

    /// A hasher whose memo lives in `memo_file`. An unreadable or corrupt memo is a cache
    /// miss, not an error.
    pub fn with_memo(memo_file: PathBuf) -> Self {
        let memo = std::fs::read(&memo_file).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
        Hasher { memo_file: Some(memo_file), memo: Mutex::new(memo), dirty: Mutex::new(false) }
    }

    /// Writes the memo back if it changed (temporary file + rename).
    pub fn save(&self) -> Result<()> {
        let (Some(file), true) = (&self.memo_file, *self.dirty.lock().unwrap_or_else(|e| e.into_inner())) else {
            return Ok(());
        };
        let memo = self.memo.lock().unwrap_or_else(|e| e.into_inner());
        let bytes = serde_json::to_vec(&*memo).unwrap_or_default();
        crate::atomic::write_atomic(file, &bytes)
    }

    fn file(&self, path: &Path, meta: &std::fs::Metadata) -> Result<String> {
        let stat = Stat::of(meta);
        let key = path.to_string_lossy().into_owned();
        if self.memo_file.is_some() {
            let memo = self.memo.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(e) = memo.get(&key).filter(|e| e.stat == stat) {
                return Ok(e.sha256.clone());
            }
        }
        let sha256 = file_sha256(path)?;
        if self.memo_file.is_some() {
            self.memo.lock().unwrap_or_else(|e| e.into_inner()).insert(key, MemoEntry { stat, sha256: sha256.clone() });
            *self.dirty.lock().unwrap_or_else(|e| e.into_inner()) = true;
        }
        Ok(sha256)
    }

    /// The digest of a file's content, or of a directory's tree: SHA-256 over the sorted
    /// lines `<relative path>\t<size>\t<sha256>` of every file below it (symlinks followed).
    /// Names and contents count; timestamps and permissions do not. A store entry's own
    /// manifest (`manifest::MANIFEST_FILE` at the top) is not part of its content.
    pub fn digest(&self, path: &Path) -> Result<String> {
        let meta = std::fs::metadata(path).map_err(|e| Error::io("cannot read", path, e))?;
        if meta.is_file() {
            return self.file(path, &meta).map(|h| format!("file:{h}"));
        }
        Ok(tree_digest(&self.tree(path)?))
    }

    /// Every file below the directory `root` with its size, mtime and SHA-256, in path order.
    pub fn tree(&self, root: &Path) -> Result<Vec<FileDigest>> {
        let mut files = Vec::new();
        self.walk(root, Path::new(""), &mut files)?;
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(files)
    }

    fn walk(&self, root: &Path, rel: &Path, files: &mut Vec<FileDigest>) -> Result<()> {
        let dir = root.join(rel);
        let entries = std::fs::read_dir(&dir).map_err(|e| Error::io("cannot list", &dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io("cannot list", &dir, e))?;
            if rel.as_os_str().is_empty() && entry.file_name() == MANIFEST_FILE {
                continue;
            }
            let rel = rel.join(entry.file_name());
            let path = root.join(&rel);
            let meta = std::fs::metadata(&path).map_err(|e| Error::io("cannot read", &path, e))?;
            if meta.is_dir() {
                self.walk(root, &rel, files)?;
            } else {
                let sha256 = self.file(&path, &meta)?;
                files.push(FileDigest { path: rel.to_string_lossy().into_owned(), size: meta.len(), mtime_ns: mtime_ns(&meta), sha256 });
            }
        }
        Ok(())
    }
}

/// One file of a directory tree, as hashed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileDigest {
    /// Relative to the tree's root, `/`-separated.
    pub path: String,
    pub size: u64,
    pub mtime_ns: i128,
    pub sha256: String,
}

/// The digest of a directory from its files (see `Hasher::digest`).
pub fn tree_digest(files: &[FileDigest]) -> String {
    let mut lines: Vec<String> = files.iter().map(|f| format!("{}\t{}\t{}", f.path, f.size, f.sha256)).collect();
    lines.sort();
    format!("dir:{}", sha256_hex(lines.join("\n").as_bytes()))
}

pub(crate) fn mtime_ns(m: &std::fs::Metadata) -> i128 {
    m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(text: &str) -> String {
        let t: toml::Table = toml::from_str(text).unwrap();
        let mut s = String::new();
        canonical(&toml::Value::Table(t), &mut s);
        s
    }

    #[test]
    fn canonical_form_is_order_free_and_exact() {
        assert_eq!(canon("b = 1\na = [0.5, \"x\"]"), canon("a = [0.5, \"x\"]\nb = 1"));
        assert_eq!(canon("a = 0.1\nb = 1e-10\nc = 2.0"), r#"{"a":0.1,"b":1e-10,"c":2.0}"#);
        assert_ne!(canon("a = 1"), canon("a = 1.0"));
    }

    #[test]
    fn directory_digest_tracks_names_and_content_and_memo_notices_edits() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join("d");
        std::fs::create_dir_all(d.join("sub")).unwrap();
        std::fs::write(d.join("a.txt"), "hello").unwrap();
        std::fs::write(d.join("sub/b.txt"), "world").unwrap();
        let h = Hasher::with_memo(tmp.path().join("memo.json"));
        let first = h.digest(&d).unwrap();
        assert_eq!(first, h.digest(&d).unwrap());
        h.save().unwrap();
        // Same size, new content: the memo must notice (mtime/ctime change).
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(d.join("a.txt"), "HELLO").unwrap();
        let h2 = Hasher::with_memo(tmp.path().join("memo.json"));
        let second = h2.digest(&d).unwrap();
        assert_ne!(first, second);
        assert_eq!(second, Hasher::without_memo().digest(&d).unwrap());
        std::fs::rename(d.join("sub/b.txt"), d.join("sub/c.txt")).unwrap();
        assert_ne!(second, Hasher::without_memo().digest(&d).unwrap());
    }
}
