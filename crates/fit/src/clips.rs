//! A latents store's videos as the training loop's clips.

use std::path::Path;
use std::sync::Arc;

use latte_store::{LatentsAttrs, LatentsStore, Posterior, WindowRule};
use latte_train::{LatentClips, LatentsInfo};
use latte_video::WindowSpec;

use crate::FitError;

/// The videos of a latents store that the clip window can serve in full (the reference asserts
/// on shorter ones), with their labels when the run is class-conditional. One store serves
/// every data-parallel rank: each rank's loader gets its own [`LatentClips`] over it.
pub struct StoreClips {
    posterior: Arc<Posterior>,
    /// Store index of each kept video, in store order.
    kept: Arc<Vec<usize>>,
    counts: Vec<usize>,
    labels: Option<Vec<usize>>,
    num_classes: Option<usize>,
    frame_shape: [usize; 3],
    flip: bool,
    window: WindowSpec,
    rule: WindowRule,
    /// What the train output records of the latents.
    pub info: LatentsInfo,
    /// Videos left out as too short for the window.
    pub skipped: usize,
}

impl StoreClips {
    /// Opens the store `dir` (`latents.zarr` of a `latents` stage) for clips of `window`;
    /// `conditional` asks for class labels, which are used when the store has classes.
    pub fn open(dir: &Path, window: WindowSpec, conditional: bool) -> Result<Self, FitError> {
        let LatentsStore { meta, posterior, frame_shape: [c, h, w] } = LatentsStore::open(dir)?;
        if h != w {
            return Err(FitError::Data(format!("{}: latents are {h}×{w}; the model needs square latents", dir.display())));
        }
        let attrs = LatentsAttrs::from_meta(&meta).map_err(|e| {
            FitError::Data(format!(
                "{}: not a latents store's attributes ({e}); give `train` the output of a `latents` stage",
                dir.display()
            ))
        })?;
        let rule = meta.window;
        let kept: Vec<usize> = (0..meta.num_videos()).filter(|&i| window.long_enough(meta.counts[i] as usize, rule)).collect();
        if kept.is_empty() {
            return Err(FitError::Data(format!(
                "{}: no video has enough frames for a {}-frame clip at interval {}; lower `num_frames` or `frame_interval`",
                dir.display(),
                window.num_frames,
                window.interval
            )));
        }
        let num_classes = meta.num_classes.filter(|_| conditional).map(|n| n as usize);
        let labels =
            match num_classes {
                Some(_) => {
                    let labels: Option<Vec<usize>> = kept.iter().map(|&i| meta.labels[i].map(|l| l as usize)).collect();
                    Some(labels.ok_or_else(|| {
                        FitError::Data(format!("{}: some videos have no label but the data set has classes", dir.display()))
                    })?)
                }
                None => None,
            };
        Ok(StoreClips {
            posterior: Arc::new(posterior),
            counts: kept.iter().map(|&i| meta.counts[i] as usize).collect(),
            skipped: meta.num_videos() - kept.len(),
            kept: Arc::new(kept),
            labels,
            num_classes,
            frame_shape: [c as usize, h as usize, w as usize],
            flip: meta.flip,
            window,
            rule,
            info: LatentsInfo {
                dataset: meta.dataset,
                latent_shape: [c, h, w],
                num_classes: meta.num_classes,
                scale_factor: attrs.scale_factor,
            },
        })
    }

    /// Videos kept.
    pub fn len(&self) -> usize {
        self.kept.len()
    }

    pub fn is_empty(&self) -> bool {
        self.kept.is_empty()
    }

    /// Classes of the run: the store's when conditional, else none.
    pub fn num_classes(&self) -> Option<usize> {
        self.num_classes
    }

    /// `[C, h, w]` of one latent frame.
    pub fn frame_shape(&self) -> [usize; 3] {
        self.frame_shape
    }

    /// One loader's view of the clips: reads go to the shared store.
    pub fn clips(&self) -> LatentClips {
        let (posterior, kept) = (self.posterior.clone(), self.kept.clone());
        let read = Box::new(move |clip: usize, orient: usize, idx: &[usize]| {
            let frames: Vec<u64> = idx.iter().map(|&i| i as u64).collect();
            posterior.read_in_video(orient as u64, kept[clip], &frames).map_err(Into::into)
        });
        let (window, rule) = (self.window, self.rule);
        let draw = Box::new(move |total: usize, rng: &mut latte_train::ChaCha8Rng| window.sample(total, rule, rng).map_err(Into::into));
        LatentClips {
            counts: self.counts.clone(),
            labels: self.labels.clone(),
            num_classes: self.num_classes,
            frame_shape: self.frame_shape,
            flip: self.flip,
            read,
            window: draw,
        }
    }
}

