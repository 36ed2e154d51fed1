//! Executes plans: every stage that must run, in dependency order, independent stages
//! concurrently within a global thread budget.
//!
//! Several plans (the points of a grid) run together: stages are deduplicated by cache key,
//! so a stage shared by every point executes once. After each stage completes, the lock file
//! of every plan that contains it is rewritten, so an interrupted run keeps what it finished.
//!
//! Cancellation (`RunOptions::cancel`, set by the CLI on SIGINT/SIGTERM): once it is set no
//! stage starts, the running ones see it through `StageContext::cancel` and return
//! `Interrupted` at their next safe point, and `run` returns `Error::Interrupted` when they
//! have all returned. An interrupted stage is handled like a failed one (its `tmp/` is deleted,
//! its `work/<key>` kept, so the rerun resumes). A stage that completes after the signal (one
//! with no safe point left to stop at) is installed as usual: installing is one rename, so its
//! output is either complete in the store or absent, never partial, and discarding finished
//! work would only make the rerun repeat it.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::{mpsc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::error::{Error, Result};
use crate::hash::Hasher;
use crate::lock::{LockEntry, LockFile, LOCK_SCHEMA};
use crate::plan::Plan;
use crate::stage::{Cancel, Interrupted, Progress, StageContext};
use crate::store::{remove_dir, Store};

/// A stage as the runner shows it to an `Observer`.
#[derive(Clone, Debug)]
pub struct JobInfo {
    pub name: String,
    pub kind: String,
    pub key: String,
    pub threads: usize,
}

/// Receives what the runner does; the CLI draws progress bars from it.
pub trait Observer: Sync {
    /// Called once with the number of stages that will execute.
    fn begin(&self, _total: usize) {}
    /// A stage starts; the returned sink receives its progress.
    fn start(&self, job: &JobInfo) -> Box<dyn Progress>;
    /// A stage ended: `Ok(seconds)` or `Err(message)`.
    fn finish(&self, _job: &JobInfo, _result: &std::result::Result<f64, String>) {}
}

/// An observer that shows nothing.
pub struct Silent;

impl Observer for Silent {
    fn start(&self, _: &JobInfo) -> Box<dyn Progress> {
        Box::new(crate::stage::NoProgress)
    }
}

pub struct RunOptions<'a> {
    /// Global thread budget shared by concurrently running stages.
    pub jobs: usize,
    pub observer: &'a dyn Observer,
    /// Stops the run at the next safe point once set; `None`: the run cannot be cancelled.
    pub cancel: Option<&'a Cancel>,
}

/// What a run did.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Stages executed, in completion order: (name, key, seconds).
    pub ran: Vec<(String, String, f64)>,
    /// Selected stages whose output was already in the store.
    pub cached: Vec<String>,
}

struct Job {
    plan: usize,
    stage: usize,
    force: bool,
    /// Input keys that are themselves jobs of this run.
    waits_on: BTreeSet<String>,
}

