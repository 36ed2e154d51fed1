//! A metric over training: the `metrics.json` entries of a run's checkpoints gathered into one
//! line per metric, as `eval_curve` writes them (`curve.json`, its figure, `metrics.json`).

use serde_json::{json, Map, Value};

/// The metrics whose entries a curve follows.
const METRICS: [&str; 2] = ["fvd", "fid"];

/// One evaluated checkpoint: its training step and its `metrics.json`.
#[derive(Clone, Debug)]
pub struct CurvePoint {
    pub step: u64,
    pub metrics: Value,
}

/// The evaluated checkpoints of a run, in step order.
#[derive(Clone, Debug, Default)]
pub struct Curve {
    pub points: Vec<CurvePoint>,
}

impl Curve {
    /// Metric name (`FVD-16`, `FID-2048`) → `[[step, value], ...]` of the computed entries,
    /// names in the order they first appear.
    pub fn lines(&self) -> Map<String, Value> {
        let mut lines = Map::new();
        for p in &self.points {
            for (name, v) in computed(&p.metrics) {
                if let Some(line) = lines.entry(name).or_insert_with(|| json!([])).as_array_mut() {
                    line.push(json!([p.step, v]));
                }
            }
        }
        lines
    }

    /// The metrics (`fvd`, `fid`) that some checkpoint could not compute for want of weights.
    pub fn missing_weights(&self) -> Vec<&'static str> {
        METRICS.into_iter().filter(|k| self.points.iter().any(|p| p.metrics[*k]["status"] == "missing_weights")).collect()
    }

    /// `curve.json`: the x axis' name, the lines, each point's entries, the metrics missing
    /// weights and the caller's `settings`.
    pub fn to_json(&self, settings: &Value) -> Value {
        json!({
            "x": "training step",
            "curves": self.lines(),
            "points": self.points.iter().map(|p| json!({"step": p.step, "fvd": p.metrics["fvd"], "fid": p.metrics["fid"]})).collect::<Vec<_>>(),
            "missing_weights": self.missing_weights(),
            "settings": settings,
        })
    }

    /// The first line's metric name and `(step, value)` points: what the figure draws.
    pub fn first_line(&self) -> Option<(String, Vec<(f64, f64)>)> {
        let (name, line) = self.lines().into_iter().next()?;
        let points = line.as_array().into_iter().flatten().filter_map(|p| Some((p[0].as_f64()?, p[1].as_f64()?))).collect();
        Some((name, points))
    }

    /// `curve.png`'s chart: the first line over training steps (`None` when nothing was
    /// computed).
    pub fn chart(&self, log_x: bool) -> Option<latte_plot::LineChart> {
        let (name, points) = self.first_line()?;
        Some(latte_plot::LineChart {
            title: format!("{name} over training"),
            x_label: "training step".into(),
            y_label: name,
            log_x,
            log_y: false,
            series: vec![latte_plot::Series::new("", points)],
        })
    }

    /// The last checkpoint's entries and step, laid out as a `metrics.json` with a `step`, so
    /// that whatever tabulates metrics stages tabulates a curve's end too.
    pub fn last(&self) -> Value {
        let last = self.points.last().map(|p| p.metrics.clone()).unwrap_or(Value::Null);
        json!({"step": self.points.last().map(|p| p.step), "fvd": last["fvd"], "fid": last["fid"]})
    }
}

/// The computed entries of a `metrics.json` (`fvd`, `fid`): name and value.
fn computed(metrics: &Value) -> Vec<(String, f64)> {
    METRICS.into_iter().filter_map(|k| Some((metrics[k]["name"].as_str()?.to_owned(), metrics[k]["value"].as_f64()?))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, value: f64) -> Value {
        json!({"status": "computed", "name": name, "value": value})
    }

    #[test]
    fn lines_follow_the_computed_entries_and_the_end_is_the_last_checkpoint() {
        let missing = json!({"status": "missing_weights", "value": null});
        let curve = Curve {
            points: vec![
                CurvePoint { step: 10, metrics: json!({"fvd": entry("FVD-2", 3.0), "fid": missing}) },
                CurvePoint { step: 20, metrics: json!({"fvd": entry("FVD-2", 2.5), "fid": entry("FID-4", 7.0)}) },
            ],
        };
        assert_eq!(Value::Object(curve.lines()), json!({"FVD-2": [[10, 3.0], [20, 2.5]], "FID-4": [[20, 7.0]]}));
        assert_eq!(curve.missing_weights(), ["fid"]);
        assert_eq!(curve.first_line(), Some(("FVD-2".to_owned(), vec![(10.0, 3.0), (20.0, 2.5)])));
        let doc = curve.to_json(&json!({"seed": 1}));
        assert_eq!(doc["points"][0], json!({"step": 10, "fvd": entry("FVD-2", 3.0), "fid": missing}));
        assert_eq!(doc["settings"], json!({"seed": 1}));
        assert_eq!(curve.last(), json!({"step": 20, "fvd": entry("FVD-2", 2.5), "fid": entry("FID-4", 7.0)}));
        assert_eq!(Curve::default().last(), json!({"step": null, "fvd": null, "fid": null}));
        assert_eq!(Curve::default().first_line(), None);
    }
}
