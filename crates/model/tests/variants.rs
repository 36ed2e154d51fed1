//! Variants 2-4, tubelet embedding, all-tokens conditioning and RoPE: shapes, gradients, and a
//! property that each must have.

mod common;

use burn::module::{Module, Param};
use burn::tensor::{Device, Tensor, TensorData};
use common::*;
use latte_model::block::BlockKind;
use latte_model::latte::block_kind;
use latte_model::rope::apply_rope;
use latte_model::{Conditioning, Latte, LatteConfig, PatchEmbedKind, TemporalPos};

fn dev() -> Device {
    Device::flex()
}

fn out_of(model: &Latte, cfg: &LatteConfig, x: Tensor<5>, images: usize) -> Vec<f32> {
    let b = x.dims()[0];
    let (_, t, y) = input(cfg, b, images, 5, &dev());
    to_vec(model.forward(x, t, y, images))
}

/// Output of (frame f, pixel) as a function of the input, under a perturbation of frame `pf`
/// (or of the spatial patch at (row 0, col 0) of every frame when `pf` is None).
fn changed_frames(cfg: &LatteConfig, model: &Latte, perturb_frame: Option<usize>) -> Vec<bool> {
    let (x, _, _) = input(cfg, 1, 0, 5, &dev());
    let [_, t, c, h, w] = x.dims();
    let mut bump = vec![0f32; t * c * h * w];
    for f in 0..t {
        for ch in 0..c {
            for r in 0..h {
                for col in 0..w {
                    let hit = match perturb_frame {
                        Some(pf) => f == pf,
                        None => r < cfg.patch_size && col < cfg.patch_size,
                    };
                    if hit {
                        bump[((f * c + ch) * h + r) * w + col] = 1.0;
                    }
                }
            }
        }
    }
    let bump = Tensor::<5>::from_data(TensorData::new(bump, [1, t, c, h, w]), &dev());
    let a = out_of(model, cfg, x.clone(), 0);
    let b = out_of(model, cfg, x + bump, 0);
    let co = cfg.out_channels();
    let per = co * h * w;
    match perturb_frame {
        // which output frames changed
        Some(_) => (0..t).map(|f| (0..per).any(|i| (a[f * per + i] - b[f * per + i]).abs() > 1e-6)).collect(),
        // which output patches (other than the perturbed one) changed, in any frame
        None => {
            let mut changed = vec![false; 2];
            for f in 0..t {
                for ch in 0..co {
                    for r in 0..h {
                        for col in 0..w {
                            let i = f * per + (ch * h + r) * w + col;
                            if (a[i] - b[i]).abs() > 1e-6 {
                                let inside = r < cfg.patch_size && col < cfg.patch_size;
                                changed[usize::from(!inside)] = true;
                            }
                        }
                    }
                }
            }
            changed
        }
    }
}

/// Zeroes the adaLN gate chunk `chunk` of the blocks selected by `which` (the sub-layer then
/// becomes the identity).
fn zero_gate(model: Latte, which: impl Fn(usize) -> bool, chunk: usize) -> Latte {
    let mut model = model;
    let d = model.config().hidden_size;
    for (i, block) in model.blocks.iter_mut().enumerate() {
        if !which(i) {
            continue;
        }
        let ada = block.ada_ln_modulation.as_mut().unwrap();
        let w = ada.weight.val();
        let [din, dout] = w.dims();
        let mut mask = vec![1f32; dout];
        mask[chunk * d..(chunk + 1) * d].iter_mut().for_each(|m| *m = 0.0);
        let mask = Tensor::<1>::from_data(TensorData::new(mask, [dout]), &w.device());
        ada.weight = Param::from_tensor(w * mask.clone().unsqueeze::<2>().repeat_dim(0, din));
        let b = ada.bias.as_ref().unwrap().val();
        ada.bias = Some(Param::from_tensor(b * mask));
    }
    model
}

#[test]
fn variant_block_layouts() {
    let kinds = |v: u8| (0..4).map(|i| block_kind(&tiny(v), i)).collect::<Vec<_>>();
    use BlockKind::*;
    assert_eq!(kinds(1), [Spatial, Temporal, Spatial, Temporal]);
    assert_eq!(kinds(2), [Spatial, Spatial, Temporal, Temporal]);
    assert_eq!(kinds(3), [Factorised; 4]);
    assert_eq!(kinds(4), [Split; 4]);
    // V3 builds fewer, larger blocks: depth 4 (r = 4) → round(4·18/22) = 3.
    let blocks = |v: u8| Latte::new(&tiny(v), &dev(), 0).unwrap().blocks.len();
    assert_eq!([1, 2, 3, 4].map(blocks), [4, 4, 3, 4]);
}

