//! Loading and validating a pipeline file.
//!
//! ```toml
//! store = ".latte"                 # optional; relative to this file's folder
//!
//! [shared]                         # values any stage can reference as "${name}"
//! seed = 0
//!
//! [stages.frames]                  # a stage named `frames`
//! kind = "frames"                  # its kind, from the registry
//! inputs = { videos = "videos" }   # input slot -> upstream stage name
//! size = 256                       # the kind's parameters
//! seed = "${seed}"
//! ```
//!
//! Loading checks everything before anything runs and reports every problem at once, each with
//! the file, line and key: unknown top-level keys, unknown kinds, unknown or misspelled
//! parameters and slots (with the near match), wrong types, missing required parameters or
//! inputs, references to unknown stages or shared values, missing paths, and cycles.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use toml::Value;

use crate::error::{Diagnostic, Diagnostics, Error, Result};
use crate::registry::Registry;
use crate::stage::{ParamSpec, ParamType, Params, Stage};
use crate::suggest;

const TOP_LEVEL_KEYS: [&str; 3] = ["store", "shared", "stages"];

/// A validated pipeline: every stage's kind exists, its parameters are type-checked with
/// defaults filled in and shared references resolved, and the stages form a DAG.
#[derive(Clone)]
pub struct Pipeline {
    /// The pipeline file, absolute.
    pub file: PathBuf,
    /// Its folder; relative paths in the file resolve against it.
    pub dir: PathBuf,
    /// The content-addressed output store (default `.latte/` beside the file).
    pub store: PathBuf,
    /// The lock file recording what ran (default `<file stem>.lock` beside the file).
    pub lock_file: PathBuf,
    /// Stages in topological order: every stage comes after the stages it consumes.
    pub stages: Vec<StageDecl>,
}

/// One `[stages.NAME]` table, validated.
#[derive(Clone)]
pub struct StageDecl {
    pub name: String,
    pub stage: Arc<dyn Stage>,
    /// Input slot -> upstream stage name.
    pub inputs: BTreeMap<String, String>,
    /// Parameters with defaults filled in, shared references resolved, `Path` parameters made
    /// absolute.
    pub params: Params,
    /// Line of the `[stages.NAME]` header.
    pub line: usize,
}

impl Pipeline {
    pub fn stage(&self, name: &str) -> Option<&StageDecl> {
        self.stages.iter().find(|s| s.name == name)
    }

    /// `Error::UnknownStage` (with a near match) unless `name` is a stage of this pipeline.
    pub fn check_stage_name(&self, name: &str) -> Result<()> {
        if self.stage(name).is_some() {
            return Ok(());
        }
        Err(Error::UnknownStage {
            file: self.file.clone(),
            name: name.to_owned(),
            suggestion: suggest::near(name, self.stages.iter().map(|s| s.name.as_str())).map(str::to_owned),
        })
    }

    /// Stages that consume `name`'s output directly.
    pub fn consumers(&self, name: &str) -> impl Iterator<Item = &StageDecl> + '_ {
        let name = name.to_owned();
        self.stages.iter().filter(move |s| s.inputs.values().any(|up| *up == name))
    }
}

/// Changes to apply to a pipeline file while loading it (used by grids and the CLI).
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// Replaces the file's `store`.
    pub store: Option<PathBuf>,
    /// Replaces the default lock file path.
    pub lock_file: Option<PathBuf>,
    /// Values to set before validation.
    pub overrides: Vec<Override>,
}

/// Sets `shared.NAME` or `STAGE.PARAM` (also spelled `stages.STAGE.PARAM`) to a value that
/// comes from another file (a grid), whose location is reported if the value is invalid.
#[derive(Clone, Debug)]
pub struct Override {
    pub key: String,
    pub value: Value,
    pub file: PathBuf,
    pub line: usize,
}

/// Reads and validates the pipeline file at `path`.
pub fn load(path: &Path, registry: &Registry, options: &LoadOptions) -> Result<Pipeline> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io("cannot read pipeline file", path, e))?;
    let file = std::path::absolute(path).map_err(|e| Error::io("cannot resolve", path, e))?;
    parse(&text, &file, registry, options)
}

