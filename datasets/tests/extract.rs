//! The frames stage's work: decode, transform, store; windows; the rejected report.

use std::path::Path;

use latte_datasets::{build_manifest, extract_frames, scan, write_synthetic, DatasetKind, ExtractError, ExtractOptions, ScanOptions};
use latte_store::{RaggedReader, WindowRule};
use latte_video::synthetic::SyntheticConfig;
use latte_video::{write_video, EncodeOptions, SpatialTransform, VideoReader, WindowSpec};

fn opts(size: usize, k: Option<usize>) -> ExtractOptions {
    ExtractOptions { size, windows_per_video: k, spec: WindowSpec::default(), seed: 9 }
}

fn none(_: &latte_datasets::Clip) {}

#[test]
fn every_frame_is_stored_transformed_and_windows_match_it() {
    let dir = tempfile::tempdir().unwrap();
    let cfg =
        SyntheticConfig { num_videos: 3, min_frames: 50, max_frames: 70, width: 40, height: 32, num_classes: 2, ..Default::default() };
    let m = write_synthetic(&cfg, dir.path(), 2).unwrap();
    let store = dir.path().join("frames.zarr");
    let rep = extract_frames(&m, dir.path(), &store, &opts(16, None), 2, &none).unwrap();
    assert!(rep.rejected.is_empty());
    let r = RaggedReader::open(&store).unwrap();
    let meta = r.meta();
    assert_eq!(meta.ids, m.clips.iter().map(|c| c.id.clone()).collect::<Vec<_>>());
    assert_eq!(meta.counts, m.clips.iter().map(|c| c.frame_count).collect::<Vec<_>>());
    assert_eq!(meta.labels, vec![Some(0), Some(1), Some(0)]);
    assert_eq!((meta.window, meta.flip, meta.num_classes), (WindowRule::Linspace, true, Some(2)));
    let a = r.array::<u8>("frames").unwrap();
    assert_eq!(a.frame_shape(), &[16, 16, 3]);
    // video 1 equals decode + ResizeThenCrop(16), frame for frame
    let decoded = VideoReader::open(&m.resolve(dir.path(), &m.clips[1])).unwrap().read_all().unwrap();
    let stored = a.read_video(&[], 1).unwrap();
    let t = SpatialTransform::ResizeThenCrop(16);
    let want: Vec<u8> = decoded.iter().flat_map(|f| t.apply(f).unwrap().data).collect();
    assert_eq!(stored, want);

    // K windows per video: each entry is a clip of 16 frames, equal to the full store at the
    // recorded source indices, decoded by seeking
    let wstore = dir.path().join("windows.zarr");
    extract_frames(&m, dir.path(), &wstore, &opts(16, Some(2)), 2, &none).unwrap();
    let w = RaggedReader::open(&wstore).unwrap();
    assert_eq!(w.meta().counts, vec![16; 6]);
    assert_eq!(w.meta().ids[3], format!("{}#1", m.clips[1].id));
    let src: Vec<Vec<u64>> = serde_json::from_value(w.meta().extra["source_indices"].clone()).unwrap();
    let wa = w.array::<u8>("frames").unwrap();
    for (e, idx) in src.iter().enumerate() {
        let v = e / 2;
        let global: Vec<u64> = idx.iter().map(|i| meta.offsets[v] + i).collect();
        assert_eq!(wa.read_video(&[], e).unwrap(), a.read_frames(&[], &global).unwrap(), "entry {e}");
    }
    // same seed, same windows
    let again = dir.path().join("again.zarr");
    extract_frames(&m, dir.path(), &again, &opts(16, Some(2)), 1, &none).unwrap();
    assert_eq!(RaggedReader::open(&again).unwrap().meta().extra["source_indices"], w.meta().extra["source_indices"]);
}

fn broken_folder(root: &Path) {
    std::fs::create_dir_all(root).unwrap();
    let cfg = SyntheticConfig { min_frames: 30, max_frames: 30, width: 32, height: 32, ..Default::default() };
    let good = latte_video::synthetic::render(&cfg, 0).frames;
    write_video(&root.join("good.mp4"), &good, EncodeOptions::h264(10)).unwrap();
    write_video(&root.join("short.mp4"), &good[..10], EncodeOptions::h264(10)).unwrap();
    std::fs::write(root.join("zero.mp4"), b"").unwrap();
    std::fs::write(root.join("notes.txt"), b"hello").unwrap();
    let bytes = std::fs::read(root.join("good.mp4")).unwrap();
    std::fs::write(root.join("truncated.mp4"), &bytes[..bytes.len() / 3]).unwrap();
    let mut corrupt = bytes.clone();
    for b in corrupt.iter_mut().skip(64).step_by(7) {
        *b ^= 0x5A;
    }
    std::fs::write(root.join("corrupt.mp4"), corrupt).unwrap();
}

