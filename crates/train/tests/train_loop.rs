//! The training loop on a tiny stand-in network (a per-pixel linear map of the latent channels
//! plus timestep and class terms) and in-memory latents: exact resume, determinism, the
//! non-finite stop, checkpoint rotation, logs and the data stream's invariants.

mod common;

use std::path::Path;

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Device, Tensor, TensorData};
use common::{bits, clips, config, run, weights, Tiny, C, HW};
use latte_diffusion::LossWeighting;
use latte_train::{checkpoint::list_checkpoints, read_log, train, LatentClips, ModelInput, RunPaths, TrainConfig, TrainError};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

#[test]
fn resume_is_bit_identical_to_an_uninterrupted_run() {
    let straight = tempfile::tempdir().unwrap();
    let (model_a, ema_a) = run(straight.path(), &config(6)).unwrap();

    let resumed = tempfile::tempdir().unwrap();
    let (model_half, _) = run(resumed.path(), &config(3)).unwrap();
    assert_ne!(bits(&model_half), bits(&model_a), "three steps must differ from six");
    let (model_b, ema_b) = run(resumed.path(), &config(6)).unwrap();

    assert_eq!(bits(&model_a), bits(&model_b), "raw weights differ after resume");
    assert_eq!(bits(&ema_a), bits(&ema_b), "EMA weights differ after resume");
    let strip = |p: &Path| {
        read_log(&p.join("loss.jsonl")).unwrap().into_iter().map(|l| (l.step, l.loss.to_bits(), l.grad_norm.to_bits())).collect::<Vec<_>>()
    };
    assert_eq!(strip(straight.path()), strip(resumed.path()), "the loss logs differ");
    assert_eq!(strip(straight.path()).len(), 6);
    assert!(straight.path().join("loss.png").is_file());
    // keep_checkpoints = 2: steps 4 and 6 remain.
    let kept: Vec<u64> = list_checkpoints(&straight.path().join("checkpoints")).unwrap().into_iter().map(|c| c.0).collect();
    assert_eq!(kept, vec![4, 6]);
}

/// Issue #15: `on_step` returning `Break` at a step off the `checkpoint_every` schedule writes a
/// checkpoint of that step and stops; resuming from it (also after a second interrupt, also
/// at a scheduled step) ends with the weights, EMA, loss log and kept checkpoints of a run
/// never interrupted.
#[test]
fn an_interrupted_run_checkpoints_its_step_and_resumes_bit_identically() {
    use std::ops::ControlFlow;
    let straight = tempfile::tempdir().unwrap();
    let (model_a, ema_a) = run(straight.path(), &config(6)).unwrap();
    let steps_on_disk = |dir: &Path| -> Vec<u64> { list_checkpoints(&dir.join("checkpoints")).unwrap().into_iter().map(|c| c.0).collect() };
    let dev = Device::flex().autodiff();
    let meta = serde_json::json!({"model": "tiny"});
    let interrupt_at = |dir: &Path, at: u64| {
        train(
            Tiny::new(5, &dev),
            |m: &Tiny, inp| m.forward(inp),
            clips(1),
            &config(6),
            &RunPaths::in_dir(dir),
            &meta,
            |l| {
                if l.step == at {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            },
        )
        .err()
        .expect("the run must stop")
    };

    let dir = tempfile::tempdir().unwrap();
    match interrupt_at(dir.path(), 3) {
        TrainError::Interrupted { step: 3, checkpoint } => assert!(checkpoint.ends_with("step-00000003"), "{checkpoint:?}"),
        other => panic!("unexpected error {other}"),
    }
    // checkpoint_every = 2, keep 2: the interrupt checkpoint comes beside the regular one.
    assert_eq!(steps_on_disk(dir.path()), vec![2, 3]);
    assert_eq!(read_log(&dir.path().join("loss.jsonl")).unwrap().len(), 3);
    // Resumed from 3, stopped again at 5: the interrupt checkpoint of 3 is gone once 4 exists,
    // and the one of 5 prunes none of the regular ones.
    assert!(matches!(interrupt_at(dir.path(), 5), TrainError::Interrupted { step: 5, .. }));
    assert_eq!(steps_on_disk(dir.path()), vec![2, 4, 5]);
    let (model_b, ema_b) = run(dir.path(), &config(6)).unwrap();
    assert_eq!(bits(&model_a), bits(&model_b), "raw weights differ after resuming from interrupts");
    assert_eq!(bits(&ema_a), bits(&ema_b), "EMA weights differ after resuming from interrupts");
    assert_eq!(steps_on_disk(dir.path()), steps_on_disk(straight.path()));
    let strip = |p: &Path| {
        read_log(&p.join("loss.jsonl")).unwrap().into_iter().map(|l| (l.step, l.loss.to_bits(), l.grad_norm.to_bits())).collect::<Vec<_>>()
    };
    assert_eq!(strip(straight.path()), strip(dir.path()), "the loss logs differ");

    // At a scheduled step the regular checkpoint is the interrupt's; after the last step
    // there is nothing left to interrupt.
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(interrupt_at(dir.path(), 4), TrainError::Interrupted { step: 4, .. }));
    assert_eq!(steps_on_disk(dir.path()), vec![2, 4]);
    let dir = tempfile::tempdir().unwrap();
    let done = train(
        Tiny::new(5, &dev),
        |m: &Tiny, inp| m.forward(inp),
        clips(1),
        &config(6),
        &RunPaths::in_dir(dir.path()),
        &meta,
        |l| {
            if l.step == 6 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        },
    )
    .unwrap();
    assert_eq!(bits(&weights(&done.model)), bits(&model_a));
}

