//! Training a tiny VAE, and the diffusers folder round trip.

use std::path::Path;

use latte_vae::burn::tensor::{Device, Tensor, TensorData};
use latte_vae::train::{train, FrameBatch, ReconstructionLoss, VaeTrainConfig};
use latte_vae::{save_pretrained, state_dict, AutoencoderKL, VaeConfig, VaeError, VaeFolder};

fn tiny() -> VaeConfig {
    VaeConfig::new(vec![8, 16], 1, 4, 4)
}

/// `n` frames of 16×16: a bright square moving over a colour gradient.
fn frames(n: usize) -> Vec<u8> {
    let mut px = Vec::with_capacity(n * 16 * 16 * 3);
    for i in 0..n {
        for y in 0..16 {
            for x in 0..16 {
                let inside = (x + 16 - i % 16) % 16 < 5 && (4..10).contains(&y);
                let rgb = if inside { [240, 220, 40] } else { [(x * 12) as u8, (y * 12) as u8, 90] };
                px.extend(rgb);
            }
        }
    }
    px
}

fn config(steps: usize) -> VaeTrainConfig {
    VaeTrainConfig { steps, batch_size: 4, crop: 8, lr: 3e-3, warmup_steps: 2, loss: ReconstructionLoss::L1, ..VaeTrainConfig::default() }
}

#[test]
fn same_seed_gives_the_same_bits() {
    let px = frames(12);
    let batch = FrameBatch { pixels: &px, count: 12, height: 16, width: 16 };
    let run = || {
        let mut seen = Vec::new();
        let out =
            train(&tiny(), &config(3), batch, &(0..10).collect::<Vec<_>>(), &[10, 11], &Device::flex(), &mut |_, l| seen.push(l)).unwrap();
        (out.losses, state_dict(&out.model), seen)
    };
    let (a_loss, a_sd, a_seen) = run();
    let (b_loss, b_sd, _) = run();
    assert_eq!(a_loss.iter().map(|l| l.to_bits()).collect::<Vec<_>>(), b_loss.iter().map(|l| l.to_bits()).collect::<Vec<_>>());
    assert_eq!(a_seen, a_loss, "the callback sees every step's loss");
    assert_eq!(a_sd, b_sd, "same seed must give bit-identical weights");
}

/// Two ranks (two crops each of every batch of 4, on threads of their own) train the one-rank
/// VAE up to float rounding, with the same bits on every run; a rank count that cannot share
/// the batch is refused.
#[test]
fn two_ranks_train_the_one_rank_vae() {
    let px = frames(12);
    let batch = FrameBatch { pixels: &px, count: 12, height: 16, width: 16 };
    let run = |ranks: usize| {
        let mut seen = Vec::new();
        let cfg = VaeTrainConfig { ranks, ..config(3) };
        let out = train(&tiny(), &cfg, batch, &(0..10).collect::<Vec<_>>(), &[10, 11], &Device::flex(), &mut |_, l| seen.push(l))?;
        let weights: Vec<f32> = state_dict(&out.model).into_values().flat_map(|(_, v)| v).collect();
        Ok::<_, VaeError>((out.losses, weights, seen))
    };
    let (one_loss, one_w, _) = run(1).unwrap();
    let (two_loss, two_w, two_seen) = run(2).unwrap();
    let (again_loss, again_w, _) = run(2).unwrap();
    assert_eq!(two_loss.iter().map(|l| l.to_bits()).collect::<Vec<_>>(), again_loss.iter().map(|l| l.to_bits()).collect::<Vec<_>>());
    assert_eq!(two_w, again_w, "two ranks must give the same bits on every run");
    assert_eq!(two_seen, two_loss, "the callback sees the whole batch's loss");
    let dl = one_loss.iter().zip(&two_loss).map(|(a, b)| (a - b).abs() / a.abs()).fold(0f32, f32::max);
    let dw = latte_nn::host::max_abs_diff(&one_w, &two_w);
    eprintln!("2 ranks vs 1: losses {dl:e} relative, weights {dw:e}");
    assert!(dl <= 1e-5 && dw <= 1e-5, "2 ranks: losses {dl:e}, weights {dw:e}");
    let err = run(3).unwrap_err();
    assert!(err.to_string().contains("3 ranks cannot share batches of 4"), "{err}");
}

/// An unwind out of `on_step` (how the `vae_train` stage stops a cancelled run) leaves a
/// two-rank run with its payload, and the other rank does not wait for it forever.
#[test]
fn a_stop_from_on_step_ends_both_ranks() {
    let px = frames(12);
    let batch = FrameBatch { pixels: &px, count: 12, height: 16, width: 16 };
    let cfg = VaeTrainConfig { ranks: 2, ..config(5) };
    let stopped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        train(&tiny(), &cfg, batch, &(0..10).collect::<Vec<_>>(), &[], &Device::flex(), &mut |step, _| {
            if step == 1 {
                std::panic::resume_unwind(Box::new("stop"));
            }
        })
    }));
    let payload = stopped.err().expect("the run stopped");
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"stop"));
}

