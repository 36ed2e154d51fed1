//! Fused multi-head self-attention over the spatial or temporal token sequences of a video
//! hidden state, with a hand-written backward pass.
//!
//! The composed form (regroup the fused `qkv` projection into sequences, split heads, two
//! batched matmuls, softmax, merge heads, ungroup) copies the activations four times each way
//! and, under autodiff, keeps every intermediate. Here one kernel reads q, k and v for each
//! (sequence, head) straight out of the `qkv` buffer through strides, and writes the output
//! back in the same (B, T, N, ·) layout; only the output and one log-sum-exp per query row are
//! kept for the backward pass, which recomputes the probabilities (as FlashAttention does).
//!
//! Legend: B batch, T frames, N tokens per frame, D hidden (H heads × E head dim), S sequences,
//! L sequence length (N for spatial sequences, T for temporal ones).

use crate::fused::{exp, f32_values, flex, sum8};
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{unary, Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{backend_extension, Autodiff, Backend, Dispatch, Flex, TensorMetadata};
use burn::tensor::{Shape, Tensor};
use rayon::prelude::*;

/// Which token sequences attend: the N tokens of each frame, or the T frames of each location.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sequences {
    Spatial,
    Temporal,
}

/// The fused attention, dispatched by burn to the backend of its input.
#[backend_extension(Flex, Autodiff)]
pub trait AttentionOps: Backend {
    /// `qkv` (B, T, N, 3·D) laid out `[q | k | v]`, each head-major → (B, T, N, D): softmax(q kᵀ
    /// / √E) v per head within each sequence, heads concatenated in order.
    fn fused_attention(qkv: FloatTensor<Self>, heads: usize, temporal: bool) -> FloatTensor<Self>;
}

/// The kernels the autodiff implementation calls on the inner backend.
pub trait AttentionGrads: Backend {
    /// The output and the log-sum-exp of every score row, (S, H, L).
    fn fused_attention_lse(qkv: FloatTensor<Self>, heads: usize, temporal: bool) -> (FloatTensor<Self>, FloatTensor<Self>);
    /// d qkv from the forward's input, output and log-sum-exp and the output gradient.
    fn fused_attention_backward(
        qkv: FloatTensor<Self>,
        out: FloatTensor<Self>,
        lse: FloatTensor<Self>,
        dout: FloatTensor<Self>,
        heads: usize,
        temporal: bool,
    ) -> FloatTensor<Self>;
}

// ---------------------------------------------------------------------------------------------
// Geometry: where row l of sequence s sits among the B·T·N token rows

#[derive(Clone, Copy, Debug)]
struct Geometry {
    t: usize,
    n: usize,
    d: usize,
    heads: usize,
    seqs: usize,
    len: usize,
    temporal: bool,
}

impl Geometry {
    fn new(shape: &Shape, heads: usize, temporal: bool) -> Self {
        let [b, t, n, three_d] = [shape[0], shape[1], shape[2], shape[3]];
        let d = three_d / 3;
        let (seqs, len) = if temporal { (b * n, t) } else { (b * t, n) };
        Self { t, n, d, heads, seqs, len, temporal }
    }

    fn e(&self) -> usize {
        self.d / self.heads
    }

    /// Token row of position 0 of sequence `s`.
    fn first_row(&self, s: usize) -> usize {
        if self.temporal {
            (s / self.n) * self.t * self.n + s % self.n
        } else {
            s * self.n
        }
    }

    /// Token rows between consecutive positions of a sequence.
    fn row_step(&self) -> usize {
        if self.temporal {
            self.n
        } else {
            1
        }
    }
}

/// A pointer shared by the parallel tasks, each of which writes a disjoint set of elements.
#[derive(Clone, Copy)]
pub(crate) struct SharedMut(pub(crate) *mut f32);
// SAFETY: every use below writes element sets that no other task reads or writes.
unsafe impl Send for SharedMut {}
unsafe impl Sync for SharedMut {}

impl SharedMut {
    // a method, so that closures capture the whole (Sync) wrapper, not its raw-pointer field
    pub(crate) fn get(&self) -> *mut f32 {
        self.0
    }
}

