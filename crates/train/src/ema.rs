//! Exponential moving average of the weights, over every float parameter (the reference's
//! `update_ema` also averages the frozen positional tables).

use std::collections::HashMap;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::tensor::Tensor;

/// Flattened current values of a module's float parameters, by id, without autodiff.
struct Collect(HashMap<ParamId, Tensor<1>>);

impl ModuleVisitor for Collect {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let v = param.val();
        let v = if v.is_autodiff() { v.inner() } else { v };
        self.0.insert(param.id, v.flatten(0, D - 1));
    }
}

struct Blend {
    current: HashMap<ParamId, Tensor<1>>,
    decay: f64,
}

impl ModuleMapper for Blend {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let Some(theta) = self.current.remove(&param.id) else { return param };
        let decay = self.decay;
        param.map(|ema| {
            let theta = theta.reshape(ema.dims());
            // ema ← decay·ema + (1 − decay)·θ, as `ema_p.mul_(decay).add_(p, alpha=1 - decay)`.
            latte_nn::ema::ema_update(ema, theta, decay)
        })
    }
}

/// Moves `ema` (a plain-device copy of `model`, same parameter ids) towards `model`.
pub fn update_ema<M: Module>(ema: M, model: &M, decay: f64) -> M {
    let mut collect = Collect(HashMap::new());
    model.visit(&mut collect);
    ema.map(&mut Blend { current: collect.0, decay })
}
