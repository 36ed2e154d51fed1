use std::collections::HashMap;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use zarrs::array::{Array, ArraySubset};
use zarrs::filesystem::FilesystemStore;
use zarrs::group::Group;
use zarrs::storage::byte_range::{ByteRange, ByteRangeIterator, InvalidByteRangeError};
use zarrs::storage::{MaybeBytesIterator, ReadableStorageTraits, StorageError, StoreKey};

use crate::element::FrameElement;
use crate::error::StoreError;
use crate::meta::RaggedMeta;

/// The largest frame a store may declare, in bytes. A frame is one inner chunk, read and
/// allocated whole; an 8K RGB frame is 100 MB, so a larger claim is a corrupt `zarr.json`
/// and is refused before any read allocates it.
const MAX_FRAME_BYTES: u64 = 256 << 20;

/// The most bytes one shard may decode to (zarrs decodes a shard whole when a read covers
/// it). The writer aims at 8 MiB per shard, so a larger claim is a corrupt `zarr.json`.
const MAX_SHARD_BYTES: u64 = 1 << 30;

/// The filesystem store, refusing to hand zarrs byte ranges and shard indexes that do not lie
/// inside the file.
///
/// A shard ends in an index giving the byte range of each frame in the shard file, and zarrs
/// trusts it: its filesystem store allocates a range's length before reading (an index claiming
/// 4 GiB in a file of a few kilobytes allocates 4 GiB), and its whole-shard decoder adds offset
/// and size unchecked (an offset of 2⁶⁴-1 wraps past its bounds check and panics). So every
/// range is checked against the file's size, and every whole shard read of an array whose
/// layout [`RaggedReader::array`] verified has its index checked before zarrs sees it.
struct BoundedStore {
    fs: FilesystemStore,
    /// Array name -> byte length of its shard index (`frames_per_shard` offset/size pairs of
    /// u64 and a CRC-32C).
    index_bytes: RwLock<HashMap<String, u64>>,
}

impl BoundedStore {
    /// The index length of the array a chunk key belongs to, once its layout is verified.
    fn index_bytes(&self, key: &StoreKey) -> Option<u64> {
        let (array, _) = key.as_str().split_once("/c/")?;
        self.index_bytes.read().unwrap_or_else(|e| e.into_inner()).get(array).copied()
    }

    /// Refuses the index at the end of `shard` if it places a frame outside the shard's data.
    fn check_index(shard: &[u8], index_bytes: u64) -> Result<(), String> {
        let Some(data_end) = (shard.len() as u64).checked_sub(index_bytes) else {
            return Err(format!("the shard holds {} bytes, less than its {index_bytes}-byte index", shard.len()));
        };
        // The entries, without the checksum after them (zarrs verifies that).
        let entries = &shard[data_end as usize..shard.len() - 4];
        for (i, pair) in entries.chunks_exact(16).enumerate() {
            let offset = u64::from_le_bytes(pair[..8].try_into().expect("8 bytes"));
            let size = u64::from_le_bytes(pair[8..].try_into().expect("8 bytes"));
            // u64::MAX twice marks a frame that was never written (read as the fill value)
            if (offset, size) != (u64::MAX, u64::MAX) && offset.checked_add(size).is_none_or(|end| end > data_end) {
                return Err(format!("its index places frame {i} at bytes {offset}+{size}, outside the shard's {data_end} data bytes"));
            }
        }
        Ok(())
    }
}

impl ReadableStorageTraits for BoundedStore {
    fn get_partial_many<'a>(&'a self, key: &StoreKey, byte_ranges: ByteRangeIterator<'a>) -> Result<MaybeBytesIterator<'a>, StorageError> {
        let ranges: Vec<ByteRange> = byte_ranges.collect();
        let Some(size) = self.fs.size_key(key)? else {
            return Ok(None);
        };
        for &range in &ranges {
            let inside = match range {
                ByteRange::FromStart(offset, length) => offset.checked_add(length.unwrap_or(0)).is_some_and(|end| end <= size),
                ByteRange::Suffix(length) => length <= size,
            };
            if !inside {
                return Err(InvalidByteRangeError::new(range, size).into());
            }
        }
        // zarrs reads a shard whole when a read covers all of it, and then trusts its index.
        let index_bytes = match ranges.as_slice() {
            [ByteRange::FromStart(0, None)] => self.index_bytes(key),
            _ => None,
        };
        let Some(index_bytes) = index_bytes else {
            return self.fs.get_partial_many(key, Box::new(ranges.into_iter()));
        };
        let Some(shard) = self.fs.get(key)? else {
            return Ok(None);
        };
        Self::check_index(&shard, index_bytes).map_err(|m| StorageError::Other(format!("shard {key}: {m}")))?;
        Ok(Some(Box::new(std::iter::once(Ok(shard)))))
    }

