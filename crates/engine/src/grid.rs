//! Parameter grids: one base pipeline, axes of values, one pipeline per point.
//!
//! ```toml
//! pipeline = "../pipeline.toml"        # the base pipeline, relative to this file
//! summary = ["metrics"]                # optional: stages whose metrics.json is tabulated
//!                                      # (default: the final stages, those nothing consumes)
//! [axes]
//! "train.variant" = [1, 2, 3, 4]       # STAGE.PARAM or shared.NAME -> values
//! "shared.seed" = [0, 1]
//! ```
//!
//! Points are the cartesian product of the axes (axes in key order, the last varying
//! fastest). Each point is the base pipeline with its values set; it keeps its own lock file
//! in `<grid stem>.grid/point-NNN.lock` beside the grid file and shares the base pipeline's
//! store, so stages with equal keys (preprocessing, usually) run once for the whole grid.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use toml::Value;

use crate::error::{Diagnostic, Diagnostics, Error, Result};
use crate::pipeline::{self, allowed_help, describe, LineIndex, LoadOptions, Override, Pipeline};
use crate::plan::Plan;
use crate::registry::Registry;

const GRID_KEYS: [&str; 3] = ["pipeline", "summary", "axes"];

pub struct Grid {
    pub file: PathBuf,
    pub base: PathBuf,
    pub axes: Vec<Axis>,
    /// Stages whose `metrics.json` the summary shows; `None`: the final stages.
    pub summary_stages: Option<Vec<String>>,
}

pub struct Axis {
    pub key: String,
    pub values: Vec<Value>,
    pub line: usize,
}

/// One point of a grid: its axis values and its pipeline.
pub struct Point {
    pub index: usize,
    pub values: Vec<(String, Value)>,
    pub pipeline: Pipeline,
}

/// Reads a grid file and loads (validates) the pipeline of every point.
pub fn load(path: &Path, registry: &Registry) -> Result<(Grid, Vec<Point>)> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io("cannot read grid file", path, e))?;
    let file = std::path::absolute(path).map_err(|e| Error::io("cannot resolve", path, e))?;
    let grid = parse(&text, &file)?;
    let dir = file.parent().unwrap_or(Path::new("/")).to_owned();
    let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or("grid").to_owned();

    let mut points = Vec::new();
    let mut diags = Vec::new();
    for (index, values) in product(&grid.axes).into_iter().enumerate() {
        let overrides = values
            .iter()
            .zip(&grid.axes)
            .map(|((key, value), axis)| Override { key: key.clone(), value: value.clone(), file: file.clone(), line: axis.line })
            .collect();
        let options = LoadOptions {
            lock_file: Some(dir.join(format!("{stem}.grid")).join(format!("point-{index:03}.lock"))),
            overrides,
            ..Default::default()
        };
        match pipeline::load(&grid.base, registry, &options) {
            Ok(pipeline) => points.push(Point { index, values, pipeline }),
            // Every point reports the same bad axis; keep each message once.
            Err(Error::Invalid(Diagnostics(d))) => diags.extend(d.into_iter().filter(|d| !diags.contains(d)).collect::<Vec<_>>()),
            Err(e) => return Err(e),
        }
    }
    if !diags.is_empty() {
        return Err(Error::Invalid(Diagnostics(diags)));
    }
    if let Some(stages) = &grid.summary_stages {
        if let Some(p) = points.first() {
            for s in stages {
                p.pipeline.check_stage_name(s)?;
            }
        }
    }
    Ok((grid, points))
}

