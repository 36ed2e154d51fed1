//! Decoding the clips of a manifest into a ragged frame store (the `frames` stage's work):
//! every frame of every clip (default) or `K` seeded windows per clip, spatially transformed
//! as the reference does, stored unflipped.

use std::path::{Path, PathBuf};

use latte_seed::ChaCha8Rng;
use latte_store::{ArraySpec, GroupInfo, RaggedMeta, RaggedWriter, StoreError};
use latte_video::image_folder::{list_frames, read_image};
use latte_video::{Frame, SpatialTransform, VideoError, VideoReader, WindowRule, WindowSpec};
use rayon::prelude::*;

use crate::kind::DatasetKind;
use crate::manifest::{reason, Clip, ClipKind, Manifest, Rejected};

#[derive(Clone, Debug)]
pub struct ExtractOptions {
    /// Output frames are `size × size`.
    pub size: usize,
    /// `None`: store every frame. `Some(k)`: store `k` seeded windows of `spec.num_frames`
    /// frames per clip (for storage-limited runs), decoding only those windows.
    pub windows_per_video: Option<usize>,
    pub spec: WindowSpec,
    pub seed: u64,
}

/// What extraction produced.
#[derive(Debug)]
pub struct ExtractReport {
    pub meta: RaggedMeta,
    pub rejected: Vec<Rejected>,
}

#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    #[error("manifest names dataset `{0}`, which this version does not know")]
    UnknownDataset(String),
    #[error("all {total} clips were rejected (first: {first}); see the rejected report")]
    AllRejected { total: usize, first: String, rejected: Vec<Rejected> },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One clip's frames after the transform, plus the source indices they came from.
struct Extracted {
    entries: Vec<(String, Vec<usize>, Vec<Frame>)>,
}

fn too_short(n: usize, rule: WindowRule, spec: &WindowSpec) -> String {
    let need = match rule {
        WindowRule::Linspace => spec.num_frames,
        WindowRule::Stride => (spec.num_frames - 1) * spec.interval + 1,
    };
    format!("too short: {n} frames; a clip of {} frames needs at least {need}", spec.num_frames)
}

fn windows(total: usize, k: usize, rule: WindowRule, spec: &WindowSpec, rng: &mut ChaCha8Rng) -> Result<Vec<Vec<usize>>, String> {
    (0..k).map(|_| spec.sample(total, rule, rng).map_err(|e| e.to_string())).collect()
}

fn load_frames_folder(dir: &Path, pick: Option<&[usize]>, t: &SpatialTransform) -> Result<(usize, Vec<Frame>), String> {
    let files = list_frames(dir).map_err(|e| reason(dir, &e))?;
    let read =
        |p: &PathBuf| read_image(p).map_err(|e| e.to_string()).and_then(|f| t.apply(&f).map_err(|e| format!("{}: {e}", p.display())));
    let frames = match pick {
        None => files.iter().map(read).collect::<Result<Vec<_>, _>>()?,
        Some(idx) => idx
            .iter()
            .map(|&i| files.get(i).ok_or_else(|| format!("frame {i} is missing")).and_then(read))
            .collect::<Result<Vec<_>, _>>()?,
    };
    Ok((files.len(), frames))
}

fn decode_all(path: &Path, t: &SpatialTransform) -> Result<Vec<Frame>, String> {
    let mut r = VideoReader::open(path).map_err(|e| reason(path, &e))?;
    let mut out = Vec::new();
    r.for_each_frame(|i, f| {
        out.push(t.apply(&f).map_err(|e| VideoError::Invalid { path: path.to_owned(), reason: format!("frame {i}: {e}") })?);
        Ok(())
    })
    .map_err(|e| reason(path, &e))?;
    Ok(out)
}

fn extract_clip(index: usize, clip: &Clip, path: &Path, kind: DatasetKind, opts: &ExtractOptions) -> Result<Extracted, String> {
    let rule = kind.window_rule();
    let t = kind.transform(opts.size);
    let mut rng = latte_seed::stream(opts.seed, index as u64);
    let check = |n: usize| if opts.spec.long_enough(n, rule) { Ok(()) } else { Err(too_short(n, rule, &opts.spec)) };
    let whole = |frames: Vec<Frame>| Extracted { entries: vec![(clip.id.clone(), (0..frames.len()).collect(), frames)] };
    match (clip.kind, opts.windows_per_video) {
        (ClipKind::Video, None) => {
            let frames = decode_all(path, &t)?;
            check(frames.len())?;
            Ok(whole(frames))
        }
        (ClipKind::Frames, None) => {
            let (_, frames) = load_frames_folder(path, None, &t)?;
            check(frames.len())?;
            Ok(whole(frames))
        }
        (ClipKind::Frames, Some(k)) => {
            let n = list_frames(path).map_err(|e| reason(path, &e))?.len();
            check(n)?;
            let mut entries = Vec::new();
            for (w, idx) in windows(n, k, rule, &opts.spec, &mut rng)?.into_iter().enumerate() {
                let (_, frames) = load_frames_folder(path, Some(&idx), &t)?;
                entries.push((format!("{}#{w}", clip.id), idx, frames));
            }
            Ok(Extracted { entries })
        }
        (ClipKind::Video, Some(k)) => {
            // The declared count decides the windows; when the container overstates it, the
            // clip is decoded once to count its frames and the windows are drawn again.
            let declared = clip.frame_count as usize;
            let mut reader = VideoReader::open(path).map_err(|e| reason(path, &e))?;
            let mut entries = Vec::new();
            let first_try = if opts.spec.long_enough(declared, rule) {
                let ws = windows(declared, k, rule, &opts.spec, &mut rng.clone())?;
                let mut ok = true;
                for (w, idx) in ws.into_iter().enumerate() {
                    match reader.read_indices(&idx) {
                        Ok(frames) => {
                            let frames = frames.iter().map(|f| t.apply(f).map_err(|e| e.to_string())).collect::<Result<Vec<_>, _>>()?;
                            entries.push((format!("{}#{w}", clip.id), idx, frames));
                        }
                        Err(VideoError::TooFewFrames { .. }) => {
                            ok = false;
                            break;
                        }
                        Err(e) => return Err(reason(path, &e)),
                    }
                }
                ok
            } else {
                false
            };
            if first_try {
                return Ok(Extracted { entries });
            }
            let all = decode_all(path, &SpatialTransform::Identity)?;
            check(all.len())?;
            let mut entries = Vec::new();
            for (w, idx) in windows(all.len(), k, rule, &opts.spec, &mut rng)?.into_iter().enumerate() {
                let frames = idx.iter().map(|&i| t.apply(&all[i]).map_err(|e| e.to_string())).collect::<Result<Vec<_>, _>>()?;
                entries.push((format!("{}#{w}", clip.id), idx, frames));
            }
            Ok(Extracted { entries })
        }
    }
}

