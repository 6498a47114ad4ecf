//! One chart style for every grayguard chart (the demo's and the soak's PNGs, the incident
//! report's SVGs): the embedded DejaVu Sans font (text is drawn on a bare machine without
//! system fonts), one palette, and the axis helpers the charts share: breaker states named on
//! a y axis, state series held as steps, gaps in the data left open, a panel and its legend.

use std::error::Error;
use std::ops::Range;
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::coord::ranged1d::AsRangedCoord;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::FontStyle;

/// The family every chart's text is drawn in (the embedded DejaVu Sans).
pub const FONT: &str = "sans-serif";

/// Series colours in order: gray first (red), stable second (blue), then the rest.
pub const PALETTE: [RGBColor; 10] = [
    RGBColor(214, 39, 40),
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(23, 190, 207),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
];

/// Events and notes: event lines, their labels, "no data".
pub const MARKER: RGBColor = RGBColor(90, 90, 90);

/// The breaker's y range: its three states with room above and below.
pub const BREAKER_Y: Range<f64> = -0.2..2.3;

/// What drawing a chart can fail with.
pub type DrawResult = Result<(), Box<dyn Error>>;

/// A panel of a bitmap chart, seconds along x, `Y` up.
pub type PanelOf<'a, 'b, Y> = ChartContext<'a, BitMapBackend<'b>, Cartesian2d<RangedCoordf64, Y>>;

/// A panel of a bitmap chart with `f64` axes.
pub type Panel<'a, 'b> = PanelOf<'a, 'b, RangedCoordf64>;

static FONT_LOADED: OnceLock<bool> = OnceLock::new();

/// Registers the embedded font under [`FONT`] (once per process); charts call it first.
pub fn register_font() -> Result<(), String> {
    let loaded = *FONT_LOADED.get_or_init(|| {
        plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular()).is_ok()
    });
    loaded
        .then_some(())
        .ok_or_else(|| "the embedded DejaVu Sans font did not load".to_string())
}

/// Colour `k` of the palette (it wraps around).
pub fn color(k: usize) -> RGBColor {
    PALETTE[k % PALETTE.len()]
}

/// A colour as `#rrggbb`, for legends drawn by a page rather than by the chart.
pub fn hex(c: RGBColor) -> String {
    let RGBColor(r, g, b) = c;
    format!("#{r:02x}{g:02x}{b:02x}")
}

/// The y axis label of a breaker state: 0 `closed`, 1 `open`, 2 `half-open`, nothing
/// between (draw it with three labels).
pub fn breaker_label(y: &f64) -> String {
    match y.round() as i64 {
        0 => "closed".to_string(),
        1 => "open".to_string(),
        2 => "half-open".to_string(),
        _ => String::new(),
    }
}

/// A state series as steps: each value holds until the next point, the last one until
/// `until` when given.
pub fn steps(points: &[(f64, f64)], until: Option<f64>) -> Vec<(f64, f64)> {
    let mut out = Vec::with_capacity(points.len() * 2);
    for (k, &(x, y)) in points.iter().enumerate() {
        out.push((x, y));
        match points.get(k + 1) {
            Some(&(next, _)) => out.push((next, y)),
            None => out.extend(until.map(|end| (end.max(x), y))),
        }
    }
    out
}

/// Runs of points no further apart than 1.5 steps: a gap in the data is not joined.
pub fn segments(points: &[(f64, f64)], step: f64) -> Vec<Vec<(f64, f64)>> {
    let mut out: Vec<Vec<(f64, f64)>> = Vec::new();
    for &p in points {
        match out.last_mut() {
            Some(seg) if seg.last().is_some_and(|l| p.0 - l.0 <= 1.5 * step) => seg.push(p),
            _ => out.push(vec![p]),
        }
    }
    out
}

/// A captioned panel of a bitmap chart (the demo's and the soak's), time in seconds along x.
pub fn panel<'a, 'b, Y: AsRangedCoord>(
    area: &'a DrawingArea<BitMapBackend<'b>, Shift>,
    caption: &str,
    x_end: f64,
    y: Y,
) -> Result<PanelOf<'a, 'b, Y::CoordDescType>, Box<dyn Error>> {
    Ok(ChartBuilder::on(area)
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .caption(caption, (FONT, 18))
        .build_cartesian_2d(0f64..x_end, y)?)
}

/// A panel of breaker states over the seconds of a run, the states named on the y axis.
pub fn breaker_panel<'a, 'b>(
    area: &'a DrawingArea<BitMapBackend<'b>, Shift>,
    caption: &str,
    x_end: f64,
) -> Result<Panel<'a, 'b>, Box<dyn Error>> {
    let mut c = panel(area, caption, x_end, BREAKER_Y)?;
    c.configure_mesh()
        .x_desc("seconds")
        .y_labels(3)
        .y_label_formatter(&breaker_label)
        .label_style((FONT, 13))
        .draw()?;
    Ok(c)
}

/// The series' legend in the upper right corner of a bitmap panel, text at `size`.
pub fn legend<'a, 'b: 'a, X: Ranged, Y: Ranged>(
    c: &mut ChartContext<'a, BitMapBackend<'b>, Cartesian2d<X, Y>>,
    size: u32,
) -> DrawResult {
    c.configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font((FONT, size))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_hold_until_the_next_point_and_the_last_until_the_end() {
        assert_eq!(
            steps(&[(0.0, 0.0), (5.0, 1.0)], None),
            vec![(0.0, 0.0), (5.0, 0.0), (5.0, 1.0)]
        );
        assert_eq!(
            steps(&[(0.5, 0.0), (2.25, 1.0)], Some(4.0)),
            vec![(0.5, 0.0), (2.25, 0.0), (2.25, 1.0), (4.0, 1.0)]
        );
        // An end before the last point does not draw backwards.
        assert_eq!(
            steps(&[(3.0, 2.0)], Some(1.0)),
            vec![(3.0, 2.0), (3.0, 2.0)]
        );
        assert!(steps(&[], Some(4.0)).is_empty());
    }

    #[test]
    fn gaps_split_lines() {
        let segs = segments(&[(0.0, 1.0), (5.0, 1.0), (20.0, 1.0), (25.0, 1.0)], 5.0);
        assert_eq!(segs.len(), 2);
        let secs = segments(
            &[(0.5, 1.0), (1.5, 2.0), (3.5, 3.0), (4.5, 4.0), (6.5, 5.0)],
            1.0,
        );
        let lens: Vec<usize> = secs.iter().map(Vec::len).collect();
        assert_eq!(lens, vec![2, 2, 1]);
        assert!(segments(&[], 1.0).is_empty());
    }

    #[test]
    fn breaker_states_are_named_and_colours_written_as_hex() {
        let names: Vec<String> = [0.0, 1.0, 2.0, 0.5, 3.0]
            .iter()
            .map(breaker_label)
            .collect();
        assert_eq!(names, ["closed", "open", "half-open", "open", ""]);
        assert_eq!(hex(color(0)), "#d62728");
        assert_eq!(hex(color(1)), "#1f77b4");
        assert_eq!(color(PALETTE.len()), color(0));
        assert!(register_font().is_ok());
    }
}