#[test]
fn bad_files_are_rejected_with_reasons_and_the_rest_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("mixed");
    broken_folder(&root);
    let (m, mut rejected) = build_manifest(DatasetKind::Videos, scan(DatasetKind::Videos, &root, &ScanOptions::default()).unwrap(), 2);
    let store = dir.path().join("frames.zarr");
    let rep = extract_frames(&m, dir.path(), &store, &opts(16, None), 2, &none).unwrap();
    rejected.extend(rep.rejected);
    let name = |p: &Path| p.file_name().unwrap().to_str().unwrap().to_owned();
    let mut names: Vec<String> = rejected.iter().map(|r| name(&r.path)).collect();
    names.sort();
    let meta = RaggedReader::open(&store).unwrap().meta().clone();
    assert!(meta.ids.contains(&"good".to_string()), "{:?} / {rejected:?}", meta.ids);
    for bad in ["notes.txt", "short.mp4", "zero.mp4"] {
        assert!(names.contains(&bad.to_string()), "{bad} not rejected: {rejected:?}");
    }
    let short = rejected.iter().find(|r| name(&r.path) == "short.mp4").unwrap();
    assert!(short.reason.contains("too short: 10 frames"), "{}", short.reason);
    // every file is either stored or rejected, never both, never lost
    assert_eq!(meta.ids.len() + rejected.len(), 6, "{:?} {rejected:?}", meta.ids);
    for id in &meta.ids {
        assert!(!names.iter().any(|n| n.starts_with(id.as_str()) && n[id.len()..].starts_with('.')), "{id} stored and rejected");
    }
}

#[test]
fn all_rejected_is_an_error_that_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("short");
    std::fs::create_dir_all(&root).unwrap();
    let cfg = SyntheticConfig { min_frames: 8, max_frames: 8, width: 32, height: 32, ..Default::default() };
    write_video(&root.join("a.mp4"), &latte_video::synthetic::render(&cfg, 0).frames, EncodeOptions::h264(10)).unwrap();
    let (m, _) = build_manifest(DatasetKind::Videos, scan(DatasetKind::Videos, &root, &ScanOptions::default()).unwrap(), 1);
    let e = extract_frames(&m, dir.path(), &dir.path().join("f.zarr"), &opts(16, None), 1, &none).unwrap_err();
    assert!(matches!(e, ExtractError::AllRejected { .. }));
    let msg = e.to_string();
    assert!(msg.contains("a.mp4") && msg.contains("too short"), "{msg}");
}

#[test]
fn sky_frame_folders_use_stride_windows_crop_then_resize_and_no_flip() {
    use latte_video::image_folder::{read_image, write_png};
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("sky_train/abc/abc_1");
    std::fs::create_dir_all(&clip).unwrap();
    let cfg = SyntheticConfig { min_frames: 52, max_frames: 52, width: 24, height: 16, ..Default::default() };
    for (k, f) in latte_video::synthetic::render(&cfg, 0).frames.iter().enumerate() {
        write_png(&clip.join(format!("abc_frames_{:08}.png", 1000 + k)), f).unwrap();
    }
    let root = dir.path().join("sky_train");
    let (m, rejected) =
        build_manifest(DatasetKind::SkyTimelapse, scan(DatasetKind::SkyTimelapse, &root, &ScanOptions::default()).unwrap(), 1);
    assert!(rejected.is_empty());
    let store = dir.path().join("f.zarr");
    extract_frames(&m, dir.path(), &store, &opts(8, None), 1, &none).unwrap();
    let r = RaggedReader::open(&store).unwrap();
    assert_eq!((r.meta().window, r.meta().flip, r.meta().counts.clone()), (WindowRule::Stride, false, vec![52]));
    let a = r.array::<u8>("frames").unwrap();
    let f7 = read_image(&clip.join("abc_frames_00001007.png")).unwrap();
    assert_eq!(a.read_frames(&[], &[7]).unwrap(), SpatialTransform::CropThenResize(8).apply(&f7).unwrap().data);

    let wstore = dir.path().join("w.zarr");
    extract_frames(&m, dir.path(), &wstore, &opts(8, Some(3)), 1, &none).unwrap();
    let w = RaggedReader::open(&wstore).unwrap();
    let src: Vec<Vec<u64>> = serde_json::from_value(w.meta().extra["source_indices"].clone()).unwrap();
    let wa = w.array::<u8>("frames").unwrap();
    for (e, idx) in src.iter().enumerate() {
        assert_eq!(idx.len(), 16);
        assert!(idx.windows(2).all(|p| p[1] - p[0] == 3), "exact stride: {idx:?}");
        assert!(idx[0] <= 52 - 49);
        assert_eq!(wa.read_video(&[], e).unwrap(), a.read_frames(&[], idx).unwrap());
    }
}
