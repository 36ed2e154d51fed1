//! `loss.png`: the training loss per step (light) and its moving average (dark) on a log axis,
//! with decade grid lines and the step/loss ranges printed in a tiny built-in digit font.

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

use crate::TrainError;

const W: usize = 800;
const H: usize = 400;
const LEFT: usize = 70;
const RIGHT: usize = 20;
const TOP: usize = 20;
const BOTTOM: usize = 40;

struct Canvas {
    px: Vec<u8>,
}

impl Canvas {
    fn new() -> Self {
        Self { px: vec![255; W * H * 3] }
    }

    fn set(&mut self, x: i64, y: i64, c: [u8; 3]) {
        if (0..W as i64).contains(&x) && (0..H as i64).contains(&y) {
            let i = (y as usize * W + x as usize) * 3;
            self.px[i..i + 3].copy_from_slice(&c);
        }
    }

    fn line(&mut self, (x0, y0): (i64, i64), (x1, y1): (i64, i64), c: [u8; 3]) {
        // Bresenham.
        let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
        let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
        let (mut x, mut y, mut err) = (x0, y0, dx + dy);
        loop {
            self.set(x, y, c);
            if x == x1 && y == y1 {
                break;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x += sx;
            }
            if e2 <= dx {
                err += dx;
                y += sy;
            }
        }
    }

    /// Text in a 3×5 pixel font scaled by 2 (digits, '.', '-', 'e', 'k').
    fn text(&mut self, x: i64, y: i64, s: &str, c: [u8; 3]) {
        for (n, ch) in s.chars().enumerate() {
            let glyph = glyph(ch);
            for (row, bits) in glyph.iter().enumerate() {
                for col in 0..3 {
                    if bits & (0b100 >> col) != 0 {
                        for (ox, oy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                            self.set(x + n as i64 * 8 + col * 2 + ox, y + row as i64 * 2 + oy, c);
                        }
                    }
                }
            }
        }
    }
}

fn glyph(c: char) -> [u8; 5] {
    match c {
        '0' => [0b111, 0b101, 0b101, 0b101, 0b111],
        '1' => [0b010, 0b110, 0b010, 0b010, 0b111],
        '2' => [0b111, 0b001, 0b111, 0b100, 0b111],
        '3' => [0b111, 0b001, 0b111, 0b001, 0b111],
        '4' => [0b101, 0b101, 0b111, 0b001, 0b001],
        '5' => [0b111, 0b100, 0b111, 0b001, 0b111],
        '6' => [0b111, 0b100, 0b111, 0b101, 0b111],
        '7' => [0b111, 0b001, 0b010, 0b010, 0b010],
        '8' => [0b111, 0b101, 0b111, 0b101, 0b111],
        '9' => [0b111, 0b101, 0b111, 0b001, 0b111],
        '.' => [0, 0, 0, 0, 0b010],
        '-' => [0, 0, 0b111, 0, 0],
        'e' => [0, 0b111, 0b111, 0b100, 0b111],
        'k' => [0b100, 0b101, 0b110, 0b101, 0b101],
        _ => [0; 5],
    }
}

fn label(v: f64) -> String {
    if v != 0.0 && (v.abs() < 1e-2 || v.abs() >= 1e4) {
        format!("{v:.1e}")
    } else {
        format!("{v:.3}")
    }
}

