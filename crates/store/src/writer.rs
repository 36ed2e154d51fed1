use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use zarrs::array::codec::{ShardingCodecOptions, SubchunkWriteOrder, ZstdCodec};
use zarrs::array::{Array, ArrayBuilder, ArrayBytes, ArrayMetadataOptions, CodecSpecificOptions};
use zarrs::filesystem::FilesystemStore;
use zarrs::group::GroupBuilder;

use crate::element::{Dtype, FrameElement};
use crate::error::StoreError;
use crate::meta::{GroupInfo, RaggedMeta};

/// Default target size of one shard (frames of one lead slot) in bytes.
const SHARD_BYTES: u64 = 8 << 20;

/// One array of a ragged store.
#[derive(Clone, Debug)]
pub struct ArraySpec {
    pub name: String,
    /// Leading axes before the frames axis (`[]`, or `[2]` for original/flipped).
    pub lead: Vec<u64>,
    /// Shape of one frame (`[S, S, 3]`, `[4, h, w]`).
    pub frame_shape: Vec<u64>,
    /// Frames per shard; `None` picks about 8 MiB per shard.
    pub frames_per_shard: Option<u64>,
    /// zstd level for each frame; `None` stores raw bytes.
    pub zstd_level: Option<i32>,
}

impl ArraySpec {
    pub fn new(name: &str, lead: &[u64], frame_shape: &[u64]) -> Self {
        Self { name: name.to_owned(), lead: lead.to_vec(), frame_shape: frame_shape.to_vec(), frames_per_shard: None, zstd_level: Some(1) }
    }
}

struct ArrayState {
    array: Array<FilesystemStore>,
    dtype: Dtype,
    elem_size: usize,
    lead: Vec<u64>,
    frame_shape: Vec<u64>,
    frame_elems: usize,
    frames_per_shard: u64,
    /// One byte buffer per lead slot (row-major over `lead`), holding the frames not yet written.
    buffers: Vec<Vec<u8>>,
    /// Frames already flushed to shards (equal for every lead slot).
    flushed: u64,
    /// Frames appended for the video in progress.
    pending: u64,
}

impl ArrayState {
    fn lead_slots(&self) -> usize {
        self.lead.iter().product::<u64>() as usize
    }

    fn buffered_frames(&self) -> u64 {
        (self.buffers[0].len() / (self.frame_elems * self.elem_size)) as u64
    }

    /// Chunk grid indices of shard `shard` of lead slot `slot`.
    fn shard_indices(&self, slot: usize, shard: u64) -> Vec<u64> {
        let mut idx = Vec::with_capacity(self.lead.len() + 1 + self.frame_shape.len());
        let mut rem = slot as u64;
        let mut lead_idx = vec![0; self.lead.len()];
        for (d, &n) in self.lead.iter().enumerate().rev() {
            lead_idx[d] = rem % n;
            rem /= n;
        }
        idx.extend(lead_idx);
        idx.push(shard);
        idx.extend(std::iter::repeat_n(0, self.frame_shape.len()));
        idx
    }

    fn set_frames_len(&mut self, frames: u64) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let mut shape = self.lead.clone();
        shape.push(frames);
        shape.extend(&self.frame_shape);
        self.array.set_shape(shape)?;
        Ok(())
    }

    /// Writes every complete shard in the buffers; with `all`, pads and writes the last partial one.
    fn flush(&mut self, all: bool) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let shard_bytes = self.frames_per_shard as usize * self.frame_elems * self.elem_size;
        while self.buffered_frames() >= self.frames_per_shard || (all && self.buffered_frames() > 0) {
            let shard = self.flushed / self.frames_per_shard;
            let n = self.buffered_frames().min(self.frames_per_shard);
            self.set_frames_len((shard + 1) * self.frames_per_shard)?;
            for slot in 0..self.lead_slots() {
                let take = (n as usize * self.frame_elems * self.elem_size).min(self.buffers[slot].len());
                let mut bytes: Vec<u8> = self.buffers[slot].drain(..take).collect();
                if bytes.len() < shard_bytes {
                    let fill = fill_bytes(self.dtype);
                    while bytes.len() < shard_bytes {
                        bytes.extend_from_slice(&fill);
                    }
                }
                let indices = self.shard_indices(slot, shard);
                self.array.store_chunk(&indices, ArrayBytes::new_flen(bytes))?;
            }
            self.flushed += n;
        }
        Ok(())
    }
}

fn fill_bytes(dtype: Dtype) -> Vec<u8> {
    match dtype {
        Dtype::U8 => bytemuck::bytes_of(&<u8 as FrameElement>::fill()).to_vec(),
        Dtype::F16 => bytemuck::bytes_of(&<half::f16 as FrameElement>::fill()).to_vec(),
        Dtype::F32 => bytemuck::bytes_of(&<f32 as FrameElement>::fill()).to_vec(),
    }
}

