//! The contract between the engine and a stage kind.
//!
//! A stage kind (videos, frames, latents, train, ...) is a `Stage` implementation in the
//! `latte-stages` crate. The engine validates a stage's parameters against `params()` and its
//! upstream stages against `inputs()` before anything runs, computes its cache key from
//! `kind()`, `version()`, the resolved parameters and its inputs' output digests, and calls
//! `run` with an empty temporary output directory that it renames into the store only when
//! `run` returns `Ok`.
//!
//! A stage that works for long (training) also gets a persistent scratch directory,
//! `StageContext::work` = `.latte/work/<key>/`, tied to its cache key: the engine creates it
//! before `run`, leaves it in place when the stage fails, panics or the process is killed, and
//! deletes it once the output is installed. A rerun of the same key (same kind, version,
//! parameters and inputs) therefore finds what the interrupted run left there, e.g. its
//! checkpoints, and may resume; a run with any other key gets another directory. `--force`
//! empties it first (a forced rerun starts from scratch). One process at a time runs a key:
//! the engine holds a lock on the directory while the stage runs. `clean` deletes a work
//! directory unless a lock file names its key as pending (started, not completed).
//!
//! A run can be cancelled (the CLI does it on Ctrl-C or SIGTERM): `StageContext::cancel` is
//! then set, and a stage that works for long polls it at safe points (between steps, batches,
//! clips) and returns `Interrupted` (`ctx.check_cancelled()?`), after saving in `work` what it
//! can resume from. An interrupted stage is not installed, like a failed one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The error a stage returns. Stages are adapters and may use `anyhow`; `anyhow::Error`
/// converts into this with `?` or `.into()`.
pub type StageError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The type of one parameter, checked when the pipeline file is loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamType {
    Int,
    Float,
    Bool,
    Str,
    /// A path to external data (a dataset folder, weights). Relative paths resolve against the
    /// pipeline file's folder. The engine hashes the content it points to into the cache key.
    Path,
    /// Like `Path`, but the file may not exist yet (weights fetched later): an absent file is
    /// keyed as absent, so fetching it later reruns the stage, and the stage reports what is
    /// missing instead of the pipeline failing to load.
    OptionalPath,
    IntList,
    FloatList,
    StrList,
    /// A compute device name (`cpu`, `wgpu`, `cuda`, `cuda:1`, `cuda:0,1`). Float results
    /// differ between backends but not between GPUs of one kind, so the cache key records the
    /// kind only ([`device_kind`]): moving a run to another GPU, or to more of them, reuses its
    /// cached outputs; moving it between CPU and GPU does not.
    Device,
}

/// The part of a device name a cache key records: the backend kind, lower-case, without GPU
/// numbers; `flex` and `default` (older names of the CPU backend) and an empty name are `cpu`.
pub fn device_kind(name: &str) -> String {
    let head = name.split(':').next().unwrap_or("").trim().to_ascii_lowercase();
    match head.as_str() {
        "" | "flex" | "default" => "cpu".to_owned(),
        _ => head,
    }
}

/// One parameter a stage kind accepts.
#[derive(Clone, Copy, Debug)]
pub struct ParamSpec {
    pub name: &'static str,
    pub ty: ParamType,
    /// The default as a TOML literal (`"256"`, `"\"ffs\""`, `"[1, 2]"`), or `None` when the
    /// parameter is required.
    pub default: Option<&'static str>,
    pub help: &'static str,
}

impl ParamSpec {
    /// The default parsed as a TOML value: `None` when the parameter is required or its
    /// literal does not parse (a bug in the kind, which loading a pipeline reports).
    pub fn default_value(&self) -> Option<toml::Value> {
        let table: toml::Table = toml::from_str(&format!("v = {}", self.default?)).ok()?;
        table.get("v").cloned()
    }
}

