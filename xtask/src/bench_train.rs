//! `cargo xtask bench train`: full training steps (data, forward, hybrid loss, backward,
//! gradient norm, AdamW, EMA) of the `latte-train` loop with the real `latte-model` network, by
//! default on burn's flex backend for a small config like the default pipeline's and a
//! Latte-S/2-shaped one (32×32 latents, a few frames), beside the reference PyTorch model
//! (`xtask/bench/latte_train_step.py`) on the same CPU in the same run when `$LATTE_PYTHON`
//! (default `python3`) imports torch. Prints the median step time, the ratio, the achieved
//! GFLOP/s and the peak memory of each side.
//!
//! `--device cuda` runs the Rust side on the GPU and the PyTorch side on the same GPU (TF32
//! matmuls; `--precision bf16`: autocast), and `--xl` times Latte-XL/2 on 16 frames of 32×32
//! latents (a 16×256² video) in bf16 and f32, with and without gradient checkpointing: clips/s
//! and peak GPU memory of both sides, and the ratio (`xtask/device/check.sh` runs it on a GPU
//! machine).
//!
//! Each Rust case runs in a child process of this binary (the hidden `--case` flag) and each
//! PyTorch case in its own python process, so every peak-memory figure is that case's alone:
//! in one process the allocator keeps the first case's freed memory (`malloc.rs`), and a GPU
//! memory pool keeps its pages.
//!
//! Both sides must time the same network: the parameter counts must agree, and the PyTorch
//! script runs one forward with the Rust model's weights (perturbed away from the
//! adaLN-Zero init, whose output is identically zero) on a Rust input and reports the largest
//! difference from the Rust output. A mismatch marks the RESULT line and fails the command.
//!
//! The hidden `--compare-step` trains two steps of the small config on the CPU and on
//! `--device` from the same weights and batches and fails when their losses or gradient norms
//! differ beyond float rounding: the check that a GPU backend trains what the CPU trains.

use anyhow::{anyhow, bail, Context, Result};
use latte_model::burn::module::{Module, ModuleMapper, Param};
use latte_model::burn::tensor::{Device, FloatDType, Int, Tensor, TensorData};
use latte_model::latte_nn::device::{autodiff_with, device_from_name, DeviceKind, DeviceSpec};
use latte_model::latte_nn::init::{Init, ParamFactory};
use latte_model::{Latte, LatteConfig};
use latte_train::{train, LatentClips, ModelInput, RunPaths, TrainConfig};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Largest forward difference, relative to the largest output magnitude, that still counts as
/// the same network (float32 sums in another order differ by ~1e-6 relative).
const FORWARD_REL_TOL: f64 = 1e-3;
/// The same for a bf16 forward against PyTorch's f32 one: bf16 keeps 8 bits of mantissa
/// (3.9e-3 relative per rounding), and rounding errors grow through the blocks.
const BF16_FORWARD_REL_TOL: f64 = 5e-2;
/// `--compare-step`: largest relative difference of a step's loss or gradient norm between the
/// CPU and the device in f32 (reductions in another order: ~1e-6), and in bf16 against the
/// CPU's f32.
const STEP_REL_TOL: f64 = 1e-3;
const BF16_STEP_REL_TOL: f64 = 1e-2;

/// Open-Sora's reported training throughput of Latte-XL/2 on 16×256² clips, the published
/// anchor beside which the `--xl` summary puts ours.
const OPEN_SORA_ANCHOR: &str = "Open-Sora reports Latte-XL/2 16×256² training at about 10 clips/s per H800 \
     (bf16, flash attention, gradient checkpointing, ZeRO-2); an H800 is an H100 with less interconnect bandwidth, \
     and both sides here use the reference's math attention (materialised scores), not flash attention";

#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
enum Precision {
    F32,
    Bf16,
}

impl Precision {
    fn as_str(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
        }
    }

    /// The model's compute dtype (`Latte::with_compute_dtype`): f32 is the plain path.
    fn dtype(self) -> Option<FloatDType> {
        match self {
            Precision::F32 => None,
            Precision::Bf16 => Some(FloatDType::BF16),
        }
    }
}

#[derive(clap::Args)]
pub struct Args {
    /// Timed steps per configuration (after `--warmup` ones).
    #[arg(long, default_value_t = 3)]
    iters: usize,
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Worker threads for burn (rayon) and PyTorch (`torch.set_num_threads`, OMP/MKL).
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Frames per clip of the Latte-S/2-shaped configuration.
    #[arg(long, default_value_t = 4)]
    s2_frames: usize,
    /// Skip the PyTorch comparison.
    #[arg(long)]
    no_torch: bool,
    /// Device of the Rust side: `cpu`, `wgpu`, `cuda` or `cuda:N` (CUDA needs a build with
    /// `--features cuda`). On CUDA the PyTorch side runs on the same GPU; otherwise on the CPU.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Compute dtype of the forward, f32 master weights either way: `f32` or `bf16` (PyTorch:
    /// autocast). Default f32; with `--xl` both unless given.
    #[arg(long, value_enum)]
    precision: Option<Precision>,
    /// Gradient checkpointing (burn's; PyTorch: `torch.utils.checkpoint` around each block);
    /// `--checkpointing=false` pins it off. Default off; with `--xl` both unless given.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    checkpointing: Option<bool>,
    /// Latte-XL/2 on 16 frames of 32×32 latents (16×256² videos) instead of the two CPU-sized
    /// cases: the GPU benchmark, beside Open-Sora's published figure.
    #[arg(long)]
    xl: bool,
    /// Clips per step of the `--xl` case (default 4).
    #[arg(long, requires = "xl")]
    batch: Option<usize>,
    /// Threads of the latents loader whose clips/s the bench reports beside each shape's step
    /// rate (the train stage's `loader_threads`).
    #[arg(long, default_value_t = 4)]
    loader_threads: usize,
    /// Internal: time only the Rust side of case N in this process and print its ROW line.
    #[arg(long, hide = true)]
    case: Option<usize>,
    /// Internal (with `--case`, off the CPU): after the timing, write the forward parity inputs
    /// for the PyTorch check into DIR from this device and precision.
    #[arg(long, hide = true, requires = "case")]
    parity: Option<PathBuf>,
    /// Internal: train two steps of the small config on the CPU and on `--device` from the same
    /// weights and batches; fail when loss or gradient norm differ beyond rounding.
    #[arg(long, hide = true)]
    compare_step: bool,
}

