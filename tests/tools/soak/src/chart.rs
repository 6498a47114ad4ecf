//! The soak's chart (PNG): every process's memory over time, the errors per cohort per
//! sample interval, and the breaker state (shed or not), on one time axis; the warm-up is
//! marked. In the client library's chart style (embedded font, palette, axes).

use std::path::Path;
use std::time::Duration;

use plotters::prelude::*;

use grayguard_client::breaker::Breaker;
use grayguard_client::chart::{self, DrawResult, FONT, breaker_panel, color, legend, panel};
use grayguard_client::sample::Sample;

use crate::bodies::Kind;
use crate::sample::Reading;
use crate::verdict::error_of;

/// Chart size in pixels.
pub const WIDTH: u32 = 1400;
pub const HEIGHT: u32 = 1000;

/// What the chart shows.
#[derive(Debug, Clone, Copy)]
pub struct Data<'a> {
    pub readings: &'a [Reading],
    pub samples: &'a [Sample],
    pub kinds: &'a [Kind],
    pub cohorts: &'a [String],
    pub breaker: &'a [(Duration, Breaker)],
    pub warmup: Duration,
    /// Width of the error bins.
    pub bin: Duration,
    pub title: &'a str,
}

/// Errors per cohort in bins of `bin` (by reply time): `(bin start s, count)` per cohort.
pub fn error_bins(d: &Data<'_>) -> Vec<Vec<(f64, f64)>> {
    let bin = d.bin.as_secs_f64().max(0.001);
    let end = d
        .samples
        .iter()
        .map(|s| s.done.as_secs_f64())
        .fold(0.0, f64::max);
    let n = (end / bin).floor() as usize + 1;
    let mut counts = vec![vec![0u32; n]; d.cohorts.len()];
    for s in d.samples {
        let kind = d.kinds.get(s.image).copied().unwrap_or(Kind::Photo);
        if error_of(s, kind).is_some() {
            let i = ((s.done.as_secs_f64() / bin).floor() as usize).min(n - 1);
            if let Some(c) = counts.get_mut(s.cohort) {
                c[i] += 1;
            }
        }
    }
    counts
        .into_iter()
        .map(|c| {
            c.into_iter()
                .enumerate()
                .map(|(i, v)| (i as f64 * bin, f64::from(v)))
                .collect()
        })
        .collect()
}

/// Memory per process over time, MiB: `(name, [(t s, MiB)])`.
pub fn memory_series(readings: &[Reading]) -> Vec<(String, Vec<(f64, f64)>)> {
    let mut out: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    for r in readings {
        for p in &r.procs {
            let Some(u) = p.usage else { continue };
            let point = (r.at.as_secs_f64(), u.rss_bytes as f64 / (1024.0 * 1024.0));
            match out.iter_mut().find(|(n, _)| *n == p.name) {
                Some((_, pts)) => pts.push(point),
                None => out.push((p.name.clone(), vec![point])),
            }
        }
    }
    out
}

/// Draws the chart to a PNG at `path`.
pub fn draw(path: &Path, d: &Data<'_>) -> Result<(), String> {
    chart::register_font()?;
    draw_inner(path, d).map_err(|e| format!("{}: {e}", path.display()))
}