/// Decodes every clip of `manifest` (whose folder is `manifest_dir`) into a new ragged store at
/// `store_dir`, in manifest order, decoding `threads` clips at a time. Clips that fail are
/// reported in the result, not fatal, unless all fail. `progress` is called once per clip.
pub fn extract_frames(
    manifest: &Manifest,
    manifest_dir: &Path,
    store_dir: &Path,
    opts: &ExtractOptions,
    threads: usize,
    progress: &(dyn Fn(&Clip) + Sync),
) -> Result<ExtractReport, ExtractError> {
    let pool = crate::pool(threads);
    pool.install(|| extract_in_pool(manifest, manifest_dir, store_dir, opts, progress))
}

fn extract_in_pool(
    manifest: &Manifest,
    manifest_dir: &Path,
    store_dir: &Path,
    opts: &ExtractOptions,
    progress: &(dyn Fn(&Clip) + Sync),
) -> Result<ExtractReport, ExtractError> {
    let kind = DatasetKind::parse(&manifest.dataset).ok_or_else(|| ExtractError::UnknownDataset(manifest.dataset.clone()))?;
    let mut writer = RaggedWriter::create(store_dir)?;
    let s = opts.size as u64;
    writer.add_array::<u8>(&ArraySpec::new("frames", &[], &[s, s, 3]))?;
    let mut rejected = Vec::new();
    let mut source_ids = Vec::new();
    let mut source_indices: Vec<Vec<usize>> = Vec::new();
    // Bounded batches keep decoded frames of only a few clips in memory at once.
    let batch = rayon::current_num_threads().max(1) * 2;
    let clips: Vec<(usize, &Clip)> = manifest.clips.iter().enumerate().collect();
    for chunk in clips.chunks(batch) {
        let results: Vec<Result<Extracted, String>> = chunk
            .par_iter()
            .map(|&(i, c)| {
                let r = extract_clip(i, c, &manifest.resolve(manifest_dir, c), kind, opts);
                progress(c);
                r
            })
            .collect();
        for (&(_, clip), r) in chunk.iter().zip(results) {
            match r {
                Ok(ex) => {
                    for (id, idx, frames) in ex.entries {
                        for f in &frames {
                            writer.append("frames", &f.data)?;
                        }
                        writer.end_video(&id, clip.label)?;
                        source_ids.push(clip.id.clone());
                        source_indices.push(idx);
                    }
                }
                Err(reason) => rejected.push(Rejected { path: manifest.resolve(manifest_dir, clip), reason }),
            }
        }
    }
    if writer.num_videos() == 0 {
        let first =
            rejected.first().map(|r| format!("{}: {}", r.path.display(), r.reason)).unwrap_or_else(|| "the manifest lists no clips".into());
        return Err(ExtractError::AllRejected { total: manifest.clips.len(), first, rejected });
    }
    let mut extra = serde_json::Map::new();
    extra.insert("size".into(), opts.size.into());
    extra.insert("num_frames".into(), opts.spec.num_frames.into());
    extra.insert("frame_interval".into(), opts.spec.interval.into());
    if let Some(k) = opts.windows_per_video {
        extra.insert("windows_per_video".into(), k.into());
        extra.insert("source_ids".into(), serde_json::json!(source_ids));
        extra.insert("source_indices".into(), serde_json::json!(source_indices));
    }
    if !manifest.class_names.is_empty() {
        extra.insert("class_names".into(), serde_json::json!(manifest.class_names));
    }
    let info = GroupInfo {
        dataset: manifest.dataset.clone(),
        num_classes: manifest.num_classes,
        window: kind.window_rule(),
        flip: kind.flips(),
        extra,
    };
    let meta = writer.finish(info)?;
    Ok(ExtractReport { meta, rejected })
}
