//! Each adapter on a small on-disk copy of its real layout, built at test time.

use std::path::Path;

use latte_datasets::{build_manifest, scan, write_synthetic, ClipKind, DatasetKind, Manifest, ScanOptions};
use latte_video::image_folder::write_png;
use latte_video::synthetic::{render, SyntheticConfig};
use latte_video::{write_jpeg, write_video, EncodeOptions, Frame};

fn frames(n: usize, w: usize, h: usize, seed: u64) -> Vec<Frame> {
    render(&SyntheticConfig { min_frames: n, max_frames: n, width: w, height: h, seed, ..Default::default() }, 0).frames
}

fn mkdir(p: &Path) {
    std::fs::create_dir_all(p).unwrap();
}

fn ids(m: &Manifest) -> Vec<&str> {
    m.clips.iter().map(|c| c.id.as_str()).collect()
}

#[test]
fn ucf101_labels_follow_sorted_class_folders_and_reads_xvid_avi() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("UCF-101");
    // created out of order; sorted: ApplyEyeMakeup, Archery, BabyCrawling
    for (class, n) in [("BabyCrawling", 1), ("ApplyEyeMakeup", 2), ("Archery", 1)] {
        mkdir(&root.join(class));
        for g in 1..=n {
            let p = root.join(class).join(format!("v_{class}_g{g:02}_c01.avi"));
            write_video(&p, &frames(20, 32, 24, g as u64), EncodeOptions::mpeg4(25)).unwrap();
        }
    }
    let s = scan(DatasetKind::Ucf101, &root, &ScanOptions::default()).unwrap();
    assert_eq!(s.class_names, ["ApplyEyeMakeup", "Archery", "BabyCrawling"]);
    let (m, rejected) = build_manifest(DatasetKind::Ucf101, s, 2);
    assert!(rejected.is_empty(), "{rejected:?}");
    assert_eq!(m.num_classes, Some(3));
    assert_eq!(
        ids(&m),
        [
            "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01",
            "ApplyEyeMakeup/v_ApplyEyeMakeup_g02_c01",
            "Archery/v_Archery_g01_c01",
            "BabyCrawling/v_BabyCrawling_g01_c01"
        ]
    );
    assert_eq!(m.clips.iter().map(|c| c.label).collect::<Vec<_>>(), [Some(0), Some(0), Some(1), Some(2)]);
    let c = &m.clips[0];
    assert_eq!((c.kind, c.frame_count, c.width, c.height, c.fps), (ClipKind::Video, 20, 32, 24, Some(25.0)));
    assert!(c.path.is_absolute());
}

#[test]
fn faceforensics_walks_recursively_and_rejects_non_videos() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("preprocess_ffs/train/videos");
    mkdir(&root.join("sub"));
    write_video(&root.join("000.mp4"), &frames(12, 32, 32, 1), EncodeOptions::h264(30)).unwrap();
    write_video(&root.join("sub/001.avi"), &frames(12, 32, 32, 2), EncodeOptions::mpeg4(30)).unwrap();
    std::fs::write(root.join("readme.txt"), b"not a video").unwrap();
    std::fs::write(root.join(".hidden.mp4"), b"").unwrap();
    let s = scan(DatasetKind::FaceForensics, &root, &ScanOptions::default()).unwrap();
    assert_eq!(s.candidates.len(), 3);
    let (m, rejected) = build_manifest(DatasetKind::FaceForensics, s, 2);
    assert_eq!(ids(&m), ["000", "sub/001"]);
    assert_eq!(m.num_classes, None);
    assert!(m.clips.iter().all(|c| c.label.is_none()));
    assert_eq!(rejected.len(), 1);
    assert!(rejected[0].path.ends_with("readme.txt"));
}

#[test]
fn sky_keeps_folders_with_more_than_48_frames_two_levels_deep() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("sky_train");
    let long = root.join("07U1fSrk9oI/07U1fSrk9oI_1");
    let short = root.join("07U1fSrk9oI/07U1fSrk9oI_2");
    mkdir(&long);
    mkdir(&short);
    mkdir(&root.join("empty"));
    let f = frames(1, 24, 16, 3).remove(0);
    for k in 0..49 {
        write_jpeg(&long.join(format!("07U1fSrk9oI_frames_{:08}.jpg", 86000 + k * 2)), &f, 4).unwrap();
    }
    for k in 0..48 {
        write_jpeg(&short.join(format!("07U1fSrk9oI_frames_{k:08}.jpg")), &f, 4).unwrap();
    }
    let s = scan(DatasetKind::SkyTimelapse, &root, &ScanOptions::default()).unwrap();
    let (m, rejected) = build_manifest(DatasetKind::SkyTimelapse, s, 2);
    assert_eq!(ids(&m), ["07U1fSrk9oI/07U1fSrk9oI_1"]);
    let c = &m.clips[0];
    assert_eq!((c.kind, c.frame_count, c.width, c.height, c.fps), (ClipKind::Frames, 49, 24, 16, None));
    assert_eq!(rejected.len(), 1);
    assert!(rejected[0].reason.contains("48 frames"), "{}", rejected[0].reason);
}

