//! `cargo xtask clean [PIPELINE] [--dry-run]` (alias `gc`)

use std::path::PathBuf;

use latte_engine::{gc, Store};

#[derive(clap::Args)]
pub struct Args {
    /// A pipeline whose store to clean (outputs referenced by ANY lock file using the store
    /// are kept, not only this pipeline's).
    #[arg(default_value = "pipeline.toml")]
    pub pipeline: PathBuf,
    /// The store to clean, instead of the pipeline's.
    #[arg(long, value_name = "DIR")]
    pub store: Option<PathBuf>,
    /// List what would be deleted; delete nothing.
    #[arg(long)]
    pub dry_run: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let root = match args.store {
        Some(s) => s,
        None => crate::run::load(&args.pipeline, None)?.store,
    };
    let report = gc::gc(&Store::new(&root), args.dry_run)?;
    let verb = if args.dry_run { "would delete" } else { "deleted" };
    for key in &report.removed {
        println!("{verb} output {key}");
    }
    for tmp in &report.tmp_removed {
        println!("{verb} leftover {}", tmp.display());
    }
    println!(
        "{}: {verb} {} output(s) and {} leftover(s), {:.1} MiB; kept {} referenced by {} lock file(s)",
        root.display(),
        report.removed.len(),
        report.tmp_removed.len(),
        report.bytes as f64 / (1024.0 * 1024.0),
        report.kept,
        report.locks.len()
    );
    Ok(())
}
