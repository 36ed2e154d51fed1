//! A run killed with SIGKILL in the middle of writing a stage's output leaves nothing marked
//! cached; the rerun completes; `clean` removes the leftover. A cancelled run (Ctrl-C) stops
//! at a safe point, installs nothing partial and starts nothing new.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use latte_engine::{gc, lock::LockFile, Cancel, Error, Selection, State, Store};
use latte_tests::{ran, Fixture};

/// Part files of the `slow` stage in `dir`.
fn parts_in(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|d| d.filter_map(Result::ok).filter(|e| e.file_name().to_string_lossy().starts_with("part-")).count())
        .unwrap_or(0)
}

/// Part files the `slow` stage has written so far into its temporary directory.
fn parts_written(tmp: &Path) -> usize {
    std::fs::read_dir(tmp).map(|dirs| dirs.filter_map(Result::ok).map(|d| parts_in(&d.path())).sum()).unwrap_or(0)
}

/// Cancelling while `slow` runs: it stops at its next safe point and is not installed, the
/// stage that needs it never starts, `busy` (which has no safe point and finishes after the
/// cancel) is installed whole, and the run says `Interrupted` naming both; the scratch of the
/// stopped stage and the lock's pending entries are kept, and the rerun runs just the rest.
#[test]
fn cancelling_mid_stage_installs_nothing_partial_and_starts_nothing_new() {
    let f = Fixture::new(
        "[stages.slow]\nkind = \"slow\"\nfiles = 400\ndelay_ms = 20\n\
         [stages.after]\nkind = \"join\"\ninputs = { src = \"slow\" }\nvalue = 1\njournal = \"$JOURNAL\"\n\
         [stages.busy]\nkind = \"record\"\nsleep_ms = 500\njournal = \"$JOURNAL\"\n",
    );
    let slow_key = f.plan(&Selection::default()).stage("slow").unwrap().key.clone();
    let cancel = Cancel::new();
    let started = Instant::now();
    let result = std::thread::scope(|s| {
        s.spawn(|| {
            while parts_written(&f.store().join("tmp")) < 3 {
                assert!(started.elapsed() < Duration::from_secs(20), "slow never started writing");
                std::thread::sleep(Duration::from_millis(5));
            }
            cancel.cancel();
        });
        f.run_cancellable(&Selection::default(), 2, Some(&cancel))
    });
    // 400 files take 8 s: the run returned at the safe point after the cancel, not at the end.
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    match result {
        Err(Error::Interrupted { stopped, not_run }) => {
            assert_eq!(stopped, ["slow"]);
            assert_eq!(not_run, ["after"]);
        }
        other => panic!("expected Interrupted, got {other:?}"),
    }
    let e = f.run_cancellable(&Selection::default(), 2, Some(&cancel)).unwrap_err().to_string();
    assert!(e.starts_with("interrupted") && e.contains("the next run resumes"), "{e}");

    assert_eq!(f.take_journal(), ["busy"], "`after` must not start once the run is cancelled");
    let plan = f.plan(&Selection::default());
    assert_eq!(plan.stage("busy").unwrap().state, State::Cached, "a stage that completed after the cancel is installed");
    assert_ne!(plan.stage("slow").unwrap().state, State::Cached);
    assert!(!plan.stage("slow").unwrap().output.exists());
    assert_eq!(std::fs::read_dir(f.store().join("tmp")).unwrap().count(), 0, "the stopped stage's partial output is deleted");
    assert!(Store::new(f.store()).work(&slow_key).is_dir(), "the stopped stage's scratch is kept for the rerun");
    let lock = LockFile::read(&f.path("pipeline.lock")).0;
    assert_eq!(lock.pending.keys().collect::<Vec<_>>(), ["after", "slow"]);
    assert!(lock.stages.contains_key("busy") && !lock.stages.contains_key("slow"));

    let rerun = f.run();
    assert_eq!(ran(&rerun), ["after", "slow"]);
    assert_eq!(f.take_journal(), ["after"]);
    assert_eq!(parts_in(&f.output("slow")), 400);
}

/// A run cancelled before it starts runs nothing and says which stages it did not start.
#[test]
fn a_run_cancelled_before_it_starts_runs_nothing() {
    let f = Fixture::new(
        "[stages.a]\nkind = \"record\"\njournal = \"$JOURNAL\"\n[stages.b]\nkind = \"join\"\ninputs = { src = \"a\" }\nvalue = 2\n",
    );
    let cancel = Cancel::new();
    cancel.cancel();
    match f.run_cancellable(&Selection::default(), 2, Some(&cancel)) {
        Err(Error::Interrupted { stopped, mut not_run }) => {
            assert!(stopped.is_empty());
            not_run.sort();
            assert_eq!(not_run, ["a", "b"]);
        }
        other => panic!("expected Interrupted, got {other:?}"),
    }
    assert!(f.take_journal().is_empty());
    assert!(Store::new(f.store()).keys().is_empty());
    assert_eq!(ran(&f.run()), ["a", "b"]);
}

#[test]
fn kill_9_mid_write_leaves_nothing_cached_and_the_rerun_completes() {
    let f = Fixture::new("[stages.fast]\nkind = \"record\"\n[stages.slow]\nkind = \"slow\"\nfiles = 40\ndelay_ms = 50\n");
    let mut child = Command::new(env!("CARGO_BIN_EXE_latte-test-runner")).arg(f.pipeline_file()).spawn().expect("spawn runner");
    // Wait until the slow stage has written a few of its 40 files into its temporary directory.
    let tmp = f.store().join("tmp");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if parts_written(&tmp) >= 3 {
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
    // Every part and the chain (the store may add its own files beside them).
    assert_eq!(parts_in(&slow.output), 40);
    assert!(slow.output.join("chain.txt").is_file());
    assert!(f.run().ran.is_empty());

    // The killed run's temporary directory is garbage; the outputs are not.
    let report = gc::gc(&Store::new(f.store()), false).unwrap();
    assert_eq!(report.tmp_removed.len(), 1);
    assert!(report.removed.is_empty());
    assert_eq!(report.kept, 2);
    assert!(ran(&f.run()).is_empty());
}
