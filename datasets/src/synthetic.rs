use std::path::{Path, PathBuf};

use latte_video::synthetic::{render, SyntheticConfig, MOTION_CLASSES};
use latte_video::{write_video, EncodeOptions, VideoError};
use rayon::prelude::*;

use crate::manifest::{Clip, ClipKind, Manifest};

/// Generates the synthetic dataset as H.264 mp4 files under `out_dir/videos/` (`threads`
/// videos at a time) and returns its manifest with paths relative to `out_dir`.
pub fn write_synthetic(cfg: &SyntheticConfig, out_dir: &Path, threads: usize) -> Result<Manifest, VideoError> {
    cfg.validate().map_err(|e| VideoError::Invalid { path: out_dir.to_owned(), reason: e.to_string() })?;
    let videos = out_dir.join("videos");
    std::fs::create_dir_all(&videos).map_err(|e| VideoError::Io { path: videos.clone(), source: e })?;
    let clips: Vec<Clip> = crate::pool(threads).install(|| {
        (0..cfg.num_videos)
            .into_par_iter()
            .map(|i| {
                let v = render(cfg, i);
                let id = format!("synthetic_{i:05}");
                let rel = PathBuf::from("videos").join(format!("{id}.mp4"));
                write_video(&out_dir.join(&rel), &v.frames, EncodeOptions::h264(cfg.fps))?;
                Ok(Clip {
                    id,
                    path: rel,
                    kind: ClipKind::Video,
                    frame_count: v.frames.len() as u64,
                    fps: Some(cfg.fps as f64),
                    width: cfg.width,
                    height: cfg.height,
                    label: Some(v.label),
                })
            })
            .collect::<Result<_, VideoError>>()
    })?;
    Ok(Manifest {
        dataset: "synthetic".into(),
        num_classes: Some(cfg.num_classes as u32),
        class_names: MOTION_CLASSES[..cfg.num_classes].iter().map(|s| s.to_string()).collect(),
        clips,
    })
}
