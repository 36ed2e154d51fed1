//! The cache matrix: change one parameter -> that stage and its downstream rerun, nothing
//! else; change nothing -> nothing runs; bump a stage's version -> it reruns.

use std::time::Instant;

use latte_engine::{
    lock::LockFile, status::Status, InputSpec, ParamSpec, ParamType, Reason, Registry, Selection, Stage, StageContext, StageError, State,
};
use latte_tests::{ran, read, registry, Fixture, Record};

/// src -> mid -> end, plus `side` (independent) and `leaf` consuming `src`.
fn pipeline(mid_value: &str) -> String {
    format!(
        r#"
[shared]
journal = "$JOURNAL"

[stages.src]
kind = "record"
value = 1
journal = "${{journal}}"

[stages.mid]
kind = "record"
inputs = {{ a = "src" }}
value = {mid_value}
journal = "${{journal}}"

[stages.end]
kind = "join"
inputs = {{ src = "mid" }}
value = 3
journal = "${{journal}}"

[stages.side]
kind = "record"
journal = "${{journal}}"

[stages.tip]
kind = "leaf"
inputs = {{ a = "src" }}
journal = "${{journal}}"
"#
    )
}

#[test]
fn nothing_changed_nothing_runs_and_the_noop_is_fast() {
    let f = Fixture::new(&pipeline("2"));
    let first = f.run();
    assert_eq!(ran(&first), ["end", "mid", "side", "src", "tip"]);
    assert_eq!(f.take_journal(), ["end", "mid", "side", "src", "tip"]);
    // Outputs flow through inputs: `end` saw src and mid.
    assert_eq!(read(&f.output("end").join("chain.txt")), "src=1\nmid=2\nend=3\n");

    let start = Instant::now();
    let second = f.run();
    let elapsed = start.elapsed();
    assert!(second.ran.is_empty(), "ran {:?}", second.ran);
    assert_eq!(second.cached.len(), 5);
    assert!(f.take_journal().is_empty());
    assert!(elapsed.as_secs_f64() < 0.5, "no-op rerun took {elapsed:?}");
}

#[test]
fn one_parameter_reruns_that_stage_and_its_downstream_only() {
    let f = Fixture::new(&pipeline("2"));
    f.run();
    f.take_journal();
    let before: Vec<_> = ["src", "side", "tip"].iter().map(|s| f.output(s)).collect();

    f.write(&pipeline("20"));
    let plan = f.plan(&Selection::default());
    assert_eq!(plan.stage("mid").unwrap().reasons, [Reason::ParamsChanged(vec!["value".into()])]);
    assert_eq!(plan.stage("end").unwrap().reasons, [Reason::InputsChanged(vec!["src".into()])]);
    assert_eq!(plan.stage("src").unwrap().state, State::Cached);
    let report = f.run();
    assert_eq!(ran(&report), ["end", "mid"]);
    assert_eq!(f.take_journal(), ["end", "mid"]);
    assert_eq!(read(&f.output("end").join("chain.txt")), "src=1\nmid=20\nend=3\n");
    // Untouched stages keep the very same output directories.
    let after: Vec<_> = ["src", "side", "tip"].iter().map(|s| f.output(s)).collect();
    assert_eq!(before, after);

    // Flipping the parameter back restores from the store: nothing runs.
    f.write(&pipeline("2"));
    assert!(f.run().ran.is_empty());
    assert!(f.take_journal().is_empty());
    assert_eq!(read(&f.output("end").join("chain.txt")), "src=1\nmid=2\nend=3\n");
}

#[test]
fn a_version_bump_reruns_that_kind_and_downstream() {
    let mut f = Fixture::new(&pipeline("2"));
    f.run();
    f.take_journal();
    f.registry = registry("2");
    let plan = f.plan(&Selection::default());
    assert_eq!(plan.stage("tip").unwrap().reasons, [Reason::VersionChanged { from: "1".into(), to: "2".into() }]);
    assert_eq!(plan.stage("tip").unwrap().reasons[0].to_string(), "code version changed (1 -> 2)");
    let report = f.run();
    assert_eq!(ran(&report), ["tip"]);
    assert_eq!(f.take_journal(), ["tip"]);
}

