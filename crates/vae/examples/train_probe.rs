//! Scratch probe: how fast a tiny VAE learns on synthetic frames (args: steps lr crop loss bs channels...).
use latte_vae::burn::tensor::Device;
use latte_vae::train::{train, FrameBatch, TrainConfig};
use latte_vae::VaeConfig;
use std::time::Instant;

fn frames(n: usize, s: usize) -> Vec<u8> {
    let mut px = Vec::with_capacity(n * s * s * 3);
    for i in 0..n {
        let (cx, cy) = ((i * 3) % s, (i * 5 + s / 3) % s);
        for y in 0..s {
            for x in 0..s {
                let d2 = (x as i64 - cx as i64).pow(2) + (y as i64 - cy as i64).pow(2);
                let rgb = if d2 < (s as i64 / 5).pow(2) { [240, 60 + (i * 7 % 150) as u8, 40] } else if (x / 8 + y / 8) % 2 == 0 && i % 2 == 0 { [30, 30, 120] } else { [(x * 200 / s) as u8, (y * 200 / s) as u8, 90] };
                px.extend(rgb);
            }
        }
    }
    px
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let steps: usize = a[1].parse().unwrap();
    let lr: f64 = a[2].parse().unwrap();
    let crop: usize = a[3].parse().unwrap();
    let loss = a[4].parse().unwrap();
    let bs: usize = a[5].parse().unwrap();
    let s: usize = a[6].parse().unwrap();
    let ch: Vec<usize> = a[7..].iter().map(|c| c.parse().unwrap()).collect();
    let cfg = VaeConfig::new(ch, 1, 8, 4);
    let n = 64;
    let px = frames(n, s);
    let batch = FrameBatch { pixels: &px, count: n, height: s, width: s };
    let tc = TrainConfig { steps, lr, crop, loss, batch_size: bs, warmup_steps: steps / 20 + 1, ..TrainConfig::default() };
    let t = Instant::now();
    let train_idx: Vec<usize> = (0..56).collect();
    let held: Vec<usize> = (56..64).collect();
    let out = train(&cfg, &tc, batch, &train_idx, &held, &Device::default(), &mut |i, l| if i % 25 == 0 { eprintln!("step {i} loss {l:.4} t {:.1}s", t.elapsed().as_secs_f64()) }).unwrap();
    println!("steps {steps} lr {lr} crop {crop} bs {bs}: {:.1}s ({:.0} ms/step), heldout {:.2} dB train {:.2} dB scale {:.4} final {:.4}",
        t.elapsed().as_secs_f64(), t.elapsed().as_secs_f64() * 1e3 / steps as f64, out.heldout_psnr.unwrap(), out.train_psnr, out.config.scaling_factor, out.losses.last().unwrap());
}
