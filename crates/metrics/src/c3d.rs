//! C3D fine-tuned on UCF101, the class-probability network of IS (UCF101): TGAN2's Chainer
//! `C3DVersion1UCF101` (Caffe `c3d_ucf101_finetune_whole_iter_20000`), which StyleGAN-V
//! ships as the TorchScript `c3d_ucf101.pt`. No copy of those weights can be fetched here:
//! the user supplies them.
//!
//! The network, as TGAN2 defines it:
//! 1. input RGB in [-1, 1], `[B, 3, 16, H, W]`; a fixed 1×1×1 conv swaps RGB→BGR and
//!    multiplies by 128;
//! 2. every frame is resized to 112×112 (Chainer `resize_images`: bilinear, align corners);
//! 3. the learned bias `mean.b` `[3, 16, 112, 112]` is added; TGAN2 sets it to
//!    `128 − mean2[:, :, 8:120, 8:120]` (the C3D mean volume, BGR);
//! 4. conv1a 64 → pool (1,2,2) → conv2a 128 → pool 2 → conv3a/b 256 → pool 2 → conv4a/b 512 →
//!    pool 2 → conv5a/b 512 → pool 2 → fc6 4096 → fc7 4096 → fc8 101 → softmax. Convs are
//!    3×3×3, stride 1, padding 1, each followed by ReLU (so are fc6 and fc7); dropout is off at
//!    evaluation. Pools are max pools with stride = kernel and Chainer's `cover_all=True`: an
//!    odd size keeps its last cell in a window of its own (pool5 maps 7 → 4, hence fc6's
//!    512·1·4·4 = 8192 inputs).
//!
//! Step 1's resize commutes with step 1's per-channel affine map, so [`preprocess`] resizes
//! the RGB frames and [`C3d::logits`] applies the swap, the scale and the mean.
//!
//! Weights file (safetensors, or the TorchScript `.pt` when its names are the same), PyTorch
//! layouts: `conv{1a,2a,3a,3b,4a,4b,5a,5b}.weight` `(Cout, Cin, 3, 3, 3)` and `.bias` `(Cout,)`;
//! `fc{6,7,8}.weight` `(out, in)` and `.bias` `(out,)`; `mean.b` `(3, T, S, S)`. Chainer's npz
//! and Caffe use the same layouts (`conv1a/W` → `conv1a.weight`, `conv1a/b` → `conv1a.bias`,
//! `mean/b` → `mean.b`).
//!
//! Legend: B batch, C channels, T time, H height, W width, S input side (112), K classes (101).

use std::path::Path;

use burn::tensor::activation::{relu, softmax};
use burn::tensor::module::max_pool2d;
use burn::tensor::ops::{ConvOptions, MaxPoolOptions};
use burn::tensor::{Device, Tensor, TensorData};
use latte_nn::conv;

use crate::i3d::pad_end;
use crate::tensors::{take_f32, TensorMap};
use crate::MetricsError;

/// Names of the eight 3×3×3 convolutions, in network order.
pub const CONVS: [&str; 8] = ["conv1a", "conv2a", "conv3a", "conv3b", "conv4a", "conv4b", "conv5a", "conv5b"];

/// The widths of a C3D; [`C3dConfig::ucf101`] is the published one, smaller ones exist for
/// tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct C3dConfig {
    /// Frames per clip (16).
    pub frames: usize,
    /// Side of the square frames the convs see (112).
    pub size: usize,
    /// Output channels of [`CONVS`], in order.
    pub channels: [usize; 8],
    /// Width of fc6 and fc7 (4096).
    pub hidden: usize,
    /// Classes of fc8 (101).
    pub classes: usize,
}

impl C3dConfig {
    /// `C3DVersion1UCF101` as TGAN2 and StyleGAN-V use it.
    pub fn ucf101() -> Self {
        C3dConfig { frames: 16, size: 112, channels: [64, 128, 256, 256, 512, 512, 512, 512], hidden: 4096, classes: 101 }
    }

    /// `(T, S)` after the five pools (a `cover_all` pool of stride 2 maps n → ⌈n/2⌉; pool1
    /// keeps time).
    pub fn pooled(&self) -> (usize, usize) {
        let t = (0..4).fold(self.frames, |n, _| n.div_ceil(2));
        let s = (0..5).fold(self.size, |n, _| n.div_ceil(2));
        (t, s)
    }

    /// Inputs of fc6: the flattened `(C, T, H, W)` of pool5.
    pub fn fc6_inputs(&self) -> usize {
        let (t, s) = self.pooled();
        self.channels[7] * t * s * s
    }
}

