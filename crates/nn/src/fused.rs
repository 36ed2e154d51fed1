//! Fused CPU kernels with hand-written backward passes for the hot paths of a DiT block:
//! LayerNorm (no affine) + adaLN modulation, tanh GELU, and the softmax of attention; and the
//! VAE's SiLU, with burn's bits.
//!
//! Composed from primitive tensor ops, each of these costs several passes over memory and, under
//! autodiff, a graph node and a saved tensor per primitive. Here each is one burn backend
//! extension op (`#[backend_extension]`): a single-pass f32 kernel on the flex backend, and on
//! `Autodiff<flex>` one graph node whose backward is a single-pass kernel too. Tensors on other
//! backends (or not f32) take the composed form in [`crate::ops`], so the GPU path keeps working.
//!
//! Legend: R rows (every axis but the last), D the last axis.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{broadcast_shape, unary, Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{backend_extension, Autodiff, Backend, Dispatch, DispatchDevice, Flex, TensorMetadata};
use burn::tensor::{DType, Shape, Tensor, TensorData};
use rayon::prelude::*;

const SQRT_2_OVER_PI: f32 = (core::f64::consts::FRAC_2_SQRT_PI * core::f64::consts::FRAC_1_SQRT_2) as f32;
const GELU_C: f32 = 0.044715;

/// The fused ops, dispatched by burn to the backend of their first tensor.
#[backend_extension(Flex, Autodiff)]
pub trait FusedOps: Backend {
    /// `LN(x)·(1 + scale) + shift` over the last axis; `shift`, `scale` have x's rank, the same
    /// last axis, and every other axis either x's or 1.
    fn ln_modulate(x: FloatTensor<Self>, shift: FloatTensor<Self>, scale: FloatTensor<Self>, eps: f64) -> FloatTensor<Self>;
    /// `0.5·x·(1 + tanh(√(2/π)(x + 0.044715x³)))`.
    fn gelu_tanh(x: FloatTensor<Self>) -> FloatTensor<Self>;
    /// Softmax over the last axis.
    fn softmax_last(x: FloatTensor<Self>) -> FloatTensor<Self>;
    /// `x·σ(x)`, with burn's bits.
    fn silu(x: FloatTensor<Self>) -> FloatTensor<Self>;
}

/// The backward kernels the autodiff implementation calls on the inner backend.
pub trait FusedGrads: Backend {
    /// (dx, dy·x̂) of [`FusedOps::ln_modulate`]; dshift and dscale are dy and dy·x̂ summed over
    /// the broadcast axes.
    fn ln_modulate_backward(
        x: FloatTensor<Self>,
        scale: FloatTensor<Self>,
        dy: FloatTensor<Self>,
        eps: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);
    fn gelu_tanh_backward(x: FloatTensor<Self>, dy: FloatTensor<Self>) -> FloatTensor<Self>;
    /// From the forward's output y: `y·(dy − Σ dy·y)`.
    fn softmax_last_backward(y: FloatTensor<Self>, dy: FloatTensor<Self>) -> FloatTensor<Self>;
    /// `dy·σ(x) + (dy·x)·σ(x)·(1 − σ(x))`, with burn's bits.
    fn silu_backward(x: FloatTensor<Self>, dy: FloatTensor<Self>) -> FloatTensor<Self>;
}

// ---------------------------------------------------------------------------------------------
// Flex kernels

fn contiguous_f32(t: &FlexTensor) -> Vec<f32> {
    match t.as_slice::<f32>() {
        Some(s) => s.to_vec(),
        None => t.to_contiguous().as_slice::<f32>().expect("a contiguous f32 tensor").to_vec(),
    }
}

/// The values of an f32 flex tensor in row-major order: borrowed when already contiguous.
pub(crate) fn f32_values(t: &FlexTensor) -> std::borrow::Cow<'_, [f32]> {
    match t.as_slice::<f32>() {
        Some(s) => std::borrow::Cow::Borrowed(s),
        None => std::borrow::Cow::Owned(contiguous_f32(t)),
    }
}

/// Elements per parallel task of the element-wise kernels.
const ELEMENTWISE_CHUNK: usize = 4096;

fn with_slice<R>(t: &FlexTensor, f: impl FnOnce(&[f32]) -> R) -> R {
    match t.as_slice::<f32>() {
        Some(s) => f(s),
        None => f(&contiguous_f32(t)),
    }
}