/// Writes the plot of `(step, loss)` points to `path` (PNG, written atomically).
pub fn plot_loss(points: &[(u64, f64)], path: &Path) -> Result<(), TrainError> {
    let pts: Vec<(u64, f64)> = points.iter().copied().filter(|(_, l)| l.is_finite()).collect();
    let mut cv = Canvas::new();
    let (x0, x1, y0, y1) = (LEFT as i64, (W - RIGHT) as i64, TOP as i64, (H - BOTTOM) as i64);
    let axis = [0, 0, 0];
    cv.line((x0, y1), (x1, y1), axis);
    cv.line((x0, y0), (x0, y1), axis);
    if !pts.is_empty() {
        let log = pts.iter().all(|&(_, l)| l > 0.0);
        let f = |v: f64| if log { v.log10() } else { v };
        let (lo, hi) = pts.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &(_, l)| (a.min(f(l)), b.max(f(l))));
        let (lo, hi) = if hi - lo < 1e-9 { (lo - 0.5, hi + 0.5) } else { (lo, hi) };
        let (s0, s1) = (pts[0].0 as f64, pts[pts.len() - 1].0.max(pts[0].0 + 1) as f64);
        let px = |s: u64| x0 + ((s as f64 - s0) / (s1 - s0) * (x1 - x0) as f64).round() as i64;
        let py = |l: f64| y1 - ((f(l) - lo) / (hi - lo) * (y1 - y0) as f64).round() as i64;
        if log {
            for d in lo.ceil() as i64..=hi.floor() as i64 {
                let y = py(10f64.powi(d as i32));
                cv.line((x0 + 1, y), (x1, y), [225, 225, 225]);
            }
        }
        let mut last: Option<(i64, i64)> = None;
        for &(s, l) in &pts {
            let a = (px(s), py(l));
            match last {
                Some(p) => cv.line(p, a, [160, 190, 235]),
                None => cv.set(a.0, a.1, [160, 190, 235]),
            }
            last = Some(a);
        }
        // The smoothed curve on top.
        // Bias-corrected exponential average (as Adam's moments), so it starts on the data.
        let (mut smooth, mut weight) = (0.0, 0.0);
        let mut last: Option<(i64, i64)> = None;
        for &(s, l) in &pts {
            smooth = 0.95 * smooth + 0.05 * l;
            weight = 0.95 * weight + 0.05;
            let b = (px(s), py(smooth / weight));
            if let Some(p) = last {
                cv.line(p, b, [20, 60, 160]);
            }
            last = Some(b);
        }
        let inv = |v: f64| if log { 10f64.powf(v) } else { v };
        cv.text(4, y0, &label(inv(hi)), axis);
        cv.text(4, y1 - 10, &label(inv(lo)), axis);
        cv.text(x0, y1 + 10, &pts[0].0.to_string(), axis);
        let last_step = pts[pts.len() - 1].0.to_string();
        cv.text(x1 - 8 * last_step.len() as i64, y1 + 10, &last_step, axis);
    }
    let tmp = path.with_extension("png.tmp");
    let file = File::create(&tmp).map_err(TrainError::io(&tmp))?;
    let mut enc = png::Encoder::new(BufWriter::new(file), W as u32, H as u32);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let png_err = |e: png::EncodingError| TrainError::Io { path: tmp.clone(), source: std::io::Error::other(e) };
    let mut writer = enc.write_header().map_err(png_err)?;
    writer.write_image_data(&cv.px).map_err(png_err)?;
    writer.finish().map_err(png_err)?;
    std::fs::rename(&tmp, path).map_err(TrainError::io(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plot_draws_both_curves_on_an_800x400_png() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("loss.png");
        let pts: Vec<(u64, f64)> = (1..=300).map(|s| (s, 2.0 / (s as f64).sqrt() + 0.05 * ((s * 7919 % 13) as f64 / 13.0))).collect();
        plot_loss(&pts, &path).unwrap();
        if let Ok(keep) = std::env::var("LATTE_KEEP_PLOT") {
            std::fs::copy(&path, keep).unwrap();
        }
        let decoder = png::Decoder::new(std::io::BufReader::new(File::open(&path).unwrap()));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!((info.width, info.height), (W as u32, H as u32));
        let has = |c: [u8; 3]| buf.chunks_exact(3).any(|p| p == c);
        assert!(has([160, 190, 235]) && has([20, 60, 160]), "both curves are drawn");
        // Empty input still gives a valid (axes only) image.
        plot_loss(&[], &path).unwrap();
    }
}