    fn size_key(&self, key: &StoreKey) -> Result<Option<u64>, StorageError> {
        self.fs.size_key(key)
    }

    fn supports_get_partial(&self) -> bool {
        self.fs.supports_get_partial()
    }
}

/// Frames per shard of an array laid out as the writer lays it out: sharded, the index at the
/// end with a CRC-32C, shards of `[1.., k] ++ frame_shape`, inner chunks of one frame. Those
/// are the sizes every read allocates, so nothing else is accepted.
fn frames_per_shard(meta: &serde_json::Value, axis: usize, shape: &[u64], elem: u64) -> Result<u64, String> {
    let dims = |v: &serde_json::Value| -> Option<Vec<u64>> { v.as_array()?.iter().map(serde_json::Value::as_u64).collect() };
    let not_ours = |what: &str| format!("{what}: not the layout latte-store writes");
    let sharding = meta["codecs"]
        .as_array()
        .and_then(|c| c.first())
        .filter(|c| c["name"] == "sharding_indexed")
        .ok_or_else(|| not_ours("not sharded"))?;
    let conf = &sharding["configuration"];
    if !matches!(conf.get("index_location").map(serde_json::Value::as_str), None | Some(Some("end"))) {
        return Err(not_ours("the shard index is not at the end"));
    }
    let index_codecs: Option<Vec<&str>> = conf["index_codecs"].as_array().map(|c| c.iter().filter_map(|c| c["name"].as_str()).collect());
    if index_codecs.as_deref() != Some(&["bytes", "crc32c"][..]) {
        return Err(not_ours("the shard index is not checksummed"));
    }
    let frame = &shape[axis + 1..];
    let one_frame: Vec<u64> = std::iter::repeat_n(1, axis + 1).chain(frame.iter().copied()).collect();
    if dims(&conf["chunk_shape"]).as_deref() != Some(&one_frame[..]) {
        return Err(not_ours(&format!("inner chunks are not one frame ({:?})", conf["chunk_shape"])));
    }
    let shard = (meta["chunk_grid"]["name"] == "regular").then(|| dims(&meta["chunk_grid"]["configuration"]["chunk_shape"])).flatten();
    let k = match shard {
        Some(s) if s.len() == shape.len() && s[..axis].iter().all(|&n| n == 1) && s[axis + 1..] == *frame && s[axis] >= 1 => s[axis],
        other => return Err(not_ours(&format!("shards of shape {other:?} do not hold whole frames of {frame:?}"))),
    };
    let shard_bytes = frame.iter().try_fold(elem, |b, &n| b.checked_mul(n)).and_then(|b| b.checked_mul(k));
    if shard_bytes.is_none_or(|b| b > MAX_SHARD_BYTES) {
        return Err(format!("shards of {k} frames of {frame:?} would decode to more than {} MiB each", MAX_SHARD_BYTES >> 20));
    }
    Ok(k)
}

/// An open ragged store.
pub struct RaggedReader {
    dir: PathBuf,
    store: Arc<BoundedStore>,
    meta: RaggedMeta,
}

