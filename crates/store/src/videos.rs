//! A ragged store of RGB videos (uint8 frames `[H, W, 3]`): generated samples or real frames,
//! as the metrics read them.

use std::path::{Path, PathBuf};

use crate::{RaggedArray, RaggedMeta, RaggedReader, StoreError};

/// The RGB frames array of a ragged store, opened with its group's metadata.
pub struct RgbVideos {
    dir: PathBuf,
    meta: RaggedMeta,
    frames: RaggedArray<u8>,
    height: usize,
    width: usize,
}

impl RgbVideos {
    /// Opens the first array of `preferred` that the store has, or its only array: stores of
    /// different stages name their frames differently (`samples`, `frames`).
    pub fn open(dir: &Path, preferred: &[&str]) -> Result<Self, StoreError> {
        let store = RaggedReader::open(dir).map_err(|e| e.context(|| format!("opening {}", dir.display())))?;
        let names = store.array_names();
        let name = preferred
            .iter()
            .find(|p| names.iter().any(|n| n == *p))
            .map(|s| s.to_string())
            .or_else(|| (names.len() == 1).then(|| names[0].clone()))
            .ok_or_else(|| StoreError::Invalid {
                path: dir.to_owned(),
                message: format!("no uint8 frames array (looked for {preferred:?}, found {names:?})"),
            })?;
        let frames = store.array::<u8>(&name).map_err(|e| e.context(|| format!("reading array `{name}` of {}", dir.display())))?;
        let &[h, w, 3] = frames.frame_shape() else {
            let message = format!("array `{name}` has frame shape {:?}; expected [H, W, 3] RGB", frames.frame_shape());
            return Err(StoreError::Invalid { path: dir.to_owned(), message });
        };
        Ok(RgbVideos { dir: dir.to_owned(), meta: store.meta().clone(), frames, height: h as usize, width: w as usize })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn meta(&self) -> &RaggedMeta {
        &self.meta
    }

    /// `(height, width)` of every frame.
    pub fn frame_size(&self) -> (usize, usize) {
        (self.height, self.width)
    }

    /// Frames `frames` (indices within the video) of video `video`, `[len, H, W, 3]`.
    pub fn read(&self, video: usize, frames: &[u64]) -> Result<Vec<u8>, StoreError> {
        self.frames.read_in_video(&[], video, frames)
    }

    /// Frames at store-wide indices `frames` (in the order given), `[len, H, W, 3]`.
    pub fn read_frames(&self, frames: &[u64]) -> Result<Vec<u8>, StoreError> {
        self.frames.read_frames(&[], frames)
    }

    /// `len` consecutive frames from store-wide index `start`, `[len, H, W, 3]`.
    pub fn read_range(&self, start: u64, len: u64) -> Result<Vec<u8>, StoreError> {
        self.frames.read_range(&[], start, len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ArraySpec, GroupInfo, RaggedWriter, WindowRule};

    fn store(path: &Path, arrays: &[(&str, [u64; 3])]) {
        let mut w = RaggedWriter::create(path).unwrap();
        for (name, shape) in arrays {
            w.add_array::<u8>(&ArraySpec::new(name, &[], shape)).unwrap();
        }
        for (v, n) in [3usize, 2].into_iter().enumerate() {
            for (name, shape) in arrays {
                let len = n * shape.iter().product::<u64>() as usize;
                w.append(name, &(0..len).map(|i| (i + 100 * v) as u8).collect::<Vec<u8>>()).unwrap();
            }
            w.end_video(&format!("v{v}"), None).unwrap();
        }
        w.finish(GroupInfo { dataset: "t".into(), num_classes: None, window: WindowRule::Stride, flip: false, extra: Default::default() })
            .unwrap();
    }

    #[test]
    fn the_preferred_or_only_rgb_array_is_read_by_video() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("samples.zarr");
        store(&path, &[("samples", [2, 4, 3])]);
        let videos = RgbVideos::open(&path, &["frames"]).unwrap();
        assert_eq!(videos.frame_size(), (2, 4));
        assert_eq!(videos.meta().counts, [3, 2]);
        let frame = 2 * 4 * 3;
        let second: Vec<u8> = (0..2 * frame).map(|i| (i + 100) as u8).collect();
        assert_eq!(videos.read(1, &[1, 0]).unwrap(), [&second[frame..], &second[..frame]].concat());
        assert!(videos.read(1, &[2]).is_err(), "video 1 has 2 frames");
        // Store-wide indices: frame 4 is video 1's second, frame 0 video 0's first.
        let first: Vec<u8> = (0..frame).map(|i| i as u8).collect();
        assert_eq!(videos.read_frames(&[4, 0]).unwrap(), [&second[frame..], &first[..]].concat());
        assert_eq!(videos.read_range(3, 2).unwrap(), second);
    }

    #[test]
    fn stores_without_one_rgb_array_are_refused_naming_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let two = dir.path().join("two.zarr");
        store(&two, &[("a", [2, 2, 3]), ("b", [2, 2, 3])]);
        let e = RgbVideos::open(&two, &["frames"]).err().unwrap().to_string();
        assert_eq!(e, format!("{}: no uint8 frames array (looked for [\"frames\"], found [\"a\", \"b\"])", two.display()));
        let grey = dir.path().join("grey.zarr");
        store(&grey, &[("frames", [2, 2, 1])]);
        let e = RgbVideos::open(&grey, &["frames"]).err().unwrap().to_string();
        assert_eq!(e, format!("{}: array `frames` has frame shape [2, 2, 1]; expected [H, W, 3] RGB", grey.display()));
    }
}
