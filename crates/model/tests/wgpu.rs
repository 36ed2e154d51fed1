//! The GPU-backend code path (burn's cubecl backend, WGSL shaders through wgpu) against the
//! reference fixtures and against the CPU backend. On machines without a GPU, wgpu runs on
//! Mesa's software renderer (llvmpipe), which `.ci/run` installs: this is how CI exercises the
//! code CUDA runs (the same cubecl kernels, another shader compiler), without NVRTC. CUDA itself
//! is checked by `xtask/device/check.sh` on a GPU machine.
//!
//! A missing adapter fails these tests (with the device error's text), on purpose: CI must not
//! pass without running them.

mod common;

use burn::module::Module;
use burn::tensor::{Device, FloatDType, Tensor};
use latte_model::{Latte, LatteConfig};
use latte_nn::device::device_from_name;
use latte_nn::host::max_abs_diff;

/// f32 on another backend: a different summation order in every reduction and matmul.
const TOL: f32 = 1e-4;

fn wgpu() -> Device {
    device_from_name("wgpu").unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn wgpu_forward_matches_the_reference_fixtures() {
    let device = wgpu();
    common::check_fixture("latte-v1-uncond", &["out"], &device, TOL);
    common::check_fixture("latte-v1-class-cfg", &["out", "out_cfg"], &device, TOL);
    common::check_fixture("latte-img-joint", &["out"], &device, TOL);
}

fn tiny() -> LatteConfig {
    LatteConfig { num_classes: Some(3), ..common::tiny(1) }
}

/// The tiny model with random weights (every parameter shapes the output) on `device`.
fn model(device: &Device) -> Latte {
    common::randomize(Latte::new(&tiny(), device, 5).unwrap(), 11, 0.1)
}

/// Loss and every parameter gradient of one backward pass on `device` (autodiff).
fn loss_and_grads(device: &Device) -> (f32, Vec<f32>) {
    let device = device.clone().autodiff();
    let model = model(&device);
    let (x, t, y) = common::input(&tiny(), 2, 0, 3, &device);
    let loss = model.forward(x, t, y, 0).powi_scalar(2).mean();
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
                self.1.extend(common::to_vec(g));
            }
        }
    }
    let mut v = V(grads, Vec::new());
    model.visit(&mut v);
    v.1
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
    let model = model(&device);
    let (x, t, y) = common::input(&tiny(), 2, 0, 3, &device);
    let reference = common::to_vec(model.forward(x.clone(), t.clone(), y.clone(), 0));
    for dtype in [FloatDType::BF16, FloatDType::F16] {
        if !device.supports_dtype(dtype) {
            println!("SKIPPED {dtype:?}: this wgpu adapter does not support it");
            continue;
        }
        let half = model.clone().with_compute_dtype(Some(dtype));
        let out = common::to_vec(half.forward(x.clone(), t.clone(), y.clone(), 0));
        let d = max_abs_diff(&out, &reference);
        println!("wgpu {dtype:?}: max |diff| to f32 = {d:e}");
        assert!(out.iter().all(|v| v.is_finite()) && d < 0.1, "{dtype:?}: max |diff| {d:e}");
    }
}
