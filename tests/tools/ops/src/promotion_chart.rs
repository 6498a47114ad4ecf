//! The promotion report's chart, one per effect, as inline SVG in the client library's
//! style: each gateway's interval for the effect, both ends as a percentage of the budget,
//! against the gray replies that gateway had weighed (x), with the budget band (0–100 %)
//! shaded and its edge dashed. The worse end (upper) falling to 100 % or below on every
//! effect is a proof; the better end (lower) rising above 100 % on any is a refutation.
//! Values above the top of the chart are drawn on its edge (an interval is hundreds or
//! thousands of percent wide before its first replies), and the verdicts are marked where
//! each gateway reached them.

use plotters::prelude::*;

use grayguard_client::chart::{self as style, FONT, MARKER};

use crate::chart::{Line, Marker};

/// Chart size in pixels (the SVG scales with the page).
pub const WIDTH: u32 = 900;
pub const HEIGHT: u32 = 300;

/// The chart never reaches above this, percent; nor stops below [`MIN_TOP`].
pub const MAX_TOP: f64 = 400.0;
pub const MIN_TOP: f64 = 150.0;

/// One effect's chart: x gray replies, y % of the budget.
#[derive(Debug, Clone, PartialEq)]
pub struct IntervalChart {
    pub title: String,
    /// Series in order; their legend names end in "(upper)" or "(lower)": the lower end is
    /// dashed.
    pub lines: Vec<Line>,
    /// Verdicts, at the gray replies where they were reached.
    pub markers: Vec<Marker>,
}

/// The budget band.
const BAND: RGBColor = RGBColor(44, 160, 44);

/// Whether a series is an interval's better end (drawn dashed).
fn is_lower(line: &Line) -> bool {
    line.legend.ends_with("(lower)")
}

/// The colour of series `k`: the two ends of one gateway's interval share a colour.
fn color_of(chart: &IntervalChart, k: usize) -> RGBColor {
    let gateway = |l: &Line| {
        l.legend
            .split_once(' ')
            .map_or(l.legend.clone(), |(g, _)| g.to_string())
    };
    let mut seen: Vec<String> = Vec::new();
    for l in chart.lines.iter().take(k + 1) {
        let g = gateway(l);
        if !seen.contains(&g) {
            seen.push(g);
        }
    }
    style::color(seen.len().saturating_sub(1))
}

/// The legend: each series' name and colour.
pub fn legend(chart: &IntervalChart) -> Vec<(String, String)> {
    chart
        .lines
        .iter()
        .enumerate()
        .filter(|(_, l)| !l.points.is_empty())
        .map(|(k, l)| {
            let dash = if is_lower(l) { " (dashed)" } else { "" };
            (
                format!("{}{dash}", l.legend),
                style::hex(color_of(chart, k)),
            )
        })
        .collect()
}

/// The y range's top: the data's highest value with room above, within
/// [`MIN_TOP`]..=[`MAX_TOP`].
pub fn top(chart: &IntervalChart) -> f64 {
    let highest = chart
        .lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.1))
        .fold(0.0f64, f64::max);
    (highest * 1.1).clamp(MIN_TOP, MAX_TOP)
}

/// Where a marker's label starts: at its line, or ending there when it would run off the
/// chart's right edge (the plot is about 820 px wide, a character about 6.5 px).
fn label_x(m: &Marker, x1: f64) -> f64 {
    let per_px = x1 / 820.0;
    let width = (m.label.chars().count() as f64 * 6.5 + 4.0) * per_px;
    if m.x + width > x1 {
        (m.x - width).max(0.0)
    } else {
        m.x
    }
}

/// The chart as an SVG document.
pub fn svg(chart: &IntervalChart) -> Result<String, String> {
    style::register_font()?;
    let mut out = String::new();
    draw(chart, &mut out).map_err(|e| format!("chart {:?}: {e}", chart.title))?;
    Ok(out)
}

type DrawResult = Result<(), Box<dyn std::error::Error>>;

