//! Helpers shared by the tests of hand-written ops: seeded inputs and the gradient check.
#![allow(dead_code)]

use burn::tensor::{Device, Tensor, TensorData};
use latte_nn::init::{Init, ParamFactory};

pub fn rnd(seed: u64, name: &str, n: usize, std: f32) -> Vec<f32> {
    let f = ParamFactory::new(seed, &Device::flex());
    f.float(name, [n], Init::Normal { std }, false).val().into_data().try_into_vec_as::<f32>().unwrap()
}

pub fn tensor<const D: usize>(v: &[f32], shape: [usize; D], dev: &Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(v.to_vec(), shape), dev)
}

pub fn vals<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_into_vec_as::<f32>().unwrap()
}

pub fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// d/dx of `sum(op(x) · r)`: autodiff of `op` vs central differences at ~23 coordinates, and vs
/// autodiff of `reference` (the composed op) at every coordinate.
pub fn check<const D: usize>(
    name: &str,
    shape: [usize; D],
    op: impl Fn(Tensor<D>) -> Tensor<D>,
    reference: impl Fn(Tensor<D>) -> Tensor<D>,
) {
    let plain = Device::flex();
    let ad = plain.clone().autodiff();
    let n: usize = shape.iter().product();
    let x0 = rnd(3, "x", n, 1.0);
    let out_dims = op(tensor(&x0, shape, &plain)).dims();
    let out_n: usize = out_dims.iter().product();
    let r = rnd(4, "r", out_n, 1.0);
    let loss = |y: Tensor<D>, dev: &Device| (y * tensor(&r, [out_n], dev).reshape(out_dims)).sum();
    let grad_of = |f: &dyn Fn(Tensor<D>) -> Tensor<D>| {
        let x = tensor(&x0, shape, &ad).require_grad();
        let grads = loss(f(x.clone()), &ad).backward();
        vals(x.grad(&grads).expect("gradient"))
    };
    let g = grad_of(&op);
    let g_ref = grad_of(&reference);
    let d = max_diff(&g, &g_ref);
    let scale = g_ref.iter().fold(1f32, |m, v| m.max(v.abs()));
    assert!(d <= 2e-5 * scale, "{name}: fused and composed gradients differ by {d}");
    let eps = 1e-2f32;
    for i in (0..n).step_by((n / 23).max(1)) {
        let at = |delta: f32| {
            let mut v = x0.clone();
            v[i] += delta;
            loss(op(tensor(&v, shape, &plain)), &plain).into_scalar::<f32>() as f64
        };
        let fd = (at(eps) - at(-eps)) / (2.0 * eps as f64);
        let err = (fd - g[i] as f64).abs();
        assert!(err <= 2e-2 * fd.abs().max(1.0), "{name}: d/dx[{i}] fused {} vs finite difference {fd}", g[i]);
    }
}
