//! [`BarChart`]: one bar per labelled value, with the value printed above it; a column of
//! them is one figure ([`BarChart::column_svg`]), as a grid's summary shows each metric across
//! its points.

use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::{colour, draw_error, tick, PlotError};

#[derive(Clone, Debug, PartialEq)]
pub struct Bar {
    pub label: String,
    pub value: f64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct BarChart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub bars: Vec<Bar>,
}

const PANEL: (u32, u32) = (720, 300);

impl BarChart {
    /// The charts one under the other in one SVG document.
    pub fn column_svg(charts: &[BarChart]) -> Result<String, PlotError> {
        let Some(first) = charts.first() else {
            return Err(PlotError::Data { title: "bar charts".into(), message: "no charts to draw".into() });
        };
        for c in charts {
            if c.bars.is_empty() || c.bars.iter().any(|b| !b.value.is_finite()) {
                return Err(PlotError::Data { title: c.title.clone(), message: "a bar chart needs bars with finite values".into() });
            }
        }
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, (PANEL.0, PANEL.1 * charts.len() as u32)).into_drawing_area();
            root.fill(&WHITE).map_err(|e| draw_error(&first.title)(&e))?;
            for (chart, area) in charts.iter().zip(root.split_evenly((charts.len(), 1))) {
                chart.draw(&area)?;
            }
            root.present().map_err(|e| draw_error(&first.title)(&e))?;
        }
        Ok(svg)
    }

    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, plotters::coord::Shift>) -> Result<(), PlotError> {
        let draw = draw_error(&self.title);
        let (lo, hi) = self.bars.iter().fold((0.0f64, 0.0f64), |(lo, hi), b| (lo.min(b.value), hi.max(b.value)));
        // Room above the tallest bar (and below the deepest) for its value.
        let pad = if hi > lo { (hi - lo) * 0.15 } else { 1.0 };
        let (lo, hi) = (if lo < 0.0 { lo - pad } else { 0.0 }, if hi > 0.0 || lo == 0.0 { hi + pad } else { 0.0 });
        let n = self.bars.len();
        let mut chart = ChartBuilder::on(area)
            .caption(&self.title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(64)
            // A discrete integer range includes its end: n bars are the segments of 0..=n-1.
            .build_cartesian_2d((0..n - 1).into_segmented(), lo..hi)
            .map_err(|e| draw(&e))?;
        let x_tick = |v: &SegmentValue<usize>| match v {
            SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => self.bars.get(*i).map(|b| b.label.clone()).unwrap_or_default(),
            SegmentValue::Last => String::new(),
        };
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n)
            .x_desc(&self.x_label)
            .y_desc(&self.y_label)
            .label_style(("sans-serif", 13))
            .axis_desc_style(("sans-serif", 14))
            .x_label_formatter(&x_tick)
            .y_label_formatter(&|v: &f64| tick(*v))
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(|e| draw(&e))?;
        let fill = colour(0).filled();
        chart
            .draw_series(self.bars.iter().enumerate().map(|(i, b)| {
                let mut bar = Rectangle::new([(SegmentValue::Exact(i), 0.0), (SegmentValue::Exact(i + 1), b.value)], fill);
                bar.set_margin(0, 0, 12, 12);
                bar
            }))
            .map_err(|e| draw(&e))?;
        let above = (hi - lo) * 0.02;
        chart
            .draw_series(self.bars.iter().enumerate().map(|(i, b)| {
                let y = if b.value >= 0.0 { b.value + above } else { b.value - above };
                let anchor = if b.value >= 0.0 { VPos::Bottom } else { VPos::Top };
                let style = ("sans-serif", 12).into_text_style(area).pos(Pos::new(HPos::Center, anchor));
                Text::new(tick(b.value), (SegmentValue::CenterOf(i), y), style)
            }))
            .map_err(|e| draw(&e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart(title: &str, values: &[f64]) -> BarChart {
        BarChart {
            title: title.into(),
            x_label: "frame_interval".into(),
            y_label: title.into(),
            bars: values.iter().enumerate().map(|(i, &value)| Bar { label: format!("interval {}", i + 1), value }).collect(),
        }
    }

    #[test]
    fn one_panel_per_chart_one_bar_and_value_per_entry() {
        let svg = BarChart::column_svg(&[chart("FVD-16", &[1070.0, 882.5, 816.0]), chart("FID", &[-2.0, 3.0, 4.0])]).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains(&format!("height=\"{}\"", 2 * PANEL.1)), "{svg}");
        for text in ["FVD-16", "FID", "frame_interval", "interval 1", "interval 3", "\n882.5\n", "\n-2\n"] {
            assert!(svg.contains(text), "missing {text:?}");
        }
        // The background, then six bars.
        assert_eq!(svg.matches("<rect").count(), 1 + 6, "{svg}");
        let one = BarChart::column_svg(&[chart("FVD-16", &[5.0])]).unwrap();
        assert_eq!(one.matches("<rect").count(), 1 + 1, "{one}");
        assert!(one.contains("interval 1"));
    }

    #[test]
    fn bad_input_is_an_error_naming_the_chart() {
        assert!(BarChart::column_svg(&[]).is_err());
        let err = BarChart::column_svg(&[chart("FVD-16", &[1.0, f64::NAN])]).unwrap_err();
        assert!(err.to_string().contains("FVD-16"), "{err}");
    }
}
