//! The three feature networks behind one call: a clip (`T×H×W×3` uint8) or an image
//! (`H×W×3`) in, one feature row out, each network with its own preprocessing.

use std::path::Path;

use burn::tensor::Device;

use crate::c3d::{self, C3d};
use crate::i3d::{self, I3d};
use crate::inception::{self, InceptionV3};
use crate::MetricsError;

/// Which feature network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Net {
    /// I3D (FVD): a clip → pre-softmax logits averaged over time `(400,)`.
    I3d,
    /// InceptionV3 (FID): an image → pool3 features `(2048,)`.
    Inception,
    /// C3D-UCF101 (IS): a 16-frame clip → softmax class probabilities `(101,)`.
    C3d,
}

impl Net {
    pub fn parse(s: &str) -> Option<Net> {
        match s {
            "i3d" => Some(Net::I3d),
            "inception" => Some(Net::Inception),
            "c3d" => Some(Net::C3d),
            _ => None,
        }
    }

    /// The inverse of [`Net::parse`]: `i3d`, `inception` or `c3d`.
    pub fn key(self) -> &'static str {
        match self {
            Net::I3d => "i3d",
            Net::Inception => "inception",
            Net::C3d => "c3d",
        }
    }

    /// The network's usual name.
    pub fn name(self) -> &'static str {
        match self {
            Net::I3d => "I3D",
            Net::Inception => "InceptionV3",
            Net::C3d => "C3D",
        }
    }

    /// Whether the network takes clips (`T×H×W×3`) rather than images (`H×W×3`).
    pub fn takes_clips(self) -> bool {
        matches!(self, Net::I3d | Net::C3d)
    }
}

/// A loaded feature network.
pub enum Network {
    I3d(I3d),
    Inception(InceptionV3),
    C3d(C3d),
}

impl Network {
    /// Loads `net`'s weights from `path` (safetensors, or the published formats each network's
    /// module reads).
    pub fn load(net: Net, path: &Path, device: &Device) -> Result<Network, MetricsError> {
        Ok(match net {
            Net::I3d => Network::I3d(I3d::load(path, device)?),
            Net::Inception => Network::Inception(InceptionV3::load(path, device)?),
            Net::C3d => Network::C3d(C3d::load(path, device)?),
        })
    }

    pub fn net(&self) -> Net {
        match self {
            Network::I3d(_) => Net::I3d,
            Network::Inception(_) => Net::Inception,
            Network::C3d(_) => Net::C3d,
        }
    }

    /// Width of a feature row.
    pub fn dim(&self) -> usize {
        match self {
            Network::I3d(_) => i3d::FEATURE_DIM,
            Network::Inception(_) => inception::FEATURE_DIM,
            Network::C3d(m) => m.config().classes,
        }
    }

    /// The feature row of one input: `frames` frames of `h×w` RGB (`frames` is 1 for images).
    pub fn embed(&self, pixels: &[u8], frames: usize, h: usize, w: usize, device: &Device) -> Result<Vec<f32>, MetricsError> {
        let out = match self {
            Network::I3d(m) => m.forward(i3d::preprocess(&[pixels], frames, h, w, device)?)?,
            Network::Inception(m) => m.forward(inception::preprocess(&[pixels], h, w, device)?)?,
            Network::C3d(m) => m.probabilities(c3d::preprocess(&[pixels], frames, h, w, m.config(), device)?)?,
        };
        to_vec(out.into_data())
    }
}

/// A float32 tensor's values.
pub fn to_vec(data: burn::tensor::TensorData) -> Result<Vec<f32>, MetricsError> {
    data.try_to_vec::<f32>().map_err(|e| MetricsError::Input(format!("network output is not float32: {e:?}")))
}
