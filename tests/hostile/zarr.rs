//! The ragged Zarr store reader (latte-store): group and array `zarr.json` metadata and the
//! shard files, of a small store written by its own writer.

use std::path::{Path, PathBuf};

use latte_store::{ArraySpec, GroupInfo, RaggedReader, RaggedWriter, WindowRule};

use crate::files;
use crate::harness::{self, Case, CI, LONG};
use crate::mutate::{fields_digits, Field, Kind, Mutator};

/// Frames per shard of both arrays: 10 frames make three shards, the last one padded.
const PER_SHARD: u64 = 4;

/// A store with a u8 `frames` array `[10, 4, 5, 3]` and an f32 `mean` array with an
/// orientation axis `[2, 10, 2, 3, 3]`, three videos of 3, 5 and 2 frames.
fn valid_store(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut w = RaggedWriter::create(dir).expect("a new store");
    let mut frames = ArraySpec::new("frames", &[], &[4, 5, 3]);
    frames.frames_per_shard = Some(PER_SHARD);
    w.add_array::<u8>(&frames).expect("frames");
    let mut mean = ArraySpec::new("mean", &[2], &[2, 3, 3]);
    mean.frames_per_shard = Some(PER_SHARD);
    w.add_array::<f32>(&mean).expect("mean");
    for (v, n) in [3usize, 5, 2].into_iter().enumerate() {
        let px: Vec<u8> = (0..n * 60).map(|i| (i * 7 + v * 31) as u8).collect();
        w.append("frames", &px).expect("append frames");
        let m: Vec<f32> = (0..2 * n * 18).map(|i| i as f32 * 0.125 - v as f32).collect();
        w.append("mean", &m).expect("append mean");
        w.end_video(&format!("clip{v}"), Some(v as u32)).expect("end video");
    }
    let info = GroupInfo {
        dataset: "synthetic".into(),
        num_classes: Some(3),
        window: WindowRule::Linspace,
        flip: true,
        extra: Default::default(),
    };
    w.finish(info).expect("finish");
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("store dir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).expect("inside").to_owned();
                out.push((rel, std::fs::read(&p).expect("store file")));
            }
        }
    }
    out.sort();
    out
}

/// Every read a consumer makes: open, both arrays, each video of each lead slot, and a gather.
fn read(dir: &Path) -> Result<(), String> {
    let s = |e: latte_store::StoreError| e.to_string();
    let r = RaggedReader::open(dir).map_err(s)?;
    let n = r.meta().num_videos();
    let frames = r.array::<u8>("frames").map_err(s)?;
    for v in 0..n {
        frames.read_video(&[], v).map_err(s)?;
    }
    frames.read_frames(&[], &[0, 5, 6, 9, 2]).map_err(s)?;
    let mean = r.array::<f32>("mean").map_err(s)?;
    for lead in 0..2 {
        for v in 0..n {
            mean.read_video(&[lead], v).map_err(s)?;
        }
    }
    mean.read_range(&[1], 2, 4).map(drop).map_err(s)
}

/// The shard index at a shard's end (one `(offset, nbytes)` u64 pair per frame, then a
/// CRC-32C): its fields, and where the checksummed part starts.
fn shard_index(len: usize) -> (Vec<Field>, usize) {
    let index = PER_SHARD as usize * 16;
    let start = len - index - 4;
    ((0..2 * PER_SHARD as usize).map(|i| Field::new(start + 8 * i, Kind::U64Le)).collect(), start)
}

fn mutate_file(m: &mut Mutator, path: &Path, bytes: &[u8]) -> Vec<u8> {
    if path.extension().is_some_and(|e| e == "json") {
        return m.mutate(bytes, &fields_digits(bytes, 0), true);
    }
    let (fields, start) = shard_index(bytes.len());
    let mut out = m.mutate(bytes, &fields, false);
    // Mostly keep the index checksum valid, so bad offsets reach the code that trusts them.
    if out.len() == bytes.len() && m.chance(0.7) {
        let crc = files::crc32c(&out[start..out.len() - 4]);
        let n = out.len();
        out[n - 4..].copy_from_slice(&crc.to_le_bytes());
        m.log.push("crc fixed".into());
    }
    out
}

fn zarr(cases: usize) {
    let _serial = harness::serial();
    let made = harness::scratch();
    // zarrs encodes a shard's frames in parallel and stores them in the order they finish; one
    // thread makes the valid store, and so every case, the same from run to run.
    let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().expect("a one-thread pool");
    let valid = one.install(|| valid_store(&made.path().join("valid.zarr")));
    assert!(valid.len() >= 9, "group + 2 arrays + 6 shards: {:?}", valid.iter().map(|(p, _)| p).collect::<Vec<_>>());
    let dir = harness::scratch();
    let store = dir.path().join("frames.zarr");
    for (rel, bytes) in valid.iter().filter(|(p, _)| p.extension().is_none()) {
        let (_, start) = shard_index(bytes.len());
        let crc = files::crc32c(&bytes[start..bytes.len() - 4]).to_le_bytes();
        assert_eq!(bytes[bytes.len() - 4..], crc, "{}: the shard index is where the mutations expect it", rel.display());
    }
    for (rel, bytes) in &valid {
        let p = store.join(rel);
        std::fs::create_dir_all(p.parent().expect("a parent")).expect("store dirs");
        files::write(&p, bytes);
    }
    read(&store).unwrap_or_else(|e| panic!("the valid store must read: {e}"));
    let total: usize = valid.iter().map(|(_, b)| b.len()).sum();
    let mut last: Option<usize> = None;
    let t = harness::run(
        "store zarr",
        cases,
        Some("frames.zarr"),
        |m| {
            // Each case changes one file; the previous case's file is put back first.
            if let Some(i) = last.take() {
                files::write(&store.join(&valid[i].0), &valid[i].1);
            }
            // Metadata half the time (it decides every size), a shard otherwise.
            let json: Vec<usize> = (0..valid.len()).filter(|&i| valid[i].0.extension().is_some_and(|e| e == "json")).collect();
            let shards: Vec<usize> = (0..valid.len()).filter(|&i| !json.contains(&i)).collect();
            let i = if m.chance(0.5) { json[m.below(json.len())] } else { shards[m.below(shards.len())] };
            last = Some(i);
            let (rel, bytes) = &valid[i];
            m.log.push(format!("{}:", rel.display()));
            let size = if m.chance(0.03) {
                std::fs::remove_file(store.join(rel)).expect("removing a store file");
                m.log.push("removed".into());
                0
            } else {
                let out = mutate_file(m, rel, bytes);
                files::write(&store.join(rel), &out);
                out.len()
            };
            Case { bytes: (total - bytes.len() + size).max(total), input: store.clone() }
        },
        |d| read(d),
    );
    harness::check("store zarr", t);
}

#[test]
fn store_zarr() {
    zarr(CI);
}

#[test]
#[ignore = "long run: 100,000 cases"]
fn store_zarr_long() {
    zarr(LONG);
}
