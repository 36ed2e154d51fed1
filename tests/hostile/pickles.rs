//! Pickle-based readers: NumPy pickles (the I3D checkpoint), TorchScript zips (the FID
//! Inception, C3D) and `torch.save` state dicts (latte-nn's `.pt` loading).

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::Device;
use latte_nn::init::{Init, ParamFactory};
use latte_nn::weights::{load_pytorch, read_pytorch_state_dict_layout, KeyMap, LoadOptions};

use crate::files;
use crate::harness::{self, Case, CI, LONG};
use crate::mutate::{fields_pickle, fields_zip, Field, Mutator};

fn numpy_pickle(cases: usize) {
    let _serial = harness::serial();
    let valid = files::numpy_pickle();
    latte_metrics::numpy_pickle::parse(&valid).expect("the valid NumPy pickle reads");
    let fields = fields_pickle(&valid);
    let t = harness::run(
        "metrics numpy_pickle",
        cases,
        None,
        |m| {
            let bytes = m.mutate(&valid, &fields, false);
            Case { bytes: bytes.len(), input: bytes }
        },
        |bytes| latte_metrics::numpy_pickle::parse(bytes).map(drop),
    );
    harness::check("metrics numpy_pickle", t);
}

#[test]
fn metrics_numpy_pickle() {
    numpy_pickle(CI);
}

#[test]
#[ignore = "long run: 100,000 cases"]
fn metrics_numpy_pickle_long() {
    numpy_pickle(LONG);
}

/// A torch zip as members plus the fields worth setting to extremes.
struct TorchZip {
    bytes: Vec<u8>,
    zip_fields: Vec<Field>,
    members: Vec<(String, Vec<u8>)>,
    pkl: usize,
    pkl_fields: Vec<Field>,
}

impl TorchZip {
    fn new(bytes: Vec<u8>) -> Self {
        let members = files::unzip(&bytes);
        let pkl = members.iter().position(|(n, _)| n.ends_with("/data.pkl")).expect("a data.pkl member");
        let pkl_fields = fields_pickle(&members[pkl].1);
        TorchZip { zip_fields: fields_zip(&bytes), bytes, members, pkl, pkl_fields }
    }

    /// Either the archive's own bytes, or one member (mostly `data.pkl`) re-zipped with valid
    /// checksums, so that mutations reach the pickle and storage readers behind the zip's CRCs.
    fn mutate(&self, m: &mut Mutator) -> Vec<u8> {
        if m.chance(0.4) {
            return m.mutate(&self.bytes, &self.zip_fields, false);
        }
        let mut members = self.members.clone();
        let i = if m.chance(0.7) { self.pkl } else { m.below(members.len()) };
        let fields: &[Field] = if i == self.pkl { &self.pkl_fields } else { &[] };
        members[i].1 = m.mutate(&members[i].1, fields, false);
        if m.chance(0.05) {
            let gone = m.below(members.len());
            m.log.push(format!("drop member {}", members[gone].0));
            members.remove(gone);
        }
        files::zip(&members)
    }
}

fn torch_cases(name: &'static str, valid: Vec<u8>, cases: usize, read: impl Fn(&Path) -> Result<(), String>) {
    let dir = harness::scratch();
    let path = dir.path().join("weights.pt");
    files::write(&path, &valid);
    read(&path).unwrap_or_else(|e| panic!("{name}: the valid file must read: {e}"));
    // The unmutated members re-zipped must read too, or member mutations would test nothing.
    let z = TorchZip::new(valid);
    files::write(&path, &files::zip(&z.members));
    read(&path).unwrap_or_else(|e| panic!("{name}: the re-zipped valid file must read: {e}"));
    let t = harness::run(
        name,
        cases,
        Some("weights.pt"),
        |m| {
            let bytes = z.mutate(m);
            files::write(&path, &bytes);
            Case { bytes: bytes.len(), input: path.clone() }
        },
        |p| read(p),
    );
    harness::check(name, t);
}

fn torchscript(cases: usize) {
    let _serial = harness::serial();
    torch_cases("metrics torchscript", files::torchscript_zip(), cases, |p| {
        latte_metrics::torchscript::read_file(p).map(drop).map_err(|e| e.to_string())
    });
}

#[test]
fn metrics_torchscript() {
    torchscript(CI);
}

#[test]
#[ignore = "long run: 100,000 cases"]
fn metrics_torchscript_long() {
    torchscript(LONG);
}

#[derive(Module, Debug)]
pub(crate) struct Net {
    feature: Linear,
    classifier: Linear,
}

pub(crate) fn net() -> Net {
    let f = ParamFactory::new(0, &Device::flex());
    let lin = |name: &str, i: usize, o: usize| Linear {
        weight: f.float(&format!("{name}.weight"), [i, o], Init::Normal { std: 1.0 }, true),
        bias: Some(f.float(&format!("{name}.bias"), [o], Init::Normal { std: 1.0 }, true)),
    };
    Net { feature: lin("feature", 3, 64), classifier: lin("classifier", 64, 10) }
}

fn nn_pt(cases: usize) {
    let _serial = harness::serial();
    let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../crates/nn/tests/data/linear_3_64_10.pt");
    let valid = std::fs::read(&fixture).expect("the .pt fixture of latte-nn");
    let base = net();
    // Lenient, so that a mutated file whose keys no longer match still has its tensors read.
    let opts = LoadOptions { allow_missing: true, allow_unused: true, skip: Vec::new() };
    torch_cases("nn .pt", valid, cases, |p| {
        read_pytorch_state_dict_layout(p).map_err(|e| e.to_string())?;
        let mut m = base.clone();
        load_pytorch(&mut m, p, &KeyMap::new(), &opts).map(drop).map_err(|e| e.to_string())
    });
}

#[test]
fn nn_pytorch() {
    nn_pt(CI);
}

#[test]
#[ignore = "long run: 100,000 cases"]
fn nn_pytorch_long() {
    nn_pt(LONG);
}
