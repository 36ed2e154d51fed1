//! The loop with the real Latte network (a tiny configuration): exact resume holds for it too
//! (frozen sin-cos tables, lazy parameters and all), and joint image frames with class labels
//! run through it.

use std::path::Path;

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Device, Tensor};
use latte_diffusion::LossWeighting;
use latte_model::{Latte, LatteConfig};
use latte_train::{read_log, train, ChaCha8Rng, LatentClips, ModelInput, RunPaths, TrainConfig};
use rand::{Rng, SeedableRng};

fn model_config() -> LatteConfig {
    let mut cfg = LatteConfig::preset("Latte-S/2").unwrap();
    cfg.input_size = 4;
    cfg.depth = 2;
    cfg.hidden_size = 32;
    cfg.num_heads = 2;
    cfg.num_frames = 3;
    cfg.num_classes = Some(3);
    cfg
}

fn clips() -> LatentClips {
    let counts = vec![5, 6, 7];
    let total: usize = counts.iter().sum();
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let n = 2 * total * 4 * 4 * 4;
    let mean: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
    let logvar: Vec<f32> = (0..n).map(|_| rng.random_range(-5.0..-1.0)).collect();
    let window = Box::new(|total: usize, rng: &mut ChaCha8Rng| {
        let begin = rng.random_range(0..=total - 3);
        Ok((begin..begin + 3).collect())
    });
    let mut clips = LatentClips::in_memory(mean, logvar, counts, [4, 4, 4], window).unwrap();
    clips.labels = Some(vec![2, 0, 1]);
    clips.num_classes = Some(3);
    clips
}

fn config(steps: u64) -> TrainConfig {
    TrainConfig {
        steps,
        batch_size: 2,
        num_frames: 3,
        image_frames: 1,
        lr: 1e-3,
        ema_decay: 0.9,
        clip_from_step: Some(1),
        checkpoint_every: 2,
        ..TrainConfig::default()
    }
}

struct Flat(Vec<u32>);
impl ModuleVisitor for Flat {
    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
        self.0.extend(p.val().into_data().iter::<f32>().map(f32::to_bits));
    }
}

fn bits<M: Module>(m: &M) -> Vec<u32> {
    let mut f = Flat(Vec::new());
    m.visit(&mut f);
    f.0
}

fn run(dir: &Path, steps: u64) -> (Vec<u32>, Vec<u32>) {
    let dev = Device::flex().autodiff();
    let cfg = model_config();
    let model = Latte::new(&cfg, &dev, 7).unwrap();
    let meta = serde_json::to_value(&cfg).unwrap();
    let forward = |m: &Latte, inp: ModelInput| m.forward(inp.x_t, inp.t, inp.y, inp.image_frames);
    let out = train(model, forward, clips(), &config(steps), &RunPaths::in_dir(dir), &meta, |_| {}).unwrap();
    (bits(&out.model), bits(&out.ema))
}

#[test]
fn latte_resume_is_bit_identical() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let (model_a, ema_a) = run(a.path(), 4);
    run(b.path(), 2);
    let (model_b, ema_b) = run(b.path(), 4);
    assert!(model_a == model_b, "raw weights differ after resume");
    assert!(ema_a == ema_b, "EMA weights differ after resume");
    // The checkpoints too, byte for byte (a `train` output must follow from its cache key):
    // the resumed run's optimizer is another map than the straight run's, which once wrote
    // the same state in another order.
    for file in ["model.bpk", "ema.bpk", "optim.bpk", "state.json"] {
        let read = |dir: &Path| std::fs::read(dir.join("checkpoints/step-00000004").join(file)).unwrap();
        assert!(read(a.path()) == read(b.path()), "{file} of step 4 differs between the straight and the resumed run");
    }
    let log = read_log(&a.path().join("loss.jsonl")).unwrap();
    assert_eq!(log.len(), 4);
    // A fresh Latte predicts exactly zero (zero-initialised final layer), so the first MSE is
    // the mean square of the noise: close to 1.
    assert!((log[0].mse - 1.0).abs() < 0.3, "first mse {}", log[0].mse);
    assert!(log.iter().all(|l| l.loss.is_finite() && l.grad_norm > 0.0));
}