/// Runs every stage marked `run` in `plans` and updates their lock files.
pub fn run(plans: &mut [Plan], options: &RunOptions<'_>) -> Result<Report> {
    let stores: BTreeMap<PathBuf, Store> = plans.iter().map(|p| (p.store.root().to_owned(), p.store.clone())).collect();
    let _guards = stores.values().map(Store::lock_shared).collect::<Result<Vec<_>>>()?;

    // Unique jobs by key; the first plan that has a key runs it.
    let mut jobs: BTreeMap<String, Job> = BTreeMap::new();
    for (pi, plan) in plans.iter().enumerate() {
        for (si, s) in plan.stages.iter().enumerate().filter(|(_, s)| s.run) {
            let job = jobs.entry(s.key.clone()).or_insert(Job { plan: pi, stage: si, force: false, waits_on: BTreeSet::new() });
            job.force |= s.force;
        }
    }
    let job_keys: BTreeSet<String> = jobs.keys().cloned().collect();
    for job in jobs.values_mut() {
        let s = &plans[job.plan].stages[job.stage];
        job.waits_on = s.entry.inputs.values().filter(|k| job_keys.contains(*k)).cloned().collect();
    }

    let mut report = Report::default();
    // Running stages borrow the plans, so lock files are updated in this copy meanwhile.
    let mut locks: Vec<LockFile> = plans.iter().map(|p| p.lock.clone()).collect();
    // Selected stages already complete: record them in the lock now.
    for (plan, lock) in plans.iter().zip(locks.iter_mut()) {
        for s in plan.stages.iter().filter(|s| s.selected && !s.run) {
            let entry = completed_entry(&plan.store, &s.entry)?;
            report.cached.push(s.decl.name.clone());
            lock.stages.insert(s.decl.name.clone(), entry);
        }
        // Stages about to run are pending until they complete: their scratch directories
        // outlive a kill, and `clean` must keep them for the rerun to resume.
        for s in plan.stages.iter().filter(|s| s.run) {
            lock.pending.insert(s.decl.name.clone(), s.key.clone());
        }
        write_lock(plan, lock)?;
    }
    let shared: &[Plan] = plans;

    let never = Cancel::new();
    let cancel = options.cancel.unwrap_or(&never);
    options.observer.begin(jobs.len());
    let budget = options.jobs.max(1);
    let mut free = budget;
    let mut done: BTreeSet<String> = BTreeSet::new();
    let mut running: BTreeMap<String, usize> = BTreeMap::new();
    let mut failure: Option<Error> = None;
    // Keys of stages that returned `Interrupted`, and their names.
    let mut stopped_keys: BTreeSet<String> = BTreeSet::new();
    let mut stopped: Vec<String> = Vec::new();
    let (tx, rx) = mpsc::channel::<(String, Result<LockEntry>)>();

    std::thread::scope(|scope| -> Result<()> {
        loop {
            // A stopped stage ends the run even if the token was not set (its dependents
            // would find no input).
            if failure.is_none() && stopped.is_empty() && !cancel.is_cancelled() {
                let ready: Vec<String> = jobs
                    .iter()
                    .filter(|(k, j)| !done.contains(*k) && !running.contains_key(*k) && j.waits_on.iter().all(|w| done.contains(w)))
                    .map(|(k, _)| k.clone())
                    .collect();
                let mut left = ready.len();
                for key in ready {
                    if free == 0 {
                        break;
                    }
                    // Share what is free among the stages ready now; later ones get what is
                    // returned when these finish.
                    let threads = (free / left).max(1);
                    left -= 1;
                    free -= threads;
                    running.insert(key.clone(), threads);
                    let job = &jobs[&key];
                    let plan = &shared[job.plan];
                    let (tx, force) = (tx.clone(), job.force);
                    let observer = options.observer;
                    scope.spawn(move || {
                        // A panic outside the stage (observer, store) must still report, or
                        // the loop below would wait for this job forever.
                        let result =
                            std::panic::catch_unwind(AssertUnwindSafe(|| execute(plan, job.stage, threads, force, observer, cancel)))
                                .unwrap_or_else(|p| {
                                    let s = &plan.stages[job.stage];
                                    Err(Error::StageFailed {
                                        stage: s.decl.name.clone(),
                                        kind: s.decl.stage.kind().to_owned(),
                                        message: format!("the runner panicked: {}", panic_message(&p)),
                                        log: plan.store.log_path(&s.key),
                                    })
                                });
                        let _ = tx.send((key, result));
                    });
                }
            }
            if running.is_empty() {
                return Ok(());
            }
            let Ok((key, result)) = rx.recv() else { return Ok(()) };
            free += running.remove(&key).unwrap_or(0);
            match result {
                Ok(entry) => {
                    done.insert(key.clone());
                    let job = &jobs[&key];
                    report.ran.push((shared[job.plan].stages[job.stage].decl.name.clone(), key.clone(), entry.seconds));
                    for (plan, lock) in shared.iter().zip(locks.iter_mut()) {
                        let names: Vec<String> = plan.stages.iter().filter(|s| s.key == key).map(|s| s.decl.name.clone()).collect();
                        for name in &names {
                            lock.stages.insert(name.clone(), entry.clone());
                            lock.pending.remove(name);
                        }
                        if !names.is_empty() {
                            write_lock(plan, lock)?;
                        }
                    }
                }
                Err(Error::Interrupted { .. }) => {
                    let job = &jobs[&key];
                    stopped.push(shared[job.plan].stages[job.stage].decl.name.clone());
                    stopped_keys.insert(key);
                }
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
    })?;
    let not_run: Vec<String> = jobs
        .iter()
        .filter(|(k, _)| !done.contains(*k) && !stopped_keys.contains(*k))
        .map(|(_, j)| plans[j.plan].stages[j.stage].decl.name.clone())
        .collect();
    for (plan, lock) in plans.iter_mut().zip(locks) {
        plan.lock = lock;
    }
    match failure {
        // A real failure says more than the interrupt that may have followed it.
        Some(e) => Err(e),
        None if !stopped.is_empty() || !not_run.is_empty() => Err(Error::Interrupted { stopped, not_run }),
        None => Ok(report),
    }
}

/// The lock entry of a stage whose output is in the store: digest and timings from the
/// store's record, or a freshly computed digest if that record is missing.
fn completed_entry(store: &Store, planned: &LockEntry) -> Result<LockEntry> {
    let mut entry = planned.clone();
    match store.read_meta(&planned.key) {
        Some(meta) => {
            entry.output_digest = meta.output_digest;
            entry.started_unix = meta.started_unix;
            entry.seconds = meta.seconds;
        }
        None => entry.output_digest = Hasher::without_memo().digest(&store.output(&planned.key))?,
    }
    Ok(entry)
}

fn write_lock(plan: &Plan, lock: &mut LockFile) -> Result<()> {
    lock.schema = LOCK_SCHEMA;
    lock.pipeline = plan.pipeline.file.clone();
    // Stages no longer in the pipeline drop out of its lock.
    let names: BTreeSet<&str> = plan.stages.iter().map(|s| s.decl.name.as_str()).collect();
    lock.stages.retain(|n, _| names.contains(n.as_str()));
    // A pending key the pipeline no longer produces (its parameters changed) or that is
    // complete by now leaves nothing to resume.
    lock.pending.retain(|n, k| !plan.store.is_complete(k) && plan.stages.iter().any(|s| &s.decl.name == n && &s.key == k));
    lock.write(&plan.pipeline.lock_file)?;
    plan.store.register_lock(&plan.pipeline.lock_file)
}

/// Runs one stage into a temporary directory and installs it in the store. The stage's
/// scratch directory `work/<key>` is locked meanwhile, kept when it fails and deleted once the
/// output is installed.
fn execute(plan: &Plan, index: usize, threads: usize, force: bool, observer: &dyn Observer, cancel: &Cancel) -> Result<LockEntry> {
    let s = &plan.stages[index];
    let store = &plan.store;
    let info = JobInfo { name: s.decl.name.clone(), kind: s.decl.stage.kind().to_owned(), key: s.key.clone(), threads };
    let log_path = store.log_path(&s.key);
    let fail = |message: String| Error::StageFailed { stage: info.name.clone(), kind: info.kind.clone(), message, log: log_path.clone() };
    let interrupted = || Error::Interrupted { stopped: vec![info.name.clone()], not_run: Vec::new() };

    let inputs: BTreeMap<String, PathBuf> = s.entry.inputs.iter().map(|(slot, key)| (slot.clone(), store.output(key))).collect();
    if let Some((slot, path)) = inputs.iter().find(|(_, p)| !p.is_dir()) {
        let e = fail(format!("input `{slot}` is missing from the store ({})", path.display()));
        observer.finish(&info, &Err(e.to_string()));
        return Err(e);
    }
    let progress = Logged { inner: observer.start(&info), log: Mutex::new(None) };
    let result = locked_work(store, &s.key, &progress, || {
        if !force && store.is_complete(&s.key) {
            // Another process ran this key since the plan was made (we may have waited for it).
            return completed_entry(store, &s.entry);
        }
        // Cancelled while waiting for the key's lock: start nothing new.
        if cancel.is_cancelled() {
            return Err(interrupted());
        }
        let log = std::fs::File::create(&log_path).map_err(|e| Error::io("cannot create", &log_path, e))?;
        if let Ok(mut l) = progress.log.lock() {
            *l = Some(log);
        }
        let work = store.work(&s.key);
        if force {
            remove_dir(&work)?;
        }
        std::fs::create_dir_all(&work).map_err(|e| Error::io("cannot create", &work, e))?;
        let tmp = store.create_tmp(&s.key)?;
        let memo = store.memo(s.decl.stage.kind());
        std::fs::create_dir_all(&memo).map_err(|e| Error::io("cannot create", &memo, e))?;
        let started_unix = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let start = Instant::now();
        let ctx = StageContext {
            name: &s.decl.name,
            params: &s.decl.params,
            inputs: &inputs,
            out: &tmp,
            work: &work,
            memo: &memo,
            threads,
            progress: &progress,
            cancel,
        };
        let outcome = match std::panic::catch_unwind(AssertUnwindSafe(|| in_pool(threads, || s.decl.stage.run(&ctx)))) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) if Interrupted::is_in(e.as_ref()) => Err(interrupted()),
            Ok(Err(e)) => Err(fail(error_chain(e.as_ref()))),
            Err(panic) => Err(fail(format!("panicked: {}", panic_message(&panic)))),
        };
        let seconds = start.elapsed().as_secs_f64();
        let result = outcome.and_then(|()| {
            let mut entry = s.entry.clone();
            // The manifest and read-only files make later damage detectable (`manifest`).
            entry.output_digest = crate::manifest::seal(&tmp)?;
            entry.started_unix = started_unix;
            entry.seconds = seconds;
            // Meta first: an output never appears without its record.
            store.write_meta(&entry)?;
            store.install(&tmp, &s.key, force)?;
            Ok(entry)
        });
        match &result {
            // Never keep a failed or partial output (the scratch directory stays for a rerun).
            Err(_) => {
                let _ = remove_dir(&tmp);
            }
            // The output is installed: the scratch has served (deleted under its lock, so no
            // other process is using it). A failure costs only disk space, which `clean`
            // reclaims since the key is complete.
            Ok(_) => {
                if let Err(e) = store.remove_work(&s.key) {
                    progress.log(&format!("warning: {e}"));
                }
            }
        }
        result
    });
    match &result {
        Err(Error::Interrupted { .. }) => progress.log("interrupted: stopped at a safe point; the next run resumes"),
        Err(e) => progress.log(&format!("error: {e}")),
        Ok(_) => {}
    }
    let shown = result.as_ref().map(|e| e.seconds).map_err(|e| match e {
        Error::Interrupted { .. } => "interrupted at a safe point; the next run resumes".to_owned(),
        e => e.to_string(),
    });
    observer.finish(&info, &shown);
    result
}

