use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use zarrs::array::{Array, ArraySubset};
use zarrs::filesystem::FilesystemStore;
use zarrs::group::Group;

use crate::element::FrameElement;
use crate::error::StoreError;
use crate::meta::RaggedMeta;

/// An open ragged store.
pub struct RaggedReader {
    dir: PathBuf,
    store: Arc<FilesystemStore>,
    meta: RaggedMeta,
}

impl RaggedReader {
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let open_err = |e: Box<dyn std::error::Error + Send + Sync>| StoreError::Open { path: dir.to_owned(), source: e };
        if !dir.join("zarr.json").is_file() {
            return Err(open_err(format!("{} has no zarr.json (not a Zarr v3 group)", dir.display()).into()));
        }
        let store = Arc::new(FilesystemStore::new(dir).map_err(|e| open_err(e.into()))?);
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
        if shape[axis] != self.meta.total_frames() {
            return Err(StoreError::Invalid {
                path: self.dir.clone(),
                message: format!(
                    "array `{name}` has {} frames but the group attributes count {}",
                    shape[axis],
                    self.meta.total_frames()
                ),
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
    array: Array<FilesystemStore>,
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
        if start + count > self.total_frames() {
            return Err(self.invalid(format!(
                "frames {start}..{} are out of range (the store has {})",
                start + count,
                self.total_frames()
            )));
        }
        let mut ranges: Vec<std::ops::Range<u64>> = lead.iter().map(|&i| i..i + 1).collect();
        ranges.push(start..start + count);
        ranges.extend(self.frame_shape.iter().map(|&n| 0..n));
        self.array
            .retrieve_array_subset::<Vec<T>>(&ArraySubset::new_with_ranges(&ranges))
            .map_err(|e| StoreError::Zarr { path: self.dir.clone(), array: self.name.clone(), source: e.into() })
    }

    /// All frames of video `video` (its position in the group's `ids`).
    pub fn read_video(&self, lead: &[u64], video: usize) -> Result<Vec<T>, StoreError> {
        let (Some(&o), Some(&c)) = (self.offsets.get(video), self.counts.get(video)) else {
            return Err(self.invalid(format!("video {video} does not exist (the store has {})", self.offsets.len())));
        };
        self.read_range(lead, o, c)
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
