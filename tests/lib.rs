//! Shared helpers for the end-to-end tests: small stage kinds that stand in for the real
//! (heavy) ones, and a `Fixture` holding a pipeline in a temporary folder.
//!
//! The test kinds write what they saw (parameters, input chain, threads) into their output
//! and append their name to a journal file, which is how tests count executions
//! independently of what the engine reports.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use latte_engine::{
    pipeline, runner, Cancel, InputSpec, LoadOptions, ParamSpec, ParamType, Params, Pipeline, Plan, Registry, Report, RunOptions,
    Selection, Silent, Stage, StageContext, StageError,
};

const RECORD_PARAMS: &[ParamSpec] = &[
    ParamSpec { name: "value", ty: ParamType::Int, default: Some("0"), help: "an integer recorded in the output" },
    ParamSpec { name: "rate", ty: ParamType::Float, default: Some("0.5"), help: "a number recorded in the output" },
    ParamSpec { name: "label", ty: ParamType::Str, default: Some("\"\""), help: "a string recorded in the output" },
    ParamSpec { name: "sizes", ty: ParamType::IntList, default: Some("[]"), help: "a list recorded in the output" },
    ParamSpec { name: "data", ty: ParamType::Path, default: Some("\"\""), help: "external data whose content is copied into the output" },
    ParamSpec {
        name: "weights",
        ty: ParamType::OptionalPath,
        default: Some("\"\""),
        help: "a file that may not exist yet; records whether it does",
    },
    ParamSpec { name: "device", ty: ParamType::Device, default: Some("\"cpu\""), help: "a compute device name (keyed by its kind)" },
    ParamSpec { name: "fail", ty: ParamType::Bool, default: Some("false"), help: "return an error instead of finishing" },
    ParamSpec { name: "panic", ty: ParamType::Bool, default: Some("false"), help: "panic instead of finishing" },
    ParamSpec { name: "sleep_ms", ty: ParamType::Int, default: Some("0"), help: "sleep this long before writing" },
    ParamSpec { name: "journal", ty: ParamType::Str, default: Some("\"\""), help: "append the stage name here on every run" },
];

const RECORD_INPUTS: &[InputSpec] = &[
    InputSpec { name: "a", required: false, help: "an upstream output" },
    InputSpec { name: "b", required: false, help: "another upstream output" },
];

const JOIN_INPUTS: &[InputSpec] = &[InputSpec { name: "src", required: true, help: "the upstream output to extend" }];

const JOIN_PARAMS: &[ParamSpec] = &[
    ParamSpec { name: "value", ty: ParamType::Int, default: None, help: "required integer" },
    ParamSpec { name: "journal", ty: ParamType::Str, default: Some("\"\""), help: "append the stage name here on every run" },
];

const SLOW_PARAMS: &[ParamSpec] = &[
    ParamSpec { name: "files", ty: ParamType::Int, default: Some("10"), help: "number of files to write" },
    ParamSpec { name: "delay_ms", ty: ParamType::Int, default: Some("50"), help: "pause before each file" },
];

/// A configurable test kind: `record`/`leaf` (optional inputs `a`, `b`) and `join` (required
/// input `src`, required `value`). Output: `params.json`, `chain.txt` (the inputs' chains
/// plus `name=value`), `threads.txt`, `pool.txt` (rayon's thread count inside the stage),
/// `span.txt` (start and end, ms since the epoch) and `metrics.json` (`{"value": v, "depth": chain length}`).
pub struct Record {
    pub kind: &'static str,
    pub version: &'static str,
}