/// `dst (m×n) = scale · lhs (m×k) · rhs (k×n)`, each operand given by a pointer and its row and
/// column strides (in elements), single-threaded (the callers parallelise over heads).
///
/// # Safety
/// The pointers must cover every element the strides address; `dst` must not alias the inputs.
#[allow(clippy::too_many_arguments)]
unsafe fn matmul(
    (m, n, k): (usize, usize, usize),
    dst: *mut f32,
    dst_rs: usize,
    lhs: *const f32,
    (lhs_rs, lhs_cs): (usize, usize),
    rhs: *const f32,
    (rhs_rs, rhs_cs): (usize, usize),
    scale: f32,
) {
    gemm::gemm(
        m,
        n,
        k,
        dst,
        1,
        dst_rs as isize,
        false,
        lhs,
        lhs_cs as isize,
        lhs_rs as isize,
        rhs,
        rhs_cs as isize,
        rhs_rs as isize,
        0.0f32,
        scale,
        false,
        false,
        false,
        gemm::Parallelism::None,
    );
}

/// The scores `q kᵀ / √E` of one (sequence, head) into `p` (L×L).
///
/// # Safety
/// `qkv` holds the (B, T, N, 3D) tensor `g` describes.
unsafe fn scores(qkv: &[f32], g: &Geometry, s: usize, h: usize, p: &mut [f32]) {
    let (d3, e, len) = (3 * g.d, g.e(), g.len);
    let rs = g.row_step() * d3;
    let q = qkv.as_ptr().add(g.first_row(s) * d3 + h * e);
    let k = q.add(g.d);
    matmul((len, len, e), p.as_mut_ptr(), len, q, (rs, 1), k, (1, rs), (e as f32).powf(-0.5));
}

fn forward_kernel(qkv: &[f32], g: &Geometry) -> (Vec<f32>, Vec<f32>) {
    let (d, d3, e, len) = (g.d, 3 * g.d, g.e(), g.len);
    let rows = g.seqs * len;
    let mut out = vec![0f32; rows * d];
    let mut lse = vec![0f32; g.seqs * g.heads * len];
    let dst = SharedMut(out.as_mut_ptr());
    lse.par_chunks_mut(len).enumerate().for_each(|(task, lse)| {
        let (s, h) = (task / g.heads, task % g.heads);
        let mut p = vec![0f32; len * len];
        // SAFETY: q, k, v and the output rows of (s, h) lie inside their buffers; the output
        // columns h·E..(h+1)·E of sequence s's rows belong to this task alone.
        unsafe {
            scores(qkv, g, s, h, &mut p);
            for (row, lse) in p.chunks_mut(len).zip(lse.iter_mut()) {
                let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                row.iter_mut().for_each(|v| *v = exp(*v - m));
                let sum = sum8(row);
                let inv = 1.0 / sum;
                row.iter_mut().for_each(|v| *v *= inv);
                *lse = m + sum.ln();
            }
            let v = qkv.as_ptr().add(g.first_row(s) * d3 + 2 * d + h * e);
            let o = dst.get().add(g.first_row(s) * d + h * e);
            matmul((len, e, len), o, g.row_step() * d, p.as_ptr(), (len, 1), v, (g.row_step() * d3, 1), 1.0);
        }
    });
    (out, lse)
}

fn backward_kernel(qkv: &[f32], out: &[f32], lse: &[f32], dout: &[f32], g: &Geometry) -> Vec<f32> {
    let (d, d3, e, len) = (g.d, 3 * g.d, g.e(), g.len);
    let scale = (e as f32).powf(-0.5);
    // every element is written below: each (s, h) covers its q, k and v columns of its rows
    let mut dqkv = vec![0f32; g.seqs * len * d3];
    let dst = SharedMut(dqkv.as_mut_ptr());
    (0..g.seqs * g.heads).into_par_iter().for_each(|task| {
        let (s, h) = (task / g.heads, task % g.heads);
        let (rs3, rs1) = (g.row_step() * d3, g.row_step() * d);
        let mut p = vec![0f32; len * len];
        let mut dp = vec![0f32; len * len];
        // SAFETY: as in the forward; the dq, dk, dv blocks of (s, h) belong to this task alone.
        unsafe {
            scores(qkv, g, s, h, &mut p);
            let lse = &lse[task * len..][..len];
            for (row, &m) in p.chunks_mut(len).zip(lse) {
                row.iter_mut().for_each(|v| *v = exp(*v - m));
            }
            let base = g.first_row(s);
            let q = qkv.as_ptr().add(base * d3 + h * e);
            let (k, v) = (q.add(d), q.add(2 * d));
            let o_at = |l: usize| &out[(base + l * g.row_step()) * d + h * e..][..e];
            let g_at = |l: usize| &dout[(base + l * g.row_step()) * d + h * e..][..e];
            let go = dout.as_ptr().add(base * d + h * e);
            let dq = dst.get().add(base * d3 + h * e);
            let (dk, dv) = (dq.add(d), dq.add(2 * d));
            // dV = Pᵀ dO
            matmul((len, e, len), dv, rs3, p.as_ptr(), (1, len), go, (rs1, 1), 1.0);
            // dP = dO Vᵀ, then dS = P ∘ (dP − rowsum(dO ∘ O))
            matmul((len, len, e), dp.as_mut_ptr(), len, go, (rs1, 1), v, (1, rs3), 1.0);
            for l in 0..len {
                let di: f32 = o_at(l).iter().zip(g_at(l)).map(|(a, b)| a * b).sum();
                let (pr, dr) = (&p[l * len..][..len], &mut dp[l * len..][..len]);
                dr.iter_mut().zip(pr).for_each(|(x, &pv)| *x = pv * (*x - di));
            }
            // dQ = dS K / √E, dK = dSᵀ Q / √E
            matmul((len, e, len), dq, rs3, dp.as_ptr(), (len, 1), k, (rs3, 1), scale);
            matmul((len, e, len), dk, rs3, dp.as_ptr(), (1, len), q, (rs3, 1), scale);
        }
    });
    dqkv
}

