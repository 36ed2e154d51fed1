//! `cargo xtask run [PIPELINE] [--stage NAME]... [--downstream] [--force] [--dry-run]`

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use latte_engine::{pipeline, runner, LoadOptions, Pipeline, Plan, RunOptions, Selection, State};

use crate::progress::Bars;

#[derive(clap::Args)]
pub struct Args {
    /// The pipeline file.
    #[arg(default_value = "pipeline.toml")]
    pub pipeline: PathBuf,
    /// Run this stage and the stages it needs (repeatable); default: the whole pipeline.
    #[arg(long = "stage", value_name = "NAME")]
    pub stages: Vec<String>,
    /// With --stage: also run every stage downstream of it.
    #[arg(long, requires = "stages")]
    pub downstream: bool,
    /// Rerun the targeted stages even if their output is cached.
    #[arg(long)]
    pub force: bool,
    /// Print the plan and why each stage would run; run nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Global thread budget shared by concurrent stages [default: number of cores].
    #[arg(long, short = 'j', value_name = "N")]
    pub jobs: Option<usize>,
    /// Output store [default: the pipeline's `store`, else .latte/ beside the pipeline].
    #[arg(long, value_name = "DIR")]
    pub store: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let pipeline = load(&args.pipeline, args.store.as_deref())?;
    let selection = Selection { targets: args.stages, downstream: args.downstream, force: args.force };
    let mut plan = Plan::new(&pipeline, &selection)?;
    for w in &plan.warnings {
        eprintln!("warning: {w}");
    }
    if args.dry_run {
        print_plan(&plan);
        return Ok(());
    }
    let cancel = crate::interrupt::install()?;
    let bars = Bars::new();
    let options = RunOptions { jobs: jobs(args.jobs), observer: &bars, cancel: Some(&cancel) };
    let start = std::time::Instant::now();
    let report = runner::run(std::slice::from_mut(&mut plan), &options)?;
    bars.clear();
    println!(
        "{}: {} stage(s) ran, {} cached, {:.2} s",
        args.pipeline.display(),
        report.ran.len(),
        report.cached.len(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Loads and validates a pipeline with the real stage registry.
pub fn load(path: &Path, store: Option<&Path>) -> anyhow::Result<Pipeline> {
    let registry = latte_stages::registry();
    let options = LoadOptions { store: store.map(Path::to_owned), ..Default::default() };
    pipeline::load(path, &registry, &options).with_context(|| format!("cannot load pipeline {}", path.display()))
}

pub fn jobs(requested: Option<usize>) -> usize {
    requested.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())).max(1)
}

fn print_plan(plan: &Plan) {
    let width = plan.stages.iter().map(|s| s.decl.name.len()).max().unwrap_or(0);
    let mut would_run = 0;
    for s in &plan.stages {
        let (what, why) = if s.run {
            would_run += 1;
            ("run", s.reasons.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))
        } else if !s.selected {
            ("skip", "not selected".to_owned())
        } else {
            debug_assert_eq!(s.state, State::Cached);
            ("cached", String::new())
        };
        println!("  {:<width$}  {:<6}  {}  {}", s.decl.name, what, &s.key[..12], why);
    }
    println!("{would_run} of {} stage(s) would run (dry run: nothing ran)", plan.stages.len());
}
