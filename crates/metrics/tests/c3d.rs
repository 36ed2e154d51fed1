//! C3D (IS on UCF101): no weights can be had offline, so a tiny C3D-shaped network with
//! random weights is checked against naive float64 loops (conv3d, Chainer `cover_all` max
//! pools with true -inf padding, linear, softmax), for batch invariance, and for the errors
//! that wrong weight files give.

mod common;

use std::path::Path;

use burn::tensor::{Device, Tensor, TensorData};
use common::Rng;
use latte_metrics::c3d::{max_pool_cover_all, preprocess, C3d, C3dConfig, CONVS};
use latte_metrics::inception_score::inception_score;
use latte_metrics::resize::bilinear_align_corners;
use latte_metrics::tensors::{read_safetensors, write_safetensors, HostTensor, TensorMap};
use latte_metrics::MetricsError;

/// Small enough for naive loops, big enough that both pools see odd sizes (22 → 11 → 6,
/// 6 → 3 → 2) and pool5 leaves 2×2×2 cells, so fc6's flatten order matters.
fn tiny() -> C3dConfig {
    C3dConfig { frames: 24, size: 44, channels: [3, 4, 3, 4, 3, 4, 3, 2], hidden: 6, classes: 7 }
}

fn random_weights(cfg: &C3dConfig, seed: u64) -> TensorMap {
    let mut rng = Rng(seed);
    let mut map = TensorMap::new();
    let mut cin = 3;
    for (name, &cout) in CONVS.iter().zip(&cfg.channels) {
        let scale = 2.0 / ((cin * 27) as f32).sqrt();
        map.insert(format!("{name}.weight"), HostTensor::f32(vec![cout, cin, 3, 3, 3], rng.vec(cout * cin * 27, scale)));
        map.insert(format!("{name}.bias"), HostTensor::f32(vec![cout], rng.vec(cout, 0.1)));
        cin = cout;
    }
    for (name, i, o) in [("fc6", cfg.fc6_inputs(), cfg.hidden), ("fc7", cfg.hidden, cfg.hidden), ("fc8", cfg.hidden, cfg.classes)] {
        let scale = 2.0 / (i as f32).sqrt();
        map.insert(format!("{name}.weight"), HostTensor::f32(vec![o, i], rng.vec(o * i, scale)));
        map.insert(format!("{name}.bias"), HostTensor::f32(vec![o], rng.vec(o, 0.1)));
    }
    let (t, s) = (cfg.frames, cfg.size);
    // The real `mean.b` is 128 − a pixel mean: tens, positive and negative.
    map.insert("mean.b".into(), HostTensor::f32(vec![3, t, s, s], rng.vec(3 * t * s * s, 40.0)));
    map
}

fn f(map: &TensorMap, name: &str) -> Vec<f64> {
    map[name].as_f32().unwrap().iter().map(|&v| v as f64).collect()
}

/// 3×3×3 conv, stride 1, zero padding 1, then ReLU; `x` is `[C, T, H, W]`.
fn naive_conv_relu(x: &[f64], d: [usize; 4], w: &[f64], b: &[f64], cout: usize) -> Vec<f64> {
    let [cin, t, h, wd] = d;
    let mut y = vec![0f64; cout * t * h * wd];
    for o in 0..cout {
        for ot in 0..t {
            for oh in 0..h {
                for ow in 0..wd {
                    let mut acc = b[o];
                    for i in 0..cin {
                        for a in 0..3 {
                            for bb in 0..3 {
                                for c in 0..3 {
                                    let (it, ih, iw) =
                                        (ot as isize + a as isize - 1, oh as isize + bb as isize - 1, ow as isize + c as isize - 1);
                                    if it < 0 || ih < 0 || iw < 0 || it >= t as isize || ih >= h as isize || iw >= wd as isize {
                                        continue;
                                    }
                                    let xv = x[((i * t + it as usize) * h + ih as usize) * wd + iw as usize];
                                    acc += xv * w[(((o * cin + i) * 3 + a) * 3 + bb) * 3 + c];
                                }
                            }
                        }
                    }
                    y[((o * t + ot) * h + oh) * wd + ow] = acc.max(0.0);
                }
            }
        }
    }
    y
}

