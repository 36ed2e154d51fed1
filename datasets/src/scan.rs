use std::path::{Path, PathBuf};

use latte_video::image_folder::{is_image, list_frames, read_image};
use latte_video::VideoReader;
use rayon::prelude::*;

use crate::kind::DatasetKind;
use crate::manifest::{reason, Clip, ClipKind, Manifest, Rejected};
use crate::walk;

/// Knobs of the layouts' rules.
#[derive(Clone, Copy, Debug)]
pub struct ScanOptions {
    /// SkyTimelapse keeps a frame folder only when it holds more than this many images
    /// (`num_frames * frame_interval` = 48 in the reference).
    pub sky_min_frames: usize,
}

impl Default for ScanOptions {
    fn default() -> Self {
        Self { sky_min_frames: 48 }
    }
}

/// A clip found by a layout's rules, before probing.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    pub id: String,
    pub path: PathBuf,
    pub kind: ClipKind,
    pub label: Option<u32>,
}

/// What scanning a dataset folder found.
#[derive(Clone, Debug, Default)]
pub struct Scan {
    pub candidates: Vec<Candidate>,
    pub class_names: Vec<String>,
    pub rejected: Vec<Rejected>,
}

#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("dataset folder {path} does not exist or is not a folder; set `path` to the dataset's root")]
    NoRoot { path: PathBuf },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: no {what} found for dataset `{dataset}`; check `path` and `dataset`")]
    Empty { path: PathBuf, dataset: &'static str, what: &'static str },
    #[error("the synthetic dataset is generated, not scanned")]
    Synthetic,
}

fn rel_id(root: &Path, p: &Path, strip_ext: bool) -> String {
    let rel = p.strip_prefix(root).unwrap_or(p);
    let rel = if strip_ext { rel.with_extension("") } else { rel.to_owned() };
    let s = rel.to_string_lossy().replace('\\', "/");
    if s.is_empty() {
        ".".into()
    } else {
        s
    }
}

fn video_files(root: &Path, filter: impl Fn(&Path) -> bool) -> Result<Vec<PathBuf>, ScanError> {
    let io = |source| ScanError::Io { path: root.to_owned(), source };
    let mut out = Vec::new();
    for d in walk::dirs(root).map_err(io)? {
        out.extend(walk::files(&d).map_err(io)?.into_iter().filter(|p| filter(p)));
    }
    Ok(out)
}

/// Folders under `root` (itself included) holding image files, with their image counts.
fn frame_dirs(root: &Path) -> Result<Vec<(PathBuf, usize)>, ScanError> {
    let io = |source| ScanError::Io { path: root.to_owned(), source };
    let mut out = Vec::new();
    for d in walk::dirs(root).map_err(io)? {
        let n = walk::files(&d).map_err(io)?.iter().filter(|p| is_image(p)).count();
        if n > 0 {
            out.push((d, n));
        }
    }
    Ok(out)
}

