//! The exponential-moving-average update `ema·decay + θ·(1 − decay)` in one pass on flex.
//!
//! Composed, it is three tensor ops per parameter (two scalings and a sum, each allocating);
//! here it is one vectorised loop with the same f32 rounding, so the bits are the composed
//! form's (tested).

use crate::fused::f32_values;
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{backend_extension, Backend, Dispatch, Flex, TensorMetadata};
use burn::tensor::{Tensor, TensorData};
use rayon::prelude::*;

#[backend_extension(Flex)]
pub trait EmaOps: Backend {
    /// `ema·keep + theta·take`, elementwise, for tensors of one shape.
    fn ema_blend(ema: FloatTensor<Self>, theta: FloatTensor<Self>, keep: f32, take: f32) -> FloatTensor<Self>;
}

impl EmaOps for Flex {
    fn ema_blend(ema: FlexTensor, theta: FlexTensor, keep: f32, take: f32) -> FlexTensor {
        let shape = ema.shape();
        let (e, t) = (f32_values(&ema), f32_values(&theta));
        let mut out = vec![0f32; e.len()];
        // chunks with a plain inner loop, which LLVM vectorises (a rayon `collect` stays scalar)
        out.par_chunks_mut(1 << 14).zip(e.par_chunks(1 << 14).zip(t.par_chunks(1 << 14))).for_each(|(o, (ec, tc))| {
            for ((o, &e), &t) in o.iter_mut().zip(ec).zip(tc) {
                *o = e * keep + t * take;
            }
        });
        FlexTensor::from_data(TensorData::new(out, shape))
    }
}

/// `ema·decay + theta·(1 − decay)` (as `ema_p.mul_(decay).add_(p, alpha=1 - decay)`), fused when
/// both are f32 on flex with one shape, composed otherwise; the same bits either way.
pub fn ema_update<const D: usize>(ema: Tensor<D>, theta: Tensor<D>, decay: f64) -> Tensor<D> {
    let fused = crate::fused::supported(&ema) && crate::fused::supported(&theta) && ema.dims() == theta.dims();
    if !fused {
        return ema * decay + theta * (1.0 - decay);
    }
    // the scalars rounded to f32 as burn's scalar multiplications round them
    let out = <Dispatch as EmaOps>::ema_blend(ema.into_dispatch(), theta.into_dispatch(), decay as f32, (1.0 - decay) as f32);
    Tensor::from_dispatch(out)
}