fn draw(chart: &IntervalChart, out: &mut String) -> DrawResult {
    let root = SVGBackend::with_string(out, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE)?;
    let x1 = chart
        .lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.0))
        .chain(chart.markers.iter().map(|m| m.x))
        .fold(0.0f64, f64::max)
        .max(10.0)
        * 1.02;
    let y1 = top(chart);
    let mut c = ChartBuilder::on(&root)
        .margin(10)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..x1, 0.0..y1)?;
    c.configure_mesh()
        .x_desc("gray replies at the gateway since its epoch began (grayguard_gray_responses)")
        .y_desc("% of the budget")
        .label_style((FONT, 12))
        .axis_desc_style((FONT, 13))
        .light_line_style(RGBColor(238, 238, 238))
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()?;
    // The budget band and its edge.
    c.draw_series(std::iter::once(Rectangle::new(
        [(0.0, 0.0), (x1, 100.0)],
        BAND.mix(0.10).filled(),
    )))?;
    c.draw_series(DashedLineSeries::new(
        [(0.0, 100.0), (x1, 100.0)],
        6,
        4,
        BLACK.stroke_width(1),
    ))?;
    c.draw_series(std::iter::once(Text::new(
        "budget (100 %)".to_string(),
        (x1 * 0.005, 100.0 + y1 * 0.02),
        (FONT, 11).into_font().color(&MARKER),
    )))?;
    for (k, line) in chart.lines.iter().enumerate() {
        let color = color_of(chart, k);
        // Above the top: on the edge.
        let points: Vec<(f64, f64)> = line.points.iter().map(|&(x, y)| (x, y.min(y1))).collect();
        if points.len() == 1 {
            c.draw_series(std::iter::once(Circle::new(points[0], 2, color.filled())))?;
        } else if is_lower(line) {
            c.draw_series(DashedLineSeries::new(points, 5, 3, color.stroke_width(2)))?;
        } else {
            c.draw_series(LineSeries::new(points, color.stroke_width(2)))?;
        }
    }
    for m in &chart.markers {
        c.draw_series(DashedLineSeries::new(
            [(m.x, 0.0), (m.x, y1)],
            4,
            3,
            MARKER.stroke_width(1),
        ))?;
        c.draw_series(std::iter::once(Text::new(
            m.label.clone(),
            (label_x(m, x1), y1),
            (FONT, 11).into_font().color(&MARKER),
        )))?;
    }
    if chart.lines.iter().all(|l| l.points.is_empty()) {
        root.draw(&Text::new(
            "no interval measured in this window",
            ((WIDTH / 2 - 110) as i32, (HEIGHT / 2) as i32),
            (FONT, 14).into_font().color(&MARKER),
        ))?;
    }
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart(lines: Vec<Line>) -> IntervalChart {
        IntervalChart {
            title: "latency_ratio: gray latency at most 1.1 × stable's".into(),
            lines,
            markers: vec![Marker {
                x: 400.0,
                label: "proven (gw-0)".into(),
            }],
        }
    }

    #[test]
    fn draws_both_ends_the_band_and_the_verdict() {
        let c = chart(vec![
            Line {
                legend: "gw-0 worse end (upper)".into(),
                points: vec![(0.0, 5000.0), (200.0, 240.0), (400.0, 95.0), (500.0, 80.0)],
            },
            Line {
                legend: "gw-0 better end (lower)".into(),
                points: vec![(0.0, 0.0), (500.0, 0.0)],
            },
            Line {
                legend: "gw-1 worse end (upper)".into(),
                points: vec![(0.0, 800.0), (300.0, 120.0)],
            },
        ]);
        let s = svg(&c).unwrap();
        assert!(s.starts_with("<svg"));
        for text in [
            "budget (100 %)",
            "proven (gw-0)",
            "gray replies at the gateway",
        ] {
            assert!(s.contains(text), "no {text:?}");
        }
        // The huge start is drawn on the top edge, not off the chart.
        assert_eq!(top(&c), MAX_TOP);
        let l = legend(&c);
        assert_eq!(l[0].1, l[1].1, "one gateway, one colour");
        assert_ne!(l[0].1, l[2].1);
        assert!(l[1].0.ends_with("(dashed)"));
    }

    #[test]
    fn a_verdict_at_the_right_edge_is_labelled_to_its_left() {
        let m = |x: f64| Marker {
            x,
            label: "proven (gw-0)".into(),
        };
        assert_eq!(label_x(&m(100.0), 1000.0), 100.0);
        let edge = label_x(&m(990.0), 1000.0);
        assert!(edge < 990.0 && edge > 850.0, "{edge}");
    }

    #[test]
    fn an_empty_chart_says_so() {
        let s = svg(&chart(vec![])).unwrap();
        assert!(s.contains("no interval measured"));
        assert_eq!(top(&chart(vec![])), MIN_TOP);
    }
}
