//! Dataset adapters: each known layout (spec latte-reference §4.1, metrics-datasets §4) is
//! scanned into a list of clips (video files or frame folders) with labels, then probed into
//! a [`Manifest`]; files that cannot be read are reported, not fatal.

pub mod bench;
mod extract;
mod kind;
mod manifest;
mod scan;
mod synthetic;
mod walk;

pub use extract::{extract_frames, ExtractError, ExtractOptions, ExtractReport};
pub use kind::DatasetKind;
pub use manifest::{Clip, ClipKind, Manifest, ManifestError, Rejected};
pub use scan::{build_manifest, scan, Candidate, Scan, ScanError, ScanOptions};
pub use synthetic::write_synthetic;

/// A private pool of `threads` workers (at least one), so a stage's thread budget holds
/// whatever the global rayon pool is.
fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .build()
        .unwrap_or_else(|_| rayon::ThreadPoolBuilder::new().num_threads(1).build().expect("a one-thread pool always builds"))
}
