//! Cache keys, each stage's state, and which stages a run executes and why.
//!
//! The cache key of a stage is SHA-256 over a canonical encoding (see `hash::canonical`) of:
//! a schema tag, the kind, the kind's version string, the resolved parameters (with every
//! `Path` parameter replaced by the content digest of what it points to) and the cache keys
//! of its inputs by slot. The stage's name, absolute paths, thread counts and timestamps are
//! left out, so identical stages in different pipelines (grid points) share one output.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

use crate::error::Result;
use crate::hash::{canonical, sha256_hex, Hasher};
use crate::lock::{LockEntry, LockFile};
use crate::manifest::Damage;
use crate::pipeline::{Pipeline, StageDecl};
use crate::stage::ParamType;
use crate::store::Store;

const KEY_SCHEMA: &str = "latte-pipeline/cache-key/v1";

/// Which stages a run targets.
#[derive(Clone, Debug, Default)]
pub struct Selection {
    /// Stages to run (with what they need). Empty: the whole pipeline.
    pub targets: Vec<String>,
    /// Also target everything downstream of `targets`.
    pub downstream: bool,
    /// Rerun the targeted stages even if they are cached.
    pub force: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// The output for the current key is in the store.
    Cached,
    /// The stage ran before (the lock has it) but not with the current key.
    Stale,
    /// Neither the lock nor the store knows the stage.
    NeverRun,
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            State::Cached => "cached",
            State::Stale => "stale",
            State::NeverRun => "never run",
        })
    }
}

/// Why a stage would run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    New,
    Forced,
    KindChanged {
        from: String,
        to: String,
    },
    VersionChanged {
        from: String,
        to: String,
    },
    ParamsChanged(Vec<String>),
    InputsChanged(Vec<String>),
    /// The lock records the current key but the store lacks the output (deleted or cleaned).
    OutputMissing,
    /// The output is in the store but differs from its manifest (`manifest::quick_check`).
    OutputDamaged(Vec<Damage>),
    /// An upstream stage (by slot) reruns because its output is damaged, so this one is
    /// rebuilt from the repaired bytes too.
    InputDamaged(Vec<String>),
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::New => write!(f, "new"),
            Reason::Forced => write!(f, "forced"),
            Reason::KindChanged { from, to } => write!(f, "kind changed ({from} -> {to})"),
            Reason::VersionChanged { from, to } => write!(f, "code version changed ({from} -> {to})"),
            Reason::ParamsChanged(p) => write!(f, "parameter changed ({})", p.join(", ")),
            Reason::InputsChanged(i) => write!(f, "input changed ({})", i.join(", ")),
            Reason::OutputMissing => write!(f, "output missing from the store"),
            Reason::OutputDamaged(d) => {
                const SHOWN: usize = 3;
                let files: Vec<String> = d.iter().take(SHOWN).map(ToString::to_string).collect();
                write!(f, "output damaged: {}", files.join(", "))?;
                if d.len() > SHOWN {
                    write!(f, " and {} more (`cargo xtask verify` lists them)", d.len() - SHOWN)?;
                }
                Ok(())
            }
            Reason::InputDamaged(slots) => write!(f, "input damaged upstream ({})", slots.join(", ")),
        }
    }
}

/// One stage in a plan.
#[derive(Clone)]
pub struct PlannedStage {
    pub decl: StageDecl,
    pub key: String,
    pub output: PathBuf,
    pub state: State,
    /// Why it is not cached (or `Forced`); empty when cached and not forced.
    pub reasons: Vec<Reason>,
    /// Part of this run (a target or something a target needs).
    pub selected: bool,
    /// Will execute: selected and (not cached or forced).
    pub run: bool,
    /// Replaces the output in the store if there is one (`--force`, or a damaged output).
    pub force: bool,
    /// The lock entry this stage gets once complete (digest and timings filled in then).
    pub entry: LockEntry,
}

/// A pipeline with every stage's key and state computed.
#[derive(Clone)]
pub struct Plan {
    pub pipeline: Pipeline,
    pub store: Store,
    /// In topological order.
    pub stages: Vec<PlannedStage>,
    pub lock: LockFile,
    /// Non-fatal problems (e.g. a corrupt lock file, ignored).
    pub warnings: Vec<String>,
}