#[test]
fn equal_numbers_give_equal_keys_and_paths_are_keyed_by_content() {
    let f = Fixture::new("[stages.a]\nkind = \"record\"\nrate = 1\ndata = \"data.bin\"\njournal = \"$JOURNAL\"\n");
    std::fs::write(f.path("data.bin"), "v1").unwrap();
    f.run();
    f.take_journal();
    f.write("[stages.a]\nkind = \"record\"\nrate = 1.0\ndata = \"./data.bin\"\njournal = \"$JOURNAL\"\n");
    assert!(f.run().ran.is_empty(), "1 vs 1.0 or ./ changed the key");

    // Rewriting the same bytes (new mtime) is not a change; new bytes are.
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(f.path("data.bin"), "v1").unwrap();
    assert!(f.run().ran.is_empty());
    std::fs::write(f.path("data.bin"), "v2").unwrap();
    let plan = f.plan(&Selection::default());
    assert_eq!(plan.stage("a").unwrap().reasons, [Reason::ParamsChanged(vec!["data".into()])]);
    assert_eq!(ran(&f.run()), ["a"]);
    assert_eq!(read(&f.output("a").join("data.copy")), "v2");
}

#[test]
fn the_device_kind_is_keyed_but_not_which_gpus() {
    let stage = |device: &str| format!("[stages.a]\nkind = \"record\"\ndevice = \"{device}\"\njournal = \"$JOURNAL\"\n");
    let f = Fixture::new(&stage("cuda:0"));
    f.run();
    f.take_journal();
    for same in ["cuda:1", "cuda", "CUDA:0,1", "cuda:3"] {
        f.write(&stage(same));
        assert!(f.run().ran.is_empty(), "{same} changed the key");
    }
    f.write(&stage("cpu"));
    let plan = f.plan(&Selection::default());
    assert_eq!(plan.stage("a").unwrap().reasons, [Reason::ParamsChanged(vec!["device".into()])]);
    assert_eq!(ran(&f.run()), ["a"]);
    // The CPU backend's older names are the same backend.
    for same in ["flex", "default", "CPU"] {
        f.write(&stage(same));
        assert!(f.run().ran.is_empty(), "{same} changed the key");
    }
    f.write(&stage("wgpu"));
    assert_eq!(ran(&f.run()), ["a"]);
}

#[test]
fn lock_and_status_record_keys_digests_and_states() {
    let f = Fixture::new(&pipeline("2"));
    let status = Status::of(&f.plan(&Selection::default()));
    assert!(status.stages.iter().all(|s| s.state == State::NeverRun && s.reasons == ["new"]));
    f.run();

    let (lock, warning) = LockFile::read(&f.path("pipeline.lock"));
    assert!(warning.is_none());
    assert_eq!(lock.stages.len(), 5);
    let plan = f.plan(&Selection::default());
    for s in &plan.stages {
        let e = &lock.stages[&s.decl.name];
        assert_eq!(e.key, s.key);
        assert_eq!(e.key.len(), 64);
        assert!(e.output_digest.starts_with("dir:"), "{}", e.output_digest);
        assert_eq!(e.output, s.output);
        assert!(e.seconds >= 0.0 && e.started_unix > 1_600_000_000);
    }
    assert_eq!(lock.stages["end"].inputs["src"], lock.stages["mid"].key);

    f.write(&pipeline("5"));
    let status = Status::of(&f.plan(&Selection::default()));
    let json = serde_json::to_value(&status).unwrap();
    assert_eq!(json["schema"], 1);
    let by_name = |n: &str| json["stages"].as_array().unwrap().iter().find(|s| s["name"] == n).unwrap().clone();
    assert_eq!(by_name("src")["state"], "cached");
    assert_eq!(by_name("mid")["state"], "stale");
    assert_eq!(by_name("mid")["reasons"][0], "parameter changed (value)");
    assert_eq!(by_name("end")["inputs"]["src"], "mid");
    assert!(by_name("src")["output"].as_str().unwrap().ends_with(&format!(".latte/out/{}", by_name("src")["key"].as_str().unwrap())));
}