#[test]
fn every_option_has_the_right_shape_and_trains() {
    let mut cases: Vec<(String, LatteConfig, usize)> = vec![];
    for v in 1..=4u8 {
        cases.push((format!("v{v}"), tiny(v), 0));
        cases.push((format!("v{v}+images"), tiny(v), 2));
        let mut c = tiny(v);
        c.conditioning = Conditioning::Tokens;
        c.num_classes = Some(3);
        cases.push((format!("v{v}+tokens+classes+images"), c, 2));
        let mut c = tiny(v);
        c.temporal_pos = TemporalPos::Rope;
        cases.push((format!("v{v}+rope+images"), c, 2));
        let mut c = tiny(v);
        c.patch_embed = PatchEmbedKind::Tubelet { stride: 2 };
        c.num_classes = Some(3);
        cases.push((format!("v{v}+tubelet+classes"), c, 0));
    }
    for (name, cfg, images) in cases {
        let (dims, report) = gradients(&cfg, images);
        assert_eq!(dims, vec![2, cfg.num_frames + images, cfg.out_channels(), 8, 8], "{name}");
        report.assert_all_trainable_learn();
        assert_eq!(report.has("attn_temporal"), cfg.variant == latte_model::Variant::Factorised, "{name}");
        assert_eq!(report.has("ada_ln_modulation"), cfg.conditioning == Conditioning::Adaln, "{name}");
        assert_eq!(report.has("temporal_upsample"), cfg.temporal_stride() > 1, "{name}");
        assert_eq!(report.has("temp_embed"), cfg.temporal_pos == TemporalPos::Absolute, "{name}");
    }
}

#[test]
fn variant2_spatial_half_never_mixes_frames_and_temporal_half_never_mixes_locations() {
    let cfg = tiny(2);
    let model = randomize(Latte::new(&cfg, &dev(), 0).unwrap(), 3, 0.2);
    // both halves active: a change in frame 1 reaches every frame
    assert_eq!(changed_frames(&cfg, &model, Some(1)), [true; 4]);
    // temporal half disabled (gates 2 and 5 zero): frames stay independent
    let spatial_only = zero_gate(zero_gate(randomize(Latte::new(&cfg, &dev(), 0).unwrap(), 3, 0.2), |i| i >= 2, 2), |i| i >= 2, 5);
    assert_eq!(changed_frames(&cfg, &spatial_only, Some(1)), [false, true, false, false]);
    // spatial half disabled: a change at one patch stays at that patch
    let temporal_only = zero_gate(zero_gate(randomize(Latte::new(&cfg, &dev(), 0).unwrap(), 3, 0.2), |i| i < 2, 2), |i| i < 2, 5);
    assert_eq!(changed_frames(&cfg, &temporal_only, None), [true, false]);
}

#[test]
fn variant3_blocks_mix_frames_only_through_their_temporal_attention() {
    let cfg = tiny(3);
    let model = randomize(Latte::new(&cfg, &dev(), 0).unwrap(), 3, 0.2);
    assert_eq!(changed_frames(&cfg, &model, Some(2)), [true; 4]);
    // The spatial and temporal attention share the adaLN chunks 0..3, so the temporal one is
    // switched off at its output projection.
    let mut no_temporal = model;
    for block in &mut no_temporal.blocks {
        let proj = &mut block.attn_temporal.as_mut().expect("a V3 block has a temporal attention").proj;
        proj.weight = Param::from_tensor(proj.weight.val().zeros_like());
        proj.bias = proj.bias.as_ref().map(|b| Param::from_tensor(b.val().zeros_like()));
    }
    assert_eq!(changed_frames(&cfg, &no_temporal, Some(2)), [false, false, true, false]);
}