fn parse(text: &str, file: &Path) -> Result<Grid> {
    let lines = LineIndex::new(text);
    let mut diags = Vec::new();
    let mut err = |line: usize, key: &str, message: String, help: Option<String>| {
        diags.push(Diagnostic { file: file.to_owned(), line, key: key.to_owned(), message, help });
    };
    let spanned = match toml::de::DeTable::parse(text) {
        Ok(t) => t,
        Err(e) => {
            err(e.span().map_or(1, |s| lines.line(s.start)), "", format!("not valid TOML: {}", e.message()), None);
            return Err(Error::Invalid(Diagnostics(diags)));
        }
    };
    let line_of = |path: &[&str]| -> usize {
        let mut table = spanned.get_ref();
        let mut line = 1;
        for part in path {
            let Some((k, v)) = table.iter().find(|(k, _)| k.get_ref() == part) else { break };
            line = lines.line(k.span().start);
            match v.get_ref() {
                toml::de::DeValue::Table(t) => table = t,
                _ => break,
            }
        }
        line
    };
    let table: toml::Table = toml::from_str(text).map_err(|e| {
        Error::Invalid(Diagnostics(vec![Diagnostic {
            file: file.to_owned(),
            line: 1,
            key: String::new(),
            message: e.to_string(),
            help: None,
        }]))
    })?;
    for key in table.keys().filter(|k| !GRID_KEYS.contains(&k.as_str())) {
        err(line_of(&[key]), key, "unknown key in a grid file".into(), Some(allowed_help(key, GRID_KEYS)));
    }
    let dir = file.parent().unwrap_or(Path::new("/"));
    let base = match table.get("pipeline") {
        Some(Value::String(p)) => dir.join(p),
        Some(other) => {
            err(line_of(&["pipeline"]), "pipeline", format!("expected a path string, found {}", describe(other)), None);
            PathBuf::new()
        }
        None => {
            err(1, "pipeline", "the grid names no base pipeline".into(), Some("add `pipeline = \"path/to/pipeline.toml\"`".into()));
            PathBuf::new()
        }
    };
    if !base.as_os_str().is_empty() && !base.is_file() {
        err(
            line_of(&["pipeline"]),
            "pipeline",
            format!("{} is not a file", base.display()),
            Some("the path is relative to the grid file's folder".into()),
        );
    }
    let summary_stages = match table.get("summary") {
        None => None,
        Some(Value::Array(a)) if a.iter().all(Value::is_str) => Some(a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect()),
        Some(other) => {
            err(line_of(&["summary"]), "summary", format!("expected a list of stage names, found {}", describe(other)), None);
            None
        }
    };
    let mut axes = Vec::new();
    match table.get("axes") {
        Some(Value::Table(t)) if !t.is_empty() => {
            for (key, values) in t {
                let line = line_of(&["axes", key]);
                match values {
                    Value::Array(a) if !a.is_empty() => axes.push(Axis { key: key.clone(), values: a.clone(), line }),
                    other => {
                        err(line, &format!("axes.{key}"), format!("expected a non-empty list of values, found {}", describe(other)), None)
                    }
                }
            }
        }
        _ => err(line_of(&["axes"]), "axes", "the grid has no axes".into(), Some("add `[axes]` with `\"STAGE.PARAM\" = [values]`".into())),
    }
    if !diags.is_empty() {
        return Err(Error::Invalid(Diagnostics(diags)));
    }
    Ok(Grid { file: file.to_owned(), base, axes, summary_stages })
}

/// Cartesian product, last axis varying fastest.
fn product(axes: &[Axis]) -> Vec<Vec<(String, Value)>> {
    let mut points = vec![Vec::new()];
    for axis in axes {
        points = points
            .into_iter()
            .flat_map(|p| {
                axis.values.iter().map(move |v| {
                    let mut p = p.clone();
                    p.push((axis.key.clone(), v.clone()));
                    p
                })
            })
            .collect();
    }
    points
}

/// The summary table: one row per point, its axis values and its final metrics.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

/// Builds the summary from the points' plans (after the run). Metric columns are the numeric,
/// string and boolean leaves of each summary stage's `metrics.json`, as `STAGE.a.b`.
pub fn summary(grid: &Grid, points: &[Point], plans: &[Plan]) -> Summary {
    let mut per_point: Vec<BTreeMap<String, String>> = Vec::new();
    let mut columns = BTreeSet::new();
    for plan in plans {
        let stages: Vec<&str> = match &grid.summary_stages {
            Some(s) => s.iter().map(String::as_str).collect(),
            None => plan
                .stages
                .iter()
                .filter(|s| plan.pipeline.consumers(&s.decl.name).next().is_none())
                .map(|s| s.decl.name.as_str())
                .collect(),
        };
        let mut metrics = BTreeMap::new();
        for name in stages {
            let Some(s) = plan.stage(name) else { continue };
            let Ok(bytes) = std::fs::read(s.output.join("metrics.json")) else { continue };
            if let Ok(json) = serde_json::from_slice::<serde_json::Value>(&bytes) {
                flatten(name, &json, &mut metrics);
            }
        }
        columns.extend(metrics.keys().cloned());
        per_point.push(metrics);
    }
    let mut header = vec!["point".to_owned()];
    header.extend(grid.axes.iter().map(|a| a.key.clone()));
    header.extend(columns.iter().cloned());
    let rows = points
        .iter()
        .zip(&per_point)
        .map(|(p, m)| {
            let mut row = vec![p.index.to_string()];
            row.extend(p.values.iter().map(|(_, v)| cell(v)));
            row.extend(columns.iter().map(|c| m.get(c).cloned().unwrap_or_default()));
            row
        })
        .collect();
    Summary { header, rows }
}