/// One named upstream slot a stage kind consumes (e.g. `frames`, `vae`).
#[derive(Clone, Copy, Debug)]
pub struct InputSpec {
    pub name: &'static str,
    pub required: bool,
    pub help: &'static str,
}

/// Progress reporting for a running stage; the engine draws it as a bar or as log lines.
pub trait Progress: Send + Sync {
    /// Total units of work, for the bar and its ETA; the bar starts again from 0 (a stage with
    /// phases, such as FVD then FID, calls it once per phase).
    fn set_length(&self, len: u64);
    fn inc(&self, delta: u64);
    /// A short status shown beside the bar (e.g. `loss 0.153`).
    fn set_message(&self, msg: &str);
    /// A line of log output that stays on screen (and in the stage's log file).
    fn log(&self, line: &str);
}

/// A progress sink that discards everything (tests, library callers).
pub struct NoProgress;

impl Progress for NoProgress {
    fn set_length(&self, _: u64) {}
    fn inc(&self, _: u64) {}
    fn set_message(&self, _: &str) {}
    fn log(&self, _: &str) {}
}

/// A run's cancellation token: set once, by whoever wants the run to stop (the CLI's signal
/// handler), and read by the runner and by stages at their safe points. Clones share the flag.
#[derive(Clone, Debug, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    pub fn new() -> Self {
        Self::default()
    }

    /// A token backed by `flag`, so that code which can only set an `AtomicBool` (a signal
    /// handler) cancels the run.
    pub fn from_flag(flag: Arc<AtomicBool>) -> Self {
        Self(flag)
    }

    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// The flag itself, for a library that polls an `AtomicBool` and knows nothing of the engine.
    pub fn flag(&self) -> &AtomicBool {
        &self.0
    }
}

/// What a stage returns when it stopped because the run was cancelled. The runner recognises
/// it anywhere in the error's `source()` chain and reports the run as interrupted, not failed.
/// Beware of wrappers that hide what they wrap: an `anyhow::Error` made from it and boxed with
/// `into()` has a chain that starts below it; return `Box::new(Interrupted)` instead.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, thiserror::Error)]
#[error("interrupted")]
pub struct Interrupted;

impl Interrupted {
    /// Whether `e` or one of its sources is an `Interrupted`.
    pub fn is_in(e: &(dyn std::error::Error + 'static)) -> bool {
        let mut next = Some(e);
        while let Some(e) = next {
            if e.is::<Interrupted>() {
                return true;
            }
            next = e.source();
        }
        false
    }
}

/// What a stage sees when it runs.
pub struct StageContext<'a> {
    /// The stage's name in the pipeline file (`[stages.NAME]`).
    pub name: &'a str,
    /// Parameters with defaults filled in and shared references resolved.
    pub params: &'a Params,
    /// Input slot name -> the complete, read-only output directory of the upstream stage.
    pub inputs: &'a BTreeMap<String, PathBuf>,
    /// An empty directory the stage writes all its outputs into.
    pub out: &'a Path,
    /// The stage's persistent scratch directory (exists; empty unless an earlier run of the
    /// same key was interrupted). Write state worth resuming from here, atomically (temporary
    /// name, then rename), since a kill can stop the stage at any point. Nothing here is part
    /// of the output: copy what downstream stages need into `out`.
    pub work: &'a Path,
    /// A directory shared by every run of this stage kind (`.latte/memo/<kind>/`), for results
    /// the stage caches under content keys of its own, finer than its cache key: `eval_curve`
    /// keeps one evaluation per checkpoint there, keyed by the weights' digest and the
    /// settings, so a longer run evaluates only its new checkpoints. An entry must be a pure
    /// function of its key and be written atomically (temporary name, then rename). `gc` leaves
    /// it alone; deleting it costs recomputation only.
    pub memo: &'a Path,
    /// Threads this stage may use (its share of the global budget).
    pub threads: usize,
    pub progress: &'a dyn Progress,
    /// Set when the run is cancelled; see `check_cancelled`.
    pub cancel: &'a Cancel,
}