impl Stage for Record {
    fn kind(&self) -> &'static str {
        self.kind
    }
    fn version(&self) -> &'static str {
        self.version
    }
    fn params(&self) -> &'static [ParamSpec] {
        if self.kind == "join" {
            JOIN_PARAMS
        } else {
            RECORD_PARAMS
        }
    }
    fn inputs(&self) -> &'static [InputSpec] {
        if self.kind == "join" {
            JOIN_INPUTS
        } else {
            RECORD_INPUTS
        }
    }
    fn validate(&self, params: &Params) -> Result<(), String> {
        match params.values.get("sizes").and_then(|v| v.as_array()) {
            Some(s) if s.iter().any(|v| v.as_integer().is_some_and(|i| i < 0)) => Err("`sizes` must not hold negative numbers".into()),
            _ => Ok(()),
        }
    }
    fn run(&self, ctx: &StageContext<'_>) -> Result<(), StageError> {
        let start = now_ms();
        if let Ok(j) = ctx.params.str("journal") {
            if !j.is_empty() {
                let mut f = std::fs::OpenOptions::new().create(true).append(true).open(j)?;
                // one write call: with O_APPEND concurrent stages cannot interleave their lines
                // (`writeln!` may write the name and the newline separately)
                f.write_all(format!("{}\n", ctx.name).as_bytes())?;
            }
        }
        if ctx.params.values.contains_key("sleep_ms") {
            std::thread::sleep(Duration::from_millis(ctx.params.u64("sleep_ms")?));
        }
        if ctx.params.values.contains_key("fail") && ctx.params.bool("fail")? {
            ctx.progress.log("about to fail");
            std::fs::write(ctx.out.join("partial.txt"), "half-written")?;
            return Err(anyhow::anyhow!("asked to fail").context(format!("stage {}", ctx.name)).into());
        }
        if ctx.params.values.contains_key("panic") && ctx.params.bool("panic")? {
            std::fs::write(ctx.out.join("partial.txt"), "half-written")?;
            panic!("stage {} panics on purpose", ctx.name);
        }
        let mut chain = String::new();
        for dir in ctx.inputs.values() {
            chain.push_str(&std::fs::read_to_string(dir.join("chain.txt")).context("reading an input's chain.txt")?);
        }
        let value = ctx.params.int("value")?;
        chain.push_str(&format!("{}={value}\n", ctx.name));
        if let Ok(data) = ctx.params.path("data") {
            if !data.as_os_str().is_empty() {
                std::fs::copy(&data, ctx.out.join("data.copy"))?;
            }
        }
        if let Ok(w) = ctx.params.path("weights") {
            if !w.as_os_str().is_empty() {
                std::fs::write(ctx.out.join("weights.txt"), if w.exists() { "present" } else { "absent" })?;
            }
        }
        let params: serde_json::Map<String, serde_json::Value> =
            ctx.params.values.iter().map(|(k, v)| (k.clone(), serde_json::to_value(v).unwrap_or_default())).collect();
        std::fs::write(ctx.out.join("params.json"), serde_json::to_vec_pretty(&params)?)?;
        std::fs::write(ctx.out.join("threads.txt"), ctx.threads.to_string())?;
        // the rayon pool the stage's parallel work runs in
        std::fs::write(ctx.out.join("pool.txt"), rayon::current_num_threads().to_string())?;
        let depth = chain.lines().count();
        std::fs::write(ctx.out.join("metrics.json"), serde_json::json!({ "value": value, "depth": depth }).to_string())?;
        std::fs::write(ctx.out.join("chain.txt"), chain)?;
        std::fs::write(ctx.out.join("span.txt"), format!("{start} {}", now_ms()))?;
        Ok(())
    }
}

/// Writes `files` files of 64 KiB one by one with a pause before each, reporting progress;
/// stops with `Interrupted` before a file once the run is cancelled (a long stage's safe point).
pub struct Slow;

impl Stage for Slow {
    fn kind(&self) -> &'static str {
        "slow"
    }
    fn version(&self) -> &'static str {
        "1"
    }
    fn params(&self) -> &'static [ParamSpec] {
        SLOW_PARAMS
    }
    fn inputs(&self) -> &'static [InputSpec] {
        &[]
    }
    fn run(&self, ctx: &StageContext<'_>) -> Result<(), StageError> {
        let files = ctx.params.u64("files")?;
        ctx.progress.set_length(files);
        let mut chain = String::new();
        for i in 0..files {
            // Under anyhow context: the runner finds it in the chain below.
            ctx.check_cancelled().with_context(|| format!("stage {} stopped after {i} files", ctx.name))?;
            std::thread::sleep(Duration::from_millis(ctx.params.u64("delay_ms")?));
            std::fs::write(ctx.out.join(format!("part-{i:04}.bin")), vec![i as u8; 64 * 1024])?;
            chain.push_str(&format!("part{i}\n"));
            ctx.progress.inc(1);
        }
        std::fs::write(ctx.out.join("chain.txt"), chain)?;
        Ok(())
    }
}

/// `curve`: stands in for `eval_curve`. Writes `curve.json` with an `FVD-2` curve over steps
/// 1, 2, 3 falling from `value` (and a `FID-4` one), and `metrics.json` with the last value.
pub struct Curve;

