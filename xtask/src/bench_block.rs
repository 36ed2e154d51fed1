//! `cargo xtask bench block`: one Latte-S block pair (spatial + temporal, D 384, 6 heads,
//! B 2 × F 8 × N 64 tokens), forward and a full training step (forward, backward, AdamW),
//! through the real `latte-model` code on burn's flex backend; beside PyTorch's
//! `shared/spec/ml-stack-bench/torch_bench.py` in the same run when `import torch` works with
//! the python named by `$LATTE_PYTHON` (default `python3`). The PyTorch side times the block
//! pair alone; the burn side also runs the patch embedding, timestep MLP and final layer
//! (small next to the blocks), so the ratio slightly favours PyTorch.

use anyhow::{bail, Context, Result};
use latte_model::burn::module::Module;
use latte_model::burn::optim::GradientsParams;
use latte_model::burn::tensor::{Device, Int, Tensor, TensorData};
use latte_model::latte_nn::adamw::AdamW;
use latte_model::latte_nn::init::{Init, ParamFactory};
use latte_model::{Latte, LatteConfig};
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
    /// Only time the fused ops against their composed forms (forward + backward under
    /// autodiff, on the block's activation shapes).
    #[arg(long)]
    ops: bool,
}

/// Median ms of forward + backward of `sum(op(x)·r)` for x of `shape` on flex with autodiff.
fn time_op<const D: usize>(shape: [usize; D], iters: usize, op: &dyn Fn(Tensor<D>) -> Tensor<D>) -> f64 {
    let device = Device::flex().autodiff();
    let pf = ParamFactory::new(2, &device);
    let x0: Tensor<D> = pf.float("x", shape, Init::Normal { std: 1.0 }, false).val();
    let r: Tensor<D> = pf.float("r", shape, Init::Normal { std: 1.0 }, false).val();
    let mut ms = vec![];
    for it in 0..2 + iters {
        let x = x0.clone().require_grad();
        let t0 = Instant::now();
        let grads = (op(x.clone()) * r.clone()).sum().backward();
        let _ = x.grad(&grads).map(|g| g.sum().into_scalar::<f32>());
        if it >= 2 {
            ms.push(t0.elapsed().as_secs_f64() * 1e3);
        }
    }
    median(ms)
}

/// The fused ops of `latte_nn::fused` against their composed forms.
fn bench_ops(iters: usize, threads: usize) {
    use latte_model::burn::tensor::activation::{gelu_approximate, softmax};
    use latte_model::latte_nn::{fused, ops};
    let (b, f, n, d, h) = (2usize, 8usize, 64usize, 384usize, 6usize);
    let x = [b, f, n, d];
    let p = |t: &Tensor<4>| Tensor::<4>::ones([b, 1, 1, d], &t.device()) * 0.1;
    let rows: Vec<(&str, f64, f64)> = vec![
        (
            "layernorm+modulate (2,8,64,384)",
            time_op(x, iters, &|t| fused::ln_modulate(&t, &p(&t), &p(&t), 1e-6).expect("flex")),
            time_op(x, iters, &|t| ops::modulate(ops::layer_norm_composed(t.clone(), 1e-6), p(&t), p(&t))),
        ),
        (
            "gelu-tanh (2,8,64,1536)",
            time_op([b, f, n, 4 * d], iters, &|t| fused::gelu_tanh(&t).expect("flex")),
            time_op([b, f, n, 4 * d], iters, &gelu_approximate),
        ),
        (
            "softmax (16,6,64,64)",
            time_op([b * f, h, n, n], iters, &|t| fused::softmax_last(&t).expect("flex")),
            time_op([b * f, h, n, n], iters, &|t| softmax(t, 3)),
        ),
    ];
    // the harness alone (multiply by r, sum, backward, read the gradient)
    println!("RESULT op harness-only (2,8,64,384) threads={threads} ms={:.2}", time_op(x, iters, &|t| t));
    for (name, fu, co) in rows {
        println!("RESULT op {name} threads={threads} fwd+bwd fused_ms={fu:.2} composed_ms={co:.2} speedup={:.1}x", co / fu);
    }
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
    // as the engine runs a stage: inside a pool, the calling thread one of its workers
    let pool = rayon::ThreadPoolBuilder::new().num_threads(args.threads).build()?;
    pool.install(|| run_inner(args))
}