/// Max pool, kernel = stride = `k` per dim, Chainer `cover_all`: the last window is clipped
/// to the input (max over real cells only, i.e. -inf padding).
fn naive_pool(x: &[f64], d: [usize; 4], k: [usize; 3]) -> (Vec<f64>, [usize; 4]) {
    let [c, t, h, w] = d;
    let o = [t.div_ceil(k[0]), h.div_ceil(k[1]), w.div_ceil(k[2])];
    let mut y = vec![f64::NEG_INFINITY; c * o[0] * o[1] * o[2]];
    for ch in 0..c {
        for it in 0..t {
            for ih in 0..h {
                for iw in 0..w {
                    let idx = ((ch * o[0] + it / k[0]) * o[1] + ih / k[1]) * o[2] + iw / k[2];
                    y[idx] = y[idx].max(x[((ch * t + it) * h + ih) * w + iw]);
                }
            }
        }
    }
    (y, [c, o[0], o[1], o[2]])
}

fn naive_linear(x: &[f64], w: &[f64], b: &[f64], relu: bool) -> Vec<f64> {
    let n_in = x.len();
    (0..b.len())
        .map(|o| {
            let v = b[o] + (0..n_in).map(|i| w[o * n_in + i] * x[i]).sum::<f64>();
            if relu {
                v.max(0.0)
            } else {
                v
            }
        })
        .collect()
}

/// The whole network on one `[3, T, S, S]` RGB clip in [-1, 1]: logits in float64.
fn naive_c3d(x: &[f32], cfg: &C3dConfig, w: &TensorMap) -> Vec<f64> {
    let (t, s) = (cfg.frames, cfg.size);
    let mean = f(w, "mean.b");
    let plane = t * s * s;
    let mut h = vec![0f64; 3 * plane];
    for c in 0..3 {
        for p in 0..plane {
            // BGR: output channel c reads input channel 2 − c.
            h[c * plane + p] = 128.0 * x[(2 - c) * plane + p] as f64 + mean[c * plane + p];
        }
    }
    let mut d = [3, t, s, s];
    for (i, name) in CONVS.iter().enumerate() {
        let cout = cfg.channels[i];
        h = naive_conv_relu(&h, d, &f(w, &format!("{name}.weight")), &f(w, &format!("{name}.bias")), cout);
        d[0] = cout;
        let pool = match i {
            0 => Some([1, 2, 2]),
            1 | 3 | 5 | 7 => Some([2, 2, 2]),
            _ => None,
        };
        if let Some(k) = pool {
            (h, d) = naive_pool(&h, d, k);
        }
    }
    assert_eq!(h.len(), cfg.fc6_inputs());
    let h = naive_linear(&h, &f(w, "fc6.weight"), &f(w, "fc6.bias"), true);
    let h = naive_linear(&h, &f(w, "fc7.weight"), &f(w, "fc7.bias"), true);
    naive_linear(&h, &f(w, "fc8.weight"), &f(w, "fc8.bias"), false)
}

fn softmax(l: &[f64]) -> Vec<f64> {
    let m = l.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = l.iter().map(|v| (v - m).exp()).collect();
    let z: f64 = e.iter().sum();
    e.iter().map(|v| v / z).collect()
}

fn clips(cfg: &C3dConfig, n: usize, seed: u64) -> Vec<f32> {
    Rng(seed).vec(n * 3 * cfg.frames * cfg.size * cfg.size, 1.0)
}

fn input(data: &[f32], n: usize, cfg: &C3dConfig, device: &Device) -> Tensor<5> {
    let (t, s) = (cfg.frames, cfg.size);
    Tensor::from_data(TensorData::new(data.to_vec(), [n, 3, t, s, s]), device)
}

fn rows(t: Tensor<2>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().unwrap()
}

#[test]
fn ucf101_shapes_are_the_published_ones() {
    let cfg = C3dConfig::ucf101();
    assert_eq!(cfg.pooled(), (1, 4), "112 → 56 → 28 → 14 → 7 → 4 (cover_all)");
    assert_eq!(cfg.fc6_inputs(), 512 * 4 * 4);
    assert_eq!(tiny().pooled(), (2, 2));
}

