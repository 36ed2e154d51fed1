//! Parity with the reference diffusion code on `shared/fixtures/diffusion-iddpm`.
//!
//! The fixture was written by the reference's own `create_diffusion("")` / `create_diffusion("250")`
//! (Vchitect/Latte `f8980c5`, `diffusion/`) on a (3, 4, 4, 8, 8) batch with t = [0, 1, 640]
//! (see its `config.json` and `shared/fixtures/README.md`): the float64 schedule, `q_sample`,
//! the per-sample `mse`/`vb`/`loss` of `training_losses` given a fixed `model_out`, the 250-step
//! respacing, and `p_mean_variance`, a DDPM step and a DDIM (η = 0) step at k = min(t // 4, 249).
//! Never regenerate it; a mismatch here is a bug on our side.

use burn::tensor::{Device, Int, Tensor, TensorData};
use latte_diffusion::{space_timesteps, DiffusionError, GaussianDiffusion, Method, Schedule};
use safetensors::{Dtype, SafeTensors};

fn fixture_bytes() -> Vec<u8> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/fixtures/diffusion-iddpm/diffusion.safetensors");
    std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {path}: {e} (clone `shared/` beside the repository)"))
}

struct Fixture {
    bytes: Vec<u8>,
}

impl Fixture {
    fn load() -> Self {
        Self { bytes: fixture_bytes() }
    }

    fn raw(&self, name: &str) -> (Dtype, Vec<usize>, Vec<u8>) {
        let st = SafeTensors::deserialize(&self.bytes).expect("fixture is a safetensors file");
        let t = st.tensor(name).unwrap_or_else(|e| panic!("fixture lacks `{name}`: {e}"));
        (t.dtype(), t.shape().to_vec(), t.data().to_vec())
    }

    fn f64s(&self, name: &str) -> Vec<f64> {
        let (dtype, _, data) = self.raw(name);
        assert_eq!(dtype, Dtype::F64, "{name}");
        data.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap())).collect()
    }

    fn i64s(&self, name: &str) -> Vec<i64> {
        let (dtype, _, data) = self.raw(name);
        assert_eq!(dtype, Dtype::I64, "{name}");
        data.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect()
    }

    fn f32s(&self, name: &str) -> (Vec<f32>, Vec<usize>) {
        let (dtype, shape, data) = self.raw(name);
        assert_eq!(dtype, Dtype::F32, "{name}");
        (data.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect(), shape)
    }

    fn tensor5(&self, name: &str, dev: &Device) -> Tensor<5> {
        let (v, shape) = self.f32s(name);
        let shape: [usize; 5] = shape.try_into().expect("5-D fixture tensor");
        Tensor::from_data(TensorData::new(v, shape), dev)
    }

    /// Row `b` of a (B, F, C, H, W) tensor, as (1, F, C, H, W).
    fn row(&self, name: &str, b: usize, dev: &Device) -> Tensor<5> {
        self.tensor5(name, dev).narrow(0, b, 1)
    }

    fn timesteps(&self) -> Vec<usize> {
        self.i64s("t").into_iter().map(|t| t as usize).collect()
    }
}

/// Largest |a − b| / max(|b|, floor) over all elements; `floor` keeps near-zero entries from
/// turning rounding noise into huge relative errors.
fn max_rel(a: &[f64], b: &[f64], floor: f64) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs() / y.abs().max(floor)).fold(0.0, f64::max)
}

fn to_f64<const D: usize>(t: Tensor<D>) -> Vec<f64> {
    t.into_data().try_to_vec::<f32>().unwrap().into_iter().map(f64::from).collect()
}

fn expect_close<const D: usize>(name: &str, got: Tensor<D>, fx: &Fixture, rtol: f64) {
    let (want, _) = fx.f32s(name);
    let want: Vec<f64> = want.into_iter().map(f64::from).collect();
    let got = to_f64(got);
    let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    // Relative to each element, floored at 1e-3 of the tensor's largest magnitude.
    let err = max_rel(&got, &want, 1e-3 * scale);
    let abs = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    println!("{name}: max relative error {err:.3e} (max abs {abs:.3e}, largest |value| {scale:.3e})");
    assert!(err <= rtol, "{name}: max relative error {err:e} > {rtol:e}");
}

