//! Convolutions on the flex backend with burn's bits, in less time.
//!
//! burn-flex convolves most kernels by im2col + GEMM: the input is turned channels-last, each
//! tile of 512 output positions gets its patch matrix, one `gemm` call multiplies the flattened
//! kernel by it, and the product is written into the output. In the VAE's and the metric
//! networks' convolutions the data movement around that GEMM took longer than the GEMM: the
//! patch matrix is copied one element at a time with a bounds check per kernel tap, and the
//! product is scattered one element at a time across channel rows. It is worst in the weight
//! gradient, which burn computes as a convolution of the input by the output gradient with the
//! batch as its channels: runs of 2 elements per copy there.
//!
//! Here the same matrices are built with one copy per contiguous run (a kernel row of taps
//! times the channels) and the same `gemm` calls (same operands, shapes, strides and
//! parallelism) are made on them, so every value has burn's bits: the tests compare them bit
//! for bit with burn's convolution, forward and backward. Shapes burn sends down another path
//! (1×1, depthwise, few channels, grouped or dilated kernels) are left to burn.
//!
//! [`conv2d`] is differentiable: on `Autodiff<flex>` its backward pass computes the input and
//! bias gradients with burn's own functions and the weight gradient with burn's formulation on
//! these kernels. [`conv3d`] (the I3D and C3D networks, inference only) is differentiable
//! through burn's op.
//!
//! Dimension letters: N batch, C channels, D/H/W depth/height/width, K kernel taps.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::ops::conv::calculate_conv_output_size;
use burn::backend::ops::{FloatTensorOps, ModuleOps};
use burn::backend::tensor::FloatTensor;
use burn::backend::{backend_extension, Autodiff, Backend, Dispatch, Flex, TensorMetadata};
use burn::tensor::module;
use burn::tensor::ops::{ConvOptions, PadMode};
use burn::tensor::{Shape, Slice, Tensor};
use rayon::prelude::*;

use crate::attention::SharedMut;
use crate::fused::{f32_values, flex, supported};

/// The convolutions, dispatched by burn to the backend of their input.
#[backend_extension(Flex, Autodiff)]
pub trait ConvOps: Backend {
    /// `torch.nn.functional.conv2d(x, weight, bias)`: x (N, C, H, W), weight (Cout, C/groups,
    /// KH, KW), bias (Cout).
    fn conv2d_biased(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self>;
    /// The same in three dimensions: x (N, C, D, H, W), weight (Cout, C/groups, KD, KH, KW).
    fn conv3d_biased(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        options: ConvOptions<3>,
    ) -> FloatTensor<Self>;
}

/// The weight gradient the autodiff implementation calls on the inner backend.
pub trait ConvGrads: Backend {
    /// d weight of [`ConvOps::conv2d_biased`] from its input and the output gradient.
    fn conv2d_weight_grad(x: FloatTensor<Self>, dy: FloatTensor<Self>, weight_shape: Shape, options: ConvOptions<2>) -> FloatTensor<Self>;
}

// ---------------------------------------------------------------------------------------------
// Flex: burn-flex's tiled im2col + GEMM, with its data movement rewritten

/// Output positions per patch matrix: burn-flex's tile, and part of the bits (the GEMM's n).
const TILE: usize = 512;

/// Whether burn-flex takes its tiled im2col path for these (N, C, D, H, W) and (Cout, C, KD,
/// KH, KW) shapes and this kernel, and that path is one this module rewrites (f32, one group,
/// no dilation). burn-flex sends 1×1 kernels, depthwise kernels, few input and output
/// channels, and 1-D-like kernels over many channels down paths of their own, checked in this
/// order; those stay burn's.
fn takes_im2col(x: &[usize], w: &[usize], o: &ConvOptions<3>) -> bool {
    let pad = o.padding_begin();
    let one_by_one = w[2..] == [1, 1, 1] && o.stride == [1, 1, 1] && pad == [0, 0, 0];
    let flat = w[2] == 1 && x[2] == 1 && o.stride[0] == 1 && pad[0] == 0 && o.dilation[0] == 1;
    let depthwise = w[1] == 1 && o.groups == x[1] && w[0] == x[1] && flat;
    let small_channel = o.groups == 1 && flat && (1..=4).contains(&x[1]) && (1..=16).contains(&w[0]);
    let direct = o.groups == 1
        && pad == [0, 0, 0]
        && o.dilation == [1, 1, 1]
        && w[2] == 1
        && w[3] == 1
        && x[2] == 1
        && x[3] == 1
        && x[1] >= 32
        && w[4] <= 8
        && calculate_conv_output_size(w[4], o.stride[2], 0, 1, x[4]) <= 800;
    !(one_by_one || depthwise || small_channel || direct) && o.groups == 1 && o.dilation == [1, 1, 1] && !o.is_asymmetric()
}

/// `a (m×k) · bᵀ` for b (n×k), both row-major, into a new m×n buffer: burn-flex's `gemm_f32`
/// call exactly (operands, strides, parallelism), which the bits depend on.
fn gemm_like_flex(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
    let mut c = vec![0f32; m * n];
    let parallelism = if m * n * k >= 192 * 192 * 192 { gemm::Parallelism::Rayon(0) } else { gemm::Parallelism::None };
    // SAFETY: a holds m·k, b n·k and c m·n elements, as the strides address them.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.as_ptr(),
            1,
            k as isize,
            b.as_ptr(),
            k as isize,
            1,
            0.0f32,
            1.0f32,
            false,
            false,
            false,
            parallelism,
        );
    }
    c
}

