//! Reduced-precision compute (`Latte::with_compute_dtype`): bf16 / f16 forwards agree with the
//! f32 forward to within the dtype's rounding (and measurably differ from it, so a cast that
//! silently did nothing would fail), backward through a bf16 forward gives f32 gradients close
//! to the f32 ones, the setting survives module maps and an optimiser step, and `None` leaves
//! the f32 path bit for bit as it was.

mod common;

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::{DType, Device, FloatDType, Int, Tensor, TensorData};
use common::*;
use latte_model::{Conditioning, Latte, LatteConfig, PatchEmbedKind, TemporalPos};
use latte_nn::adamw::AdamW;

// Relative L2 errors against the f32 forward. bf16 keeps 8 significant bits (unit roundoff
// 2^-9 ≈ 2e-3), f16 11 (2^-12 ≈ 2.4e-4). Through the patch embedding, four blocks of random
// N(0, 0.2²) weights and the final layer the roundings compound to, measured over the cases
// below: bf16 3.7e-3 .. 1.6e-2 (all-tokens models, without the multiplicative adaLN gates, are
// the low end), f16 5.0e-4 .. 1.9e-3. The f16 error is 7-11× below the bf16 one in every case,
// the ratio of the two unit roundoffs (8): the difference is rounding, not a wrong path.
/// Measured worst 1.63e-2.
const BF16_FWD_MAX: f64 = 3e-2;
/// Measured worst 1.89e-3.
const F16_FWD_MAX: f64 = 5e-3;
/// Below these the cast did not happen (f32 reorderings alone give ~1e-7).
const BF16_FWD_MIN: f64 = 1e-5;
const F16_FWD_MIN: f64 = 1e-6;
/// f16 error × this < bf16 error (measured ratio ≥ 7.2).
const ROUNDOFF_RATIO_MIN: f64 = 4.0;
/// Per-parameter gradient error, bf16 against f32: measured median 1.3e-2, 90th percentile
/// 2.5e-2, worst 6.4e-2 (`x_embedder.proj.weight`, the gradient that traverses every bf16
/// block backwards). f16 gives 1.4e-3 / 2.7e-3 / 7.2e-3, again the roundoff ratio.
const BF16_GRAD_MAX: f64 = 0.1;
const BF16_GRAD_MEDIAN_MAX: f64 = 2.5e-2;

struct Case {
    name: &'static str,
    cfg: LatteConfig,
    /// Extra image frames (image-video joint), with labels of their own when class-conditional.
    images: usize,
}

fn with(variant: u8, f: impl FnOnce(&mut LatteConfig)) -> LatteConfig {
    let mut cfg = tiny(variant);
    f(&mut cfg);
    cfg
}

fn cases() -> Vec<Case> {
    let tokens = |c: &mut LatteConfig| {
        c.conditioning = Conditioning::Tokens;
        c.num_classes = Some(5);
    };
    let tokens_rope = |c: &mut LatteConfig| {
        tokens(c);
        c.temporal_pos = TemporalPos::Rope;
    };
    vec![
        Case { name: "v1", cfg: tiny(1), images: 0 },
        Case { name: "v2", cfg: tiny(2), images: 0 },
        Case { name: "v3", cfg: tiny(3), images: 0 },
        Case { name: "v4", cfg: tiny(4), images: 0 },
        Case { name: "v1 tubelet", cfg: with(1, |c| c.patch_embed = PatchEmbedKind::Tubelet { stride: 2 }), images: 0 },
        Case {
            name: "v3 tubelet rope",
            cfg: with(3, |c| {
                c.patch_embed = PatchEmbedKind::Tubelet { stride: 2 };
                c.temporal_pos = TemporalPos::Rope;
            }),
            images: 0,
        },
        Case { name: "v1 tokens", cfg: with(1, tokens), images: 0 },
        Case { name: "v3 tokens", cfg: with(3, tokens), images: 0 },
        Case { name: "v2 rope", cfg: with(2, |c| c.temporal_pos = TemporalPos::Rope), images: 0 },
        Case { name: "v4 tokens rope", cfg: with(4, tokens_rope), images: 0 },
        Case { name: "joint v1 adaln labels", cfg: with(1, |c| c.num_classes = Some(5)), images: 2 },
        Case { name: "joint v3 unconditional", cfg: tiny(3), images: 2 },
        Case { name: "joint v4 tokens rope", cfg: with(4, tokens_rope), images: 2 },
        Case { name: "joint v2 tokens", cfg: with(2, tokens), images: 2 },
    ]
}

fn model(case: &Case, device: &Device) -> Latte {
    // random weights: the reference init zeroes adaLN and the final layer, hiding most paths
    randomize(Latte::new(&case.cfg, device, 0).expect("valid config"), 11, 0.2)
}

