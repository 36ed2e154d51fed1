//! Separable bilinear resizes of channels-last images (`H×W×C`, float32), the two
//! conventions the metric networks' reference code uses.

/// One output position: the two source indices and the weight of the second.
fn taps(out: usize, input: usize, coord: impl Fn(usize) -> f64) -> Vec<(usize, usize, f64)> {
    (0..out)
        .map(|i| {
            let src = coord(i).max(0.0);
            let lo = (src.floor() as usize).min(input - 1);
            let hi = (lo + 1).min(input - 1);
            (lo, hi, src - lo as f64)
        })
        .collect()
}

fn resize(src: &[f32], h: usize, w: usize, c: usize, ty: &[(usize, usize, f64)], tx: &[(usize, usize, f64)]) -> Vec<f32> {
    let mut out = Vec::with_capacity(ty.len() * tx.len() * c);
    for &(y0, y1, fy) in ty {
        for &(x0, x1, fx) in tx {
            for ch in 0..c {
                let p = |y: usize, x: usize| src[(y * w + x) * c + ch] as f64;
                let top = p(y0, x0) + (p(y0, x1) - p(y0, x0)) * fx;
                let bottom = p(y1, x0) + (p(y1, x1) - p(y1, x0)) * fx;
                out.push((top + (bottom - top) * fy) as f32);
            }
        }
    }
    debug_assert_eq!(out.len(), ty.len() * tx.len() * c);
    let _ = h;
    out
}

/// PyTorch `interpolate(mode="bilinear", align_corners=False, antialias=False)`: output
/// index `i` samples `(i + 0.5)·in/out − 0.5`, clamped at 0.
pub fn bilinear_half_pixel(src: &[f32], h: usize, w: usize, c: usize, out_h: usize, out_w: usize) -> Vec<f32> {
    let ty = taps(out_h, h, |i| (i as f64 + 0.5) * h as f64 / out_h as f64 - 0.5);
    let tx = taps(out_w, w, |i| (i as f64 + 0.5) * w as f64 / out_w as f64 - 0.5);
    resize(src, h, w, c, &ty, &tx)
}

/// TF1's legacy `resize_bilinear(align_corners=False, half_pixel_centers=False)`, which the
/// NVIDIA/fid-helper "nv_bilinear" resize reproduces: output index `i` samples `i·in/out`.
pub fn bilinear_tf_legacy(src: &[f32], h: usize, w: usize, c: usize, out_h: usize, out_w: usize) -> Vec<f32> {
    let ty = taps(out_h, h, |i| i as f64 * h as f64 / out_h as f64);
    let tx = taps(out_w, w, |i| i as f64 * w as f64 / out_w as f64);
    resize(src, h, w, c, &ty, &tx)
}

/// Bilinear with `align_corners=True` (Chainer's `F.resize_images`, which TGAN2's C3D uses):
/// output index `i` samples `i·(in−1)/(out−1)`, so the corner pixels map onto each other.
pub fn bilinear_align_corners(src: &[f32], h: usize, w: usize, c: usize, out_h: usize, out_w: usize) -> Vec<f32> {
    let scale = |input: usize, out: usize| {
        if out > 1 {
            (input - 1) as f64 / (out - 1) as f64
        } else {
            0.0
        }
    };
    let (sy, sx) = (scale(h, out_h), scale(w, out_w));
    let ty = taps(out_h, h, |i| i as f64 * sy);
    let tx = taps(out_w, w, |i| i as f64 * sx);
    resize(src, h, w, c, &ty, &tx)
}
