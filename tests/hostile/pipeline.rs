//! The pipeline TOML loader (latte-engine), over the test stage kinds of `latte-tests`.

use latte_engine::{pipeline, LoadOptions};

use crate::files;
use crate::harness::{self, Case, CI, LONG};
use crate::mutate::fields_digits;

/// Every construct the loader validates: top-level keys, shared values and references, each
/// parameter type, input slots, a path parameter, and a three-stage DAG.
const VALID: &str = r#"store = ".latte"

[shared]
seed = 7
rate = 0.25
name = "first"

[stages.a]
kind = "record"
value = "${seed}"
rate = "${rate}"
label = "${name}"
sizes = [1, 2, 3]
data = "data.txt"
weights = "later.bin"

[stages.b]
kind = "join"
inputs = { src = "a" }
value = 42

[stages.c]
kind = "leaf"
inputs = { a = "a", b = "b" }
sizes = [4, 5]
fail = false
sleep_ms = 0
"#;

fn toml(cases: usize) {
    let _serial = harness::serial();
    let registry = latte_tests::registry("1");
    let dir = harness::scratch();
    let path = dir.path().join("pipeline.toml");
    files::write(&dir.path().join("data.txt"), b"data");
    let read = |p: &std::path::Path| pipeline::load(p, &registry, &LoadOptions::default()).map(drop).map_err(|e| e.to_string());
    files::write(&path, VALID.as_bytes());
    read(&path).unwrap_or_else(|e| panic!("the valid pipeline must load: {e}"));
    let fields = fields_digits(VALID.as_bytes(), 0);
    let t = harness::run(
        "engine pipeline toml",
        cases,
        Some("pipeline.toml"),
        |m| {
            let bytes = m.mutate(VALID.as_bytes(), &fields, true);
            files::write(&path, &bytes);
            Case { bytes: bytes.len(), input: path.clone() }
        },
        |p| read(p),
    );
    harness::check("engine pipeline toml", t);
}

#[test]
fn engine_pipeline_toml() {
    toml(CI);
}

#[test]
#[ignore = "long run: 100,000 cases"]
fn engine_pipeline_toml_long() {
    toml(LONG);
}
