//! `loss.png`: the training loss per step (faint) and its moving average on a log axis when
//! every loss is positive, drawn by latte-plot with a title, labelled axes and tick values.

use std::path::Path;

use latte_plot::{LineChart, Series};

use crate::TrainError;

/// A per-step line of a long run is thinned to about this many points: more are invisible
/// at the figure's width and only make the file larger.
const MAX_POINTS: usize = 2000;

/// The figure of `(step, loss)` points; `None` when no loss is finite.
pub fn loss_chart(points: &[(u64, f64)]) -> Option<LineChart> {
    let pts: Vec<(f64, f64)> = points.iter().filter(|(_, l)| l.is_finite()).map(|&(s, l)| (s as f64, l)).collect();
    if pts.is_empty() {
        return None;
    }
    // Bias-corrected exponential average (as Adam's moments), so it starts on the data.
    let (mut smooth, mut weight) = (0.0, 0.0);
    let average: Vec<(f64, f64)> = pts
        .iter()
        .map(|&(s, l)| {
            smooth = 0.95 * smooth + 0.05 * l;
            weight = 0.95 * weight + 0.05;
            (s, smooth / weight)
        })
        .collect();
    let stride = pts.len().div_ceil(MAX_POINTS);
    let thin = |v: &[(f64, f64)]| -> Vec<(f64, f64)> {
        let mut out: Vec<(f64, f64)> = v.iter().step_by(stride).copied().collect();
        if (v.len() - 1) % stride != 0 {
            out.extend(v.last());
        }
        out
    };
    let log_y = pts.iter().all(|&(_, l)| l > 0.0);
    Some(LineChart {
        title: "Training loss".into(),
        x_label: "training step".into(),
        y_label: if log_y { "loss (log scale)".into() } else { "loss".into() },
        log_x: false,
        log_y,
        series: vec![Series { faint: true, ..Series::new("per step", thin(&pts)) }, Series::new("moving average (0.95)", thin(&average))],
    })
}

/// Writes the figure of `(step, loss)` points to `path` (PNG, written atomically); writes
/// nothing when no loss is finite.
pub fn plot_loss(points: &[(u64, f64)], path: &Path) -> Result<(), TrainError> {
    let Some(chart) = loss_chart(points) else { return Ok(()) };
    let png = chart.to_png().map_err(|source| TrainError::Figure { path: path.to_owned(), source })?;
    latte_nn::host::write_atomic(path, &png).map_err(|e| TrainError::Io { path: path.to_owned(), source: std::io::Error::other(e) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plot_draws_both_curves_with_labelled_axes_on_a_png() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("loss.png");
        let pts: Vec<(u64, f64)> = (1..=300).map(|s| (s, 2.0 / (s as f64).sqrt() + 0.05 * ((s * 7919 % 13) as f64 / 13.0))).collect();
        plot_loss(&pts, &path).unwrap();
        if let Ok(keep) = std::env::var("LATTE_KEEP_PLOT") {
            std::fs::copy(&path, keep).unwrap();
        }
        let png = std::fs::read(&path).unwrap();
        assert_eq!(&png[1..4], b"PNG");
        let chart = loss_chart(&pts).unwrap();
        assert!(chart.log_y);
        assert_eq!(chart.series[0].points.len(), 300);
        // The average starts on the data and smooths it: it moves less from step to step.
        let (raw, avg) = (&chart.series[0].points, &chart.series[1].points);
        assert_eq!(raw[0], avg[0]);
        let wiggle = |v: &[(f64, f64)]| v.windows(2).map(|w| (w[1].1 - w[0].1).abs()).sum::<f64>();
        assert!(wiggle(avg) < 0.5 * wiggle(raw), "{} vs {}", wiggle(avg), wiggle(raw));
        let svg = chart.to_svg().unwrap();
        for text in ["Training loss", "training step", "loss (log scale)", "per step", "moving average"] {
            assert!(svg.contains(text), "missing {text}");
        }
    }

    #[test]
    fn long_runs_are_thinned_keeping_the_last_step_and_nothing_finite_draws_nothing() {
        let pts: Vec<(u64, f64)> = (1..=10_001).map(|s| (s, if s % 2 == 0 { -0.5 } else { 1.0 })).collect();
        let chart = loss_chart(&pts).unwrap();
        assert!(!chart.log_y, "a negative loss (e.g. a variational bound term) keeps a linear axis");
        for s in &chart.series {
            assert!(s.points.len() <= MAX_POINTS + 1, "{}", s.points.len());
            assert_eq!(s.points.last().unwrap().0, 10_001.0);
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("loss.png");
        plot_loss(&[(1, f64::NAN)], &path).unwrap();
        assert!(!path.exists());
    }
}
