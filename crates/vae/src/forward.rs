//! The parity contract of `cargo xtask vae forward DIR --out FILE`: DIR holds `config.json`,
//! `weights.safetensors` and `io.safetensors` (input `x`, `[N, C, H, W]` f32 in [-1, 1]) in the
//! format of `shared/fixtures/vae-kl-tiny`; FILE receives `posterior_mean`,
//! `posterior_logvar` and `decoded` (the decoded posterior mean), f32.

use std::path::Path;

use burn::tensor::{Device, Tensor, TensorData};
use latte_nn::host::{read_safetensors, write_safetensors, HostData, HostTensor};

use crate::weights::VaeFolder;
use crate::{check_input, VaeError};

/// The input and the three outputs of one forward, as `(shape, values)`.
pub struct ForwardResult {
    pub x_shape: [usize; 4],
    pub outputs: Vec<(&'static str, Vec<usize>, Vec<f32>)>,
}

fn read_x(path: &Path) -> Result<([usize; 4], Vec<f32>), VaeError> {
    let mut tensors = read_safetensors(path)?;
    let tensor_err = |reason: String| VaeError::Tensor { path: path.to_owned(), key: "x".into(), reason };
    let x = tensors.remove("x").ok_or_else(|| tensor_err("absent; the input image batch must be stored as `x`".into()))?;
    let &[n, c, h, w] = x.shape.as_slice() else {
        return Err(tensor_err(format!("shape {:?}; expected [N, C, H, W]", x.shape)));
    };
    match x.data {
        HostData::F32(values) => Ok(([n, c, h, w], values)),
        _ => Err(tensor_err(format!("dtype {}; expected a float type", x.dtype_name()))),
    }
}

/// Runs the VAE folder `dir` on its `io.safetensors` input `x`.
pub fn forward_dir(dir: &Path, device: &Device) -> Result<ForwardResult, VaeError> {
    let folder = VaeFolder::open(dir)?;
    let vae = folder.load(device)?;
    let (x_shape, x) = read_x(&dir.join("io.safetensors"))?;
    check_input(x_shape, &folder.config)?;
    let x = Tensor::<4>::from_data(TensorData::new(x, x_shape), device);
    let posterior = vae.encode(x);
    let decoded = vae.decode(posterior.mean.clone());
    let host = |t: Tensor<4>| {
        let shape = t.dims().to_vec();
        // The model computes in f32 throughout; reading f32 data back cannot fail.
        (shape, t.into_data().convert::<f32>().try_into_vec::<f32>().expect("f32 tensor data"))
    };
    let (ms, mv) = host(posterior.mean);
    let (ls, lv) = host(posterior.logvar);
    let (ds, dv) = host(decoded);
    Ok(ForwardResult { x_shape, outputs: vec![("posterior_mean", ms, mv), ("posterior_logvar", ls, lv), ("decoded", ds, dv)] })
}

/// Writes the outputs as an f32 safetensors file, through a temporary name and a rename.
pub fn write_outputs(result: &ForwardResult, out: &Path) -> Result<(), VaeError> {
    let tensors = result.outputs.iter().map(|(k, shape, values)| (k.to_string(), HostTensor::f32(shape.clone(), values.clone()))).collect();
    Ok(write_safetensors(out, &tensors, None)?)
}
