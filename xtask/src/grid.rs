//! `cargo xtask grid GRID.toml [--dry-run]`

use std::path::PathBuf;

use anyhow::Context as _;
use latte_engine::{grid, runner, Plan, RunOptions, Selection};

use crate::progress::Bars;

#[derive(clap::Args)]
pub struct Args {
    /// The grid file (a base pipeline and parameter axes).
    pub grid: PathBuf,
    /// Print the points and how many stages would run; run nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Global thread budget shared by concurrent stages [default: number of cores].
    #[arg(long, short = 'j', value_name = "N")]
    pub jobs: Option<usize>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let registry = latte_stages::registry();
    let (grid, points) = grid::load(&args.grid, &registry).with_context(|| format!("cannot load grid {}", args.grid.display()))?;
    let mut plans = points.iter().map(|p| Plan::new(&p.pipeline, &Selection::default())).collect::<Result<Vec<_>, _>>()?;
    let unique: std::collections::BTreeSet<&str> =
        plans.iter().flat_map(|p| p.stages.iter().filter(|s| s.run).map(|s| s.key.as_str())).collect();
    println!("{} point(s), {} distinct stage run(s) needed", points.len(), unique.len());
    if args.dry_run {
        for (point, plan) in points.iter().zip(&plans) {
            let values: Vec<String> = point.values.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let runs: Vec<&str> = plan.stages.iter().filter(|s| s.run).map(|s| s.decl.name.as_str()).collect();
            println!(
                "  point {:03} [{}]: runs {}",
                point.index,
                values.join(", "),
                if runs.is_empty() { "nothing".to_owned() } else { runs.join(", ") }
            );
        }
        return Ok(());
    }
    let cancel = crate::interrupt::install()?;
    let bars = Bars::new();
    let report = runner::run(&mut plans, &RunOptions { jobs: crate::run::jobs(args.jobs), observer: &bars, cancel: Some(&cancel) })?;
    bars.clear();
    let summary = grid::summary(&grid, &points, &plans);
    let (csv, md) = summary.write(&grid)?;
    if let Some(svg) = summary.write_plot(&grid)? {
        println!("plots of the metrics across points: {}", svg.display());
    }
    for png in grid::write_curves(&grid, &points, &plans)? {
        println!("curves of every point: {}", png.display());
    }
    print!("{}", summary.to_markdown());
    println!("{} stage(s) ran; summary written to {} and {}", report.ran.len(), csv.display(), md.display());
    Ok(())
}