#[test]
fn training_changes_weights_and_same_seed_gives_same_bits() {
    let dev = Device::flex();
    let init = weights(&Tiny::new(5, &dev));
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let (wa, ea) = run(a.path(), &config(2)).unwrap();
    let (wb, _) = run(b.path(), &config(2)).unwrap();
    assert_eq!(bits(&wa), bits(&wb));
    assert_ne!(bits(&wa), bits(&init));
    // EMA with decay 0.8 lags the raw weights but has moved off the initial ones.
    assert_ne!(bits(&ea), bits(&wa));
    assert_ne!(bits(&ea), bits(&init));
    let c = tempfile::tempdir().unwrap();
    let (wc, _) = run(c.path(), &TrainConfig { data_seed: 12, ..config(2) }).unwrap();
    assert_ne!(bits(&wa), bits(&wc), "another data seed draws other batches");
}

#[test]
fn non_finite_loss_stops_and_keeps_the_last_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let dev = Device::flex().autodiff();
    let mut calls = 0;
    let cfg = config(6);
    let err = train(
        Tiny::new(5, &dev),
        |m: &Tiny, inp| {
            calls += 1;
            let out = m.forward(inp);
            // Step 3 (0-based) is micro-batches 6 and 7: poison it.
            if calls == 7 {
                out * f32::NAN
            } else {
                out
            }
        },
        clips(1),
        &cfg,
        &RunPaths::in_dir(dir.path()),
        &serde_json::json!({}),
        |_| {},
    )
    .err()
    .expect("a NaN loss must stop training");
    match &err {
        TrainError::NonFinite { step, last_good: Some(p), .. } => {
            assert_eq!(*step, 3);
            assert!(p.ends_with("step-00000002"), "{p:?}");
            assert!(p.join("model.bpk").is_file());
        }
        other => panic!("unexpected error {other}"),
    }
    assert!(err.to_string().contains("last good checkpoint"), "{err}");
    assert_eq!(read_log(&dir.path().join("loss.jsonl")).unwrap().len(), 3);
}

#[test]
fn resume_refuses_a_different_data_stream_or_model() {
    let dir = tempfile::tempdir().unwrap();
    run(dir.path(), &config(2)).unwrap();
    let err = run(dir.path(), &TrainConfig { batch_size: 3, ..config(4) }).err().unwrap();
    assert!(err.to_string().contains("batch_size"), "{err}");
    let dev = Device::flex().autodiff();
    let err = train(
        Tiny::new(5, &dev),
        |m: &Tiny, inp| m.forward(inp),
        clips(1),
        &config(4),
        &RunPaths::in_dir(dir.path()),
        &serde_json::json!({"model": "other"}),
        |_| {},
    )
    .err()
    .unwrap();
    assert!(err.to_string().contains("different model"), "{err}");
}

#[test]
fn bad_config_and_short_clips_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let err = run(dir.path(), &TrainConfig { batch_size: 0, ..config(2) }).err().unwrap();
    assert!(err.to_string().contains("batch_size"), "{err}");
    let err = run(dir.path(), &TrainConfig { num_frames: 4, ..config(2) }).err().unwrap();
    assert!(matches!(err, TrainError::Data(_)), "{err}");
    assert!(err.to_string().contains("need 4 indices"), "{err}");
    let window = Box::new(|_: usize, _: &mut ChaCha8Rng| Ok(vec![0]));
    assert!(LatentClips::in_memory(vec![0.0; 10], vec![0.0; 10], vec![3], [C, HW, HW], window).is_err());
}

