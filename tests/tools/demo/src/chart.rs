//! The timeline chart (PNG): gray share of the traffic, gray vs stable box count, and the
//! breaker state, one panel each over the seconds of the run, with the trigger marked; in
//! the client library's chart style (embedded font, palette, axes).

use std::path::Path;
use std::time::Duration;

use plotters::prelude::*;

use grayguard_client::breaker::Breaker;
use grayguard_client::chart::{
    self, BREAKER_Y, DrawResult, FONT, MARKER, Panel, breaker_panel, color, legend, panel,
};
use grayguard_client::timeline::Second;

/// Chart size in pixels.
pub const WIDTH: u32 = 1200;
pub const HEIGHT: u32 = 960;

/// The gateways' breakers as their admin endpoints reported them.
#[derive(Debug, Clone, Copy)]
pub struct Breakers<'a> {
    /// Gateway names, by index.
    pub gateways: &'a [String],
    /// `(at, gateway index, state)`, in time order.
    pub readings: &'a [(Duration, usize, Breaker)],
}

impl Breakers<'_> {
    /// One gateway's readings, in time order.
    fn of(&self, gateway: usize) -> Vec<(Duration, Breaker)> {
        self.readings
            .iter()
            .filter(|(_, g, _)| *g == gateway)
            .map(|(at, _, b)| (*at, *b))
            .collect()
    }
}

