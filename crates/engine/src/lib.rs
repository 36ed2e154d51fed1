//! The pipeline engine: loads a TOML DAG of stages, validates it, computes content-hash cache
//! keys and runs stale stages. It knows nothing about video, tensors or Zarr.
//!
//! Entry points: `pipeline::load` (file -> validated `Pipeline`), `Plan::new` (keys, states,
//! what a run would execute and why), `runner::run` (executes plans), `status::Status` (the
//! `status --json` document), `grid` (parameter sweeps) and `gc` (store cleanup).

pub mod atomic;
pub mod error;
pub mod gc;
pub mod grid;
pub mod hash;
pub mod lock;
pub mod manifest;
pub mod pipeline;
pub mod plan;
pub mod registry;
pub mod runner;
pub mod stage;
pub mod status;
pub mod store;
mod suggest;

pub use error::{Diagnostic, Diagnostics, Error, Result};
pub use pipeline::{LoadOptions, Override, Pipeline, StageDecl};
pub use plan::{Plan, Reason, Selection, State};
pub use registry::Registry;
pub use runner::{JobInfo, Observer, Report, RunOptions, Silent};
pub use stage::{
    device_kind, Cancel, InputSpec, Interrupted, NoProgress, ParamSpec, ParamType, Params, Progress, Stage, StageContext, StageError,
};
pub use store::Store;
