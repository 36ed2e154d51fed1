//! The CLI's own behaviour (exit status, where errors go); the engine behind it is tested in
//! `tests/` with test stage kinds.

use std::process::Command;

fn xtask(args: &[&str], dir: &std::path::Path) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_xtask")).args(args).current_dir(dir).output().expect("run xtask");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn an_invalid_pipeline_fails_with_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pipeline.toml"), "[stages.a]\nkind = \"no_such_kind\"\n").unwrap();
    for cmd in [&["run"][..], &["run", "--dry-run"], &["status", "--json"]] {
        let (ok, stdout, stderr) = xtask(cmd, dir.path());
        assert!(!ok, "{cmd:?} succeeded");
        assert!(stdout.is_empty(), "{cmd:?} printed to stdout: {stdout}");
        assert!(stderr.contains("pipeline.toml:2: `stages.a.kind`: unknown stage kind `no_such_kind`"), "{cmd:?}: {stderr}");
    }
    assert!(!dir.path().join(".latte/out").exists(), "an invalid pipeline must run nothing");
}

#[test]
fn a_missing_pipeline_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, _, stderr) = xtask(&["status"], dir.path());
    assert!(!ok);
    assert!(stderr.contains("cannot read pipeline file pipeline.toml"), "{stderr}");
}

#[test]
fn downstream_requires_stage() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, _, stderr) = xtask(&["run", "--downstream"], dir.path());
    assert!(!ok);
    assert!(stderr.contains("--stage"), "{stderr}");
}