/// The curves of the summary stages' `curve.json` files (an `eval_curve` output: `"x"`, the x
/// axis' name, and `"curves"`, metric name → `[[x, y], ...]`), one figure per metric with one
/// line per point, labelled by the point's axis values, as the paper's Fig. 6 shows an
/// ablation: `<grid stem>.curves.png` for the first metric (FVD when there is one),
/// `<grid stem>.curves.<metric>.png` for others. Empty when no point has a curve.
pub fn curves(grid: &Grid, points: &[Point], plans: &[Plan]) -> Vec<(PathBuf, latte_plot::LineChart)> {
    let mut figures: BTreeMap<String, (String, Vec<latte_plot::Series>)> = BTreeMap::new();
    // Axes named `…seed` are replicates: the seeds of one setting share its colour and differ
    // in dash pattern, so a setting's spread reads at a glance.
    let is_seed = |k: &str| k.rsplit('.').next().unwrap_or(k).ends_with("seed");
    let key = |point: &Point, seed: bool| -> Vec<String> {
        point.values.iter().filter(|(k, _)| is_seed(k) == seed).map(|(_, v)| cell(v)).collect()
    };
    let mut settings: Vec<Vec<String>> = Vec::new();
    let mut seeds: Vec<Vec<String>> = Vec::new();
    for point in points {
        for (list, k) in [(&mut settings, key(point, false)), (&mut seeds, key(point, true))] {
            if !list.contains(&k) {
                list.push(k);
            }
        }
    }
    for (point, plan) in points.iter().zip(plans) {
        let colour = settings.iter().position(|k| *k == key(point, false)).unwrap_or(0);
        let dash = seeds.iter().position(|k| *k == key(point, true)).unwrap_or(0);
        for s in &plan.stages {
            if grid.summary_stages.as_ref().is_some_and(|names| !names.contains(&s.decl.name)) {
                continue;
            }
            let Ok(bytes) = std::fs::read(s.output.join("curve.json")) else { continue };
            let Ok(json) = serde_json::from_slice::<serde_json::Value>(&bytes) else { continue };
            let x = json["x"].as_str().unwrap_or("step").to_owned();
            for (metric, line) in json["curves"].as_object().into_iter().flatten() {
                let pts = line.as_array().into_iter().flatten().filter_map(|p| Some((p[0].as_f64()?, p[1].as_f64()?))).collect();
                let label = point
                    .values
                    .iter()
                    .map(|(k, v)| format!("{}={}", k.rsplit('.').next().unwrap_or(k), cell(v)))
                    .collect::<Vec<_>>()
                    .join(", ");
                figures.entry(metric.clone()).or_insert_with(|| (x.clone(), Vec::new())).1.push(latte_plot::Series {
                    label,
                    points: pts,
                    colour,
                    dash,
                    faint: false,
                });
            }
        }
    }
    let stem = grid.file.file_stem().and_then(|s| s.to_str()).unwrap_or("grid");
    let dir = grid.file.parent().unwrap_or(Path::new("/"));
    let mut names: Vec<&String> = figures.keys().collect();
    names.sort_by_key(|n| (!n.starts_with("FVD"), n.to_string()));
    names
        .into_iter()
        .enumerate()
        .map(|(i, name)| {
            let (x, series) = &figures[name];
            let path = if i == 0 {
                dir.join(format!("{stem}.curves.png"))
            } else {
                dir.join(format!("{stem}.curves.{}.png", name.to_lowercase()))
            };
            let chart = latte_plot::LineChart {
                title: format!("{name} over training ({stem})"),
                x_label: x.clone(),
                y_label: name.clone(),
                log_x: false,
                log_y: false,
                series: series.clone(),
            };
            (path, chart)
        })
        .collect()
}

/// Draws [`curves`] into their files; returns the files written.
pub fn write_curves(grid: &Grid, points: &[Point], plans: &[Plan]) -> Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for (path, chart) in curves(grid, points, plans) {
        let png = chart.to_png().map_err(|e| Error::Figure { path: path.clone(), message: e.to_string() })?;
        crate::store::write_atomic(&path, &png)?;
        written.push(path);
    }
    Ok(written)
}