/// The benchmarked configurations: two CPU-sized ones, or Latte-XL/2 with `--xl`, each in
/// every precision and checkpointing setting asked for.
fn cases(args: &Args) -> Result<Vec<BenchCase>> {
    let s2 = LatteConfig::preset("Latte-S/2")?;
    let shapes = if args.xl {
        let xl = LatteConfig::preset("Latte-XL/2")?;
        let b = args.batch.unwrap_or(4);
        if b == 0 {
            bail!("--batch 0: a step needs at least one clip");
        }
        // The forward check runs a 2-block slice: every shape of the network, without a
        // 2.7 GB weights file for the PyTorch side to read.
        vec![(
            format!("Latte-XL/2 (16 frames of 32×32 latents, batch {b})"),
            LatteConfig { num_frames: 16, input_size: 32, ..xl },
            b,
            Some(2),
        )]
    } else {
        let s2_frames = args.s2_frames;
        vec![
            (
                "small (D 192, depth 6, 8 frames of 8×8 latents, batch 4)".to_string(),
                LatteConfig { input_size: 8, num_frames: 8, depth: 6, hidden_size: 192, num_heads: 3, ..s2.clone() },
                4,
                None,
            ),
            (format!("Latte-S/2 ({s2_frames} frames of 32×32 latents, batch 1)"), LatteConfig { num_frames: s2_frames, ..s2 }, 1, None),
        ]
    };
    let precisions = match args.precision {
        Some(p) => vec![p],
        // bf16 first: the figure to put beside Open-Sora's, kept should a time limit cut the run
        None if args.xl => vec![Precision::Bf16, Precision::F32],
        None => vec![Precision::F32],
    };
    let checkpointing = match args.checkpointing {
        Some(c) => vec![c],
        None if args.xl => vec![false, true],
        None => vec![false],
    };
    let mut out = Vec::new();
    for (name, model, batch_size, check_depth) in shapes {
        for &p in &precisions {
            for &c in &checkpointing {
                // the default cases keep their names
                let mut tags = Vec::new();
                if args.xl || p != Precision::F32 {
                    tags.push(p.as_str());
                }
                if args.xl || c {
                    tags.push(if c { "checkpointing" } else { "no checkpointing" });
                }
                let name = if tags.is_empty() { name.clone() } else { format!("{name}, {}", tags.join(", ")) };
                out.push(BenchCase { name, model: model.clone(), batch_size, dtype: p.dtype(), checkpointing: c, check_depth });
            }
        }
    }
    Ok(out)
}