/// Writes a ragged store video by video. Append every array's frames of one video, then call
/// [`RaggedWriter::end_video`]; [`RaggedWriter::finish`] writes the metadata. The directory
/// should be a temporary one that the caller renames when `finish` returns.
pub struct RaggedWriter {
    dir: PathBuf,
    store: Arc<FilesystemStore>,
    arrays: BTreeMap<String, ArrayState>,
    offsets: Vec<u64>,
    counts: Vec<u64>,
    ids: Vec<String>,
    labels: Vec<Option<u32>>,
    total: u64,
}

impl RaggedWriter {
    /// Creates the store directory (which must not exist or be empty).
    pub fn create(dir: &Path) -> Result<Self, StoreError> {
        let open_err = |e: Box<dyn std::error::Error + Send + Sync>| StoreError::Open { path: dir.to_owned(), source: e };
        if dir.exists() && std::fs::read_dir(dir).map_err(|e| open_err(e.into()))?.next().is_some() {
            return Err(StoreError::Invalid {
                path: dir.to_owned(),
                message: "the directory for a new store is not empty; give an empty or new path".into(),
            });
        }
        std::fs::create_dir_all(dir).map_err(|e| open_err(e.into()))?;
        let store = Arc::new(FilesystemStore::new(dir).map_err(|e| open_err(e.into()))?);
        Ok(Self {
            dir: dir.to_owned(),
            store,
            arrays: BTreeMap::new(),
            offsets: Vec::new(),
            counts: Vec::new(),
            ids: Vec::new(),
            labels: Vec::new(),
            total: 0,
        })
    }