/// Validates pipeline `text` as if it were read from `file` (absolute).
pub fn parse(text: &str, file: &Path, registry: &Registry, options: &LoadOptions) -> Result<Pipeline> {
    let lines = LineIndex::new(text);
    let invalid = |line, key: &str, message: String, help: Option<String>| {
        Error::Invalid(Diagnostics(vec![Diagnostic { file: file.to_owned(), line, key: key.to_owned(), message, help }]))
    };
    let spanned = toml::de::DeTable::parse(text).map_err(|e| {
        let line = e.span().map_or(1, |s| lines.line(s.start));
        invalid(line, "", format!("not valid TOML: {}", e.message()), None)
    })?;
    let mut table: toml::Table = toml::from_str(text).map_err(|e| invalid(1, "", format!("not valid TOML: {e}"), None))?;
    let mut locations = Locations { file: file.to_owned(), lines: HashMap::new(), overrides: HashMap::new() };
    locations.record("", spanned.get_ref(), &lines);

    let mut v = Validator { locations, diags: Vec::new() };
    for o in &options.overrides {
        v.apply_override(&mut table, o);
    }
    let dir = file.parent().unwrap_or(Path::new("/")).to_owned();
    let pipeline = v.validate(&table, file, &dir, registry, options);
    match pipeline {
        Some(p) if v.diags.is_empty() => Ok(p),
        _ => Err(Error::Invalid(Diagnostics(v.diags))),
    }
}

/// Byte offset -> 1-based line.
pub(crate) struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    pub(crate) fn new(text: &str) -> Self {
        let starts = std::iter::once(0).chain(text.match_indices('\n').map(|(i, _)| i + 1)).collect();
        Self { starts }
    }

    pub(crate) fn line(&self, offset: usize) -> usize {
        self.starts.partition_point(|&s| s <= offset)
    }
}

/// Where each dotted key path was written.
struct Locations {
    file: PathBuf,
    lines: HashMap<String, usize>,
    overrides: HashMap<String, (PathBuf, usize)>,
}

impl Locations {
    fn record(&mut self, prefix: &str, table: &toml::de::DeTable<'_>, lines: &LineIndex) {
        for (k, v) in table.iter() {
            let path = join(prefix, k.get_ref());
            self.lines.insert(path.clone(), lines.line(k.span().start));
            if let toml::de::DeValue::Table(t) = v.get_ref() {
                self.record(&path, t, lines);
            }
        }
    }

    /// The location of `path`, or of its closest written parent.
    fn at(&self, path: &str) -> (PathBuf, usize) {
        let mut p = path;
        loop {
            if let Some((f, l)) = self.overrides.get(p) {
                return (f.clone(), *l);
            }
            if let Some(&l) = self.lines.get(p) {
                return (self.file.clone(), l);
            }
            match p.rfind('.') {
                Some(i) => p = &p[..i],
                None => return (self.file.clone(), 1),
            }
        }
    }
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

struct Validator {
    locations: Locations,
    diags: Vec<Diagnostic>,
}

impl Validator {
    fn error(&mut self, path: &str, message: impl Into<String>, help: Option<String>) {
        let (file, line) = self.locations.at(path);
        self.diags.push(Diagnostic { file, line, key: path.to_owned(), message: message.into(), help });
    }

