//! The README is a contract: its `status --json` example and field table must match what the
//! engine emits, and its two commands must be what `.ci/run` does.

use latte_engine::{status::Status, Selection};
use latte_tests::{read, Fixture};

fn readme() -> String {
    read(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
}

/// The first ```json block after the `status --json` heading.
fn readme_status_example(readme: &str) -> serde_json::Value {
    let section = &readme[readme.find("## `status --json`").expect("status section")..];
    let start = section.find("```json\n").expect("json example") + 8;
    let end = start + section[start..].find("```").expect("end of example");
    serde_json::from_str(&section[start..end]).expect("the README example is valid JSON")
}

fn keys(v: &serde_json::Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().expect("object").keys().cloned().collect();
    k.sort();
    k
}

#[test]
fn readme_documents_every_status_field() {
    let f = Fixture::new("[stages.a]\nkind = \"record\"\n[stages.b]\nkind = \"record\"\ninputs = { a = \"a\" }\n");
    f.run();
    let real = serde_json::to_value(Status::of(&f.plan(&Selection::default()))).unwrap();
    let readme = readme();
    let example = readme_status_example(&readme);
    assert_eq!(keys(&example), keys(&real), "top-level fields");
    assert_eq!(keys(&example["stages"][0]), keys(&real["stages"][0]), "stage fields");
    let table = &readme[readme.find("| `schema` |").expect("field table")..];
    for k in keys(&real["stages"][0]) {
        let documented = table.contains(&format!("`stages[].{k}`")) || table.contains(&format!(", `{k}`"));
        assert!(documented, "README field table lacks `{k}`");
    }
    for state in ["cached", "stale", "never-run"] {
        assert!(table.contains(&format!("\"{state}\"")), "README lacks state {state}");
    }
}

#[test]
fn readme_commands_are_what_ci_runs() {
    let readme = readme();
    assert!(readme.contains("```sh\n./.ci/run pipeline\n```"));
    assert!(readme.contains("```sh\n./.ci/run\n```"));
    let ci = read(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.ci/run"));
    assert!(ci.starts_with("#!/usr/bin/env bash") && ci.contains("set -euo pipefail"));
    assert!(
        ci.contains("  test)\n    check_format\n    check_cuda\n    fetch_weights\n    log=\"$(mktemp)\"\n    cargo test --workspace 2>&1 | tee \"$log\"\n")
    );
    assert!(ci.contains("    cargo xtask run pipeline.toml\n    ;;"));
    // The formatting CI checks is the one rustfmt.toml states.
    assert!(ci.contains("cargo fmt --all --check"));
    assert!(read(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../rustfmt.toml")).contains("max_width = 140"));
}