/// The network with its weights on a device.
#[derive(Clone, Debug)]
pub struct C3d {
    config: C3dConfig,
    /// `[Cout, Cin, 3, 3, 3]` and `[Cout]` per conv.
    convs: Vec<(Tensor<5>, Tensor<1>)>,
    /// `[in, out]` (transposed from PyTorch's `(out, in)`) and `[1, out]` for fc6, fc7, fc8.
    fcs: Vec<(Tensor<2>, Tensor<2>)>,
    /// `[1, 3, T, S, S]`, added to the BGR·128 input.
    mean: Tensor<5>,
}

impl C3d {
    /// Loads the UCF101 network from a safetensors file, or a TorchScript/`torch.save` zip
    /// (`.pt`, `.pth`) whose tensor names are the ones in the module docs.
    pub fn load(path: &Path, device: &Device) -> Result<Self, MetricsError> {
        let map = if path.extension().is_some_and(|e| e == "pt" || e == "pth") {
            crate::torchscript::read_file(path)?
        } else {
            crate::tensors::read_safetensors(path)?
        };
        Self::from_tensors(&map, path, C3dConfig::ucf101(), device).map_err(|e| match e {
            // A TorchScript port may name its modules otherwise: show what the file holds.
            MetricsError::MissingTensor { path, name } => {
                let found: Vec<&str> = map.keys().take(24).map(String::as_str).collect();
                MetricsError::Weights {
                    reason: format!(
                        "tensor `{name}` is missing; the file holds {} tensors: {}{}; rename them to the names in the latte_metrics::c3d docs",
                        map.len(),
                        found.join(", "),
                        if map.len() > found.len() { ", ..." } else { "" }
                    ),
                    path,
                }
            }
            other => other,
        })
    }

    /// Builds the network from named tensors, checking every shape against `config`.
    pub fn from_tensors(w: &TensorMap, src: &Path, config: C3dConfig, device: &Device) -> Result<Self, MetricsError> {
        let mut convs = Vec::with_capacity(CONVS.len());
        let mut cin = 3;
        for (name, &cout) in CONVS.iter().zip(&config.channels) {
            let k = take_f32(w, src, &format!("{name}.weight"), Some(&[cout, cin, 3, 3, 3]))?;
            let b = take_f32(w, src, &format!("{name}.bias"), Some(&[cout]))?;
            convs.push((
                Tensor::from_data(TensorData::new(k.to_vec(), [cout, cin, 3, 3, 3]), device),
                Tensor::from_data(TensorData::new(b.to_vec(), [cout]), device),
            ));
            cin = cout;
        }
        let dims =
            [("fc6", config.fc6_inputs(), config.hidden), ("fc7", config.hidden, config.hidden), ("fc8", config.hidden, config.classes)];
        let mut fcs = Vec::with_capacity(3);
        for (name, fan_in, fan_out) in dims {
            let k = take_f32(w, src, &format!("{name}.weight"), Some(&[fan_out, fan_in]))?;
            let b = take_f32(w, src, &format!("{name}.bias"), Some(&[fan_out]))?;
            let k = Tensor::<2>::from_data(TensorData::new(k.to_vec(), [fan_out, fan_in]), device);
            fcs.push((
                k.transpose(), // [in, out]
                Tensor::from_data(TensorData::new(b.to_vec(), [1, fan_out]), device),
            ));
        }
        let (t, s) = (config.frames, config.size);
        let m = take_f32(w, src, "mean.b", Some(&[3, t, s, s]))?;
        let mean = Tensor::from_data(TensorData::new(m.to_vec(), [1, 3, t, s, s]), device);
        Ok(C3d { config, convs, fcs, mean })
    }

    pub fn config(&self) -> &C3dConfig {
        &self.config
    }

    /// `x`: `[B, 3, T, S, S]` RGB in [-1, 1] (see [`preprocess`]) → `[B, K]` fc8 outputs.
    pub fn logits(&self, x: Tensor<5>) -> Result<Tensor<2>, MetricsError> {
        let [b, c, t, h, w] = x.dims();
        let cfg = &self.config;
        if c != 3 || t != cfg.frames || h != cfg.size || w != cfg.size {
            return Err(MetricsError::Input(format!(
                "C3D takes [B, 3, {}, {1}, {1}] clips, got [{b}, {c}, {t}, {h}, {w}]",
                cfg.frames, cfg.size
            )));
        }
        let bgr = Tensor::cat(vec![x.clone().narrow(1, 2, 1), x.clone().narrow(1, 1, 1), x.narrow(1, 0, 1)], 1); // [B, 3, T, S, S]
        let mut x = bgr * 128.0 + self.mean.clone();
        let options = ConvOptions::new([1, 1, 1], [1, 1, 1], [1, 1, 1], 1);
        for (i, (k, bias)) in self.convs.iter().enumerate() {
            x = relu(conv::conv3d(x, k.clone(), bias.clone(), options.clone())); // [B, C, T', H', W']
            match CONVS[i] {
                "conv1a" => x = max_pool_cover_all(x, false), // [B, 64, T, S/2, S/2]
                "conv2a" | "conv3b" | "conv4b" | "conv5b" => x = max_pool_cover_all(x, true),
                _ => {}
            }
        }
        let x = x.reshape([b, cfg.fc6_inputs()]); // [B, C·T·H·W] of pool5
        let (w6, b6) = &self.fcs[0];
        let x = relu(x.matmul(w6.clone()) + b6.clone()); // [B, 4096]
        let (w7, b7) = &self.fcs[1];
        let x = relu(x.matmul(w7.clone()) + b7.clone()); // [B, 4096]
        let (w8, b8) = &self.fcs[2];
        Ok(x.matmul(w8.clone()) + b8.clone()) // [B, K]
    }

