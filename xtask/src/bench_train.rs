//! `cargo xtask bench train`: full training steps (data, forward, hybrid loss, backward,
//! gradient norm, AdamW, EMA) of the `latte-train` loop with the real `latte-model` network on
//! burn's flex backend, for a small config like the default pipeline's and a Latte-S/2-shaped
//! one (32×32 latents, a few frames), beside the reference PyTorch model
//! (`xtask/bench/latte_train_step.py`) on the same CPU in the same run when `$LATTE_PYTHON`
//! (default `python3`) imports torch. Prints the median step time, the ratio, the achieved
//! GFLOP/s and the peak memory of each side.
//!
//! Each Rust case runs in a child process of this binary (the hidden `--case` flag) and each
//! PyTorch case in its own python process, so every peak-memory figure is that case's alone:
//! in one process the allocator keeps the first case's freed memory (`malloc.rs`).
//!
//! Both sides must time the same network: the parameter counts must agree, and the PyTorch
//! script runs one forward with the Rust model's weights (perturbed away from the
//! adaLN-Zero init, whose output is identically zero) on a Rust input and reports the largest
//! difference from the Rust output. A mismatch marks the RESULT line and fails the command.

use anyhow::{anyhow, bail, Context, Result};
use latte_model::burn::module::{Module, ModuleMapper, Param};
use latte_model::burn::tensor::{Device, Int, Tensor, TensorData};
use latte_model::latte_nn::init::{Init, ParamFactory};
use latte_model::{Latte, LatteConfig};
use latte_stages::train::{bench_train, BenchCase, BenchRow};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Largest forward difference, relative to the largest output magnitude, that still counts as
/// the same network (float32 sums in another order differ by ~1e-6 relative).
const FORWARD_REL_TOL: f64 = 1e-3;

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
    /// Internal: time only the Rust side of case N in this process and print its ROW line.
    #[arg(long, hide = true)]
    case: Option<usize>,
}

fn cases(s2_frames: usize) -> Result<Vec<BenchCase>> {
    let s2 = LatteConfig::preset("Latte-S/2")?;
    Ok(vec![
        BenchCase {
            name: "small (D 192, depth 6, 8 frames of 8×8 latents, batch 4)".into(),
            model: LatteConfig { input_size: 8, num_frames: 8, depth: 6, hidden_size: 192, num_heads: 3, ..s2.clone() },
            batch_size: 4,
        },
        BenchCase {
            name: format!("Latte-S/2 ({s2_frames} frames of 32×32 latents, batch 1)"),
            model: LatteConfig { num_frames: s2_frames, ..s2 },
            batch_size: 1,
        },
    ])
}

