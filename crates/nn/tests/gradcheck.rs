//! Finite-difference checks of the gradients of the hand-written (composed) ops.

use burn::tensor::{Device, Tensor, TensorData};
use latte_nn::init::{Init, ParamFactory};
use latte_nn::ops;

fn rnd(f: &ParamFactory, name: &str, n: usize, std: f32) -> Vec<f32> {
    f.float(name, [n], Init::Normal { std }, false).val().into_data().try_into_vec_as::<f32>().unwrap()
}

/// Checks d/dx of `sum(op(x) · r)` against central differences, for a few coordinates of x.
fn check<const D: usize>(name: &str, shape: [usize; D], op: impl Fn(Tensor<D>) -> Tensor<D>) {
    latte_nn::gradcheck::check_gradient(name, shape, op)
}

#[test]
fn layer_norm_gradient() {
    check("layer_norm", [3, 5, 16], |x| ops::layer_norm_composed(x, 1e-6));
}

#[test]
fn modulate_gradient() {
    let dev = Device::flex();
    let f = ParamFactory::new(4, &dev);
    let sh = rnd(&f, "shift", 16, 1.0);
    let sc = rnd(&f, "scale", 16, 1.0);
    check("modulate", [3, 5, 16], move |x| {
        let d = x.device();
        let shift = Tensor::<1>::from_data(TensorData::new(sh.clone(), [16]), &d).reshape([1, 1, 16]);
        let scale = Tensor::<1>::from_data(TensorData::new(sc.clone(), [16]), &d).reshape([1, 1, 16]);
        ops::modulate(ops::layer_norm_composed(x, 1e-6), shift, scale)
    });
}

#[test]
fn attention_gradient() {
    // q, k and v all depend on x, as in self-attention
    check("attention", [2, 3, 5, 8], |x| {
        let k = x.clone() * 0.5 + 0.1;
        let v = x.clone().powi_scalar(2);
        ops::attention_composed(x, k, v)
    });
}

#[test]
fn fused_inference_ops_match_the_composed_ones() {
    let dev = Device::flex();
    let f = ParamFactory::new(5, &dev);
    let t = |name: &str, shape: [usize; 4], std: f32| {
        let n = shape.iter().product();
        Tensor::<4>::from_data(TensorData::new(rnd(&f, name, n, std), shape), &dev)
    };
    let v = |x: Tensor<4>| x.into_data().try_into_vec_as::<f32>().unwrap();
    let x = t("x", [2, 3, 7, 72], 3.0) + 1.5;
    let d = latte_nn::host::max_abs_diff(&v(ops::layer_norm(x.clone(), 1e-6)), &v(ops::layer_norm_composed(x, 1e-6)));
    assert!(d < 1e-5, "layer_norm {d}");
    let (q, k, w) = (t("q", [3, 2, 9, 72], 1.0), t("k", [3, 2, 11, 72], 1.0), t("v", [3, 2, 11, 72], 1.0));
    let d = latte_nn::host::max_abs_diff(&v(ops::attention(q.clone(), k.clone(), w.clone())), &v(ops::attention_composed(q, k, w)));
    assert!(d < 1e-5, "attention {d}");
}
