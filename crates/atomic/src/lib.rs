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

/// Puts the complete folder `from` at `to` (same file system), replacing an older `to`: a
/// reader checking for a file inside `to` sees the old folder, none, or the whole new one,
/// never a folder being filled. (Two renames cannot swap a folder in one step, so between
/// them there is no `to`.)
pub fn replace_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    if to.exists() {
        std::fs::remove_dir_all(to)?;
    }
    std::fs::rename(from, to)
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

    #[test]
    fn replace_dir_puts_the_new_folder_in_place_of_the_old() {
        let dir = tempfile::tempdir().unwrap();
        let (new, target) = (dir.path().join("new"), dir.path().join("entry"));
        write(&new.join("a.json"), b"new").unwrap();
        replace_dir(&new, &target).unwrap();
        write(&new.join("b.json"), b"newer").unwrap();
        write(&target.join("stale.json"), b"old").unwrap();
        replace_dir(&new, &target).unwrap();
        let names: Vec<_> = std::fs::read_dir(&target).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["b.json"], "nothing of the old folder is left");
        assert_eq!(std::fs::read(target.join("b.json")).unwrap(), b"newer");
        assert!(!new.exists());
    }
}