impl<'a> StageContext<'a> {
    /// The context of a stage run inside this one (a composite stage running another kind):
    /// its own parameters, inputs, output and scratch folders; the memo, threads and cancel
    /// token are this run's, and its progress goes nowhere.
    pub fn nested(&self, params: &'a Params, inputs: &'a BTreeMap<String, PathBuf>, out: &'a Path, work: &'a Path) -> StageContext<'a> {
        StageContext {
            name: self.name,
            params,
            inputs,
            out,
            work,
            memo: self.memo,
            threads: self.threads,
            progress: &NoProgress,
            cancel: self.cancel,
        }
    }

    /// The output directory of the upstream stage bound to `slot`.
    pub fn input(&self, slot: &str) -> Result<&Path, StageError> {
        self.inputs
            .get(slot)
            .map(PathBuf::as_path)
            .ok_or_else(|| format!("stage `{}` has no input bound to slot `{slot}`", self.name).into())
    }

    pub fn cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// `Err(Interrupted)` once the run is cancelled: call it at a safe point of a long loop
    /// (`ctx.check_cancelled()?`), so an interrupt stops the stage within one iteration.
    pub fn check_cancelled(&self) -> Result<(), Interrupted> {
        if self.cancelled() {
            Err(Interrupted)
        } else {
            Ok(())
        }
    }
}

/// A stage kind.
pub trait Stage: Send + Sync {
    /// The `kind = "..."` name in the pipeline file.
    fn kind(&self) -> &'static str;
    /// Bumped whenever the meaning of the outputs changes; part of the cache key.
    fn version(&self) -> &'static str;
    fn params(&self) -> &'static [ParamSpec];
    fn inputs(&self) -> &'static [InputSpec];
    /// Parameters added after the kind's outputs existed: each is left out of the cache key
    /// while it holds its declared default, so adding an option (off by default) keeps every
    /// cached output of the kind, and only a run that sets it trains anew.
    fn unkeyed_defaults(&self) -> &'static [&'static str] {
        &[]
    }
    /// Checks across parameters that types alone cannot express; returns a message naming
    /// the offending key.
    fn validate(&self, _params: &Params) -> Result<(), String> {
        Ok(())
    }
    fn run(&self, ctx: &StageContext<'_>) -> Result<(), StageError>;
}

/// Resolved, type-checked parameters of one stage.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Params {
    pub values: BTreeMap<String, toml::Value>,
}

impl Params {
    /// Every parameter of `stage` at its default, then the values `set` (a composite stage's
    /// parameters for a kind it runs). A default that does not parse is the kind's bug; the
    /// error names it.
    pub fn with_defaults(stage: &dyn Stage, set: impl IntoIterator<Item = (String, toml::Value)>) -> Result<Params, String> {
        let mut values = BTreeMap::new();
        for spec in stage.params() {
            if let Some(lit) = spec.default {
                let value = spec
                    .default_value()
                    .ok_or_else(|| format!("kind `{}` declares an invalid default `{lit}` for `{}`", stage.kind(), spec.name))?;
                values.insert(spec.name.to_owned(), value);
            }
        }
        values.extend(set);
        Ok(Params { values })
    }

    fn get(&self, key: &str) -> Result<&toml::Value, StageError> {
        self.values.get(key).ok_or_else(|| format!("missing parameter `{key}`").into())
    }

    pub fn int(&self, key: &str) -> Result<i64, StageError> {
        self.get(key)?.as_integer().ok_or_else(|| format!("parameter `{key}` is not an integer").into())
    }

    pub fn usize(&self, key: &str) -> Result<usize, StageError> {
        let v = self.int(key)?;
        usize::try_from(v).map_err(|_| format!("parameter `{key}` must be >= 0, got {v}").into())
    }

    pub fn u64(&self, key: &str) -> Result<u64, StageError> {
        let v = self.int(key)?;
        u64::try_from(v).map_err(|_| format!("parameter `{key}` must be >= 0, got {v}").into())
    }

