//! Line charts with a title, labelled axes, tick values and a legend, drawn by plotters as
//! SVG and rasterised to PNG by resvg with an embedded font, so a figure looks the same on any
//! machine. One chart type serves every curve figure (FVD over training, a grid's curves).

use plotters::prelude::*;

#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error("chart `{title}`: {message}")]
    Data { title: String, message: String },
    #[error("drawing chart `{title}`: {message}")]
    Draw { title: String, message: String },
}

/// One labelled line: (x, y) points, drawn in the given order.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
    /// Lines of one colour group share a colour (e.g. the seeds of one setting).
    pub colour: usize,
    /// 0: solid; 1, 2, ...: ever shorter dashes (e.g. one per seed).
    pub dash: usize,
}

impl Series {
    /// A solid line in the chart's first colour.
    pub fn new(label: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Series { label: label.into(), points, colour: 0, dash: 0 }
    }
}

/// The plotters palette without its yellow, which is hard to see on white.
fn colour(group: usize) -> RGBAColor {
    const PICKS: [usize; 9] = [0, 1, 3, 4, 5, 6, 7, 8, 9];
    Palette99::pick(PICKS[group % PICKS.len()] + 10 * (group / PICKS.len())).to_rgba()
}

#[derive(Clone, Debug, PartialEq)]
pub struct LineChart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    /// A log10 x axis (every x must be positive).
    pub log_x: bool,
    pub series: Vec<Series>,
}

const SIZE: (u32, u32) = (720, 440);

impl LineChart {
    fn data_error(&self, message: impl Into<String>) -> PlotError {
        PlotError::Data { title: self.title.clone(), message: message.into() }
    }

    /// The chart as an SVG document.
    pub fn to_svg(&self) -> Result<String, PlotError> {
        let fx = |x: f64| if self.log_x { x.log10() } else { x };
        let points: Vec<Vec<(f64, f64)>> = self
            .series
            .iter()
            .map(|s| s.points.iter().filter(|(x, y)| x.is_finite() && y.is_finite()).map(|&(x, y)| (fx(x), y)).collect())
            .collect();
        if self.log_x && self.series.iter().flat_map(|s| &s.points).any(|&(x, _)| x <= 0.0) {
            return Err(self.data_error("a log x axis needs positive x values"));
        }
        let all: Vec<(f64, f64)> = points.iter().flatten().copied().filter(|(x, _)| x.is_finite()).collect();
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
        let draw = |e: &dyn std::fmt::Display| PlotError::Draw { title: self.title.clone(), message: e.to_string() };
        {
            let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
            root.fill(&WHITE).map_err(|e| draw(&e))?;
            let mut chart = ChartBuilder::on(&root)
                .caption(&self.title, ("sans-serif", 24))
                .margin(16)
                .x_label_area_size(44)
                .y_label_area_size(64)
                .build_cartesian_2d(xr, yr)
                .map_err(|e| draw(&e))?;
            let log_x = self.log_x;
            let x_tick = move |v: &f64| tick(if log_x { 10f64.powf(*v) } else { *v });
            let y_tick = |v: &f64| tick(*v);
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
            for (s, pts) in self.series.iter().zip(&points) {
                let colour = colour(s.colour);
                let style = colour.stroke_width(2);
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
                chart.draw_series(pts.iter().map(|&p| Circle::new(p, 3, colour.filled()))).map_err(|e| draw(&e))?;
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
            root.present().map_err(|e| draw(&e))?;
        }
        Ok(svg)
    }

    /// The chart as PNG bytes.
    pub fn to_png(&self) -> Result<Vec<u8>, PlotError> {
        let svg = self.to_svg()?;
        let draw = |m: String| PlotError::Draw { title: self.title.clone(), message: m };
        let mut opt = resvg::usvg::Options::default();
        let fonts = opt.fontdb_mut();
        fonts.load_font_data(dejavu::sans::regular().to_vec());
        fonts.set_sans_serif_family("DejaVu Sans");
        let tree = resvg::usvg::Tree::from_str(&svg, &opt).map_err(|e| draw(e.to_string()))?;
        let size = tree.size().to_int_size();
        let mut pixmap = resvg::tiny_skia::Pixmap::new(size.width(), size.height()).ok_or_else(|| draw("empty canvas".into()))?;
        resvg::render(&tree, resvg::tiny_skia::Transform::default(), &mut pixmap.as_mut());
        pixmap.encode_png().map_err(|e| draw(e.to_string()))
    }
}

/// A tick value with as few digits as it needs (3000, 0.25, 1.2e-5).
fn tick(v: f64) -> String {
    let a = v.abs();
    if a != 0.0 && !(1e-3..1e6).contains(&a) {
        format!("{v:.1e}")
    } else if (v - v.round()).abs() < 1e-9 * a.max(1.0) {
        format!("{}", v.round() as i64)
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart(log_x: bool) -> LineChart {
        LineChart {
            title: "FVD over training".into(),
            x_label: "training step".into(),
            y_label: "FVD-16".into(),
            log_x,
            series: vec![
                Series::new("variant 1", vec![(500.0, 400.0), (1000.0, 300.0), (3000.0, 120.0)]),
                Series { label: "variant 2".into(), points: vec![(500.0, 380.0), (1000.0, 320.0), (3000.0, 150.0)], colour: 1, dash: 1 },
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
}
