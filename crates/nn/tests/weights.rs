//! Weights under PyTorch key names: safetensors round trips, clear errors, and `.pt` reading
//! that refuses anything but tensors.

use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::{Device, Tensor};
use latte_nn::init::{Init, ParamFactory};
use latte_nn::weights::{
    load_pytorch, load_safetensors, read_pytorch_state_dict_layout, save_safetensors, KeyMap, LoadOptions, StateDictLocation,
};
use latte_nn::NnError;
use std::path::{Path, PathBuf};

#[derive(Module, Debug)]
struct Net {
    feature: Linear,
    classifier: Linear,
}

fn lin(f: &ParamFactory, name: &str, i: usize, o: usize) -> Linear {
    Linear {
        weight: f.float(&format!("{name}.weight"), [i, o], Init::Normal { std: 1.0 }, true),
        bias: Some(f.float(&format!("{name}.bias"), [o], Init::Normal { std: 1.0 }, true)),
    }
}

fn net(seed: u64) -> Net {
    let f = ParamFactory::new(seed, &Device::flex());
    Net { feature: lin(&f, "feature", 3, 64), classifier: lin(&f, "classifier", 64, 10) }
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_into_vec_as::<f32>().unwrap()
}

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name)
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("latte-nn-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[test]
fn real_pt_state_dict_loads_with_transposed_linears() {
    let path = data("linear_3_64_10.pt");
    let (loc, names) = read_pytorch_state_dict_layout(&path).unwrap();
    assert_eq!(loc, StateDictLocation::Root);
    assert_eq!(names, ["classifier.bias", "classifier.weight", "feature.bias", "feature.weight"]);
    let mut m = net(0);
    let before = values(m.feature.weight.val());
    let (_, report) = load_pytorch(&mut m, &path, &KeyMap::new(), &LoadOptions::strict()).unwrap();
    assert_eq!(report.applied.len(), 4);
    let after = values(m.feature.weight.val());
    assert_ne!(before, after);
    // PyTorch N(0, 0.1) values, now in burn's [in, out] layout
    assert_eq!(m.feature.weight.val().dims(), [3, 64]);
    let std = (after.iter().map(|v| v * v).sum::<f32>() / after.len() as f32).sqrt();
    assert!((0.05..0.2).contains(&std), "std {std}");
}

fn write(name: &str, bytes: &[u8]) -> PathBuf {
    let p = scratch(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn refused(path: &Path, needle: &str) {
    let err = read_pytorch_state_dict_layout(path).unwrap_err().to_string();
    assert!(err.contains(needle), "{err}");
    assert!(err.contains(&path.display().to_string()), "error must name the file: {err}");
    let mut m = net(0);
    assert!(load_pytorch(&mut m, path, &KeyMap::new(), &LoadOptions::strict()).is_err());
}

#[test]
fn pickles_holding_code_or_non_tensors_are_refused_without_running_them() {
    // os.system("touch <marker>") at the root: GLOBAL, BINUNICODE, TUPLE1, REDUCE, STOP
    let marker = scratch("pwned");
    let cmd = format!("touch {}", marker.display());
    let mut call = b"cos\nsystem\nX".to_vec();
    call.extend((cmd.len() as u32).to_le_bytes());
    call.extend(cmd.as_bytes());
    call.extend(b"\x85R");
    let mut root = b"\x80\x02".to_vec();
    root.extend(&call);
    root.push(b'.');
    refused(&write("root_call.pt", &root), "os.system");

    // {"ema": os.system(...)}
    let mut ema = b"\x80\x02}X\x03\x00\x00\x00ema".to_vec();
    ema.extend(&call);
    ema.extend(b"s.");
    refused(&write("ema_call.pt", &ema), "os.system");

    // {"w": 5}: a state dict holding a non-tensor
    refused(&write("int.pt", b"\x80\x02}X\x01\x00\x00\x00wK\x05s."), "`w`");
    assert!(!marker.exists(), "the pickle's call was executed");
}

#[test]
fn safetensors_round_trip_uses_pytorch_layout_and_names() {
    let m = net(1);
    let path = scratch("net.safetensors");
    let keys = KeyMap::new().rename("classifier.", "head.");
    // a module whose field is `classifier` saved under the name `head.` and read back
    save_safetensors(&m, &path, &KeyMap::new()).unwrap();
    let file = latte_nn::host::read_safetensors(&path).unwrap();
    assert_eq!(file["feature.weight"].shape, vec![64, 3], "Linear weights are saved as [out, in]");
    let mut back = net(2);
    load_safetensors(&mut back, &path, &KeyMap::new(), &LoadOptions::strict()).unwrap();
    assert_eq!(values(back.feature.weight.val()), values(m.feature.weight.val()));
    assert_eq!(values(back.classifier.bias.unwrap().val()), values(m.classifier.bias.clone().unwrap().val()));
    assert_eq!(keys.to_module("classifier.weight"), "head.weight");
    assert_eq!(keys.to_file("head.weight"), "classifier.weight");
}

#[test]
fn load_errors_name_file_and_key() {
    #[derive(Module, Debug)]
    struct Other {
        feature: Linear,
    }
    let path = scratch("net2.safetensors");
    save_safetensors(&net(1), &path, &KeyMap::new()).unwrap();
    let f = ParamFactory::new(0, &Device::flex());

    let mut small = Other { feature: lin(&f, "feature", 3, 64) };
    match load_safetensors(&mut small, &path, &KeyMap::new(), &LoadOptions::strict()) {
        Err(NnError::UnusedTensors { keys, .. }) => assert!(keys.contains(&"classifier.weight".to_string())),
        other => panic!("{other:?}"),
    }
    let mut wrong = Other { feature: lin(&f, "feature", 3, 32) };
    let err = load_safetensors(&mut wrong, &path, &KeyMap::new(), &LoadOptions { allow_unused: true, ..Default::default() }).unwrap_err();
    assert!(matches!(&err, NnError::ShapeMismatch { key, .. } if key.starts_with("feature.")), "{err}");

    let mut bigger = net(0);
    let only_feature = scratch("feature.safetensors");
    save_safetensors(&small, &only_feature, &KeyMap::new()).unwrap();
    let err = load_safetensors(&mut bigger, &only_feature, &KeyMap::new(), &LoadOptions::strict()).unwrap_err();
    assert!(matches!(&err, NnError::MissingTensor { key, .. } if key.starts_with("classifier.")), "{err}");
    assert!(err.to_string().contains("feature.safetensors"), "{err}");

    let err = load_safetensors(&mut bigger, &scratch("absent.safetensors"), &KeyMap::new(), &LoadOptions::strict()).unwrap_err();
    assert!(err.to_string().contains("absent.safetensors"), "{err}");
}
