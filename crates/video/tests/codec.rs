//! Encode/decode round trips through FFmpeg, seeking, and bad files.

use latte_video::synthetic::{render, SyntheticConfig};
use latte_video::{write_gif, write_video, EncodeOptions, Frame, VideoReader, WindowRule, WindowSpec};

fn psnr(a: &Frame, b: &Frame) -> f64 {
    let mse: f64 = a.data.iter().zip(&b.data).map(|(&x, &y)| (x as f64 - y as f64).powi(2)).sum::<f64>() / a.data.len() as f64;
    10.0 * (255.0f64 * 255.0 / mse.max(1e-10)).log10()
}

fn clip(n: usize, seed: u64) -> Vec<Frame> {
    let cfg = SyntheticConfig { min_frames: n, max_frames: n, width: 48, height: 32, seed, ..Default::default() };
    render(&cfg, 1).frames
}

#[test]
fn h264_round_trip_keeps_count_size_and_content() {
    let dir = tempfile::tempdir().unwrap();
    let frames = clip(40, 3);
    let p = dir.path().join("a.mp4");
    write_video(&p, &frames, EncodeOptions::h264(8)).unwrap();
    let mut r = VideoReader::open(&p).unwrap();
    assert_eq!((r.info().width, r.info().height), (48, 32));
    assert!((r.info().fps - 8.0).abs() < 1e-9, "{}", r.info().fps);
    assert_eq!(r.info().frame_count, 40);
    let back = r.read_all().unwrap();
    assert_eq!(back.len(), 40);
    for (i, (a, b)) in frames.iter().zip(&back).enumerate() {
        assert!(psnr(a, b) > 28.0, "frame {i}: {:.1} dB", psnr(a, b));
    }
    // same input, same bytes
    let q = dir.path().join("b.mp4");
    write_video(&q, &frames, EncodeOptions::h264(8)).unwrap();
    assert_eq!(std::fs::read(&p).unwrap(), std::fs::read(&q).unwrap());
}

#[test]
fn seeking_equals_a_full_decode_and_costs_a_window_not_a_video() {
    let dir = tempfile::tempdir().unwrap();
    let frames = clip(240, 5);
    let spec = WindowSpec::default();
    for (name, opts) in [
        ("long.mp4", EncodeOptions { gop: 16, ..EncodeOptions::h264(25) }),
        ("long.avi", EncodeOptions { gop: 12, ..EncodeOptions::mpeg4(25) }),
    ] {
        let p = dir.path().join(name);
        write_video(&p, &frames, opts).unwrap();
        let all = VideoReader::open(&p).unwrap().read_all().unwrap();
        assert_eq!(all.len(), 240, "{name}");
        for begin in [0usize, 1, 17, 100, 150, 191] {
            let idx = spec.indices(240, begin, WindowRule::Linspace).unwrap();
            let mut r = VideoReader::open(&p).unwrap();
            let got = r.read_indices(&idx).unwrap();
            for (k, &i) in idx.iter().enumerate() {
                assert!(got[k] == all[i], "{name}: begin {begin}, frame {i} differs from the full decode");
            }
            // at most one GOP before the window plus the window (48) plus decoder delay
            assert!(r.frames_decoded() <= 48 + opts.gop as usize + 4, "{name}: begin {begin} decoded {}", r.frames_decoded());
        }
        // reading twice from one reader (second read seeks backwards)
        let mut r = VideoReader::open(&p).unwrap();
        let a = r.read_indices(&[200, 203]).unwrap();
        let b = r.read_indices(&[3, 6]).unwrap();
        assert!(a[0] == all[200] && a[1] == all[203] && b[0] == all[3] && b[1] == all[6]);
        assert!(r.read_indices(&[239, 240]).is_err(), "past the end");
    }
}

#[test]
fn mpeg4_avi_is_tagged_xvid() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("v_Test_g01_c01.avi");
    write_video(&p, &clip(20, 1), EncodeOptions::mpeg4(25)).unwrap();
    let bytes = std::fs::read(&p).unwrap();
    assert_eq!(&bytes[..4], b"RIFF");
    assert!(bytes.windows(4).any(|w| w == b"XVID"));
    let r = VideoReader::open(&p).unwrap();
    assert_eq!(r.info().codec, "mpeg4");
    assert_eq!(r.info().frame_count, 20);
}

#[test]
fn gif_has_every_frame() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("a.gif");
    let frames = clip(6, 2);
    write_gif(&p, &frames, 8).unwrap();
    let mut opts = gif::DecodeOptions::new();
    opts.set_color_output(gif::ColorOutput::RGBA);
    let mut d = opts.read_info(std::fs::File::open(&p).unwrap()).unwrap();
    let mut n = 0;
    while let Some(f) = d.read_next_frame().unwrap() {
        assert_eq!((f.width, f.height, f.delay), (48, 32, 13));
        n += 1;
    }
    assert_eq!(n, 6);
}

#[test]
fn broken_files_are_errors_that_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.mp4");
    write_video(&good, &clip(30, 4), EncodeOptions::h264(8)).unwrap();
    let bytes = std::fs::read(&good).unwrap();

    let empty = dir.path().join("empty.mp4");
    std::fs::write(&empty, b"").unwrap();
    let text = dir.path().join("notes.mp4");
    std::fs::write(&text, b"this is not a video at all, just text").unwrap();
    let garbage = dir.path().join("garbage.avi");
    std::fs::write(&garbage, (0..5000u32).map(|i| (i * 7919 % 251) as u8).collect::<Vec<_>>()).unwrap();
    let missing = dir.path().join("missing.mp4");
    for p in [&empty, &text, &garbage, &missing] {
        let e = VideoReader::open(p).and_then(|mut r| r.read_all().map(|_| ())).unwrap_err().to_string();
        assert!(e.contains(p.file_name().unwrap().to_str().unwrap()), "{e}");
    }
    // truncated in the middle: either an error or fewer frames, never a panic
    let trunc = dir.path().join("trunc.mp4");
    std::fs::write(&trunc, &bytes[..bytes.len() / 2]).unwrap();
    if let Ok(frames) = VideoReader::open(&trunc).and_then(|mut r| r.read_all()) {
        assert!(frames.len() < 30);
    }
    // a frame size the encoder cannot take
    assert!(write_video(&dir.path().join("odd.mp4"), &[Frame::filled(33, 32, [0, 0, 0])], EncodeOptions::h264(8)).is_err());
}

#[test]
fn synthetic_videos_are_seeded() {
    let cfg = SyntheticConfig { num_videos: 4, min_frames: 10, max_frames: 20, width: 32, height: 32, ..Default::default() };
    let a = render(&cfg, 2);
    let b = render(&cfg, 2);
    assert_eq!(a.frames, b.frames);
    assert_eq!(a.label, 2);
    assert!((10..=20).contains(&a.frames.len()));
    assert_ne!(render(&cfg, 3).frames[0], a.frames[0]);
    let other = SyntheticConfig { seed: 1, ..cfg.clone() };
    assert_ne!(render(&other, 2).frames[0], a.frames[0]);
    // the scene moves
    assert_ne!(a.frames[0], a.frames[5]);
    assert!(SyntheticConfig { width: 33, ..cfg.clone() }.validate().is_err());
    assert!(SyntheticConfig { num_classes: 5, ..cfg }.validate().is_err());
}
