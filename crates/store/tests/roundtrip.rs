use latte_store::{f16, ArraySpec, GroupInfo, RaggedReader, RaggedWriter, StoreError, WindowRule};

fn info() -> GroupInfo {
    let mut extra = serde_json::Map::new();
    extra.insert("scale_factor".into(), serde_json::json!(0.18215));
    GroupInfo { dataset: "synthetic".into(), num_classes: Some(3), window: WindowRule::Linspace, flip: true, extra }
}

fn frame_u8(video: usize, f: usize, len: usize) -> Vec<u8> {
    (0..len).map(|i| ((video * 31 + f * 7 + i) % 251) as u8).collect()
}

#[test]
fn u8_frames_round_trip_across_shard_boundaries() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("frames.zarr");
    let mut w = RaggedWriter::create(&path).unwrap();
    let mut spec = ArraySpec::new("frames", &[], &[4, 5, 3]);
    spec.frames_per_shard = Some(4); // videos of 3, 9 and 2 frames cross shard edges
    w.add_array::<u8>(&spec).unwrap();
    let lens = [3usize, 9, 2];
    for (v, &n) in lens.iter().enumerate() {
        // append in two pieces to exercise buffering
        let all: Vec<u8> = (0..n).flat_map(|f| frame_u8(v, f, 60)).collect();
        let cut = (n / 2) * 60;
        w.append("frames", &all[..cut]).unwrap();
        w.append("frames", &all[cut..]).unwrap();
        assert_eq!(w.end_video(&format!("v{v}"), Some(v as u32)).unwrap(), n as u64);
    }
    let meta = w.finish(info()).unwrap();
    assert_eq!(meta.offsets, vec![0, 3, 12]);
    assert_eq!(meta.counts, vec![3, 9, 2]);

    let r = RaggedReader::open(&path).unwrap();
    assert_eq!(r.meta(), &meta);
    assert_eq!(r.meta().extra["scale_factor"], serde_json::json!(0.18215));
    let a = r.array::<u8>("frames").unwrap();
    assert_eq!(a.frame_shape(), &[4, 5, 3]);
    assert_eq!(a.total_frames(), 14);
    for (v, &n) in lens.iter().enumerate() {
        let want: Vec<u8> = (0..n).flat_map(|f| frame_u8(v, f, 60)).collect();
        assert_eq!(a.read_video(&[], v).unwrap(), want, "video {v}");
    }
    // gather: frame 2 of v1 (global 5), frame 0 of v0, frames 0..=1 of v2 (12, 13)
    let got = a.read_frames(&[], &[5, 0, 12, 13]).unwrap();
    let want: Vec<u8> = [frame_u8(1, 2, 60), frame_u8(0, 0, 60), frame_u8(2, 0, 60), frame_u8(2, 1, 60)].concat();
    assert_eq!(got, want);
    assert!(a.read_range(&[], 13, 2).is_err());
    assert!(matches!(r.array::<f32>("frames"), Err(StoreError::WrongDtype { .. })));
    assert!(matches!(r.array::<u8>("latents"), Err(StoreError::NoSuchArray { .. })));
    // no zarrs version attribute: the bytes must not depend on the zarrs release
    let json = std::fs::read_to_string(path.join("frames/zarr.json")).unwrap();
    assert!(!json.contains("_zarrs"), "{json}");
}

