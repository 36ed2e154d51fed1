//! Issue #15: damaged store entries of every real stage kind are found and rebuilt. A tiny
//! pipeline of all seven kinds runs once; then, stage by stage, files of its output are
//! truncated, deleted and overwritten, and `verify` must name them, `status` must call the stage
//! stale naming a file, `run` must rerun exactly that stage and its downstream, and every
//! output must come back byte for byte (each file's SHA-256 in the manifests equals the first
//! run's), checkpoints' optimizer state (`optim.bpk`) included.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

/// videos -> frames -> vae -> latents -> train -> sample -> metrics, each as small as it goes.
const PIPELINE: &str = r#"
[stages.videos]
kind = "videos"
num_videos = 2
min_frames = 8
max_frames = 8
width = 16
height = 16

[stages.frames]
kind = "frames"
inputs = { videos = "videos" }
size = 16
num_frames = 4
frame_interval = 1

[stages.vae]
kind = "vae_train"
inputs = { frames = "frames" }
block_out_channels = [8, 16]
norm_num_groups = 4
steps = 2
batch_size = 1
crop = 8

[stages.latents]
kind = "latents"
inputs = { frames = "frames", vae = "vae" }

[stages.train]
kind = "train"
inputs = { latents = "latents" }
depth = 2
hidden_size = 32
num_heads = 2
num_frames = 4
frame_interval = 1
steps = 2
batch_size = 2
checkpoint_every = 1

[stages.sample]
kind = "sample"
inputs = { train = "train", vae = "vae" }
n = 2
batch_size = 2
steps = 2
grid_n = 2

[stages.metrics]
kind = "metrics"
inputs = { samples = "sample", frames = "frames" }
num_clips = 2
fvd = false
fid_num_real = 2
fid_num_fake = 2
is_num_clips = 2
is_splits = 1
"#;

const ORDER: [&str; 7] = ["videos", "frames", "vae", "latents", "train", "sample", "metrics"];

fn xtask(args: &[&str], dir: &Path) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_xtask")).args(args).current_dir(dir).output().expect("run xtask");
    (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn run_ok(args: &[&str], dir: &Path) -> String {
    let (code, stdout, stderr) = xtask(args, dir);
    assert_eq!(code, Some(0), "{args:?} failed:\n{stdout}\n{stderr}");
    stdout
}

/// Stage name -> (output dir, output digest) from `pipeline.lock`.
fn lock(dir: &Path) -> BTreeMap<String, (String, String)> {
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("pipeline.lock")).unwrap()).unwrap();
    v["stages"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, e)| (k.clone(), (e["output"].as_str().unwrap().to_owned(), e["output_digest"].as_str().unwrap().to_owned())))
        .collect()
}

/// File -> (size, SHA-256) as an entry's manifest records them.
fn recorded(out: &Path) -> BTreeMap<String, (u64, String)> {
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join(".latte-manifest.json")).unwrap()).unwrap();
    m["files"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(f, r)| (f.clone(), (r["size"].as_u64().unwrap(), r["sha256"].as_str().unwrap().to_owned())))
        .collect()
}

/// Every stage's recorded files.
fn contents(lock: &BTreeMap<String, (String, String)>) -> BTreeMap<String, BTreeMap<String, (u64, String)>> {
    lock.iter().map(|(stage, (out, _))| (stage.clone(), recorded(Path::new(out)))).collect()
}

#[derive(Clone, Copy, Debug)]
enum Damage {
    Truncate,
    Delete,
    Overwrite,
}