#[test]
fn linear_schedule_matches_float64_tables() {
    let fx = Fixture::load();
    let s = Schedule::linear(1000).unwrap();
    let betas = max_rel(&s.betas, &fx.f64s("betas"), 0.0);
    let acp = max_rel(&s.alphas_cumprod, &fx.f64s("alphas_cumprod"), 0.0);
    println!("betas {betas:.3e}, alphas_cumprod {acp:.3e}");
    assert!(betas <= 1e-12 && acp <= 1e-12, "betas {betas:e}, alphas_cumprod {acp:e}");
    // The spec's check values.
    assert_eq!(s.alphas_cumprod[0], 0.9999);
    assert!((s.alphas_cumprod[499] - 0.07858724288177824).abs() < 1e-16);
    assert!((s.alphas_cumprod[999] - 4.035829765375676e-05).abs() < 1e-19);
}

#[test]
fn respacing_250_matches_reference() {
    let fx = Fixture::load();
    let kept = space_timesteps(1000, "250").unwrap();
    let want: Vec<usize> = fx.i64s("respaced_timesteps").into_iter().map(|t| t as usize).collect();
    assert_eq!(kept.iter().copied().collect::<Vec<_>>(), want);
    let d = GaussianDiffusion::create("250").unwrap();
    assert_eq!(d.schedule.timestep_map, want);
    let err = max_rel(&d.schedule.betas, &fx.f64s("respaced_betas"), 0.0);
    println!("respaced_betas {err:.3e}");
    assert!(err <= 1e-12, "respaced betas {err:e}");
    // The spec's check values (§2.4).
    // 1 − ᾱ_0 in float64 (the spec rounds it to 1e-4).
    assert!((d.schedule.betas[0] - 1e-4).abs() < 1e-16);
    assert!((d.schedule.betas[1] - 5.990655644756426e-4).abs() < 1e-18);
    assert!((d.schedule.betas[249] - 0.07751934499235003).abs() < 1e-16);
    let lv = &d.schedule.posterior_log_variance_clipped;
    assert!((lv[0] - -9.364628159803084).abs() < 1e-13 && lv[0] == lv[1]);
}

#[test]
fn ddim_strides_pick_fixed_integer_spacing() {
    assert_eq!(space_timesteps(1000, "ddim25").unwrap().len(), 25);
    assert_eq!(space_timesteps(1000, "ddim50").unwrap().iter().nth(1), Some(&20));
    assert_eq!(space_timesteps(1000, "ddim100").unwrap().iter().nth(1), Some(&10));
    assert_eq!(space_timesteps(1000, "10,15").unwrap().len(), 25);
    assert!(space_timesteps(1000, "ddim7x").is_err());
    assert!(space_timesteps(1000, "2000").is_err());
    assert!(space_timesteps(1000, "abc").is_err());
}

#[test]
fn q_sample_matches() {
    let fx = Fixture::load();
    let dev = Device::flex();
    let d = GaussianDiffusion::create("").unwrap();
    let x_t = d.q_sample(fx.tensor5("x0", &dev), &fx.timesteps(), fx.tensor5("noise", &dev)).unwrap();
    expect_close("x_t", x_t, &fx, 1e-6);
}

#[test]
fn training_losses_match() {
    let fx = Fixture::load();
    let dev = Device::flex();
    let d = GaussianDiffusion::create("").unwrap();
    let model_out = fx.tensor5("model_out", &dev);
    let losses = d.training_losses(|_| model_out, fx.tensor5("x0", &dev), &fx.timesteps(), fx.tensor5("noise", &dev)).unwrap();
    expect_close("mse", losses.mse, &fx, 1e-5);
    expect_close("vb", losses.vb, &fx, 1e-5);
    expect_close("loss", losses.loss, &fx, 1e-5);
}

fn respaced_k(fx: &Fixture) -> Vec<usize> {
    let k: Vec<usize> = fx.i64s("k").into_iter().map(|k| k as usize).collect();
    // The fixture's rule (config.json): k = min(t // 4, 249).
    assert_eq!(k, fx.timesteps().iter().map(|t| (t / 4).min(249)).collect::<Vec<_>>());
    k
}