impl Plan {
    /// Computes keys and states. Hashes the content behind `Path` parameters (memoised by
    /// stat in the store, so an unchanged dataset costs one `stat` per file).
    pub fn new(pipeline: &Pipeline, selection: &Selection) -> Result<Plan> {
        for t in &selection.targets {
            pipeline.check_stage_name(t)?;
        }
        let store = Store::new(&pipeline.store);
        let (lock, warning) = LockFile::read(&pipeline.lock_file);
        let hasher = store.hasher();
        let mut keys: BTreeMap<String, String> = BTreeMap::new();
        let mut stages = Vec::new();
        // Stages whose complete output is damaged, or downstream of one: they rerun and
        // replace what is in the store.
        let mut rebuilt: BTreeSet<String> = BTreeSet::new();
        for decl in &pipeline.stages {
            let entry = entry_for(decl, &keys, &store, &hasher)?;
            keys.insert(decl.name.clone(), entry.key.clone());
            let output = store.output(&entry.key);
            let damaged_inputs: Vec<String> =
                decl.inputs.iter().filter(|(_, up)| rebuilt.contains(*up)).map(|(slot, _)| slot.clone()).collect();
            let (state, reasons) = match lock.stages.get(&decl.name) {
                _ if store.is_complete(&entry.key) => {
                    let damage = store.damage(&entry.key);
                    if !damage.is_empty() {
                        (State::Stale, vec![Reason::OutputDamaged(damage)])
                    } else if !damaged_inputs.is_empty() {
                        (State::Stale, vec![Reason::InputDamaged(damaged_inputs)])
                    } else {
                        (State::Cached, Vec::new())
                    }
                }
                None => (State::NeverRun, vec![Reason::New]),
                Some(old) => (State::Stale, diff(old, &entry)),
            };
            if state == State::Stale && store.is_complete(&entry.key) {
                rebuilt.insert(decl.name.clone());
            }
            stages.push(PlannedStage {
                decl: decl.clone(),
                key: entry.key.clone(),
                output,
                state,
                reasons,
                selected: false,
                run: false,
                force: false,
                entry,
            });
        }
        // A memo that cannot be saved only costs re-hashing next time.
        let _ = hasher.save();

        let (selected, forced) = select(pipeline, selection);
        for s in &mut stages {
            s.selected = selected.contains(&s.decl.name);
            s.force = forced.contains(&s.decl.name);
            if s.force && s.selected {
                s.reasons.insert(0, Reason::Forced);
            }
            s.run = s.selected && (s.force || s.state != State::Cached);
            // A stale stage whose output is still in the store (damaged, or downstream of
            // damage) replaces it as a forced one does, without being reported as forced.
            s.force |= rebuilt.contains(&s.decl.name);
        }
        Ok(Plan { pipeline: pipeline.clone(), store, stages, lock, warnings: warning.into_iter().collect() })
    }

    pub fn stage(&self, name: &str) -> Option<&PlannedStage> {
        self.stages.iter().find(|s| s.decl.name == name)
    }
}

/// The stages a run covers and the ones it forces.
fn select(p: &Pipeline, sel: &Selection) -> (BTreeSet<String>, BTreeSet<String>) {
    let all: BTreeSet<String> = p.stages.iter().map(|s| s.name.clone()).collect();
    if sel.targets.is_empty() {
        let forced = if sel.force { all.clone() } else { BTreeSet::new() };
        return (all, forced);
    }
    let mut targets: BTreeSet<String> = sel.targets.iter().cloned().collect();
    if sel.downstream {
        // Stages are in topological order, so one forward pass closes over consumers.
        for s in &p.stages {
            if s.inputs.values().any(|u| targets.contains(u)) {
                targets.insert(s.name.clone());
            }
        }
    }
    let mut needed = targets.clone();
    for s in p.stages.iter().rev() {
        if needed.contains(&s.name) {
            needed.extend(s.inputs.values().cloned());
        }
    }
    let forced = if sel.force { targets } else { BTreeSet::new() };
    (needed, forced)
}

