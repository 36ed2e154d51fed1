//! A ragged Zarr v3 store: the frames (or latents) of many videos of different lengths
//! concatenated along one "frames" axis, with per-video offsets and counts as group attributes.
//!
//! Layout of a store directory (a Zarr v3 group):
//! - `zarr.json`: group metadata; its attributes are [`RaggedMeta`] (offsets, counts, ids,
//!   labels, num_classes, dataset, window, flip, plus free-form extras).
//! - one array per name (`frames`, `mean`, `logvar`, ...) of shape `lead ++ [total_frames] ++
//!   frame_shape`, where `lead` is `[]` or e.g. `[2]` (orientation). Arrays are sharded: a shard
//!   holds `frames_per_shard` frames of one lead slot, an inner chunk is one frame, so a random
//!   frame costs one small read while the directory holds few files.
//!
//! Writers buffer whole shards in memory because zarrs fsyncs every stored chunk and a partial
//! shard write is a read-modify-write of the whole shard.

mod element;
mod error;
mod meta;
mod posterior;
mod reader;
mod videos;
mod writer;

pub use element::{Dtype, FrameElement};
pub use error::StoreError;
pub use meta::{GroupInfo, LatentsAttrs, RaggedMeta, WindowRule};
pub use posterior::{LatentsStore, Posterior};
pub use reader::{RaggedArray, RaggedReader};
pub use videos::RgbVideos;
pub use writer::{ArraySpec, RaggedWriter};

pub use half::f16;