/// An f32 flex tensor of `shape` from its row-major values.
pub(crate) fn flex(v: Vec<f32>, shape: impl Into<Shape>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(v, shape.into()))
}

/// For each row of a tensor of `shape`, the row of a broadcast parameter of `pshape`.
fn param_rows(shape: &Shape, pshape: &Shape) -> Vec<usize> {
    let k = shape.num_dims() - 1;
    let rows: usize = (0..k).map(|i| shape[i]).product();
    // contiguous strides of the parameter over its leading axes, 0 where broadcast
    let mut pstride = vec![0usize; k];
    let mut acc = 1;
    for i in (0..k).rev() {
        pstride[i] = if pshape[i] == 1 { 0 } else { acc };
        acc *= pshape[i];
    }
    (0..rows)
        .map(|r| {
            let (mut rem, mut p) = (r, 0);
            for i in (0..k).rev() {
                p += (rem % shape[i]) * pstride[i];
                rem /= shape[i];
            }
            p
        })
        .collect()
}

/// Sum in 8 f32 lanes (vectorisable, and more accurate than one serial sum).
pub(crate) fn sum8(a: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let mut it = a.chunks_exact(8);
    for c in &mut it {
        for l in 0..8 {
            acc[l] += c[l];
        }
    }
    acc.iter().sum::<f32>() + it.remainder().iter().sum::<f32>()
}

/// Dot product in 8 f32 lanes.
fn dot8(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (mut ia, mut ib) = (a.chunks_exact(8), b.chunks_exact(8));
    for (ca, cb) in (&mut ia).zip(&mut ib) {
        for l in 0..8 {
            acc[l] += ca[l] * cb[l];
        }
    }
    acc.iter().sum::<f32>() + ia.remainder().iter().zip(ib.remainder()).map(|(x, y)| x * y).sum::<f32>()
}

/// Sum of squared deviations from `mean`, in 8 f32 lanes.
fn sq_dev8(a: &[f32], mean: f32) -> f32 {
    let mut acc = [0f32; 8];
    let mut it = a.chunks_exact(8);
    for c in &mut it {
        for l in 0..8 {
            let v = c[l] - mean;
            acc[l] += v * v;
        }
    }
    acc.iter().sum::<f32>() + it.remainder().iter().map(|v| (v - mean) * (v - mean)).sum::<f32>()
}

/// Mean and 1/σ (biased variance, two passes as PyTorch) of one row.
fn moments(row: &[f32], eps: f64) -> (f32, f32) {
    let n = row.len() as f32;
    let mean = sum8(row) / n;
    let var = sq_dev8(row, mean) / n;
    (mean, 1.0 / (var + eps as f32).sqrt())
}

/// `eˣ` in plain f32 arithmetic that LLVM vectorises (libm's `expf` is a scalar call):
/// x = n·ln2 + r with |r| ≤ ln2/2 (ln2 split in two for exactness), a degree-6 Taylor
/// polynomial for eʳ (relative error < 2e-7 there), and 2ⁿ built in the exponent bits.
/// Inputs below −87 give 0 (as expf underflows); no caller passes more than 0.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // round to nearest by adding 1.5·2²³ (`round` is a libm call without SSE4.1, which would
    // keep every caller's loop scalar); n also sits in the low mantissa bits of `shifted`
    const SHIFT: f32 = 12_582_912.0;
    let y = x.clamp(-87.0, 88.0);
    let shifted = y * LOG2E + SHIFT;
    let n = shifted - SHIFT;
    let r = (y - n * LN2_HI) - n * LN2_LO;
    let p = 1.0 + r * (1.0 + r * (0.5 + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    let n_int = (shifted.to_bits() as i32).wrapping_sub(SHIFT.to_bits() as i32);
    let scale = f32::from_bits(((n_int + 127) as u32) << 23);
    if x < -87.0 {
        0.0
    } else {
        p * scale
    }
}

/// tanh through one `exp` (about 3× faster than libm's `tanhf` here; error ≤ 2e-7).
#[inline(always)]
fn tanh(u: f32) -> f32 {
    let e = exp(-2.0 * u.abs());
    ((1.0 - e) / (1.0 + e)).copysign(u)
}

#[inline(always)]
fn gelu_tanh_parts(x: f32) -> (f32, f32) {
    let u = SQRT_2_OVER_PI * (x + GELU_C * x * x * x);
    let th = tanh(u);
    let y = 0.5 * x * (1.0 + th);
    let dy = 0.5 * (1.0 + th) + 0.5 * x * (1.0 - th * th) * SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_C * x * x);
    (y, dy)
}

