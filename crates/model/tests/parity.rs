//! Parity with the reference PyTorch implementation: the shared fixtures (random weights, every
//! path exercised) must match to 1e-5 max abs.

mod common;

use burn::tensor::Device;

const TOL: f32 = 1e-5;

fn check(name: &str, keys: &[&str]) {
    common::check_fixture(name, keys, &Device::flex(), TOL);
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
