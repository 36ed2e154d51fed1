//! The GPU-backend code path (burn's cubecl backend, WGSL shaders through wgpu) against the
//! reference fixtures and against the CPU backend. On machines without a GPU, wgpu runs on
//! Mesa's software renderer (llvmpipe / lavapipe), which `.ci/run` installs: this is how CI
//! exercises the code CUDA runs (the same cubecl kernels, another shader compiler), without
//! NVRTC. CUDA itself is checked by `xtask/device/check.sh` on a GPU machine.
//!
//! A missing adapter fails these tests (with the device error's text), on purpose: CI must not
//! pass without running them.

use burn::module::Module;
use burn::tensor::{Device, FloatDType, Int, Tensor, TensorData};
use latte_model::reference::{expected_path, run_dir};
use latte_model::{Latte, LatteConfig};
use latte_nn::device::device_from_name;
use latte_nn::host::{max_abs_diff, read_safetensors};
use std::path::PathBuf;

/// f32 on another backend: a different summation order in every reduction and matmul.
const TOL: f32 = 1e-4;

fn wgpu() -> Device {
    device_from_name("wgpu").unwrap_or_else(|e| panic!("{e}"))
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures").join(name)
}

fn check(name: &str, keys: &[&str]) {
    let dir = fixture(name);
    let out = run_dir(&dir, &wgpu()).unwrap_or_else(|e| panic!("{name}: {e}"));
    let expected = read_safetensors(&expected_path(&dir)).unwrap();
    for key in keys {
        let (o, e) = (&out[*key], &expected[*key]);
        assert_eq!(o.shape, e.shape, "{name}/{key} shape");
        let d = max_abs_diff(o.as_f32().unwrap(), e.as_f32().unwrap());
        println!("wgpu {name}/{key}: max |diff| = {d:e}");
        assert!(d <= TOL, "wgpu {name}/{key}: max |diff| {d:e} > {TOL:e}");
    }
}

#[test]
fn wgpu_forward_matches_the_reference_fixtures() {
    check("latte-v1-uncond", &["out"]);
    check("latte-v1-class-cfg", &["out", "out_cfg"]);
    check("latte-img-joint", &["out"]);
}

fn tiny() -> LatteConfig {
    let mut cfg = LatteConfig::preset("Latte-S/2").unwrap();
    cfg.depth = 2;
    cfg.hidden_size = 32;
    cfg.num_heads = 2;
    cfg.input_size = 4;
    cfg.num_frames = 3;
    cfg.num_classes = Some(3);
    cfg
}

/// `(x, t, y)` of a batch of 2, the same values on every device.
fn inputs(cfg: &LatteConfig, device: &Device) -> (Tensor<5>, Tensor<1, Int>, Tensor<1, Int>) {
    let shape = [2, cfg.num_frames, cfg.in_channels, cfg.input_size, cfg.input_size];
    let n: usize = shape.iter().product();
    let x: Vec<f32> = (0..n).map(|i| ((i * 7919) % 211) as f32 / 105.0 - 1.0).collect();
    let x = Tensor::from_data(TensorData::new(x, shape), device);
    let t = Tensor::from_data(TensorData::new(vec![17i64, 640], [2]), device);
    let y = Tensor::from_data(TensorData::new(vec![0i64, 2], [2]), device);
    (x, t, y)
}

/// Loss and every parameter gradient of one backward pass on `device` (autodiff).
fn loss_and_grads(device: &Device) -> (f32, Vec<f32>) {
    let cfg = tiny();
    let device = device.clone().autodiff();
    let model = Latte::new(&cfg, &device, 5).unwrap();
    // Non-zero adaLN and final layers so every parameter receives a gradient (the reference
    // initialises them to zero).
    let model = perturb(model);
    let (x, t, y) = inputs(&cfg, &device);
    let out = model.forward(x, t, Some(y), 0);
    let loss = out.powi_scalar(2).mean();
    let value = loss.clone().into_scalar::<f32>();
    let grads = loss.backward();
    (value, gradients(&model, &grads))
}

