//! `cargo xtask bench block`: one Latte-S block pair (spatial + temporal, D 384, 6 heads,
//! B 2 × F 8 × N 64 tokens), forward and a full training step (forward, backward, AdamW),
//! through the real `latte-model` code on burn's flex backend; beside PyTorch's
//! `shared/spec/ml-stack-bench/torch_bench.py` in the same run when `import torch` works.

use anyhow::{Context, Result};
use latte_model::burn::module::Module;
use latte_model::burn::optim::{AdamWConfig, GradientsParams};
use latte_model::burn::tensor::{Device, Int, Tensor, TensorData};
use latte_model::latte_nn::init::{Init, ParamFactory};
use latte_model::{Latte, LatteConfig};
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

#[derive(clap::Args)]
pub struct Args {
    /// Timed iterations (after 3 warm-up ones).
    #[arg(long, default_value_t = 8)]
    iters: usize,
    /// Worker threads for burn (rayon) and PyTorch.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Skip the PyTorch comparison.
    #[arg(long)]
    no_torch: bool,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Forward FLOPs of the block pair, counted as `torch_bench.py` does.
fn flops_fwd(b: usize, f: usize, t: usize, d: usize) -> f64 {
    let (b, f, t, d) = (b as f64, f as f64, t as f64, d as f64);
    let n = b * f * t;
    let lin = 2.0 * n * d * (3.0 * d + d + 4.0 * d + 4.0 * d);
    let attn = |seqs: f64, s: f64| 4.0 * seqs * s * s * d;
    let ada = |rows: f64| 2.0 * rows * d * 6.0 * d;
    2.0 * lin + attn(b * f, t) + attn(b * t, f) + ada(b * f) + ada(b * t)
}

pub fn run(args: Args) -> Result<()> {
    // rayon reads this when its global pool starts, i.e. at the first parallel op below
    std::env::set_var("RAYON_NUM_THREADS", args.threads.to_string());
    let (b, f, side) = (2usize, 8usize, 16usize);
    let cfg = LatteConfig { input_size: side, num_frames: f, depth: 2, ..LatteConfig::preset("Latte-S/2")? };
    let device = Device::flex().autodiff();
    let mut model = Latte::new(&cfg, &device, 0)?;
    let mut opt = AdamWConfig::new().with_weight_decay(0.0).init();
    let pf = ParamFactory::new(1, &device);
    let x: Tensor<5> = pf.float("x", [b, f, 4, side, side], Init::Normal { std: 1.0 }, false).val();
    let target: Tensor<5> = pf.float("target", [b, f, 8, side, side], Init::Normal { std: 1.0 }, false).val();
    let t = Tensor::<1, Int>::from_data(TensorData::new(vec![10i64, 500], [b]), &device);
    let n_tokens = cfg.tokens_per_frame();
    let (mut fwd_ms, mut step_ms) = (vec![], vec![]);
    for it in 0..3 + args.iters {
        let t0 = Instant::now();
        let valid = model.valid();
        let y = valid.forward(x.clone().inner(), t.clone().inner(), None, 0);
        let _ = y.sum().into_scalar::<f32>();
        let fwd = t0.elapsed().as_secs_f64() * 1e3;

        let t0 = Instant::now();
        let out = model.forward(x.clone(), t.clone(), None, 0);
        let loss = (out - target.clone()).powi_scalar(2).mean();
        let lv = loss.clone().into_scalar::<f32>();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = opt.step(1e-4, model, grads);
        let _ = model.blocks[1].mlp.fc2.weight.val().sum().into_scalar::<f32>();
        let step = t0.elapsed().as_secs_f64() * 1e3;
        println!("iter {it}: loss {lv:.5} fwd {fwd:.1} ms step {step:.1} ms");
        if it >= 3 {
            fwd_ms.push(fwd);
            step_ms.push(step);
        }
    }
    let fl = flops_fwd(b, f, n_tokens, cfg.hidden_size);
    let (fm, sm) = (median(fwd_ms), median(step_ms));
    println!(
        "RESULT burn-flex threads={} fwd_median_ms={fm:.1} step_median_ms={sm:.1} step_GFLOP/s={:.1} params={}",
        args.threads,
        3.0 * fl / (sm * 1e-3) / 1e9,
        model.num_params()
    );
    if args.no_torch {
        return Ok(());
    }
    let has_torch = Command::new("python3").args(["-c", "import torch"]).output().is_ok_and(|o| o.status.success());
    if !has_torch {
        println!("PyTorch: not importable here (python3 -c 'import torch' failed); no ratio");
        return Ok(());
    }
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/spec/ml-stack-bench/torch_bench.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg("bench")
        .env("TORCH_THREADS", args.threads.to_string())
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let torch_ms = text
        .lines()
        .filter(|l| l.starts_with("RESULT"))
        .find_map(|l| l.split_whitespace().find_map(|kv| kv.strip_prefix("step_median_ms=")?.parse::<f64>().ok()));
    match torch_ms {
        Some(tm) => println!("RESULT torch step_median_ms={tm:.1}; burn / torch = {:.2}", sm / tm),
        None => println!("PyTorch run gave no RESULT line:\n{text}\n{}", String::from_utf8_lossy(&out.stderr)),
    }
    Ok(())
}
