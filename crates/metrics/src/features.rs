//! The parity contract: features of the clips or images in a safetensors file, written to
//! another safetensors file shaped like the reference fixtures.

use std::path::Path;

use burn::tensor::Device;

pub use crate::network::Net;
use crate::network::Network;
use crate::tensors::{read_safetensors, write_safetensors, HostTensor, TensorMap};
use crate::MetricsError;

/// The input tensor's name: `frames_u8` `T×H×W×3` (or `N×T×H×W×3`) for the clip networks,
/// `image_u8` `H×W×3` (or `N×H×W×3`) for InceptionV3.
pub fn input_name(net: Net) -> &'static str {
    if net.takes_clips() {
        "frames_u8"
    } else {
        "image_u8"
    }
}

/// The output tensor's name: I3D `logits`, InceptionV3 `features`, C3D `probs` (the softmax
/// class probabilities IS consumes); `(dim,)`, or `N×dim` for a batched input.
pub fn output_name(net: Net) -> &'static str {
    match net {
        Net::I3d => "logits",
        Net::Inception => "features",
        Net::C3d => "probs",
    }
}

/// Reads `input`, runs the network with `weights`, writes `out`; returns the output tensor.
pub fn features_file(net: Net, weights: &Path, input: &Path, out: &Path) -> Result<HostTensor, MetricsError> {
    let map = read_safetensors(input)?;
    let name = input_name(net);
    let t = map.get(name).ok_or_else(|| MetricsError::MissingTensor { path: input.to_owned(), name: name.to_owned() })?;
    let shape_err = |expected: &str| MetricsError::TensorShape {
        path: input.to_owned(),
        name: name.to_owned(),
        expected: expected.to_owned(),
        found: format!("{:?}", t.shape),
    };
    let data = t.as_u8().ok_or_else(|| shape_err("uint8"))?;
    // (inputs, frames, height, width, batched)
    let (n, frames, h, w, batched) = match (net.takes_clips(), t.shape.as_slice()) {
        (true, [tt, h, w, 3]) => (1, *tt, *h, *w, false),
        (true, [n, tt, h, w, 3]) => (*n, *tt, *h, *w, true),
        (true, _) => return Err(shape_err("T×H×W×3 or N×T×H×W×3 uint8")),
        (false, [h, w, 3]) => (1, 1, *h, *w, false),
        (false, [n, h, w, 3]) => (*n, 1, *h, *w, true),
        (false, _) => return Err(shape_err("H×W×3 or N×H×W×3 uint8")),
    };
    let device = Device::flex();
    let model = Network::load(net, weights, &device)?;
    let per = frames * h * w * 3;
    let mut rows = Vec::with_capacity(n * model.dim());
    for k in 0..n {
        rows.extend(model.embed(&data[k * per..(k + 1) * per], frames, h, w, &device)?);
    }
    let shape = if batched { vec![n, model.dim()] } else { vec![model.dim()] };
    let result = HostTensor::f32(shape, rows);
    let mut written = TensorMap::new();
    written.insert(output_name(net).to_owned(), result.clone());
    write_safetensors(out, &written, None)?;
    Ok(result)
}