#[inline(always)]
fn gelu_forward_loop(o: &mut [f32], x: &[f32]) {
    for (o, &v) in o.iter_mut().zip(x) {
        *o = gelu_tanh_parts(v).0;
    }
}

#[inline(always)]
fn gelu_backward_loop(o: &mut [f32], x: &[f32], dy: &[f32]) {
    for ((o, &v), &g) in o.iter_mut().zip(x).zip(dy) {
        *o = g * gelu_tanh_parts(v).1;
    }
}

/// The GELU loops compiled a second time with AVX2 (8 lanes; the build's x86-64 baseline has
/// SSE2's 4), picked at run time. Lane by lane they are the same IEEE operations (Rust never
/// fuses a multiply and an add by itself), so both give the same bits (tested).
#[cfg(target_arch = "x86_64")]
mod avx2 {
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn gelu_forward(o: &mut [f32], x: &[f32]) {
        super::gelu_forward_loop(o, x)
    }

    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn gelu_backward(o: &mut [f32], x: &[f32], dy: &[f32]) {
        super::gelu_backward_loop(o, x, dy)
    }
}

fn gelu_forward(o: &mut [f32], x: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked just above.
        return unsafe { avx2::gelu_forward(o, x) };
    }
    gelu_forward_loop(o, x)
}

fn gelu_backward(o: &mut [f32], x: &[f32], dy: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked just above.
        return unsafe { avx2::gelu_backward(o, x, dy) };
    }
    gelu_backward_loop(o, x, dy)
}

/// burn-flex's sigmoid, operation for operation (libm's `expf`, the same branches), so that
/// [`FusedOps::silu`] has the bits of burn's `silu` (`x · sigmoid(x)`, two ops and four
/// passes over memory under autodiff, one here).
#[inline(always)]
fn sigmoid_like_flex(x: f32) -> f32 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

impl FusedOps for Flex {
    fn ln_modulate(x: FlexTensor, shift: FlexTensor, scale: FlexTensor, eps: f64) -> FlexTensor {
        let shape = x.shape();
        let d = shape[shape.num_dims() - 1];
        let (srow, crow) = (param_rows(&shape, &shift.shape()), param_rows(&shape, &scale.shape()));
        let (sh, sc) = (contiguous_f32(&shift), contiguous_f32(&scale));
        let mut out = vec![0f32; shape.num_elements()];
        with_slice(&x, |xs| {
            out.par_chunks_mut(d).zip(xs.par_chunks(d)).enumerate().for_each(|(r, (o, xr))| {
                let (mean, rstd) = moments(xr, eps);
                let (s, c) = (&sh[srow[r] * d..][..d], &sc[crow[r] * d..][..d]);
                for j in 0..d {
                    o[j] = (xr[j] - mean) * rstd * (1.0 + c[j]) + s[j];
                }
            })
        });
        flex(out, shape)
    }

    fn gelu_tanh(x: FlexTensor) -> FlexTensor {
        let shape = x.shape();
        let mut out = vec![0f32; shape.num_elements()];
        // chunks with a plain inner loop: LLVM vectorises it (a rayon `map().collect()` checks
        // every write and stays scalar, which made GELU a fifth of a small model's step)
        with_slice(&x, |xs| {
            out.par_chunks_mut(ELEMENTWISE_CHUNK).zip(xs.par_chunks(ELEMENTWISE_CHUNK)).for_each(|(o, xc)| gelu_forward(o, xc))
        });
        flex(out, shape)
    }

    fn softmax_last(x: FlexTensor) -> FlexTensor {
        let shape = x.shape();
        let d = shape[shape.num_dims() - 1];
        let mut out = vec![0f32; shape.num_elements()];
        with_slice(&x, |xs| {
            out.par_chunks_mut(d).zip(xs.par_chunks(d)).with_min_len(16).for_each(|(o, xr)| {
                let m = xr.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                // exponentials first, then the sum: a serial f32 sum would keep the loop scalar
                for (o, &v) in o.iter_mut().zip(xr) {
                    *o = exp(v - m);
                }
                let inv = 1.0 / sum8(o);
                o.iter_mut().for_each(|v| *v *= inv);
            })
        });
        flex(out, shape)
    }