pub fn run(args: Args) -> Result<()> {
    // rayon reads this when its global pool starts, i.e. at the first parallel op; children
    // inherit it.
    std::env::set_var("RAYON_NUM_THREADS", args.threads.to_string());
    let spec = DeviceSpec::parse(&args.device).map_err(|e| anyhow!("--device: {e}"))?;
    if args.compare_step {
        return compare_step(&args, spec.kind);
    }
    if args.iters == 0 {
        bail!("--iters 0: the bench times at least one step; use --iters 1 or more");
    }
    let cases = cases(&args)?;
    if let Some(i) = args.case {
        let case = cases.get(i).ok_or_else(|| anyhow!("--case {i}: there are {} cases", cases.len()))?;
        let device = device_from_name(&args.device)?;
        check_dtype(&device, &args.device, case.dtype)?;
        let dir = tempfile::tempdir().context("creating a temporary folder for the bench's checkpoints")?;
        // as the engine runs the train stage: inside a pool, the calling thread one of its workers
        let pool = rayon::ThreadPoolBuilder::new().num_threads(args.threads).build()?;
        let row = pool
            .install(|| bench_train(case, &device, args.warmup, args.iters, dir.path()))
            .map_err(|e| anyhow!("bench train, {}: {e:#}", case.name))?;
        println!(
            "ROW params={} step_ms={} step_min_ms={} gflop={} peak_mib={} peak_dev_mib={}",
            row.params,
            row.step_ms,
            row.step_min_ms,
            row.gflop_per_step,
            row.peak_rss_mib,
            row.peak_device_mib.unwrap_or(f64::NAN)
        );
        if let Some(parity) = &args.parity {
            let (cfg, batch) = check_shape(case);
            pool.install(|| write_parity_inputs(&cfg, batch, parity, &device, case.dtype))
                .map_err(|e| anyhow!("bench train, {}: writing the forward parity inputs: {e:#}", case.name))?;
        }
        return Ok(());
    }

    let on_cpu = spec.kind == DeviceKind::Cpu;
    // PyTorch has no wgpu device: off CUDA it runs on the CPU.
    let torch_device = match (spec.kind, spec.ordinals.as_deref()) {
        (DeviceKind::Cuda, Some([n])) => format!("cuda:{n}"),
        (DeviceKind::Cuda, None) => "cuda".to_string(),
        (DeviceKind::Cuda, Some(_)) => bail!("--device {}: the bench runs on one GPU; write e.g. `cuda:0`", args.device),
        _ => "cpu".to_string(),
    };
    // Off the default CPU run, a case that fails (a GPU out of memory) is reported and the
    // others still run: each is a figure of its own.
    let keep_going = args.xl || !on_cpu;
    let python = std::env::var("LATTE_PYTHON").unwrap_or_else(|_| "python3".to_string());
    let has_torch = !args.no_torch && Command::new(&python).args(["-c", "import torch"]).output().is_ok_and(|o| o.status.success());
    if !args.no_torch && !has_torch {
        println!(
            "PyTorch: `{python} -c 'import torch'` failed; timing the Rust side only, no ratio. To compare, install a CPU \
             build outside the repo and point LATTE_PYTHON at it:\n  python3 -m venv /opt/torch-venv && \
             /opt/torch-venv/bin/pip install numpy && \
             /opt/torch-venv/bin/pip install torch --index-url https://download.pytorch.org/whl/cpu\n  \
             LATTE_PYTHON=/opt/torch-venv/bin/python cargo xtask bench train"
        );
    }
    if has_torch {
        println!(
            "Each case: Rust (child process) then PyTorch ({python}, {}), {} threads, {} warm-up + {} timed steps; \
             step_ms = median step, ratio = rust / torch (below 1: Rust faster), GFLOP/s from the same FLOP count",
            script_path()?.display(),
            args.threads,
            args.warmup,
            args.iters
        );
    }
    if !on_cpu && !has_torch {
        println!("Rust on {}; clips/s = batch / median step; peak device memory: what burn's pools reserved", args.device);
    }
    if !on_cpu && has_torch {
        println!(
            "Rust on {}, PyTorch on {torch_device}{}; clips/s = batch / median step; peak GPU memory: what each allocator \
             reserved (burn's pools, torch's max_memory_reserved)",
            args.device,
            if torch_device == "cpu" {
                " (it has no wgpu device: the ratio compares two devices)"
            } else {
                " (TF32 matmuls; bf16: autocast)"
            }
        );
    }
    let mut failures = Vec::new();
    let mut failed = Vec::new();
    let mut summary = Vec::new();
    if has_torch {
        if let Err(e) = selftest(&python) {
            println!("  MISMATCH: {e:#}");
            failures.push(format!("{e:#}"));
        }
    }
    let mut loader_rates: Vec<(String, f64)> = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        // once per shape: the loader's rate depends on the clip shape, not on precision
        let shape = format!(
            "{}×{}×{}×{}, batch {}",
            case.model.num_frames, case.model.in_channels, case.model.input_size, case.model.input_size, case.batch_size
        );
        if !loader_rates.iter().any(|(s, _)| *s == shape) {
            let rate = loader_rate(case, args.loader_threads).with_context(|| format!("bench train, {}: timing the loader", case.name))?;
            println!(
                "loader {shape}: {rate:.1} clips/s from a Zarr latents store on {} thread(s) (sampling, reads, reparameterised \
                 draw, scaling; no training): what the loader can feed the device",
                args.loader_threads
            );
            loader_rates.push((shape, rate));
        }
        let parity = tempfile::tempdir().context("creating a temporary folder for the parity check")?;
        let rust_parity = (!on_cpu && has_torch).then(|| parity.path());
        let (rust, rust_others) = match rust_row(i, case, &args, rust_parity) {
            Ok(r) => r,
            Err(e) if keep_going => {
                println!("RESULT-FAILED {}: {e:#}", case.name);
                failed.push(case.name.clone());
                summary.push(format!("{:<62} rust failed (see RESULT-FAILED above)", case.name));
                continue;
            }
            Err(e) => return Err(e),
        };
        let rust_gflops = rust.gflop_per_step / (rust.step_ms * 1e-3);
        let rust_clips = case.batch_size as f64 / (rust.step_ms * 1e-3);
        println!(
            "rust  {}: params={} step_median_ms={:.1} GFLOP/step={:.2} GFLOP/s={:.1} peak_rss_MiB={:.0} others_cores={:.2} \
             clips/s={:.3} peak_device_MiB={}",
            case.name,
            rust.params,
            rust.step_ms,
            rust.gflop_per_step,
            rust_gflops,
            rust.peak_rss_mib,
            rust_others,
            rust_clips,
            mib(rust.peak_device_mib)
        );
        if !has_torch {
            summary.push(format!("{:<62} rust {rust_clips:>7.3} clips/s, {:>6} MiB", case.name, mib(rust.peak_device_mib)));
            continue;
        }
        let torch = match torch_row(&python, case, &args, &torch_device, parity.path(), on_cpu) {
            Ok(t) => t,
            Err(e) if keep_going => {
                println!("RESULT-FAILED {}: PyTorch side: {e:#}", case.name);
                failed.push(format!("{} (PyTorch)", case.name));
                summary.push(format!(
                    "{:<62} rust {rust_clips:>7.3} clips/s, {:>6} MiB; torch failed (see RESULT-FAILED above)",
                    case.name,
                    mib(rust.peak_device_mib)
                ));
                continue;
            }
            Err(e) => return Err(e),
        };
        let mut problems = Vec::new();
        println!("params {}: rust={} torch={} (torch trainable {})", case.name, rust.params, torch.params, torch.trainable);
        if rust.params != torch.params {
            problems.push(format!("parameter counts differ: rust {} vs torch {}", rust.params, torch.params));
        }
        if (torch.gflop_per_step - rust.gflop_per_step).abs() > 1e-3 * rust.gflop_per_step {
            problems.push(format!("FLOP counts differ: rust {:.4} vs torch {:.4} GFLOP/step", rust.gflop_per_step, torch.gflop_per_step));
        }
        let tol = if case.dtype.is_some() { BF16_FORWARD_REL_TOL } else { FORWARD_REL_TOL };
        match &torch.check {
            Some(c) => {
                let slice = match case.check_depth {
                    Some(d) => format!(", {d}-block slice, batch 1"),
                    None => String::new(),
                };
                let against = if case.dtype.is_some() || !on_cpu {
                    format!(" [rust {} on {}{slice} vs torch f32; tolerance {tol:.0e} relative]", precision_name(case.dtype), args.device)
                } else {
                    String::new()
                };
                println!(
                    "parity {}: forward max|rust - torch| = {:.2e} (max |y| {:.2e}); frozen tables: pos_embed {:.1e}, temp_embed {:.1e}{against}",
                    case.name, c.forward, c.out_max, c.pos, c.temp
                );
                if !(c.forward <= tol * c.out_max.max(1e-3)) || !(c.pos <= 1e-5) || !(c.temp <= 1e-5) {
                    problems.push(format!(
                        "the PyTorch model does not compute what the Rust model computes (forward max diff {:.2e}, pos {:.1e}, temp {:.1e})",
                        c.forward, c.pos, c.temp
                    ));
                }
            }
            None => problems.push(format!("the PyTorch forward check gave no CHECK line: {}", torch.check_error)),
        }
        let tag = if problems.is_empty() { "RESULT" } else { "RESULT-MISMATCH (not the same network; ratio meaningless)" };
        if on_cpu {
            println!(
                "{tag} {}: rust step_ms={:.1} torch step_ms={:.1} ratio={:.2} rust GFLOP/s={:.1} torch GFLOP/s={:.1} \
                 rust peak_MiB={:.0} torch peak_MiB={:.0} | fastest step: rust {:.1} torch {:.1} ratio {:.2} | \
                 torch after import {:.0} MiB, threads={} torch_omp={} others_cores: rust {:.2} torch {:.2}",
                case.name,
                rust.step_ms,
                torch.step_ms,
                rust.step_ms / torch.step_ms,
                rust_gflops,
                rust.gflop_per_step / (torch.step_ms * 1e-3),
                rust.peak_rss_mib,
                torch.peak_mib,
                rust.step_min_ms,
                torch.step_min_ms,
                rust.step_min_ms / torch.step_min_ms,
                torch.base_mib,
                args.threads,
                omp_setting(),
                rust_others,
                torch.others_cores
            );
        } else {
            println!(
                "{tag} {}: rust clips/s={:.3} torch clips/s={:.3} ratio={:.2} | step_ms rust {:.1} torch {:.1} | \
                 TFLOP/s rust {:.2} torch {:.2} | peak GPU MiB rust {} torch {} (torch allocated {}) | peak RSS MiB \
                 rust {:.0} torch {:.0} | fastest step: rust {:.1} torch {:.1} ratio {:.2}",
                case.name,
                rust_clips,
                torch.clips_per_s,
                rust.step_ms / torch.step_ms,
                rust.step_ms,
                torch.step_ms,
                rust_gflops * 1e-3,
                rust.gflop_per_step / torch.step_ms,
                mib(rust.peak_device_mib),
                mib(Some(torch.peak_gpu_mib)),
                mib(Some(torch.peak_gpu_alloc_mib)),
                rust.peak_rss_mib,
                torch.peak_mib,
                rust.step_min_ms,
                torch.step_min_ms,
                rust.step_min_ms / torch.step_min_ms
            );
        }
        summary.push(format!(
            "{:<62} rust {rust_clips:>7.3} clips/s, {:>6} MiB | torch {:>7.3} clips/s, {:>6} MiB | ratio {:.2}{}",
            case.name,
            mib(rust.peak_device_mib),
            torch.clips_per_s,
            mib(Some(torch.peak_gpu_mib)),
            rust.step_ms / torch.step_ms,
            if problems.is_empty() { "" } else { " MISMATCH" }
        ));
        let others = rust_others.max(torch.others_cores);
        if others > 0.25 {
            println!(
                "  WARNING: other processes kept {others:.1} cores busy during this case: these are not idle-machine \
                 timings and the ratio is unreliable (PyTorch's spinning OpenMP threads suffer most); rerun when \
                 the machine is quiet, or with OMP_WAIT_POLICY=PASSIVE for numbers that hold up under load but cost \
                 PyTorch up to ~60% idle"
            );
        }
        for p in problems {
            println!("  MISMATCH: {p}");
            failures.push(format!("{}: {p}", case.name));
        }
    }
    if args.xl {
        println!(
            "summary on {} (clips/s = batch / median step; MiB = peak GPU memory reserved; ratio = rust / torch step time):",
            args.device
        );
        for line in &summary {
            println!("  {line}");
        }
        for (shape, rate) in &loader_rates {
            println!("  loader ({shape}, {} threads): {rate:.1} clips/s", args.loader_threads);
        }
        println!("anchor: {OPEN_SORA_ANCHOR}");
    }
    if !failures.is_empty() {
        bail!("the Rust and PyTorch sides did not time the same network:\n  {}", failures.join("\n  "));
    }
    if !failed.is_empty() {
        bail!(
            "{} case(s) failed (see their RESULT-FAILED lines; where one ran out of GPU memory, pin `--checkpointing` or lower `--batch`):\n  {}",
            failed.len(),
            failed.join("\n  ")
        );
    }
    Ok(())
}

