//! Probe: trains the VAE on a frames store as the `vae_train` stage does and prints the
//! held-out PSNR and the time. Args: STORE [key=value ...] overriding `VaeTrainConfig` fields
//! (steps, bs, crop, lr, kl, loss, logvar, seed, warmup, wd) and `ch=32,32,64,64`, `layers=1`.
use std::path::Path;
use std::time::Instant;

use latte_store::RaggedReader;
use latte_vae::burn::tensor::Device;
use latte_vae::train::{train, FrameBatch, VaeTrainConfig};
use latte_vae::VaeConfig;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let store = RaggedReader::open(Path::new(&args[1])).expect("store");
    let frames = store.array::<u8>("frames").expect("frames");
    let (h, w) = (frames.frame_shape()[0] as usize, frames.frame_shape()[1] as usize);
    let meta = store.meta();
    let n = meta.counts.len();
    let held = ((n as f64 * 0.1).round() as usize).clamp(1, n - 1);
    let held_videos: Vec<usize> = (0..held).map(|k| (2 * k + 1) * n / (2 * held)).collect();
    let (mut tr, mut he) = (Vec::new(), Vec::new());
    for v in 0..n {
        let r = meta.offsets[v]..meta.offsets[v] + meta.counts[v];
        if held_videos.contains(&v) {
            he.extend(r)
        } else {
            tr.extend(r)
        }
    }
    let all: Vec<u64> = tr.iter().chain(&he).copied().collect();
    let pixels = frames.read_frames(&[], &all).expect("read");
    let batch = FrameBatch { pixels: &pixels, count: all.len(), height: h, width: w };
    let tr_l: Vec<usize> = (0..tr.len()).collect();
    let he_l: Vec<usize> = (tr.len()..all.len()).collect();

    if args.get(2).map(String::as_str) == Some("baselines") {
        // Reference points without a network, on the held-out frames: each frame's mean
        // colour, and 8×8 block means (a trivial ×8 codec with 3 numbers per latent pixel).
        let psnr = |mse: f64| 10.0 * (255f64 * 255.0 / mse.max(1e-12)).log10();
        let (mut mean_db, mut block_db) = (0.0, 0.0);
        for &i in &he_l {
            let f = &pixels[i * h * w * 3..(i + 1) * h * w * 3];
            let (mut m1, mut m2) = (0.0, 0.0);
            for c in 0..3 {
                let mean = (0..h * w).map(|p| f[p * 3 + c] as f64).sum::<f64>() / (h * w) as f64;
                m1 += (0..h * w).map(|p| (f[p * 3 + c] as f64 - mean).powi(2)).sum::<f64>();
                for by in 0..h / 8 {
                    for bx in 0..w / 8 {
                        let px = |y: usize, x: usize| f[((by * 8 + y) * w + bx * 8 + x) * 3 + c] as f64;
                        let bm = (0..64).map(|k| px(k / 8, k % 8)).sum::<f64>() / 64.0;
                        m2 += (0..64).map(|k| (px(k / 8, k % 8) - bm).powi(2)).sum::<f64>();
                    }
                }
            }
            mean_db += psnr(m1 / (3 * h * w) as f64);
            block_db += psnr(m2 / (3 * h * w) as f64);
        }
        let n = he_l.len() as f64;
        println!("held-out baselines: frame mean colour {:.2} dB, 8x8 block means {:.2} dB", mean_db / n, block_db / n);
        return;
    }
    let mut tc = VaeTrainConfig::default();
    let (mut ch, mut layers, mut groups) = (vec![32, 32, 64, 64], 1, 8);
    for kv in &args[2..] {
        let (k, v) = kv.split_once('=').expect("key=value");
        match k {
            "steps" => tc.steps = v.parse().unwrap(),
            "bs" => tc.batch_size = v.parse().unwrap(),
            "crop" => tc.crop = v.parse().unwrap(),
            "lr" => tc.lr = v.parse().unwrap(),
            "kl" => tc.kl_weight = v.parse().unwrap(),
            "loss" => tc.loss = v.parse().unwrap(),
            "logvar" => tc.initial_logvar = v.parse().unwrap(),
            "seed" => tc.seed = v.parse().unwrap(),
            "warmup" => tc.warmup_steps = v.parse().unwrap(),
            "zero" => tc.zero_residual_init = v.parse().unwrap(),
            "wd" => tc.weight_decay = v.parse().unwrap(),
            "ch" => ch = v.split(',').map(|c| c.parse().unwrap()).collect(),
            "groups" => groups = v.parse().unwrap(),
            "layers" => layers = v.parse().unwrap(),
            _ => panic!("unknown key {k}"),
        }
    }
    if !args.iter().any(|a| a.starts_with("warmup=")) {
        tc.warmup_steps = (tc.steps / 20).max(1);
    }
    let cfg = VaeConfig::new(ch, layers, groups, 4);
    eprintln!("{} train / {} held-out frames; {:?}", tr.len(), he.len(), tc);
    let t = Instant::now();
    let out = train(&cfg, &tc, batch, &tr_l, &he_l, &Device::flex(), &mut |i, l| {
        if i % 25 == 0 {
            eprintln!("step {i} loss {l:.4} t {:.1}s", t.elapsed().as_secs_f64())
        }
    })
    .unwrap();
    println!(
        "{:?}: {:.1}s, held-out {:.2} dB, train {:.2} dB, scale {:.4}, final loss {:.4}",
        args[2..].join(" "),
        t.elapsed().as_secs_f64(),
        out.heldout_psnr.unwrap(),
        out.train_psnr,
        out.config.scaling_factor,
        out.losses.last().unwrap()
    );
}
