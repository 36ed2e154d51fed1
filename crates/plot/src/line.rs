//! [`LineChart`]: labelled lines over a shared x axis, either axis optionally log-scaled.

use std::ops::Range;

use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::{colour, draw_error, svg_to_png, tick, PlotError, Series};

#[derive(Clone, Debug, PartialEq)]
pub struct LineChart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    /// A log10 x axis (every x must be positive).
    pub log_x: bool,
    /// A log10 y axis (every y must be positive).
    pub log_y: bool,
    pub series: Vec<Series>,
}

pub(crate) const SIZE: (u32, u32) = (720, 440);

/// A linear f64 axis whose ticks are plotters' own or, when given, fixed positions.
struct Axis {
    linear: RangedCoordf64,
    ticks: Option<Vec<f64>>,
}

impl Ranged for Axis {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        self.linear.map(value, limit)
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        match &self.ticks {
            Some(ticks) => ticks.clone(),
            None => self.linear.key_points(hint),
        }
    }

    fn range(&self) -> Range<f64> {
        self.linear.range()
    }
}

/// Tick positions (log10 of the value) for a log axis spanning `range` (in log10): 1, 2 and 5
/// times each power of ten; the powers alone when that gives more than 12, every integer
/// multiple when it gives fewer than 3; the two ends when the range holds none of them.
fn log_ticks(range: Range<f64>) -> Vec<f64> {
    let (lo, hi) = (range.start, range.end);
    let inside = |steps: &[f64]| -> Vec<f64> {
        (lo.floor() as i64..=hi.ceil() as i64)
            .flat_map(|d| steps.iter().map(move |m| d as f64 + m.log10()))
            .filter(|t| (lo..=hi).contains(t))
            .collect()
    };
    let ticks = inside(&[1.0, 2.0, 5.0]);
    let ticks = match ticks.len() {
        13.. => inside(&[1.0]),
        ..3 => inside(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]),
        _ => ticks,
    };
    if ticks.len() >= 2 {
        ticks
    } else {
        vec![lo, hi]
    }
}

/// Lines with more points than this are drawn without point markers.
const MAX_MARKED: usize = 100;

impl LineChart {
    fn data_error(&self, message: impl Into<String>) -> PlotError {
        PlotError::Data { title: self.title.clone(), message: message.into() }
    }

