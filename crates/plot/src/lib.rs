//! Charts with a title, labelled axes, tick values and a legend, drawn by plotters as SVG and
//! rasterised to PNG by resvg with an embedded font, so a figure looks the same on any machine.
//! Two chart types serve every figure: [`LineChart`] (FVD over training, a grid's curves, the
//! training loss) and [`BarChart`] (a grid's metrics across its points).

mod bar;
mod line;

pub use bar::{Bar, BarChart};
pub use line::LineChart;

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
    /// A thin, pale line without point markers, behind the others (e.g. a noisy per-step
    /// loss under its moving average).
    pub faint: bool,
}

impl Series {
    /// A solid line with point markers in the chart's first colour.
    pub fn new(label: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Series { label: label.into(), points, colour: 0, dash: 0, faint: false }
    }
}

/// The plotters palette without its yellow, which is hard to see on white.
pub(crate) fn colour(group: usize) -> RGBAColor {
    const PICKS: [usize; 9] = [0, 1, 3, 4, 5, 6, 7, 8, 9];
    Palette99::pick(PICKS[group % PICKS.len()] + 10 * (group / PICKS.len())).to_rgba()
}

/// A tick value with as few digits as it needs (3000, 0.25, 1.2e-5).
pub(crate) fn tick(v: f64) -> String {
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

/// An SVG document as PNG bytes, text set in the embedded DejaVu Sans.
pub(crate) fn svg_to_png(svg: &str, title: &str) -> Result<Vec<u8>, PlotError> {
    let draw = |m: String| PlotError::Draw { title: title.to_owned(), message: m };
    let mut opt = resvg::usvg::Options::default();
    let fonts = opt.fontdb_mut();
    fonts.load_font_data(dejavu::sans::regular().to_vec());
    fonts.set_sans_serif_family("DejaVu Sans");
    let tree = resvg::usvg::Tree::from_str(svg, &opt).map_err(|e| draw(e.to_string()))?;
    let size = tree.size().to_int_size();
    let mut pixmap = resvg::tiny_skia::Pixmap::new(size.width(), size.height()).ok_or_else(|| draw("empty canvas".into()))?;
    resvg::render(&tree, resvg::tiny_skia::Transform::default(), &mut pixmap.as_mut());
    pixmap.encode_png().map_err(|e| draw(e.to_string()))
}

/// A plotters drawing error as a [`PlotError`] naming the chart.
pub(crate) fn draw_error(title: &str) -> impl Fn(&dyn std::fmt::Display) -> PlotError + '_ {
    move |e| PlotError::Draw { title: title.to_owned(), message: e.to_string() }
}