    fn silu(x: FlexTensor) -> FlexTensor {
        let shape = x.shape();
        let mut out = vec![0f32; shape.num_elements()];
        with_slice(&x, |xs| {
            out.par_chunks_mut(ELEMENTWISE_CHUNK).zip(xs.par_chunks(ELEMENTWISE_CHUNK)).for_each(|(o, xc)| {
                for (o, &v) in o.iter_mut().zip(xc) {
                    *o = v * sigmoid_like_flex(v);
                }
            })
        });
        flex(out, shape)
    }
}

impl FusedGrads for Flex {
    fn ln_modulate_backward(x: FlexTensor, scale: FlexTensor, dy: FlexTensor, eps: f64) -> (FlexTensor, FlexTensor) {
        let shape = x.shape();
        let d = shape[shape.num_dims() - 1];
        let crow = param_rows(&shape, &scale.shape());
        let sc = contiguous_f32(&scale);
        let dys = contiguous_f32(&dy);
        let mut dx = vec![0f32; shape.num_elements()];
        let mut dyxhat = vec![0f32; shape.num_elements()];
        with_slice(&x, |xs| {
            dx.par_chunks_mut(d).zip(dyxhat.par_chunks_mut(d)).zip(xs.par_chunks(d).zip(dys.par_chunks(d))).enumerate().for_each(
                |(r, ((dxr, dyx), (xr, dyr)))| {
                    let (mean, rstd) = moments(xr, eps);
                    let c = &sc[crow[r] * d..][..d];
                    // g = dy·(1+scale); dx = rstd·(g − mean(g) − x̂·mean(g·x̂))
                    // dxr holds g and dyx holds x̂ until dx and dy·x̂ are formed
                    for j in 0..d {
                        dxr[j] = dyr[j] * (1.0 + c[j]);
                        dyx[j] = (xr[j] - mean) * rstd;
                    }
                    let mg = sum8(dxr) / d as f32;
                    let mgx = dot8(dxr, dyx) / d as f32;
                    for j in 0..d {
                        let xh = dyx[j];
                        dxr[j] = rstd * (dxr[j] - mg - xh * mgx);
                        dyx[j] = dyr[j] * xh;
                    }
                },
            )
        });
        (flex(dx, shape.clone()), flex(dyxhat, shape))
    }

    fn gelu_tanh_backward(x: FlexTensor, dy: FlexTensor) -> FlexTensor {
        let shape = x.shape();
        let dys = contiguous_f32(&dy);
        let mut out = vec![0f32; shape.num_elements()];
        with_slice(&x, |xs| {
            out.par_chunks_mut(ELEMENTWISE_CHUNK)
                .zip(xs.par_chunks(ELEMENTWISE_CHUNK).zip(dys.par_chunks(ELEMENTWISE_CHUNK)))
                .for_each(|(o, (xc, gc))| gelu_backward(o, xc, gc))
        });
        flex(out, shape)
    }

    fn softmax_last_backward(y: FlexTensor, dy: FlexTensor) -> FlexTensor {
        let shape = y.shape();
        let d = shape[shape.num_dims() - 1];
        let dys = contiguous_f32(&dy);
        let mut dx = vec![0f32; shape.num_elements()];
        with_slice(&y, |ys| {
            dx.par_chunks_mut(d).zip(ys.par_chunks(d).zip(dys.par_chunks(d))).with_min_len(16).for_each(|(o, (yr, gr))| {
                let dot: f32 = yr.iter().zip(gr).map(|(a, b)| a * b).sum();
                for j in 0..d {
                    o[j] = yr[j] * (gr[j] - dot);
                }
            })
        });
        flex(dx, shape)
    }

    fn silu_backward(x: FlexTensor, dy: FlexTensor) -> FlexTensor {
        let shape = x.shape();
        let dys = contiguous_f32(&dy);
        let mut out = vec![0f32; shape.num_elements()];
        with_slice(&x, |xs| {
            out.par_chunks_mut(ELEMENTWISE_CHUNK).zip(xs.par_chunks(ELEMENTWISE_CHUNK).zip(dys.par_chunks(ELEMENTWISE_CHUNK))).for_each(
                |(o, (xc, gc))| {
                    for ((o, &v), &g) in o.iter_mut().zip(xc).zip(gc) {
                        // burn's graph: the product's gradient to x (dy·s), the sigmoid's
                        // (burn's `g·s·(1 − s)` of g = dy·x), summed (the sum commutes)
                        let s = sigmoid_like_flex(v);
                        *o = g * s + (g * v) * s * (1.0 - s);
                    }
                },
            )
        });
        flex(out, shape)
    }
}

