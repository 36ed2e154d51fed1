//! Data-driven: each case is a pipeline and the fragments its error must contain, starting
//! with `pipeline.toml:LINE:` (the file and line of the offending key).

use latte_tests::Fixture;

#[track_caller]
fn check(pipeline: &str, expect: &[&str]) {
    let f = Fixture::new(pipeline);
    let err = match f.load() {
        Ok(_) => panic!("pipeline should be invalid:\n{pipeline}"),
        Err(e) => e.to_string(),
    };
    for fragment in expect {
        assert!(err.contains(fragment), "error lacks {fragment:?}:\n{err}");
    }
}

#[test]
fn unknown_kind_suggests_the_near_one() {
    check(
        "[stages.a]\nkind = \"recrod\"\n",
        &[
            "pipeline.toml:2: `stages.a.kind`: unknown stage kind `recrod`",
            "did you mean `record`?",
            "kinds: curve, join, leaf, record, slow",
        ],
    );
}

#[test]
fn misspelled_parameter_suggests_the_near_one() {
    check(
        "[stages.a]\nkind = \"record\"\nvalue = 1\nlabl = \"x\"\n",
        &[
            "pipeline.toml:4: `stages.a.labl`: kind `record` has no parameter `labl`",
            "did you mean `label`?",
            "allowed: value, rate, label",
        ],
    );
}

#[test]
fn wrong_type_names_line_and_expected_type() {
    check(
        "[stages.a]\nkind = \"record\"\n\n\nvalue = \"three\"\n",
        &["pipeline.toml:5: `stages.a.value`: expected an integer, found the string \"three\"", "default 0"],
    );
    check("[stages.a]\nkind = \"record\"\nsizes = [1, \"x\"]\n", &["pipeline.toml:3: `stages.a.sizes`: expected a list of integers"]);
    check("[stages.a]\nkind = \"record\"\nrate = true\n", &["pipeline.toml:3: `stages.a.rate`: expected a number, found the boolean true"]);
}

#[test]
fn unknown_input_stage_and_slot() {
    check(
        "[stages.a]\nkind = \"record\"\n[stages.b]\nkind = \"record\"\ninputs = { a = \"aa\" }\n",
        &["pipeline.toml:5: `stages.b.inputs.a`: no stage named `aa`", "did you mean `a`?"],
    );
    check(
        "[stages.a]\nkind = \"record\"\n[stages.b]\nkind = \"record\"\ninputs = { c = \"a\" }\n",
        &["pipeline.toml:5: `stages.b.inputs.c`: kind `record` has no input slot `c`", "allowed: a, b"],
    );
}

#[test]
fn missing_required_input_and_parameter() {
    check(
        "[stages.j]\nkind = \"join\"\n",
        &[
            "pipeline.toml:1: `stages.j`: missing required input `src`",
            "pipeline.toml:1: `stages.j`: missing required parameter `value`",
            "2 problems",
        ],
    );
}

#[test]
fn cycle_names_its_members() {
    check(
        "[stages.a]\nkind = \"record\"\ninputs = { a = \"c\" }\n[stages.b]\nkind = \"record\"\ninputs = { a = \"a\" }\n[stages.c]\nkind = \"record\"\ninputs = { a = \"b\" }\n",
        &["pipeline.toml:3: `stages.a.inputs`: stages form a cycle: a -> b -> c -> a"],
    );
    check("[stages.a]\nkind = \"record\"\ninputs = { a = \"a\" }\n", &["pipeline.toml:3:", "cycle: a -> a"]);
}

#[test]
fn shared_references_resolve_or_suggest() {
    check(
        "[shared]\nseed = 1\n[stages.a]\nkind = \"record\"\nvalue = \"${sede}\"\n",
        &["pipeline.toml:5: `stages.a.value`: no shared value named `sede`", "did you mean `${seed}`?"],
    );
    // A shared value is type-checked where it is used.
    check(
        "[shared]\nseed = \"x\"\n[stages.a]\nkind = \"record\"\nvalue = \"${seed}\"\n",
        &["pipeline.toml:5: `stages.a.value`: expected an integer"],
    );
    let f = Fixture::new("[shared]\nseed = 7\n[stages.a]\nkind = \"record\"\nvalue = \"${seed}\"\n");
    assert_eq!(f.load().unwrap().stages[0].params.int("value").unwrap(), 7);
}

#[test]
fn top_level_syntax_paths_and_cross_checks() {
    check("[stage.a]\nkind = \"record\"\n", &["pipeline.toml:1: `stage`: unknown top-level key", "did you mean `stages`?"]);
    check("[stages.a]\nkind = \"record\nvalue = 1\n", &["pipeline.toml:2:", "not valid TOML"]);
    check(
        "[stages.a]\nkind = \"record\"\ndata = \"missing.bin\"\n",
        &["pipeline.toml:3: `stages.a.data`: path", "missing.bin does not exist"],
    );
    check(
        "[stages.a]\nkind = \"record\"\nsizes = [1, -2]\n",
        &["pipeline.toml:3: `stages.a.sizes`: `sizes` must not hold negative numbers"],
    );
    check("store = \".x\"\n", &["`stages`: the pipeline defines no stages"]);
    check("[stages.\"a b\"]\nkind = \"record\"\n", &["pipeline.toml:1: `stages.a b`: invalid stage name"]);
}

#[test]
fn defaults_are_filled_and_numbers_normalised() {
    let f = Fixture::new("[stages.a]\nkind = \"record\"\nrate = 1\n");
    let p = f.load().unwrap();
    let params = &p.stages[0].params;
    assert_eq!(params.float("rate").unwrap(), 1.0);
    assert_eq!(params.values["rate"], toml::Value::Float(1.0));
    assert_eq!(params.int("value").unwrap(), 0);
    assert_eq!(params.str("label").unwrap(), "");
    assert_eq!(params.values.len(), 11);
}
