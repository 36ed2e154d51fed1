//! The fused ops (`latte_nn::fused`): forward equal to the composed ops, gradients equal to
//! central finite differences and to autodiff through the composed ops, for every input.

use burn::tensor::activation::{gelu_approximate, softmax};
use burn::tensor::{Device, Tensor};
use latte_nn::fused;
use latte_nn::ops;

mod common;
use common::{check, max_diff, rnd, tensor, vals};

const X: [usize; 4] = [2, 3, 5, 16];

fn ln_mod_fused(x: Tensor<4>, shift: Tensor<4>, scale: Tensor<4>) -> Tensor<4> {
    fused::ln_modulate(&x, &shift, &scale, 1e-6).expect("fused kernel applies on flex")
}

fn ln_mod_composed(x: Tensor<4>, shift: Tensor<4>, scale: Tensor<4>) -> Tensor<4> {
    ops::modulate(ops::layer_norm_composed(x, 1e-6), shift, scale)
}

#[test]
fn ln_modulate_gradients_for_x_shift_and_scale() {
    // per-sample (B, 1, 1, D) and per-frame (B, T, 1, D) parameters, as adaLN uses them
    for pshape in [[2, 1, 1, 16], [2, 3, 1, 16]] {
        let pn: usize = pshape.iter().product();
        let (xs, sh, sc) = (rnd(5, "x", X.iter().product(), 2.0), rnd(6, "shift", pn, 1.0), rnd(7, "scale", pn, 1.0));
        let c = |v: &[f32], s: [usize; 4], like: &Tensor<4>| tensor(v, s, &like.device());
        check(
            "ln_modulate dx",
            X,
            |x| ln_mod_fused(x.clone(), c(&sh, pshape, &x), c(&sc, pshape, &x)),
            |x| ln_mod_composed(x.clone(), c(&sh, pshape, &x), c(&sc, pshape, &x)),
        );
        check(
            "ln_modulate dshift",
            pshape,
            |s| ln_mod_fused(c(&xs, X, &s), s.clone(), c(&sc, pshape, &s)),
            |s| ln_mod_composed(c(&xs, X, &s), s.clone(), c(&sc, pshape, &s)),
        );
        check(
            "ln_modulate dscale",
            pshape,
            |s| ln_mod_fused(c(&xs, X, &s), c(&sh, pshape, &s), s.clone()),
            |s| ln_mod_composed(c(&xs, X, &s), c(&sh, pshape, &s), s.clone()),
        );
    }
}

#[test]
fn gelu_tanh_gradient() {
    check("gelu_tanh", X, |x| fused::gelu_tanh(&x).expect("fused kernel applies on flex"), gelu_approximate);
}

#[test]
fn softmax_gradient() {
    check("softmax", X, |x| fused::softmax_last(&x).expect("fused kernel applies on flex"), |x| softmax(x, 3));
}

#[test]
fn forward_matches_the_composed_ops_on_both_devices() {
    for dev in [Device::flex(), Device::flex().autodiff()] {
        let shape = [2, 3, 7, 72];
        let n: usize = shape.iter().product();
        let x = tensor(&rnd(8, "x", n, 3.0), shape, &dev) + 1.5;
        let sh = tensor(&rnd(9, "sh", 2 * 72, 1.0), [2, 1, 1, 72], &dev);
        let sc = tensor(&rnd(10, "sc", 2 * 72, 1.0), [2, 1, 1, 72], &dev);
        let d = max_diff(&vals(ln_mod_fused(x.clone(), sh.clone(), sc.clone())), &vals(ln_mod_composed(x.clone(), sh, sc)));
        assert!(d <= 1e-5, "ln_modulate differs by {d}");
        let d = max_diff(&vals(fused::gelu_tanh(&x).unwrap()), &vals(gelu_approximate(x.clone())));
        assert!(d <= 1e-5, "gelu_tanh differs by {d}");
        let d = max_diff(&vals(fused::softmax_last(&(x.clone() * 4.0)).unwrap()), &vals(softmax(x.clone() * 4.0, 3)));
        assert!(d <= 1e-6, "softmax differs by {d}");
        // non-contiguous input (a permuted view) gives the same result as its contiguous copy
        let xt = x.clone().swap_dims(1, 2);
        let a = vals(fused::gelu_tanh(&xt).unwrap());
        let b = vals(gelu_approximate(xt));
        assert!(max_diff(&a, &b) <= 1e-5);
    }
}

#[test]
fn unsupported_shapes_fall_back() {
    let dev = Device::flex();
    let x = Tensor::<2>::ones([3, 4], &dev);
    // a broadcast last axis is not what the kernel reads: the caller composes instead
    assert!(fused::ln_modulate(&x, &Tensor::zeros([3, 1], &dev), &Tensor::zeros([3, 4], &dev), 1e-6).is_none());
    assert!(fused::ln_modulate(&x, &Tensor::zeros([1, 4], &dev), &Tensor::zeros([3, 4], &dev), 1e-6).is_some());
}

/// The fused SiLU has the bits of burn's `silu` (`x · sigmoid(x)`), forward and backward, for
/// an input with one consumer (the VAE's: each SiLU follows a GroupNorm), across both branches
/// of the sigmoid and its tails.
#[test]
fn silu_has_burns_bits() {
    let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
    let shape = [2, 3, 5, 37];
    let n: usize = shape.iter().product();
    let x0: Vec<f32> = rnd(11, "x", n, 4.0).into_iter().enumerate().map(|(i, v)| if i % 97 == 0 { v * 30.0 } else { v }).collect();
    let r = rnd(12, "r", n, 1.0);
    let run = |f: &dyn Fn(Tensor<4>) -> Tensor<4>| {
        let dev = Device::flex().autodiff();
        let x = tensor(&x0, shape, &dev).require_grad();
        // a scaled copy first, so the SiLU's input is an interior node with one consumer
        let h = x.clone() * 1.5;
        let y = f(h);
        let out = vals(y.clone());
        let grads = (y * tensor(&r, shape, &dev)).sum().backward();
        (out, vals(x.grad(&grads).expect("gradient")))
    };
    let (y_ours, g_ours) = run(&|h| ops::silu(h));
    let (y_burn, g_burn) = run(&|h| burn::tensor::activation::silu(h));
    assert!(bits(&y_ours) == bits(&y_burn), "forward");
    assert!(bits(&g_ours) == bits(&g_burn), "gradient");
    let plain = vals(ops::silu(tensor(&x0, shape, &Device::flex()) * 1.5));
    assert!(bits(&plain) == bits(&y_burn), "forward without autodiff");
}
