//! Image-video joint training with per-image labels (`y_image`, reference §1.11): each image
//! frame is conditioned on its own label, the video frames on the clip's label.

mod common;

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor, TensorData};
use common::*;
use latte_model::{Conditioning, Latte, LatteConfig};

const B: usize = 2;
const K: usize = 2;
const CLASSES: usize = 5;

fn cfg(variant: u8) -> LatteConfig {
    let mut c = tiny(variant);
    c.num_classes = Some(CLASSES);
    c
}

/// Every variant, with adaLN and with all-tokens conditioning.
fn all_cfgs() -> Vec<(String, LatteConfig)> {
    let mut out = vec![];
    for v in 1..=4u8 {
        out.push((format!("v{v}"), cfg(v)));
        let mut c = cfg(v);
        c.conditioning = Conditioning::Tokens;
        out.push((format!("v{v}+tokens"), c));
    }
    out
}

fn ints<const D: usize>(v: Vec<i64>, shape: [usize; D], dev: &Device) -> Tensor<D, Int> {
    Tensor::from_data(TensorData::new(v, shape), dev)
}

/// Max |a − b| over output frame `f` of sample `s`; outputs are (B, T, C', H, W).
fn frame_diff(a: &[f32], b: &[f32], t: usize, s: usize, f: usize) -> f32 {
    let per = a.len() / (B * t);
    let o = (s * t + f) * per;
    (o..o + per).map(|i| (a[i] - b[i]).abs()).fold(0.0, f32::max)
}

#[test]
fn image_frames_follow_their_own_labels_and_not_the_clip_label() {
    let dev = Device::flex();
    for (v, cfg) in all_cfgs() {
        let fv = cfg.num_frames;
        let t_all = fv + K;
        let model = randomize(Latte::new(&cfg, &dev, 0).unwrap(), 3, 0.2);
        let (x, t, _) = input(&cfg, B, K, 5, &dev);
        let y = ints(vec![0, 1], [B], &dev);
        let yi = ints(vec![2, 3, 4, 2], [B, K], &dev);
        let run = |y: Tensor<1, Int>, yi: Tensor<2, Int>| to_vec(model.forward_joint(x.clone(), t.clone(), Some(y), Some(yi), K));
        let base = run(y.clone(), yi.clone());

        // image 0 of sample 0 gets another label: that frame alone changes
        let other_img = run(y.clone(), ints(vec![4, 3, 4, 2], [B, K], &dev));
        for s in 0..B {
            for f in 0..t_all {
                let d = frame_diff(&base, &other_img, t_all, s, f);
                if (s, f) == (0, fv) {
                    assert!(d > 1e-4, "v{v}: image label had no effect ({d})");
                } else {
                    assert!(d <= 1e-6, "v{v}: image label of (0, {fv}) changed frame ({s}, {f}) by {d}");
                }
            }
        }

        // the clip label of sample 0 changes its video frames only, never its images
        let other_clip = run(ints(vec![3, 1], [B], &dev), yi.clone());
        for f in 0..t_all {
            let d = frame_diff(&base, &other_clip, t_all, 0, f);
            if f < fv {
                assert!(d > 1e-4, "v{v}: clip label had no effect on video frame {f} ({d})");
            } else {
                assert!(d <= 1e-6, "v{v}: clip label changed image frame {f} by {d}");
            }
            assert!(frame_diff(&base, &other_clip, t_all, 1, f) <= 1e-6, "v{v}: sample 1 changed");
        }

        // images labelled like their clip: the same function as `forward` (images on y)
        let same = run(y.clone(), ints(vec![0, 0, 1, 1], [B, K], &dev));
        let plain = to_vec(model.forward(x.clone(), t.clone(), Some(y), K));
        let max = same.iter().zip(&plain).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        assert!(max <= 1e-5, "v{v}: y_image = y differs from forward by {max}");
    }
}

#[test]
fn image_labels_receive_gradients() {
    for (_, cfg) in all_cfgs() {
        image_labels_receive_gradients_for(&cfg);
    }
}

fn image_labels_receive_gradients_for(cfg: &LatteConfig) {
    let dev = Device::flex().autodiff();
    let cfg = cfg.clone();
    let model = randomize(Latte::new(&cfg, &dev, 0).unwrap(), 3, 0.2);
    let (x, t, _) = input(&cfg, B, K, 5, &dev);
    // rows 2..4 are used by images only, row 0 and 1 by clips only
    let out = model.forward_joint(x, t, Some(ints(vec![0, 1], [B], &dev)), Some(ints(vec![2, 3, 4, 2], [B, K], &dev)), K);
    let grads = out.powi_scalar(2).sum().backward();
    let table = model.y_embedder.as_ref().unwrap().embedding_table.weight.val();
    let g = to_vec(table.grad(&grads).expect("label table has a gradient"));
    let d = cfg.hidden_size;
    for row in 0..=CLASSES {
        let norm: f32 = g[row * d..(row + 1) * d].iter().map(|v| v * v).sum();
        assert!(norm.is_finite());
        assert_eq!(norm > 0.0, row < CLASSES, "row {row}: gradient norm {norm}");
    }
    assert!(model.num_params() > 0);
}

#[test]
fn bad_image_labels_are_refused() {
    let dev = Device::flex();
    let cfg = cfg(1);
    let model = Latte::new(&cfg, &dev, 0).unwrap();
    let (x, t, y) = input(&cfg, B, K, 5, &dev);
    let err = |yi: Tensor<2, Int>| model.try_forward_joint(x.clone(), t.clone(), y.clone(), Some(yi), K).unwrap_err().to_string();
    assert!(err(ints(vec![0, 1, 2], [1, 3], &dev)).contains("y_image has shape [1, 3]"));
    assert!(err(ints(vec![0, 1, 2, 9], [B, K], &dev)).contains("label 9 is outside"));
    assert!(err(ints(vec![0, 1, 2, -1], [B, K], &dev)).contains("label -1 is outside"));
    // the null class is a valid image label (dropout)
    assert!(model.try_forward_joint(x.clone(), t.clone(), y.clone(), Some(ints(vec![5; 4], [B, K], &dev)), K).is_ok());

    let unc = tiny(1);
    let m = Latte::new(&unc, &dev, 0).unwrap();
    let e = m.try_forward_joint(x.clone(), t.clone(), None, Some(ints(vec![0; 4], [B, K], &dev)), K).unwrap_err();
    assert!(e.to_string().contains("unconditional"), "{e}");

    // extra image frames need image labels of the right count: K = 0 with labels is refused
    let (x0, _, _) = input(&cfg, B, 0, 5, &dev);
    let e = model.try_forward_joint(x0, t, y, Some(ints(vec![0; 4], [B, K], &dev)), 0).unwrap_err();
    assert!(e.to_string().contains("y_image has shape"), "{e}");
}
