//! `latte_nn::adamw::AdamW` against burn's AdamW: the same bits after several steps, with and
//! without weight decay, and optimizer state that carries over between the two; the fused EMA
//! update against its composed form.

use burn::nn::{Linear, LinearConfig};
use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Tensor, TensorData};
use latte_nn::adamw::AdamW;

fn model() -> Linear {
    let dev = Device::flex().autodiff();
    let m = LinearConfig::new(7, 5).init(&dev);
    // fixed weights, so both optimizers start from the same bits
    let w: Vec<f32> = (0..35).map(|i| ((i * 37 % 11) as f32 - 5.0) * 0.07).collect();
    let b: Vec<f32> = (0..5).map(|i| i as f32 * 0.03 - 0.05).collect();
    Linear {
        weight: m.weight.map(|_| Tensor::from_data(TensorData::new(w.clone(), [7, 5]), &dev).require_grad()),
        bias: m.bias.map(|p| p.map(|_| Tensor::from_data(TensorData::new(b.clone(), [5]), &dev).require_grad())),
    }
}

fn step(model: Linear, optim: &mut ModuleOptimizer, i: usize) -> Linear {
    let dev = Device::flex().autodiff();
    let x: Vec<f32> = (0..4 * 7).map(|k| ((k + 3 * i) % 13) as f32 * 0.1 - 0.6).collect();
    let y = model.forward(Tensor::<2>::from_data(TensorData::new(x, [4, 7]), &dev));
    let loss = (y.clone() * y).sum();
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    optim.step(3e-2, model, grads)
}

fn bits(m: &Linear) -> Vec<u32> {
    let mut v: Vec<f32> = m.weight.val().into_data().try_to_vec().unwrap();
    v.extend(m.bias.as_ref().unwrap().val().into_data().try_to_vec::<f32>().unwrap());
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn same_bits_as_burns_adamw() {
    for weight_decay in [0.0f32, 0.1] {
        let ours = AdamW { beta_1: 0.9, beta_2: 0.999, epsilon: 1e-8, weight_decay };
        let burns = AdamWConfig::new().with_epsilon(1e-8).with_weight_decay(weight_decay);
        let (mut a, mut b) = (model(), model());
        let (mut oa, mut ob) = (ours.init(), burns.init());
        for i in 0..5 {
            a = step(a, &mut oa, i);
            b = step(b, &mut ob, i);
            assert_eq!(bits(&a), bits(&b), "weight decay {weight_decay}, step {i}");
        }
        assert_ne!(bits(&a), bits(&model()), "the steps moved the weights");
    }
}

#[test]
fn state_carries_over_from_burns_adamw() {
    let ours = AdamW { beta_1: 0.9, beta_2: 0.99, epsilon: 1e-8, weight_decay: 0.0 };
    let burns = AdamWConfig::new().with_beta_2(0.99).with_epsilon(1e-8).with_weight_decay(0.0);
    // two steps with burn's optimizer, then its state goes on in both implementations
    let mut a = model();
    let mut ob = burns.init();
    for i in 0..2 {
        a = step(a, &mut ob, i);
    }
    let mut oa = ours.init().load_record(ob.to_record());
    let (mut a2, mut b) = (a.clone(), a);
    for i in 2..4 {
        a2 = step(a2, &mut ob, i);
        b = step(b, &mut oa, i);
    }
    assert_eq!(bits(&a2), bits(&b));
}

#[test]
fn fused_ema_update_has_the_composed_bits() {
    let dev = Device::flex();
    let n = 70_000; // several parallel chunks
    let e: Vec<f32> = (0..n).map(|i| ((i * 7919 % 1000) as f32 - 500.0) * 1e-3).collect();
    let t: Vec<f32> = (0..n).map(|i| ((i * 104_729 % 997) as f32 - 498.0) * 2e-3).collect();
    let ema = Tensor::<2>::from_data(TensorData::new(e, [350, 200]), &dev);
    let theta = Tensor::<2>::from_data(TensorData::new(t, [350, 200]), &dev);
    for decay in [0.9999, 0.995, 0.5] {
        let fused = latte_nn::ema::ema_update(ema.clone(), theta.clone(), decay);
        let composed = ema.clone() * decay + theta.clone() * (1.0 - decay);
        let bits = |x: Tensor<2>| x.into_data().try_to_vec::<f32>().unwrap().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        let (a, b) = (bits(fused), bits(composed));
        assert_eq!(a, b, "decay {decay}");
        assert_ne!(a, bits(ema.clone()), "the update moved the values");
    }
}