/// (C, S) planes → (S, C), per batch element: in blocks of positions, so that both the reads
/// (one run per channel) and the writes (a block of S·C) stay in cache.
fn channels_last(x: &[f32], c: usize, s: usize) -> Vec<f32> {
    const BLOCK: usize = 64;
    let mut out = vec![0f32; x.len()];
    out.par_chunks_mut(c * s).zip(x.par_chunks(c * s)).for_each(|(o, xb)| {
        for s0 in (0..s).step_by(BLOCK) {
            let s1 = (s0 + BLOCK).min(s);
            for ch in 0..c {
                let src = &xb[ch * s + s0..ch * s + s1];
                for (i, &v) in src.iter().enumerate() {
                    o[(s0 + i) * c + ch] = v;
                }
            }
        }
    });
    out
}

/// burn-flex's conv3d on its im2col path ([`takes_im2col`]): the same patch matrices and GEMM
/// calls, so the same bits.
fn im2col_conv3d(x: &[f32], xd: [usize; 5], w: &[f32], wd: [usize; 5], bias: Option<&[f32]>, o: &ConvOptions<3>) -> Vec<f32> {
    let [n, c, din, hin, win] = xd;
    let [cout, _, kd, kh, kw] = wd;
    let [sd, sh, sw] = o.stride;
    let [pd, ph, pw] = o.padding_begin();
    let (dout, hout, wout) = (
        calculate_conv_output_size(kd, sd, pd, 1, din),
        calculate_conv_output_size(kh, sh, ph, 1, hin),
        calculate_conv_output_size(kw, sw, pw, 1, win),
    );
    let taps = kd * kh * kw;
    let col_len = c * taps;
    let spatial = dout * hout * wout;

    // (Cout, C, K) → (Cout, K, C): the patch matrix's column order
    let mut w_flat = vec![0f32; cout * col_len];
    for co in 0..cout {
        for ch in 0..c {
            for t in 0..taps {
                w_flat[co * col_len + t * c + ch] = w[(co * c + ch) * taps + t];
            }
        }
    }
    let x_last = channels_last(x, c, din * hin * win);

    let mut out = vec![0f32; n * cout * spatial];
    let dst = SharedMut(out.as_mut_ptr());
    let tiles = spatial.div_ceil(TILE);
    (0..n).into_par_iter().for_each(|b| {
        (0..tiles).into_par_iter().for_each(|tile| {
            let (p0, p1) = (tile * TILE, ((tile + 1) * TILE).min(spatial));
            let size = p1 - p0;
            let mut col = vec![0f32; size * col_len];
            let xb = &x_last[b * din * hin * win * c..][..din * hin * win * c];
            for (row, p) in col.chunks_exact_mut(col_len).zip(p0..p1) {
                let (od, rem) = (p / (hout * wout), p % (hout * wout));
                let (oh, ow) = (rem / wout, rem % wout);
                // the kernel columns whose input column lies inside: one contiguous run of taps
                let w_origin = (ow * sw) as isize - pw as isize;
                let t_lo = (-w_origin).max(0) as usize;
                let t_hi = ((win as isize - w_origin).max(0) as usize).min(kw);
                if t_lo >= t_hi {
                    continue;
                }
                for i in 0..kd {
                    let id = (od * sd + i) as isize - pd as isize;
                    if id < 0 || id >= din as isize {
                        continue;
                    }
                    for j in 0..kh {
                        let ih = (oh * sh + j) as isize - ph as isize;
                        if ih < 0 || ih >= hin as isize {
                            continue;
                        }
                        let iw0 = (w_origin + t_lo as isize) as usize;
                        let src = ((id as usize * hin + ih as usize) * win + iw0) * c;
                        let at = ((i * kh + j) * kw + t_lo) * c;
                        let len = (t_hi - t_lo) * c;
                        row[at..at + len].copy_from_slice(&xb[src..src + len]);
                    }
                }
            }
            let product = gemm_like_flex(&w_flat, &col, cout, col_len, size);
            for co in 0..cout {
                let at = (b * cout + co) * spatial + p0;
                // SAFETY: (b, co, p0..p1) is this task's own stretch of `out`.
                let row = unsafe { std::slice::from_raw_parts_mut(dst.get().add(at), size) };
                row.copy_from_slice(&product[co * size..(co + 1) * size]);
            }
        })
    });
    if let Some(bias) = bias.filter(|_| spatial > 0) {
        for (plane, &v) in out.chunks_exact_mut(spatial).zip(bias.iter().cycle()) {
            plane.iter_mut().for_each(|o| *o += v);
        }
    }
    out
}