/// A reduced precision the backend lacks would panic in a worker thread at the first kernel.
fn check_dtype(device: &Device, name: &str, dtype: Option<FloatDType>) -> Result<()> {
    match dtype {
        Some(d) if !device.supports_dtype(d) => {
            bail!("--device {name} has no {d:?} arithmetic (WGSL has no bf16): use `--precision f32` there, or a CUDA GPU")
        }
        _ => Ok(()),
    }
}

fn precision_name(dtype: Option<FloatDType>) -> &'static str {
    if dtype.is_some() {
        "bf16"
    } else {
        "f32"
    }
}

/// A memory figure in MiB, `n/a` where the backend does not report one.
fn mib(v: Option<f64>) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{v:.0}"),
        _ => "n/a".to_string(),
    }
}

/// The flags that pick the cases, for a child process to rebuild the same list.
fn case_flags(args: &Args) -> Vec<String> {
    let mut v = vec![
        "--iters".to_string(),
        args.iters.to_string(),
        "--warmup".into(),
        args.warmup.to_string(),
        "--threads".into(),
        args.threads.to_string(),
        "--s2-frames".into(),
        args.s2_frames.to_string(),
        "--device".into(),
        args.device.clone(),
    ];
    if let Some(p) = args.precision {
        v.extend(["--precision".into(), p.as_str().into()]);
    }
    if let Some(c) = args.checkpointing {
        v.push(format!("--checkpointing={c}"));
    }
    if args.xl {
        v.push("--xl".into());
    }
    if let Some(b) = args.batch {
        v.extend(["--batch".into(), b.to_string()]);
    }
    v
}

/// Runs case `i` in a child process of this binary and parses its ROW line; with `parity`, the
/// child also writes the forward parity inputs there from its device.
fn rust_row(i: usize, case: &BenchCase, args: &Args, parity: Option<&Path>) -> Result<(BenchRow, f64)> {
    let exe = std::env::current_exe().context("locating the xtask binary to run the Rust case in a child process")?;
    let clock = CpuClock::now();
    let mut cmd = Command::new(&exe);
    cmd.args(["bench", "train", "--case", &i.to_string()]).args(case_flags(args));
    if let Some(dir) = parity {
        cmd.arg("--parity").arg(dir);
    }
    let out = cmd.output().with_context(|| format!("running {} bench train --case {i}", exe.display()))?;
    let others = clock.others_cores();
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!("the Rust case `{}` failed:\n{text}{}", case.name, String::from_utf8_lossy(&out.stderr));
    }
    let line = text
        .lines()
        .find(|l| l.starts_with("ROW "))
        .ok_or_else(|| anyhow!("the Rust case `{}` printed no ROW line:\n{text}", case.name))?;
    let row = BenchRow {
        params: field(line, "params")? as usize,
        step_ms: field(line, "step_ms")?,
        step_min_ms: field(line, "step_min_ms")?,
        gflop_per_step: field(line, "gflop")?,
        peak_rss_mib: field(line, "peak_mib")?,
        peak_device_mib: Some(field(line, "peak_dev_mib")?).filter(|v| v.is_finite()),
    };
    Ok((row, others))
}

