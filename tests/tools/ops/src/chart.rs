//! The report's charts as inline SVG (plotters): crisp at any zoom, searchable text, and a
//! few tens of kilobytes each, so the report stays one self-contained file. Time runs along
//! x in seconds from the incident's start; the incident's events are marked, and alerting
//! spans shaded. In the client library's chart style (the embedded font, the palette, the
//! breaker axis), as the demo's and the soak's charts are; the title and the legend are the
//! page's (see `legend`).

use plotters::prelude::*;

use grayguard_client::chart::{self as style, BREAKER_Y, FONT, MARKER, breaker_label};

use crate::queries::Style;

/// Chart size in pixels (the SVG scales with the page).
pub const WIDTH: u32 = 900;
pub const HEIGHT: u32 = 300;

/// One series, x in seconds from the incident's start.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub legend: String,
    pub points: Vec<(f64, f64)>,
}

/// An event drawn as a vertical line.
#[derive(Debug, Clone, PartialEq)]
pub struct Marker {
    pub x: f64,
    pub label: String,
}

/// Everything one chart shows.
#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    pub title: String,
    pub unit: String,
    pub style: Style,
    pub lines: Vec<Line>,
    /// Shaded spans `[from, to)` (alerting).
    pub spans: Vec<(f64, f64)>,
    pub markers: Vec<Marker>,
    /// The x range, seconds.
    pub x: (f64, f64),
    /// Sampling step, seconds: points further apart than 1.5 steps are not joined.
    pub step_s: f64,
    /// The x axis' description (what zero is).
    pub x_desc: String,
}

/// The legend of a chart: each series' name and its colour (`#rrggbb`), drawn by the page
/// above the chart, where it can never cover data or the event labels.
pub fn legend(chart: &Chart) -> Vec<(String, String)> {
    chart
        .lines
        .iter()
        .enumerate()
        .filter(|(_, l)| !l.points.is_empty())
        .map(|(k, l)| (l.legend.clone(), style::hex(style::color(k))))
        .collect()
}

/// Alerting spans.
const SHADE: RGBColor = RGBColor(255, 165, 0);

/// The chart as an SVG document.
pub fn svg(chart: &Chart) -> Result<String, String> {
    style::register_font()?;
    let mut out = String::new();
    draw(chart, &mut out).map_err(|e| format!("chart {:?}: {e}", chart.title))?;
    Ok(out)
}

/// An axis label: no decimals where none are needed.
fn axis_number(y: f64) -> String {
    if y.abs() >= 10.0 || y.fract() == 0.0 {
        format!("{y:.0}")
    } else {
        format!("{y:.1}")
    }
}

/// The spans in which `points` are above zero, each closed one step after its last point.
pub fn spans(points: &[(f64, f64)], step_s: f64) -> Vec<(f64, f64)> {
    let mut out: Vec<(f64, f64)> = Vec::new();
    let mut open: Option<(f64, f64)> = None;
    for &(x, y) in points {
        match (&mut open, y > 0.0) {
            (Some((_, last)), true) if x - *last <= 1.5 * step_s => *last = x,
            (Some(_), true) => {
                out.extend(open.take().map(|(a, b)| (a, b + step_s)));
                open = Some((x, x));
            }
            (None, true) => open = Some((x, x)),
            (Some(_), false) => out.extend(open.take().map(|(a, b)| (a, b + step_s))),
            (None, false) => {}
        }
    }
    out.extend(open.map(|(a, b)| (a, b + step_s)));
    out
}

type DrawResult = Result<(), Box<dyn std::error::Error>>;

