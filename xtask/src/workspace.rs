//! Where the checkout the command runs in keeps its files (bench scripts, `../shared/`,
//! `.latte/weights`).
//!
//! Found at run time from the current directory, never from where the binary was compiled:
//! `.ci/run` shares one build folder between clones, so a binary built by one clone is run by
//! another, and a compile-time path (`env!("CARGO_MANIFEST_DIR")`) would read the other
//! clone's files, or fail once it is deleted.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

/// The latte workspace that contains the current directory: the nearest ancestor with a
/// `Cargo.toml` that declares `[workspace]` and has `xtask/Cargo.toml` beside it.
pub fn root() -> Result<PathBuf> {
    let cwd = std::env::current_dir()?;
    match root_above(&cwd) {
        Some(root) => Ok(root),
        None => bail!(
            "{} is not inside a latte checkout (no Cargo.toml with [workspace] and xtask/ above it); run the command from the checkout",
            cwd.display()
        ),
    }
}

fn root_above(dir: &Path) -> Option<PathBuf> {
    dir.ancestors()
        .find(|d| {
            d.join("xtask/Cargo.toml").is_file()
                && std::fs::read_to_string(d.join("Cargo.toml")).is_ok_and(|t| t.lines().any(|l| l.trim() == "[workspace]"))
        })
        .map(Path::to_owned)
}

/// `../shared/` beside the checkout (fixtures and the measured specs).
pub fn shared() -> Result<PathBuf> {
    Ok(root()?.join("../shared"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nearest_workspace_with_an_xtask_is_the_root() {
        let tmp = tempfile::tempdir().unwrap();
        let ws = tmp.path().join("clone");
        std::fs::create_dir_all(ws.join("xtask")).unwrap();
        std::fs::create_dir_all(ws.join("crates/engine/src")).unwrap();
        std::fs::write(ws.join("Cargo.toml"), "[workspace]\nmembers = []\n").unwrap();
        std::fs::write(ws.join("xtask/Cargo.toml"), "[package]\n").unwrap();
        // A member's own manifest is not the root.
        std::fs::write(ws.join("crates/engine/Cargo.toml"), "[package]\n").unwrap();
        assert_eq!(root_above(&ws.join("crates/engine/src")), Some(ws.clone()));
        assert_eq!(root_above(&ws), Some(ws));
        assert_eq!(root_above(tmp.path()), None);
    }
}
