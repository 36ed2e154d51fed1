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

/// A pipeline whose last stage (`vae`) trains until it is stopped; the others take a moment.
const ENDLESS: &str = "[stages.videos]\nkind = \"videos\"\nnum_videos = 2\nmin_frames = 8\nmax_frames = 8\nwidth = 16\nheight = 16\n\
    [stages.frames]\nkind = \"frames\"\ninputs = { videos = \"videos\" }\nsize = 16\nnum_frames = 4\nframe_interval = 1\n\
    [stages.vae]\nkind = \"vae_train\"\ninputs = { frames = \"frames\" }\nblock_out_channels = [8, 16]\nnorm_num_groups = 4\n\
    steps = 1000000\nbatch_size = 1\ncrop = 8\n";

/// `cargo xtask run -j 1` in `dir`, its stdout lines arriving on a channel (stdout is not a
/// terminal, so progress comes as `[stage] ...` lines) and its stderr collected.
struct Run {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    stderr: std::thread::JoinHandle<String>,
}

impl Run {
    fn start(dir: &std::path::Path) -> Run {
        use std::io::{BufRead as _, Read as _};
        use std::process::Stdio;
        let mut child = Command::new(env!("CARGO_BIN_EXE_xtask"))
            .args(["run", "-j", "1"])
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run xtask");
        let (tx, lines) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut err = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        });
        Run { child, lines, stderr }
    }

    fn wait_for_line(&self, needle: &str) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return,
                Ok(_) => {}
                Err(e) => panic!("no line containing `{needle}` ({e})"),
            }
        }
    }

    fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill(2) on our child, not yet waited for, so the pid is still its.
        assert_eq!(unsafe { libc::kill(self.child.id() as libc::pid_t, signal) }, 0);
    }

    /// The exit code and stderr, failing if the process runs on for `within`.
    fn exit_within(mut self, within: std::time::Duration) -> (Option<i32>, String) {
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status.code(), self.stderr.join().unwrap());
            }
            if std::time::Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("xtask still running {within:?} after the signal");
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}

/// Issue #15 through the real CLI. A second run of the same pipeline waits for the first's
/// `vae` (another process holds its key), a wait with no safe point: its first SIGINT only
/// prints the notice, the second exits at once with 130. SIGTERM stops the first run within a
/// few seconds with 143. Neither caches anything for `vae`, and the next run would run it.
#[test]
fn sigint_twice_exits_at_once_and_sigterm_stops_at_a_safe_point() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pipeline.toml"), ENDLESS).unwrap();
    let first = Run::start(dir.path());
    // Logged by the stage itself, so the first run holds `vae`'s key by now.
    first.wait_for_line("[vae] vae_train:");

    let mut second = Run::start(dir.path());
    second.wait_for_line("[vae] waiting for another process");
    second.signal(libc::SIGINT);
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(second.child.try_wait().unwrap().is_none(), "one SIGINT must not exit while a stage has no safe point");
    second.signal(libc::SIGINT);
    let (code, stderr) = second.exit_within(std::time::Duration::from_secs(5));
    assert_eq!(code, Some(130), "{stderr}");
    assert!(stderr.contains("interrupted: stopping at a safe point (press Ctrl-C again to exit at once)"), "{stderr}");

    first.signal(libc::SIGTERM);
    let (code, stderr) = first.exit_within(std::time::Duration::from_secs(20));
    assert_eq!(code, Some(143), "{stderr}");
    assert!(stderr.contains("interrupted: stopped `vae`"), "{stderr}");
    assert!(!stderr.contains("error:"), "an interrupt is not an error: {stderr}");

    // videos and frames completed and stay cached; nothing of `vae` is, not even partly.
    let store = dir.path().join(".latte");
    assert_eq!(std::fs::read_dir(store.join("out")).unwrap().count(), 2);
    assert_eq!(std::fs::read_dir(store.join("tmp")).unwrap().count(), 0);
    let (ok, stdout, stderr) = xtask(&["run", "--dry-run"], dir.path());
    assert!(ok, "{stderr}");
    assert!(stdout.contains("1 of 3 stage(s) would run"), "{stdout}");
}
