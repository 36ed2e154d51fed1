//! The reference's spatial transforms (spec §4.3), reproducing `F.interpolate(mode='bilinear',
//! align_corners=False)` without antialiasing: its output size rule, its source-coordinate
//! mapping (float32, clamped at 0) and its neighbour/weight rule. Results are rounded to uint8
//! once at the end (the reference keeps floats; the difference is at most half a level).

use crate::frame::Frame;

/// Per-dataset spatial transform.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpatialTransform {
    /// `UCFCenterCropVideo(size)` (FaceForensics, UCF101): scale the short side to `size` with
    /// `scale_factor = size / min(H, W)`, then centre-crop `size × size` with banker's rounding.
    ResizeThenCrop(usize),
    /// `CenterCropResizeVideo(size)` (SkyTimelapse): centre-crop the short-side square, then
    /// resize it to `size × size`.
    CropThenResize(usize),
    /// Frames are used as they are (Taichi-HD, already 256).
    Identity,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TransformError {
    #[error("frame {width}x{height} is smaller than the crop {size}x{size}")]
    TooSmall { width: usize, height: usize, size: usize },
    #[error("frame size {width}x{height} differs from the clip's first frame {first_w}x{first_h}")]
    SizeChanged { width: usize, height: usize, first_w: usize, first_h: usize },
}

/// Python's `round` (half to even) of `x / 2` for a non-negative integer `x`.
pub fn half_round_even(x: usize) -> usize {
    let q = x / 2;
    if x % 2 == 1 && q % 2 == 1 {
        q + 1
    } else {
        q
    }
}

/// One axis of torch's bilinear interpolation: for each output index, the two source indices
/// and their weights.
#[derive(Clone, Debug)]
struct Axis {
    i0: Vec<usize>,
    i1: Vec<usize>,
    w0: Vec<f32>,
    w1: Vec<f32>,
}

impl Axis {
    /// `scale` is the source/output ratio as torch computes it in float32: `1 / scale_factor`
    /// when a scale factor was given, else `in / out`. Only output indices `from..from + len`
    /// are built (a crop after the resize).
    fn new(in_size: usize, scale: f32, from: usize, len: usize) -> Self {
        let mut a =
            Axis { i0: Vec::with_capacity(len), i1: Vec::with_capacity(len), w0: Vec::with_capacity(len), w1: Vec::with_capacity(len) };
        for dst in from..from + len {
            let src = (scale * (dst as f32 + 0.5) - 0.5).max(0.0);
            let i0 = (src.floor() as usize).min(in_size - 1);
            let l1 = (src - i0 as f32).clamp(0.0, 1.0);
            let i1 = if i0 < in_size - 1 { i0 + 1 } else { i0 };
            a.i0.push(i0);
            a.i1.push(i1);
            a.w0.push(1.0 - l1);
            a.w1.push(l1);
        }
        a
    }
}

/// Bilinear resampling of `src` onto the window `(x0, y0, out_w, out_h)` of a virtual output
/// grid, with per-axis source/output ratios; float result, `out_h × out_w × 3`.
fn resample_f32(src: &Frame, scale_x: f32, scale_y: f32, x0: usize, y0: usize, out_w: usize, out_h: usize) -> Vec<f32> {
    let ax = Axis::new(src.width, scale_x, x0, out_w);
    let ay = Axis::new(src.height, scale_y, y0, out_h);
    let mut out = Vec::with_capacity(out_w * out_h * 3);
    let stride = src.width * 3;
    for y in 0..out_h {
        let (r0, r1) = (&src.data[ay.i0[y] * stride..][..stride], &src.data[ay.i1[y] * stride..][..stride]);
        let (wy0, wy1) = (ay.w0[y], ay.w1[y]);
        for x in 0..out_w {
            let (c0, c1) = (ax.i0[x] * 3, ax.i1[x] * 3);
            let (wx0, wx1) = (ax.w0[x], ax.w1[x]);
            for c in 0..3 {
                let v =
                    wy0 * (wx0 * r0[c0 + c] as f32 + wx1 * r0[c1 + c] as f32) + wy1 * (wx0 * r1[c0 + c] as f32 + wx1 * r1[c1 + c] as f32);
                out.push(v);
            }
        }
    }
    out
}

