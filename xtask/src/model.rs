//! `cargo xtask model`: the parity contract (`forward`) and model facts (`info`).

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use latte_model::flops::forward_gflops;
use latte_model::latte_nn::device::device_from_name;
use latte_model::latte_nn::host::{max_abs_diff, read_safetensors, write_safetensors};
use latte_model::reference::{expected_path, run_dir_as};
use latte_model::{Latte, LatteConfig};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: ModelCommand,
}

#[derive(Subcommand)]
enum ModelCommand {
    /// Run the reference parity contract: DIR holds `config.json`, `weights.safetensors` and
    /// `inputs.safetensors` in the format of `shared/fixtures/latte-*`; writes `out` (and
    /// `out_cfg` when `config.json` sets `cfg_scale`) to FILE as safetensors.
    Forward {
        dir: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// Compute device: `cpu`, `wgpu`, `cuda`, `cuda:N` (CUDA needs a build with `--features cuda`).
        #[arg(long, default_value = "cpu")]
        device: String,
        /// The network's compute dtype: `f32`, `bf16` or `f16` (the output is f32).
        #[arg(long, default_value = "f32")]
        precision: String,
    },
    /// Print trainable parameter counts and forward GFLOPs (one 16-frame clip) of the presets,
    /// and of the four variants of one preset beside the paper's Table 3.
    Info {
        /// Presets to list (default: all twelve).
        presets: Vec<String>,
        /// Preset whose variants 1-4 are compared with the paper's FLOPs.
        #[arg(long, default_value = "Latte-XL/2")]
        variants_of: String,
    },
}

/// The paper's Table 4 (trainable parameters, unconditional, patch 2) and Table 3 (XL GFLOPs).
const TABLE4: [(&str, usize); 4] =
    [("Latte-S/2", 32_480_672), ("Latte-B/2", 129_547_040), ("Latte-L/2", 456_815_648), ("Latte-XL/2", 673_681_568)];
const TABLE3_XL: [f64; 4] = [5572.69, 5572.69, 6153.15, 1545.15];

pub fn run(args: Args) -> Result<()> {
    match args.command {
        ModelCommand::Forward { dir, out, device, precision } => forward(dir, out, &device, &precision),
        ModelCommand::Info { presets, variants_of } => info(presets, &variants_of),
    }
}

fn forward(dir: PathBuf, out: PathBuf, device: &str, precision: &str) -> Result<()> {
    let device = device_from_name(device)?;
    let Some(compute) = latte_model::latte_nn::device::compute_dtype(precision) else {
        bail!("--precision {precision}: use f32, bf16 or f16");
    };
    let outputs = run_dir_as(&dir, &device, compute).with_context(|| format!("model forward on {}", dir.display()))?;
    write_safetensors(&out, &outputs, None)?;
    for (name, t) in &outputs {
        println!("{name}: shape {:?}", t.shape);
    }
    let expected = expected_path(&dir);
    if expected.is_file() {
        let exp = read_safetensors(&expected)?;
        for (name, t) in &outputs {
            if let (Some(e), Some(o)) = (exp.get(name).and_then(|e| e.as_f32()), t.as_f32()) {
                if e.len() == o.len() {
                    println!("{name}: max |out - expected| = {:e}", max_abs_diff(o, e));
                }
            }
        }
    }
    println!("wrote {}", out.display());
    Ok(())
}

fn info(presets: Vec<String>, variants_of: &str) -> Result<()> {
    let presets = if presets.is_empty() {
        ["S", "B", "L", "XL"].iter().flat_map(|s| [2, 4, 8].map(|p| format!("Latte-{s}/{p}"))).collect()
    } else {
        presets
    };
    let configs = presets.iter().map(|p| LatteConfig::preset(p)).collect::<Result<Vec<_>, _>>()?;
    // Lazy parameters: building a model allocates nothing, so even XL is free to count.
    let device = latte_model::burn::tensor::Device::flex();
    println!("{:<12} {:>14} {:>14} {:>12} {:>10}", "preset", "trainable", "with frozen", "paper (T4)", "GFLOPs");
    for (name, cfg) in presets.iter().zip(configs) {
        let model = Latte::new(&cfg, &device, 0)?;
        use latte_model::burn::module::Module;
        let paper = TABLE4.iter().find(|(n, _)| n == name).map_or("-".to_string(), |(_, c)| c.to_string());
        println!(
            "{:<12} {:>14} {:>14} {:>12} {:>10.2}",
            name,
            model.num_trainable_params(),
            model.num_params(),
            paper,
            forward_gflops(&cfg)
        );
    }
    println!();
    println!("{variants_of}, variants (GFLOPs = 2 x multiply-accumulates of one forward of one clip):");
    println!("{:<8} {:>14} {:>10} {:>14}", "variant", "trainable", "GFLOPs", "paper (T3, XL)");
    for v in 1..=4u8 {
        let mut cfg = LatteConfig::preset(variants_of)?;
        cfg.variant = latte_model::Variant::try_from(v).map_err(anyhow::Error::msg)?;
        let model = Latte::new(&cfg, &device, 0)?;
        println!("{:<8} {:>14} {:>10.2} {:>14.2}", v, model.num_trainable_params(), forward_gflops(&cfg), TABLE3_XL[v as usize - 1]);
    }
    Ok(())
}