fn draw(chart: &Chart, out: &mut String) -> DrawResult {
    let root = SVGBackend::with_string(out, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE)?;
    let (x0, x1) = if chart.x.1 > chart.x.0 {
        chart.x
    } else {
        (chart.x.0, chart.x.0 + 1.0)
    };
    let max_y = chart
        .lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.1))
        .fold(0.0f64, f64::max);
    let (y0, y1) = match chart.style {
        Style::Breaker => (BREAKER_Y.start, BREAKER_Y.end),
        Style::LinesWithLimit(limit) => (0.0, (f64::from(limit) * 1.15).max(max_y * 1.1)),
        Style::Lines => (0.0, (max_y * 1.15).max(1.0)),
    };
    let mut c = ChartBuilder::on(&root)
        .margin(10)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d(x0..x1, y0..y1)?;
    let mut mesh = c.configure_mesh();
    mesh.x_desc(chart.x_desc.as_str())
        .y_desc(chart.unit.as_str())
        .label_style((FONT, 12))
        .axis_desc_style((FONT, 13))
        .light_line_style(RGBColor(238, 238, 238))
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| axis_number(*y));
    if chart.style == Style::Breaker {
        mesh.y_labels(3).y_label_formatter(&breaker_label);
    }
    mesh.draw()?;

    for &(a, b) in &chart.spans {
        c.draw_series(std::iter::once(Rectangle::new(
            [(a.max(x0), y0), (b.min(x1), y1)],
            SHADE.mix(0.18).filled(),
        )))?;
    }
    if let Style::LinesWithLimit(limit) = chart.style {
        let y = f64::from(limit);
        c.draw_series(DashedLineSeries::new(
            [(x0, y), (x1, y)],
            6,
            4,
            BLACK.stroke_width(1),
        ))?;
    }
    for (k, line) in chart.lines.iter().enumerate() {
        let color = style::color(k);
        for seg in style::segments(&line.points, chart.step_s) {
            let seg = if chart.style == Style::Breaker {
                style::steps(&seg, None)
            } else {
                seg
            };
            if seg.len() == 1 {
                c.draw_series(std::iter::once(Circle::new(seg[0], 2, color.filled())))?;
            } else {
                c.draw_series(LineSeries::new(seg, color.stroke_width(2)))?;
            }
        }
    }
    for m in &chart.markers {
        if m.x < x0 || m.x > x1 {
            continue;
        }
        c.draw_series(DashedLineSeries::new(
            [(m.x, y0), (m.x, y1)],
            4,
            3,
            MARKER.stroke_width(1),
        ))?;
        c.draw_series(std::iter::once(Text::new(
            m.label.clone(),
            (m.x, y1),
            (FONT, 11).into_font().color(&MARKER),
        )))?;
    }
    if chart.lines.iter().all(|l| l.points.is_empty()) {
        root.draw(&Text::new(
            "no data in this window",
            ((WIDTH / 2 - 70) as i32, (HEIGHT / 2) as i32),
            (FONT, 14).into_font().color(&MARKER),
        ))?;
    }
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart(style: Style, lines: Vec<Line>) -> Chart {
        Chart {
            title: "Boxes per reply".into(),
            unit: "boxes".into(),
            style,
            lines,
            spans: vec![(10.0, 30.0)],
            markers: vec![Marker {
                x: 0.0,
                label: "shed box_count".into(),
            }],
            x: (-60.0, 60.0),
            step_s: 5.0,
            x_desc: "seconds from 15:04:05 UTC".into(),
        }
    }

    #[test]
    fn draws_lines_markers_and_text() {
        let lines = vec![
            Line {
                legend: "gray".into(),
                points: vec![(-60.0, 14.0), (-55.0, 15.0), (-20.0, 16.0), (-15.0, 17.0)],
            },
            Line {
                legend: "stable".into(),
                points: vec![(-60.0, 1.0)],
            },
        ];
        let c = chart(Style::Lines, lines);
        let s = svg(&c).unwrap();
        assert!(s.starts_with("<svg"), "{}", &s[..80]);
        for text in ["shed box_count", "seconds from"] {
            assert!(s.contains(text), "no {text:?} in the SVG");
        }
        assert_eq!(
            legend(&c),
            vec![
                ("gray".to_string(), "#d62728".to_string()),
                ("stable".to_string(), "#1f77b4".to_string())
            ]
        );
        assert!(s.contains("<polyline") || s.contains("<path"));
    }

    #[test]
    fn draws_breaker_states_and_empty_charts() {
        let breaker = vec![Line {
            legend: "127.0.0.1:9901".into(),
            points: vec![(-10.0, 0.0), (0.0, 1.0), (30.0, 2.0)],
        }];
        let s = svg(&chart(Style::Breaker, breaker)).unwrap();
        assert!(s.contains("half-open"));
        let empty = svg(&chart(Style::LinesWithLimit(100), vec![])).unwrap();
        assert!(empty.contains("no data in this window"));
    }

    #[test]
    fn spans_cover_runs_above_zero() {
        let pts = [
            (0.0, 0.0),
            (5.0, 1.0),
            (10.0, 1.0),
            (15.0, 0.0),
            (20.0, 1.0),
        ];
        assert_eq!(spans(&pts, 5.0), vec![(5.0, 15.0), (20.0, 25.0)]);
        // A gap in the data ends a span.
        assert_eq!(
            spans(&[(0.0, 1.0), (30.0, 1.0)], 5.0),
            vec![(0.0, 5.0), (30.0, 35.0)]
        );
        assert!(spans(&[(0.0, 0.0)], 5.0).is_empty());
    }
}
