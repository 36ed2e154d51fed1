//! `--stage`, `--downstream`, `--force`, the thread budget and failing stages.

use latte_engine::{Error, Selection, State};
use latte_tests::{ran, read, Fixture};

const CHAIN: &str = r#"
[stages.a]
kind = "record"
journal = "$JOURNAL"
[stages.b]
kind = "record"
inputs = { a = "a" }
journal = "$JOURNAL"
[stages.c]
kind = "record"
inputs = { a = "b" }
journal = "$JOURNAL"
[stages.other]
kind = "record"
value = 5
journal = "$JOURNAL"
"#;

fn stage(name: &str) -> Selection {
    Selection { targets: vec![name.into()], ..Default::default() }
}

#[test]
fn stage_runs_it_and_what_it_needs_only() {
    let f = Fixture::new(CHAIN);
    let report = f.run_with(&stage("b"), 2).unwrap();
    assert_eq!(ran(&report), ["a", "b"]);
    let plan = f.plan(&Selection::default());
    assert_eq!(plan.stage("c").unwrap().state, State::NeverRun);
    assert_eq!(plan.stage("other").unwrap().state, State::NeverRun);
}

#[test]
fn downstream_adds_everything_after_the_stage() {
    let f = Fixture::new(CHAIN);
    let report = f.run_with(&Selection { targets: vec!["b".into()], downstream: true, force: false }, 2).unwrap();
    assert_eq!(ran(&report), ["a", "b", "c"]);
    assert_eq!(f.plan(&Selection::default()).stage("other").unwrap().state, State::NeverRun);
}

#[test]
fn force_reruns_the_targets_but_not_their_cached_inputs() {
    let f = Fixture::new(CHAIN);
    f.run();
    f.take_journal();
    let force_b = Selection { targets: vec!["b".into()], downstream: false, force: true };
    let plan = f.plan(&force_b);
    assert_eq!(plan.stage("b").unwrap().reasons[0].to_string(), "forced");
    assert_eq!(ran(&f.run_with(&force_b, 2).unwrap()), ["b"]);
    assert_eq!(f.take_journal(), ["b"]);
    assert_eq!(read(&f.output("c").join("chain.txt")), "a=0\nb=0\nc=0\n");
    let force_all = Selection { force: true, ..Default::default() };
    assert_eq!(ran(&f.run_with(&force_all, 2).unwrap()), ["a", "b", "c", "other"]);
}

#[test]
fn unknown_stage_name_is_an_error_with_a_suggestion() {
    let f = Fixture::new(CHAIN);
    let err = f.run_with(&stage("othre"), 2).unwrap_err();
    assert!(matches!(err, Error::UnknownStage { .. }));
    let msg = err.to_string();
    assert!(msg.contains("pipeline.toml: no stage named `othre` (did you mean `other`?)"), "{msg}");
}

#[test]
fn identical_stages_share_one_output() {
    // Same kind, parameters and inputs: one key, one execution, one output directory.
    let f = Fixture::new("[stages.x]\nkind = \"record\"\njournal = \"$JOURNAL\"\n[stages.y]\nkind = \"record\"\njournal = \"$JOURNAL\"\n");
    assert_eq!(f.run().ran.len(), 1);
    assert_eq!(f.take_journal().len(), 1);
    assert_eq!(f.output("x"), f.output("y"));
}

#[test]
fn independent_stages_run_concurrently_and_share_the_thread_budget() {
    let f = Fixture::new(
        "[stages.x]\nkind = \"record\"\nsleep_ms = 400\n[stages.y]\nkind = \"record\"\nvalue = 1\nsleep_ms = 400\n[stages.z]\nkind = \"record\"\ninputs = { a = \"x\", b = \"y\" }\n",
    );
    f.run_with(&Selection::default(), 4).unwrap();
    let span = |s: &str| -> (u128, u128) {
        let t = read(&f.output(s).join("span.txt"));
        let (a, b) = t.split_once(' ').unwrap();
        (a.parse().unwrap(), b.parse().unwrap())
    };
    let (x, y, z) = (span("x"), span("y"), span("z"));
    assert!(x.0 < y.1 && y.0 < x.1, "x {x:?} and y {y:?} did not overlap");
    assert!(z.0 >= x.1 && z.0 >= y.1, "z started before its inputs finished");
    // Two ready stages split a budget of 4; the last stage alone gets all of it.
    assert_eq!(read(&f.output("x").join("threads.txt")), "2");
    assert_eq!(read(&f.output("y").join("threads.txt")), "2");
    assert_eq!(read(&f.output("z").join("threads.txt")), "4");
    // and the parallel work of each runs in a rayon pool of exactly that many threads
    for (stage, n) in [("x", "2"), ("y", "2"), ("z", "4")] {
        assert_eq!(read(&f.output(stage).join("pool.txt")), n, "stage {stage}");
    }
}

#[test]
fn a_failed_stage_caches_nothing_and_stops_its_downstream() {
    let fail = "[stages.a]\nkind = \"record\"\njournal = \"$JOURNAL\"\n[stages.b]\nkind = \"record\"\ninputs = { a = \"a\" }\nfail = true\njournal = \"$JOURNAL\"\n[stages.c]\nkind = \"record\"\ninputs = { a = \"b\" }\njournal = \"$JOURNAL\"\n";
    let f = Fixture::new(fail);
    let err = f.run_with(&Selection::default(), 2).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("stage `b` (kind `record`) failed: stage b: asked to fail"), "{msg}");
    let Error::StageFailed { log, .. } = &err else { panic!("{err:?}") };
    assert_eq!(
        read(log),
        "about to fail\nerror: stage `b` (kind `record`) failed: stage b: asked to fail\n    log: ".to_owned()
            + &log.display().to_string()
            + "\n"
    );
    assert_eq!(f.take_journal(), ["a", "b"]);
    let plan = f.plan(&Selection::default());
    assert_eq!(plan.stage("a").unwrap().state, State::Cached);
    assert_eq!(plan.stage("b").unwrap().state, State::NeverRun);
    assert!(!plan.stage("b").unwrap().output.exists());
    assert!(std::fs::read_dir(f.store().join("tmp")).unwrap().next().is_none(), "partial output left behind");

    f.write(&fail.replace("fail = true\n", ""));
    assert_eq!(ran(&f.run()), ["b", "c"]);
}

#[test]
fn a_panicking_stage_is_a_failure_not_a_crash() {
    let f = Fixture::new("[stages.a]\nkind = \"record\"\n[stages.b]\nkind = \"record\"\nvalue = 1\npanic = true\n");
    let msg = f.run_with(&Selection::default(), 2).unwrap_err().to_string();
    assert!(msg.contains("stage `b` (kind `record`) failed: panicked: stage b panics on purpose"), "{msg}");
    let plan = f.plan(&Selection::default());
    assert_eq!(plan.stage("a").unwrap().state, State::Cached);
    assert_eq!(plan.stage("b").unwrap().state, State::NeverRun);
    assert!(std::fs::read_dir(f.store().join("tmp")).unwrap().next().is_none());
}