/// How the torch side's OpenMP (libgomp) threads wait, for the RESULT line. The library
/// default is kept: its threads spin at barriers and split work statically, which is fastest
/// on an idle machine but several times slower when another process holds a core (measured
/// here with 2 threads beside one busy process: small case 6-7 s instead of ~105 ms, Latte-S/2
/// 10-15 s instead of ~1.2 s). `OMP_WAIT_POLICY=PASSIVE` in the environment (passed through)
/// holds up under such load (180 ms, 2.1-2.5 s) but costs up to ~60% idle (small case 165-185
/// ms), so it would flatter the Rust side; hence the `others_cores` figures and the warning.
fn omp_setting() -> String {
    let set: Vec<String> =
        ["OMP_WAIT_POLICY", "GOMP_SPINCOUNT"].iter().filter_map(|k| std::env::var(k).ok().map(|v| format!("{k}={v}"))).collect();
    if set.is_empty() {
        "default".into()
    } else {
        set.join(",")
    }
}

/// The PyTorch script against the reference's own tensors in `shared/fixtures` (model forward
/// and hybrid loss terms), so that the PyTorch side is the reference, not just a copy of ours.
fn selftest(python: &str) -> Result<()> {
    let fixtures = crate::workspace::shared()?.join("fixtures");
    if !fixtures.join("latte-v1-uncond").is_dir() {
        println!("reference check: {} not found; the PyTorch script is not checked against the reference's tensors", fixtures.display());
        return Ok(());
    }
    let script = script_path()?;
    let out = Command::new(python)
        .arg(&script)
        .arg("--selftest")
        .arg(&fixtures)
        .output()
        .with_context(|| format!("running {python} {} --selftest", script.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.starts_with("SELFTEST ")).ok_or_else(|| {
        anyhow!("the PyTorch script's --selftest printed no SELFTEST line:\n{text}{}", String::from_utf8_lossy(&out.stderr))
    })?;
    let (forward, out_max) = (field(line, "forward_max_abs")?, field(line, "out_max_abs")?);
    let (tables, loss) = (field(line, "tables_max_abs")?, field(line, "loss_max_abs")?);
    println!(
        "reference check (PyTorch script vs shared/fixtures): forward max diff {forward:.2e} (max |y| {out_max:.2e}), \
         sin-cos tables {tables:.1e}, loss terms {loss:.1e}"
    );
    if !(forward <= FORWARD_REL_TOL * out_max) || !(tables <= 1e-5) || !(loss <= 1e-4) {
        bail!("the PyTorch script does not reproduce the reference's fixtures: {line}");
    }
    Ok(())
}

/// The reference PyTorch step of the checkout the command runs in (see `workspace`).
fn script_path() -> Result<PathBuf> {
    let script = crate::workspace::root()?.join("xtask/bench/latte_train_step.py");
    if !script.is_file() {
        bail!("{} is missing: the PyTorch side of `bench train` needs it (restore it from git, or pass --no-torch)", script.display());
    }
    Ok(script)
}

/// Machine-wide busy CPU time (`/proc/stat`) against the CPU time of this process's waited-for
/// children (`getrusage`) over a child's run: the difference is what other processes took,
/// which moves every timing on a shared machine.
struct CpuClock {
    wall: std::time::Instant,
    machine: Option<f64>,
    children: f64,
}

impl CpuClock {
    fn now() -> Self {
        CpuClock { wall: std::time::Instant::now(), machine: machine_busy_secs(), children: children_cpu_secs() }
    }

    /// Average number of cores busy with other processes since `now` (NaN where unknown).
    fn others_cores(&self) -> f64 {
        let (Some(m0), Some(m1)) = (self.machine, machine_busy_secs()) else { return f64::NAN };
        let others = (m1 - m0) - (children_cpu_secs() - self.children);
        (others / self.wall.elapsed().as_secs_f64()).max(0.0)
    }
}

fn machine_busy_secs() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let ticks: Vec<f64> = stat.lines().next()?.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal: everything but idle and iowait
    let busy: f64 = ticks.iter().take(8).enumerate().filter(|(i, _)| *i != 3 && *i != 4).map(|(_, v)| v).sum();
    // SAFETY: sysconf only reads a constant of the running system.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (hz > 0.0).then_some(busy / hz)
}

fn children_cpu_secs() -> f64 {
    // SAFETY: getrusage fills the zeroed struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) } != 0 {
        return 0.0;
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    secs(ru.ru_utime) + secs(ru.ru_stime)
}

fn field(line: &str, key: &str) -> Result<f64> {
    let prefix = format!("{key}=");
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(prefix.as_str()))
        .ok_or_else(|| anyhow!("no `{key}=` in `{line}`"))?
        .parse::<f64>()
        .with_context(|| format!("`{key}=` in `{line}` is not a number"))
}

struct TorchRow {
    params: usize,
    trainable: usize,
    step_ms: f64,
    step_min_ms: f64,
    gflop_per_step: f64,
    peak_mib: f64,
    base_mib: f64,
    clips_per_s: f64,
    /// Peak GPU memory reserved / allocated by torch's caching allocator (NaN on the CPU).
    peak_gpu_mib: f64,
    peak_gpu_alloc_mib: f64,
    /// Cores other processes kept busy on average while the script ran.
    others_cores: f64,
    check: Option<Check>,
    check_error: String,
}

struct Check {
    forward: f64,
    out_max: f64,
    pos: f64,
    temp: f64,
}

