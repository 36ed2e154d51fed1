//! `cargo xtask verify [PIPELINE] [--stage NAME]... [--repair]`: re-hashes every file of each
//! cached stage's output against the manifest written when it was installed and names what is
//! damaged; `--repair` reruns the damaged stages (and what is downstream of them).

use std::path::PathBuf;

use anyhow::bail;
use latte_engine::{Plan, Selection};

#[derive(clap::Args)]
pub struct Args {
    /// The pipeline file.
    #[arg(default_value = "pipeline.toml")]
    pub pipeline: PathBuf,
    /// Verify only this stage (repeatable); default: every stage of the pipeline.
    #[arg(long = "stage", value_name = "NAME")]
    pub stages: Vec<String>,
    /// Rerun each damaged stage and everything downstream of it, then verify again.
    #[arg(long)]
    pub repair: bool,
    /// With --repair: global thread budget [default: number of cores].
    #[arg(long, short = 'j', value_name = "N")]
    pub jobs: Option<usize>,
    /// Output store [default: the pipeline's `store`, else .latte/ beside the pipeline].
    #[arg(long, value_name = "DIR")]
    pub store: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let damaged = check(&args)?;
    if damaged.is_empty() {
        return Ok(());
    }
    if !args.repair {
        bail!(
            "{} stage(s) with damaged outputs: {}; `cargo xtask verify --repair` (or `cargo xtask run`) reruns them",
            damaged.len(),
            damaged.join(", ")
        );
    }
    println!("repairing: {} and what is downstream of them", damaged.join(", "));
    crate::run::run(crate::run::Args {
        pipeline: args.pipeline.clone(),
        stages: damaged,
        downstream: true,
        force: true,
        dry_run: false,
        jobs: args.jobs,
        store: args.store.clone(),
    })?;
    let left = check(&args)?;
    if !left.is_empty() {
        bail!("still damaged after the repair: {}", left.join(", "));
    }
    Ok(())
}

/// Prints one line per stage (and one per damaged file); returns the damaged stages' names.
fn check(args: &Args) -> anyhow::Result<Vec<String>> {
    let pipeline = crate::run::load(&args.pipeline, args.store.as_deref())?;
    for s in &args.stages {
        pipeline.check_stage_name(s)?;
    }
    let plan = Plan::new(&pipeline, &Selection::default())?;
    let width = plan.stages.iter().map(|s| s.decl.name.len()).max().unwrap_or(0);
    let mut damaged = Vec::new();
    for s in plan.stages.iter().filter(|s| args.stages.is_empty() || args.stages.contains(&s.decl.name)) {
        if !plan.store.is_complete(&s.key) {
            println!("{:<width$}  not cached  {}", s.decl.name, &s.key[..12]);
            continue;
        }
        let problems = plan.store.verify(&s.key)?;
        if problems.is_empty() {
            let files = latte_engine::manifest::file_count(&s.output);
            let what =
                if files == 0 { "ok (no manifest: checked against its recorded digest)".to_owned() } else { format!("ok ({files} files)") };
            println!("{:<width$}  {what}  {}", s.decl.name, s.output.display());
        } else {
            println!("{:<width$}  DAMAGED  {}", s.decl.name, s.output.display());
            for p in &problems {
                println!("{:<width$}    {p}", "");
            }
            damaged.push(s.decl.name.clone());
        }
    }
    Ok(damaged)
}
