//! The `status --json` document (documented in the README; scripts rely on it, so fields are
//! only ever added, and `schema` is bumped on any other change).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

use crate::plan::{Plan, State};

pub const STATUS_SCHEMA: u32 = 1;

#[derive(Clone, Debug, Serialize)]
pub struct Status {
    pub schema: u32,
    pub pipeline: PathBuf,
    pub store: PathBuf,
    pub lock: PathBuf,
    /// In topological order.
    pub stages: Vec<StageStatus>,
}

#[derive(Clone, Debug, Serialize)]
pub struct StageStatus {
    pub name: String,
    pub kind: String,
    pub version: String,
    /// `cached`, `stale` or `never-run`.
    pub state: State,
    pub key: String,
    /// The output directory (it exists only when `state` is `cached`).
    pub output: PathBuf,
    /// Input slot -> upstream stage name.
    pub inputs: BTreeMap<String, String>,
    /// Why the stage is not cached, e.g. `parameter changed (lr)`; empty when cached.
    pub reasons: Vec<String>,
    /// Seconds the cached output took to produce, when the lock records it.
    pub seconds: Option<f64>,
}

impl Status {
    pub fn of(plan: &Plan) -> Status {
        let stages = plan
            .stages
            .iter()
            .map(|s| StageStatus {
                name: s.decl.name.clone(),
                kind: s.decl.stage.kind().to_owned(),
                version: s.decl.stage.version().to_owned(),
                state: s.state,
                key: s.key.clone(),
                output: s.output.clone(),
                inputs: s.decl.inputs.clone(),
                reasons: s.reasons.iter().filter(|r| **r != crate::plan::Reason::Forced).map(ToString::to_string).collect(),
                seconds: plan.lock.stages.get(&s.decl.name).filter(|e| e.key == s.key && s.state == State::Cached).map(|e| e.seconds),
            })
            .collect();
        Status {
            schema: STATUS_SCHEMA,
            pipeline: plan.pipeline.file.clone(),
            store: plan.pipeline.store.clone(),
            lock: plan.pipeline.lock_file.clone(),
            stages,
        }
    }
}
