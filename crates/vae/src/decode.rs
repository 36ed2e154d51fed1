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
            let decoded = self.decode_rgb8(flat.clone().narrow(0, start, len))?;
            (height, width) = (decoded.height, decoded.width);
            frames.extend(decoded.frames);
            start += len;
        }
        let mut it = frames.into_iter();
        Ok((0..b).map(|_| Rgb8Video { width, height, frames: it.by_ref().take(f).collect() }).collect())
    }

    /// Decodes unscaled latents (n, C, h, w) to n uint8 frames, converted by [`to_u8`].
    pub fn decode_rgb8(&self, z: Tensor<4>) -> Result<Rgb8Video, VaeError> {
        let img = self.decode(z); // n 3 H W
        let [n, ch, hh, ww] = img.dims();
        if ch != 3 {
            return Err(VaeError::Input {
                shape: vec![n, ch, hh, ww],
                reason: format!("the VAE decodes to {ch} channels; RGB frames need 3"),
            });
        }
        let v = img
            .into_data()
            .try_into_vec::<f32>()
            .map_err(|e| VaeError::Input { shape: vec![n, ch, hh, ww], reason: format!("reading decoded frames: {e:?}") })?;
        let frames = v
            .chunks(3 * hh * ww)
            .map(|planes| {
                let (r, g, bl) = (&planes[..hh * ww], &planes[hh * ww..2 * hh * ww], &planes[2 * hh * ww..]);
                (0..hh * ww).flat_map(|p| [to_u8(r[p]), to_u8(g[p]), to_u8(bl[p])]).collect()
            })
            .collect();
        Ok(Rgb8Video { width: ww, height: hh, frames })
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