#[test]
fn ema_decay_zero_tracks_the_model_and_one_keeps_the_start() {
    let dev = Device::flex();
    let init = weights(&Tiny::new(5, &dev));
    let a = tempfile::tempdir().unwrap();
    let (model, ema) = run(a.path(), &TrainConfig { ema_decay: 0.0, ..config(2) }).unwrap();
    assert_eq!(bits(&model), bits(&ema), "decay 0: the EMA is the model");
    let b = tempfile::tempdir().unwrap();
    let (_, ema) = run(b.path(), &TrainConfig { ema_decay: 1.0, ..config(2) }).unwrap();
    assert_eq!(bits(&ema), bits(&init), "decay 1: the EMA stays at the initial weights");
}

#[test]
fn global_norm_clipping_scales_all_gradients_together() {
    use burn::optim::GradientsParams;
    use latte_train::{clip_global_norm, global_norm};
    let dev = Device::flex().autodiff();
    let model = Tiny::new(5, &dev);
    let x = Tensor::<5>::ones([1, 2, C, HW, HW], &dev);
    let t = Tensor::<1, burn::tensor::Int>::from_data(TensorData::new(vec![500i64], [1]), &dev);
    let y = Tensor::<1, burn::tensor::Int>::from_data(TensorData::new(vec![1i64], [1]), &dev);
    let out = model.forward(ModelInput { x_t: x, t, y: Some(y), y_image: None, image_frames: 0 });
    let mut grads = GradientsParams::from_grads(out.powi_scalar(2).sum().backward(), &model);
    let norm = global_norm(&model, &grads);
    assert!(norm > 1.0, "norm {norm}");
    // Not clipping leaves the gradients alone.
    assert_eq!(clip_global_norm(&model, &mut grads, norm / 2.0, false), norm);
    assert_eq!(global_norm(&model, &grads), norm);
    let before = clip_global_norm(&model, &mut grads, norm / 2.0, true);
    assert_eq!(before, norm);
    let after = global_norm(&model, &grads);
    assert!((after - norm / 2.0).abs() < 1e-4 * norm, "clipped norm {after}, want {}", norm / 2.0);
}

/// Four explicit clips (F = 3 video frames + K = 1 image frame), or a contiguous part of them.
fn four_clips(range: std::ops::Range<usize>) -> latte_train::Batch {
    const F: usize = 4;
    let per_clip = F * C * HW * HW;
    let mut rng = ChaCha8Rng::seed_from_u64(21);
    let x0: Vec<f32> = (0..4 * per_clip).map(|_| rng.random_range(-1.0..1.0)).collect();
    let noise: Vec<f32> = (0..4 * per_clip).map(|_| rng.random_range(-2.0..2.0)).collect();
    // Timestep 0 takes the decoder-NLL branch of the VB term; the null class (3) is a dropped label.
    let (t, y, y_image) = (vec![0, 300, 650, 999], vec![0, 1, 3, 2], vec![2, 3, 0, 1]);
    let clips = range.end - range.start;
    latte_train::Batch {
        index: 0,
        x0: x0[range.start * per_clip..range.end * per_clip].to_vec(),
        noise: noise[range.start * per_clip..range.end * per_clip].to_vec(),
        shape: [clips, F, C, HW, HW],
        t: t[range.clone()].to_vec(),
        y: Some(y[range.clone()].to_vec()),
        y_image: Some(y_image[range].to_vec()),
    }
}

struct Grads<'a>(&'a burn::optim::GradientsParams, Vec<f32>);
impl ModuleVisitor for Grads<'_> {
    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
        let g = self.0.get::<D>(p.id).expect("every parameter has a gradient");
        self.1.extend(g.into_data().try_to_vec::<f32>().unwrap());
    }
}

fn grads_of<M: Module>(m: &M, g: &burn::optim::GradientsParams) -> Vec<f32> {
    let mut v = Grads(g, Vec::new());
    m.visit(&mut v);
    v.1
}

/// max |a − b| / max |b|: the error relative to the vector's scale.
fn rel_err(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let diff = a.iter().zip(b).map(|(x, y)| f64::from((x - y).abs())).fold(0.0, f64::max);
    diff / b.iter().map(|y| f64::from(y.abs())).fold(0.0, f64::max)
}