fn cell(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn flatten(prefix: &str, v: &serde_json::Value, out: &mut BTreeMap<String, String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                flatten(&format!("{prefix}.{k}"), v, out);
            }
        }
        serde_json::Value::Number(n) => {
            out.insert(prefix.to_owned(), n.to_string());
        }
        serde_json::Value::String(s) => {
            out.insert(prefix.to_owned(), s.clone());
        }
        serde_json::Value::Bool(b) => {
            out.insert(prefix.to_owned(), b.to_string());
        }
        _ => {}
    }
}

impl Summary {
    pub fn to_csv(&self) -> String {
        let field = |s: &String| {
            if s.contains([',', '"', '\n']) {
                format!("\"{}\"", s.replace('"', "\"\""))
            } else {
                s.clone()
            }
        };
        let line = |r: &Vec<String>| r.iter().map(field).collect::<Vec<_>>().join(",");
        std::iter::once(&self.header).chain(&self.rows).map(line).map(|l| l + "\n").collect()
    }

    pub fn to_markdown(&self) -> String {
        let line = |r: &Vec<String>| format!("| {} |\n", r.iter().map(|c| c.replace('|', "\\|")).collect::<Vec<_>>().join(" | "));
        let mut s = line(&self.header);
        s.push_str(&format!("|{}\n", "---|".repeat(self.header.len())));
        for r in &self.rows {
            s.push_str(&line(r));
        }
        s
    }

    /// One bar chart per numeric metric column (bars = points, labelled with their axis
    /// values), or `None` when no metric column is numeric.
    pub fn bar_charts(&self, axes: usize) -> Option<Vec<latte_plot::BarChart>> {
        let first_metric = 1 + axes;
        let x_label = if axes == 0 { "point".to_owned() } else { self.header[1..first_metric].join(", ") };
        let label = |r: &Vec<String>| if axes == 0 { r[0].clone() } else { r[1..first_metric].join(", ") };
        let charts: Vec<latte_plot::BarChart> = (first_metric..self.header.len())
            .filter_map(|c| {
                let vals: Option<Vec<f64>> = self.rows.iter().map(|r| r.get(c)?.parse::<f64>().ok().filter(|v| v.is_finite())).collect();
                let vals = vals.filter(|v| !v.is_empty())?;
                Some(latte_plot::BarChart {
                    title: self.header[c].clone(),
                    x_label: x_label.clone(),
                    y_label: self.header[c].rsplit('.').next().unwrap_or_default().to_owned(),
                    bars: vals.into_iter().zip(&self.rows).map(|(value, row)| latte_plot::Bar { label: label(row), value }).collect(),
                })
            })
            .collect();
        (!charts.is_empty()).then_some(charts)
    }

    /// Writes `<grid stem>.summary.svg` (the [`Summary::bar_charts`] one under the other)
    /// beside the grid file, when there is something to plot. SVG, not PNG: it opens in any
    /// browser, and hovering shows nothing hidden, every value is printed on its bar.
    pub fn write_plot(&self, grid: &Grid) -> Result<Option<PathBuf>> {
        let Some(charts) = self.bar_charts(grid.axes.len()) else { return Ok(None) };
        let stem = grid.file.file_stem().and_then(|s| s.to_str()).unwrap_or("grid");
        let path = grid.file.parent().unwrap_or(Path::new("/")).join(format!("{stem}.summary.svg"));
        let svg = latte_plot::BarChart::column_svg(&charts).map_err(|e| Error::Figure { path: path.clone(), message: e.to_string() })?;
        crate::store::write_atomic(&path, svg.as_bytes())?;
        Ok(Some(path))
    }

    /// Writes `<grid stem>.summary.csv` and `.summary.md` beside the grid file.
    pub fn write(&self, grid: &Grid) -> Result<(PathBuf, PathBuf)> {
        let stem = grid.file.file_stem().and_then(|s| s.to_str()).unwrap_or("grid");
        let dir = grid.file.parent().unwrap_or(Path::new("/"));
        let csv = dir.join(format!("{stem}.summary.csv"));
        let md = dir.join(format!("{stem}.summary.md"));
        crate::store::write_atomic(&csv, self.to_csv().as_bytes())?;
        crate::store::write_atomic(&md, self.to_markdown().as_bytes())?;
        Ok((csv, md))
    }
}
