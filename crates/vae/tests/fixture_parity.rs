//! Parity with diffusers 0.42.1 on `shared/fixtures/vae-kl-tiny` (random weights, diffusers' own
//! outputs; see the fixture's README). Tolerance 1e-4 absolute, as the fixture suggests.

use std::path::{Path, PathBuf};

use latte_vae::burn::tensor::{Device, Tensor, TensorData};
use latte_vae::{load_weights, VaeConfig, VaeError, VaeFolder};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/vae-kl-tiny")
}

fn read_io(name: &str) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(fixture().join("io.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let t = st.tensor(name).unwrap();
    let values = t.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    (t.shape().to_vec(), values)
}

fn max_abs_diff(got: Tensor<4>, want: &(Vec<usize>, Vec<f32>)) -> f32 {
    assert_eq!(got.dims().to_vec(), want.0);
    let got = got.into_data().try_into_vec::<f32>().unwrap();
    got.iter().zip(&want.1).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max)
}

#[test]
fn encode_and_decode_match_diffusers() {
    let device = Device::flex();
    let folder = VaeFolder::open(&fixture()).unwrap();
    assert_eq!(folder.config.block_out_channels, vec![32, 64]);
    let vae = folder.load(&device).unwrap();

    let (shape, x) = read_io("x");
    let x = Tensor::<4>::from_data(TensorData::new(x, [shape[0], shape[1], shape[2], shape[3]]), &device);
    let posterior = vae.encode(x);
    let decoded = vae.decode(posterior.mean.clone());

    let mean = max_abs_diff(posterior.mean, &read_io("posterior_mean"));
    let logvar = max_abs_diff(posterior.logvar, &read_io("posterior_logvar"));
    let image = max_abs_diff(decoded, &read_io("decoded"));
    eprintln!("max |Δ|: mean {mean:e}, logvar {logvar:e}, decoded {image:e}");
    assert!(mean < 1e-4, "posterior mean differs by {mean}");
    assert!(logvar < 1e-4, "posterior logvar differs by {logvar}");
    assert!(image < 1e-4, "decoded image differs by {image}");
}

#[test]
fn mismatched_config_lists_every_offending_tensor() {
    let folder = VaeFolder::open(&fixture()).unwrap();
    // One more level than the weights have, and wider first level.
    let config = VaeConfig::new(vec![40, 64, 64], 1, 8, 4);
    let err = load_weights(&config, &folder.weights, &Device::flex()).unwrap_err();
    let VaeError::Weights { problems, .. } = &err else { panic!("expected a weights error, got {err}") };
    let has = |p: &str| problems.iter().any(|q| q.starts_with(p));
    assert!(has("wrong shape: encoder.conv_in.weight is [32, 3, 3, 3], expected [40, 3, 3, 3]"), "{err}");
    assert!(has("missing: encoder.down_blocks.2.resnets.0.conv1.weight"), "{err}");
    assert!(err.to_string().contains("weights.safetensors"), "error must name the file: {err}");
}

#[test]
fn extra_tensors_are_reported() {
    let folder = VaeFolder::open(&fixture()).unwrap();
    let mut config = folder.config.clone();
    config.mid_block_add_attention = false;
    let err = load_weights(&config, &folder.weights, &Device::flex()).unwrap_err();
    let VaeError::Weights { problems, .. } = &err else { panic!("expected a weights error, got {err}") };
    // 2 mid blocks × (group_norm + 4 projections) × (weight + bias).
    assert_eq!(problems.len(), 20, "{err}");
    assert!(problems.iter().all(|p| p.starts_with("unexpected: ") && p.contains(".attentions.0.")), "{err}");
}

#[test]
fn not_a_folder_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = VaeFolder::open(dir.path()).unwrap_err();
    assert!(err.to_string().contains("config.json"), "{err}");
}

#[test]
fn forward_contract_writes_the_three_outputs() {
    let result = latte_vae::forward::forward_dir(&fixture(), &Device::flex()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.safetensors");
    latte_vae::forward::write_outputs(&result, &out).unwrap();
    let bytes = std::fs::read(&out).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    for name in ["posterior_mean", "posterior_logvar", "decoded"] {
        let got = st.tensor(name).unwrap();
        let want = read_io(name);
        assert_eq!(got.shape(), want.0.as_slice(), "{name}");
        let values: Vec<f32> = got.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        let diff = values.iter().zip(&want.1).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        assert!(diff < 1e-4, "{name} differs by {diff}");
    }
}
