//! Helpers shared by the model tests: tiny configurations, random weights (the reference's
//! init zeroes adaLN and the final layer, which would hide most paths), gradient inspection.
#![allow(dead_code)]

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::{Device, Int, Tensor, TensorData};
use latte_model::{Conditioning, Latte, LatteConfig, PatchEmbedKind, TemporalPos};
use latte_nn::init::{Init, ParamFactory};

pub fn tiny(variant: u8) -> LatteConfig {
    LatteConfig {
        input_size: 8,
        patch_size: 2,
        in_channels: 4,
        hidden_size: 32,
        depth: 4,
        num_heads: 4,
        mlp_ratio: 2.0,
        num_frames: 4,
        num_classes: None,
        class_dropout_prob: 0.1,
        learn_sigma: true,
        variant: latte_model::Variant::try_from(variant).expect("variant 1-4"),
        patch_embed: PatchEmbedKind::Uniform,
        conditioning: Conditioning::Adaln,
        temporal_pos: TemporalPos::Absolute,
    }
}

struct Randomize {
    seed: u64,
    n: usize,
    std: f32,
}

impl ModuleMapper for Randomize {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        self.n += 1;
        let (seed, n, std) = (self.seed, self.n, self.std);
        param.map(|old| {
            let f = ParamFactory::new(seed, &old.device());
            let dims = old.dims();
            let rg = old.is_require_grad();
            let v = f.float(&format!("random.{n}"), dims, Init::Normal { std }, false).val();
            if rg {
                v.require_grad()
            } else {
                v
            }
        })
    }
}

/// Every parameter replaced by N(0, std²) values (a fresh leaf, trainability kept).
pub fn randomize(model: Latte, seed: u64, std: f32) -> Latte {
    model.map(&mut Randomize { seed, n: 0, std })
}

pub fn input(
    cfg: &LatteConfig,
    b: usize,
    images: usize,
    seed: u64,
    device: &Device,
) -> (Tensor<5>, Tensor<1, Int>, Option<Tensor<1, Int>>) {
    let f = ParamFactory::new(seed, device);
    let s = cfg.input_size;
    let x = f.float("x", [b, cfg.num_frames + images, cfg.in_channels, s, s], Init::Normal { std: 1.0 }, false).val();
    let t = Tensor::<1, Int>::from_data(TensorData::new((0..b as i64).map(|i| 17 + 301 * i).collect::<Vec<_>>(), [b]), device);
    let y = cfg
        .num_classes
        .map(|n| Tensor::<1, Int>::from_data(TensorData::new((0..b as i64).map(|i| i % n as i64).collect::<Vec<_>>(), [b]), device));
    (x, t, y)
}

/// Runs the parity contract of fixture `name` (`../shared/fixtures/<name>`) on `device` and
/// checks each output in `keys` against the reference's to `tol` max abs; returns the maxima.
pub fn check_fixture(name: &str, keys: &[&str], device: &Device, tol: f32) -> Vec<f32> {
    use latte_model::reference::{expected_path, run_dir};
    use latte_nn::host::{max_abs_diff, read_safetensors};
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures").join(name);
    let out = run_dir(&dir, device).unwrap_or_else(|e| panic!("{name}: {e}"));
    let expected = read_safetensors(&expected_path(&dir)).unwrap();
    let mut maxima = Vec::new();
    for key in keys {
        let (o, e) = (&out[*key], &expected[*key]);
        assert_eq!(o.shape, e.shape, "{name}/{key} shape");
        let d = max_abs_diff(o.as_f32().unwrap(), e.as_f32().unwrap());
        println!("{device:?} {name}/{key}: max |diff| = {d:e}");
        assert!(d <= tol, "{name}/{key} on {device:?}: max |diff| {d:e} > {tol:e}");
        maxima.push(d);
    }
    assert_eq!(out.len(), keys.len(), "{name}: unexpected outputs {:?}", out.keys().collect::<Vec<_>>());
    maxima
}

pub fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_into_vec_as::<f32>().unwrap()
}

/// Per parameter path: `None` when it got no gradient, else (all finite, any non-zero).
pub struct GradReport(pub Vec<(String, Option<(bool, bool)>)>);

struct GradVisitor<'a> {
    grads: &'a burn::tensor::Gradients,
    path: Vec<String>,
    out: Vec<(String, Option<(bool, bool)>)>,
}

impl ModuleVisitor for GradVisitor<'_> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let g = param.val().grad(self.grads).map(|g| {
            let v = to_vec(g);
            (v.iter().all(|x| x.is_finite()), v.iter().any(|x| *x != 0.0))
        });
        self.out.push((self.path.join("."), g));
    }
}

/// Runs forward + backward of `sum(out²)` on an autodiff device and reports every parameter.
pub fn gradients(cfg: &LatteConfig, images: usize) -> (Vec<usize>, GradReport) {
    let device = Device::flex().autodiff();
    let model = randomize(Latte::new(cfg, &device, 0).unwrap(), 11, 0.2);
    let (x, t, y) = input(cfg, 2, images, 5, &device);
    let out = model.forward(x, t, y, images);
    let dims = out.dims().to_vec();
    let grads = out.powi_scalar(2).sum().backward();
    let mut v = GradVisitor { grads: &grads, path: vec![], out: vec![] };
    model.visit(&mut v);
    (dims, GradReport(v.out))
}

impl GradReport {
    /// Every trainable parameter has a finite, non-zero gradient; the frozen tables have none.
    pub fn assert_all_trainable_learn(&self) {
        assert!(!self.0.is_empty());
        for (path, g) in &self.0 {
            let frozen = path == "pos_embed" || path == "temp_embed";
            match g {
                None => assert!(frozen, "{path}: no gradient"),
                Some((finite, nonzero)) => {
                    assert!(!frozen, "{path}: a frozen table got a gradient");
                    assert!(*finite, "{path}: non-finite gradient");
                    assert!(*nonzero, "{path}: all-zero gradient");
                }
            }
        }
    }

    pub fn has(&self, fragment: &str) -> bool {
        self.0.iter().any(|(p, _)| p.contains(fragment))
    }
}

/// Finite-difference check of d/dx `sum(op(x) · r)` against autodiff, at ~23 coordinates.
pub fn gradcheck<const D: usize, const E: usize>(name: &str, shape: [usize; D], op: impl Fn(Tensor<D>) -> Tensor<E>) {
    latte_nn::gradcheck::check_gradient(name, shape, op)
}
