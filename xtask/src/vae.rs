//! `cargo xtask vae ...`: the VAE's command line.
//!
//! `vae forward DIR --out FILE` is the parity contract (keep it stable): DIR holds
//! `config.json`, `weights.safetensors` and `io.safetensors` (input `x`) in the format of
//! `shared/fixtures/vae-kl-tiny`; FILE receives `posterior_mean`, `posterior_logvar` and
//! `decoded` (decoding the posterior mean), f32.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use latte_vae::burn::tensor::Device;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: VaeCommand,
}

#[derive(Debug, clap::Subcommand)]
enum VaeCommand {
    /// Encode `x` of DIR/io.safetensors and decode the posterior mean (the parity contract).
    Forward {
        /// A folder with config.json, weights.safetensors and io.safetensors.
        dir: PathBuf,
        /// The safetensors file to write.
        #[arg(long)]
        out: PathBuf,
    },
}

pub fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        VaeCommand::Forward { dir, out } => {
            let started = Instant::now();
            let result =
                latte_vae::forward::forward_dir(&dir, &Device::flex()).with_context(|| format!("running the VAE in {}", dir.display()))?;
            latte_vae::forward::write_outputs(&result, &out).with_context(|| format!("writing {}", out.display()))?;
            let shapes: Vec<String> = result.outputs.iter().map(|(k, s, _)| format!("{k} {s:?}")).collect();
            println!(
                "x {:?} -> {} in {:.2} s; wrote {}",
                result.x_shape,
                shapes.join(", "),
                started.elapsed().as_secs_f64(),
                out.display()
            );
            Ok(())
        }
    }
}