fn dims<const D: usize>(t: &FlexTensor) -> [usize; D] {
    let s = t.shape();
    std::array::from_fn(|i| s[i])
}

fn is_f32(t: &FlexTensor) -> bool {
    t.dtype() == burn::tensor::DType::F32
}

/// The 2-D problem as burn-flex states it in three dimensions (depth 1).
fn as_3d(o: &ConvOptions<2>) -> ConvOptions<3> {
    let p = o.padding;
    ConvOptions::new_with_padding([1, o.stride[0], o.stride[1]], [(0, 0), p[0], p[1]], [1, o.dilation[0], o.dilation[1]], o.groups)
}

/// burn's `pad_asymmetric_conv_input` on flex: pad the input with zeros and convolve it
/// without padding.
fn pad_asymmetric(x: FlexTensor, o: ConvOptions<2>) -> (FlexTensor, ConvOptions<2>) {
    if !o.is_asymmetric() {
        return (x, o);
    }
    let padding = [(0, 0), (0, 0), o.padding[0], o.padding[1]];
    let x = Flex::float_pad(x, &padding[..], PadMode::Constant(0.0));
    (x, ConvOptions::new(o.stride, [0; 2], o.dilation, o.groups))
}

fn conv2d_flex(x: FlexTensor, w: FlexTensor, bias: Option<FlexTensor>, o: ConvOptions<2>) -> FlexTensor {
    let (xd, wd) = (dims::<4>(&x), dims::<4>(&w));
    let o3 = as_3d(&o);
    let (x3, w3) = ([xd[0], xd[1], 1, xd[2], xd[3]], [wd[0], wd[1], 1, wd[2], wd[3]]);
    if !(is_f32(&x) && is_f32(&w) && takes_im2col(&x3, &w3, &o3)) {
        return Flex::conv2d(x, w, bias, o);
    }
    let b = bias.as_ref().map(|b| f32_values(b));
    let out = im2col_conv3d(&f32_values(&x), x3, &f32_values(&w), w3, b.as_deref(), &o3);
    let [oh, ow] = [2, 3].map(|i| calculate_conv_output_size(wd[i], o.stride[i - 2], o.padding[i - 2].0, 1, xd[i]));
    flex(out, [xd[0], wd[0], oh, ow])
}

fn conv3d_flex(x: FlexTensor, w: FlexTensor, bias: Option<FlexTensor>, o: ConvOptions<3>) -> FlexTensor {
    let (xd, wd) = (dims::<5>(&x), dims::<5>(&w));
    if !(is_f32(&x) && is_f32(&w) && takes_im2col(&xd, &wd, &o)) {
        return Flex::conv3d(x, w, bias, o);
    }
    let b = bias.as_ref().map(|b| f32_values(b));
    let out = im2col_conv3d(&f32_values(&x), xd, &f32_values(&w), wd, b.as_deref(), &o);
    let [od, oh, ow] = [2, 3, 4].map(|i| calculate_conv_output_size(wd[i], o.stride[i - 2], o.padding[i - 2].0, 1, xd[i]));
    flex(out, [xd[0], wd[0], od, oh, ow])
}

impl ConvOps for Flex {
    fn conv2d_biased(x: FlexTensor, weight: FlexTensor, bias: FlexTensor, options: ConvOptions<2>) -> FlexTensor {
        // burn pads an asymmetrically padded input first, then convolves without padding
        let (x, options) = pad_asymmetric(x, options);
        conv2d_flex(x, weight, Some(bias), options)
    }

    fn conv3d_biased(x: FlexTensor, weight: FlexTensor, bias: FlexTensor, options: ConvOptions<3>) -> FlexTensor {
        conv3d_flex(x, weight, Some(bias), options)
    }
}

