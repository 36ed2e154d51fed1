//! Parity with the reference PyTorch implementation: the shared fixtures (random weights, every
//! path exercised) must match to 1e-5 max abs.

use burn::tensor::Device;
use latte_model::reference::{expected_path, run_dir};
use latte_nn::host::{max_abs_diff, read_safetensors};
use std::path::PathBuf;

const TOL: f32 = 1e-5;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures").join(name)
}

fn check(name: &str, keys: &[&str]) {
    let dir = fixture(name);
    let out = run_dir(&dir, &Device::flex()).unwrap_or_else(|e| panic!("{name}: {e}"));
    let expected = read_safetensors(&expected_path(&dir)).unwrap();
    for key in keys {
        let (o, e) = (&out[*key], &expected[*key]);
        assert_eq!(o.shape, e.shape, "{name}/{key} shape");
        let d = max_abs_diff(o.as_f32().unwrap(), e.as_f32().unwrap());
        println!("{name}/{key}: max |diff| = {d:e}");
        assert!(d <= TOL, "{name}/{key}: max |diff| {d:e} > {TOL:e}");
    }
    assert_eq!(out.len(), keys.len(), "{name}: unexpected outputs {:?}", out.keys().collect::<Vec<_>>());
}

#[test]
fn v1_unconditional_matches_reference() {
    check("latte-v1-uncond", &["out"]);
}

#[test]
fn v1_class_conditional_and_guidance_match_reference() {
    check("latte-v1-class-cfg", &["out", "out_cfg"]);
}

#[test]
fn image_video_joint_matches_reference() {
    check("latte-img-joint", &["out"]);
}
