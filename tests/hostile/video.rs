//! Video decoding through FFmpeg (latte-video): a small H.264 mp4 and an MPEG-4 avi made with
//! its own encoder. FFmpeg is C, so a crash here would kill the binary rather than fail a
//! case; the harness's RSS bound sees FFmpeg's allocations, which the heap counter cannot.

use std::path::Path;

use latte_video::decode::MAX_FRAME_PIXELS;
use latte_video::{write_video, EncodeOptions, Frame, VideoReader};

use crate::files;
use crate::harness::{self, Case, CI, LONG};
use crate::mutate::{Field, Kind, Mutator};

/// Frames decoded at most per case: a mutated file may decode to more frames than it holds
/// packets (timestamps), and the reader's work per frame is what is tested, not its count.
const MAX_FRAMES: usize = 64;

fn clip(n: usize) -> Vec<Frame> {
    (0..n)
        .map(|i| {
            let data = (0..48 * 32).flat_map(|p| {
                let (x, y) = (p % 48, p / 48);
                let inside = (x + 48 - i * 3 % 48) % 48 < 10 && (8..20).contains(&y);
                if inside {
                    [230, 200, 30]
                } else {
                    [(x * 5) as u8, (y * 7) as u8, 90]
                }
            });
            Frame::new(48, 32, data.collect())
        })
        .collect()
}

/// ISO BMFF boxes: every box's size field, and every 32-bit word (and, in the sample
/// description, 16-bit word: width, height, depth) of the boxes that hold counts, sizes,
/// offsets, durations and timescales.
fn fields_mp4(b: &[u8]) -> Vec<Field> {
    const CONTAINERS: [&[u8; 4]; 7] = [b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts", b"dinf"];
    const TABLES: [&[u8; 4]; 10] = [b"mvhd", b"tkhd", b"mdhd", b"stts", b"stsc", b"stsz", b"stco", b"stss", b"ctts", b"elst"];
    let mut out = Vec::new();
    let mut stack = vec![(0usize, b.len())];
    while let Some((mut at, end)) = stack.pop() {
        while at + 8 <= end {
            let size = u32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes")) as usize;
            let kind: [u8; 4] = b[at + 4..at + 8].try_into().expect("4 bytes");
            if size < 8 || at + size > end {
                break;
            }
            out.push(Field::new(at, Kind::U32Be));
            if CONTAINERS.contains(&&kind) {
                stack.push((at + 8, at + size));
            } else if TABLES.contains(&&kind) {
                out.extend((at + 8..at + size - 3).step_by(4).take(64).map(|o| Field::new(o, Kind::U32Be)));
            } else if &kind == b"stsd" {
                out.extend((at + 8..at + size - 1).step_by(2).take(96).map(|o| Field::new(o, Kind::U16Be)));
            }
            at += size;
        }
    }
    out
}

/// RIFF chunks of an avi: every chunk's size, and the words of the headers (`avih`, `strh`,
/// `strf`) and of the index (`idx1`).
fn fields_avi(b: &[u8]) -> Vec<Field> {
    let mut out = Vec::new();
    let mut i = 12;
    while i + 8 <= b.len() {
        let id = &b[i..i + 4];
        let size = u32::from_le_bytes(b[i + 4..i + 8].try_into().expect("4 bytes")) as usize;
        out.push(Field::new(i + 4, Kind::U32Le));
        if id == b"LIST" {
            i += 12; // into the list
            continue;
        }
        if [b"avih", b"strh", b"strf", b"idx1"].iter().any(|k| id == *k) {
            out.extend((i + 8..(i + 8 + size).min(b.len()).saturating_sub(3)).step_by(4).take(64).map(|o| Field::new(o, Kind::U32Le)));
        }
        i += 8 + size + (size & 1);
    }
    out
}

/// What a consumer does with a video: probe, decode every frame (up to [`MAX_FRAMES`]), then
/// seek back for a frame.
fn read(path: &Path) -> Result<(), String> {
    let s = |e: latte_video::VideoError| e.to_string();
    let mut r = VideoReader::open(path).map_err(s)?;
    let mut n = 0;
    let all = r.for_each_frame(|_, f| {
        assert!((f.width * f.height) as u64 <= MAX_FRAME_PIXELS, "a {}x{} frame is over the reader's size limit", f.width, f.height);
        n += 1;
        if n >= MAX_FRAMES {
            return Err(latte_video::VideoError::Invalid { path: path.to_owned(), reason: "enough frames for the test".into() });
        }
        Ok(())
    });
    if let Err(e) = all {
        if n < MAX_FRAMES {
            return Err(e.to_string());
        }
    }
    r.read_indices(&[4]).map(drop).map_err(s)
}

fn video(cases: usize) {
    let _serial = harness::serial();
    let made = harness::scratch();
    let mut valid = Vec::new();
    for (name, opts) in [("clip.mp4", EncodeOptions { gop: 4, ..EncodeOptions::h264(8) }), ("clip.avi", EncodeOptions::mpeg4(8))] {
        let p = made.path().join(name);
        write_video(&p, &clip(10), opts).expect("encoding the valid clip");
        read(&p).unwrap_or_else(|e| panic!("the valid {name} must decode: {e}"));
        let bytes = std::fs::read(&p).expect("its bytes");
        let fields = if name.ends_with(".mp4") { fields_mp4(&bytes) } else { fields_avi(&bytes) };
        assert!(fields.len() > 20, "{name}: the field scanner found {} fields", fields.len());
        valid.push((name, bytes, fields));
    }
    let dir = harness::scratch();
    // Up to three 8K frames at once (the window read keeps two copies of a frame while
    // collecting it), and FFmpeg's decoded pictures beside them.
    let output = 3 * 3 * MAX_FRAME_PIXELS as usize;
    let t = harness::run_with_output(
        "video decode",
        cases,
        Some("case."),
        output,
        |m: &mut Mutator| {
            let (name, bytes, fields) = &valid[m.below(valid.len())];
            m.log.push(format!("{name}:"));
            let out = m.mutate(bytes, fields, false);
            let path = dir.path().join(if name.ends_with(".mp4") { "case.mp4" } else { "case.avi" });
            files::write(&path, &out);
            Case { bytes: out.len(), input: path }
        },
        |p| read(p),
    );
    harness::check("video decode", t);
}

#[test]
fn video_decode() {
    video(CI);
}

#[test]
#[ignore = "long run: 100,000 cases"]
fn video_decode_long() {
    video(LONG);
}
