//! The persistent scratch directory (`StageContext::work` = `.latte/work/<key>/`): it survives
//! a failed stage so the rerun of the same key resumes from it, is deleted once the output is
//! installed, is fresh for another key or under `--force`, and `clean` keeps it only while a
//! lock file names its key as pending.

use std::path::{Path, PathBuf};

use latte_engine::{gc, lock::LockFile, InputSpec, ParamSpec, ParamType, Selection, Stage, StageContext, StageError, Store};
use latte_tests::{read, Fixture};

/// Counts from what `work/progress` says up to `target`, saving the count after each unit; fails
/// after unit 2 while `stop_file` exists. Output: `resumed_from.txt` (the count it found).
struct Resumable;

const PARAMS: &[ParamSpec] = &[
    ParamSpec { name: "target", ty: ParamType::Int, default: Some("5"), help: "units of work" },
    ParamSpec { name: "stop_file", ty: ParamType::Str, default: Some("\"\""), help: "fail after unit 2 while this file exists" },
];

impl Stage for Resumable {
    fn kind(&self) -> &'static str {
        "resumable"
    }
    fn version(&self) -> &'static str {
        "1"
    }
    fn params(&self) -> &'static [ParamSpec] {
        PARAMS
    }
    fn inputs(&self) -> &'static [InputSpec] {
        &[]
    }
    fn run(&self, ctx: &StageContext<'_>) -> Result<(), StageError> {
        assert!(ctx.work.is_dir(), "the engine creates the work directory");
        let saved = ctx.work.join("progress");
        let start: u64 = std::fs::read_to_string(&saved).map(|s| s.trim().parse().unwrap_or(0)).unwrap_or(0);
        let stop = ctx.params.str("stop_file")?;
        for unit in start..ctx.params.u64("target")? {
            let tmp = ctx.work.join("progress.tmp");
            std::fs::write(&tmp, (unit + 1).to_string())?;
            std::fs::rename(&tmp, &saved)?;
            if unit + 1 == 2 && !stop.is_empty() && Path::new(stop).exists() {
                return Err("stopped after unit 2".into());
            }
        }
        std::fs::write(ctx.out.join("resumed_from.txt"), start.to_string())?;
        Ok(())
    }
}

fn fixture(target: u64) -> Fixture {
    let mut f = Fixture::new("");
    f.registry.register(Resumable);
    write(&f, target);
    std::fs::write(stop_file(&f), "").unwrap();
    f
}

fn write(f: &Fixture, target: u64) {
    f.write(&format!("[stages.r]\nkind = \"resumable\"\ntarget = {target}\nstop_file = \"{}\"\n", stop_file(f).display()));
}

fn stop_file(f: &Fixture) -> PathBuf {
    f.path("stop")
}

fn key(f: &Fixture) -> String {
    f.plan(&Selection::default()).stage("r").unwrap().key.clone()
}

fn work(f: &Fixture, key: &str) -> PathBuf {
    f.store().join("work").join(key)
}

fn pending(f: &Fixture) -> Vec<(String, String)> {
    LockFile::read(&f.path("pipeline.lock")).0.pending.into_iter().collect()
}

#[test]
fn a_failed_stage_keeps_its_work_dir_and_the_rerun_resumes_from_it() {
    let f = fixture(5);
    let k = key(&f);
    let e = f.run_with(&Selection::default(), 1).unwrap_err().to_string();
    assert!(e.contains("stopped after unit 2"), "{e}");
    assert!(!f.store().join("out").join(&k).exists());
    assert_eq!(std::fs::read_dir(f.store().join("tmp")).unwrap().count(), 0, "the failed output is deleted");
    assert_eq!(read(&work(&f, &k).join("progress")), "2");
    assert_eq!(pending(&f), [("r".to_string(), k.clone())]);

    // `clean` keeps the scratch of a pending key.
    let report = gc::gc(&Store::new(f.store()), false).unwrap();
    assert!(report.tmp_removed.is_empty(), "{:?}", report.tmp_removed);
    assert!(work(&f, &k).is_dir());

    std::fs::remove_file(stop_file(&f)).unwrap();
    f.run();
    assert_eq!(read(&f.output("r").join("resumed_from.txt")), "2");
    assert!(!work(&f, &k).exists(), "the scratch is deleted once the output is installed");
    assert_eq!(std::fs::read_dir(f.store().join("work")).unwrap().count(), 0, "its lock file too");
    assert!(pending(&f).is_empty());
    assert!(!read(&f.path("pipeline.lock")).contains("pending"), "an empty `pending` is not written");
}

#[test]
fn another_key_starts_fresh_and_clean_drops_the_scratch_no_lock_plans() {
    let f = fixture(5);
    let old = key(&f);
    assert!(f.run_with(&Selection::default(), 1).is_err());
    // Another parameter value is another key: a fresh scratch, nothing resumed.
    write(&f, 6);
    std::fs::remove_file(stop_file(&f)).unwrap();
    let new = key(&f);
    assert_ne!(new, old);
    f.run();
    assert_eq!(read(&f.output("r").join("resumed_from.txt")), "0");
    assert_eq!(read(&work(&f, &old).join("progress")), "2", "a run of another key leaves the old scratch alone");
    assert!(pending(&f).is_empty(), "the pipeline no longer plans the old key");

    let dry = gc::gc(&Store::new(f.store()), true).unwrap();
    assert_eq!(dry.tmp_removed, [work(&f, &old)]);
    assert!(work(&f, &old).is_dir(), "a dry run deletes nothing");
    let report = gc::gc(&Store::new(f.store()), false).unwrap();
    assert_eq!(report.tmp_removed, [work(&f, &old)]);
    assert!(report.bytes > 0);
    assert!(!work(&f, &old).exists());
    assert_eq!(std::fs::read_dir(f.store().join("work")).unwrap().count(), 0, "its lock file too");
}

#[test]
fn force_starts_from_an_empty_work_dir() {
    let f = fixture(5);
    assert!(f.run_with(&Selection::default(), 1).is_err());
    std::fs::remove_file(stop_file(&f)).unwrap();
    f.run_with(&Selection { force: true, ..Default::default() }, 1).unwrap();
    assert_eq!(read(&f.output("r").join("resumed_from.txt")), "0");
}

#[test]
fn a_leftover_scratch_of_a_complete_key_is_garbage() {
    // A kill between installing the output and deleting the scratch leaves both.
    let f = fixture(3);
    std::fs::remove_file(stop_file(&f)).unwrap();
    f.run();
    let k = key(&f);
    std::fs::create_dir_all(work(&f, &k)).unwrap();
    std::fs::write(work(&f, &k).join("progress"), "3").unwrap();
    let report = gc::gc(&Store::new(f.store()), false).unwrap();
    assert_eq!(report.tmp_removed, [work(&f, &k)]);
    assert_eq!(report.kept, 1);
    assert!(f.run().ran.is_empty());
}

#[test]
fn one_process_at_a_time_runs_a_key() {
    let f = fixture(3);
    std::fs::remove_file(stop_file(&f)).unwrap();
    let k = key(&f);
    let store = Store::new(f.store());
    // Stands in for another process running the same key.
    let guard = store.lock_work(&k).unwrap();
    assert!(store.try_lock_work(&k).unwrap().is_none());
    std::thread::scope(|s| {
        let run = s.spawn(|| f.run_with(&Selection::default(), 1));
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert!(!f.store().join("out").join(&k).exists(), "the stage ran while its key was locked");
        drop(guard);
        run.join().unwrap().unwrap();
    });
    assert_eq!(read(&f.output("r").join("resumed_from.txt")), "0");
}