fn to_u8(v: &[f32]) -> Vec<u8> {
    v.iter().map(|&x| x.round().clamp(0.0, 255.0) as u8).collect()
}

/// The geometry of one transform for a given input size.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Plan {
    /// Crop of the input before resampling (CropThenResize), else the whole frame.
    crop_in: (usize, usize, usize, usize),
    scale_x: f32,
    scale_y: f32,
    /// Window of the resampled grid that is kept.
    x0: usize,
    y0: usize,
    out: usize,
}

impl SpatialTransform {
    /// Output `(width, height)` for an input of `width × height`.
    pub fn output_size(&self, width: usize, height: usize) -> Result<(usize, usize), TransformError> {
        match self {
            SpatialTransform::Identity => Ok((width, height)),
            SpatialTransform::ResizeThenCrop(s) | SpatialTransform::CropThenResize(s) => {
                self.plan(width, height)?;
                Ok((*s, *s))
            }
        }
    }

    fn plan(&self, width: usize, height: usize) -> Result<Plan, TransformError> {
        match *self {
            SpatialTransform::Identity => Ok(Plan { crop_in: (0, 0, width, height), scale_x: 1.0, scale_y: 1.0, x0: 0, y0: 0, out: 0 }),
            SpatialTransform::ResizeThenCrop(size) => {
                // Python: scale = size / min(H, W); out = floor(float(in) * scale).
                let scale = size as f64 / width.min(height) as f64;
                // The short side is `size` by intent; floor(in * size / in) is one less for some
                // sizes (49 -> 255), where the reference's crop would fail, so it is pinned.
                let rw = if width <= height { size } else { (width as f64 * scale).floor() as usize };
                let rh = if height <= width { size } else { (height as f64 * scale).floor() as usize };
                if rw < size || rh < size || width == 0 || height == 0 {
                    return Err(TransformError::TooSmall { width: rw, height: rh, size });
                }
                let inv = (1.0 / scale) as f32;
                Ok(Plan {
                    crop_in: (0, 0, width, height),
                    scale_x: inv,
                    scale_y: inv,
                    x0: half_round_even(rw - size),
                    y0: half_round_even(rh - size),
                    out: size,
                })
            }
            SpatialTransform::CropThenResize(size) => {
                let side = width.min(height);
                if side == 0 {
                    return Err(TransformError::TooSmall { width, height, size });
                }
                let cx = half_round_even(width - side);
                let cy = half_round_even(height - side);
                let s = side as f32 / size as f32;
                Ok(Plan { crop_in: (cx, cy, side, side), scale_x: s, scale_y: s, x0: 0, y0: 0, out: size })
            }
        }
    }

    /// Applies the transform to one frame, in float32 (before rounding to uint8).
    pub fn apply_f32(&self, frame: &Frame) -> Result<Vec<f32>, TransformError> {
        let p = self.plan(frame.width, frame.height)?;
        if let SpatialTransform::Identity = self {
            return Ok(frame.data.iter().map(|&v| v as f32).collect());
        }
        let (cx, cy, cw, ch) = p.crop_in;
        let src = if (cx, cy, cw, ch) == (0, 0, frame.width, frame.height) { None } else { Some(frame.crop(cx, cy, cw, ch)) };
        let src = src.as_ref().unwrap_or(frame);
        Ok(resample_f32(src, p.scale_x, p.scale_y, p.x0, p.y0, p.out, p.out))
    }

    /// Applies the transform to one frame.
    pub fn apply(&self, frame: &Frame) -> Result<Frame, TransformError> {
        if let SpatialTransform::Identity = self {
            return Ok(frame.clone());
        }
        let v = self.apply_f32(frame)?;
        let (w, h) = self.output_size(frame.width, frame.height)?;
        Ok(Frame::new(w, h, to_u8(&v)))
    }

    /// The reference's order for a flipped clip (`RandomHorizontalFlip` before the crop):
    /// flip the source frame, then transform. Torch's resampling is not mirror-symmetric
    /// (`W != rw / scale_factor`) and an odd crop margin rounds the other way, so this is not
    /// the mirror of [`SpatialTransform::apply`]; the difference is below one resampled pixel.
    pub fn apply_flipped(&self, frame: &Frame) -> Result<Frame, TransformError> {
        self.apply(&frame.flip_horizontal())
    }
}