    fn apply_override(&mut self, table: &mut toml::Table, o: &Override) {
        let here =
            |message: String, help: Option<String>| Diagnostic { file: o.file.clone(), line: o.line, key: o.key.clone(), message, help };
        let key = o.key.strip_prefix("stages.").unwrap_or(&o.key);
        let Some((head, name)) = key.split_once('.').filter(|(h, n)| !h.is_empty() && !n.is_empty() && !n.contains('.')) else {
            self.diags.push(here("not a parameter path".into(), Some("write `shared.NAME` or `STAGE.PARAM` (e.g. `train.lr`)".into())));
            return;
        };
        let (container, path) = if head == "shared" && !o.key.starts_with("stages.") {
            (table.get_mut("shared").and_then(Value::as_table_mut), format!("shared.{name}"))
        } else {
            let stages = table.get_mut("stages").and_then(Value::as_table_mut);
            let known: Vec<String> = stages.as_ref().map(|s| s.keys().cloned().collect()).unwrap_or_default();
            let stage = stages.and_then(|s| s.get_mut(head)).and_then(Value::as_table_mut);
            if stage.is_none() {
                let near = suggest::near(head, known.iter().map(String::as_str));
                self.diags.push(here(
                    format!("the base pipeline has no stage `{head}`"),
                    Some(match near {
                        Some(n) => format!("did you mean `{n}`? stages: {}", known.join(", ")),
                        None => format!("stages: {}", known.join(", ")),
                    }),
                ));
                return;
            }
            (stage, format!("stages.{head}.{name}"))
        };
        match container {
            Some(t) if head != "shared" || t.contains_key(name) => {
                t.insert(name.to_owned(), o.value.clone());
                self.locations.overrides.insert(path, (o.file.clone(), o.line));
            }
            _ => self.diags.push(here(
                format!("the base pipeline's [shared] table has no value `{name}`"),
                Some("an axis over a shared value needs the value defined in the base pipeline".into()),
            )),
        }
    }

    fn validate(&mut self, table: &toml::Table, file: &Path, dir: &Path, registry: &Registry, options: &LoadOptions) -> Option<Pipeline> {
        for key in table.keys() {
            if !TOP_LEVEL_KEYS.contains(&key.as_str()) {
                let help = allowed_help(key, TOP_LEVEL_KEYS);
                self.error(key, "unknown top-level key", Some(help));
            }
        }
        let store = match (&options.store, table.get("store")) {
            (Some(s), _) => dir.join(s),
            (None, None) => dir.join(".latte"),
            (None, Some(Value::String(s))) => dir.join(s),
            (None, Some(other)) => {
                self.error("store", format!("expected a path string, found {}", describe(other)), None);
                dir.join(".latte")
            }
        };
        let empty = toml::Table::new();
        let shared = match table.get("shared") {
            None => &empty,
            Some(Value::Table(t)) => t,
            Some(other) => {
                self.error("shared", format!("expected a table of values, found {}", describe(other)), None);
                &empty
            }
        };
        let stages = match table.get("stages") {
            Some(Value::Table(t)) if !t.is_empty() => t,
            Some(Value::Table(_)) | None => {
                self.error("stages", "the pipeline defines no stages", Some("add a `[stages.NAME]` table with a `kind`".into()));
                return None;
            }
            Some(other) => {
                self.error("stages", format!("expected tables `[stages.NAME]`, found {}", describe(other)), None);
                return None;
            }
        };

        let names: Vec<&str> = stages.keys().map(String::as_str).collect();
        let mut decls = Vec::new();
        for (name, value) in stages {
            let path = format!("stages.{name}");
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
                self.error(&path, "invalid stage name", Some("use letters, digits, `_` and `-`".into()));
                continue;
            }
            let Value::Table(t) = value else {
                self.error(&path, format!("expected a table, found {}", describe(value)), None);
                continue;
            };
            if let Some(decl) = self.stage(name, t, &names, shared, dir, registry) {
                decls.push(decl);
            }
        }
        if !self.diags.is_empty() {
            return None;
        }
        let stages = self.order(decls)?;
        let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or("pipeline");
        let lock_file = options.lock_file.clone().unwrap_or_else(|| dir.join(format!("{stem}.lock")));
        Some(Pipeline { file: file.to_owned(), dir: dir.to_owned(), store, lock_file, stages })
    }

