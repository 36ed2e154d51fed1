use latte_video::image_folder::{frame_number, list_frames, read_image, write_png};
use latte_video::synthetic::{render, SyntheticConfig};
use latte_video::{write_jpeg, Frame};
use std::path::Path;

#[test]
fn frames_sort_numerically_by_the_references_key() {
    assert_eq!(frame_number(Path::new("0000123.png")), Some(123));
    assert_eq!(frame_number(Path::new("abc_frames_00086552.jpg")), Some(86552));
    assert_eq!(frame_number(Path::new("x_7.tar.jpg")), Some(7));
    assert_eq!(frame_number(Path::new("cover.jpg")), None);

    let dir = tempfile::tempdir().unwrap();
    let f = Frame::filled(4, 2, [10, 20, 30]);
    for n in [10, 9, 1, 100, 2] {
        write_png(&dir.path().join(format!("clip_{n}.png")), &f).unwrap();
    }
    std::fs::write(dir.path().join("notes.txt"), b"ignored").unwrap();
    let names: Vec<String> = list_frames(dir.path()).unwrap().iter().map(|p| p.file_name().unwrap().to_str().unwrap().to_owned()).collect();
    assert_eq!(names, ["clip_1.png", "clip_2.png", "clip_9.png", "clip_10.png", "clip_100.png"]);
    write_png(&dir.path().join("cover.png"), &f).unwrap();
    let e = list_frames(dir.path()).unwrap_err().to_string();
    assert!(e.contains("cover.png"), "{e}");
}

#[test]
fn png_is_exact_and_jpeg_is_close() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SyntheticConfig { min_frames: 1, max_frames: 1, width: 32, height: 24, ..Default::default() };
    let f = render(&cfg, 0).frames.remove(0);
    let p = dir.path().join("0001.png");
    write_png(&p, &f).unwrap();
    assert_eq!(read_image(&p).unwrap(), f);
    let j = dir.path().join("0001.jpg");
    write_jpeg(&j, &f, 2).unwrap();
    let g = read_image(&j).unwrap();
    assert_eq!((g.width, g.height), (32, 24));
    let mae = f.data.iter().zip(&g.data).map(|(&a, &b)| (a as f64 - b as f64).abs()).sum::<f64>() / f.data.len() as f64;
    assert!(mae < 6.0, "mean abs error {mae}");
    let bad = dir.path().join("0002.jpg");
    std::fs::write(&bad, b"\xFF\xD8 not really").unwrap();
    assert!(read_image(&bad).unwrap_err().to_string().contains("0002.jpg"));
    let txt = dir.path().join("0003.png");
    std::fs::write(&txt, b"hello").unwrap();
    assert!(read_image(&txt).is_err());
}