#[test]
fn variant4_splits_heads_between_space_and_time() {
    let cfg = tiny(4);
    let d = cfg.hidden_size;
    // zero the value projection of one half of the heads (qkv output columns of v)
    let without_half = |temporal: bool| {
        let mut m = randomize(Latte::new(&cfg, &dev(), 0).unwrap(), 3, 0.2);
        for block in m.blocks.iter_mut() {
            let w = block.attn.qkv.weight.val();
            let [din, dout] = w.dims();
            let start = 2 * d + if temporal { d / 2 } else { 0 };
            let mask: Vec<f32> = (0..dout).map(|j| if (start..start + d / 2).contains(&j) { 0.0 } else { 1.0 }).collect();
            let mask = Tensor::<1>::from_data(TensorData::new(mask, [dout]), &w.device());
            block.attn.qkv.weight = Param::from_tensor(w * mask.clone().unsqueeze::<2>().repeat_dim(0, din));
            let b = block.attn.qkv.bias.as_ref().unwrap().val();
            block.attn.qkv.bias = Some(Param::from_tensor(b * mask));
        }
        m
    };
    assert_eq!(changed_frames(&cfg, &without_half(true), Some(1)), [false, true, false, false]);
    assert_eq!(changed_frames(&cfg, &without_half(false), None), [true, false]);
    let full = randomize(Latte::new(&cfg, &dev(), 0).unwrap(), 3, 0.2);
    assert_eq!(changed_frames(&cfg, &full, Some(1)), [true; 4]);
    assert_eq!(changed_frames(&cfg, &full, None), [true, true]);
}

#[test]
fn tubelet_embedding_is_the_conv3d_and_upsampling_starts_as_frame_repetition() {
    let mut cfg = tiny(1);
    cfg.patch_embed = PatchEmbedKind::Tubelet { stride: 2 };
    let model = randomize(Latte::new(&cfg, &dev(), 0).unwrap(), 3, 0.2);
    let (x, _, _) = input(&cfg, 1, 0, 5, &dev());
    let tokens = to_vec(model.x_embedder.forward(x.clone(), 2)); // 1 2 16 32
    let xs = to_vec(x);
    let (w, b) = match &model.x_embedder.proj {
        latte_model::embed::PatchProj::Tubelet(p) => (to_vec(p.weight.val()), to_vec(p.bias.val())),
        _ => unreachable!(),
    };
    // direct Conv3d(4, 32, (2, 2, 2), stride (2, 2, 2)) on x (1, 4 frames, 4, 8, 8)
    let (c, d, s, p, hw) = (4, 32, 2, 2, 8);
    for tf in 0..2 {
        for r in 0..4 {
            for col in 0..4 {
                for o in 0..d {
                    let mut acc = b[o] as f64;
                    for ci in 0..c {
                        for ds in 0..s {
                            for dy in 0..p {
                                for dx in 0..p {
                                    let xi = (((tf * s + ds) * c + ci) * hw + r * p + dy) * hw + col * p + dx;
                                    let wi = (((o * c + ci) * s + ds) * p + dy) * p + dx;
                                    acc += xs[xi] as f64 * w[wi] as f64;
                                }
                            }
                        }
                    }
                    let got = tokens[((tf * 16) + r * 4 + col) * d + o];
                    assert!((got as f64 - acc).abs() < 1e-4, "token ({tf},{r},{col}) ch {o}: {got} vs {acc}");
                }
            }
        }
    }
    // fresh model: frame-repeating upsampler, so with a random final layer frames 2j, 2j+1 agree
    let mut fresh = Latte::new(&cfg, &dev(), 0).unwrap();
    let rnd = randomize(Latte::new(&cfg, &dev(), 0).unwrap(), 4, 0.2);
    fresh.final_layer = rnd.final_layer;
    let (x, t, _) = input(&cfg, 1, 0, 5, &dev());
    let out = fresh.forward(x, t, None, 0); // 1 4 8 8 8
    let f0 = to_vec(out.clone().narrow(1, 0, 1));
    let f1 = to_vec(out.clone().narrow(1, 1, 1));
    let f2 = to_vec(out.narrow(1, 2, 1));
    assert_eq!(f0, f1);
    assert_ne!(f0, f2);
}

#[test]
fn all_tokens_conditioning_reaches_the_output_without_adaln() {
    let mut cfg = tiny(1);
    cfg.conditioning = Conditioning::Tokens;
    cfg.num_classes = Some(3);
    let model = randomize(Latte::new(&cfg, &dev(), 0).unwrap(), 3, 0.2);
    let (x, t, y) = input(&cfg, 2, 0, 5, &dev());
    let base = to_vec(model.forward(x.clone(), t.clone(), y.clone(), 0));
    let t2 = t.clone() + 100;
    let other_t = to_vec(model.forward(x.clone(), t2, y.clone(), 0));
    let y2 = (y.clone().unwrap() + 1).remainder_scalar(3);
    let other_y = to_vec(model.forward(x, t, Some(y2), 0));
    assert!(base.iter().zip(&other_t).any(|(a, b)| (a - b).abs() > 1e-5), "timestep token has no effect");
    assert!(base.iter().zip(&other_y).any(|(a, b)| (a - b).abs() > 1e-5), "class token has no effect");
    assert!(model.blocks.iter().all(|b| b.ada_ln_modulation.is_none() && b.norm1.is_some()));
    assert_eq!(cfg.prefix_tokens(), 2);
}

