//! AdamW whose update is one pass over memory per parameter on flex.
//!
//! burn's `AdamW` composes the update from about fourteen tensor ops (each a pass over the
//! parameter, allocating a temporary): 8–9% of a Latte-S block-pair training step here. This
//! optimizer does the same arithmetic in the same order per element, in one parallel loop, so
//! its results are bit-identical to burn's (tested), and keeps burn's `AdamWState` so that
//! checkpoints of either load in the other. Anything that is not f32 on flex falls back to
//! burn's implementation.

use crate::fused::f32_values;
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{backend_extension, Backend, Dispatch, Flex, TensorMetadata};
use burn::optim::{AdamW as BurnAdamW, AdamWConfig, AdamWState, AdaptiveMomentumState, LearningRate, ModuleOptimizer, Optimizer};
use burn::tensor::{Device, Tensor, TensorData};
use rayon::prelude::*;

/// The per-step constants of the update, as burn's AdamW rounds them to f32.
#[derive(Clone, Copy, Debug)]
struct Step {
    beta_1: f32,
    beta_2: f32,
    epsilon: f32,
    /// 1 − β₁ᵗ and 1 − β₂ᵗ
    correction_1: f32,
    correction_2: f32,
    lr: f32,
    /// 1 − lr·weight_decay (1 when there is no decay)
    keep: f32,
}

#[backend_extension(Flex)]
pub trait AdamWOps: Backend {
    /// One AdamW update: (param, grad, m, v) → (param', m', v').
    #[allow(clippy::too_many_arguments)]
    fn adamw_update(
        param: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        moment_1: FloatTensor<Self>,
        moment_2: FloatTensor<Self>,
        betas: [f32; 2],
        epsilon: f32,
        corrections: [f32; 2],
        lr: f32,
        keep: f32,
        decay: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

fn update(p: f32, g: f32, m: f32, v: f32, s: &Step) -> (f32, f32, f32) {
    // each line is one of burn's tensor ops, in its order and f32 rounding
    let m = m * s.beta_1 + g * (1.0 - s.beta_1);
    let v = v * s.beta_2 + (g * g) * (1.0 - s.beta_2);
    let delta = (m / s.correction_1) / ((v / s.correction_2).sqrt() + s.epsilon);
    // without decay burn skips the product; p·1 = p exactly
    (p * s.keep - delta * s.lr, m, v)
}

impl AdamWOps for Flex {
    fn adamw_update(
        param: FlexTensor,
        grad: FlexTensor,
        moment_1: FlexTensor,
        moment_2: FlexTensor,
        betas: [f32; 2],
        epsilon: f32,
        corrections: [f32; 2],
        lr: f32,
        keep: f32,
        decay: bool,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let s = Step {
            beta_1: betas[0],
            beta_2: betas[1],
            epsilon,
            correction_1: corrections[0],
            correction_2: corrections[1],
            lr,
            keep: if decay { keep } else { 1.0 },
        };
        let shape = param.shape();
        let (p, g, m, v) = (f32_values(&param), f32_values(&grad), f32_values(&moment_1), f32_values(&moment_2));
        let n = p.len();
        let (mut po, mut mo, mut vo) = (vec![0f32; n], vec![0f32; n], vec![0f32; n]);
        const CHUNK: usize = 1 << 14;
        po.par_chunks_mut(CHUNK).zip(mo.par_chunks_mut(CHUNK)).zip(vo.par_chunks_mut(CHUNK)).enumerate().for_each(|(c, ((po, mo), vo))| {
            let at = c * CHUNK..(c * CHUNK + po.len());
            let inputs = p[at.clone()].iter().zip(&g[at.clone()]).zip(&m[at.clone()]).zip(&v[at]);
            // zipped iterators (no indexing) so that the loop vectorises
            for (((po, mo), vo), (((&p, &g), &m), &v)) in po.iter_mut().zip(mo.iter_mut()).zip(vo.iter_mut()).zip(inputs) {
                (*po, *mo, *vo) = update(p, g, m, v, &s);
            }
        });
        let flex = |v: Vec<f32>| FlexTensor::from_data(TensorData::new(v, shape.clone()));
        (flex(po), flex(mo), flex(vo))
    }
}

/// AdamW (decoupled weight decay, no AMSGrad) with burn's defaults replaced by explicit values.
#[derive(Clone, Debug)]
pub struct AdamW {
    pub beta_1: f32,
    pub beta_2: f32,
    pub epsilon: f32,
    pub weight_decay: f32,
}

impl AdamW {
    /// The whole-module optimizer (checkpointed through burn's optimizer records).
    pub fn init(self) -> ModuleOptimizer {
        ModuleOptimizer::from(self)
    }

    fn burn(&self) -> BurnAdamW {
        AdamWConfig::new()
            .with_beta_1(self.beta_1)
            .with_beta_2(self.beta_2)
            .with_epsilon(self.epsilon)
            .with_weight_decay(self.weight_decay)
            .build()
    }
}

impl Optimizer for AdamW {
    type State<const D: usize> = AdamWState<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        let fused = crate::fused::supported(&tensor)
            && crate::fused::supported(&grad)
            && state.as_ref().is_none_or(|s| {
                s.momentum.max_moment_2.is_none()
                    && crate::fused::supported(&s.momentum.moment_1)
                    && crate::fused::supported(&s.momentum.moment_2)
            });
        if !fused {
            return self.burn().step(lr, tensor, grad, state);
        }
        let (time, m, v) = match state {
            Some(s) => (s.momentum.time + 1, s.momentum.moment_1, s.momentum.moment_2),
            // zero moments give exactly burn's first step: 0·β + x = x
            None => (1, tensor.zeros_like(), tensor.zeros_like()),
        };
        let decay_rate = lr * self.weight_decay as f64;
        let (p, m, v) = <Dispatch as AdamWOps>::adamw_update(
            tensor.into_dispatch(),
            grad.into_dispatch(),
            m.into_dispatch(),
            v.into_dispatch(),
            [self.beta_1, self.beta_2],
            self.epsilon,
            [1.0 - self.beta_1.powi(time as i32), 1.0 - self.beta_2.powi(time as i32)],
            lr as f32,
            (1.0 - decay_rate) as f32,
            decay_rate != 0.0,
        );
        let momentum = AdaptiveMomentumState::new(time, Tensor::from_dispatch(m), Tensor::from_dispatch(v));
        (Tensor::from_dispatch(p), Some(AdamWState::new(momentum)))
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
        <BurnAdamW as Optimizer>::to_device(state, device)
    }
}