#[test]
fn tiny_c3d_matches_naive_float64_loops() {
    let device = Device::flex();
    let cfg = tiny();
    let w = random_weights(&cfg, 7);
    let net = C3d::from_tensors(&w, Path::new("random"), cfg.clone(), &device).unwrap();
    let n = 2;
    let x = clips(&cfg, n, 11);
    let logits = rows(net.logits(input(&x, n, &cfg, &device)).unwrap());
    let probs = rows(net.probabilities(input(&x, n, &cfg, &device)).unwrap());
    let per = 3 * cfg.frames * cfg.size * cfg.size;
    let mut spread = 0f64;
    for b in 0..n {
        let want = naive_c3d(&x[b * per..(b + 1) * per], &cfg, &w);
        let scale = want.iter().fold(0f64, |m, v| m.max(v.abs()));
        spread = spread.max(want.iter().fold(0f64, |m, v| m.max((v - want[0]).abs())));
        for (k, &v) in want.iter().enumerate() {
            let got = logits[b * cfg.classes + k] as f64;
            assert!((got - v).abs() <= 1e-4 * scale.max(1.0), "clip {b} class {k}: {got} vs {v}");
        }
        for (k, p) in softmax(&want).iter().enumerate() {
            let got = probs[b * cfg.classes + k] as f64;
            assert!((got - p).abs() <= 1e-5, "clip {b} prob {k}: {got} vs {p}");
        }
    }
    assert!(spread > 1e-3, "the logits must not be constant, or the test proves nothing");
}

#[test]
fn batch_does_not_change_a_clip_result() {
    let device = Device::flex();
    let cfg = tiny();
    let net = C3d::from_tensors(&random_weights(&cfg, 3), Path::new("random"), cfg.clone(), &device).unwrap();
    let per = 3 * cfg.frames * cfg.size * cfg.size;
    let x = clips(&cfg, 3, 5);
    let all = rows(net.probabilities(input(&x, 3, &cfg, &device)).unwrap());
    for b in 0..3 {
        let one = rows(net.probabilities(input(&x[b * per..(b + 1) * per], 1, &cfg, &device)).unwrap());
        for k in 0..cfg.classes {
            let a = all[b * cfg.classes + k];
            assert!((a - one[k]).abs() <= 1e-6, "clip {b} class {k}: {a} batched vs {} alone", one[k]);
        }
    }
    let again = rows(net.probabilities(input(&x, 3, &cfg, &device)).unwrap());
    assert_eq!(all, again, "same input, same bits");
}

#[test]
fn cover_all_pool_keeps_the_odd_last_cell() {
    let device = Device::flex();
    // [1, 1, 3, 3, 5], values ≥ 0 as after a ReLU.
    let x: Vec<f32> = (0..45).map(|i| ((i * 37) % 45) as f32).collect();
    let t = Tensor::<5>::from_data(TensorData::new(x.clone(), [1, 1, 3, 3, 5]), &device);
    let got = max_pool_cover_all(t, true);
    assert_eq!(got.dims(), [1, 1, 2, 2, 3]);
    let (want, _) = naive_pool(&x.iter().map(|&v| v as f64).collect::<Vec<_>>(), [1, 3, 3, 5], [2, 2, 2]);
    let got: Vec<f64> = got.into_data().try_to_vec::<f32>().unwrap().iter().map(|&v| v as f64).collect();
    assert_eq!(got, want);
}

