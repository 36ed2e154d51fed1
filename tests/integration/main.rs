//! End-to-end tests of the pipeline engine, one binary (ripgrep's layout).

// Loading: every invalid pipeline gives an error naming the file, line and key.
mod validation;
// The cache matrix: what reruns after which change, and what is recorded.
mod cache;
// `--stage`, `--downstream`, `--force`, concurrency and failures.
mod selection;
// A run killed with SIGKILL mid-write leaves nothing marked cached; a cancelled one stops at
// a safe point and starts nothing new.
mod interrupt;
// A stage's scratch directory outlives a failure so its rerun resumes; `clean` and `--force`.
mod work;
// A damaged store entry is detected, named, and rebuilt with what is downstream of it.
mod damage;
// Grids share stages between points and summarise their metrics; `clean` keeps what locks use.
mod grid;
// The README's `status --json` schema and commands match the code and `.ci/run`.
mod docs;