impl Stage for Curve {
    fn kind(&self) -> &'static str {
        "curve"
    }
    fn version(&self) -> &'static str {
        "1"
    }
    fn params(&self) -> &'static [ParamSpec] {
        &RECORD_PARAMS[..1]
    }
    fn inputs(&self) -> &'static [InputSpec] {
        RECORD_INPUTS
    }
    fn run(&self, ctx: &StageContext<'_>) -> Result<(), StageError> {
        let v = ctx.params.int("value")? as f64;
        let line: Vec<[f64; 2]> = (1..=3).map(|s| [s as f64, v / s as f64]).collect();
        let fid: Vec<[f64; 2]> = (1..=3).map(|s| [s as f64, 2.0 * v / s as f64]).collect();
        let curve = serde_json::json!({"x": "training step", "curves": {"FVD-2": line, "FID-4": fid}});
        std::fs::write(ctx.out.join("curve.json"), curve.to_string())?;
        std::fs::write(ctx.out.join("metrics.json"), serde_json::json!({"fvd": {"value": v / 3.0}}).to_string())?;
        Ok(())
    }
}

/// The test kinds; `leaf_version` lets a test bump one kind's version.
pub fn registry(leaf_version: &'static str) -> Registry {
    let mut r = Registry::new();
    r.register(Record { kind: "record", version: "1" });
    r.register(Record { kind: "join", version: "1" });
    r.register(Record { kind: "leaf", version: leaf_version });
    r.register(Slow);
    r.register(Curve);
    r
}

pub fn now_ms() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0)
}

/// A pipeline file in a fresh temporary folder, with a journal of stage executions.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub registry: Registry,
}

impl Fixture {
    /// Writes `pipeline.toml`; `$JOURNAL` in the text is replaced with the journal's path.
    pub fn new(pipeline: &str) -> Fixture {
        let dir = tempfile::tempdir().expect("temporary directory");
        let f = Fixture { dir, registry: registry("1") };
        f.write(pipeline);
        f
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn pipeline_file(&self) -> PathBuf {
        self.path("pipeline.toml")
    }

    pub fn write(&self, pipeline: &str) {
        let text = pipeline.replace("$JOURNAL", &self.journal_file().to_string_lossy());
        std::fs::write(self.pipeline_file(), text).expect("write pipeline");
    }

    pub fn journal_file(&self) -> PathBuf {
        self.path("journal.txt")
    }

    /// Stage names in execution order since the last call (the journal is then emptied).
    pub fn take_journal(&self) -> Vec<String> {
        let text = std::fs::read_to_string(self.journal_file()).unwrap_or_default();
        let _ = std::fs::remove_file(self.journal_file());
        let mut names: Vec<String> = text.lines().map(str::to_owned).collect();
        names.sort();
        names
    }

    pub fn load(&self) -> latte_engine::Result<Pipeline> {
        pipeline::load(&self.pipeline_file(), &self.registry, &LoadOptions::default())
    }

    pub fn plan(&self, selection: &Selection) -> Plan {
        Plan::new(&self.load().expect("valid pipeline"), selection).expect("plan")
    }

    pub fn run_with(&self, selection: &Selection, jobs: usize) -> latte_engine::Result<Report> {
        self.run_cancellable(selection, jobs, None)
    }

    pub fn run_cancellable(&self, selection: &Selection, jobs: usize, cancel: Option<&Cancel>) -> latte_engine::Result<Report> {
        let mut plan = Plan::new(&self.load()?, selection)?;
        runner::run(std::slice::from_mut(&mut plan), &RunOptions { jobs, observer: &Silent, cancel })
    }

    pub fn run(&self) -> Report {
        self.run_with(&Selection::default(), 2).expect("run")
    }

    /// The output directory of stage `name` under the current pipeline.
    pub fn output(&self, name: &str) -> PathBuf {
        self.plan(&Selection::default()).stage(name).expect("stage").output.clone()
    }

    pub fn store(&self) -> PathBuf {
        self.path(".latte")
    }
}

pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Sorted names of stages a report says ran.
pub fn ran(report: &Report) -> Vec<String> {
    let mut names: Vec<String> = report.ran.iter().map(|(n, _, _)| n.clone()).collect();
    names.sort();
    names
}