#[test]
fn align_corners_resize_and_preprocess_layout() {
    // 1×2 → 1×3: the middle sample is the midpoint, the ends are the corners.
    let r = bilinear_align_corners(&[0.0, 10.0], 1, 2, 1, 1, 3);
    assert_eq!(r, vec![0.0, 5.0, 10.0]);
    let r = bilinear_align_corners(&[0.0, 4.0, 8.0, 12.0], 2, 2, 1, 3, 3);
    assert_eq!(r, vec![0.0, 2.0, 4.0, 4.0, 6.0, 8.0, 8.0, 10.0, 12.0]);

    let device = Device::flex();
    let cfg = C3dConfig { frames: 2, size: 3, ..tiny() };
    // A 2-frame 3×3 clip needs no resize: check x/255·2−1 and the [3, T, S, S] layout.
    let clip: Vec<u8> = (0..2 * 3 * 3 * 3).map(|i| (i * 7 % 256) as u8).collect();
    let x = preprocess(&[&clip], 2, 3, 3, &cfg, &device).unwrap();
    assert_eq!(x.dims(), [1, 3, 2, 3, 3]);
    let v = x.into_data().try_to_vec::<f32>().unwrap();
    for fr in 0..2 {
        for p in 0..9 {
            for c in 0..3 {
                let want = clip[(fr * 9 + p) * 3 + c] as f32 / 255.0 * 2.0 - 1.0;
                assert_eq!(v[(c * 2 + fr) * 9 + p], want);
            }
        }
    }
    // A 2×2 source is resized with align corners to 3×3.
    let small: Vec<u8> = vec![0, 0, 0, 255, 255, 255, 0, 0, 0, 255, 255, 255].repeat(2);
    let x = preprocess(&[&small], 2, 2, 2, &cfg, &device).unwrap();
    let v = x.into_data().try_to_vec::<f32>().unwrap();
    assert_eq!(&v[0..3], &[-1.0, 0.0, 1.0]);

    let err = preprocess(&[&clip], 3, 3, 2, &cfg, &device).unwrap_err();
    assert!(err.to_string().contains("exactly 2 frames"), "{err}");
    let err = preprocess(&[&clip[1..]], 2, 3, 3, &cfg, &device).unwrap_err();
    assert!(err.to_string().contains("clip 0"), "{err}");
}

#[test]
fn wrong_weights_name_the_tensor_and_the_file() {
    let device = Device::flex();
    let cfg = tiny();
    let src = Path::new("/data/c3d.safetensors");

    let mut w = random_weights(&cfg, 1);
    w.insert("conv3b.weight".into(), HostTensor::f32(vec![4, 3, 3, 3, 1], vec![0.0; 108]));
    let err = C3d::from_tensors(&w, src, cfg.clone(), &device).unwrap_err();
    assert!(matches!(&err, MetricsError::TensorShape { name, .. } if name == "conv3b.weight"), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("/data/c3d.safetensors") && msg.contains("[4, 3, 3, 3, 3]"), "{msg}");

    let mut w = random_weights(&cfg, 1);
    w.remove("mean.b");
    let err = C3d::from_tensors(&w, src, cfg.clone(), &device).unwrap_err();
    assert!(matches!(&err, MetricsError::MissingTensor { name, .. } if name == "mean.b"), "{err:?}");

    let mut w = random_weights(&cfg, 1);
    w.insert("fc8.weight".into(), HostTensor::u8(vec![cfg.classes, cfg.hidden], vec![0; 42]));
    let err = C3d::from_tensors(&w, src, cfg.clone(), &device).unwrap_err();
    assert!(err.to_string().contains("fc8.weight"), "{err}");

    // The published network: a file made for a smaller C3D fails on its first tensor.
    let err = C3d::from_tensors(&random_weights(&cfg, 1), src, C3dConfig::ucf101(), &device).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("conv1a.weight") && msg.contains("[64, 3, 3, 3, 3]"), "{msg}");

    let net = C3d::from_tensors(&random_weights(&cfg, 1), src, cfg.clone(), &device).unwrap();
    let bad = Tensor::<5>::zeros([1, 3, cfg.frames - 1, cfg.size, cfg.size], &device);
    assert!(net.logits(bad).unwrap_err().to_string().contains("C3D takes"));
}

