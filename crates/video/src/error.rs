use std::path::PathBuf;

/// Errors of video and image I/O. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum VideoError {
    #[error("{path}: cannot open as a video: {reason}")]
    Open { path: PathBuf, reason: String },
    #[error("{path}: has no video stream")]
    NoVideoStream { path: PathBuf },
    #[error("{path}: decoding failed: {reason}")]
    Decode { path: PathBuf, reason: String },
    #[error("{path}: the file ends after {decoded} frames; frame {wanted} was requested")]
    TooFewFrames { path: PathBuf, wanted: usize, decoded: usize },
    #[error("{path}: encoding failed: {reason}")]
    Encode { path: PathBuf, reason: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: cannot read image: {reason}")]
    Image { path: PathBuf, reason: String },
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

impl VideoError {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        VideoError::Io { path: path.to_owned(), source }
    }
}