    fn zarr_err(&self, array: &str) -> impl Fn(Box<dyn std::error::Error + Send + Sync>) -> StoreError + '_ {
        let array = array.to_owned();
        move |e| StoreError::Zarr { path: self.dir.clone(), array: array.clone(), source: e }
    }

    fn invalid(&self, message: String) -> StoreError {
        StoreError::Invalid { path: self.dir.clone(), message }
    }

    /// Declares an array; all arrays must be declared before the first video.
    pub fn add_array<T: FrameElement>(&mut self, spec: &ArraySpec) -> Result<(), StoreError> {
        if !self.ids.is_empty() {
            return Err(self.invalid(format!("array `{}` declared after the first video", spec.name)));
        }
        if self.arrays.contains_key(&spec.name) || spec.name.is_empty() || spec.name.contains('/') {
            return Err(self.invalid(format!("array name `{}` is empty, nested or already used", spec.name)));
        }
        if spec.lead.contains(&0) || spec.frame_shape.contains(&0) {
            return Err(self.invalid(format!("array `{}` has a zero-sized axis", spec.name)));
        }
        let frame_elems = spec.frame_shape.iter().product::<u64>() as usize;
        let elem_size = std::mem::size_of::<T>();
        let frames_per_shard =
            spec.frames_per_shard.unwrap_or_else(|| (SHARD_BYTES / (frame_elems * elem_size) as u64).clamp(1, 1024)).max(1);
        let mut shard = vec![1; spec.lead.len()];
        shard.push(frames_per_shard);
        shard.extend(&spec.frame_shape);
        let mut inner = vec![1; spec.lead.len() + 1];
        inner.extend(&spec.frame_shape);
        let mut shape = spec.lead.clone();
        shape.push(frames_per_shard);
        shape.extend(&spec.frame_shape);
        let mut names: Vec<String> = (0..spec.lead.len()).map(|i| format!("lead{i}")).collect();
        names.push("frame".into());
        names.extend((0..spec.frame_shape.len()).map(|i| format!("d{i}")));

        let mut builder = ArrayBuilder::new(shape, shard, T::zarr_data_type(), T::zarr_fill());
        builder.subchunk_shape(inner).dimension_names(Some(names));
        // zarrs places a shard's encoded frames in the order its threads finish them unless
        // told otherwise, so the same values would give other bytes from run to run.
        builder.codec_specific_options(
            CodecSpecificOptions::default().with_option(ShardingCodecOptions::default().with_subchunk_write_order(SubchunkWriteOrder::C)),
        );
        if let Some(level) = spec.zstd_level {
            builder.bytes_to_bytes_codecs(vec![Arc::new(ZstdCodec::new(level, false))]);
        }
        let mut array = builder.build(self.store.clone(), &format!("/{}", spec.name)).map_err(|e| self.zarr_err(&spec.name)(e.into()))?;
        array.set_metadata_options(ArrayMetadataOptions::default().with_include_zarrs_metadata(false));
        self.arrays.insert(
            spec.name.clone(),
            ArrayState {
                array,
                dtype: T::DTYPE,
                elem_size,
                lead: spec.lead.clone(),
                frame_shape: spec.frame_shape.clone(),
                frame_elems,
                frames_per_shard,
                buffers: vec![Vec::new(); spec.lead.iter().product::<u64>() as usize],
                flushed: 0,
                pending: 0,
            },
        );
        Ok(())
    }

    /// Appends frames of the current video to array `name`. `data` is laid out as
    /// `lead ++ [n] ++ frame_shape` (row-major); `n` follows from its length.
    pub fn append<T: FrameElement>(&mut self, name: &str, data: &[T]) -> Result<(), StoreError> {
        let dir = self.dir.clone();
        let state = self.arrays.get_mut(name).ok_or_else(|| StoreError::NoSuchArray {
            path: dir.clone(),
            array: name.to_owned(),
            available: String::new(),
        })?;
        if state.dtype != T::DTYPE {
            return Err(StoreError::WrongDtype {
                path: dir,
                array: name.to_owned(),
                actual: state.dtype.name().into(),
                requested: T::DTYPE.name(),
            });
        }
        let slots = state.lead_slots();
        let per_frame = state.frame_elems * slots;
        if !data.len().is_multiple_of(per_frame) {
            return Err(StoreError::Invalid {
                path: dir,
                message: format!(
                    "array `{name}`: {} elements is not a whole number of frames of {per_frame} elements (lead {:?}, frame {:?})",
                    data.len(),
                    state.lead,
                    state.frame_shape
                ),
            });
        }
        let n = data.len() / per_frame;
        let bytes: &[u8] = bytemuck::cast_slice(data);
        let slot_bytes = n * state.frame_elems * state.elem_size;
        for slot in 0..slots {
            state.buffers[slot].extend_from_slice(&bytes[slot * slot_bytes..(slot + 1) * slot_bytes]);
        }
        state.pending += n as u64;
        state.flush(false).map_err(|e| StoreError::Zarr { path: dir, array: name.to_owned(), source: e })
    }

    /// Closes the current video: every array must have received the same number of frames.
    /// Returns that number.
    pub fn end_video(&mut self, id: &str, label: Option<u32>) -> Result<u64, StoreError> {
        let counts: Vec<(String, u64)> = self.arrays.iter().map(|(k, s)| (k.clone(), s.pending)).collect();
        let Some(&(_, n)) = counts.first() else {
            return Err(self.invalid("no arrays declared before the first video".into()));
        };
        if counts.iter().any(|(_, c)| *c != n) {
            return Err(self.invalid(format!("video `{id}`: arrays received different frame counts: {counts:?}")));
        }
        if n == 0 {
            return Err(self.invalid(format!("video `{id}` has no frames")));
        }
        for s in self.arrays.values_mut() {
            s.pending = 0;
        }
        self.offsets.push(self.total);
        self.counts.push(n);
        self.ids.push(id.to_owned());
        self.labels.push(label);
        self.total += n;
        Ok(n)
    }

    pub fn num_videos(&self) -> usize {
        self.ids.len()
    }

    /// Writes the remaining frames, the arrays' metadata and the group attributes.
    pub fn finish(mut self, info: GroupInfo) -> Result<RaggedMeta, StoreError> {
        if let Some((name, _)) = self.arrays.iter().find(|(_, s)| s.pending != 0) {
            return Err(self.invalid(format!("array `{name}` holds frames of a video that was never ended")));
        }
        if self.ids.is_empty() {
            return Err(self.invalid("a store needs at least one video".into()));
        }
        let meta = RaggedMeta {
            offsets: std::mem::take(&mut self.offsets),
            counts: std::mem::take(&mut self.counts),
            ids: std::mem::take(&mut self.ids),
            labels: std::mem::take(&mut self.labels),
            num_classes: info.num_classes,
            dataset: info.dataset,
            window: info.window,
            flip: info.flip,
            extra: info.extra,
        };
        meta.check().map_err(|m| self.invalid(m))?;
        let dir = self.dir.clone();
        let total = self.total;
        for (name, state) in &mut self.arrays {
            let err = |e: Box<dyn std::error::Error + Send + Sync>| StoreError::Zarr { path: dir.clone(), array: name.clone(), source: e };
            state.flush(true).map_err(err)?;
            state.set_frames_len(total).map_err(err)?;
            state.array.store_metadata().map_err(|e| err(e.into()))?;
        }
        let attrs = match serde_json::to_value(&meta) {
            Ok(serde_json::Value::Object(m)) => m,
            _ => return Err(self.invalid("group attributes did not serialise to a JSON object".into())),
        };
        GroupBuilder::new()
            .attributes(attrs)
            .build(self.store.clone(), "/")
            .map_err(|e| self.zarr_err("/")(e.into()))?
            .store_metadata()
            .map_err(|e| self.zarr_err("/")(e.into()))?;
        Ok(meta)
    }
}