#[cfg(test)]
mod tests {
    use latte_store::{ArraySpec, GroupInfo, RaggedWriter};

    use super::*;

    /// Three labelled videos of 8, 3 and 6 frames of 2×2×2 latents; frame `f` of video `v` in
    /// orientation `o` holds `100 v + 10 f + o` (mean) and `-(that)` (logvar). `attrs` false
    /// leaves out the latents attributes.
    fn store(dir: &Path, attrs: bool) -> std::path::PathBuf {
        let path = dir.join("latents.zarr");
        let mut w = RaggedWriter::create(&path).unwrap();
        for name in ["mean", "logvar"] {
            w.add_array::<f32>(&ArraySpec::new(name, &[2], &[2, 2, 2])).unwrap();
        }
        for (v, n) in [8usize, 3, 6].into_iter().enumerate() {
            let mean: Vec<f32> = (0..2 * n * 8).map(|i| (100 * v + 10 * ((i / 8) % n) + i / (8 * n)) as f32).collect();
            let logvar: Vec<f32> = mean.iter().map(|m| -m).collect();
            w.append("mean", &mean).unwrap();
            w.append("logvar", &logvar).unwrap();
            w.end_video(&format!("v{v}"), Some(v as u32 % 2)).unwrap();
        }
        let mut extra = serde_json::Map::new();
        if attrs {
            let a = LatentsAttrs {
                scale_factor: 0.5,
                vae_digest: "test".into(),
                dtype: "float32".into(),
                latent_shape: [2, 2, 2],
                downsample_factor: 8,
            };
            a.insert_into(&mut extra);
        }
        w.finish(GroupInfo { dataset: "test".into(), num_classes: Some(2), window: WindowRule::Stride, flip: true, extra }).unwrap();
        path
    }

    #[test]
    fn keeps_the_videos_the_window_serves_and_reads_them_by_clip() {
        let dir = tempfile::tempdir().unwrap();
        let path = store(dir.path(), true);
        // 3 frames at interval 2 need 5 frames: video 1 (3 frames) is left out.
        let data = StoreClips::open(&path, WindowSpec { num_frames: 3, interval: 2 }, true).unwrap();
        assert_eq!((data.len(), data.skipped, data.num_classes(), data.frame_shape()), (2, 1, Some(2), [2, 2, 2]));
        assert_eq!(data.info, LatentsInfo { scale_factor: 0.5, latent_shape: [2, 2, 2], num_classes: Some(2), dataset: "test".into() });
        let clips = data.clips();
        assert_eq!((clips.counts.clone(), clips.labels.clone(), clips.flip), (vec![8, 6], Some(vec![0, 0]), true));
        // Clip 1 is store video 2; orientation 1, frames 4 and 1, frame-major.
        let (mean, logvar) = (clips.read)(1, 1, &[4, 1]).unwrap();
        assert_eq!(mean, [[241.0f32; 8], [211.0; 8]].concat());
        assert_eq!(logvar, mean.iter().map(|m| -m).collect::<Vec<_>>());
        let mut rng = <latte_train::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(0);
        let idx = (clips.window)(6, &mut rng).unwrap();
        assert_eq!(idx.len(), 3);
        assert!(idx.windows(2).all(|w| w[1] == w[0] + 2) && idx[2] < 6, "{idx:?}");

        let unconditional = StoreClips::open(&path, WindowSpec { num_frames: 3, interval: 2 }, false).unwrap();
        assert_eq!((unconditional.num_classes(), unconditional.clips().labels), (None, None));
        // The output still records the store's classes.
        assert_eq!(unconditional.info.num_classes, Some(2));
    }

    #[test]
    fn a_store_that_cannot_serve_says_which_and_why() {
        let dir = tempfile::tempdir().unwrap();
        let path = store(dir.path(), true);
        let msg = StoreClips::open(&path, WindowSpec { num_frames: 8, interval: 2 }, true).err().unwrap().to_string();
        assert!(msg.contains("latents.zarr") && msg.contains("no video has enough frames") && msg.contains("lower `num_frames`"), "{msg}");
        let bare = tempfile::tempdir().unwrap();
        let path = store(bare.path(), false);
        let msg = StoreClips::open(&path, WindowSpec { num_frames: 3, interval: 1 }, true).err().unwrap().to_string();
        assert!(msg.contains("latents.zarr") && msg.contains("give `train` the output of a `latents` stage"), "{msg}");
    }
}
