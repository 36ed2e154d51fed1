//! `cargo xtask status [PIPELINE] [--json]`

use std::path::PathBuf;

use latte_engine::status::Status;
use latte_engine::{Plan, Selection};

#[derive(clap::Args)]
pub struct Args {
    /// The pipeline file.
    #[arg(default_value = "pipeline.toml")]
    pub pipeline: PathBuf,
    /// Print the machine-readable document described in the README.
    #[arg(long)]
    pub json: bool,
    /// Output store [default: the pipeline's `store`, else .latte/ beside the pipeline].
    #[arg(long, value_name = "DIR")]
    pub store: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let pipeline = crate::run::load(&args.pipeline, args.store.as_deref())?;
    let plan = Plan::new(&pipeline, &Selection::default())?;
    for w in &plan.warnings {
        eprintln!("warning: {w}");
    }
    let status = Status::of(&plan);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
        return Ok(());
    }
    let width = status.stages.iter().map(|s| s.name.len()).max().unwrap_or(0);
    for s in &status.stages {
        let why = if s.reasons.is_empty() { String::new() } else { format!("  ({})", s.reasons.join("; ")) };
        println!("{:<width$}  {:<9}  {}  {}{why}", s.name, s.state.to_string(), &s.key[..12], s.output.display());
    }
    Ok(())
}