/// Runs the PyTorch script on the same config, thread count, precision and checkpointing on
/// `device`, and parses its RESULT and CHECK lines. The forward check reads its inputs from
/// `dir`: on the CPU they are written here (flex, the case's precision), elsewhere the Rust
/// child wrote them.
fn torch_row(python: &str, case: &BenchCase, args: &Args, device: &str, dir: &Path, write_inputs: bool) -> Result<TorchRow> {
    let m = &case.model;
    if write_inputs {
        write_parity_inputs(m, case.batch_size, dir, &Device::flex(), case.dtype)?;
    }
    let config = serde_json::json!({
        "hidden_size": m.hidden_size, "depth": m.depth, "num_heads": m.num_heads, "patch_size": m.patch_size,
        "num_frames": m.num_frames, "input_size": m.input_size, "in_channels": m.in_channels,
        "batch_size": case.batch_size, "threads": args.threads, "iters": args.iters, "warmup": args.warmup,
        "device": device, "precision": precision_name(case.dtype), "checkpointing": case.checkpointing,
    });
    let script = script_path()?;
    let threads = args.threads.to_string();
    let clock = CpuClock::now();
    let out = Command::new(python)
        .arg(&script)
        .args(["--config", &config.to_string(), "--check"])
        .arg(dir)
        .env("OMP_NUM_THREADS", &threads)
        .env("MKL_NUM_THREADS", &threads)
        .output()
        .with_context(|| format!("running {python} {}", script.display()))?;
    let others_cores = clock.others_cores();
    let text = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = text
        .lines()
        .find(|l| l.starts_with("RESULT torch "))
        .ok_or_else(|| anyhow!("{python} {} gave no RESULT line (exit {}):\n{text}{stderr}", script.display(), out.status))?;
    let check_line = text.lines().find(|l| l.starts_with("CHECK "));
    let check = match check_line {
        Some(l) => Some(Check {
            forward: field(l, "forward_max_abs")?,
            out_max: field(l, "out_max_abs")?,
            pos: field(l, "pos_embed_max_abs")?,
            temp: field(l, "temp_embed_max_abs")?,
        }),
        None => None,
    };
    let check_error = text.lines().find(|l| l.starts_with("CHECK-ERROR")).map_or_else(|| stderr.trim().to_string(), str::to_string);
    Ok(TorchRow {
        params: field(line, "params")? as usize,
        trainable: field(line, "trainable")? as usize,
        step_ms: field(line, "step_median_ms")?,
        step_min_ms: field(line, "step_min_ms")?,
        gflop_per_step: field(line, "gflop_per_step")?,
        peak_mib: field(line, "peak_rss_mib")?,
        base_mib: field(line, "base_rss_mib")?,
        clips_per_s: field(line, "clips_per_s")?,
        peak_gpu_mib: field(line, "peak_gpu_mib")?,
        peak_gpu_alloc_mib: field(line, "peak_gpu_alloc_mib")?,
        others_cores,
        check,
        check_error,
    })
}

/// Replaces every trainable tensor with seeded uniform values of standard deviation
/// `0.5/sqrt(fan_in)`, so that every weight (adaLN gates and the zero-initialised final layer
/// included) shapes the output. The frozen sin-cos tables (the only 3-D parameters) stay, so
/// the PyTorch side can compare its own tables with them.
struct Perturb(ChaCha8Rng);

impl ModuleMapper for Perturb {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        if D == 3 {
            return param;
        }
        let rng = &mut self.0;
        param.map(|t| {
            let dims = t.dims();
            // burn Linear weights are [in, out]; the conv weight is [out, in, p, p]
            let fan_in = match D {
                2 => dims[0],
                4 => dims[1] * dims[2] * dims[3],
                _ => 2500,
            };
            let a = 0.5 * (3.0 / fan_in as f32).sqrt();
            let n: usize = dims.iter().product();
            let v: Vec<f32> = (0..n).map(|_| a * (2.0 * rng.random::<f32>() - 1.0)).collect();
            // on an autodiff device (`--compare-step`) the new value must stay trainable
            Tensor::from_data(TensorData::new(v, dims), &t.device()).set_require_grad(t.is_require_grad())
        })
    }
}

/// The model and batch of `case`'s forward parity check: the whole case, or a slice of
/// `check_depth` blocks on one clip.
fn check_shape(case: &BenchCase) -> (LatteConfig, usize) {
    match case.check_depth {
        Some(depth) => (LatteConfig { depth, ..case.model.clone() }, 1),
        None => (case.model.clone(), case.batch_size),
    }
}

/// The Rust model (perturbed) under the reference's key names, one input batch, its timesteps
/// and the Rust output computed on `device` in `dtype`, for the PyTorch script's `--check`.
fn write_parity_inputs(cfg: &LatteConfig, batch: usize, dir: &Path, device: &Device, dtype: Option<FloatDType>) -> Result<()> {
    let device = device.clone();
    let model = Latte::new(cfg, &device, 0)?.map(&mut Perturb(ChaCha8Rng::seed_from_u64(7))).with_compute_dtype(dtype);
    model.save_safetensors(&dir.join("weights.safetensors"))?;
    let shape = [batch, cfg.num_frames, cfg.in_channels, cfg.input_size, cfg.input_size];
    let x: Tensor<5> = ParamFactory::new(1, &device).float("x", shape, Init::Normal { std: 1.0 }, false).val();
    let t: Vec<i64> = (0..batch).map(|i| (999 * (i + 1) / batch) as i64).collect();
    let t_tensor = Tensor::<1, Int>::from_data(TensorData::new(t.clone(), [batch]), &device);
    let y = model.forward(x.clone(), t_tensor, None, 0); // (B, F, 2C, H, W)
    let out_shape = y.dims();
    let raw = |t: Tensor<5>, name: &str| -> Result<()> {
        let v = t.into_data().try_into_vec::<f32>().map_err(|e| anyhow!("reading {name}: {e:?}"))?;
        let bytes: Vec<u8> = v.iter().flat_map(|f| f.to_le_bytes()).collect();
        std::fs::write(dir.join(name), bytes).with_context(|| format!("writing {}", dir.join(name).display()))
    };
    raw(x, "x.f32")?;
    raw(y, "out.f32")?;
    let meta = serde_json::json!({ "x_shape": shape, "out_shape": out_shape, "t": t, "depth": cfg.depth });
    std::fs::write(dir.join("meta.json"), meta.to_string()).context("writing the parity meta.json")?;
    Ok(())
}

/// One configuration timed by [`bench_train`].
pub struct BenchCase {
    pub name: String,
    pub model: LatteConfig,
    pub batch_size: usize,
    /// The forward's compute dtype (`Latte::with_compute_dtype`; `None`: f32).
    pub dtype: Option<FloatDType>,
    /// burn's gradient checkpointing on the autodiff device.
    pub checkpointing: bool,
    /// Blocks of the model the forward parity check runs (`None`: all of them): a 2-block
    /// slice of Latte-XL/2 has every shape of the network in 1/14 of its weights.
    pub check_depth: Option<usize>,
}

/// What [`bench_train`] measured.
pub struct BenchRow {
    pub params: usize,
    /// Median wall time of a full optimizer step (data, forward, loss, backward, AdamW, EMA).
    pub step_ms: f64,
    /// Fastest timed step: the least disturbed by other processes on a shared machine.
    pub step_min_ms: f64,
    /// Forward + backward FLOPs of one step (3 × forward, as usual).
    pub gflop_per_step: f64,
    /// Peak resident memory of the process while this case ran (MiB).
    pub peak_rss_mib: f64,
    /// Peak of the device memory the backend's pools reserved, sampled after every step (MiB);
    /// `None` where the backend reports none (flex).
    pub peak_device_mib: Option<f64>,
}

fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?.trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kb / 1024.0)
}

/// Random in-memory latents for `m`'s clips: deterministic filler, since the cost does not
/// depend on the values.
fn bench_clips(m: &LatteConfig) -> Result<LatentClips> {
    let (c, side, f) = (m.in_channels, m.input_size, m.num_frames);
    let counts = vec![2 * f; 4];
    let n = 2 * counts.iter().sum::<usize>() * c * side * side;
    let mean: Vec<f32> = (0..n).map(|i| ((i * 2654435761) % 1000) as f32 / 500.0 - 1.0).collect();
    let logvar = vec![-4.0f32; n];
    let window = Box::new(move |total: usize, _: &mut rand_chacha::ChaCha8Rng| Ok((0..f.min(total)).collect()));
    Ok(LatentClips::in_memory(mean, logvar, counts, [c, side, side], window)?)
}

/// Clips per second the training loader delivers for `case`'s clip shape and batch on
/// `threads` threads, read from a Zarr latents store (f32, the `latents` stage's layout) in a
/// temporary folder: 8 videos of twice the clip length, random windows.
fn loader_rate(case: &BenchCase, threads: usize) -> Result<f64> {
    use latte_store::{ArraySpec, GroupInfo, Posterior, RaggedReader, RaggedWriter, WindowRule};
    let m = &case.model;
    let (c, side, f) = (m.in_channels, m.input_size, m.num_frames);
    let (videos, frames) = (8usize, 2 * f);
    let dir = tempfile::tempdir().context("creating a temporary folder for the loader's store")?;
    let path = dir.path().join("latents.zarr");
    let frame_shape = [c as u64, side as u64, side as u64];
    let mut writer = RaggedWriter::create(&path)?;
    for name in ["mean", "logvar"] {
        writer.add_array::<f32>(&ArraySpec::new(name, &[2], &frame_shape))?;
    }
    let len = 2 * frames * c * side * side;
    for v in 0..videos {
        let mean: Vec<f32> = (0..len).map(|i| ((i * 2654435761 + v) % 1000) as f32 / 500.0 - 1.0).collect();
        writer.append::<f32>("mean", &mean)?;
        writer.append::<f32>("logvar", &vec![-4.0f32; len])?;
        writer.end_video(&format!("v{v}"), None)?;
    }
    let info = GroupInfo { dataset: "bench".into(), num_classes: None, window: WindowRule::Stride, flip: true, extra: Default::default() };
    writer.finish(info)?;
    let posterior = Posterior::open(&RaggedReader::open(&path)?)?;
    let read = Box::new(move |clip: usize, orient: usize, idx: &[usize]| {
        let frames: Vec<u64> = idx.iter().map(|&i| i as u64).collect();
        posterior.read_in_video(orient as u64, clip, &frames).map_err(Into::into)
    });
    let window = Box::new(move |total: usize, rng: &mut rand_chacha::ChaCha8Rng| {
        let start = rng.random_range(0..=total - f);
        Ok((start..start + f).collect())
    });
    let clips = LatentClips {
        counts: vec![frames; videos],
        labels: None,
        num_classes: None,
        frame_shape: [c, side, side],
        flip: true,
        read,
        window,
    };
    let cfg = TrainConfig { batch_size: case.batch_size, num_frames: f, loader_threads: threads.max(1), ..TrainConfig::default() };
    Ok(latte_train::loader_clips_per_second(clips, &cfg, 32)?)
}

/// Times `warmup + iters` real training steps of `case` (the `latte-train` loop on random
/// in-memory latents) on `device` (a plain device: autodiff, checkpointing and the compute
/// dtype come from `case`) and returns the median of the last `iters`. Checkpoints go under
/// `dir`.
pub fn bench_train(case: &BenchCase, device: &Device, warmup: usize, iters: usize, dir: &Path) -> anyhow::Result<BenchRow> {
    let m = &case.model;
    let clips = bench_clips(m)?;
    let steps = (warmup + iters) as u64;
    let cfg =
        TrainConfig { steps, batch_size: case.batch_size, num_frames: m.num_frames, checkpoint_every: steps, ..TrainConfig::default() };
    let model = Latte::new(m, &autodiff_with(device, case.checkpointing), 0)?.with_compute_dtype(case.dtype);
    let params = model.num_params();
    // Reset the peak-RSS counter so the figure is this case's (Linux; ignored elsewhere).
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let mut secs = Vec::new();
    let mut peak_bytes: Option<u64> = None;
    let forward = |m: &Latte, inp: ModelInput| m.forward_joint_flat(inp.x_t, inp.t, inp.y, inp.y_image, inp.image_frames);
    let _ = std::fs::remove_dir_all(dir);
    // Off the CPU the loop's final checkpoint (weights, EMA and AdamW moments: 16 bytes a
    // parameter, 11 GB for Latte-XL/2, copied off the device and fsynced) would take longer
    // than the timed steps and measures nothing: its folder is put under a file, so the save
    // fails at once after the last step, and that one error is expected.
    let skip_checkpoint = *device != Device::flex();
    let paths = if skip_checkpoint {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let blocker = dir.join("no-checkpoints");
        std::fs::write(&blocker, b"").with_context(|| format!("writing {}", blocker.display()))?;
        RunPaths { checkpoints: blocker.join("checkpoints"), ..RunPaths::in_dir(dir) }
    } else {
        RunPaths::in_dir(dir)
    };
    let trained = train(model, forward, clips, &cfg, &paths, &serde_json::Value::Null, |l| {
        secs.push(l.secs);
        if let Some(usage) = device.memory_pool_usage() {
            peak_bytes = Some(peak_bytes.unwrap_or(0).max(usage.bytes_reserved));
        }
    });
    match trained {
        Ok(_) => {}
        Err(_) if skip_checkpoint && secs.len() as u64 == steps => {}
        Err(e) => return Err(e.into()),
    }
    let mut timed = secs.split_off(warmup.min(secs.len()));
    timed.sort_by(f64::total_cmp);
    let step_ms = timed.get(timed.len() / 2).copied().unwrap_or(f64::NAN) * 1e3;
    let step_min_ms = timed.first().copied().unwrap_or(f64::NAN) * 1e3;
    Ok(BenchRow {
        params,
        step_ms,
        step_min_ms,
        gflop_per_step: 3.0 * latte_model::flops::forward_gflops(m) * case.batch_size as f64,
        peak_rss_mib: peak_rss_mib().unwrap_or(f64::NAN),
        peak_device_mib: peak_bytes.map(|b| b as f64 / (1024.0 * 1024.0)),
    })
}