impl RaggedReader {
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let open_err = |e: Box<dyn std::error::Error + Send + Sync>| StoreError::Open { path: dir.to_owned(), source: e };
        if !dir.join("zarr.json").is_file() {
            return Err(open_err(format!("{} has no zarr.json (not a Zarr v3 group)", dir.display()).into()));
        }
        let fs = FilesystemStore::new(dir).map_err(|e| open_err(e.into()))?;
        let store = Arc::new(BoundedStore { fs, index_bytes: RwLock::new(HashMap::new()) });
        let group = Group::open(store.clone(), "/").map_err(|e| open_err(e.into()))?;
        let meta: RaggedMeta = serde_json::from_value(serde_json::Value::Object(group.attributes().clone()))
            .map_err(|source| StoreError::Attributes { path: dir.to_owned(), source })?;
        meta.check().map_err(|message| StoreError::Invalid { path: dir.to_owned(), message })?;
        Ok(Self { dir: dir.to_owned(), store, meta })
    }

    pub fn meta(&self) -> &RaggedMeta {
        &self.meta
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Array names present in the store.
    pub fn array_names(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().join("zarr.json").is_file())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        names.sort();
        names
    }

    /// Opens array `name`, checking that it holds `T` and that its frames axis matches the
    /// group's offsets and counts.
    pub fn array<T: FrameElement>(&self, name: &str) -> Result<RaggedArray<T>, StoreError> {
        if !self.dir.join(name).join("zarr.json").is_file() {
            return Err(StoreError::NoSuchArray {
                path: self.dir.clone(),
                array: name.to_owned(),
                available: self.array_names().join(", "),
            });
        }
        let array = Array::open(self.store.clone(), &format!("/{name}")).map_err(|e| StoreError::Zarr {
            path: self.dir.clone(),
            array: name.to_owned(),
            source: e.into(),
        })?;
        if *array.data_type() != T::zarr_data_type() {
            return Err(StoreError::WrongDtype {
                path: self.dir.clone(),
                array: name.to_owned(),
                actual: format!("{:?}", array.data_type()),
                requested: T::DTYPE.name(),
            });
        }
        // The frames axis is the one whose extent equals the total frame count; a lead axis of
        // the same length would make this ambiguous, so it is located by the dimension names.
        let names = array.dimension_names().clone().unwrap_or_default();
        let axis = names.iter().position(|n| n.as_deref() == Some("frame")).ok_or_else(|| StoreError::Invalid {
            path: self.dir.clone(),
            message: format!("array `{name}` has no dimension named `frame`"),
        })?;
        let shape = array.shape().to_vec();
        let frame_bytes =
            shape.get(axis + 1..).and_then(|dims| dims.iter().try_fold(std::mem::size_of::<T>() as u64, |bytes, &n| bytes.checked_mul(n)));
        if frame_bytes.is_none_or(|b| b > MAX_FRAME_BYTES) {
            return Err(StoreError::Invalid {
                path: self.dir.clone(),
                message: format!(
                    "array `{name}` has shape {shape:?}: its frames would be larger than {} MiB each (a corrupt zarr.json?)",
                    MAX_FRAME_BYTES >> 20
                ),
            });
        }
        let meta = serde_json::to_value(array.metadata()).map_err(|e| StoreError::Zarr {
            path: self.dir.clone(),
            array: name.to_owned(),
            source: e.into(),
        })?;
        let k = frames_per_shard(&meta, axis, &shape, std::mem::size_of::<T>() as u64)
            .map_err(|message| StoreError::Invalid { path: self.dir.clone(), message: format!("array `{name}`: {message}") })?;
        self.store.index_bytes.write().unwrap_or_else(|e| e.into_inner()).insert(name.to_owned(), k * 16 + 4);
        if shape[axis] != self.meta.total_frames() {
            return Err(StoreError::Invalid {
                path: self.dir.clone(),
                message: format!("array `{name}` has {} frames but the group attributes count {}", shape[axis], self.meta.total_frames()),
            });
        }
        Ok(RaggedArray {
            dir: self.dir.clone(),
            name: name.to_owned(),
            array,
            lead: shape[..axis].to_vec(),
            frame_shape: shape[axis + 1..].to_vec(),
            offsets: self.meta.offsets.clone(),
            counts: self.meta.counts.clone(),
            _t: PhantomData,
        })
    }
}