/// Finds the clips of a dataset folder by its layout's rules.
pub fn scan(kind: DatasetKind, root: &Path, opts: &ScanOptions) -> Result<Scan, ScanError> {
    if !root.is_dir() {
        return Err(ScanError::NoRoot { path: root.to_owned() });
    }
    let io = |source| ScanError::Io { path: root.to_owned(), source };
    let video = |id: String, path: PathBuf, label| Candidate { id, path, kind: ClipKind::Video, label };
    let frames = |id: String, path: PathBuf| Candidate { id, path, kind: ClipKind::Frames, label: None };
    let mut scan = Scan::default();
    match kind {
        DatasetKind::Synthetic => return Err(ScanError::Synthetic),
        // Every file is a video (os.walk, no extension filter); unreadable ones are rejected
        // when probed.
        DatasetKind::FaceForensics | DatasetKind::Videos => {
            for p in video_files(root, |_| true)? {
                scan.candidates.push(video(rel_id(root, &p, true), p, None));
            }
        }
        DatasetKind::Ucf101 => {
            let mut classes: Vec<PathBuf> = std::fs::read_dir(root)
                .map_err(io)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_dir() && !p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.')))
                .collect();
            // Python's sorted() on str compares code points, as Rust's byte order on UTF-8.
            classes.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
            for (label, c) in classes.iter().enumerate() {
                scan.class_names.push(c.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default());
                for p in video_files(c, |_| true)? {
                    scan.candidates.push(video(rel_id(root, &p, true), p, Some(label as u32)));
                }
            }
        }
        DatasetKind::SkyTimelapse => {
            for (d, n) in frame_dirs(root)? {
                if n > opts.sky_min_frames {
                    scan.candidates.push(frames(rel_id(root, &d, false), d));
                } else {
                    scan.rejected.push(Rejected {
                        path: d,
                        reason: format!("too short: {n} frames (SkyTimelapse keeps folders with more than {})", opts.sky_min_frames),
                    });
                }
            }
        }
        DatasetKind::TaichiHd => {
            for (d, _) in frame_dirs(root)? {
                scan.candidates.push(frames(rel_id(root, &d, false), d));
            }
            let mp4 = |p: &Path| p.extension().and_then(|e| e.to_str()).is_some_and(|e| e.eq_ignore_ascii_case("mp4"));
            for p in video_files(root, mp4)? {
                scan.candidates.push(video(rel_id(root, &p, true), p, None));
            }
        }
        DatasetKind::Frames => {
            for (d, _) in frame_dirs(root)? {
                scan.candidates.push(frames(rel_id(root, &d, false), d));
            }
        }
    }
    if scan.candidates.is_empty() && scan.rejected.is_empty() {
        let what = match kind {
            DatasetKind::SkyTimelapse | DatasetKind::Frames => "frame folders",
            DatasetKind::TaichiHd => "frame folders or mp4 files",
            DatasetKind::Ucf101 => "class folders with videos",
            _ => "files",
        };
        return Err(ScanError::Empty { path: root.to_owned(), dataset: kind.name(), what });
    }
    // Two files differing only by extension would share an id: keep the extension then.
    let mut ids: Vec<&str> = scan.candidates.iter().map(|c| c.id.as_str()).collect();
    ids.sort_unstable();
    let dup: std::collections::HashSet<String> = ids.windows(2).filter(|w| w[0] == w[1]).map(|w| w[0].to_owned()).collect();
    for c in &mut scan.candidates {
        if dup.contains(&c.id) {
            c.id = rel_id(root, &c.path, false);
        }
    }
    Ok(scan)
}

fn probe(c: &Candidate) -> Result<Clip, String> {
    match c.kind {
        ClipKind::Video => {
            let r = VideoReader::open(&c.path).map_err(|e| reason(&c.path, &e))?;
            let i = r.info();
            Ok(Clip {
                id: c.id.clone(),
                path: c.path.clone(),
                kind: ClipKind::Video,
                frame_count: i.frame_count,
                fps: (i.fps > 0.0).then_some(i.fps),
                width: i.width,
                height: i.height,
                label: c.label,
            })
        }
        ClipKind::Frames => {
            let files = list_frames(&c.path).map_err(|e| reason(&c.path, &e))?;
            let first = files.first().ok_or_else(|| "no image files".to_owned())?;
            let f = read_image(first).map_err(|e| e.to_string())?;
            Ok(Clip {
                id: c.id.clone(),
                path: c.path.clone(),
                kind: ClipKind::Frames,
                frame_count: files.len() as u64,
                fps: None,
                width: f.width,
                height: f.height,
                label: c.label,
            })
        }
    }
}

/// Probes every candidate (`threads` at a time) into a manifest; the ones that cannot be
/// opened join the scan's rejected list.
pub fn build_manifest(kind: DatasetKind, scan: Scan, threads: usize) -> (Manifest, Vec<Rejected>) {
    let results: Vec<Result<Clip, Rejected>> = crate::pool(threads)
        .install(|| scan.candidates.par_iter().map(|c| probe(c).map_err(|reason| Rejected { path: c.path.clone(), reason })).collect());
    let mut rejected = scan.rejected;
    let mut clips = Vec::new();
    for r in results {
        match r {
            Ok(c) => clips.push(c),
            Err(r) => rejected.push(r),
        }
    }
    let num_classes = (!scan.class_names.is_empty()).then_some(scan.class_names.len() as u32);
    (Manifest { dataset: kind.name().into(), num_classes, class_names: scan.class_names, clips }, rejected)
}