fn run(model: &Latte, case: &Case, device: &Device) -> Tensor<5> {
    let cfg = model.config();
    let b = 2;
    let (x, t, y) = input(cfg, b, case.images, 5, device);
    let y_image = cfg.num_classes.filter(|_| case.images > 0).map(|n| {
        let labels: Vec<i64> = (0..(b * case.images) as i64).map(|i| (3 + 2 * i) % n as i64).collect();
        Tensor::<2, Int>::from_data(TensorData::new(labels, [b, case.images]), device)
    });
    model.forward_joint(x, t, y, y_image, case.images)
}

fn rel_l2(a: &[f32], reference: &[f32]) -> f64 {
    assert_eq!(a.len(), reference.len());
    let (mut num, mut den) = (0f64, 0f64);
    for (&x, &r) in a.iter().zip(reference) {
        num += (x as f64 - r as f64).powi(2);
        den += (r as f64).powi(2);
    }
    (num / den).sqrt()
}

fn half_dtypes() -> [(FloatDType, f64, f64); 2] {
    [(FloatDType::BF16, BF16_FWD_MIN, BF16_FWD_MAX), (FloatDType::F16, F16_FWD_MIN, F16_FWD_MAX)]
}

/// Sampling: every option in bf16 and f16 on a device without autodiff (burn's fused attention
/// and LayerNorm kernels).
#[test]
fn half_precision_forward_matches_f32() {
    forward_errors(&Device::flex(), "forward");
}

/// Checks and returns the bf16 and f16 forward errors of every case on `device`.
fn forward_errors(device: &Device, what: &str) {
    let mut worst = [0f64; 2];
    for case in cases() {
        let m = model(&case, device);
        let reference = to_vec(run(&m, &case, device));
        let mut errs = [0f64; 2];
        for (i, (dtype, min, max)) in half_dtypes().into_iter().enumerate() {
            let out = run(&m.clone().with_compute_dtype(Some(dtype)), &case, device);
            assert_eq!(out.dtype(), DType::F32, "{}: output dtype", case.name);
            let out = to_vec(out);
            assert!(out.iter().all(|v| v.is_finite()), "{} {dtype:?}: non-finite output", case.name);
            let err = rel_l2(&out, &reference);
            println!("{what} {:<24} {dtype:?}: relative L2 error {err:.3e}", case.name);
            assert!(err < max, "{} {dtype:?}: relative error {err:.3e} ≥ {max:.0e}", case.name);
            assert!(err > min, "{} {dtype:?}: relative error {err:.3e} ≤ {min:.0e}: did the cast happen?", case.name);
            errs[i] = err;
            worst[i] = worst[i].max(err);
        }
        let ratio = errs[0] / errs[1];
        assert!(ratio > ROUNDOFF_RATIO_MIN, "{}: bf16 / f16 error ratio {ratio:.2}: not rounding-limited", case.name);
    }
    println!("{what}: worst error bf16 {:.3e}, f16 {:.3e}", worst[0], worst[1]);
}

/// The composed attention and LayerNorm (the autodiff path) in reduced precision, forward only.
#[test]
fn half_precision_forward_on_autodiff_device_matches_f32() {
    forward_errors(&Device::flex().autodiff(), "autodiff forward");
}

/// Per parameter path: its gradient, None for the frozen tables.
struct Grads<'a> {
    grads: &'a burn::tensor::Gradients,
    path: Vec<String>,
    out: Vec<(String, Option<Tensor<1>>)>,
}

impl ModuleVisitor for Grads<'_> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let g = param.val().grad(self.grads).map(|g| g.flatten::<1>(0, D - 1));
        self.out.push((self.path.join("."), g));
    }
}

/// A diffusion-style loss: the mean squared error against a fixed target, reduced in f32.
fn loss(model: &Latte, case: &Case, device: &Device) -> Tensor<1> {
    let out = run(model, case, device);
    let co = model.config().out_channels();
    let (x, _, _) = input(model.config(), out.dims()[0], case.images, 9, device);
    let target = Tensor::cat(vec![x.clone(), x], 2).narrow(2, 0, co).detach();
    (out - target).powi_scalar(2).mean()
}

fn gradients(model: &Latte, case: &Case, device: &Device) -> (f32, Vec<(String, Option<Tensor<1>>)>) {
    let l = loss(model, case, device);
    assert_eq!(l.dtype(), DType::F32, "{}: the loss must be reduced in f32", case.name);
    let value = to_vec(l.clone())[0];
    let grads = l.backward();
    let mut v = Grads { grads: &grads, path: vec![], out: vec![] };
    model.visit(&mut v);
    (value, v.out)
}

