//! Finite-difference gradient checks for tests of hand-written ops and model pieces (this crate's
//! and `latte-model`'s): autodiff's d/dx of `sum(op(x) · r)` against central differences.

use crate::init::{Init, ParamFactory};
use burn::tensor::{Device, Tensor, TensorData};

fn normal(f: &ParamFactory, name: &str, n: usize) -> Vec<f32> {
    f.float(name, [n], Init::Normal { std: 1.0 }, false).val().into_data().try_to_vec::<f32>().unwrap_or_default()
}

/// Panics unless autodiff's gradient of `sum(op(x) · r)` (x, r seeded normal) agrees with
/// central differences (step 1e-2, tolerance 2e-2 relative or absolute below 1) at about 23
/// coordinates of x spread over `shape`.
pub fn check_gradient<const D: usize, const E: usize>(name: &str, shape: [usize; D], op: impl Fn(Tensor<D>) -> Tensor<E>) {
    let plain = Device::flex();
    let ad = plain.clone().autodiff();
    let f = ParamFactory::new(3, &plain);
    let n: usize = shape.iter().product();
    let x0 = normal(&f, "x", n);
    let out_n = op(Tensor::from_data(TensorData::new(x0.clone(), shape), &plain)).dims().iter().product::<usize>();
    let r = normal(&f, "r", out_n);
    let loss = |x: Tensor<D>, dev: &Device| {
        let y = op(x);
        let dims = y.dims();
        (y * Tensor::<1>::from_data(TensorData::new(r.clone(), [out_n]), dev).reshape(dims)).sum()
    };
    let x = Tensor::<D>::from_data(TensorData::new(x0.clone(), shape), &ad).require_grad();
    let grads = loss(x.clone(), &ad).backward();
    let g: Vec<f32> = x.grad(&grads).expect("x has a gradient").into_data().try_to_vec().expect("f32 gradient");
    let eps = 1e-2f32;
    for i in (0..n).step_by((n / 23).max(1)) {
        let at = |delta: f32| {
            let mut v = x0.clone();
            v[i] += delta;
            loss(Tensor::from_data(TensorData::new(v, shape), &plain), &plain).into_scalar::<f32>() as f64
        };
        let fd = (at(eps) - at(-eps)) / (2.0 * eps as f64);
        let err = (fd - g[i] as f64).abs();
        assert!(err <= 2e-2 * fd.abs().max(1.0), "{name}: d/dx[{i}] autodiff {} vs finite difference {fd}", g[i]);
    }
}