// ---------------------------------------------------------------------------------------------
// Autodiff: one graph node per op, backward through the inner backend's kernels

impl<B: Backend + FusedOps + FusedGrads, C: CheckpointStrategy> FusedOps for Autodiff<B, C> {
    fn ln_modulate(x: FloatTensor<Self>, shift: FloatTensor<Self>, scale: FloatTensor<Self>, eps: f64) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct LnModulate;

        #[derive(Clone, Debug)]
        struct State<T> {
            x: T,
            scale: T,
            shift_shape: Shape,
            scale_shape: Shape,
            eps: f64,
        }

        impl<B: Backend + FusedGrads> Backward<B, 3> for LnModulate {
            type State = State<FloatTensor<B>>;

            fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
                let dy = grads.consume::<B>(&ops.node);
                let s = ops.state;
                let [px, pshift, pscale] = ops.parents;
                let (dx, dyxhat) = B::ln_modulate_backward(s.x, s.scale, dy.clone(), s.eps);
                if let Some(p) = px {
                    grads.register::<B>(p.id, dx);
                }
                if let Some(p) = pshift {
                    grads.register::<B>(p.id, broadcast_shape::<B>(dy, &s.shift_shape));
                }
                if let Some(p) = pscale {
                    grads.register::<B>(p.id, broadcast_shape::<B>(dyxhat, &s.scale_shape));
                }
            }
        }

        let (xp, xg) = x.into_parts();
        let (sp, sg) = shift.into_parts();
        let (cp, cg) = scale.into_parts();
        match LnModulate.prepare::<C>([xg, sg, cg]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let state = State { x: xp.clone(), scale: cp.clone(), shift_shape: sp.shape(), scale_shape: cp.shape(), eps };
                prep.finish(state, B::ln_modulate(xp, sp, cp, eps))
            }
            OpsKind::UnTracked(prep) => prep.finish(B::ln_modulate(xp, sp, cp, eps)),
        }
    }

    fn gelu_tanh(x: FloatTensor<Self>) -> FloatTensor<Self> {
        elementwise::<B, C>(x, B::gelu_tanh, B::gelu_tanh_backward)
    }

    fn softmax_last(x: FloatTensor<Self>) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct SoftmaxLast;

        impl<B: Backend + FusedGrads> Backward<B, 1> for SoftmaxLast {
            type State = FloatTensor<B>;

            fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
                let y = ops.state;
                unary::<B, _>(ops.parents, ops.node, grads, |dy| B::softmax_last_backward(y, dy));
            }
        }

        let (xp, xg) = x.into_parts();
        match SoftmaxLast.prepare::<C>([xg]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let out = B::softmax_last(xp);
                prep.finish(out.clone(), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::softmax_last(xp)),
        }
    }

    fn silu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        elementwise::<B, C>(x, B::silu, B::silu_backward)
    }
}

/// The autodiff node of an element-wise op whose backward pass needs only the op's input.
struct Elementwise<B: Backend> {
    backward: fn(FloatTensor<B>, FloatTensor<B>) -> FloatTensor<B>,
}

impl<B: Backend> std::fmt::Debug for Elementwise<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Elementwise")
    }
}

impl<B: Backend> Backward<B, 1> for Elementwise<B> {
    type State = FloatTensor<B>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let x = ops.state;
        unary::<B, _>(ops.parents, ops.node, grads, |dy| (self.backward)(x, dy));
    }
}

/// `forward(x)` as one graph node that keeps x and differentiates with `backward(x, dy)`.
fn elementwise<B: Backend, C: CheckpointStrategy>(
    x: FloatTensor<Autodiff<B, C>>,
    forward: fn(FloatTensor<B>) -> FloatTensor<B>,
    backward: fn(FloatTensor<B>, FloatTensor<B>) -> FloatTensor<B>,
) -> FloatTensor<Autodiff<B, C>> {
    let (xp, xg) = x.into_parts();
    match (Elementwise { backward }).prepare::<C>([xg]).compute_bound().stateful() {
        OpsKind::Tracked(prep) => {
            let out = forward(xp.clone());
            prep.finish(xp, out)
        }
        OpsKind::UnTracked(prep) => prep.finish(forward(xp)),
    }
}