/// Training: bf16 compute with f32 master weights. Every trainable parameter receives an f32
/// gradient within `BF16_GRAD_MAX` (relative L2, per parameter) of its f32-forward gradient.
#[test]
fn bf16_backward_gives_f32_gradients_close_to_f32() {
    let device = Device::flex().autodiff();
    let mut worst = (0f64, String::new());
    let mut all = vec![];
    for case in cases() {
        let m = model(&case, &device);
        let (l32, g32) = gradients(&m, &case, &device);
        let (l16, g16) = gradients(&m.clone().with_compute_dtype(Some(FloatDType::BF16)), &case, &device);
        let loss_err = ((l16 - l32) / l32).abs();
        assert!(loss_err < 2e-2, "{}: loss {l16} vs f32 {l32}", case.name);
        assert_eq!(g16.len(), g32.len());
        let mut case_worst = 0f64;
        for ((path, a), (_, b)) in g16.into_iter().zip(g32) {
            let frozen = path == "pos_embed" || path == "temp_embed";
            let (a, b) = match (a, b) {
                (None, None) => {
                    assert!(frozen, "{}: {path} got no gradient", case.name);
                    continue;
                }
                (Some(a), Some(b)) => (a, b),
                _ => panic!("{}: {path}: gradient in one precision only", case.name),
            };
            assert!(!frozen, "{}: frozen {path} got a gradient", case.name);
            assert_eq!(a.dtype(), DType::F32, "{}: {path}: gradient dtype", case.name);
            let (a, b) = (to_vec(a), to_vec(b));
            assert!(a.iter().all(|v| v.is_finite()), "{}: {path}: non-finite gradient", case.name);
            let err = rel_l2(&a, &b);
            assert!(err < BF16_GRAD_MAX, "{}: {path}: gradient relative error {err:.3e}", case.name);
            case_worst = case_worst.max(err);
            all.push(err);
            if err > worst.0 {
                worst = (err, format!("{} {path}", case.name));
            }
        }
        println!("backward {:<24} loss error {loss_err:.2e}, worst parameter gradient error {case_worst:.3e}", case.name);
        assert!(case_worst > BF16_FWD_MIN, "{}: gradients identical to f32: did the cast happen?", case.name);
    }
    all.sort_by(f64::total_cmp);
    let median = all[all.len() / 2];
    println!("{} gradients: median error {median:.3e}, worst {:.3e} at {}", all.len(), worst.0, worst.1);
    assert!(median < BF16_GRAD_MEDIAN_MAX, "median gradient error {median:.3e}");
}

/// The compute dtype rides through `map`, `valid`, `clone` and AdamW steps, and the
/// parameters (and so the optimiser state) stay f32.
#[test]
fn compute_dtype_survives_module_transformations_and_optimizer_steps() {
    let device = Device::flex().autodiff();
    let case = &cases()[0];
    let m = model(case, &device).with_compute_dtype(Some(FloatDType::BF16));
    assert_eq!(m.compute_dtype(), Some(FloatDType::BF16));
    let m = randomize(m, 3, 0.2);
    assert_eq!(m.compute_dtype(), Some(FloatDType::BF16), "lost by map");
    assert_eq!(m.valid().compute_dtype(), Some(FloatDType::BF16), "lost by valid");
    assert_eq!(m.clone().compute_dtype(), Some(FloatDType::BF16), "lost by clone");

    let mut optim = AdamW { beta_1: 0.9, beta_2: 0.999, epsilon: 1e-8, weight_decay: 0.0 }.init();
    let mut m = m;
    let mut losses = vec![];
    for _ in 0..3 {
        let l = loss(&m, case, &device);
        losses.push(to_vec(l.clone())[0]);
        let grads = GradientsParams::from_grads(l.backward(), &m);
        m = optim.step(1e-3, m, grads);
    }
    assert_eq!(m.compute_dtype(), Some(FloatDType::BF16), "lost by the optimiser step");
    assert!(losses[2] < losses[0], "bf16 training does not descend: {losses:?}");
    struct Dtypes(Vec<DType>);
    impl ModuleVisitor for Dtypes {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.0.push(param.val().dtype());
        }
    }
    let mut d = Dtypes(vec![]);
    m.visit(&mut d);
    assert!(!d.0.is_empty() && d.0.iter().all(|&t| t == DType::F32), "parameters after the steps: {:?}", d.0);
    assert!(m.with_compute_dtype(None).compute_dtype().is_none());
}

/// `None`, and f32 compute on f32 input, are the f32 forward bit for bit, with and without
/// autodiff.
#[test]
fn f32_and_none_are_bit_identical_to_a_model_without_the_setting() {
    for device in [Device::flex(), Device::flex().autodiff()] {
        for case in cases() {
            let m = model(&case, &device);
            assert_eq!(m.compute_dtype(), None);
            let reference = to_vec(run(&m, &case, &device));
            for setting in [None, Some(FloatDType::F32)] {
                let out = to_vec(run(&m.clone().with_compute_dtype(setting), &case, &device));
                let same = out.iter().zip(&reference).all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "{} {setting:?}: differs from the model without the setting", case.name);
            }
        }
    }
}