    /// The chart as an SVG document.
    pub fn to_svg(&self) -> Result<String, PlotError> {
        // A log axis is drawn as a linear axis over log10 of the values, its ticks labelled with
        // the values themselves.
        let log = |on: bool| move |v: f64| if on { v.log10() } else { v };
        let (fx, fy) = (log(self.log_x), log(self.log_y));
        for (on, axis, pick) in [(self.log_x, "x", 0), (self.log_y, "y", 1)] {
            let value = |p: &(f64, f64)| if pick == 0 { p.0 } else { p.1 };
            if on && self.series.iter().flat_map(|s| &s.points).any(|p| value(p) <= 0.0) {
                return Err(self.data_error(format!("a log {axis} axis needs positive {axis} values")));
            }
        }
        let points: Vec<Vec<(f64, f64)>> = self
            .series
            .iter()
            .map(|s| s.points.iter().filter(|(x, y)| x.is_finite() && y.is_finite()).map(|&(x, y)| (fx(x), fy(y))).collect())
            .collect();
        let all: Vec<(f64, f64)> = points.iter().flatten().copied().collect();
        if all.is_empty() {
            return Err(self.data_error("no finite points to draw"));
        }
        let span = |v: &mut dyn Iterator<Item = f64>| {
            let (lo, hi) = v.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| (a.min(x), b.max(x)));
            let pad = if hi > lo { (hi - lo) * 0.05 } else { lo.abs().max(1.0) * 0.05 };
            (lo - pad)..(hi + pad)
        };
        let xr = span(&mut all.iter().map(|p| p.0));
        let yr = span(&mut all.iter().map(|p| p.1));
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
            // A log axis gets ticks at 1, 2 and 5 times the powers of ten (in log10 space); a
            // linear one keeps plotters' own.
            let axis = |r: Range<f64>, log: bool| Axis { ticks: log.then(|| log_ticks(r.clone())), linear: r.into() };
            self.draw(&root, axis(xr, self.log_x), axis(yr, self.log_y), &points)?;
        }
        Ok(svg)
    }

    /// Draws the chart on `root` over the (already log-transformed) ranges and points.
    fn draw(&self, root: &DrawingArea<SVGBackend, Shift>, xr: Axis, yr: Axis, points: &[Vec<(f64, f64)>]) -> Result<(), PlotError> {
        let draw = draw_error(&self.title);
        root.fill(&WHITE).map_err(|e| draw(&e))?;
        let mut chart = ChartBuilder::on(root)
            .caption(&self.title, ("sans-serif", 24))
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(64)
            .build_cartesian_2d(xr, yr)
            .map_err(|e| draw(&e))?;
        let (log_x, log_y) = (self.log_x, self.log_y);
        let x_tick = move |v: &f64| tick(if log_x { 10f64.powf(*v) } else { *v });
        let y_tick = move |v: &f64| tick(if log_y { 10f64.powf(*v) } else { *v });
        chart
            .configure_mesh()
            .x_desc(&self.x_label)
            .y_desc(&self.y_label)
            .label_style(("sans-serif", 15))
            .axis_desc_style(("sans-serif", 17))
            .x_label_formatter(&x_tick)
            .y_label_formatter(&y_tick)
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(|e| draw(&e))?;
        // Faint lines first, so the others are drawn over them.
        let mut order: Vec<usize> = (0..self.series.len()).collect();
        order.sort_by_key(|&i| !self.series[i].faint);
        for i in order {
            let (s, pts) = (&self.series[i], &points[i]);
            let base = colour(s.colour);
            let style = if s.faint { base.mix(0.35).stroke_width(1) } else { base.stroke_width(2) };
            let legend = if s.dash == 0 {
                chart.draw_series(LineSeries::new(pts.iter().copied(), style)).map_err(|e| draw(&e))?
            } else {
                let (dash, gap) = (12 / s.dash as u32 + 2, 5);
                chart.draw_series(DashedLineSeries::new(pts.iter().copied(), dash, gap, style)).map_err(|e| draw(&e))?
            };
            let dash = s.dash;
            legend.label(&s.label).legend(move |(x, y)| -> DynElement<'static, _, _> {
                if dash == 0 {
                    PathElement::new(vec![(x, y), (x + 20, y)], style).into_dyn()
                } else {
                    plotters::element::DashedPathElement::new(vec![(x, y), (x + 20, y)], 12 / dash as u32 + 2, 5, style).into_dyn()
                }
            });
            // Markers show where a curve was measured; a per-step log is too dense for them.
            if !s.faint && pts.len() <= MAX_MARKED {
                chart.draw_series(pts.iter().map(|&p| Circle::new(p, 3, base.filled()))).map_err(|e| draw(&e))?;
            }
        }
        if self.series.iter().any(|s| !s.label.is_empty()) {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .label_font(("sans-serif", 15))
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .draw()
                .map_err(|e| draw(&e))?;
        }
        root.present().map_err(|e| draw(&e))
    }

    /// The chart as PNG bytes.
    pub fn to_png(&self) -> Result<Vec<u8>, PlotError> {
        svg_to_png(&self.to_svg()?, &self.title)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{tick, Series};

    fn chart(log_x: bool) -> LineChart {
        LineChart {
            title: "FVD over training".into(),
            x_label: "training step".into(),
            y_label: "FVD-16".into(),
            log_x,
            log_y: false,
            series: vec![
                Series::new("variant 1", vec![(500.0, 400.0), (1000.0, 300.0), (3000.0, 120.0)]),
                Series {
                    label: "variant 2".into(),
                    points: vec![(500.0, 380.0), (1000.0, 320.0), (3000.0, 150.0)],
                    colour: 1,
                    dash: 1,
                    faint: false,
                },
            ],
        }
    }

    #[test]
    fn svg_has_the_title_axis_labels_ticks_and_one_legend_entry_per_series() {
        let svg = chart(false).to_svg().unwrap();
        for text in ["FVD over training", "training step", "FVD-16", "variant 1", "variant 2", "\n3000\n"] {
            assert!(svg.contains(text), "missing {text}");
        }
        let log = chart(true).to_svg().unwrap();
        assert!(log.contains("\n1000\n"), "log axis ticks name steps, not their logs");
    }

    #[test]
    fn png_is_a_png_of_the_chart_size_with_text_drawn() {
        let png = chart(false).to_png().unwrap();
        // A dashed line is drawn as many short segments, a solid one as one polyline.
        let mut solid = chart(false);
        solid.series[1].dash = 0;
        let segments = |c: &LineChart| c.to_svg().unwrap().matches("<polyline").count();
        assert!(segments(&chart(false)) > segments(&solid) + 3, "dashes: {} vs solid {}", segments(&chart(false)), segments(&solid));
        assert_eq!(&png[1..4], b"PNG");
        assert_eq!(u32::from_be_bytes(png[16..20].try_into().unwrap()), SIZE.0);
        assert_eq!(u32::from_be_bytes(png[20..24].try_into().unwrap()), SIZE.1);
    }

    #[test]
    fn bad_data_is_an_error_naming_the_chart() {
        let mut c = chart(true);
        c.series[0].points[0].0 = 0.0;
        assert!(c.to_svg().unwrap_err().to_string().contains("FVD over training"));
        c.series.clear();
        assert!(c.to_svg().is_err());
        assert_eq!(tick(3000.0), "3000");
        assert_eq!(tick(0.25), "0.25");
    }

    #[test]
    fn log_y_ticks_name_values_and_faint_lines_have_no_markers() {
        let loss: Vec<(f64, f64)> = (1..=400).map(|s| (s as f64, 2.0 / (s as f64).sqrt())).collect();
        let mut c = LineChart {
            title: "training loss".into(),
            x_label: "step".into(),
            y_label: "loss".into(),
            log_x: false,
            log_y: true,
            series: vec![Series { faint: true, ..Series::new("per step", loss.clone()) }, Series::new("average", loss[..50].to_vec())],
        };
        let svg = c.to_svg().unwrap();
        assert!(svg.contains("\n0.2\n") || svg.contains("\n0.5\n") || svg.contains("\n1\n"), "log ticks are values: {svg}");
        assert_eq!(svg.matches("<circle").count(), 50, "only the non-faint line of few points is marked");
        c.series[1].points[3].1 = -1.0;
        assert!(c.to_svg().unwrap_err().to_string().contains("positive y"));
    }

    #[test]
    fn log_ticks_are_round_values_inside_the_range() {
        let values = |lo: f64, hi: f64| -> Vec<String> { log_ticks(lo.log10()..hi.log10()).iter().map(|t| tick(10f64.powf(*t))).collect() };
        assert_eq!(values(0.04, 3.0), ["0.05", "0.1", "0.2", "0.5", "1", "2"]);
        assert_eq!(values(0.25, 0.45), ["0.3", "0.4"]);
        assert_eq!(
            values(1.0, 1e9),
            ["1", "10", "100", "1000", "10000", "100000", "1000000", "10000000", "100000000", "1000000000"]
                .map(|s| tick(s.parse().unwrap()))
        );
    }
}
