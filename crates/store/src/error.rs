use std::path::PathBuf;

/// Everything that can go wrong reading or writing a ragged store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the Zarr store at {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("Zarr error in {path} (array `{array}`): {source}")]
    Zarr {
        path: PathBuf,
        array: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("the group attributes of {path} are not a ragged store's ({source}); was it written by latte-store?")]
    Attributes {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path}: array `{array}` does not exist (the store has: {available})")]
    NoSuchArray { path: PathBuf, array: String, available: String },
    #[error("{path}: array `{array}` holds {actual}, not {requested}")]
    WrongDtype { path: PathBuf, array: String, actual: String, requested: &'static str },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    /// `source` while doing `what` (e.g. "opening <store>"): a caller's step above the Zarr call.
    #[error("{what}")]
    Context {
        what: String,
        #[source]
        source: Box<StoreError>,
    },
}

impl StoreError {
    /// `self` as the cause of the failed step `what`.
    pub(crate) fn context(self, what: impl FnOnce() -> String) -> StoreError {
        StoreError::Context { what: what(), source: Box::new(self) }
    }
}