#[test]
fn training_reduces_the_loss_and_reports_psnr() {
    let px = frames(16);
    let batch = FrameBatch { pixels: &px, count: 16, height: 16, width: 16 };
    let cfg = VaeTrainConfig { crop: 0, ..config(80) };
    let out = train(&tiny(), &cfg, batch, &(0..14).collect::<Vec<_>>(), &[14, 15], &Device::flex(), &mut |_, _| {}).unwrap();
    let first: f32 = out.losses[..10].iter().sum::<f32>() / 10.0;
    let last: f32 = out.losses[70..].iter().sum::<f32>() / 10.0;
    eprintln!(
        "loss {first:.4} -> {last:.4}, held-out PSNR {:?}, train PSNR {:.2}, scale {:.4}",
        out.heldout_psnr, out.train_psnr, out.config.scaling_factor
    );
    assert!(last < 0.6 * first, "loss went from {first} to {last}");
    let psnr = out.heldout_psnr.unwrap();
    assert!(psnr.is_finite() && psnr > 12.0, "held-out PSNR {psnr}");
    assert!(out.config.scaling_factor.is_finite() && out.config.scaling_factor > 0.0);
}

#[test]
fn bad_training_inputs_fail_clearly() {
    let px = frames(4);
    let batch = FrameBatch { pixels: &px, count: 4, height: 16, width: 16 };
    let dev = Device::flex();
    let err = train(&tiny(), &VaeTrainConfig { crop: 7, ..config(1) }, batch, &[0, 1], &[], &dev, &mut |_, _| {}).unwrap_err();
    assert!(err.to_string().contains("multiples of the downsampling factor 2"), "{err}");
    let err = train(&tiny(), &config(1), batch, &[0, 9], &[], &dev, &mut |_, _| {}).unwrap_err();
    assert!(err.to_string().contains("frame index 9"), "{err}");
    let err = train(&tiny(), &config(1), batch, &[], &[], &dev, &mut |_, _| {}).unwrap_err();
    assert!(matches!(err, VaeError::Train(_)), "{err}");
}

#[test]
fn state_dict_has_diffusers_keys_and_shapes() {
    // The fixture's weights were written by diffusers' state_dict(): same keys, same shapes.
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/vae-kl-tiny");
    let folder = VaeFolder::open(&fixture).unwrap();
    let model = AutoencoderKL::init(&folder.config, 0, &Device::flex()).unwrap();
    let ours: Vec<(String, Vec<usize>)> = state_dict(&model).into_iter().map(|(k, (s, _))| (k, s)).collect();
    let bytes = std::fs::read(&folder.weights).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut theirs: Vec<(String, Vec<usize>)> = st.tensors().into_iter().map(|(k, v)| (k, v.shape().to_vec())).collect();
    theirs.sort();
    assert_eq!(theirs.len(), 124);
    assert_eq!(ours, theirs);
}

#[test]
fn saved_folder_loads_back_to_the_same_function() {
    let dev = Device::flex();
    let cfg = tiny();
    let model = AutoencoderKL::init(&cfg, 5, &dev).unwrap();
    let dir = tempfile::tempdir().unwrap();
    save_pretrained(&model, &cfg, dir.path()).unwrap();
    assert!(dir.path().join("diffusion_pytorch_model.safetensors").is_file());
    let folder = VaeFolder::open(dir.path()).unwrap();
    assert_eq!(folder.config, cfg);
    let loaded = folder.load(&dev).unwrap();

    let x: Vec<f32> = (0..2 * 3 * 8 * 8).map(|i| ((i as f32) * 0.37).sin()).collect();
    let x = Tensor::<4>::from_data(TensorData::new(x, [2, 3, 8, 8]), &dev);
    let a = model.decode(model.encode(x.clone()).mean).into_data().try_into_vec::<f32>().unwrap();
    let b = loaded.decode(loaded.encode(x).mean).into_data().try_into_vec::<f32>().unwrap();
    assert_eq!(a, b);
    assert_eq!(folder.digest().unwrap().len(), 64);
}

#[test]
fn input_not_divisible_by_the_downsampling_factor_is_rejected() {
    let cfg = VaeConfig::stable_diffusion();
    let err = latte_vae::check_input([1, 3, 60, 64], &cfg).unwrap_err();
    assert!(err.to_string().contains("multiples of the downsampling factor 8"), "{err}");
    assert!(latte_vae::check_input([1, 3, 64, 64], &cfg).is_ok());
}

#[test]
fn stable_diffusion_config_has_diffusers_parameter_count() {
    use latte_vae::burn::module::Module;
    // diffusers 0.42.1 builds this config with 83,653,863 parameters (fixture README).
    let vae = AutoencoderKL::init(&VaeConfig::stable_diffusion(), 0, &Device::flex()).unwrap();
    assert_eq!(vae.num_params(), 83_653_863);
}

#[test]
fn zero_residual_init_zeroes_only_the_ends_of_residual_branches() {
    let cfg = VaeConfig::new(vec![8, 16], 1, 4, 4);
    let dev = Device::flex();
    let plain = state_dict(&AutoencoderKL::init_for_training(&cfg, 5, -6.0, false, &dev).unwrap());
    let zeroed = state_dict(&AutoencoderKL::init_for_training(&cfg, 5, -6.0, true, &dev).unwrap());
    assert_eq!(plain.keys().collect::<Vec<_>>(), zeroed.keys().collect::<Vec<_>>());
    let mut zeroed_keys = 0;
    for (key, (_, values)) in &zeroed {
        if key.contains(".conv2.") || key.contains(".to_out.0.") {
            assert!(values.iter().all(|&v| v == 0.0), "{key} is not zero");
            assert!(plain[key].1.iter().any(|&v| v != 0.0), "{key} is zero without the option");
            zeroed_keys += 1;
        } else {
            // The other layers draw the same values: the zeroed ones still consume the generator.
            assert_eq!(values, &plain[key].1, "{key} changed");
        }
    }
    // 2 encoder + 4 decoder level resnets + 4 mid resnets, weight and bias each; 2 attentions.
    assert_eq!(zeroed_keys, 2 * (2 + 4 + 4) + 2 * 2);
}