#[test]
fn f16_and_f32_arrays_with_an_orientation_axis() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("latents.zarr");
    let mut w = RaggedWriter::create(&path).unwrap();
    let mut mean = ArraySpec::new("mean", &[2], &[2, 3]);
    mean.frames_per_shard = Some(2);
    w.add_array::<f16>(&mean).unwrap();
    let mut logvar = ArraySpec::new("logvar", &[2], &[2, 3]);
    logvar.zstd_level = None;
    w.add_array::<f32>(&logvar).unwrap();
    let val = |o: usize, g: usize, i: usize| (o * 1000 + g * 10 + i) as f32 * 0.25 - 7.0;
    let lens = [3usize, 2];
    let mut g0 = 0;
    for (v, &n) in lens.iter().enumerate() {
        // layout [2, n, 2, 3]
        let m: Vec<f16> = (0..2).flat_map(|o| (0..n).flat_map(move |f| (0..6).map(move |i| f16::from_f32(val(o, g0 + f, i))))).collect();
        let l: Vec<f32> = (0..2).flat_map(|o| (0..n).flat_map(move |f| (0..6).map(move |i| -val(o, g0 + f, i)))).collect();
        w.append("mean", &m).unwrap();
        assert!(w.end_video("early", None).is_err(), "logvar has no frames yet");
        w.append("logvar", &l).unwrap();
        w.end_video(&format!("v{v}"), None).unwrap();
        g0 += n;
    }
    w.finish(GroupInfo { num_classes: None, ..info() }).unwrap();

    let r = RaggedReader::open(&path).unwrap();
    assert_eq!(r.meta().labels, vec![None, None]);
    let m = r.array::<f16>("mean").unwrap();
    let l = r.array::<f32>("logvar").unwrap();
    assert_eq!(m.lead_shape(), &[2]);
    for o in 0..2u64 {
        for g in 0..5usize {
            let got_m = m.read_frames(&[o], &[g as u64]).unwrap();
            let got_l = l.read_frames(&[o], &[g as u64]).unwrap();
            for i in 0..6 {
                assert_eq!(got_m[i], f16::from_f32(val(o as usize, g, i)));
                assert_eq!(got_l[i], -val(o as usize, g, i));
            }
        }
    }
    assert!(m.read_range(&[2], 0, 1).is_err());
}

#[test]
fn misuse_gives_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.zarr");
    let mut w = RaggedWriter::create(&path).unwrap();
    w.add_array::<u8>(&ArraySpec::new("frames", &[], &[2, 2, 3])).unwrap();
    assert!(w.append("frames", &[0u8; 13]).is_err(), "not a whole frame");
    assert!(w.append("frames", &[0f32; 12]).is_err(), "wrong dtype");
    assert!(w.append("nope", &[0u8; 12]).is_err());
    assert!(w.end_video("empty", None).is_err());
    w.append("frames", &[1u8; 12]).unwrap();
    // label out of range of num_classes
    w.end_video("a", Some(5)).unwrap();
    assert!(w.finish(info()).is_err());
    // a non-empty directory is refused
    assert!(RaggedWriter::create(dir.path()).is_err());
    // opening something that is not a store
    let err = RaggedReader::open(dir.path()).err().unwrap().to_string();
    assert!(err.contains("zarr.json"), "{err}");
}

/// Writes 64 frames of 8×8×3 into one shard inside a pool of `threads` threads; returns the
/// shard file's bytes.
fn one_shard(dir: &std::path::Path, threads: usize) -> Vec<u8> {
    let path = dir.join("frames.zarr");
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    pool.install(|| {
        let mut w = RaggedWriter::create(&path).unwrap();
        let mut spec = ArraySpec::new("frames", &[], &[8, 8, 3]);
        spec.frames_per_shard = Some(64);
        w.add_array::<u8>(&spec).unwrap();
        let all: Vec<u8> = (0..64).flat_map(|f| frame_u8(f % 5, f, 192)).collect();
        w.append("frames", &all).unwrap();
        w.end_video("v0", None).unwrap();
        w.finish(info()).unwrap();
    });
    std::fs::read(path.join("frames/c/0/0/0/0")).unwrap()
}

#[test]
fn a_shard_holds_its_frames_in_order_whatever_the_threads() {
    // zarrs' default places each encoded frame where its thread finishes it; the writer asks
    // for row-major order, so a seeded stage gives the same bytes on every run.
    let bytes = one_shard(tempfile::tempdir().unwrap().path(), 8);
    // The shard index sits at the end: (offset, length) as u64 per frame, then a crc32c.
    let n = 64;
    let index = &bytes[bytes.len() - 4 - 16 * n..bytes.len() - 4];
    let offsets: Vec<u64> = (0..n).map(|i| u64::from_le_bytes(index[16 * i..16 * i + 8].try_into().unwrap())).collect();
    let lengths: Vec<u64> = (0..n).map(|i| u64::from_le_bytes(index[16 * i + 8..16 * i + 16].try_into().unwrap())).collect();
    assert_eq!(offsets[0], 0);
    for i in 1..n {
        assert_eq!(offsets[i], offsets[i - 1] + lengths[i - 1], "frame {i} is not stored right after frame {}", i - 1);
    }
    assert_eq!(one_shard(tempfile::tempdir().unwrap().path(), 1), bytes, "one thread and eight give other bytes");
}