/// On CUDA, after `--compare-step`: one gradient all-reduce through burn's collectives (NCCL),
/// the call several local GPUs make each step, over this one GPU, where the sum over one rank
/// must give back the gradients' exact bits. Prints an `NCCL-CHECK` line; a missing libnccl is
/// reported as skipped (training then sums through host memory).
fn nccl_check(device: &Device) -> Result<()> {
    if let Err(why) = latte_model::latte_nn::device::device_collectives(DeviceKind::Cuda) {
        println!("NCCL-CHECK skipped: {why}");
        return Ok(());
    }
    let values: Vec<f32> = (0..100_003).map(|i| ((i * 7919) % 2003) as f32 / 1001.0 - 1.0).collect();
    // a lone parameter is a module: its gradient is the tensor itself
    let model = Param::from_tensor(Tensor::<1>::from_data(TensorData::new(values.clone(), [values.len()]), device));
    let mut grads = latte_model::burn::optim::GradientsParams::new();
    grads.register(model.id, model.val());
    let dev = device.clone();
    let summed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        latte_train::parallel::all_reduce_grads_on_devices(&model, &grads, &[1.0], std::slice::from_ref(&dev), &dev)
    }));
    let outcome = match summed {
        Ok(Ok(g)) => {
            let back: Vec<f32> =
                g.get::<1>(model.id).map(|t| t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap_or_default()).unwrap_or_default();
            if back == values {
                Ok(())
            } else {
                Err("the one-rank sum changed the gradients".to_string())
            }
        }
        Ok(Err(e)) => Err(e.to_string()),
        Err(p) => Err(p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panicked".into())),
    };
    match outcome {
        Ok(()) => {
            println!("NCCL-CHECK ok: one all-reduce of {} gradient values on one GPU gave them back bit for bit", values.len());
            Ok(())
        }
        Err(why) => {
            println!("NCCL-CHECK FAILED: {why}");
            bail!("the NCCL gradient all-reduce failed on this GPU: {why} (several local GPUs would fail the same way; set them up with NCCL or train on one)")
        }
    }
}

/// `--compare-step`: two training steps of the small config from the same perturbed weights
/// and the same batches on the CPU (f32) and on `--device` (its precision and checkpointing);
/// the losses and gradient norms must agree to float rounding (bf16: to bf16 rounding).
fn compare_step(args: &Args, kind: DeviceKind) -> Result<()> {
    let precision = args.precision.unwrap_or(Precision::F32);
    let checkpointing = args.checkpointing.unwrap_or(false);
    let s2 = LatteConfig::preset("Latte-S/2")?;
    let m = LatteConfig { input_size: 8, num_frames: 8, depth: 6, hidden_size: 192, num_heads: 3, ..s2 };
    let (batch_size, steps) = (4, 2u64);
    let device = device_from_name(&args.device)?;
    check_dtype(&device, &args.device, precision.dtype())?;
    let pool = rayon::ThreadPoolBuilder::new().num_threads(args.threads).build()?;
    let run_on = |device: &Device, dtype: Option<FloatDType>, checkpointing: bool| -> Result<Vec<(f64, f64)>> {
        let dir = tempfile::tempdir().context("creating a temporary folder for the compared steps")?;
        let cfg = TrainConfig { steps, batch_size, num_frames: m.num_frames, checkpoint_every: steps, ..TrainConfig::default() };
        // perturbed: from the adaLN-Zero init every block is the identity and the step would
        // exercise little of the network
        let model = Latte::new(&m, &autodiff_with(device, checkpointing), 0)?
            .map(&mut Perturb(ChaCha8Rng::seed_from_u64(7)))
            .with_compute_dtype(dtype);
        let clips = bench_clips(&m)?;
        let mut logs = Vec::new();
        let forward = |m: &Latte, inp: ModelInput| m.forward_joint_flat(inp.x_t, inp.t, inp.y, inp.y_image, inp.image_frames);
        pool.install(|| {
            train(model, forward, clips, &cfg, &RunPaths::in_dir(dir.path()), &serde_json::Value::Null, |l| {
                logs.push((l.loss, l.grad_norm))
            })
        })?;
        Ok(logs)
    };
    let label = format!("{} {}{}", args.device, precision.as_str(), if checkpointing { ", checkpointing" } else { "" });
    println!(
        "compare-step: {steps} steps of the small config (D 192, depth 6, 8 frames of 8×8 latents, batch {batch_size}), cpu f32 vs {label}"
    );
    let cpu = run_on(&Device::flex(), None, false).context("the CPU's steps")?;
    let dev = run_on(&device, precision.dtype(), checkpointing).with_context(|| format!("the steps on {label}"))?;
    let tol = if precision == Precision::F32 { STEP_REL_TOL } else { BF16_STEP_REL_TOL };
    let rel = |a: f64, b: f64| (a - b).abs() / a.abs().max(1e-12);
    let (mut worst_loss, mut worst_norm) = (0.0f64, 0.0f64);
    for (i, ((cl, cn), (dl, dn))) in cpu.iter().zip(&dev).enumerate() {
        let (rl, rn) = (rel(*cl, *dl), rel(*cn, *dn));
        // NaN must fail: max would drop it
        worst_loss = if rl.is_nan() { f64::NAN } else { worst_loss.max(rl) };
        worst_norm = if rn.is_nan() { f64::NAN } else { worst_norm.max(rn) };
        println!("STEP {}: loss cpu={cl:.6} device={dl:.6} rel={rl:.2e} | grad_norm cpu={cn:.6} device={dn:.6} rel={rn:.2e}", i + 1);
    }
    let ok = cpu.len() == dev.len() && cpu.len() as u64 == steps && worst_loss <= tol && worst_norm <= tol;
    println!(
        "COMPARE-STEP {} {label}: max relative difference loss {worst_loss:.2e}, grad_norm {worst_norm:.2e} (tolerance {tol:.0e})",
        if ok { "ok" } else { "FAILED" }
    );
    if kind == DeviceKind::Cuda {
        nccl_check(&device)?;
    }
    if !ok {
        bail!(
            "a training step on {label} differs from the CPU's beyond {tol:.0e} relative: the backend computes another \
             step (rerun `bench train --compare-step --device cpu` to rule out the CPU side, then narrow it down with \
             `model forward --device {}`)",
            args.device
        );
    }
    Ok(())
}
