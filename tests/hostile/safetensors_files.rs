//! Safetensors readers: latte-nn's module loading, latte-metrics' tensor maps, and the VAE's
//! diffusers folders (whose `config.json` is mutated too: it decides what the loader builds).

use burn::tensor::Device;
use latte_nn::weights::{load_safetensors, save_safetensors, KeyMap, LoadOptions};
use latte_vae::{save_pretrained, AutoencoderKL, VaeConfig, VaeFolder};

use crate::files;
use crate::harness::{self, Case, CI, LONG};
use crate::mutate::{fields_digits, Field, Kind, Mutator};

/// The header length (u64 at 0) and every number of the JSON header: shapes and data offsets.
fn fields_safetensors(bytes: &[u8]) -> Vec<Field> {
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    let mut f = vec![Field::new(0, Kind::U64Le)];
    f.extend(fields_digits(&bytes[8..8 + n], 8));
    f
}

fn valid_file() -> Vec<u8> {
    let dir = harness::scratch();
    let path = dir.path().join("valid.safetensors");
    save_safetensors(&crate::pickles::net(), &path, &KeyMap::new()).expect("saving the valid file");
    std::fs::read(&path).expect("reading it back")
}

fn single_file(name: &'static str, cases: usize, read: impl Fn(&std::path::Path) -> Result<(), String>) {
    let valid = valid_file();
    let fields = fields_safetensors(&valid);
    let dir = harness::scratch();
    let path = dir.path().join("weights.safetensors");
    files::write(&path, &valid);
    read(&path).unwrap_or_else(|e| panic!("{name}: the valid file must read: {e}"));
    let t = harness::run(
        name,
        cases,
        Some("weights.safetensors"),
        |m| {
            let bytes = m.mutate(&valid, &fields, false);
            files::write(&path, &bytes);
            Case { bytes: bytes.len(), input: path.clone() }
        },
        |p| read(p),
    );
    harness::check(name, t);
}

fn nn(cases: usize) {
    let _serial = harness::serial();
    let base = crate::pickles::net();
    let opts = LoadOptions { allow_missing: true, allow_unused: true, skip: Vec::new() };
    single_file("nn safetensors", cases, |p| {
        let mut m = base.clone();
        load_safetensors(&mut m, p, &KeyMap::new(), &opts).map(drop).map_err(|e| e.to_string())
    });
}

#[test]
fn nn_safetensors() {
    nn(CI);
}

#[test]
#[ignore = "long run: 100,000 cases"]
fn nn_safetensors_long() {
    nn(LONG);
}

fn metrics(cases: usize) {
    let _serial = harness::serial();
    single_file("metrics safetensors", cases, |p| latte_metrics::tensors::read_safetensors(p).map(drop).map_err(|e| e.to_string()));
}

#[test]
fn metrics_safetensors() {
    metrics(CI);
}

#[test]
#[ignore = "long run: 100,000 cases"]
fn metrics_safetensors_long() {
    metrics(LONG);
}

fn vae(cases: usize) {
    let _serial = harness::serial();
    let device = Device::flex();
    let config = VaeConfig::new(vec![8, 16], 1, 4, 4);
    let model = AutoencoderKL::init(&config, 0, &device).expect("a tiny VAE");
    let made = harness::scratch();
    save_pretrained(&model, &config, made.path()).expect("saving the tiny VAE");
    let weights = std::fs::read(made.path().join("diffusion_pytorch_model.safetensors")).expect("its weights");
    let json = std::fs::read(made.path().join("config.json")).expect("its config");
    let weight_fields = fields_safetensors(&weights);
    let json_fields = fields_digits(&json, 0);
    let dir = harness::scratch();
    let folder = dir.path().join("vae");
    std::fs::create_dir_all(&folder).expect("the folder");
    let read = |dir: &std::path::Path| VaeFolder::open(dir).and_then(|f| f.load(&device)).map(drop).map_err(|e| e.to_string());
    files::write(&folder.join("config.json"), &json);
    files::write(&folder.join("diffusion_pytorch_model.safetensors"), &weights);
    read(&folder).unwrap_or_else(|e| panic!("the valid VAE folder must load: {e}"));
    let t = harness::run(
        "vae weights",
        cases,
        Some("vae"),
        |m: &mut Mutator| {
            let (w, j) = if m.chance(0.7) {
                (m.mutate(&weights, &weight_fields, false), json.clone())
            } else {
                m.log.push("config.json:".into());
                (weights.clone(), m.mutate(&json, &json_fields, true))
            };
            files::write(&folder.join("config.json"), &j);
            files::write(&folder.join("diffusion_pytorch_model.safetensors"), &w);
            Case { bytes: w.len() + j.len(), input: folder.clone() }
        },
        |d| read(d),
    );
    harness::check("vae weights", t);
}

#[test]
fn vae_weights() {
    vae(CI);
}

#[test]
#[ignore = "long run: 100,000 cases"]
fn vae_weights_long() {
    vae(LONG);
}