/// Every parameter's gradient, flattened, in the module's parameter order.
fn gradients(model: &Latte, grads: &burn::tensor::Gradients) -> Vec<f32> {
    use burn::module::{ModuleVisitor, Param};
    struct V<'a>(&'a burn::tensor::Gradients, Vec<f32>);
    impl ModuleVisitor for V<'_> {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            if let Some(g) = p.val().grad(self.0) {
                self.1.extend(g.into_data().convert::<f32>().try_to_vec::<f32>().expect("f32 data"));
            }
        }
    }
    let mut v = V(grads, Vec::new());
    model.visit(&mut v);
    v.1
}

fn perturb(model: Latte) -> Latte {
    use burn::module::{ModuleMapper, Param};
    struct M(u64);
    impl ModuleMapper for M {
        fn map_float<const D: usize>(&mut self, p: Param<Tensor<D>>) -> Param<Tensor<D>> {
            self.0 += 1;
            let salt = self.0;
            // a fresh leaf (not `t + d`), so the backward pass has a gradient for it
            p.map(|t| {
                let dims = t.dims();
                let n: usize = dims.iter().product();
                let v: Vec<f32> = (0..n).map(|i| (((i as u64 * 2654435761 + salt * 97) % 1000) as f32 / 1000.0 - 0.5) * 0.2).collect();
                let base = t.clone().detach().into_data().convert::<f32>().try_to_vec::<f32>().expect("f32 data");
                let v: Vec<f32> = base.iter().zip(v).map(|(b, d)| b + d).collect();
                let fresh = Tensor::<D>::from_data(TensorData::new(v, dims), &t.device());
                if t.is_require_grad() { fresh.require_grad() } else { fresh }
            })
        }
    }
    model.map(&mut M(0))
}

/// One backward pass on wgpu equals the CPU backend's: the loss and every gradient.
#[test]
fn wgpu_training_step_gradients_match_the_cpu() {
    let (cpu_loss, cpu_grads) = loss_and_grads(&Device::flex());
    let (gpu_loss, gpu_grads) = loss_and_grads(&wgpu());
    println!("loss: cpu {cpu_loss} wgpu {gpu_loss}; {} gradient values", cpu_grads.len());
    assert!((cpu_loss - gpu_loss).abs() <= 1e-5 * cpu_loss.abs().max(1.0), "loss {cpu_loss} vs {gpu_loss}");
    assert_eq!(cpu_grads.len(), gpu_grads.len());
    assert!(cpu_grads.iter().any(|g| *g != 0.0), "no gradient reached the parameters");
    let scale = cpu_grads.iter().fold(0f32, |m, g| m.max(g.abs()));
    let d = max_abs_diff(&cpu_grads, &gpu_grads);
    println!("gradients: max |cpu - wgpu| = {d:e} (max |g| = {scale:e})");
    assert!(d <= 1e-4 * scale.max(1e-3), "gradients differ by {d:e} (scale {scale:e})");
}

/// bf16 and f16 where the adapter supports them; Mesa's software renderer offers neither
/// (WGSL has no bf16; f16 needs the `shader-f16` feature), so this prints which it ran.
#[test]
fn wgpu_half_precision_where_supported() {
    let device = wgpu();
    let cfg = tiny();
    let model = perturb(Latte::new(&cfg, &device, 5).unwrap());
    let (x, t, y) = inputs(&cfg, &device);
    let reference = model.forward(x.clone(), t.clone(), Some(y.clone()), 0).into_data().try_to_vec::<f32>().expect("f32 data");
    for dtype in [FloatDType::BF16, FloatDType::F16] {
        if !device.supports_dtype(dtype) {
            println!("SKIPPED {dtype:?}: this wgpu adapter does not support it");
            continue;
        }
        let half = model.clone().with_compute_dtype(Some(dtype));
        let out = half.forward(x.clone(), t.clone(), Some(y.clone()), 0).into_data().convert::<f32>().try_to_vec::<f32>().expect("f32 data");
        let d = max_abs_diff(&out, &reference);
        println!("wgpu {dtype:?}: max |diff| to f32 = {d:e}");
        assert!(out.iter().all(|v| v.is_finite()) && d < 0.1, "{dtype:?}: max |diff| {d:e}");
    }
}
