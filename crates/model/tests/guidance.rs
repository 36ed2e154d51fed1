//! The sampling network call, `Latte::guided_forward`: classifier-free guidance keeps the
//! guided conditional half, `cfg_scale = 1` is the plain conditional forward, and on the
//! reference's own tensors (`shared/fixtures/latte-v1-class-cfg`) both match to 1e-5.

mod common;

use burn::tensor::{Device, Int, Tensor, TensorData};
use common::{randomize, tiny, to_vec};
use latte_model::Latte;

#[test]
fn guidance_keeps_the_guided_conditional_half() {
    let dev = Device::flex();
    let mut cfg = tiny(1);
    cfg.num_classes = Some(3);
    let m = randomize(Latte::new(&cfg, &dev, 0).unwrap(), 10, 0.2);
    let (x, _, _) = common::input(&cfg, 2, 0, 1, &dev);
    let t = Tensor::<1, Int>::from_data(TensorData::new(vec![10i64, 500], [2]), &dev);
    let labels = [2usize, 0];
    let got = m.guided_forward(x.clone(), t.clone(), Some(&labels), 4.0).unwrap();
    let y = |v: Vec<i64>| Tensor::<1, Int>::from_data(TensorData::new(v, [2]), &dev);
    let cond = m.forward(x.clone(), t.clone(), Some(y(vec![2, 0])), 0);
    let uncond = m.forward(x.clone(), t.clone(), Some(y(vec![3, 3])), 0);
    let eps = |o: &Tensor<5>| o.clone().narrow(2, 0, 4);
    let want_eps = eps(&uncond) + (eps(&cond) - eps(&uncond)) * 4.0;
    let want = Tensor::cat(vec![want_eps, cond.clone().narrow(2, 4, 4)], 2);
    let (g, w) = (to_vec(got), to_vec(want));
    let scale = w.iter().fold(0f32, |m, v| m.max(v.abs()));
    let err = g.iter().zip(&w).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(scale > 1e-2, "the stand-in model outputs almost nothing ({scale})");
    assert!(err <= 1e-5 * scale.max(1.0), "guided output off by {err} (scale {scale})");
    // cfg_scale 1 is the plain conditional forward.
    let plain = m.guided_forward(x.clone(), t.clone(), Some(&labels), 1.0).unwrap();
    assert_eq!(to_vec(plain), to_vec(cond));
    // Guidance on an unconditional model is an error, not a silent plain forward.
    let uncond_model = randomize(Latte::new(&tiny(1), &dev, 0).unwrap(), 10, 0.2);
    assert!(uncond_model.guided_forward(x.clone(), t.clone(), None, 1.0).is_ok());
    assert!(m.guided_forward(x.narrow(0, 0, 1), t, Some(&labels), 4.0).is_err(), "two timesteps for one sample");
}

/// `out_cfg` = `forward_with_cfg([x; x], [t; t], [y; null])` and `out` = the plain conditional
/// forward of the reference; the kept (conditional) half of ours matches to 1e-5 max abs.
#[test]
fn network_call_matches_the_reference_guided_forward() {
    use latte_nn::host::{max_abs_diff, read_safetensors};
    let dir = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/fixtures/latte-v1-class-cfg"));
    let dev = Device::flex();
    let spec = latte_model::reference::RefSpec::from_file(&dir.join("config.json")).unwrap();
    let mut model = Latte::new(&spec.config, &dev, 0).unwrap();
    model.load_safetensors(&dir.join("weights.safetensors")).unwrap();
    let inputs = read_safetensors(&dir.join("inputs.safetensors")).unwrap();
    let expected = read_safetensors(&dir.join("expected.safetensors")).unwrap();
    let x: Tensor<5> = inputs["x"].to_float("x", &dev).unwrap();
    let t: Tensor<1, Int> = inputs["t"].to_int("t", &dev).unwrap();
    let labels: Vec<usize> = inputs["y"].as_i64().unwrap().iter().map(|&y| y as usize).collect();
    let b = labels.len();
    let scale = spec.call.cfg_scale.unwrap() as f64;
    for (cfg_scale, key) in [(scale, "out_cfg"), (1.0, "out")] {
        let got = to_vec(model.guided_forward(x.clone(), t.clone(), Some(&labels), cfg_scale).unwrap());
        let want = expected[key].as_f32().unwrap();
        let d = max_abs_diff(&got, &want[..got.len()]);
        println!("{key} (cfg_scale {cfg_scale}): max |diff| = {d:e}");
        assert_eq!(got.len() * if key == "out_cfg" { 2 } else { 1 }, want.len(), "{key}: {b} kept rows");
        assert!(d <= 1e-5, "{key}: max |diff| {d:e} > 1e-5");
    }
}
