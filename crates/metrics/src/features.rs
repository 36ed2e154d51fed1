//! The parity contract: features of the clips or images in a safetensors file, written to
//! another safetensors file shaped like the reference fixtures.

use std::path::Path;

use burn::tensor::Device;

use crate::c3d::{self, C3d, C3dConfig};
use crate::i3d::{self, I3d};
use crate::inception::{self, InceptionV3};
use crate::tensors::{read_safetensors, write_safetensors, HostTensor, TensorMap};
use crate::MetricsError;

/// Which feature network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Net {
    /// I3D: `frames_u8` `T×H×W×3` (or `N×T×H×W×3`) → `logits` `(400,)` (or `N×400`).
    I3d,
    /// InceptionV3: `image_u8` `H×W×3` (or `N×H×W×3`) → `features` `(2048,)` (or `N×2048`).
    Inception,
    /// C3D (UCF101): `frames_u8` `16×H×W×3` (or `N×16×H×W×3`) → `probs` `(101,)` (or `N×101`),
    /// the softmax class probabilities IS consumes.
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

    pub fn input_name(self) -> &'static str {
        match self {
            Net::I3d | Net::C3d => "frames_u8",
            Net::Inception => "image_u8",
        }
    }

    pub fn output_name(self) -> &'static str {
        match self {
            Net::I3d => "logits",
            Net::Inception => "features",
            Net::C3d => "probs",
        }
    }
}

/// Reads `input`, runs the network with `weights`, writes `out`; returns the output tensor.
pub fn features_file(net: Net, weights: &Path, input: &Path, out: &Path) -> Result<HostTensor, MetricsError> {
    let map = read_safetensors(input)?;
    let name = net.input_name();
    let t = map.get(name).ok_or_else(|| MetricsError::MissingTensor { path: input.to_owned(), name: name.to_owned() })?;
    let shape_err = |expected: &str| MetricsError::TensorShape {
        path: input.to_owned(),
        name: name.to_owned(),
        expected: expected.to_owned(),
        found: format!("{:?}", t.shape),
    };
    let data = t.as_u8().ok_or_else(|| shape_err("uint8"))?;
    let device = Device::flex();
    let result = match net {
        Net::I3d => {
            let (n, dims, batched) = match t.shape.as_slice() {
                [tt, h, w, 3] => (1, [*tt, *h, *w], false),
                [n, tt, h, w, 3] => (*n, [*tt, *h, *w], true),
                _ => return Err(shape_err("T×H×W×3 or N×T×H×W×3 uint8")),
            };
            let model = I3d::load(weights, &device)?;
            let per = dims[0] * dims[1] * dims[2] * 3;
            let mut out = Vec::with_capacity(n * i3d::FEATURE_DIM);
            for k in 0..n {
                let x = i3d::preprocess(&[&data[k * per..(k + 1) * per]], dims[0], dims[1], dims[2], &device)?;
                out.extend(to_vec(model.forward(x)?.into_data())?);
            }
            let shape = if batched { vec![n, i3d::FEATURE_DIM] } else { vec![i3d::FEATURE_DIM] };
            HostTensor::f32(shape, out)
        }
        Net::Inception => {
            let (n, h, w, batched) = match t.shape.as_slice() {
                [h, w, 3] => (1, *h, *w, false),
                [n, h, w, 3] => (*n, *h, *w, true),
                _ => return Err(shape_err("H×W×3 or N×H×W×3 uint8")),
            };
            let model = InceptionV3::load(weights, &device)?;
            let per = h * w * 3;
            let mut out = Vec::with_capacity(n * inception::FEATURE_DIM);
            for k in 0..n {
                let x = inception::preprocess(&[&data[k * per..(k + 1) * per]], h, w, &device)?;
                out.extend(to_vec(model.forward(x)?.into_data())?);
            }
            let shape = if batched { vec![n, inception::FEATURE_DIM] } else { vec![inception::FEATURE_DIM] };
            HostTensor::f32(shape, out)
        }
        Net::C3d => {
            let (n, dims, batched) = match t.shape.as_slice() {
                [tt, h, w, 3] => (1, [*tt, *h, *w], false),
                [n, tt, h, w, 3] => (*n, [*tt, *h, *w], true),
                _ => return Err(shape_err("T×H×W×3 or N×T×H×W×3 uint8")),
            };
            let model = C3d::load(weights, &device)?;
            let cfg = C3dConfig::ucf101();
            let per = dims[0] * dims[1] * dims[2] * 3;
            let mut out = Vec::with_capacity(n * cfg.classes);
            for k in 0..n {
                let clip = &data[k * per..(k + 1) * per];
                let x = c3d::preprocess(&[clip], dims[0], dims[1], dims[2], &cfg, &device)?;
                out.extend(to_vec(model.probabilities(x)?.into_data())?);
            }
            let shape = if batched { vec![n, cfg.classes] } else { vec![cfg.classes] };
            HostTensor::f32(shape, out)
        }
    };
    let mut written = TensorMap::new();
    written.insert(net.output_name().to_owned(), result.clone());
    write_safetensors(out, &written, None)?;
    Ok(result)
}

/// A float32 tensor's values.
pub fn to_vec(data: burn::tensor::TensorData) -> Result<Vec<f32>, MetricsError> {
    data.try_to_vec::<f32>().map_err(|e| MetricsError::Input(format!("network output is not float32: {e:?}")))
}