fn draw_inner(path: &Path, d: &Data<'_>) -> DrawResult {
    let root = BitMapBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(d.title, (FONT, 24))?;
    let panels = root.split_evenly((3, 1));
    let x_end = d
        .readings
        .iter()
        .map(|r| r.at.as_secs_f64())
        .chain(d.samples.iter().map(|s| s.done.as_secs_f64()))
        .fold(1.0, f64::max);
    let warm = d.warmup.as_secs_f64();
    let grey = RGBColor(150, 150, 150);

    // 1: memory per process, on a log scale: a 3 MiB process and a 250 MiB one both show,
    //    and equal growth reads as equal rise.
    {
        let series = memory_series(d.readings);
        let values = || series.iter().flat_map(|(_, p)| p.iter().map(|&(_, y)| y));
        let low = values().fold(f64::INFINITY, f64::min).clamp(0.1, 1e6) / 1.5;
        // Room above the lines for the legend.
        let high = values().fold(1.0, f64::max) * 8.0;
        let mut c = panel(
            &panels[0],
            "resident memory per process (MiB, log scale); the shaded start is the warm-up",
            x_end,
            (low..high).log_scale(),
        )?;
        c.configure_mesh()
            .x_desc("seconds")
            .y_label_formatter(&|y| format!("{y:.0}"))
            .label_style((FONT, 13))
            .draw()?;
        c.draw_series(std::iter::once(Rectangle::new(
            [(0.0, low), (warm.min(x_end), high)],
            grey.mix(0.15).filled(),
        )))?;
        for (k, (name, pts)) in series.iter().enumerate() {
            let color = color(k);
            c.draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))?
                .label(name.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        }
        legend(&mut c, 13)?;
    }

    // 2: errors per cohort per bin (bad inputs answered with their 4xx are not errors).
    {
        let bins = error_bins(d);
        let top = bins
            .iter()
            .flat_map(|b| b.iter().map(|&(_, y)| y))
            .fold(1.0, f64::max)
            * 1.2;
        let caption = format!(
            "client-visible errors per cohort per {:.0} s (bad inputs answered with their 4xx excluded)",
            d.bin.as_secs_f64()
        );
        let mut c = panel(&panels[1], &caption, x_end, 0f64..top)?;
        c.configure_mesh()
            .x_desc("seconds")
            .label_style((FONT, 13))
            .draw()?;
        for (k, name) in d.cohorts.iter().enumerate() {
            let color = color(k);
            let pts = bins.get(k).cloned().unwrap_or_default();
            c.draw_series(LineSeries::new(pts, color.stroke_width(2)))?
                .label(name.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        }
        legend(&mut c, 13)?;
    }

    // 3: the breaker, held between admin readings.
    {
        let mut c = breaker_panel(
            &panels[2],
            "shed state (Envoy admin): 0 closed, 1 open (shedding), 2 half-open (probing)",
            x_end,
        )?;
        let states: Vec<(f64, f64)> = d
            .breaker
            .iter()
            .map(|(at, b)| (at.as_secs_f64(), f64::from(b.gauge())))
            .collect();
        c.draw_series(LineSeries::new(
            chart::steps(&states, Some(x_end)),
            BLACK.stroke_width(2),
        ))?;
    }
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::procfs::Usage;
    use crate::sample::Proc;
    use grayguard_client::sample::Outcome;

    fn reading(at: u64, rss_mib: u64) -> Reading {
        Reading {
            at: Duration::from_secs(at),
            procs: vec![Proc {
                name: "envoy".into(),
                pid: 1,
                usage: Some(Usage {
                    rss_bytes: rss_mib << 20,
                    fds: 9,
                }),
            }],
            ..Reading::default()
        }
    }

    fn transport(cohort: usize, done_s: u64) -> Sample {
        Sample {
            sent: Duration::ZERO,
            done: Duration::from_secs(done_s),
            cohort,
            image: 0,
            gateway: 0,
            outcome: Outcome::Transport("reset".into()),
        }
    }

    #[test]
    fn errors_are_binned_per_cohort() {
        let samples = [transport(0, 1), transport(0, 3), transport(1, 7)];
        let cohorts = ["a".to_string(), "b".to_string()];
        let d = Data {
            readings: &[],
            samples: &samples,
            kinds: &[Kind::Photo],
            cohorts: &cohorts,
            breaker: &[],
            warmup: Duration::ZERO,
            bin: Duration::from_secs(5),
            title: "t",
        };
        let bins = error_bins(&d);
        assert_eq!(bins[0], vec![(0.0, 2.0), (5.0, 0.0)]);
        assert_eq!(bins[1], vec![(0.0, 0.0), (5.0, 1.0)]);
    }

    #[test]
    fn draws_a_png() {
        let readings = [reading(0, 40), reading(5, 42), reading(10, 41)];
        let samples = [transport(0, 4)];
        let cohorts = ["crane-camera".to_string()];
        let breaker = [
            (Duration::from_secs(1), Breaker::Closed),
            (Duration::from_secs(6), Breaker::Open),
        ];
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("soak.png");
        let d = Data {
            readings: &readings,
            samples: &samples,
            kinds: &[Kind::Photo],
            cohorts: &cohorts,
            breaker: &breaker,
            warmup: Duration::from_secs(3),
            bin: Duration::from_secs(5),
            title: "test",
        };
        draw(&path, &d).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(memory_series(&readings)[0].1[1], (5.0, 42.0));
        assert!(draw(Path::new("/nonexistent-dir/x.png"), &d).is_err());
    }
}
