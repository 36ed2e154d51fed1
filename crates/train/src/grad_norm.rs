//! Global-norm gradient clipping (`torch.nn.utils.clip_grad_norm_` as the reference calls it:
//! the L2 norm of all gradients together, scaled by `min(1, max_norm / (norm + 1e-6))`).

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::Tensor;

struct SumSquares<'a> {
    grads: &'a GradientsParams,
    total: Option<Tensor<1>>,
}

impl ModuleVisitor for SumSquares<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.get::<D>(param.id) {
            let s = g.square().sum();
            self.total = Some(match self.total.take() {
                Some(t) => t + s,
                None => s,
            });
        }
    }
}

struct Scale<'a> {
    grads: &'a mut GradientsParams,
    factor: f64,
}

impl ModuleVisitor for Scale<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.remove::<D>(param.id) {
            self.grads.register(param.id, g * self.factor);
        }
    }
}

/// The global L2 norm of `grads` over `model`'s parameters.
pub fn global_norm<M: Module>(model: &M, grads: &GradientsParams) -> f64 {
    let mut v = SumSquares { grads, total: None };
    model.visit(&mut v);
    v.total.map_or(0.0, |t| f64::from(t.into_scalar::<f32>()).sqrt())
}

/// Clips `grads` to global norm `max_norm` when `clip`; returns the norm before clipping.
pub fn clip_global_norm<M: Module>(model: &M, grads: &mut GradientsParams, max_norm: f64, clip: bool) -> f64 {
    let norm = global_norm(model, grads);
    let coef = max_norm / (norm + 1e-6);
    if clip && coef < 1.0 {
        model.visit(&mut Scale { grads, factor: coef });
    }
    norm
}