// ---------------------------------------------------------------------------------------------
// Tensor-level entry points

/// Whether the fused kernels serve `x`: an f32 tensor on flex (with or without autodiff).
pub fn supported<const D: usize>(x: &Tensor<D>) -> bool {
    x.dtype() == DType::F32 && matches!(x.device().inner().as_dispatch(), DispatchDevice::Flex(_))
}

/// Fused `LN(x)·(1 + scale) + shift`; None when the fused kernel does not apply (other backend
/// or dtype, or a parameter whose last axis is broadcast).
pub fn ln_modulate<const D: usize>(x: &Tensor<D>, shift: &Tensor<D>, scale: &Tensor<D>, eps: f64) -> Option<Tensor<D>> {
    let (xd, sd, cd) = (x.dims(), shift.dims(), scale.dims());
    let fits = |p: [usize; D]| (0..D).all(|i| p[i] == xd[i] || (p[i] == 1 && i + 1 < D));
    if !(supported(x) && supported(shift) && supported(scale) && fits(sd) && fits(cd)) {
        return None;
    }
    let out =
        <Dispatch as FusedOps>::ln_modulate(x.clone().into_dispatch(), shift.clone().into_dispatch(), scale.clone().into_dispatch(), eps);
    Some(Tensor::from_dispatch(out))
}

/// Fused tanh GELU; None when the fused kernel does not apply.
pub fn gelu_tanh<const D: usize>(x: &Tensor<D>) -> Option<Tensor<D>> {
    supported(x).then(|| Tensor::from_dispatch(<Dispatch as FusedOps>::gelu_tanh(x.clone().into_dispatch())))
}

/// Fused SiLU with burn's bits; None when the fused kernel does not apply.
pub fn silu<const D: usize>(x: &Tensor<D>) -> Option<Tensor<D>> {
    supported(x).then(|| Tensor::from_dispatch(<Dispatch as FusedOps>::silu(x.clone().into_dispatch())))
}

/// Fused softmax over the last axis; None when the fused kernel does not apply.
pub fn softmax_last<const D: usize>(x: &Tensor<D>) -> Option<Tensor<D>> {
    supported(x).then(|| Tensor::from_dispatch(<Dispatch as FusedOps>::softmax_last(x.clone().into_dispatch())))
}

#[cfg(test)]
mod tests {
    #[test]
    fn exp_is_within_3e7_relative_of_libm() {
        let mut worst = 0f64;
        for i in 0..=200_000 {
            let x = -87.0 + 88.0 * i as f32 / 200_000.0;
            let (ours, reference) = (super::exp(x) as f64, (x as f64).exp());
            worst = worst.max(((ours - reference) / reference).abs());
        }
        assert!(worst < 3e-7, "worst relative error {worst}");
        assert_eq!(super::exp(-200.0), 0.0);
        assert_eq!(super::exp(0.0), 1.0);
    }

    /// The dispatched GELU loops (AVX2 where the CPU has it) give the baseline build's bits,
    /// over a spread of inputs from deep in the tails through zero, in lengths that leave
    /// remainders for the vector loop.
    #[test]
    fn dispatched_gelu_loops_have_the_baseline_bits() {
        let x: Vec<f32> = (0..20_011)
            .map(|i| (i as f32 - 10_005.0) * 1.3e-3 * (1.0 + (i % 7) as f32))
            .chain([-200.0, -87.5, 0.0, -0.0, 1e-30, 90.0])
            .collect();
        let dy: Vec<f32> = x.iter().enumerate().map(|(i, v)| 0.5 - v.sin() * (i % 3) as f32).collect();
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        let (mut base, mut fast) = (vec![0f32; x.len()], vec![0f32; x.len()]);
        super::gelu_forward_loop(&mut base, &x);
        super::gelu_forward(&mut fast, &x);
        assert_eq!(bits(&base), bits(&fast), "forward");
        super::gelu_backward_loop(&mut base, &x, &dy);
        super::gelu_backward(&mut fast, &x, &dy);
        assert_eq!(bits(&base), bits(&fast), "backward");
    }
}