#[test]
fn a_corrupt_lock_is_ignored_and_rewritten() {
    let f = Fixture::new(&pipeline("2"));
    f.run();
    std::fs::write(f.path("pipeline.lock"), "{ not json").unwrap();
    let plan = f.plan(&Selection::default());
    assert_eq!(plan.warnings.len(), 1);
    assert!(plan.stages.iter().all(|s| s.state == State::Cached));
    assert!(f.run().ran.is_empty());
    assert_eq!(LockFile::read(&f.path("pipeline.lock")).0.stages.len(), 5);
}

/// Weights fetched after the first run: a pipeline naming an absent `OptionalPath` loads and
/// runs, and the stage reruns once the file appears (its content is part of the key).
#[test]
fn an_optional_path_may_be_absent_and_its_arrival_reruns_the_stage() {
    let f = Fixture::new(
        r#"
[stages.m]
kind = "record"
weights = "w/net.safetensors"
journal = "$JOURNAL"
"#,
    );
    f.run();
    assert_eq!(f.take_journal(), ["m"]);
    assert_eq!(read(&f.output("m").join("weights.txt")), "absent");
    assert!(f.run().ran.is_empty());

    std::fs::create_dir_all(f.path("w")).unwrap();
    std::fs::write(f.path("w/net.safetensors"), b"weights").unwrap();
    f.run();
    assert_eq!(f.take_journal(), ["m"]);
    assert_eq!(read(&f.output("m").join("weights.txt")), "present");
}

/// `join` as a later version of its code declares it: one more parameter, off by default, that
/// the kind lists as unkeyed while it holds its default.
struct GrownJoin;

const GROWN_JOIN_PARAMS: &[ParamSpec] = &[
    ParamSpec { name: "value", ty: ParamType::Int, default: None, help: "required integer" },
    ParamSpec { name: "journal", ty: ParamType::Str, default: Some("\"\""), help: "append the stage name here on every run" },
    ParamSpec { name: "added", ty: ParamType::Float, default: Some("0.0"), help: "an option added later; 0 is the old behaviour" },
];

impl Stage for GrownJoin {
    fn kind(&self) -> &'static str {
        "join"
    }
    fn version(&self) -> &'static str {
        "1"
    }
    fn params(&self) -> &'static [ParamSpec] {
        GROWN_JOIN_PARAMS
    }
    fn inputs(&self) -> &'static [InputSpec] {
        Record { kind: "join", version: "1" }.inputs()
    }
    fn unkeyed_defaults(&self) -> &'static [&'static str] {
        &["added"]
    }
    fn run(&self, ctx: &StageContext<'_>) -> Result<(), StageError> {
        Record { kind: "join", version: "1" }.run(ctx)
    }
}

#[test]
fn a_parameter_added_with_an_unkeyed_default_keeps_the_cache_until_it_is_set() {
    let mut f = Fixture::new(&pipeline("2"));
    f.run();
    f.take_journal();
    let before = f.output("end");

    let mut grown = Registry::new();
    grown.register(Record { kind: "record", version: "1" });
    grown.register(Record { kind: "leaf", version: "1" });
    grown.register(GrownJoin);
    f.registry = grown;
    // The new code, the old pipeline: the same key, nothing runs.
    assert_eq!(f.output("end"), before);
    assert!(f.run().ran.is_empty());
    // Stating the default is the same run.
    f.write(&pipeline("2").replace("value = 3\n", "value = 3\nadded = 0.0\n"));
    assert_eq!(f.output("end"), before);
    assert!(f.run().ran.is_empty());
    // Setting it is a new run of that stage only.
    f.write(&pipeline("2").replace("value = 3\n", "value = 3\nadded = 0.5\n"));
    let plan = f.plan(&Selection::default());
    assert_eq!(plan.stage("end").unwrap().reasons, [Reason::ParamsChanged(vec!["added".into()])]);
    assert_eq!(ran(&f.run()), ["end"]);
    assert_eq!(f.take_journal(), ["end"]);
    assert_ne!(f.output("end"), before);
}