/// Runs `f` holding the lock of `work/<key>`, waiting (and saying so) while another process
/// runs the same key.
fn locked_work<T>(store: &Store, key: &str, progress: &dyn Progress, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let _guard = match store.try_lock_work(key)? {
        Some(guard) => guard,
        None => {
            progress.log(&format!("waiting for another process that runs this stage (it holds {})", store.work(key).display()));
            store.lock_work(key)?
        }
    };
    f()
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_msg = s.to_string();
        if !msg.contains(&s_msg) {
            msg.push_str(": ");
            msg.push_str(&s_msg);
        }
        source = s.source();
    }
    msg
}

fn panic_message(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// Forwards progress to the observer's sink and keeps log lines in the stage's log file.
struct Logged {
    inner: Box<dyn Progress>,
    /// `None` until the stage owns its key (lines before that go to the observer only).
    log: Mutex<Option<std::fs::File>>,
}

impl Progress for Logged {
    fn set_length(&self, len: u64) {
        self.inner.set_length(len);
    }
    fn inc(&self, delta: u64) {
        self.inner.inc(delta);
    }
    fn set_message(&self, msg: &str) {
        self.inner.set_message(msg);
    }
    fn log(&self, line: &str) {
        if let Ok(mut f) = self.log.lock() {
            if let Some(f) = f.as_mut() {
                let _ = writeln!(f, "{line}");
            }
        }
        self.inner.log(line);
    }
}

/// Runs `f` as a worker of a rayon pool of `threads` threads: the stage's parallel work (tensor
/// kernels, GEMMs) then stays within its share of the budget, and the stage's own thread takes
/// part in it instead of sleeping while two other threads are woken for every parallel op
/// (5% of a training step). Without a pool (the OS refused threads) `f` runs on the global one.
fn in_pool<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    match rayon::ThreadPoolBuilder::new().num_threads(threads.max(1)).build() {
        Ok(pool) => pool.install(f),
        Err(_) => f(),
    }
}
