//! The latents store's VAE posteriors: arrays `mean` and `logvar` of shape `[2, frames, C, h,
//! w]` (orientation first: original, horizontally flipped), stored as f32 or f16.

use std::path::Path;

use half::f16;

use crate::{RaggedArray, RaggedMeta, RaggedReader, StoreError};

/// A latents store opened for training: the group's metadata and the posterior arrays, whose
/// frames are checked to be `[C, h, w]`. (Its `LatentsAttrs` are the reader's to check: what
/// to say about a store without them depends on who asked.)
pub struct LatentsStore {
    pub meta: RaggedMeta,
    pub posterior: Posterior,
    /// `[C, h, w]` of one latent frame.
    pub frame_shape: [u64; 3],
}

impl LatentsStore {
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let store = RaggedReader::open(dir).map_err(|e| e.context(|| format!("opening the latents store {}", dir.display())))?;
        let posterior =
            Posterior::open(&store).map_err(|e| e.context(|| format!("{}: arrays `mean` and `logvar` (f32 or f16)", dir.display())))?;
        let &[c, h, w] = posterior.frame_shape() else {
            let message = format!("latent frames have shape {:?}; expected [C, h, w]", posterior.frame_shape());
            return Err(StoreError::Invalid { path: dir.to_owned(), message });
        };
        Ok(LatentsStore { meta: store.meta().clone(), posterior, frame_shape: [c, h, w] })
    }
}

/// A latents store's `mean`/`logvar` pair, read as f32 whatever the stored dtype.
pub enum Posterior {
    F32(RaggedArray<f32>, RaggedArray<f32>),
    F16(RaggedArray<f16>, RaggedArray<f16>),
}

impl Posterior {
    /// Opens `mean` and `logvar` of `store`: f32 when both are f32, else both as f16 (the
    /// error names the store, the array and its dtype).
    pub fn open(store: &RaggedReader) -> Result<Self, StoreError> {
        if let (Ok(m), Ok(l)) = (store.array::<f32>("mean"), store.array::<f32>("logvar")) {
            return Ok(Self::F32(m, l));
        }
        Ok(Self::F16(store.array::<f16>("mean")?, store.array::<f16>("logvar")?))
    }

    /// `[C, h, w]` of one latent frame, as stored.
    pub fn frame_shape(&self) -> &[u64] {
        match self {
            Self::F32(m, _) => m.frame_shape(),
            Self::F16(m, _) => m.frame_shape(),
        }
    }

    /// `(mean, logvar)` of frames `frames` (indices within the video) of video `video` in
    /// orientation `orient`, frame-major.
    pub fn read_in_video(&self, orient: u64, video: usize, frames: &[u64]) -> Result<(Vec<f32>, Vec<f32>), StoreError> {
        Ok(match self {
            Self::F32(m, l) => (m.read_in_video(&[orient], video, frames)?, l.read_in_video(&[orient], video, frames)?),
            Self::F16(m, l) => {
                let up = |v: Vec<f16>| v.into_iter().map(f16::to_f32).collect::<Vec<f32>>();
                (up(m.read_in_video(&[orient], video, frames)?), up(l.read_in_video(&[orient], video, frames)?))
            }
        })
    }