fn damage(path: &Path, how: Damage) {
    let len = std::fs::metadata(path).unwrap().len() as usize;
    let mut perms = std::fs::metadata(path).unwrap().permissions();
    perms.set_mode(0o644);
    std::fs::set_permissions(path, perms).unwrap();
    match how {
        Damage::Truncate => std::fs::write(path, &std::fs::read(path).unwrap()[..len / 2]).unwrap(),
        Damage::Delete => std::fs::remove_file(path).unwrap(),
        // Same size: only the mtime moved, the re-hash must tell.
        Damage::Overwrite => {
            std::thread::sleep(std::time::Duration::from_millis(10));
            let bytes: Vec<u8> = std::fs::read(path).unwrap().iter().map(|b| b ^ 0x5a).collect();
            std::fs::write(path, bytes).unwrap();
        }
    }
}

#[test]
fn damaged_outputs_of_every_stage_kind_are_named_and_rebuilt_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    std::fs::write(dir.join("pipeline.toml"), PIPELINE).unwrap();
    run_ok(&["run", "-j", "2"], dir);
    let original = lock(dir);
    assert_eq!(original.len(), ORDER.len());
    let original_contents = contents(&original);
    let verified = run_ok(&["verify"], dir);
    assert_eq!(verified.lines().filter(|l| l.contains(" ok (")).count(), ORDER.len(), "{verified}");

    let kinds = [Damage::Truncate, Damage::Delete, Damage::Overwrite];
    for (i, stage) in ORDER.iter().enumerate() {
        let out = Path::new(&original[*stage].0).to_owned();
        let files: Vec<String> = recorded(&out).into_keys().collect();
        // Up to three files, one damage each, rotated so single-file outputs see every kind.
        let hit: Vec<(String, Damage)> = files.iter().take(3).enumerate().map(|(j, f)| (f.clone(), kinds[(i + j) % kinds.len()])).collect();
        for (f, how) in &hit {
            damage(&out.join(f), *how);
        }

        let (code, stdout, _) = xtask(&["verify"], dir);
        assert_eq!(code, Some(1), "{stage}: verify must fail:\n{stdout}");
        for (f, how) in &hit {
            assert!(stdout.contains(&format!("    {f} (")), "{stage}: verify does not name {f} ({how:?}):\n{stdout}");
        }
        assert!(stdout.lines().any(|l| l.starts_with(stage) && l.contains("DAMAGED")), "{stdout}");

        let status = run_ok(&["status"], dir);
        let line = status.lines().find(|l| l.starts_with(&format!("{stage} "))).unwrap();
        assert!(line.contains("stale") && line.contains("output damaged: "), "{stage}: {line}");
        assert!(hit.iter().any(|(f, _)| line.contains(f.as_str())), "{stage}: no damaged file named in {line}");
        for down in &ORDER[i + 1..] {
            let l = status.lines().find(|l| l.starts_with(&format!("{down} "))).unwrap();
            assert!(l.contains("stale") && l.contains("input damaged upstream"), "{stage} -> {down}: {l}");
        }
        for up in &ORDER[..i] {
            let l = status.lines().find(|l| l.starts_with(&format!("{up} "))).unwrap();
            assert!(l.contains("cached"), "{stage}: upstream {up} is not cached: {l}");
        }

        // The last stage is repaired through `verify --repair`, the others through `run`.
        let args: &[&str] = if i + 1 == ORDER.len() { &["verify", "--repair", "-j", "2"] } else { &["run", "-j", "2"] };
        let stdout = run_ok(args, dir);
        let reran = ORDER.len() - i;
        assert!(stdout.contains(&format!(": {reran} stage(s) ran, {i} cached")), "{stage}: {args:?}:\n{stdout}");
        let now = lock(dir);
        assert_eq!(now.keys().collect::<Vec<_>>(), original.keys().collect::<Vec<_>>());
        assert!(now.iter().all(|(k, (out, _))| out == &original[k].0), "{stage}: the cache keys moved");
        assert_eq!(contents(&now), original_contents, "{stage}: the rebuilt outputs differ from the first run's");
        for (k, (_, digest)) in now.iter().filter(|(k, _)| k.as_str() != "train") {
            assert_eq!(digest, &original[k].1, "{stage}: {k}'s output digest moved");
        }
        run_ok(&["verify"], dir);
    }
}