fn run_inner(args: Args) -> Result<()> {
    if args.ops {
        bench_ops(args.iters.max(10), args.threads);
        return Ok(());
    }
    let (b, f, side) = (2usize, 8usize, 16usize);
    let cfg = LatteConfig { input_size: side, num_frames: f, depth: 2, ..LatteConfig::preset("Latte-S/2")? };
    let device = Device::flex().autodiff();
    let mut model = Latte::new(&cfg, &device, 0)?;
    let mut opt = AdamW { beta_1: 0.9, beta_2: 0.999, epsilon: 1e-8, weight_decay: 0.0 }.init();
    let pf = ParamFactory::new(1, &device);
    let x: Tensor<5> = pf.float("x", [b, f, 4, side, side], Init::Normal { std: 1.0 }, false).val();
    let target: Tensor<5> = pf.float("target", [b, f, 8, side, side], Init::Normal { std: 1.0 }, false).val();
    let t = Tensor::<1, Int>::from_data(TensorData::new(vec![10i64, 500], [b]), &device);
    let n_tokens = cfg.tokens_per_frame();
    let (mut fwd_ms, mut step_ms, mut parts) = (vec![], vec![], vec![]);
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
        let t1 = Instant::now();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let t2 = Instant::now();
        model = opt.step(1e-4, model, grads);
        let _ = model.blocks[1].mlp.fc2.weight.val().sum().into_scalar::<f32>();
        let step = t0.elapsed().as_secs_f64() * 1e3;
        let part = [(t1 - t0).as_secs_f64() * 1e3, (t2 - t1).as_secs_f64() * 1e3, t2.elapsed().as_secs_f64() * 1e3];
        println!(
            "iter {it}: loss {lv:.5} fwd {fwd:.1} ms step {step:.1} ms (forward {:.1}, backward {:.1}, AdamW {:.1})",
            part[0], part[1], part[2]
        );
        if it >= 3 {
            fwd_ms.push(fwd);
            step_ms.push(step);
            parts.push(part);
        }
    }
    let fl = flops_fwd(b, f, n_tokens, cfg.hidden_size);
    let (fm, sm) = (median(fwd_ms), median(step_ms));
    let part = |i: usize| median(parts.iter().map(|p: &[f64; 3]| p[i]).collect());
    println!("RESULT burn-flex step parts (medians): forward+loss {:.1} ms, backward {:.1} ms, AdamW {:.1} ms", part(0), part(1), part(2));
    println!(
        "RESULT burn-flex threads={} fwd_median_ms={fm:.1} step_median_ms={sm:.1} step_GFLOP/s={:.1} params={}",
        args.threads,
        3.0 * fl / (sm * 1e-3) / 1e9,
        model.num_params()
    );
    if args.no_torch {
        return Ok(());
    }
    let python = std::env::var("LATTE_PYTHON").unwrap_or_else(|_| "python3".to_string());
    let has_torch = Command::new(&python).args(["-c", "import torch"]).output().is_ok_and(|o| o.status.success());
    if !has_torch {
        println!(
            "PyTorch: `{python} -c 'import torch'` failed; no ratio. To compare, install it outside the repo and point \
             LATTE_PYTHON at it:\n  python3 -m venv /opt/torch-venv && /opt/torch-venv/bin/pip install torch numpy\n  \
             LATTE_PYTHON=/opt/torch-venv/bin/python cargo xtask bench block"
        );
        return Ok(());
    }
    let script = crate::workspace::shared()?.join("spec/ml-stack-bench/torch_bench.py");
    if !script.is_file() {
        bail!("{} is missing: the PyTorch side of `bench block` lives in ../shared beside the checkout", script.display());
    }
    let out = Command::new(&python)
        .arg(&script)
        .arg("bench")
        .env("TORCH_THREADS", args.threads.to_string())
        .output()
        .with_context(|| format!("running {python} {}", script.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    // one RESULT line per attention mode: `torch` (math, as the reference) and `torch-sdpa`
    let results: Vec<(&str, f64, f64)> = text
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            (words.next()? == "RESULT").then_some(())?;
            let name = words.next()?;
            let field = |key: &str| l.split_whitespace().find_map(|kv| kv.strip_prefix(key)?.parse::<f64>().ok());
            Some((name, field("fwd_median_ms=")?, field("step_median_ms=")?))
        })
        .collect();
    if results.is_empty() {
        println!("PyTorch run gave no RESULT line:\n{text}\n{}", String::from_utf8_lossy(&out.stderr));
    }
    for (name, tf, ts) in results {
        println!(
            "RESULT {name} threads={} fwd_median_ms={tf:.1} step_median_ms={ts:.1}; burn / {name}: fwd {:.2}x, step {:.2}x",
            args.threads,
            fm / tf,
            sm / ts
        );
    }
    Ok(())
}