impl AttentionOps for Flex {
    fn fused_attention(qkv: FlexTensor, heads: usize, temporal: bool) -> FlexTensor {
        Self::fused_attention_lse(qkv, heads, temporal).0
    }
}

impl AttentionGrads for Flex {
    fn fused_attention_lse(qkv: FlexTensor, heads: usize, temporal: bool) -> (FlexTensor, FlexTensor) {
        let shape = qkv.shape();
        let g = Geometry::new(&shape, heads, temporal);
        let (out, lse) = forward_kernel(&f32_values(&qkv), &g);
        (flex(out, [shape[0], shape[1], shape[2], g.d]), flex(lse, [g.seqs, heads, g.len]))
    }

    fn fused_attention_backward(
        qkv: FlexTensor,
        out: FlexTensor,
        lse: FlexTensor,
        dout: FlexTensor,
        heads: usize,
        temporal: bool,
    ) -> FlexTensor {
        let shape = qkv.shape();
        let g = Geometry::new(&shape, heads, temporal);
        let dqkv = backward_kernel(&f32_values(&qkv), &f32_values(&out), &f32_values(&lse), &f32_values(&dout), &g);
        flex(dqkv, shape)
    }
}

impl<B: Backend + AttentionOps + AttentionGrads, C: CheckpointStrategy> AttentionOps for Autodiff<B, C> {
    fn fused_attention(qkv: FloatTensor<Self>, heads: usize, temporal: bool) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct FusedAttention;

        #[derive(Clone, Debug)]
        struct State<T> {
            qkv: T,
            out: T,
            lse: T,
            heads: usize,
            temporal: bool,
        }

        impl<B: Backend + AttentionGrads> Backward<B, 1> for FusedAttention {
            type State = State<FloatTensor<B>>;

            fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
                let s = ops.state;
                unary::<B, _>(ops.parents, ops.node, grads, |dout| {
                    B::fused_attention_backward(s.qkv, s.out, s.lse, dout, s.heads, s.temporal)
                });
            }
        }

        let (qp, qg) = qkv.into_parts();
        match FusedAttention.prepare::<C>([qg]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let (out, lse) = B::fused_attention_lse(qp.clone(), heads, temporal);
                prep.finish(State { qkv: qp, out: out.clone(), lse, heads, temporal }, out)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::fused_attention(qp, heads, temporal)),
        }
    }
}

/// Fused self-attention of `heads` heads within the `seqs` sequences of `qkv` (B, T, N, 3·D)
/// → (B, T, N, D); None where the kernel does not apply (not f32 on flex, or D not divisible
/// by the heads), and the caller composes it from primitive ops.
pub fn self_attention(qkv: &Tensor<4>, heads: usize, seqs: Sequences) -> Option<Tensor<4>> {
    let three_d = qkv.dims()[3];
    if !crate::fused::supported(qkv) || heads == 0 || three_d % (3 * heads) != 0 {
        return None;
    }
    let out = <Dispatch as AttentionOps>::fused_attention(qkv.clone().into_dispatch(), heads, seqs == Sequences::Temporal);
    Some(Tensor::from_dispatch(out))
}