    /// `(mean, logvar)` of the frames at `global` indices (over all videos) in orientation
    /// `orient`, frame-major.
    pub fn read(&self, orient: u64, global: &[u64]) -> Result<(Vec<f32>, Vec<f32>), StoreError> {
        Ok(match self {
            Self::F32(m, l) => (m.read_frames(&[orient], global)?, l.read_frames(&[orient], global)?),
            Self::F16(m, l) => {
                let up = |v: Vec<f16>| v.into_iter().map(f16::to_f32).collect::<Vec<f32>>();
                (up(m.read_frames(&[orient], global)?), up(l.read_frames(&[orient], global)?))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ArraySpec, GroupInfo, RaggedWriter, WindowRule};

    /// The store's `[2, N, C, h, w]` arrays come back frame-major for the orientation asked:
    /// each frame's whole (C, h, w) block, frames in the order of the global indices.
    #[test]
    fn posterior_reads_whole_frames_of_one_orientation() {
        let dir = tempfile::tempdir().unwrap();
        let code = |o: usize, g: usize, k: usize| (o * 10_000 + g * 100 + k) as f32; // k: c·h·w + y·w + x
        let mut w = RaggedWriter::create(&dir.path().join("latents.zarr")).unwrap();
        for name in ["mean", "logvar"] {
            w.add_array::<f32>(&ArraySpec::new(name, &[2], &[4, 2, 3])).unwrap();
        }
        let counts = [5usize, 4];
        let mut g0 = 0;
        for (v, &n) in counts.iter().enumerate() {
            let block: Vec<f32> = (0..2).flat_map(|o| (g0..g0 + n).flat_map(move |g| (0..24).map(move |k| code(o, g, k)))).collect();
            w.append("mean", &block).unwrap();
            w.append("logvar", &block.iter().map(|x| -x).collect::<Vec<_>>()).unwrap();
            w.end_video(&format!("v{v}"), None).unwrap();
            g0 += n;
        }
        w.finish(GroupInfo {
            dataset: "test".into(),
            num_classes: None,
            window: WindowRule::Stride,
            flip: true,
            extra: Default::default(),
        })
        .unwrap();
        let store = RaggedReader::open(&dir.path().join("latents.zarr")).unwrap();
        let posterior = Posterior::open(&store).unwrap();
        assert_eq!(posterior.frame_shape(), [4, 2, 3]);
        for orient in [0usize, 1] {
            let frames = [6u64, 2, 3, 8];
            let (m, l) = posterior.read(orient as u64, &frames).unwrap();
            let want: Vec<f32> = frames.iter().flat_map(|&g| (0..24).map(move |k| code(orient, g as usize, k))).collect();
            assert_eq!(m, want, "orientation {orient}");
            assert_eq!(l, want.iter().map(|x| -x).collect::<Vec<_>>(), "orientation {orient}");
        }

        // The same frames through the latents store, by video and index within the video.
        let latents = LatentsStore::open(&dir.path().join("latents.zarr")).unwrap();
        assert_eq!(latents.frame_shape, [4, 2, 3]);
        assert_eq!(latents.meta.counts, [5, 4]);
        let in_video = latents.posterior.read_in_video(1, 1, &[1, 0, 3]).unwrap();
        assert_eq!(in_video, posterior.read(1, &[6, 5, 8]).unwrap());
        let e = latents.posterior.read_in_video(0, 1, &[4]).unwrap_err().to_string();
        assert!(e.contains("frame 4 of video 1") && e.contains("it has 4"), "{e}");
    }

    #[test]
    fn a_store_that_is_not_a_latents_store_is_named_with_what_it_lacks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("frames.zarr");
        let mut w = RaggedWriter::create(&path).unwrap();
        w.add_array::<u8>(&ArraySpec::new("frames", &[], &[2, 2, 3])).unwrap();
        w.append("frames", &[0u8; 12]).unwrap();
        w.end_video("v", None).unwrap();
        w.finish(GroupInfo { dataset: "t".into(), num_classes: None, window: WindowRule::Stride, flip: false, extra: Default::default() })
            .unwrap();
        let e = LatentsStore::open(&path).err().unwrap();
        assert_eq!(e.to_string(), format!("{}: arrays `mean` and `logvar` (f32 or f16)", path.display()));
        let cause = std::error::Error::source(&e).unwrap().to_string();
        assert!(cause.contains("array `mean` does not exist"), "{cause}");
        let missing = dir.path().join("absent.zarr");
        let e = LatentsStore::open(&missing).err().unwrap();
        assert_eq!(e.to_string(), format!("opening the latents store {}", missing.display()));
    }
}
