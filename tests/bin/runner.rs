//! `latte-test-runner PIPELINE`: runs a pipeline of the test stage kinds in its own process,
//! so that the interruption test can kill it with SIGKILL mid-write.

use latte_engine::{pipeline, runner, LoadOptions, Plan, RunOptions, Selection, Silent};

fn main() -> anyhow::Result<()> {
    let path = std::env::args().nth(1).ok_or_else(|| anyhow::anyhow!("usage: latte-test-runner PIPELINE"))?;
    let registry = latte_tests::registry("1");
    let pipeline = pipeline::load(path.as_ref(), &registry, &LoadOptions::default())?;
    let mut plan = Plan::new(&pipeline, &Selection::default())?;
    let report = runner::run(std::slice::from_mut(&mut plan), &RunOptions { jobs: 2, observer: &Silent, cancel: None })?;
    println!("ran {}", report.ran.len());
    Ok(())
}
