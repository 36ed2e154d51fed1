//! Latents back to 8-bit RGB video frames, as the reference's sampling script writes them.
//!
//! Shape legend: B videos, F frames, C latent channels, h, w latent side, H, W pixel side.

use burn::tensor::Tensor;

use crate::{AutoencoderKL, VaeError};

/// The reference's conversion of a decoded value in [-1, 1] to uint8:
/// `((x·0.5 + 0.5)·255 + 0.5).clamp(0, 255)` in float32, then truncation.
pub fn to_u8(x: f32) -> u8 {
    ((x * 0.5 + 0.5) * 255.0 + 0.5).clamp(0.0, 255.0) as u8
}

/// One decoded video: `frames[f]` is H×W×3 bytes, row-major RGB.
#[derive(Clone, Debug, PartialEq)]
pub struct Rgb8Video {
    pub width: usize,
    pub height: usize,
    pub frames: Vec<Vec<u8>>,
}

impl AutoencoderKL {
    /// Decodes latents (B, F, C, h, w), divided by `scale_factor` first, frame by frame,
    /// `decode_batch` frames at a time (bounding memory without changing the result).
    pub fn decode_videos(&self, latents: Tensor<5>, scale_factor: f64, decode_batch: usize) -> Result<Vec<Rgb8Video>, VaeError> {
        let [b, f, c, h, w] = latents.dims();
        let flat = latents.reshape([b * f, c, h, w]).div_scalar(scale_factor as f32); // BF C h w
        let mut frames = Vec::with_capacity(b * f);
        let (mut height, mut width) = (0, 0);
        let mut start = 0;
        while start < b * f {
            let len = decode_batch.max(1).min(b * f - start);
            let img = self.decode(flat.clone().narrow(0, start, len)); // n 3 H W
            let [n, ch, hh, ww] = img.dims();
            if ch != 3 {
                return Err(VaeError::Input {
                    shape: vec![b, f, c, h, w],
                    reason: format!("the VAE decodes to {ch} channels; RGB videos need 3"),
                });
            }
            (height, width) = (hh, ww);
            let v = img
                .into_data()
                .try_into_vec::<f32>()
                .map_err(|e| VaeError::Input { shape: vec![n, ch, hh, ww], reason: format!("reading decoded frames: {e:?}") })?;
            for i in 0..n {
                let plane = |k: usize| &v[(i * 3 + k) * hh * ww..(i * 3 + k + 1) * hh * ww];
                let (r, g, bl) = (plane(0), plane(1), plane(2));
                let mut data = Vec::with_capacity(hh * ww * 3);
                for p in 0..hh * ww {
                    data.extend([to_u8(r[p]), to_u8(g[p]), to_u8(bl[p])]);
                }
                frames.push(data);
            }
            start += len;
        }
        let mut it = frames.into_iter();
        Ok((0..b).map(|_| Rgb8Video { width, height, frames: it.by_ref().take(f).collect() }).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uint8_conversion_is_the_references() {
        // ((x·0.5 + 0.5)·255 + 0.5) clamped, then truncated.
        for (x, want) in [(-1.0f32, 0u8), (1.0, 255), (0.0, 128), (-2.0, 0), (3.0, 255), (0.5, 191), (-0.9961, 0), (-0.996, 1)] {
            assert_eq!(to_u8(x), want, "x = {x}");
        }
    }
}