    pub fn float(&self, key: &str) -> Result<f64, StageError> {
        match self.get(key)? {
            toml::Value::Float(f) => Ok(*f),
            toml::Value::Integer(i) => Ok(*i as f64),
            _ => Err(format!("parameter `{key}` is not a number").into()),
        }
    }

    pub fn bool(&self, key: &str) -> Result<bool, StageError> {
        self.get(key)?.as_bool().ok_or_else(|| format!("parameter `{key}` is not a boolean").into())
    }

    pub fn str(&self, key: &str) -> Result<&str, StageError> {
        self.get(key)?.as_str().ok_or_else(|| format!("parameter `{key}` is not a string").into())
    }

    /// A `Path` parameter, already resolved against the pipeline file's folder.
    pub fn path(&self, key: &str) -> Result<PathBuf, StageError> {
        self.str(key).map(PathBuf::from)
    }

    /// An optional string parameter whose default is `""` (meaning "not set").
    pub fn opt_str(&self, key: &str) -> Result<Option<&str>, StageError> {
        self.str(key).map(|s| (!s.is_empty()).then_some(s))
    }

    pub fn int_list(&self, key: &str) -> Result<Vec<i64>, StageError> {
        let arr = self.get(key)?.as_array().ok_or_else(|| format!("parameter `{key}` is not a list"))?;
        arr.iter().map(|v| v.as_integer().ok_or_else(|| format!("parameter `{key}` holds a non-integer").into())).collect()
    }

    pub fn float_list(&self, key: &str) -> Result<Vec<f64>, StageError> {
        let arr = self.get(key)?.as_array().ok_or_else(|| format!("parameter `{key}` is not a list"))?;
        arr.iter()
            .map(|v| match v {
                toml::Value::Float(f) => Ok(*f),
                toml::Value::Integer(i) => Ok(*i as f64),
                _ => Err(format!("parameter `{key}` holds a non-number").into()),
            })
            .collect()
    }

    pub fn str_list(&self, key: &str) -> Result<Vec<String>, StageError> {
        let arr = self.get(key)?.as_array().ok_or_else(|| format!("parameter `{key}` is not a list"))?;
        arr.iter().map(|v| v.as_str().map(str::to_owned).ok_or_else(|| format!("parameter `{key}` holds a non-string").into())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Kind(&'static [ParamSpec]);
    impl Stage for Kind {
        fn kind(&self) -> &'static str {
            "kind"
        }
        fn version(&self) -> &'static str {
            "1"
        }
        fn params(&self) -> &'static [ParamSpec] {
            self.0
        }
        fn inputs(&self) -> &'static [InputSpec] {
            &[]
        }
        fn run(&self, _: &StageContext<'_>) -> Result<(), StageError> {
            Ok(())
        }
    }

    #[test]
    fn with_defaults_fills_every_default_then_the_values_set() {
        const SPECS: &[ParamSpec] = &[
            ParamSpec { name: "steps", ty: ParamType::Int, default: Some("100"), help: "" },
            ParamSpec { name: "method", ty: ParamType::Str, default: Some("\"ddpm\""), help: "" },
            ParamSpec { name: "required", ty: ParamType::Int, default: None, help: "" },
        ];
        let p = Params::with_defaults(&Kind(SPECS), [("steps".to_owned(), toml::Value::Integer(7))]).unwrap();
        assert_eq!((p.int("steps").unwrap(), p.str("method").unwrap()), (7, "ddpm"));
        assert!(!p.values.contains_key("required"), "a required parameter has no default to fill");

        const BAD: &[ParamSpec] = &[ParamSpec { name: "lr", ty: ParamType::Float, default: Some("1e"), help: "" }];
        let e = Params::with_defaults(&Kind(BAD), []).unwrap_err();
        assert_eq!(e, "kind `kind` declares an invalid default `1e` for `lr`");
    }
}
