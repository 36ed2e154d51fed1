//! Whole-or-nothing file writes (`latte_atomic::write`, with the engine's error naming the file),
//! and unique names for the store's temporary folders. Its own module so that the store, the
//! lock file and the hash memo share it without depending on each other.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A number no other call in this process returns (temporary folder names: process id + this).
pub(crate) fn unique() -> u64 {
    COUNTER.fetch_add(1, Ordering::Relaxed)
}

/// Writes `bytes` to `path` (and its missing parent folders) so that `path` holds its old
/// content or all of `bytes`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    latte_atomic::write(path, bytes).map_err(|e| Error::io("cannot write", path, e))
}
