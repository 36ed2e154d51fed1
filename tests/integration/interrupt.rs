//! A run killed with SIGKILL in the middle of writing a stage's output leaves nothing marked
//! cached; the rerun completes; `clean` removes the leftover.

use std::process::Command;
use std::time::{Duration, Instant};

use latte_engine::{gc, lock::LockFile, Selection, State, Store};
use latte_tests::{ran, Fixture};

#[test]
fn kill_9_mid_write_leaves_nothing_cached_and_the_rerun_completes() {
    let f = Fixture::new("[stages.fast]\nkind = \"record\"\n[stages.slow]\nkind = \"slow\"\nfiles = 40\ndelay_ms = 50\n");
    let mut child = Command::new(env!("CARGO_BIN_EXE_latte-test-runner")).arg(f.pipeline_file()).spawn().expect("spawn runner");
    // Wait until the slow stage has written a few of its 40 files into its temporary directory.
    let tmp = f.store().join("tmp");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let written: usize = std::fs::read_dir(&tmp)
            .map(|dirs| {
                dirs.filter_map(|d| std::fs::read_dir(d.ok()?.path()).ok())
                    .flat_map(|d| d.filter_map(Result::ok))
                    .filter(|e| e.file_name().to_string_lossy().starts_with("part-"))
                    .count()
            })
            .unwrap_or(0);
        if written >= 3 {
            break;
        }
        assert!(Instant::now() < deadline, "the runner never started writing");
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().expect("SIGKILL"); // `Child::kill` sends SIGKILL on Unix
    let status = child.wait().unwrap();
    assert!(!status.success());

    let plan = f.plan(&Selection::default());
    let slow = plan.stage("slow").unwrap();
    assert_ne!(slow.state, State::Cached);
    assert!(!slow.output.exists());
    assert!(!LockFile::read(&f.path("pipeline.lock")).0.stages.contains_key("slow"));
    // The fast stage finished before the kill and stays cached.
    assert_eq!(plan.stage("fast").unwrap().state, State::Cached);

    let rerun = Command::new(env!("CARGO_BIN_EXE_latte-test-runner")).arg(f.pipeline_file()).output().unwrap();
    assert!(rerun.status.success(), "{}", String::from_utf8_lossy(&rerun.stderr));
    assert_eq!(String::from_utf8_lossy(&rerun.stdout).trim(), "ran 1");
    let slow = f.plan(&Selection::default()).stage("slow").unwrap().clone();
    assert_eq!(slow.state, State::Cached);
    assert_eq!(std::fs::read_dir(&slow.output).unwrap().count(), 41);
    assert!(f.run().ran.is_empty());

    // The killed run's temporary directory is garbage; the outputs are not.
    let report = gc::gc(&Store::new(f.store()), false).unwrap();
    assert_eq!(report.tmp_removed.len(), 1);
    assert!(report.removed.is_empty());
    assert_eq!(report.kept, 2);
    assert!(ran(&f.run()).is_empty());
}
