//! Grids: 4 points sharing one upstream stage execute it once; a rerun is a no-op; the
//! summary has one row per point. Also `clean`.

use latte_engine::{gc, grid, runner, Plan, RunOptions, Selection, Silent, Store};
use latte_tests::{read, Fixture};

const BASE: &str = r#"
[shared]
seed = 0

[stages.prep]
kind = "record"
value = "${seed}"
journal = "$JOURNAL"

[stages.train]
kind = "record"
inputs = { a = "prep" }
journal = "$JOURNAL"

[stages.score]
kind = "leaf"
inputs = { a = "train" }
journal = "$JOURNAL"
"#;

fn run_grid(f: &Fixture, name: &str) -> (grid::Summary, usize) {
    let (g, points) = grid::load(&f.path(name), &f.registry).expect("valid grid");
    let mut plans: Vec<Plan> = points.iter().map(|p| Plan::new(&p.pipeline, &Selection::default()).unwrap()).collect();
    let report = runner::run(&mut plans, &RunOptions { jobs: 2, observer: &Silent, cancel: None }).unwrap();
    let summary = grid::summary(&g, &points, &plans);
    summary.write(&g).unwrap();
    summary.write_plot(&g).unwrap();
    (summary, report.ran.len())
}

#[test]
fn four_points_share_the_upstream_stage_which_runs_once() {
    let f = Fixture::new(BASE);
    std::fs::write(f.path("sweep.toml"), "pipeline = \"pipeline.toml\"\n[axes]\n\"train.value\" = [1, 2, 3, 4]\n").unwrap();
    let (summary, ran) = run_grid(&f, "sweep.toml");
    assert_eq!(ran, 9);
    let journal = f.take_journal();
    assert_eq!(journal.iter().filter(|n| *n == "prep").count(), 1, "{journal:?}");
    assert_eq!(journal.iter().filter(|n| *n == "train").count(), 4);
    assert_eq!(journal.iter().filter(|n| *n == "score").count(), 4);

    assert_eq!(summary.header, ["point", "train.value", "score.depth", "score.value"]);
    assert_eq!(summary.rows.len(), 4);
    assert_eq!(summary.rows[2], ["2", "3", "3", "0"]);
    assert_eq!(read(&f.path("sweep.summary.csv")).lines().nth(1), Some("0,1,3,0"));
    assert!(read(&f.path("sweep.summary.md")).starts_with("| point | train.value | score.depth | score.value |\n|---|---|---|---|\n"));
    // One bar chart per numeric metric column, one bar per point labelled by its axis value.
    let svg = read(&f.path("sweep.summary.svg"));
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    for title in ["\nscore.depth\n", "\nscore.value\n"] {
        assert_eq!(svg.matches(title).count(), 1, "one panel titled {title:?}: {svg}");
    }
    // The background and 2 × 4 bars; the x axis is named for the grid's axis.
    assert_eq!(svg.matches("<rect").count(), 1 + 8, "{svg}");
    assert_eq!(svg.matches("\ntrain.value\n").count(), 2, "{svg}");
    for i in 0..4 {
        assert!(f.path(&format!("sweep.grid/point-{i:03}.lock")).is_file());
    }

    // Fixed seeds: rerunning the grid runs nothing.
    let (again, ran) = run_grid(&f, "sweep.toml");
    assert_eq!(ran, 0);
    assert!(f.take_journal().is_empty());
    assert_eq!(again, summary);

    // Two axes: a shared value and a parameter; points = product, last axis fastest.
    std::fs::write(
        f.path("two.toml"),
        "pipeline = \"pipeline.toml\"\nsummary = [\"train\"]\n[axes]\n\"shared.seed\" = [0, 5]\n\"train.value\" = [1, 9]\n",
    )
    .unwrap();
    let (summary, ran) = run_grid(&f, "two.toml");
    // seed 0 reuses prep, train(1) and its score from the first grid and adds train(9) and its
    // score; seed 5 needs a new prep, 2 trains and 2 scores.
    assert_eq!(ran, 7);
    assert_eq!(summary.header, ["point", "shared.seed", "train.value", "train.depth", "train.value"]);
    assert_eq!(summary.rows.iter().map(|r| r[1..3].join(" ")).collect::<Vec<_>>(), ["0 1", "0 9", "5 1", "5 9"]);
}

