//! Whole-or-nothing file writes, the one way every crate writes a file that something may read
//! while it is written or after a crash: the engine's store and cache, the weights, the figures,
//! the manifests. A reader sees the old content or the new one, never a part of either.
//!
//! The work is done by `atomic-write-file`: the new content goes to a temporary file in the
//! same folder (on Linux an unnamed `O_TMPFILE`, so a killed process leaves nothing behind),
//! which is flushed to disk and renamed over the target, and the folder is synced, so after a
//! power loss the file is the old one or the complete new one.

use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `path`, creating its parent folders, so that `path` holds either its
/// previous content or all of `bytes`.
pub fn write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    // A bare file name has the empty path as its parent, which names no folder to open.
    let path = match path.parent() {
        Some(parent) if parent.as_os_str().is_empty() => Path::new(".").join(path),
        _ => path.to_owned(),
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut file = atomic_write_file::AtomicWriteFile::open(&path)?;
    file.write_all(bytes)?;
    file.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_replaces_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/dir/out.json");
        write(&path, b"first").unwrap();
        write(&path, b"second, longer").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second, longer");
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["out.json"]);
    }

    #[test]
    fn a_failed_write_keeps_the_old_content_and_names_no_partial_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.json");
        write(&path, b"kept").unwrap();
        // The target is a folder's child that cannot be created: the parent is a file.
        let blocked = path.join("child");
        assert!(write(&blocked, b"new").is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"kept");
    }
}
