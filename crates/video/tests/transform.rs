use latte_video::transform::half_round_even;
use latte_video::{Frame, SpatialTransform};

/// Independent f64 evaluation of torch's `F.interpolate(bilinear, align_corners=False)` at one
/// output pixel: `src = max(0, ratio * (dst + 0.5) - 0.5)`, neighbours `floor(src)` and the
/// next one clamped to the edge.
fn torch_bilinear_at(img: &[f64], w: usize, h: usize, ratio_x: f64, ratio_y: f64, ox: usize, oy: usize) -> f64 {
    let coord = |ratio: f64, d: usize, n: usize| {
        let s = (ratio * (d as f64 + 0.5) - 0.5).max(0.0);
        let i0 = (s.floor() as usize).min(n - 1);
        let i1 = (i0 + 1).min(n - 1);
        (i0, i1, s - i0 as f64)
    };
    let (x0, x1, fx) = coord(ratio_x, ox, w);
    let (y0, y1, fy) = coord(ratio_y, oy, h);
    let p = |x: usize, y: usize| img[y * w + x];
    (1.0 - fy) * ((1.0 - fx) * p(x0, y0) + fx * p(x1, y0)) + fy * ((1.0 - fx) * p(x0, y1) + fx * p(x1, y1))
}

fn test_frame(w: usize, h: usize) -> Frame {
    let data = (0..w * h * 3).map(|i| ((i * 37 + (i / 7) * 11) % 256) as u8).collect();
    Frame::new(w, h, data)
}

fn channel(f: &Frame, c: usize) -> Vec<f64> {
    f.data.iter().skip(c).step_by(3).map(|&v| v as f64).collect()
}

#[test]
fn known_torch_upsampling_values() {
    // torch: F.interpolate([[0,1],[2,3]] (scaled by 40), size=(4,4), bilinear) =
    // [[0,.25,.75,1],[.5,.75,1.25,1.5],[1.5,1.75,2.25,2.5],[2,2.25,2.75,3]] * 40
    let px = [0u8, 40, 80, 120];
    let f = Frame::new(2, 2, px.iter().flat_map(|&v| [v, v, v]).collect());
    let out = SpatialTransform::CropThenResize(4).apply_f32(&f).unwrap();
    let want = [0.0, 0.25, 0.75, 1.0, 0.5, 0.75, 1.25, 1.5, 1.5, 1.75, 2.25, 2.5, 2.0, 2.25, 2.75, 3.0];
    for (i, w) in want.iter().enumerate() {
        assert!((out[i * 3] - w * 40.0).abs() < 1e-4, "pixel {i}: {} vs {}", out[i * 3], w * 40.0);
    }
}

#[test]
fn banker_rounding_of_crop_offsets() {
    // round(42.5) = 42, round(99.5) = 100, round(0.5) = 0, round(1.5) = 2
    assert_eq!(half_round_even(85), 42);
    assert_eq!(half_round_even(199), 100);
    assert_eq!(half_round_even(1), 0);
    assert_eq!(half_round_even(3), 2);
    assert_eq!(half_round_even(4), 2);
}

#[test]
fn resize_then_crop_matches_an_independent_computation() {
    // 30x20 -> short side 16: scale 0.8, resized 24x16, crop x offset round(8/2)=4.
    // 40x30 -> short side 16: scale 16/30, resized floor(40*16/30)=21x16, x offset round(2.5)=2.
    for (w, h, s) in [(30usize, 20usize, 16usize), (40, 30, 16), (20, 30, 12), (17, 23, 8), (12, 10, 24)] {
        let f = test_frame(w, h);
        let t = SpatialTransform::ResizeThenCrop(s);
        let out = t.apply_f32(&f).unwrap();
        let out_u8 = t.apply(&f).unwrap();
        assert_eq!((out_u8.width, out_u8.height), (s, s));
        let scale = s as f64 / w.min(h) as f64;
        let long = |n: usize| (n as f64 * scale).floor() as usize;
        let (rw, rh) = if w <= h { (s, long(h)) } else { (long(w), s) };
        let (x0, y0) = (half_round_even(rw - s), half_round_even(rh - s));
        for c in 0..3 {
            let img = channel(&f, c);
            for oy in 0..s {
                for ox in 0..s {
                    let want = torch_bilinear_at(&img, w, h, 1.0 / scale, 1.0 / scale, ox + x0, oy + y0);
                    let got = out[(oy * s + ox) * 3 + c] as f64;
                    assert!((got - want).abs() < 2e-3, "{w}x{h}->{s} ({ox},{oy},{c}): {got} vs {want}");
                    let got8 = out_u8.data[(oy * s + ox) * 3 + c] as f64;
                    assert!((got8 - want).abs() <= 0.5 + 2e-3, "rounding");
                }
            }
        }
    }
}

#[test]
fn crop_then_resize_matches_an_independent_computation() {
    for (w, h, s) in [(30usize, 20usize, 16usize), (21, 40, 16), (25, 25, 10)] {
        let f = test_frame(w, h);
        let out = SpatialTransform::CropThenResize(s).apply_f32(&f).unwrap();
        let side = w.min(h);
        let (cx, cy) = (half_round_even(w - side), half_round_even(h - side));
        for c in 0..3 {
            let img = channel(&f, c);
            let crop: Vec<f64> = (0..side).flat_map(|y| (0..side).map(move |x| (x, y))).map(|(x, y)| img[(y + cy) * w + x + cx]).collect();
            let ratio = side as f64 / s as f64;
            for oy in 0..s {
                for ox in 0..s {
                    let want = torch_bilinear_at(&crop, side, side, ratio, ratio, ox, oy);
                    let got = out[(oy * s + ox) * 3 + c] as f64;
                    assert!((got - want).abs() < 2e-3, "{w}x{h}->{s} ({ox},{oy},{c}): {got} vs {want}");
                }
            }
        }
    }
}

#[test]
fn flip_mirrors_and_flipped_transform_flips_the_source_first() {
    let f = test_frame(5, 3);
    let g = f.flip_horizontal();
    for y in 0..3 {
        for x in 0..5 {
            assert_eq!(g.pixel(x, y), f.pixel(4 - x, y));
        }
    }
    assert_eq!(g.flip_horizontal(), f);
    let t = SpatialTransform::ResizeThenCrop(8);
    let big = test_frame(13, 10);
    assert_eq!(t.apply_flipped(&big).unwrap(), t.apply(&big.flip_horizontal()).unwrap());
    assert_eq!(SpatialTransform::Identity.apply_flipped(&big).unwrap(), big.flip_horizontal());
    assert_eq!(SpatialTransform::Identity.apply(&big).unwrap(), big);
}

#[test]
fn output_sizes_for_the_papers_datasets() {
    // UCF101 320x240 -> 341x256 -> 256x256; FaceForensics 1280x720 -> 455x256
    assert_eq!(SpatialTransform::ResizeThenCrop(256).output_size(320, 240).unwrap(), (256, 256));
    assert_eq!(SpatialTransform::ResizeThenCrop(256).output_size(1280, 720).unwrap(), (256, 256));
    assert_eq!(SpatialTransform::CropThenResize(256).output_size(640, 360).unwrap(), (256, 256));
    assert_eq!(SpatialTransform::Identity.output_size(256, 256).unwrap(), (256, 256));
    // floor(49 * 256/49) = 255 in float64; the short side is pinned to the target
    for side in 1..=600usize {
        for target in [16usize, 64, 256] {
            assert_eq!(SpatialTransform::ResizeThenCrop(target).output_size(side + side / 3, side).unwrap(), (target, target), "{side}");
        }
    }
}
