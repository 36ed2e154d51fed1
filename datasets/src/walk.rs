use std::path::{Path, PathBuf};

/// Every directory under `root` (itself included), depth first, entries in sorted order, like
/// `sorted(os.walk(root))`. Hidden entries (`.name`) are skipped.
pub fn dirs(root: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = vec![root.to_owned()];
    let mut i = 0;
    while i < out.len() {
        let mut subs: Vec<PathBuf> =
            std::fs::read_dir(&out[i])?.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_dir() && !hidden(p)).collect();
        subs.sort();
        // Keep the walk depth-first so ids come out grouped by folder.
        let at = i + 1;
        out.splice(at..at, subs);
        i += 1;
    }
    Ok(out)
}

/// The regular files directly in `dir`, sorted, hidden ones skipped.
pub fn files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> =
        std::fs::read_dir(dir)?.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_file() && !hidden(p)).collect();
    v.sort();
    Ok(v)
}

fn hidden(p: &Path) -> bool {
    p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.'))
}