    /// Class probabilities `[B, K]`: softmax of [`C3d::logits`], what IS consumes.
    pub fn probabilities(&self, x: Tensor<5>) -> Result<Tensor<2>, MetricsError> {
        Ok(softmax(self.logits(x)?, 1))
    }
}

/// Max pool of kernel = stride = 2 over H and W (and T when `temporal`), Chainer
/// `cover_all=True`: an odd size gets one zero cell at its end, which equals Chainer's -inf
/// padding because every pooled tensor follows a ReLU (≥ 0).
pub fn max_pool_cover_all(x: Tensor<5>, temporal: bool) -> Tensor<5> {
    let [b, c, t, h, w] = x.dims();
    let (h2, w2) = (h.div_ceil(2), w.div_ceil(2));
    let x = pad_end(pad_end(x, 3, h % 2), 4, w % 2); // [B, C, T, 2·H', 2·W']
    let y = max_pool2d(x.reshape([b, c * t, 2 * h2, 2 * w2]), MaxPoolOptions::new([2, 2]).with_stride([2, 2])).reshape([b, c, t, h2, w2]);
    if !temporal {
        return y;
    }
    let t2 = t.div_ceil(2);
    pad_end(y, 2, t % 2)
        .reshape([b, c, t2, 2, h2 * w2])
        .max_dim(3) // [B, C, T', 1, H'·W']
        .reshape([b, c, t2, h2, w2])
}

/// Turns uint8 clips `[B][T, H, W, 3]` into the network input `[B, 3, T, S, S]`: `x/255·2−1`
/// in float32, then each frame resized to `S×S` with align-corners bilinear (Chainer's
/// `resize_images`) when it is not that size already.
///
/// The uint8 → [-1, 1] map is how StyleGAN-V's wrapper must feed TGAN2's network (it passes
/// uint8 clips to the TorchScript file); the TorchScript itself was not inspected.
pub fn preprocess(clips: &[&[u8]], t: usize, h: usize, w: usize, config: &C3dConfig, device: &Device) -> Result<Tensor<5>, MetricsError> {
    if t != config.frames {
        return Err(MetricsError::Input(format!("C3D takes clips of exactly {} frames, got {t}", config.frames)));
    }
    let s = config.size;
    let frame = h * w * 3;
    let mut out = Vec::with_capacity(clips.len() * 3 * t * s * s);
    for (i, clip) in clips.iter().enumerate() {
        if clip.len() != t * frame || frame == 0 {
            return Err(MetricsError::Input(format!("clip {i} holds {} bytes, expected {t}×{h}×{w}×3 (and H, W ≥ 1)", clip.len())));
        }
        let scaled: Vec<f32> = clip.iter().map(|&v| v as f32 / 255.0 * 2.0 - 1.0).collect();
        let mut planes = vec![0f32; 3 * t * s * s];
        for f in 0..t {
            let src = &scaled[f * frame..(f + 1) * frame];
            let resized;
            let img = if h == s && w == s {
                src
            } else {
                resized = crate::resize::bilinear_align_corners(src, h, w, 3, s, s);
                &resized[..]
            };
            for p in 0..s * s {
                for ch in 0..3 {
                    planes[(ch * t + f) * s * s + p] = img[p * 3 + ch];
                }
            }
        }
        out.extend_from_slice(&planes);
    }
    Ok(Tensor::from_data(TensorData::new(out, [clips.len(), 3, t, s, s]), device))
}

/// What to tell a user who has no C3D weights: they cannot be fetched, only supplied.
pub const HOW_TO_GET: &str = "C3D-UCF101 weights are published nowhere this toolkit can fetch from: obtain StyleGAN-V's `c3d_ucf101.pt` (https://www.dropbox.com/s/jxpu7avzdc9n97q/c3d_ucf101.pt) or TGAN2's Chainer `conv3d_deepnetA_ucf.npz` with `mean2.npz`, and save them as a safetensors file with the tensors `conv{1a,2a,3a,3b,4a,4b,5a,5b}.{weight,bias}`, `fc{6,7,8}.{weight,bias}` (PyTorch layouts) and `mean.b` (3×16×112×112 = 128 − mean2[:, :, 8:120, 8:120], BGR); a `.pt` with these names is read directly";