#[test]
fn p_mean_variance_matches_respaced() {
    let fx = Fixture::load();
    let dev = Device::flex();
    let d = GaussianDiffusion::create("250").unwrap();
    let k = respaced_k(&fx);
    let out = d.p_mean_variance(fx.tensor5("model_out", &dev), fx.tensor5("x_t", &dev), &k, false).unwrap();
    expect_close("pred_xstart", out.pred_xstart, &fx, 1e-6);
    expect_close("p_mean", out.mean, &fx, 1e-6);
    expect_close("p_log_variance", out.log_variance, &fx, 1e-6);
}

#[test]
fn ddpm_and_ddim_steps_match() {
    let fx = Fixture::load();
    let dev = Device::flex();
    let d = GaussianDiffusion::create("250").unwrap();
    let k = respaced_k(&fx);
    let ddpm = d.ddpm_step(fx.tensor5("model_out", &dev), fx.tensor5("x_t", &dev), &k, fx.tensor5("z", &dev)).unwrap();
    expect_close("ddpm_next", ddpm, &fx, 1e-6);
    let x_t = fx.tensor5("x_t", &dev);
    let ddim = d.ddim_step(fx.tensor5("model_out", &dev), x_t.clone(), &k, 0.0, x_t.zeros_like()).unwrap();
    // 9.3e-6 here (2.4e-7 absolute, 1–2 ulp: the ε′ round trip amplifies rounding).
    expect_close("ddim_next", ddim, &fx, 2e-5);
}

#[test]
fn bad_inputs_are_errors_not_panics() {
    let dev = Device::flex();
    let d = GaussianDiffusion::create("250").unwrap();
    let x = Tensor::<5>::zeros([2, 3, 4, 2, 2], &dev);
    assert!(d.q_sample(x.clone(), &[0, 250], x.clone()).is_err(), "timestep past the respaced range");
    assert!(d.q_sample(x.clone(), &[0], x.clone()).is_err(), "one timestep for two samples");
    let wrong = Tensor::<5>::zeros([2, 3, 4, 2, 2], &dev);
    assert!(d.p_mean_variance(wrong, x.clone(), &[0, 1], false).is_err(), "model output without variance channels");
    assert!(GaussianDiffusion::create("300x").is_err());
}

#[test]
fn gradient_of_vb_reaches_only_variance_channels() {
    // With ε̂ exactly the noise, MSE is 0 and its gradient vanishes, so any gradient on the ε̂
    // channels could only come from the VLB term — which must not produce one.
    let dev = Device::flex().autodiff();
    let d = GaussianDiffusion::create("").unwrap();
    let shape = [2, 2, 4, 2, 2];
    let x0 = Tensor::<5>::ones(shape, &dev) * 0.3;
    let noise = Tensor::<5>::ones(shape, &dev) * -0.7;
    let v = Tensor::<5>::zeros(shape, &dev);
    let out = Tensor::cat(vec![noise.clone(), v], 2).require_grad();
    let losses = d.training_losses(|_| out.clone(), x0, &[5, 600], noise).unwrap();
    let grads = losses.loss.mean().backward();
    let g = out.grad(&grads).expect("output has a gradient");
    let g_eps = g.clone().narrow(2, 0, 4).abs().max().into_scalar::<f32>();
    let g_v = g.narrow(2, 4, 4).abs().max().into_scalar::<f32>();
    assert_eq!(g_eps, 0.0, "the VLB must not train ε̂");
    assert!(g_v > 0.0, "the VLB trains the variance channels");
}

#[test]
fn ddpm_loop_is_seeded_and_uses_original_timesteps() {
    use rand::SeedableRng;
    let dev = Device::flex();
    let d = GaussianDiffusion::create("ddim10").unwrap();
    let run = |seed: u64| {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let noise = latte_diffusion::gaussian_noise([1, 2, 4, 2, 2], &mut rng, &dev);
        let mut seen = Vec::new();
        let model = |x: Tensor<5>, t: Tensor<1, Int>| {
            seen.push(t.into_data().iter::<i64>().next().unwrap());
            Ok::<_, DiffusionError>(Tensor::cat(vec![x.clone() * 0.1, x.zeros_like()], 2))
        };
        let ks: Vec<usize> = (0..d.num_timesteps()).rev().collect();
        let x =
            d.sample_loop(Method::Ddpm, model, noise, &ks, |dims| latte_diffusion::gaussian_noise(dims, &mut rng, &dev), |_| {}).unwrap();
        (to_f64(x), seen)
    };
    let (a, seen) = run(1);
    let (b, _) = run(1);
    let (c, _) = run(2);
    assert_eq!(seen, (0..10).rev().map(|i| i * 100).collect::<Vec<i64>>());
    assert_eq!(a, b, "same seed, same bits");
    assert_ne!(a, c);
    assert!(a.iter().all(|v| v.is_finite()));
}