impl ConvGrads for Flex {
    /// burn's `conv2d_weight_backward` (pad, then the input convolved by the output gradient
    /// with the batch as channels, then cropped), with that convolution on these kernels.
    fn conv2d_weight_grad(x: FlexTensor, dy: FlexTensor, weight_shape: Shape, options: ConvOptions<2>) -> FlexTensor {
        if options.groups != 1 {
            let weight = Flex::float_zeros(weight_shape, &x.device(), burn::tensor::DType::F32.into());
            return Flex::conv2d_weight_backward(x, weight, dy, options);
        }
        let (x, options) = pad_asymmetric(x, options);
        let swapped = conv2d_flex(
            Flex::float_swap_dims(x, 0, 1),
            Flex::float_swap_dims(dy, 0, 1),
            None,
            ConvOptions::new(options.dilation, options.padding_begin(), options.stride, 1),
        );
        let grad = Flex::float_swap_dims(swapped, 0, 1);
        if grad.shape() == weight_shape {
            return grad;
        }
        let ranges: Vec<Slice> = weight_shape.iter().map(|&s| Slice::from(0..s)).collect();
        Flex::float_slice(grad, &ranges)
    }
}

// ---------------------------------------------------------------------------------------------
// Autodiff: burn's conv2d node, with the forward and the weight gradient on these kernels

impl<B: Backend + ConvOps + ConvGrads, C: CheckpointStrategy> ConvOps for Autodiff<B, C> {
    fn conv2d_biased(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct Conv2d;

        #[derive(Clone, Debug)]
        struct State<T> {
            x: T,
            weight: T,
            bias: T,
            options: ConvOptions<2>,
        }

        impl<B: Backend + ConvGrads> Backward<B, 3> for Conv2d {
            type State = State<FloatTensor<B>>;

            // burn's order and functions, so the gradients have burn's bits
            fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
                let dy = grads.consume::<B>(&ops.node);
                let s = ops.state;
                let [px, pw, pb] = ops.parents;
                if let Some(p) = px {
                    let dx = B::conv2d_x_backward(s.x.clone(), s.weight.clone(), dy.clone(), s.options.clone());
                    grads.register::<B>(p.id, dx);
                }
                if let Some(p) = pw {
                    let dw = B::conv2d_weight_grad(s.x.clone(), dy.clone(), s.weight.shape(), s.options);
                    grads.register::<B>(p.id, dw);
                }
                if let Some(p) = pb {
                    grads.register::<B>(p.id, B::conv2d_bias_backward(s.x, s.bias, dy));
                }
            }
        }

        let (xp, xg) = x.into_parts();
        let (wp, wg) = weight.into_parts();
        let (bp, bg) = bias.into_parts();
        match Conv2d.prepare::<C>([xg, wg, bg]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let state = State { x: xp.clone(), weight: wp.clone(), bias: bp.clone(), options: options.clone() };
                prep.finish(state, B::conv2d_biased(xp, wp, bp, options))
            }
            OpsKind::UnTracked(prep) => prep.finish(B::conv2d_biased(xp, wp, bp, options)),
        }
    }

    /// Inference only in this toolkit: burn's differentiable conv3d.
    fn conv3d_biased(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        options: ConvOptions<3>,
    ) -> FloatTensor<Self> {
        <Self as ModuleOps<Self>>::conv3d(x, weight, Some(bias), options)
    }
}

// ---------------------------------------------------------------------------------------------
// Tensor-level entry points

/// `conv2d(x, weight, bias)` with burn's bits: on these kernels for f32 flex tensors, burn's
/// op elsewhere.
pub fn conv2d(x: Tensor<4>, weight: Tensor<4>, bias: Tensor<1>, options: ConvOptions<2>) -> Tensor<4> {
    if !(supported(&x) && supported(&weight) && supported(&bias)) {
        return module::conv2d(x, weight, Some(bias), options);
    }
    let out = <Dispatch as ConvOps>::conv2d_biased(x.into_dispatch(), weight.into_dispatch(), bias.into_dispatch(), options);
    Tensor::from_dispatch(out)
}

/// `conv3d(x, weight, bias)` with burn's bits, as [`conv2d`].
pub fn conv3d(x: Tensor<5>, weight: Tensor<5>, bias: Tensor<1>, options: ConvOptions<3>) -> Tensor<5> {
    if !(supported(&x) && supported(&weight) && supported(&bias)) {
        return module::conv3d(x, weight, Some(bias), options);
    }
    let out = <Dispatch as ConvOps>::conv3d_biased(x.into_dispatch(), weight.into_dispatch(), bias.into_dispatch(), options);
    Tensor::from_dispatch(out)
}