#[test]
fn taichi_takes_png_frame_folders_and_mp4() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("taichi/train");
    let clip = root.join("-0Lj8GvTrbM#000123#000456.mp4");
    mkdir(&clip);
    for (k, f) in frames(5, 32, 32, 4).iter().enumerate() {
        write_png(&clip.join(format!("{k:07}.png")), f).unwrap();
    }
    write_video(&root.join("abc#1#2.mp4"), &frames(10, 32, 32, 5), EncodeOptions::h264(25)).unwrap();
    let s = scan(DatasetKind::TaichiHd, &root, &ScanOptions::default()).unwrap();
    let (m, rejected) = build_manifest(DatasetKind::TaichiHd, s, 1);
    assert!(rejected.is_empty(), "{rejected:?}");
    let kinds: Vec<(String, ClipKind, u64)> = m.clips.iter().map(|c| (c.id.clone(), c.kind, c.frame_count)).collect();
    assert_eq!(kinds, [("-0Lj8GvTrbM#000123#000456.mp4".to_string(), ClipKind::Frames, 5), ("abc#1#2".to_string(), ClipKind::Video, 10)]);
}

#[test]
fn generic_folders_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("clips");
    mkdir(&root.join("a"));
    mkdir(&root.join("b/c"));
    let f = Frame::filled(8, 8, [1, 2, 3]);
    for k in [3, 1, 2] {
        write_png(&root.join("a").join(format!("{k}.png")), &f).unwrap();
        write_png(&root.join("b/c").join(format!("img_{k}.png")), &f).unwrap();
    }
    let (m, _) = build_manifest(DatasetKind::Frames, scan(DatasetKind::Frames, &root, &ScanOptions::default()).unwrap(), 1);
    assert_eq!(ids(&m), ["a", "b/c"]);
    assert!(m.clips.iter().all(|c| c.frame_count == 3));

    let e = scan(DatasetKind::Videos, &dir.path().join("nope"), &ScanOptions::default()).unwrap_err().to_string();
    assert!(e.contains("nope") && e.contains("path"), "{e}");
    mkdir(&dir.path().join("empty"));
    let e = scan(DatasetKind::Ucf101, &dir.path().join("empty"), &ScanOptions::default()).unwrap_err().to_string();
    assert!(e.contains("empty"), "{e}");
    assert_eq!(DatasetKind::parse("sky"), Some(DatasetKind::SkyTimelapse));
    assert_eq!(DatasetKind::parse("imagenet"), None);
}

#[test]
fn synthetic_manifest_round_trips_with_relative_paths() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SyntheticConfig { num_videos: 5, min_frames: 8, max_frames: 12, width: 32, height: 32, num_classes: 3, ..Default::default() };
    let m = write_synthetic(&cfg, dir.path(), 2).unwrap();
    assert_eq!(m.num_classes, Some(3));
    assert_eq!(m.class_names, ["horizontal", "vertical", "diagonal"]);
    assert_eq!(m.clips.iter().map(|c| c.label.unwrap()).collect::<Vec<_>>(), [0, 1, 2, 0, 1]);
    for c in &m.clips {
        assert!(c.path.is_relative());
        let info = latte_video::probe(&m.resolve(dir.path(), c)).unwrap();
        assert_eq!(info.frame_count, c.frame_count);
        assert!((8..=12).contains(&c.frame_count));
    }
    let p = dir.path().join("manifest.json");
    m.write(&p).unwrap();
    assert_eq!(Manifest::read(&p).unwrap(), m);
    // same seed, same bytes
    let dir2 = tempfile::tempdir().unwrap();
    write_synthetic(&cfg, dir2.path(), 1).unwrap();
    let a = std::fs::read(dir.path().join("videos/synthetic_00003.mp4")).unwrap();
    let b = std::fs::read(dir2.path().join("videos/synthetic_00003.mp4")).unwrap();
    assert_eq!(a, b);
}