    fn stage(
        &mut self,
        name: &str,
        t: &toml::Table,
        names: &[&str],
        shared: &toml::Table,
        dir: &Path,
        registry: &Registry,
    ) -> Option<StageDecl> {
        let path = format!("stages.{name}");
        let line = self.locations.at(&path).1;
        let kinds = || registry.kinds().collect::<Vec<_>>().join(", ");
        let stage = match t.get("kind") {
            None => {
                self.error(&path, "stage has no `kind`", Some(format!("add `kind = \"...\"`; kinds: {}", kinds())));
                return None;
            }
            Some(Value::String(k)) => match registry.get(k) {
                Some(s) => s.clone(),
                None => {
                    let help = match suggest::near(k, registry.kinds()) {
                        Some(n) => format!("did you mean `{n}`? kinds: {}", kinds()),
                        None => format!("kinds: {}", kinds()),
                    };
                    self.error(&format!("{path}.kind"), format!("unknown stage kind `{k}`"), Some(help));
                    return None;
                }
            },
            Some(other) => {
                self.error(&format!("{path}.kind"), format!("expected a kind name string, found {}", describe(other)), None);
                return None;
            }
        };

        let inputs = self.inputs(name, t.get("inputs"), stage.as_ref(), names);
        let specs = stage.params();
        let mut values = BTreeMap::new();
        for (key, raw) in t {
            if key == "kind" || key == "inputs" {
                continue;
            }
            let kpath = format!("{path}.{key}");
            let Some(spec) = specs.iter().find(|s| s.name == key) else {
                let allowed = specs.iter().map(|s| s.name).chain(["kind", "inputs"]);
                let help = allowed_help(key, allowed);
                self.error(&kpath, format!("kind `{}` has no parameter `{key}`", stage.kind()), Some(help));
                continue;
            };
            let value = match self.resolve_shared(&kpath, raw, shared) {
                Some(v) => v,
                None => continue,
            };
            match check_type(spec.ty, &value) {
                Ok(v) => {
                    if let Some(v) = self.resolve_path(&kpath, spec, v, dir) {
                        values.insert(key.clone(), v);
                    }
                }
                Err(expected) => self.error(&kpath, format!("expected {expected}, found {}", describe(&value)), Some(spec_help(spec))),
            }
        }
        for spec in specs {
            if values.contains_key(spec.name) || t.contains_key(spec.name) {
                continue;
            }
            match spec.default {
                None => self.error(&path, format!("missing required parameter `{}`", spec.name), Some(spec_help(spec))),
                Some(lit) => match spec.default_value().and_then(|v| check_type(spec.ty, &v).ok()) {
                    Some(v) => {
                        let v = if matches!(spec.ty, ParamType::Path | ParamType::OptionalPath) && v.as_str() != Some("") {
                            Value::String(dir.join(v.as_str()?).to_string_lossy().into_owned())
                        } else {
                            v
                        };
                        values.insert(spec.name.to_owned(), v);
                    }
                    None => self.error(
                        &path,
                        format!("kind `{}` declares an invalid default `{lit}` for `{}` (a bug in the kind)", stage.kind(), spec.name),
                        None,
                    ),
                },
            }
        }
        let params = Params { values };
        let inputs = inputs?;
        if self.diags.is_empty() {
            if let Err(msg) = stage.validate(&params) {
                // Point at the first parameter the message names, if the file sets it.
                let named = specs.iter().map(|s| s.name).find(|n| t.contains_key(*n) && msg.contains(&format!("`{n}`")));
                let at = named.map_or(path.clone(), |n| format!("{path}.{n}"));
                self.error(&at, msg, None);
            }
        }
        Some(StageDecl { name: name.to_owned(), stage, inputs, params, line })
    }

