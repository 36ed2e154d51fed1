//! Probe: autodiff gradients of every parameter against central finite differences along the
//! gradient direction, on a tiny random AutoencoderKL.
use std::collections::BTreeMap;

use latte_vae::burn::module::{Module, ModuleVisitor, Param};
use latte_vae::burn::tensor::{Device, Tensor, TensorData};
use latte_vae::burn::tensor::Gradients;
use latte_vae::{load_weights, save_pretrained, state_dict, AutoencoderKL, VaeConfig};

struct Grads<'a> {
    path: Vec<String>,
    grads: &'a Gradients,
    out: BTreeMap<String, Vec<f32>>,
}
impl ModuleVisitor for Grads<'_> {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(if name == "to_out" { "to_out.0".to_owned() } else { name.to_owned() });
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let g = param.val().grad(self.grads).map(|g| g.into_data().convert::<f32>().try_into_vec::<f32>().unwrap()).unwrap_or_default();
        self.out.insert(self.path.join("."), g);
    }
}

fn loss(model: &AutoencoderKL, x: &Tensor<4>, noise: &Tensor<4>) -> Tensor<1> {
    let p = model.encode(x.clone());
    let r = model.decode(p.sample(noise.clone()));
    (r - x.clone()).square().mean() + p.kl().mean() * 1e-3
}

fn main() {
    let cfg = VaeConfig::new(vec![8, 16, 16], 1, 4, 4);
    let dev = Device::default();
    let ad = dev.clone().autodiff();
    let xs: Vec<f32> = (0..2 * 3 * 16 * 16).map(|i| ((i * 7919 % 255) as f32 / 127.5 - 1.0) * 0.8).collect();
    let ns: Vec<f32> = (0..2 * 4 * 4 * 4).map(|i| ((i * 31 % 17) as f32 / 8.0 - 1.0)).collect();
    let model = AutoencoderKL::init_for_training(&cfg, 3, -2.0, &ad).unwrap();
    let x = Tensor::<4>::from_data(TensorData::new(xs.clone(), [2, 3, 16, 16]), &ad);
    let noise = Tensor::<4>::from_data(TensorData::new(ns.clone(), [2, 4, 4, 4]), &ad);
    let l = loss(&model, &x, &noise);
    let grads = l.backward();
    let mut v = Grads { path: vec![], grads: &grads, out: BTreeMap::new() };
    model.visit(&mut v);
    let sd = state_dict(&model);
    let dir = std::env::temp_dir().join("vae_gradcheck");
    let xe = Tensor::<4>::from_data(TensorData::new(xs, [2, 3, 16, 16]), &dev);
    let ne = Tensor::<4>::from_data(TensorData::new(ns, [2, 4, 4, 4]), &dev);
    let eval = |key: &str, d: &[f32], eps: f32| -> f64 {
        let mut m = model.clone().valid();
        let _ = &mut m;
        let mut sd2 = sd.clone();
        let e = sd2.get_mut(key).unwrap();
        for (a, b) in e.1.iter_mut().zip(d) {
            *a += eps * b;
        }
        // Rebuild through the diffusers folder round trip.
        let base = AutoencoderKL::init(&cfg, 3, &dev).unwrap();
        let _ = base;
        write_sd(&sd2, &cfg, &dir);
        let m = load_weights(&cfg, &dir.join("diffusion_pytorch_model.safetensors"), &dev).unwrap();
        loss(&m, &xe, &ne).into_scalar::<f32>() as f64
    };
    let mut worst = 0f64;
    for (key, g) in &v.out {
        let norm: f64 = g.iter().map(|&a| (a as f64).powi(2)).sum::<f64>().sqrt();
        if norm == 0.0 {
            println!("{key}: ZERO GRADIENT ({} values)", g.len());
            continue;
        }
        let d: Vec<f32> = g.iter().map(|&a| (a as f64 / norm) as f32).collect();
        let eps = 1e-2;
        let fd = (eval(key, &d, eps) - eval(key, &d, -eps)) / (2.0 * eps as f64);
        let rel = (fd - norm).abs() / norm.max(1e-6);
        worst = worst.max(rel);
        println!("{key}: autodiff |g| {norm:.3e}, finite difference {fd:.3e}, rel err {rel:.2e}");
    }
    println!("worst relative error {worst:.3e}");
}

fn write_sd(sd: &BTreeMap<String, (Vec<usize>, Vec<f32>)>, cfg: &VaeConfig, dir: &std::path::Path) {
    // save_pretrained needs a model; build one from the dict by loading a file written here.
    use std::io::Write;
    std::fs::create_dir_all(dir).unwrap();
    let mut header = serde_json_lite(sd);
    while (header.len() % 8) != 0 {
        header.push(' ');
    }
    let mut f = std::fs::File::create(dir.join("diffusion_pytorch_model.safetensors")).unwrap();
    f.write_all(&(header.len() as u64).to_le_bytes()).unwrap();
    f.write_all(header.as_bytes()).unwrap();
    for (_, (_, v)) in sd {
        for x in v {
            f.write_all(&x.to_le_bytes()).unwrap();
        }
    }
    let _ = (cfg, save_pretrained as fn(&AutoencoderKL, &VaeConfig, &std::path::Path) -> _);
}

fn serde_json_lite(sd: &BTreeMap<String, (Vec<usize>, Vec<f32>)>) -> String {
    let mut off = 0;
    let mut parts = Vec::new();
    for (k, (shape, v)) in sd {
        let end = off + v.len() * 4;
        let shape: Vec<String> = shape.iter().map(|s| s.to_string()).collect();
        parts.push(format!("\"{k}\":{{\"dtype\":\"F32\",\"shape\":[{}],\"data_offsets\":[{off},{end}]}}", shape.join(",")));
        off = end;
    }
    format!("{{{}}}", parts.join(","))
}
