//! What the training-loop tests share: a tiny stand-in network (a per-pixel linear map of the
//! latent channels plus timestep and class terms), in-memory latents and a small config.
#![allow(dead_code)] // each test binary uses its own part

use std::path::Path;

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Device, Tensor, TensorData};
use latte_train::{train, LatentClips, ModelInput, RunPaths, TrainConfig, TrainError};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub const C: usize = 4;
pub const HW: usize = 4;
pub const CLASSES: usize = 3;

#[derive(Module, Debug)]
pub struct Tiny {
    pub w: Param<Tensor<2>>,   // (C, 2C)
    pub b: Param<Tensor<1>>,   // (2C)
    pub wt: Param<Tensor<1>>,  // (2C)
    pub emb: Param<Tensor<2>>, // (classes + 1, 2C)
}

fn param<const D: usize>(shape: [usize; D], rng: &mut ChaCha8Rng, dev: &Device) -> Param<Tensor<D>> {
    let n = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.random_range(-0.3..0.3)).collect();
    Param::from_tensor(Tensor::from_data(TensorData::new(v, shape), dev))
}

impl Tiny {
    pub fn new(seed: u64, dev: &Device) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        Self {
            w: param([C, 2 * C], &mut rng, dev),
            b: param([2 * C], &mut rng, dev),
            wt: param([2 * C], &mut rng, dev),
            emb: param([CLASSES + 1, 2 * C], &mut rng, dev),
        }
    }

    pub fn forward(&self, inp: ModelInput) -> Tensor<5> {
        let [b, f, c, h, w] = inp.x_t.dims();
        let x = inp.x_t.permute([0, 1, 3, 4, 2]).reshape([b * f * h * w, c]); // (BFHW, C)
        let out = x.matmul(self.w.val()) + self.b.val().unsqueeze_dim(0); // (BFHW, 2C)
        let out = out.reshape([b, f, h, w, 2 * c]);
        let tt = inp.t.float().reshape([b, 1]) / 1000.0; // (B, 1)
        let mut cond = tt * self.wt.val().unsqueeze_dim(0); // (B, 2C)
        if let Some(y) = inp.y {
            cond = cond + self.emb.val().select(0, y); // (B, 2C)
        }
        (out + cond.reshape([b, 1, 1, 1, 2 * c])).permute([0, 1, 4, 2, 3]) // (B, F, 2C, H, W)
    }
}

/// Five clips of 6..10 frames with random posteriors, labelled, window = 3 consecutive frames.
pub fn clips(seed: u64) -> LatentClips {
    let counts = vec![6, 7, 8, 9, 10];
    let total: usize = counts.iter().sum();
    let n = 2 * total * C * HW * HW;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mean: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
    let logvar: Vec<f32> = (0..n).map(|_| rng.random_range(-6.0..-2.0)).collect();
    let window = Box::new(|total: usize, rng: &mut ChaCha8Rng| {
        if total < 3 {
            return Err(format!("{total} frames < 3").into());
        }
        let begin = rng.random_range(0..=total - 3);
        Ok((begin..begin + 3).collect())
    });
    let mut clips = LatentClips::in_memory(mean, logvar, counts, [C, HW, HW], window).unwrap();
    clips.labels = Some(vec![0, 1, 2, 0, 1]);
    clips.num_classes = Some(CLASSES);
    clips
}

pub fn config(steps: u64) -> TrainConfig {
    TrainConfig {
        steps,
        batch_size: 2,
        grad_accum: 2,
        num_frames: 3,
        image_frames: 1,
        lr: 1e-2,
        warmup_steps: 2,
        ema_decay: 0.8,
        clip_max_norm: 0.5,
        clip_from_step: Some(2),
        class_dropout_prob: 0.3,
        data_seed: 11,
        checkpoint_every: 2,
        keep_checkpoints: 2,
        ..TrainConfig::default()
    }
}

pub fn meta() -> serde_json::Value {
    serde_json::json!({"model": "tiny"})
}

/// One rank trains `Tiny::new(5)` on `clips(1)` in `dir`: (raw weights, EMA weights).
pub fn run(dir: &Path, cfg: &TrainConfig) -> Result<(Vec<f32>, Vec<f32>), TrainError> {
    let dev = Device::flex().autodiff();
    let out = train(Tiny::new(5, &dev), |m: &Tiny, inp| m.forward(inp), clips(1), cfg, &RunPaths::in_dir(dir), &meta(), |_| {})?;
    Ok((weights(&out.model), weights(&out.ema)))
}

struct Flat(Vec<f32>);
impl ModuleVisitor for Flat {
    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
        self.0.extend(p.val().into_data().try_to_vec::<f32>().unwrap());
    }
}

/// Every float parameter's values, in visiting order.
pub fn weights<M: Module>(m: &M) -> Vec<f32> {
    let mut f = Flat(Vec::new());
    m.visit(&mut f);
    f.0
}

pub fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// max |a − b|.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| f64::from((x - y).abs())).fold(0.0, f64::max)
}
