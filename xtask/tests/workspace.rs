//! Issue #15: the binary reads the files of the checkout it runs in, not of the one that built
//! it. `.ci/run` shares one build folder between clones; here the binary built from this
//! checkout is run inside another "clone" (a folder with the workspace's shape), and every
//! path it uses must be that clone's.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

/// A second checkout: a workspace manifest and `xtask/`, nothing else.
fn other_clone() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path().join("clone");
    std::fs::create_dir_all(ws.join("xtask/src")).unwrap();
    std::fs::write(ws.join("Cargo.toml"), "[workspace]\nmembers = [\"xtask\"]\n").unwrap();
    std::fs::write(ws.join("xtask/Cargo.toml"), "[package]\nname = \"xtask\"\n").unwrap();
    tmp
}

fn xtask_in(dir: &Path, args: &[&str], env: &[(&str, &Path)]) -> (bool, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
    cmd.args(args).current_dir(dir).env_remove("LATTE_WEIGHTS_DIR").env_remove("LATTE_PYTHON");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run xtask");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn weights_go_into_the_checkout_the_command_runs_in() {
    let tmp = other_clone();
    let ws = tmp.path().join("clone");
    std::fs::create_dir_all(ws.join("xtask/src")).unwrap();
    let (ok, out) = xtask_in(&ws.join("xtask/src"), &["weights", "fetch", "i3d", "--archive", "no-such.tar.gz"], &[]);
    assert!(!ok);
    let want = ws.join(".latte/weights");
    assert!(
        out.contains(&want.display().to_string()),
        "the default weights folder is not the running clone's ({}):\n{out}",
        want.display()
    );
    let this = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().join(".latte/weights");
    assert!(!out.contains(&this.display().to_string()), "the building clone's folder was used:\n{out}");
}

#[test]
fn bench_train_looks_for_its_pytorch_script_in_the_running_checkout() {
    let tmp = other_clone();
    let ws = tmp.path().join("clone");
    // A python that "imports torch", so the bench goes on to look for its script.
    let python = tmp.path().join("python");
    std::fs::write(&python, "#!/bin/sh\nexit 0\n").unwrap();
    std::fs::set_permissions(&python, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (ok, out) = xtask_in(&ws, &["bench", "train", "--iters", "1", "--warmup", "0"], &[("LATTE_PYTHON", &python)]);
    assert!(!ok, "{out}");
    let want = ws.join("xtask/bench/latte_train_step.py");
    assert!(out.contains(&format!("{} is missing", want.display())), "{out}");

    // Outside any checkout the command says where it looked and what to do.
    let (ok, out) = xtask_in(tmp.path(), &["bench", "train", "--iters", "1", "--warmup", "0"], &[("LATTE_PYTHON", &python)]);
    assert!(!ok);
    assert!(out.contains("is not inside a latte checkout"), "{out}");
}