#[test]
fn the_curves_figure_has_one_line_per_point_labelled_by_its_axis_values_and_seeds_share_a_colour() {
    let f = Fixture::new(&format!("{BASE}\n[stages.curve]\nkind = \"curve\"\ninputs = {{ a = \"train\" }}\n"));
    std::fs::write(
        f.path("abl.grid.toml"),
        "pipeline = \"pipeline.toml\"\nsummary = [\"curve\"]\n[axes]\n\"curve.value\" = [30, 60, 90]\n",
    )
    .unwrap();
    let (g, points) = grid::load(&f.path("abl.grid.toml"), &f.registry).expect("valid grid");
    let mut plans: Vec<Plan> = points.iter().map(|p| Plan::new(&p.pipeline, &Selection::default()).unwrap()).collect();
    runner::run(&mut plans, &RunOptions { jobs: 2, observer: &Silent, cancel: None }).unwrap();
    let figures = grid::curves(&g, &points, &plans);
    let names: Vec<String> = figures.iter().map(|(p, _)| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
    assert_eq!(names, ["abl.grid.curves.png", "abl.grid.curves.fid-4.png"], "FVD first, one figure per metric");
    let (_, fvd) = &figures[0];
    assert_eq!(fvd.y_label, "FVD-2");
    assert_eq!(fvd.x_label, "training step");
    assert_eq!(fvd.series.iter().map(|s| s.label.as_str()).collect::<Vec<_>>(), ["value=30", "value=60", "value=90"]);
    assert_eq!(fvd.series[2].points, [(1.0, 90.0), (2.0, 45.0), (3.0, 30.0)]);
    let written = grid::write_curves(&g, &points, &plans).unwrap();
    assert_eq!(written.len(), 2);
    assert_eq!(&std::fs::read(&written[0]).unwrap()[1..4], b"PNG");
    // The summary table takes each point's last value.
    let summary = grid::summary(&g, &points, &plans);
    assert_eq!(summary.rows.iter().map(|r| r.last().unwrap().as_str()).collect::<Vec<_>>(), ["10.0", "20.0", "30.0"]);

    // A seed axis is a replicate: the seeds of one setting share its colour, and each seed has
    // its own dash pattern.
    std::fs::write(
        f.path("seeds.grid.toml"),
        "pipeline = \"pipeline.toml\"\nsummary = [\"curve\"]\n[axes]\n\"shared.seed\" = [0, 5]\n\"curve.value\" = [30, 60]\n",
    )
    .unwrap();
    let (g, points) = grid::load(&f.path("seeds.grid.toml"), &f.registry).expect("valid grid");
    let mut plans: Vec<Plan> = points.iter().map(|p| Plan::new(&p.pipeline, &Selection::default()).unwrap()).collect();
    runner::run(&mut plans, &RunOptions { jobs: 2, observer: &Silent, cancel: None }).unwrap();
    let (_, fvd) = &grid::curves(&g, &points, &plans)[0];
    let styles: Vec<(&str, usize, usize)> = fvd.series.iter().map(|s| (s.label.as_str(), s.colour, s.dash)).collect();
    assert_eq!(styles, [("value=30, seed=0", 0, 0), ("value=30, seed=5", 0, 1), ("value=60, seed=0", 1, 0), ("value=60, seed=5", 1, 1)]);
}

#[test]
fn grid_errors_name_the_grid_file_line_and_key() {
    let f = Fixture::new(BASE);
    let check = |text: &str, expect: &[&str]| {
        std::fs::write(f.path("g.toml"), text).unwrap();
        let err = grid::load(&f.path("g.toml"), &f.registry).err().expect("invalid grid").to_string();
        for e in expect {
            assert!(err.contains(e), "error lacks {e:?}:\n{err}");
        }
    };
    check(
        "pipeline = \"pipeline.toml\"\n[axes]\n\"train.value\" = [1, \"x\"]\n",
        &["g.toml:3: `stages.train.value`: expected an integer, found the string \"x\""],
    );
    check(
        "pipeline = \"pipeline.toml\"\n[axes]\n\"trian.value\" = [1]\n",
        &["g.toml:3: `trian.value`: the base pipeline has no stage `trian`", "did you mean `train`?"],
    );
    check(
        "pipeline = \"pipeline.toml\"\n[axes]\n\"train.valeu\" = [1]\n",
        &["g.toml:3: `stages.train.valeu`: kind `record` has no parameter `valeu`", "did you mean `value`?"],
    );
    check(
        "pipeline = \"pipeline.toml\"\n[axes]\n\"shared.sed\" = [1]\n",
        &["g.toml:3: `shared.sed`: the base pipeline's [shared] table has no value `sed`"],
    );
    check(
        "pipline = \"pipeline.toml\"\n[axes]\n\"train.value\" = [1]\n",
        &["g.toml:1: `pipline`: unknown key", "did you mean `pipeline`?", "g.toml:1: `pipeline`: the grid names no base pipeline"],
    );
    check("pipeline = \"pipeline.toml\"\n[axes]\n\"train.value\" = []\n", &["g.toml:3: `axes.train.value`: expected a non-empty list"]);
}

#[test]
fn clean_deletes_only_outputs_no_lock_references() {
    let f = Fixture::new(BASE);
    f.run();
    let old_train = f.output("train");
    f.write(&BASE.replace("[stages.train]\nkind = \"record\"\n", "[stages.train]\nkind = \"record\"\nvalue = 7\n"));
    f.run();
    let store = Store::new(f.store());
    let dry = gc::gc(&store, true).unwrap();
    assert_eq!(dry.removed.len(), 2, "old train and old score");
    assert!(old_train.exists(), "a dry run deletes nothing");
    let report = gc::gc(&store, false).unwrap();
    assert_eq!(report.removed, dry.removed);
    assert!(report.bytes > 0);
    assert!(!old_train.exists());
    assert_eq!(report.kept, 3);
    assert!(f.run().ran.is_empty(), "clean removed a referenced output");

    // A run holds the store shared; clean refuses to run meanwhile.
    let _guard = store.lock_shared().unwrap();
    let busy = gc::gc(&store, false).unwrap_err().to_string();
    assert!(busy.contains("in use by another latte process"), "{busy}");
}
