//! `cargo xtask`: the latte command line.
//!
//! Cargo finds it through the alias in `.cargo/config.toml` (`xtask = "run --package xtask --"`),
//! so it is built with the workspace's one (optimised dev) profile. This file only parses the
//! command line and dispatches: each subcommand lives in its own module, which exposes
//! `Args` (a `clap::Args` struct holding its flags and their help) and `run(Args) -> Result<()>`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod bench_block;
mod bench_frames;
mod bench_metrics;
mod bench_train;
mod bench_vae;
mod clean;
mod grid;
mod interrupt;
mod malloc;
mod metrics;
mod model;
mod progress;
mod run;
mod sample;
mod status;
mod vae;
mod verify;
mod weights;
mod workspace;
// Subcommand modules, one per command: add `mod <name>;` here.

#[derive(Parser)]
#[command(name = "cargo xtask", about = "latte: reproduce Latte (latent diffusion transformer for video) as a cached pipeline")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the stale stages of a pipeline (default `pipeline.toml`).
    Run(run::Args),
    /// Show each stage's state (cached / stale / never run), cache key and output path.
    Status(status::Args),
    /// Re-hash each cached stage's output against its manifest; `--repair` reruns damaged ones.
    Verify(verify::Args),
    /// Expand a grid of parameter values into pipelines, run them all and summarise the metrics.
    Grid(grid::Args),
    /// Delete store outputs that no lock file references, and leftovers of interrupted runs.
    #[command(alias = "gc")]
    Clean(clean::Args),
    /// Fréchet distance of .npy feature files; the feature networks' parity contract.
    #[command(subcommand)]
    Metrics(metrics::MetricsCommand),
    /// Download and convert metric network weights (`fetch i3d` for FVD, `fetch inception` for FID).
    #[command(subcommand)]
    Weights(weights::WeightsCommand),
    /// Benchmarks on this machine (`bench metrics`: Fréchet distance at d = 2048, I3D clips/s).
    #[command(subcommand)]
    Bench(BenchCommand),
    /// The Latte model: `forward DIR --out FILE` (reference parity contract), `info` (parameters, FLOPs).
    Model(model::Args),
    /// The Stable Diffusion VAE: `forward DIR --out FILE` (diffusers parity contract).
    Vae(vae::Args),
    /// Sample videos from a trained model outside a pipeline (`--checkpoint TRAIN_DIR --vae DIR --n N --out DIR`).
    Sample(sample::Args),
    // One variant per subcommand: `Name(name::Args),`
}

/// One variant per benchmarked area; each lives in `bench_<area>.rs`.
#[derive(Subcommand)]
enum BenchCommand {
    /// Fréchet distance at FID width and the feature networks' throughput.
    Metrics(bench_metrics::Args),
    /// One Latte-S block pair: forward and training step (burn flex vs PyTorch when importable).
    Block(bench_block::Args),
    /// VAE encode throughput: the default small VAE and a full-size SD config (random weights).
    Vae(bench_vae::Args),
    /// Full training steps of the loop with the real model (small and Latte-S/2-shaped configs).
    Train(bench_train::Args),
    /// The frames stage against the `ffmpeg` command line on short and long source videos.
    Frames(bench_frames::Args),
}

fn main() -> ExitCode {
    malloc::keep_freed_memory();
    let result = match Cli::parse().command {
        Command::Run(args) => run::run(args),
        Command::Status(args) => status::run(args),
        Command::Verify(args) => verify::run(args),
        Command::Grid(args) => grid::run(args),
        Command::Clean(args) => clean::run(args),
        Command::Metrics(cmd) => metrics::run(cmd),
        Command::Weights(cmd) => weights::run(cmd),
        Command::Bench(BenchCommand::Metrics(args)) => bench_metrics::run(args),
        Command::Bench(BenchCommand::Block(args)) => bench_block::run(args),
        Command::Bench(BenchCommand::Vae(args)) => bench_vae::run(args),
        Command::Bench(BenchCommand::Train(args)) => bench_train::run(args),
        Command::Bench(BenchCommand::Frames(args)) => bench_frames::run(args),
        Command::Model(args) => model::run(args),
        Command::Vae(args) => vae::run(args),
        Command::Sample(args) => sample::run(args),
        // One arm per subcommand: `Command::Name(args) => name::run(args),`
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => match interrupt::exit_code(&err) {
            // Ctrl-C / SIGTERM: not a failure of the pipeline, and the status a shell expects.
            Some(code) => {
                eprintln!("{err:#}");
                ExitCode::from(code)
            }
            None => {
                // `{:#}` prints the whole context chain on one line per cause.
                eprintln!("error: {err:#}");
                ExitCode::FAILURE
            }
        },
    }
}