#[test]
fn latte_learns_on_a_learnable_signal() {
    // Near-deterministic latents (logvar −20): at large t, x_t is mostly the noise, so even a
    // tiny network quickly beats the zero prediction's MSE of ≈ 1.
    let dir = tempfile::tempdir().unwrap();
    let dev = Device::flex().autodiff();
    let mut cfg = model_config();
    cfg.num_classes = None;
    let counts = vec![4, 4];
    let n = 2 * 8 * 4 * 4 * 4;
    let mean: Vec<f32> = (0..n).map(|i| if (i / 16) % 2 == 0 { 0.8 } else { -0.8 }).collect();
    let window = Box::new(|total: usize, rng: &mut ChaCha8Rng| {
        let begin = rng.random_range(0..=total - 3);
        Ok((begin..begin + 3).collect())
    });
    let clips = LatentClips::in_memory(mean, vec![-20.0; n], counts, [4, 4, 4], window).unwrap();
    let train_cfg =
        TrainConfig { steps: 120, batch_size: 4, image_frames: 0, lr: 3e-3, clip_from_step: None, checkpoint_every: 1000, ..config(120) };
    let forward = |m: &Latte, inp: ModelInput| m.forward(inp.x_t, inp.t, inp.y, inp.image_frames);
    let model = Latte::new(&cfg, &dev, 1).unwrap();
    train(model, forward, clips, &train_cfg, &RunPaths::in_dir(dir.path()), &serde_json::Value::Null, |_| {}).unwrap();
    let log = read_log(&dir.path().join("loss.jsonl")).unwrap();
    let mean_mse = |s: &[latte_train::StepLog]| s.iter().map(|l| l.mse).sum::<f64>() / s.len() as f64;
    let (first, last) = (mean_mse(&log[..20]), mean_mse(&log[100..]));
    assert!(last < 0.6 * first, "mse went from {first:.3} to {last:.3}");
}

/// Clips `range` of four fixed ones (3 video frames + 1 image frame, 4×4×4 latents).
fn four_clips(range: std::ops::Range<usize>) -> latte_train::Batch {
    let per_clip = 4 * 4 * 4 * 4;
    let mut rng = ChaCha8Rng::seed_from_u64(21);
    let x0: Vec<f32> = (0..4 * per_clip).map(|_| rng.random_range(-1.0..1.0)).collect();
    let noise: Vec<f32> = (0..4 * per_clip).map(|_| rng.random_range(-2.0..2.0)).collect();
    let (t, y) = (vec![0, 300, 650, 999], vec![0, 1, 3, 2]);
    let part = |v: &[f32]| v[range.start * per_clip..range.end * per_clip].to_vec();
    latte_train::Batch {
        index: 0,
        x0: part(&x0),
        noise: part(&noise),
        shape: [range.len(), 4, 4, 4, 4],
        t: t[range.clone()].to_vec(),
        y: Some(y[range.clone()].to_vec()),
        y_image: None,
    }
}

struct Grads<'a>(&'a burn::optim::GradientsParams, Vec<f32>);
impl ModuleVisitor for Grads<'_> {
    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
        // Frozen tables (sin-cos positions) have no gradient.
        if let Some(g) = self.0.get::<D>(p.id) {
            self.1.extend(g.into_data().iter::<f32>());
        }
    }
}

fn grads_of(m: &Latte, g: &burn::optim::GradientsParams) -> Vec<f32> {
    let mut v = Grads(g, Vec::new());
    m.visit(&mut v);
    v.1
}

/// Gradient accumulation through the real network: two micro-batches of two clips give the
/// gradient of one batch of the same four (relative error below 1e-6 of the largest entry).
#[test]
fn latte_two_micro_batches_of_two_equal_one_batch_of_four() {
    let dev = Device::flex().autodiff();
    let model = Latte::new(&model_config(), &dev, 7).unwrap();
    let diffusion = latte_diffusion::GaussianDiffusion::create("").unwrap();
    let mut forward = |m: &Latte, inp: ModelInput| m.forward(inp.x_t, inp.t, inp.y, inp.image_frames);
    let (_, g_big) =
        latte_train::step_gradients(&model, &mut forward, &diffusion, vec![four_clips(0..4)], 1, LossWeighting::Uniform, &dev).unwrap();
    let (_, g_small) = latte_train::step_gradients(
        &model,
        &mut forward,
        &diffusion,
        vec![four_clips(0..2), four_clips(2..4)],
        1,
        LossWeighting::Uniform,
        &dev,
    )
    .unwrap();
    let (a, b) = (grads_of(&model, &g_big), grads_of(&model, &g_small));
    let scale = a.iter().map(|g| f64::from(g.abs())).fold(0.0, f64::max);
    let diff = a.iter().zip(&b).map(|(x, y)| f64::from((x - y).abs())).fold(0.0, f64::max);
    assert!(a.len() > 1000 && a.len() == b.len() && scale > 1e-3, "{} gradients, scale {scale}", a.len());
    assert!(diff < 1e-6 * scale, "relative error {:e}", diff / scale);
}
