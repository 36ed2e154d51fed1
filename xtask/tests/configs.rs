//! Every shipped pipeline and grid validates against the real stage registry, so a renamed
//! parameter or kind cannot leave `pipeline.toml` or `configs/` silently broken.

use std::path::{Path, PathBuf};

use latte_engine::{grid, pipeline, Error, LoadOptions};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn configs(suffix: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("configs"))
        .expect("configs/")
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    files.sort();
    files
}

/// Loads `file`; datasets and weights are downloaded separately, so a missing path is the only
/// problem allowed.
#[track_caller]
fn check_valid_but_for_absent_data(file: &Path) {
    match pipeline::load(file, &latte_stages::registry(), &LoadOptions::default()) {
        Ok(_) => {}
        Err(Error::Invalid(d)) => {
            for diag in &d.0 {
                assert!(diag.message.ends_with("does not exist"), "{}: {diag}", file.display());
            }
        }
        Err(e) => panic!("{}: {e}", file.display()),
    }
}

#[test]
fn the_default_pipeline_is_valid() {
    check_valid_but_for_absent_data(&root().join("pipeline.toml"));
    let text = std::fs::read_to_string(root().join("pipeline.toml")).unwrap();
    for kind in ["videos", "frames", "vae_train", "latents", "train", "sample", "metrics"] {
        assert!(text.contains(&format!("kind = \"{kind}\"")), "pipeline.toml lacks a `{kind}` stage");
    }
}

#[test]
fn paper_pipelines_are_valid_but_for_absent_data() {
    let files: Vec<PathBuf> = configs(".toml").into_iter().filter(|p| !p.to_string_lossy().ends_with(".grid.toml")).collect();
    assert!(files.len() >= 4, "{files:?}");
    for file in files {
        check_valid_but_for_absent_data(&file);
    }
}

#[test]
fn grids_are_valid() {
    let files = configs(".grid.toml");
    assert!(!files.is_empty());
    for file in files {
        let (_, points) = grid::load(&file, &latte_stages::registry()).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert!(points.len() >= 2, "{}", file.display());
    }
}
