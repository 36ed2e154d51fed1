//! The pipeline engine: loads a TOML DAG of stages, validates it, computes content-hash cache
//! keys and runs stale stages. It knows nothing about video, tensors or Zarr.

pub mod stage;

pub use stage::{InputSpec, NoProgress, ParamSpec, ParamType, Params, Progress, Stage, StageContext, StageError};
