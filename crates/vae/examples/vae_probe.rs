//! Probe: trains the VAE on a frames store as the `vae_train` stage does and prints the
//! held-out PSNR and the time. Args: STORE [key=value ...] overriding `TrainConfig` fields
//! (steps, bs, crop, lr, kl, loss, logvar, seed, warmup, wd) and `ch=32,32,64,64`, `layers=1`.
use std::path::Path;
use std::time::Instant;

use latte_store::RaggedReader;
use latte_vae::burn::tensor::Device;
use latte_vae::train::{train, FrameBatch, TrainConfig};
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
        if held_videos.contains(&v) { he.extend(r) } else { tr.extend(r) }
    }
    let all: Vec<u64> = tr.iter().chain(&he).copied().collect();
    let pixels = frames.read_frames(&[], &all).expect("read");
    let batch = FrameBatch { pixels: &pixels, count: all.len(), height: h, width: w };
    let tr_l: Vec<usize> = (0..tr.len()).collect();
    let he_l: Vec<usize> = (tr.len()..all.len()).collect();

    let mut tc = TrainConfig::default();
    let (mut ch, mut layers) = (vec![32, 32, 64, 64], 1);
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
            "wd" => tc.weight_decay = v.parse().unwrap(),
            "ch" => ch = v.split(',').map(|c| c.parse().unwrap()).collect(),
            "layers" => layers = v.parse().unwrap(),
            _ => panic!("unknown key {k}"),
        }
    }
    if !args.iter().any(|a| a.starts_with("warmup=")) {
        tc.warmup_steps = (tc.steps / 20).max(1);
    }
    let cfg = VaeConfig::new(ch, layers, 8, 4);
    eprintln!("{} train / {} held-out frames; {:?}", tr.len(), he.len(), tc);
    let t = Instant::now();
    let out = train(&cfg, &tc, batch, &tr_l, &he_l, &Device::default(), &mut |i, l| {
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