/// The key and lock entry (without output digest and timings) of `decl`.
fn entry_for(decl: &StageDecl, keys: &BTreeMap<String, String>, store: &Store, hasher: &Hasher) -> Result<LockEntry> {
    let mut key_params = toml::Table::new();
    let mut path_digests = BTreeMap::new();
    for (name, value) in &decl.params.values {
        let spec = decl.stage.params().iter().find(|s| s.name == name);
        if decl.stage.unkeyed_defaults().contains(&name.as_str()) && spec.and_then(|s| s.default_value()).as_ref() == Some(value) {
            continue;
        }
        let ty = spec.map(|s| s.ty);
        let keyed = match value.as_str() {
            Some(p) if ty == Some(ParamType::OptionalPath) && !std::path::Path::new(p).exists() => {
                path_digests.insert(name.clone(), "absent".to_owned());
                toml::Value::String("absent".to_owned())
            }
            Some(p) if matches!(ty, Some(ParamType::Path | ParamType::OptionalPath)) && !p.is_empty() => {
                let d = hasher.digest(std::path::Path::new(p))?;
                path_digests.insert(name.clone(), d.clone());
                toml::Value::String(d)
            }
            Some(dev) if ty == Some(ParamType::Device) => toml::Value::String(crate::stage::device_kind(dev)),
            _ => value.clone(),
        };
        key_params.insert(name.clone(), keyed);
    }
    let inputs: BTreeMap<String, String> =
        decl.inputs.iter().map(|(slot, up)| (slot.clone(), keys.get(up).cloned().unwrap_or_default())).collect();
    let mut t = toml::Table::new();
    t.insert("schema".into(), KEY_SCHEMA.into());
    t.insert("kind".into(), decl.stage.kind().into());
    t.insert("version".into(), decl.stage.version().into());
    t.insert("params".into(), toml::Value::Table(key_params));
    t.insert("inputs".into(), toml::Value::Table(inputs.iter().map(|(k, v)| (k.clone(), toml::Value::String(v.clone()))).collect()));
    let mut text = String::new();
    canonical(&toml::Value::Table(t), &mut text);
    let key = sha256_hex(text.as_bytes());
    let params = decl.params.values.iter().map(|(k, v)| (k.clone(), serde_json::to_value(v).unwrap_or(serde_json::Value::Null))).collect();
    Ok(LockEntry {
        kind: decl.stage.kind().to_owned(),
        version: decl.stage.version().to_owned(),
        output: store.output(&key),
        key,
        params,
        path_digests,
        inputs,
        output_digest: String::new(),
        started_unix: 0,
        seconds: 0.0,
    })
}

/// Why `new` differs from the lock's `old` entry.
fn diff(old: &LockEntry, new: &LockEntry) -> Vec<Reason> {
    if old.key == new.key {
        return vec![Reason::OutputMissing];
    }
    let mut reasons = Vec::new();
    if old.kind != new.kind {
        reasons.push(Reason::KindChanged { from: old.kind.clone(), to: new.kind.clone() });
    }
    if old.version != new.version {
        reasons.push(Reason::VersionChanged { from: old.version.clone(), to: new.version.clone() });
    }
    let names: BTreeSet<&String> = old.params.keys().chain(new.params.keys()).collect();
    let params: Vec<String> = names
        .into_iter()
        .filter(|n| old.params.get(*n) != new.params.get(*n) || old.path_digests.get(*n) != new.path_digests.get(*n))
        .cloned()
        .collect();
    if !params.is_empty() {
        reasons.push(Reason::ParamsChanged(params));
    }
    let slots: BTreeSet<&String> = old.inputs.keys().chain(new.inputs.keys()).collect();
    let inputs: Vec<String> = slots.into_iter().filter(|s| old.inputs.get(*s) != new.inputs.get(*s)).cloned().collect();
    if !inputs.is_empty() {
        reasons.push(Reason::InputsChanged(inputs));
    }
    if reasons.is_empty() {
        // Only the key's encoding changed (a new engine version).
        reasons.push(Reason::New);
    }
    reasons
}