    fn inputs(&mut self, name: &str, raw: Option<&Value>, stage: &dyn Stage, names: &[&str]) -> Option<BTreeMap<String, String>> {
        let path = format!("stages.{name}.inputs");
        let specs = stage.inputs();
        let slots = || specs.iter().map(|s| s.name).collect::<Vec<_>>().join(", ");
        let empty = toml::Table::new();
        let table = match raw {
            None => &empty,
            Some(Value::Table(t)) => t,
            Some(other) => {
                self.error(
                    &path,
                    format!("expected a table `{{ slot = \"stage\" }}`, found {}", describe(other)),
                    Some(format!("slots of kind `{}`: {}", stage.kind(), slots())),
                );
                return None;
            }
        };
        let before = self.diags.len();
        let mut inputs = BTreeMap::new();
        for (slot, up) in table {
            let spath = format!("{path}.{slot}");
            if !specs.iter().any(|s| s.name == slot) {
                let help = if specs.is_empty() {
                    format!("kind `{}` takes no inputs", stage.kind())
                } else {
                    allowed_help(slot, specs.iter().map(|s| s.name))
                };
                self.error(&spath, format!("kind `{}` has no input slot `{slot}`", stage.kind()), Some(help));
                continue;
            }
            let Value::String(up) = up else {
                self.error(&spath, format!("expected the name of an upstream stage, found {}", describe(up)), None);
                continue;
            };
            if !names.contains(&up.as_str()) {
                let help = match suggest::near(up, names.iter().copied()) {
                    Some(n) => format!("did you mean `{n}`? stages: {}", names.join(", ")),
                    None => format!("stages: {}", names.join(", ")),
                };
                self.error(&spath, format!("no stage named `{up}`"), Some(help));
                continue;
            }
            inputs.insert(slot.clone(), up.clone());
        }
        for spec in specs.iter().filter(|s| s.required && !table.contains_key(s.name)) {
            let at = if raw.is_some() { path.clone() } else { format!("stages.{name}") };
            self.error(
                &at,
                format!("missing required input `{}` ({})", spec.name, spec.help),
                Some(format!("add `inputs = {{ {} = \"STAGE\" }}`", spec.name)),
            );
        }
        (self.diags.len() == before).then_some(inputs)
    }

    /// Replaces a `"${name}"` string with the shared value `name`.
    fn resolve_shared(&mut self, kpath: &str, raw: &Value, shared: &toml::Table) -> Option<Value> {
        let Some(name) = raw.as_str().and_then(|s| s.strip_prefix("${")).and_then(|s| s.strip_suffix('}')) else {
            return Some(raw.clone());
        };
        match shared.get(name) {
            Some(v) => Some(v.clone()),
            None => {
                let help = match suggest::near(name, shared.keys().map(String::as_str)) {
                    Some(n) => format!("did you mean `${{{n}}}`?"),
                    None => "define it in the [shared] table".to_owned(),
                };
                self.error(kpath, format!("no shared value named `{name}`"), Some(help));
                None
            }
        }
    }

    fn resolve_path(&mut self, kpath: &str, spec: &ParamSpec, v: Value, dir: &Path) -> Option<Value> {
        if !matches!(spec.ty, ParamType::Path | ParamType::OptionalPath) || v.as_str() == Some("") {
            return Some(v);
        }
        let p = dir.join(v.as_str()?);
        if spec.ty == ParamType::Path && !p.exists() {
            self.error(
                kpath,
                format!("path {} does not exist", p.display()),
                Some("relative paths are relative to the pipeline file's folder".into()),
            );
            return None;
        }
        Some(Value::String(p.to_string_lossy().into_owned()))
    }

    /// Topological order (Kahn's algorithm, ties broken by position in the file), or a cycle
    /// error naming its members.
    fn order(&mut self, decls: Vec<StageDecl>) -> Option<Vec<StageDecl>> {
        let mut remaining: BTreeMap<String, StageDecl> = decls.into_iter().map(|d| (d.name.clone(), d)).collect();
        let mut done: BTreeSet<String> = BTreeSet::new();
        let mut out = Vec::new();
        loop {
            let next = remaining
                .values()
                .filter(|d| d.inputs.values().all(|u| done.contains(u)))
                .min_by_key(|d| (d.line, d.name.clone()))
                .map(|d| d.name.clone());
            match next {
                Some(name) => {
                    let d = remaining.remove(&name)?;
                    done.insert(name);
                    out.push(d);
                }
                None if remaining.is_empty() => return Some(out),
                None => {
                    let cycle = find_cycle(&remaining);
                    let first = cycle.first().cloned().unwrap_or_default();
                    self.error(
                        &format!("stages.{first}.inputs"),
                        format!("stages form a cycle: {}", cycle.join(" -> ")),
                        Some("a stage cannot consume its own output, directly or through other stages".into()),
                    );
                    return None;
                }
            }
        }
    }
}

