//! `cargo xtask metrics ...`: Fréchet distances between feature files and the feature
//! networks' parity contract.
//!
//! - `metrics fd A.npy B.npy [--unbiased]` prints the Fréchet distance between the rows of two
//!   N×d float32/float64 `.npy` files (A generated, B real), population covariance (1/N, as
//!   StyleGAN-V) unless `--unbiased` (1/(N−1), as pytorch-fid).
//! - `metrics features --net i3d|inception|c3d --weights W --input X.safetensors --out
//!   Y.safetensors` (keep it stable): `frames_u8` T×H×W×3 → `logits` (400,) (i3d), `image_u8`
//!   H×W×3 → `features` (2048,) (inception), or `frames_u8` 16×H×W×3 → `probs` (101,) (c3d,
//!   the softmax IS consumes), float32; a leading N axis gives N rows.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context};
use latte_metrics::features::{features_file, Net};
use latte_metrics::frechet::{frechet_distance, Covariance, Gaussian};

#[derive(Debug, clap::Subcommand)]
pub enum MetricsCommand {
    /// Fréchet distance between the rows of two N×d .npy feature files.
    Fd {
        /// Features of the generated set (rows = samples), float32 or float64.
        a: PathBuf,
        /// Features of the real set.
        b: PathBuf,
        /// Divide the covariance by N−1 (pytorch-fid) instead of N (StyleGAN-V, the default).
        #[arg(long)]
        unbiased: bool,
    },
    /// Run a feature network on the tensor in a safetensors file (the parity contract).
    Features {
        /// `i3d` (FVD, input `frames_u8`), `inception` (FID, input `image_u8`) or `c3d` (IS,
        /// input `frames_u8` of 16 frames).
        #[arg(long)]
        net: String,
        /// The weights: the original file (.ckpt / .pt) or its conversion (.safetensors).
        #[arg(long)]
        weights: PathBuf,
        /// The safetensors file holding `frames_u8` or `image_u8`.
        #[arg(long)]
        input: PathBuf,
        /// The safetensors file to write (`logits`, `features` or `probs`, float32).
        #[arg(long)]
        out: PathBuf,
    },
}

pub fn run(command: MetricsCommand) -> anyhow::Result<()> {
    match command {
        MetricsCommand::Fd { a, b, unbiased } => {
            let started = Instant::now();
            let cov = if unbiased { Covariance::Unbiased } else { Covariance::Population };
            let ma = latte_metrics::npy::read_matrix(&a)?;
            let mb = latte_metrics::npy::read_matrix(&b)?;
            if ma.cols != mb.cols {
                bail!(
                    "{} has {} features per row but {} has {}; both must come from the same network",
                    a.display(),
                    ma.cols,
                    b.display(),
                    mb.cols
                );
            }
            let ga = Gaussian::from_rows(ma.rows, ma.cols, &ma.data, cov).with_context(|| format!("statistics of {}", a.display()))?;
            let gb = Gaussian::from_rows(mb.rows, mb.cols, &mb.data, cov).with_context(|| format!("statistics of {}", b.display()))?;
            let fd = frechet_distance(&ga, &gb)?;
            println!("{fd:.10}");
            eprintln!(
                "FD between {} ({}×{}) and {} ({}×{}), covariance {}, in {:.2} s",
                a.display(),
                ma.rows,
                ma.cols,
                b.display(),
                mb.rows,
                mb.cols,
                cov.name(),
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
        MetricsCommand::Features { net, weights, input, out } => {
            let Some(kind) = Net::parse(&net) else { bail!("--net must be `i3d`, `inception` or `c3d`, got `{net}`") };
            let started = Instant::now();
            let t = features_file(kind, &weights, &input, &out)
                .with_context(|| format!("computing {net} features of {} with weights {}", input.display(), weights.display()))?;
            println!(
                "{} {:?} in {:.2} s; wrote {}",
                latte_metrics::features::output_name(kind),
                t.shape,
                started.elapsed().as_secs_f64(),
                out.display()
            );
            Ok(())
        }
    }
}