/// One array of a ragged store, typed.
pub struct RaggedArray<T> {
    dir: PathBuf,
    name: String,
    array: Array<BoundedStore>,
    lead: Vec<u64>,
    frame_shape: Vec<u64>,
    offsets: Vec<u64>,
    counts: Vec<u64>,
    _t: PhantomData<T>,
}

impl<T: FrameElement> RaggedArray<T> {
    /// Leading axes before the frames axis (`[]` or `[2]`).
    pub fn lead_shape(&self) -> &[u64] {
        &self.lead
    }

    pub fn frame_shape(&self) -> &[u64] {
        &self.frame_shape
    }

    pub fn frame_len(&self) -> usize {
        self.frame_shape.iter().product::<u64>() as usize
    }

    pub fn total_frames(&self) -> u64 {
        self.offsets.last().map_or(0, |o| o + self.counts[self.counts.len() - 1])
    }

    fn invalid(&self, message: String) -> StoreError {
        StoreError::Invalid { path: self.dir.clone(), message: format!("array `{}`: {message}", self.name) }
    }

    fn check_lead(&self, lead: &[u64]) -> Result<(), StoreError> {
        if lead.len() != self.lead.len() || lead.iter().zip(&self.lead).any(|(i, n)| i >= n) {
            return Err(self.invalid(format!("lead index {lead:?} does not fit lead shape {:?}", self.lead)));
        }
        Ok(())
    }

    /// Frames `start .. start + count` of lead slot `lead`, row-major `[count] ++ frame_shape`.
    pub fn read_range(&self, lead: &[u64], start: u64, count: u64) -> Result<Vec<T>, StoreError> {
        self.check_lead(lead)?;
        if start.checked_add(count).is_none_or(|end| end > self.total_frames()) {
            return Err(self.invalid(format!(
                "frames {start}..{} are out of range (the store has {})",
                start as u128 + count as u128,
                self.total_frames()
            )));
        }
        let mut ranges: Vec<std::ops::Range<u64>> = lead.iter().map(|&i| i..i + 1).collect();
        ranges.push(start..start + count);
        ranges.extend(self.frame_shape.iter().map(|&n| 0..n));
        self.array.retrieve_array_subset::<Vec<T>>(&ArraySubset::new_with_ranges(&ranges)).map_err(|e| StoreError::Zarr {
            path: self.dir.clone(),
            array: self.name.clone(),
            source: e.into(),
        })
    }

    /// All frames of video `video` (its position in the group's `ids`).
    pub fn read_video(&self, lead: &[u64], video: usize) -> Result<Vec<T>, StoreError> {
        let (Some(&o), Some(&c)) = (self.offsets.get(video), self.counts.get(video)) else {
            return Err(self.invalid(format!("video {video} does not exist (the store has {})", self.offsets.len())));
        };
        self.read_range(lead, o, c)
    }

    /// Frames `frames` (indices within the video, any order) of video `video`, concatenated in
    /// that order.
    pub fn read_in_video(&self, lead: &[u64], video: usize, frames: &[u64]) -> Result<Vec<T>, StoreError> {
        let (Some(&o), Some(&c)) = (self.offsets.get(video), self.counts.get(video)) else {
            return Err(self.invalid(format!("video {video} does not exist (the store has {})", self.offsets.len())));
        };
        if let Some(f) = frames.iter().find(|&&f| f >= c) {
            return Err(self.invalid(format!("frame {f} of video {video} is out of range (it has {c})")));
        }
        self.read_frames(lead, &frames.iter().map(|f| o + f).collect::<Vec<u64>>())
    }

    /// Frames at global indices `indices` (any order, repeats allowed), concatenated in that
    /// order. Runs of consecutive indices are read with one request.
    pub fn read_frames(&self, lead: &[u64], indices: &[u64]) -> Result<Vec<T>, StoreError> {
        let fl = self.frame_len();
        let mut out = Vec::with_capacity(indices.len() * fl);
        let mut i = 0;
        while i < indices.len() {
            let mut j = i + 1;
            while j < indices.len() && indices[j] == indices[j - 1] + 1 {
                j += 1;
            }
            out.extend(self.read_range(lead, indices[i], (j - i) as u64)?);
            i = j;
        }
        Ok(out)
    }
}
