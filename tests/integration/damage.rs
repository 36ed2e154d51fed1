//! A damaged store entry is not trusted: the cheap check at plan time turns it (and what is
//! downstream of it) stale with the file named, `run` rebuilds exactly those stages, and the
//! full check (`Store::verify`) finds what the cheap one cannot.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use latte_engine::{status::Status, Reason, Selection, State};
use latte_tests::{ran, read, Fixture};

/// src -> mid -> end, and `side` on its own.
const PIPELINE: &str = r#"
[shared]
journal = "$JOURNAL"

[stages.src]
kind = "record"
value = 1
journal = "${journal}"

[stages.mid]
kind = "record"
inputs = { a = "src" }
value = 2
journal = "${journal}"

[stages.end]
kind = "join"
inputs = { src = "mid" }
value = 3
journal = "${journal}"

[stages.side]
kind = "record"
journal = "${journal}"
"#;

fn writable(path: &Path) {
    let mut perms = std::fs::metadata(path).unwrap().permissions();
    perms.set_mode(0o644);
    std::fs::set_permissions(path, perms).unwrap();
}

fn is_read_only(path: &Path) -> bool {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o222 == 0
}

#[test]
fn a_truncated_deleted_or_overwritten_file_reruns_its_stage_and_downstream_only() {
    let f = Fixture::new(PIPELINE);
    f.run();
    f.take_journal();
    let mid = f.output("mid");
    let chain = mid.join("chain.txt");
    let original = read(&chain);
    assert!(is_read_only(&chain), "installed files are read-only");

    let damages: [(&str, fn(&Path)); 3] = [
        ("truncated", |p| {
            writable(p);
            std::fs::write(p, "src").unwrap();
        }),
        ("deleted", |p| std::fs::remove_file(p).unwrap()),
        // Same size, new bytes: only the mtime shows it, and the re-hash confirms it.
        ("overwritten", |p| {
            writable(p);
            let n = std::fs::metadata(p).unwrap().len() as usize;
            std::thread::sleep(std::time::Duration::from_millis(10));
            std::fs::write(p, "x".repeat(n)).unwrap();
        }),
    ];
    for (what, damage) in damages {
        damage(&chain);
        let plan = f.plan(&Selection::default());
        let state = |name: &str| plan.stage(name).unwrap().state;
        assert_eq!((state("src"), state("side")), (State::Cached, State::Cached), "{what}");
        assert_eq!((state("mid"), state("end")), (State::Stale, State::Stale), "{what}");
        let mid_reasons = &plan.stage("mid").unwrap().reasons;
        assert!(
            matches!(mid_reasons.as_slice(), [Reason::OutputDamaged(d)] if d.len() == 1 && d[0].file() == "chain.txt"),
            "{what}: {mid_reasons:?}"
        );
        assert_eq!(plan.stage("end").unwrap().reasons, vec![Reason::InputDamaged(vec!["src".into()])], "{what}");
        let status = Status::of(&plan);
        let mid_status = status.stages.iter().find(|s| s.name == "mid").unwrap();
        assert!(mid_status.reasons[0].starts_with("output damaged: chain.txt ("), "{what}: {:?}", mid_status.reasons);
        assert!(!plan.stage("mid").unwrap().reasons.contains(&Reason::Forced));

        let report = f.run();
        assert_eq!(ran(&report), ["end", "mid"], "{what}");
        assert_eq!(f.take_journal(), ["end", "mid"], "{what}");
        assert_eq!(read(&chain), original, "{what}: the rerun restores the bytes");
        assert!(is_read_only(&chain));
        let plan = f.plan(&Selection::default());
        assert!(plan.stages.iter().all(|s| s.state == State::Cached), "{what}: everything is cached again");
        assert!(f.run().ran.is_empty(), "{what}: a second run does nothing");
    }
}

#[test]
fn the_full_check_finds_content_changed_behind_a_restored_mtime_and_files_added() {
    let f = Fixture::new(PIPELINE);
    f.run();
    let plan = f.plan(&Selection::default());
    let key = plan.stage("src").unwrap().key.clone();
    let out = f.output("src");
    assert!(plan.store.verify(&key).unwrap().is_empty());

    let chain = out.join("chain.txt");
    let mtime = std::fs::metadata(&chain).unwrap().modified().unwrap();
    writable(&chain);
    std::fs::write(&chain, "src=9\n").unwrap();
    std::fs::File::options().write(true).open(&chain).unwrap().set_modified(mtime).unwrap();
    std::fs::write(out.join("stray.txt"), "left here by hand").unwrap();
    assert!(plan.store.damage(&key).is_empty(), "the cheap check trusts size and mtime");
    let found: Vec<String> = plan.store.verify(&key).unwrap().iter().map(ToString::to_string).collect();
    assert_eq!(found, ["chain.txt (content changed)", "stray.txt (not written by the stage)"]);
}