/// One step of the sampling loop per fixture sample, at its respaced index k, with the
/// fixture's model output and noise: the network sees the original timestep, DDPM uses the
/// noise (except at k = 0) and deterministic DDIM draws none.
#[test]
fn one_loop_step_reproduces_the_reference_tensors() {
    let fx = Fixture::load();
    let dev = Device::flex();
    let d = GaussianDiffusion::create("250").unwrap();
    let ks = respaced_k(&fx);
    assert_eq!(ks, vec![0, 0, 160]);
    for (b, &k) in ks.iter().enumerate() {
        for method in [Method::Ddpm, Method::Ddim { eta: 0.0 }] {
            let mut draws = 0;
            let model = |_: Tensor<5>, t: Tensor<1, Int>| {
                assert_eq!(t.into_data().convert::<i64>().try_to_vec::<i64>().unwrap(), vec![d.schedule.timestep_map[k] as i64]);
                Ok::<_, DiffusionError>(fx.row("model_out", b, &dev))
            };
            let noise = |_| {
                draws += 1;
                fx.row("z", b, &dev)
            };
            let next = d.sample_loop(method, model, fx.row("x_t", b, &dev), &[k], noise, |_| {}).unwrap();
            let (name, tol, want_draws) = match method {
                Method::Ddpm => ("ddpm_next", 1e-6, 1),
                // 1–2 ulp: the ε′ round trip amplifies rounding (as in `ddpm_and_ddim_steps_match`).
                Method::Ddim { .. } => ("ddim_next", 2e-5, 0),
            };
            let (got, want) = (to_f64(next), to_f64(fx.row(name, b, &dev)));
            let scale = want.iter().fold(0f64, |m, v| m.max(v.abs()));
            let err = got.iter().zip(&want).map(|(a, w)| (a - w).abs() / w.abs().max(1e-3 * scale)).fold(0.0, f64::max);
            assert!(err <= tol, "{name} sample {b} (k = {k}): max relative error {err:e} > {tol:e}");
            assert_eq!(draws, want_draws, "{name} sample {b}: noise draws");
        }
    }
}

/// Seeded sampling runs: sample i's draws come from its own stream, so a batch of three and
/// batches of two and one give the same bits, and the classes are drawn before the noise.
#[test]
fn seeded_rows_do_not_depend_on_the_batch() {
    use rand::Rng;
    let dev = Device::flex();
    let d = GaussianDiffusion::create("5").unwrap();
    let run = latte_diffusion::SeededRun { method: Method::Ddpm, seed: 9, sample_shape: [2, 4, 2, 2], num_classes: Some(3) };
    let model = |x: Tensor<5>, _: Tensor<1, Int>, labels: Option<&[usize]>| {
        let b = x.dims()[0];
        let y: Vec<f32> = labels.unwrap().iter().map(|&l| l as f32).collect();
        let y = Tensor::<1>::from_floats(y.as_slice(), &dev).reshape([b, 1, 1, 1, 1]);
        Ok::<_, DiffusionError>(Tensor::cat(vec![x.clone() * 0.1 + y, x.zeros_like()], 2))
    };
    let mut steps = 0;
    let (all, labels) = d.sample_rows(&run, 0..3, model, &dev, |s| steps = s).unwrap();
    assert_eq!(steps, 5);
    let (head, l_head) = d.sample_rows(&run, 0..2, model, &dev, |_| {}).unwrap();
    let (tail, l_tail) = d.sample_rows(&run, 2..3, model, &dev, |_| {}).unwrap();
    assert_eq!(to_f64(all), to_f64(Tensor::cat(vec![head, tail], 0)));
    let labels = labels.unwrap();
    assert_eq!(labels, [l_head.unwrap(), l_tail.unwrap()].concat());
    let first: Vec<usize> = (0..3).map(|i| latte_diffusion::sample_stream(9, i).random_range(0..3)).collect();
    assert_eq!(labels, first, "the class is each stream's first draw");
}