/// Draws `seconds` to a PNG at `path`; `trigger` marks the first shed.
/// `cohorts` names the cohorts of the mix, in order; `breakers` draws one step line per
/// gateway.
pub fn draw(
    path: &Path,
    seconds: &[Second],
    cohorts: &[String],
    breakers: &Breakers<'_>,
    trigger: Option<Duration>,
    title: &str,
) -> Result<(), String> {
    chart::register_font()?;
    draw_inner(path, seconds, cohorts, breakers, trigger, title)
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Colour of gateway `g` on the breaker panel: the first black, the others the palette's.
fn gateway_color(g: usize) -> RGBColor {
    g.checked_sub(1).map_or(BLACK, color)
}

/// Vertical offset of gateway `g` of `n` on the breaker panel (states are 1 apart).
fn nudge(g: usize, n: usize) -> f64 {
    if n <= 1 {
        return 0.0;
    }
    let spread = 0.12;
    -spread / 2.0 + spread * g as f64 / (n - 1) as f64
}

/// The breaker readings as a step line: each state holds until the next reading (the last
/// one until `x_end`).
pub fn steps(readings: &[(Duration, Breaker)], x_end: f64) -> Vec<(f64, f64)> {
    let points: Vec<(f64, f64)> = readings
        .iter()
        .map(|(at, b)| (at.as_secs_f64(), f64::from(b.gauge())))
        .collect();
    chart::steps(&points, Some(x_end))
}

/// Per-second points, each centred in its second, split where a second has none.
fn segments(pts: &[(usize, f64)]) -> Vec<Vec<(f64, f64)>> {
    let centred: Vec<(f64, f64)> = pts.iter().map(|&(i, y)| (i as f64 + 0.5, y)).collect();
    chart::segments(&centred, 1.0)
}

fn draw_inner(
    path: &Path,
    seconds: &[Second],
    cohorts: &[String],
    breakers: &Breakers<'_>,
    trigger: Option<Duration>,
    title: &str,
) -> DrawResult {
    let root = BitMapBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(title, (FONT, 24))?;
    let panels = root.split_evenly((3, 1));
    // Each point sits in the middle of its second.
    let x_end = (seconds.len().max(1)) as f64;
    let mid = |i: usize| i as f64 + 0.5;
    let trigger_x = trigger.map(|t| t.as_secs_f64());
    let (gray, stable) = (color(0), color(1));

    // 1: per cohort, the share of its replies that gray served.
    {
        let mut c = panel(
            &panels[0],
            "share of each cohort's replies served by gray (%)",
            x_end,
            -2f64..102f64,
        )?;
        c.configure_mesh()
            .x_desc("seconds")
            .label_style((FONT, 13))
            .draw()?;
        for (k, name) in cohorts.iter().enumerate() {
            let color = color(k);
            let pts: Vec<(usize, f64)> = seconds
                .iter()
                .enumerate()
                .filter_map(|(i, s)| s.cohort_gray_percent(k).map(|p| (i, p)))
                .collect();
            c.draw_series(
                pts.iter()
                    .map(|&(i, p)| Circle::new((mid(i), p), 3, color.filled())),
            )?
            .label(name.as_str())
            .legend(move |(x, y)| Circle::new((x + 10, y), 4, color.filled()));
            for seg in segments(&pts) {
                c.draw_series(LineSeries::new(seg, color.stroke_width(2)))?;
            }
        }
        trigger_line(&mut c, trigger_x, -2.0, 102.0)?;
        legend(&mut c, 14)?;
    }

    // 2: box count per reply, gray vs stable.
    {
        let max_boxes = seconds
            .iter()
            .flat_map(|s| [s.gray_boxes.mean(), s.stable_boxes.mean()])
            .flatten()
            .fold(1.0f64, f64::max)
            * 1.1;
        let mut c = panel(
            &panels[1],
            "boxes per reply (mean per second)",
            x_end,
            0f64..max_boxes,
        )?;
        c.configure_mesh()
            .x_desc("seconds")
            .label_style((FONT, 13))
            .draw()?;
        for (name, color, pick) in [
            (
                "gray",
                gray,
                (|s: &Second| s.gray_boxes.mean()) as fn(&Second) -> Option<f64>,
            ),
            ("stable", stable, |s: &Second| s.stable_boxes.mean()),
        ] {
            let pts: Vec<(usize, f64)> = seconds
                .iter()
                .enumerate()
                .filter_map(|(i, s)| pick(s).map(|m| (i, m)))
                .collect();
            c.draw_series(
                pts.iter()
                    .map(|&(i, m)| Circle::new((mid(i), m), 3, color.filled())),
            )?
            .label(name)
            .legend(move |(x, y)| Circle::new((x + 10, y), 4, color.filled()));
            // Seconds without replies of a version are gaps, not straight lines across.
            for seg in segments(&pts) {
                c.draw_series(LineSeries::new(seg, color.stroke_width(1)))?;
            }
        }
        trigger_line(&mut c, trigger_x, 0.0, max_boxes)?;
        legend(&mut c, 14)?;
    }

    // 3: breaker state per gateway, held between readings. Lines are nudged apart so that
    // gateways in the same state stay visible side by side.
    {
        let mut c = breaker_panel(
            &panels[2],
            "breaker (Envoy admin): 0 closed, 1 open, 2 half-open",
            x_end,
        )?;
        let n = breakers.gateways.len();
        for (g, name) in breakers.gateways.iter().enumerate() {
            let color = gateway_color(g);
            let nudge = nudge(g, n);
            let pts: Vec<(f64, f64)> = steps(&breakers.of(g), x_end)
                .into_iter()
                .map(|(x, y)| (x, y + nudge))
                .collect();
            c.draw_series(LineSeries::new(pts, color.stroke_width(2)))?
                .label(name.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        }
        trigger_line(&mut c, trigger_x, BREAKER_Y.start, BREAKER_Y.end)?;
        if n > 1 {
            legend(&mut c, 14)?;
        }
    }
    root.present()?;
    Ok(())
}

/// The first shed, as a vertical line from `y0` to `y1` with its legend entry.
fn trigger_line(c: &mut Panel<'_, '_>, x: Option<f64>, y0: f64, y1: f64) -> DrawResult {
    if let Some(x) = x {
        c.draw_series(LineSeries::new([(x, y0), (x, y1)], MARKER.stroke_width(1)))?
            .label("shed")
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], MARKER));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::summary::tests::sample;
    use grayguard_client::timeline::Timeline;

    #[test]
    fn draws_a_png_with_text_without_system_fonts() {
        let mut t = Timeline::default();
        t.record(&sample(0, 300, "gray; rule=r", 60));
        t.record(&sample(0, 400, "stable; no-rule", 3));
        t.record(&sample(1_000, 1_300, "stable; rule=r; shed=box_count", 4));
        t.record_breaker(Duration::from_millis(1_500), Breaker::Open);
        t.extend_to(Duration::from_secs(3));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("timeline.png");
        let cohorts = ["crane-camera".to_string()];
        let gateways = ["gw-0".to_string(), "gw-1".to_string()];
        let readings = [
            (Duration::from_millis(500), 0, Breaker::Closed),
            (Duration::from_millis(600), 1, Breaker::Closed),
            (Duration::from_millis(1_500), 0, Breaker::Open),
            (Duration::from_millis(1_700), 1, Breaker::Open),
        ];
        draw(
            &path,
            t.seconds(),
            &cohorts,
            &Breakers {
                gateways: &gateways,
                readings: &readings,
            },
            Some(Duration::from_millis(1_000)),
            "test",
        )
        .unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        assert!(
            bytes.len() > 10_000,
            "suspiciously small PNG: {} bytes",
            bytes.len()
        );
    }

    #[test]
    fn breaker_steps_hold_until_the_next_reading() {
        let r = [
            (Duration::from_millis(500), Breaker::Closed),
            (Duration::from_millis(2_250), Breaker::Open),
        ];
        assert_eq!(
            steps(&r, 4.0),
            vec![(0.5, 0.0), (2.25, 0.0), (2.25, 1.0), (4.0, 1.0)]
        );
        assert!(steps(&[], 4.0).is_empty());
    }

    #[test]
    fn gateways_are_nudged_apart_within_a_state() {
        assert_eq!(nudge(0, 1), 0.0);
        let n: Vec<f64> = (0..3).map(|g| nudge(g, 3)).collect();
        assert!(n[0] < n[1] && n[1] < n[2], "{n:?}");
        assert!(n.iter().all(|x| x.abs() < 0.1), "{n:?}");
    }

    #[test]
    fn segments_break_at_gaps() {
        let segs = segments(&[(0, 1.0), (1, 2.0), (3, 3.0), (4, 4.0), (6, 5.0)]);
        let lens: Vec<usize> = segs.iter().map(Vec::len).collect();
        assert_eq!(lens, vec![2, 2, 1]);
        assert_eq!(segs[1][0], (3.5, 3.0));
        assert!(segments(&[]).is_empty());
    }

    #[test]
    fn draws_an_empty_run() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.png");
        let none = Breakers {
            gateways: &[],
            readings: &[],
        };
        draw(&path, &[], &[], &none, None, "empty").unwrap();
        assert!(path.exists());
    }

    #[test]
    fn reports_an_unwritable_path() {
        let none = Breakers {
            gateways: &[],
            readings: &[],
        };
        let err = draw(
            Path::new("/nonexistent-dir/x.png"),
            &[],
            &[],
            &none,
            None,
            "x",
        )
        .unwrap_err();
        assert!(err.contains("/nonexistent-dir/x.png"), "{err}");
    }
}