#[test]
fn weights_round_trip_through_safetensors_and_feed_the_inception_score() {
    let device = Device::flex();
    let cfg = tiny();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c3d.safetensors");
    let w = random_weights(&cfg, 9);
    write_safetensors(&path, &w, None).unwrap();
    let loaded = read_safetensors(&path).unwrap();
    let a = C3d::from_tensors(&w, &path, cfg.clone(), &device).unwrap();
    let b = C3d::from_tensors(&loaded, &path, cfg.clone(), &device).unwrap();
    let n = 10;
    let x = clips(&cfg, n, 4);
    let pa = rows(a.probabilities(input(&x, n, &cfg, &device)).unwrap());
    let pb = rows(b.probabilities(input(&x, n, &cfg, &device)).unwrap());
    assert_eq!(pa, pb);
    for r in pa.chunks(cfg.classes) {
        assert!((r.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    }
    // 10 clips, 10 splits of one: each part's IS is exp(0) = 1 exactly.
    let (mean, std) = inception_score(&pa, n, cfg.classes, 10, 42);
    assert!((mean - 1.0).abs() < 1e-12 && std < 1e-12, "{mean} ± {std}");
    let (mean, _) = inception_score(&pa, n, cfg.classes, 1, 42);
    assert!(mean > 1.0 && mean <= cfg.classes as f64, "{mean}");
}

/// The published shapes end to end: 78 M random parameters, one clip (a few seconds).
#[test]
fn full_ucf101_network_runs_on_a_clip() {
    let device = Device::flex();
    let cfg = C3dConfig::ucf101();
    let net = C3d::from_tensors(&random_weights(&cfg, 2), Path::new("random"), cfg.clone(), &device).unwrap();
    let clip: Vec<u8> = (0..16 * 64 * 80 * 3).map(|i| (i * 31 % 251) as u8).collect();
    let x = preprocess(&[&clip], 16, 64, 80, &cfg, &device).unwrap();
    assert_eq!(x.dims(), [1, 3, 16, 112, 112]);
    let p = rows(net.probabilities(x).unwrap());
    assert_eq!(p.len(), 101);
    assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-4 && p.iter().all(|v| v.is_finite()));
}

/// The parity contract `metrics features --net c3d` on a full-size random weights file
/// (writes ~310 MB, hence ignored; `cargo test -p latte-metrics --test c3d -- --ignored`).
#[test]
#[ignore]
fn features_file_writes_probs_for_c3d() {
    use latte_metrics::features::{features_file, Net};
    let dir = tempfile::tempdir().unwrap();
    let weights = dir.path().join("c3d.safetensors");
    write_safetensors(&weights, &random_weights(&C3dConfig::ucf101(), 4), None).unwrap();
    let input = dir.path().join("in.safetensors");
    let clips: Vec<u8> = (0..2 * 16 * 32 * 32 * 3).map(|i| (i * 13 % 256) as u8).collect();
    let mut map = TensorMap::new();
    map.insert("frames_u8".into(), HostTensor::u8(vec![2, 16, 32, 32, 3], clips));
    write_safetensors(&input, &map, None).unwrap();
    let out = dir.path().join("out.safetensors");
    let t = features_file(Net::C3d, &weights, &input, &out).unwrap();
    assert_eq!(t.shape, vec![2, 101]);
    assert_eq!(read_safetensors(&out).unwrap()["probs"], t);
    // Same weights, one clip at a time through the library: same rows.
    map.insert("frames_u8".into(), HostTensor::u8(vec![16, 32, 32, 3], map["frames_u8"].as_u8().unwrap()[..16 * 32 * 32 * 3].to_vec()));
    write_safetensors(&input, &map, None).unwrap();
    let one = features_file(Net::C3d, &weights, &input, &out).unwrap();
    assert_eq!(one.shape, vec![101]);
    assert_eq!(one.as_f32().unwrap(), &t.as_f32().unwrap()[..101]);
}

#[test]
fn a_pt_file_with_other_names_lists_what_it_holds() {
    use common::{tensor, unicode, write_torchscript_zip};
    // A module whose only tensor is `features.0.weight`: not C3D's names.
    let mut p = vec![0x80, 2];
    p.extend_from_slice(b"c__torch__.m\nTop\n)\x81}(");
    unicode(&mut p, "features");
    p.extend_from_slice(b"c__torch__.m\nSeq\n)\x81}(");
    unicode(&mut p, "0");
    p.extend_from_slice(b"c__torch__.m\nConv\n)\x81}(");
    unicode(&mut p, "weight");
    tensor(&mut p, "0", 6, 0, &[2, 3], &[3, 1]);
    p.extend_from_slice(b"ub"); // Conv
    p.extend_from_slice(b"ub"); // Seq
    p.extend_from_slice(b"ub."); // Top
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c3d_ucf101.pt");
    write_torchscript_zip(&path, &[("0", vec![1.0; 6])], &p);
    let err = C3d::load(&path, &Device::flex()).unwrap_err().to_string();
    assert!(err.contains("c3d_ucf101.pt") && err.contains("`conv1a.weight` is missing") && err.contains("features.0.weight"), "{err}");
}