pub fn run(args: Args) -> Result<()> {
    // rayon reads this when its global pool starts, i.e. at the first parallel op; children
    // inherit it.
    std::env::set_var("RAYON_NUM_THREADS", args.threads.to_string());
    let cases = cases(args.s2_frames)?;
    if let Some(i) = args.case {
        let case = cases.get(i).ok_or_else(|| anyhow!("--case {i}: there are {} cases", cases.len()))?;
        let dir = tempfile::tempdir().context("creating a temporary folder for the bench's checkpoints")?;
        // as the engine runs the train stage: inside a pool, the calling thread one of its workers
        let pool = rayon::ThreadPoolBuilder::new().num_threads(args.threads).build()?;
        let row = pool
            .install(|| bench_train(case, args.warmup, args.iters, dir.path()))
            .map_err(|e| anyhow!("bench train, {}: {e:#}", case.name))?;
        println!(
            "ROW params={} step_ms={} step_min_ms={} gflop={} peak_mib={}",
            row.params, row.step_ms, row.step_min_ms, row.gflop_per_step, row.peak_rss_mib
        );
        return Ok(());
    }

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
    let mut failures = Vec::new();
    if has_torch {
        if let Err(e) = selftest(&python) {
            println!("  MISMATCH: {e:#}");
            failures.push(format!("{e:#}"));
        }
    }
    for (i, case) in cases.iter().enumerate() {
        let (rust, rust_others) = rust_row(i, case, &args)?;
        let rust_gflops = rust.gflop_per_step / (rust.step_ms * 1e-3);
        println!(
            "rust  {}: params={} step_median_ms={:.1} GFLOP/step={:.2} GFLOP/s={:.1} peak_rss_MiB={:.0} others_cores={:.2}",
            case.name, rust.params, rust.step_ms, rust.gflop_per_step, rust_gflops, rust.peak_rss_mib, rust_others
        );
        if !has_torch {
            continue;
        }
        let torch = torch_row(&python, case, &args)?;
        let mut problems = Vec::new();
        println!("params {}: rust={} torch={} (torch trainable {})", case.name, rust.params, torch.params, torch.trainable);
        if rust.params != torch.params {
            problems.push(format!("parameter counts differ: rust {} vs torch {}", rust.params, torch.params));
        }
        if (torch.gflop_per_step - rust.gflop_per_step).abs() > 1e-3 * rust.gflop_per_step {
            problems.push(format!("FLOP counts differ: rust {:.4} vs torch {:.4} GFLOP/step", rust.gflop_per_step, torch.gflop_per_step));
        }
        match &torch.check {
            Some(c) => {
                println!(
                    "parity {}: forward max|rust - torch| = {:.2e} (max |y| {:.2e}); frozen tables: pos_embed {:.1e}, temp_embed {:.1e}",
                    case.name, c.forward, c.out_max, c.pos, c.temp
                );
                if !(c.forward <= FORWARD_REL_TOL * c.out_max.max(1e-3)) || !(c.pos <= 1e-5) || !(c.temp <= 1e-5) {
                    problems.push(format!(
                        "the PyTorch model does not compute what the Rust model computes (forward max diff {:.2e}, pos {:.1e}, temp {:.1e})",
                        c.forward, c.pos, c.temp
                    ));
                }
            }
            None => problems.push(format!("the PyTorch forward check gave no CHECK line: {}", torch.check_error)),
        }
        let tag = if problems.is_empty() { "RESULT" } else { "RESULT-MISMATCH (not the same network; ratio meaningless)" };
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
    if !failures.is_empty() {
        bail!("the Rust and PyTorch sides did not time the same network:\n  {}", failures.join("\n  "));
    }
    Ok(())
}

/// Runs case `i` in a child process of this binary and parses its ROW line.
fn rust_row(i: usize, case: &BenchCase, args: &Args) -> Result<(BenchRow, f64)> {
    let exe = std::env::current_exe().context("locating the xtask binary to run the Rust case in a child process")?;
    let clock = CpuClock::now();
    let out = Command::new(&exe)
        .args(["bench", "train", "--case", &i.to_string()])
        .args(["--iters", &args.iters.to_string(), "--warmup", &args.warmup.to_string()])
        .args(["--threads", &args.threads.to_string(), "--s2-frames", &args.s2_frames.to_string()])
        .output()
        .with_context(|| format!("running {} bench train --case {i}", exe.display()))?;
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
        name: case.name.clone(),
        params: field(line, "params")? as usize,
        step_ms: field(line, "step_ms")?,
        step_min_ms: field(line, "step_min_ms")?,
        gflop_per_step: field(line, "gflop")?,
        peak_rss_mib: field(line, "peak_mib")?,
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
    let set: Vec<String> = ["OMP_WAIT_POLICY", "GOMP_SPINCOUNT"]
        .iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| format!("{k}={v}")))
        .collect();
    if set.is_empty() { "default".into() } else { set.join(",") }
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

/// Writes the parity inputs for `case`, runs the PyTorch script on the same config and thread
/// count, and parses its RESULT and CHECK lines.
fn torch_row(python: &str, case: &BenchCase, args: &Args) -> Result<TorchRow> {
    let m = &case.model;
    let dir = tempfile::tempdir().context("creating a temporary folder for the parity check")?;
    write_parity_inputs(m, case.batch_size, dir.path())?;
    let config = serde_json::json!({
        "hidden_size": m.hidden_size, "depth": m.depth, "num_heads": m.num_heads, "patch_size": m.patch_size,
        "num_frames": m.num_frames, "input_size": m.input_size, "in_channels": m.in_channels,
        "batch_size": case.batch_size, "threads": args.threads, "iters": args.iters, "warmup": args.warmup,
    });
    let script = script_path()?;
    let threads = args.threads.to_string();
    let clock = CpuClock::now();
    let out = Command::new(python)
        .arg(&script)
        .args(["--config", &config.to_string(), "--check"])
        .arg(dir.path())
        .env("OMP_NUM_THREADS", &threads)
        .env("MKL_NUM_THREADS", &threads)
        .output()
        .with_context(|| format!("running {python} {}", script.display()))?;
    let others_cores = clock.others_cores();
    let text = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = text.lines().find(|l| l.starts_with("RESULT torch ")).ok_or_else(|| {
        anyhow!("{python} {} gave no RESULT line (exit {}):\n{text}{stderr}", script.display(), out.status)
    })?;
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
            Tensor::from_data(TensorData::new(v, dims), &t.device())
        })
    }
}

/// The Rust model (perturbed) under the reference's key names, one input batch, its timesteps
/// and the Rust output, for the PyTorch script's `--check`.
fn write_parity_inputs(cfg: &LatteConfig, batch: usize, dir: &Path) -> Result<()> {
    let device = Device::flex();
    let model = Latte::new(cfg, &device, 0)?.map(&mut Perturb(ChaCha8Rng::seed_from_u64(7)));
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
    let meta = serde_json::json!({ "x_shape": shape, "out_shape": out_shape, "t": t });
    std::fs::write(dir.join("meta.json"), meta.to_string()).context("writing the parity meta.json")?;
    Ok(())
}