/// Issue #6: one optimizer step with batch 4 and grad_accum 1 equals one with batch 2 and
/// grad_accum 2 on the same four clips. Gradients are compared directly (AdamW's first step is
/// nearly sign(g)·lr, blind to a wrong gradient scale such as summing instead of averaging),
/// then the weights after one AdamW step.
#[test]
fn two_micro_batches_of_two_give_the_step_of_one_batch_of_four() {
    use burn::optim::AdamWConfig;
    use latte_train::step_gradients;
    let dev = Device::flex().autodiff();
    let model = Tiny::new(5, &dev);
    let diffusion = latte_diffusion::GaussianDiffusion::create("").unwrap();
    let mut forward = |m: &Tiny, inp: ModelInput| m.forward(inp);
    let (big, g_big) = step_gradients(&model, &mut forward, &diffusion, vec![four_clips(0..4)], 1, LossWeighting::Uniform, &dev).unwrap();
    let (small, g_small) =
        step_gradients(&model, &mut forward, &diffusion, vec![four_clips(0..2), four_clips(2..4)], 1, LossWeighting::Uniform, &dev)
            .unwrap();
    let (a, b) = (grads_of(&model, &g_big), grads_of(&model, &g_small));
    assert!(a.iter().any(|g| g.abs() > 1e-3), "the gradients are not trivial");
    let err = rel_err(&b, &a);
    assert!(err < 1e-6, "accumulated gradients differ from the large batch's: relative error {err:e}");
    // The logged loss is the mean over the step's clips either way.
    let mean = (small[0].loss + small[1].loss) / 2.0;
    assert!((mean - big[0].loss).abs() < 1e-6 * big[0].loss.abs(), "loss {mean} vs {}", big[0].loss);
    // A single micro-batch of two is a different gradient: the comparison can tell.
    let (_, g_half) = step_gradients(&model, &mut forward, &diffusion, vec![four_clips(0..2)], 1, LossWeighting::Uniform, &dev).unwrap();
    assert!(rel_err(&grads_of(&model, &g_half), &a) > 1e-2);

    let step = |g| AdamWConfig::new().with_weight_decay(0.01).init().step(1e-2, model.clone(), g);
    let (wa, wb) = (weights(&step(g_big)), weights(&step(g_small)));
    assert_ne!(bits(&wa), bits(&weights(&model)), "the step moved the weights");
    let err = rel_err(&wb, &wa);
    assert!(err < 1e-6, "updated weights differ: relative error {err:e}");
}

/// Min-SNR weighting: clips whose SNR is at most γ train exactly as under uniform weighting
/// (weight 1, the same bits); a nearly noiseless clip's ε-MSE is scaled by γ/SNR while its
/// VB term is kept, and the logged terms stay unweighted.
#[test]
fn min_snr_weighting_scales_only_the_low_noise_clips_mse() {
    use latte_train::step_gradients;
    let dev = Device::flex().autodiff();
    let model = Tiny::new(5, &dev);
    let diffusion = latte_diffusion::GaussianDiffusion::create("").unwrap();
    let mut forward = |m: &Tiny, inp: ModelInput| m.forward(inp);
    let min_snr = LossWeighting::MinSnr { gamma: 5.0 };
    // t = 300, 650, 999: SNR 0.66 and below.
    let (u, gu) = step_gradients(&model, &mut forward, &diffusion, vec![four_clips(1..4)], 1, LossWeighting::Uniform, &dev).unwrap();
    let (m, gm) = step_gradients(&model, &mut forward, &diffusion, vec![four_clips(1..4)], 1, min_snr, &dev).unwrap();
    assert_eq!(u, m);
    assert_eq!(grads_of(&model, &gu), grads_of(&model, &gm));
    // t = 0: SNR 9999, weight 5/9999.
    let (u, gu) = step_gradients(&model, &mut forward, &diffusion, vec![four_clips(0..1)], 1, LossWeighting::Uniform, &dev).unwrap();
    let (m, gm) = step_gradients(&model, &mut forward, &diffusion, vec![four_clips(0..1)], 1, min_snr, &dev).unwrap();
    assert_eq!((u[0].mse, u[0].vb), (m[0].mse, m[0].vb));
    let w = diffusion.mse_weights(min_snr, &[0]).unwrap()[0] as f64;
    let want = w * m[0].mse + m[0].vb;
    assert!((m[0].loss - want).abs() < 1e-6 * want.abs(), "loss {} vs w·mse + vb = {want}", m[0].loss);
    assert!(rel_err(&grads_of(&model, &gm), &grads_of(&model, &gu)) > 1e-3, "the weighting changed the gradient");
}