#[test]
fn rope_scores_depend_only_on_frame_differences() {
    let device = dev();
    let (e, l) = (8, 6);
    let f = latte_nn::init::ParamFactory::new(9, &device);
    // one query vector and one key vector, repeated at every position
    let qv = to_vec(f.float("q", [e], latte_nn::init::Init::Normal { std: 1.0 }, false).val());
    let kv = to_vec(f.float("k", [e], latte_nn::init::Init::Normal { std: 1.0 }, false).val());
    let rep = |v: &Vec<f32>| Tensor::<4>::from_data(TensorData::new(v.repeat(l), [1, 1, l, e]), &device);
    let q = apply_rope(rep(&qv), 0, &device);
    let k = apply_rope(rep(&kv), 0, &device);
    let scores = to_vec(q.matmul(k.swap_dims(2, 3))); // 1 1 L L
    for i in 0..l - 1 {
        for j in 0..l - 1 {
            let (a, b) = (scores[i * l + j], scores[(i + 1) * l + j + 1]);
            assert!((a - b).abs() < 1e-5, "score({i},{j}) = {a} but score({},{}) = {b}", i + 1, j + 1);
        }
    }
    // and they do depend on the difference (not a no-op)
    assert!((scores[0] - scores[1]).abs() > 1e-4);
    // norms are preserved (a rotation) and the prefix rows are left alone
    let x = rep(&qv);
    let r = to_vec(apply_rope(x.clone(), 2, &device));
    let x = to_vec(x);
    assert_eq!(&r[..2 * e], &x[..2 * e]);
    for pos in 0..l {
        let n = |v: &[f32]| v[pos * e..(pos + 1) * e].iter().map(|a| a * a).sum::<f32>();
        assert!((n(&r) - n(&x)).abs() < 1e-4);
    }
}

#[test]
fn rope_model_has_no_absolute_table() {
    let mut cfg = tiny(1);
    cfg.temporal_pos = TemporalPos::Rope;
    let model = Latte::new(&cfg, &dev(), 0).unwrap();
    assert!(model.temp_embed.is_none());
}

#[test]
fn hand_written_ops_have_correct_gradients() {
    use latte_model::attention::{attend, Grouping};
    use latte_model::embed::unpatchify;
    gradcheck("rope", [2, 2, 5, 8], |x| apply_rope(x.clone(), 1, &x.device()));
    gradcheck("unpatchify", [1, 2, 16, 2 * 2 * 3], |x| unpatchify(x, 2, 3));
    for (g, rope) in [(Grouping::Spatial, false), (Grouping::Temporal, true)] {
        gradcheck("attend", [1, 3, 4, 3 * 8], move |x| attend(x, None, 2, g, rope));
    }
    gradcheck("attend+prefix", [1, 3, 4, 3 * 8], |x| {
        let p = x.clone().narrow(1, 0, 1).narrow(2, 0, 2).reshape([1, 1, 2, 24]) * 0.7;
        attend(x, Some(p), 2, Grouping::Temporal, false)
    });
    // per-frame prefix (B, T, P, X), as image frames with labels of their own use it
    gradcheck("attend+per-frame prefix", [1, 3, 4, 3 * 8], |x| {
        let p = x.clone().narrow(2, 0, 2) * 0.7;
        attend(x, Some(p), 2, Grouping::Spatial, false)
    });
    let mut cfg = tiny(1);
    cfg.patch_embed = PatchEmbedKind::Tubelet { stride: 2 };
    let model = randomize(Latte::new(&cfg, &dev(), 0).unwrap(), 3, 0.3);
    let (pe, up) = (model.x_embedder, model.temporal_upsample.unwrap());
    gradcheck("tubelet embed", [1, 4, 4, 8, 8], move |x| {
        let d = x.device();
        pe.clone().to_device(&d).forward(x, 2)
    });
    gradcheck("temporal upsample", [1, 2, 8, 4, 4], move |x| {
        let d = x.device();
        latte_model::embed::temporal_upsample(&up.clone().to_device(&d), x)
    });
}