/// A cycle among stages that all wait on each other, as `a, b, ..., a`.
fn find_cycle(remaining: &BTreeMap<String, StageDecl>) -> Vec<String> {
    // Every remaining stage has an input that is also remaining, so walking inputs must
    // revisit a stage; the walk from that stage on is the cycle.
    let Some(mut cur) = remaining.keys().next().cloned() else { return Vec::new() };
    let mut seen: Vec<String> = Vec::new();
    while !seen.contains(&cur) {
        seen.push(cur.clone());
        match remaining[&cur].inputs.values().find(|u| remaining.contains_key(*u)) {
            Some(u) => cur = u.clone(),
            None => return seen,
        }
    }
    let start = seen.iter().position(|s| *s == cur).unwrap_or(0);
    // Walking inputs goes against the data flow; reverse so the message reads producer -> consumer.
    let mut cycle: Vec<String> = seen[start..].to_vec();
    cycle.reverse();
    // Start at the alphabetically first member so the message does not depend on the walk.
    let first = cycle.iter().enumerate().min_by_key(|(_, n)| n.as_str()).map_or(0, |(i, _)| i);
    cycle.rotate_left(first);
    cycle.push(cycle[0].clone());
    cycle
}

pub(crate) fn allowed_help<'a>(word: &str, allowed: impl IntoIterator<Item = &'a str>) -> String {
    let allowed: Vec<&str> = allowed.into_iter().collect();
    match suggest::near(word, allowed.iter().copied()) {
        Some(n) => format!("did you mean `{n}`? allowed: {}", allowed.join(", ")),
        None => format!("allowed: {}", allowed.join(", ")),
    }
}

fn spec_help(spec: &ParamSpec) -> String {
    let ty = expected(spec.ty);
    match spec.default {
        Some(d) => format!("`{}`: {} ({ty}, default {d})", spec.name, spec.help),
        None => format!("`{}`: {} ({ty}, required)", spec.name, spec.help),
    }
}

fn expected(ty: ParamType) -> &'static str {
    match ty {
        ParamType::Int => "an integer",
        ParamType::Float => "a number",
        ParamType::Bool => "true or false",
        ParamType::Str => "a string",
        ParamType::Device => "a device name (`cpu`, `wgpu`, `cuda`, `cuda:N`)",
        ParamType::Path | ParamType::OptionalPath => "a path string",
        ParamType::IntList => "a list of integers",
        ParamType::FloatList => "a list of numbers",
        ParamType::StrList => "a list of strings",
    }
}

/// The value with its type checked; integers become floats where a number is expected, so
/// `lr = 1` and `lr = 1.0` give the same cache key.
fn check_type(ty: ParamType, v: &Value) -> Result<Value, &'static str> {
    let float = |v: &Value| match v {
        Value::Float(f) => Some(Value::Float(*f)),
        Value::Integer(i) => Some(Value::Float(*i as f64)),
        _ => None,
    };
    let list = |v: &Value, f: &dyn Fn(&Value) -> Option<Value>| -> Option<Value> {
        v.as_array()?.iter().map(f).collect::<Option<Vec<_>>>().map(Value::Array)
    };
    let ok = match ty {
        ParamType::Int => v.is_integer().then(|| v.clone()),
        ParamType::Float => float(v),
        ParamType::Bool => v.is_bool().then(|| v.clone()),
        ParamType::Str | ParamType::Device | ParamType::Path | ParamType::OptionalPath => v.is_str().then(|| v.clone()),
        ParamType::IntList => list(v, &|e| e.is_integer().then(|| e.clone())),
        ParamType::FloatList => list(v, &float),
        ParamType::StrList => list(v, &|e| e.is_str().then(|| e.clone())),
    };
    ok.ok_or(expected(ty))
}

pub(crate) fn describe(v: &Value) -> String {
    match v {
        Value::String(s) => format!("the string {s:?}"),
        Value::Integer(i) => format!("the integer {i}"),
        Value::Float(f) => format!("the float {f}"),
        Value::Boolean(b) => format!("the boolean {b}"),
        Value::Datetime(d) => format!("the datetime {d}"),
        Value::Array(_) => "a list".to_owned(),
        Value::Table(_) => "a table".to_owned(),
    }
}
