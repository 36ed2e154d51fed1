use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClipKind {
    /// A video file decoded with FFmpeg.
    Video,
    /// A folder of numbered image frames.
    Frames,
}

/// One clip (source video) of a dataset.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Clip {
    /// Unique within the manifest: the path relative to the dataset root, without extension.
    pub id: String,
    /// Absolute, or relative to the manifest's folder (the synthetic dataset).
    pub path: PathBuf,
    pub kind: ClipKind,
    /// Frames the container declares (video files) or image files counted (frame folders).
    pub frame_count: u64,
    /// Frame rate; `None` for frame folders, which carry none.
    pub fps: Option<f64>,
    pub width: usize,
    pub height: usize,
    pub label: Option<u32>,
}

/// `manifest.json` of the `videos` stage.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub dataset: String,
    pub num_classes: Option<u32>,
    /// Class names in label order, when the dataset has classes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub class_names: Vec<String>,
    pub clips: Vec<Clip>,
}

/// A file or folder that was left out, and why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rejected {
    pub path: PathBuf,
    pub reason: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a manifest ({source}); it is written by the `videos` stage")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

impl Manifest {
    /// Reads `manifest.json`.
    pub fn read(path: &Path) -> Result<Self, ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Io { path: path.to_owned(), source })?;
        serde_json::from_str(&text).map_err(|source| ManifestError::Parse { path: path.to_owned(), source })
    }

    /// Writes `manifest.json` through a temporary file and a rename.
    pub fn write(&self, path: &Path) -> Result<(), ManifestError> {
        write_json(path, self)
    }

    /// The path of clip `clip`, resolved against the manifest's folder.
    pub fn resolve(&self, manifest_dir: &Path, clip: &Clip) -> PathBuf {
        if clip.path.is_absolute() {
            clip.path.clone()
        } else {
            manifest_dir.join(&clip.path)
        }
    }
}

/// Writes `value` as pretty JSON to `path`, whole or not at all.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), ManifestError> {
    let io = |source| ManifestError::Io { path: path.to_owned(), source };
    let text = serde_json::to_string_pretty(value).map_err(|e| io(std::io::Error::other(e)))?;
    latte_atomic::write(path, text.as_bytes()).map_err(io)
}

impl Rejected {
    pub fn write_all(path: &Path, list: &[Rejected]) -> Result<(), ManifestError> {
        write_json(path, &list)
    }

    pub fn read_all(path: &Path) -> Result<Vec<Rejected>, ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Io { path: path.to_owned(), source })?;
        serde_json::from_str(&text).map_err(|source| ManifestError::Parse { path: path.to_owned(), source })
    }
}

/// An error's message without the leading `<path>: ` (the report names the path already).
pub(crate) fn reason(path: &Path, e: &dyn std::fmt::Display) -> String {
    let msg = e.to_string();
    let prefix = format!("{}: ", path.display());
    msg.strip_prefix(&prefix).map(str::to_owned).unwrap_or(msg)
}
