//! `latte_nn::conv`: the same bits as burn's convolutions, forward and backward, on every path
//! its dispatch takes (its own im2col, and the shapes it leaves to burn).

use burn::tensor::module;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Tensor};
use latte_nn::conv;

mod common;
use common::{rnd, tensor, vals};

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|f| f.to_bits()).collect()
}

/// A 2-D case: x (N, C, H, W), weight (Cout, C, K, K), stride, (top, bottom, left, right).
struct Case2 {
    x: [usize; 4],
    cout: usize,
    k: usize,
    stride: usize,
    pad: [usize; 4],
}

impl Case2 {
    fn options(&self) -> ConvOptions<2> {
        let p = self.pad;
        ConvOptions::new_with_padding([self.stride; 2], [(p[0], p[1]), (p[2], p[3])], [1, 1], 1)
    }

    fn w(&self) -> [usize; 4] {
        [self.cout, self.x[1], self.k, self.k]
    }
}

const CASES_2D: [Case2; 7] = [
    // the VAE's 3×3 convolutions; 40×40 makes four tiles of output positions
    Case2 { x: [2, 8, 40, 40], cout: 8, k: 3, stride: 1, pad: [1; 4] },
    Case2 { x: [3, 6, 9, 7], cout: 17, k: 3, stride: 1, pad: [1; 4] },
    // the VAE's downsampling: stride 2, padded only after
    Case2 { x: [2, 6, 9, 9], cout: 6, k: 3, stride: 2, pad: [0, 1, 0, 1] },
    // Inception's unpadded and strided kernels
    Case2 { x: [1, 5, 11, 11], cout: 20, k: 3, stride: 2, pad: [0; 4] },
    Case2 { x: [1, 5, 12, 10], cout: 20, k: 5, stride: 1, pad: [2; 4] },
    // left to burn: few channels in and out (the VAE's first and last), a 1×1 kernel
    Case2 { x: [2, 3, 10, 10], cout: 8, k: 3, stride: 1, pad: [1; 4] },
    Case2 { x: [2, 6, 10, 10], cout: 12, k: 1, stride: 1, pad: [0; 4] },
];

#[test]
fn conv2d_forward_has_burns_bits() {
    let dev = Device::flex();
    for (i, c) in CASES_2D.iter().enumerate() {
        let (xn, wn) = (c.x.iter().product(), c.w().iter().product());
        let x = tensor(&rnd(1, "x", xn, 1.0), c.x, &dev);
        let w = tensor(&rnd(2, "w", wn, 0.3), c.w(), &dev);
        let b = tensor(&rnd(3, "b", c.cout, 0.5), [c.cout], &dev);
        let ours = vals(conv::conv2d(x.clone(), w.clone(), b.clone(), c.options()));
        let burns = vals(module::conv2d(x, w, Some(b), c.options()));
        assert_eq!(bits(&ours), bits(&burns), "case {i}");
    }
}

#[test]
fn conv2d_gradients_have_burns_bits() {
    let dev = Device::flex().autodiff();
    for (i, c) in CASES_2D.iter().enumerate() {
        let (xn, wn) = (c.x.iter().product(), c.w().iter().product());
        let run = |f: &dyn Fn(Tensor<4>, Tensor<4>, Tensor<1>) -> Tensor<4>| {
            let x = tensor(&rnd(1, "x", xn, 1.0), c.x, &dev).require_grad();
            let w = tensor(&rnd(2, "w", wn, 0.3), c.w(), &dev).require_grad();
            let b = tensor(&rnd(3, "b", c.cout, 0.5), [c.cout], &dev).require_grad();
            let y = f(x.clone(), w.clone(), b.clone());
            let [n, co, oh, ow] = y.dims();
            let r = tensor(&rnd(4, "r", n * co * oh * ow, 1.0), [n, co, oh, ow], &dev);
            let grads = (y * r).sum().backward();
            [vals(x.grad(&grads).unwrap()), vals(w.grad(&grads).unwrap()), vals(b.grad(&grads).unwrap())]
        };
        let ours = run(&|x, w, b| conv::conv2d(x, w, b, c.options()));
        let burns = run(&|x, w, b| module::conv2d(x, w, Some(b), c.options()));
        for (name, (o, r)) in ["dx", "dw", "db"].iter().zip(ours.iter().zip(&burns)) {
            assert_eq!(bits(o), bits(r), "case {i}: {name}");
        }
    }
}

#[test]
fn conv3d_forward_has_burns_bits() {
    let dev = Device::flex();
    // I3D's shapes in small: a strided 7×7×7 stem, 3×3×3 and (1, 3, 3) kernels, and a 1×1×1
    // kernel (burn's path)
    let cases: [([usize; 5], [usize; 5], [usize; 3], [usize; 3]); 4] = [
        ([1, 3, 9, 20, 20], [8, 3, 7, 7, 7], [2, 2, 2], [3, 3, 3]),
        ([2, 6, 5, 9, 8], [7, 6, 3, 3, 3], [1, 1, 1], [1, 1, 1]),
        ([1, 6, 4, 9, 9], [10, 6, 1, 3, 3], [1, 2, 2], [0, 1, 1]),
        ([1, 6, 4, 5, 5], [9, 6, 1, 1, 1], [1, 1, 1], [0, 0, 0]),
    ];
    for (i, (xs, ws, stride, pad)) in cases.into_iter().enumerate() {
        let x = tensor(&rnd(5, "x", xs.iter().product(), 1.0), xs, &dev);
        let w = tensor(&rnd(6, "w", ws.iter().product(), 0.2), ws, &dev);
        let b = tensor(&rnd(7, "b", ws[0], 0.5), [ws[0]], &dev);
        let options = ConvOptions::new(stride, pad, [1, 1, 1], 1);
        let ours = vals(conv::conv3d(x.clone(), w.clone(), b.clone(), options.clone()));
        let burns = vals(module::conv3d(x, w, Some(b), options));
        assert_eq!(bits(&ours), bits(&burns), "case {i}");
    }
}
