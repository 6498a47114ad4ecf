//! `grayguard-soak`: soaks a running mesh (`make run`, or any front Envoy with sidecars) and
//! writes `summary.txt`, `summary.json` and `soak.png`.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};

use grayguard_client::breaker::Breaker;
use grayguard_client::traffic;
use grayguard_soak::bodies::{self, Kind};
use grayguard_soak::chart;
use grayguard_soak::config::{Args, Pids};
use grayguard_soak::sample::{self, Sampler};
use grayguard_soak::verdict::{Frame, Verdict};

/// Wait after the last reply before the final reading: the filter hands its counters to
/// Envoy on its tick (100 ms) and Envoy's stats flush every second.
const SETTLE: Duration = Duration::from_millis(2500);

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("grayguard-soak: {e}");
            ExitCode::from(2)
        }
    }
}

/// Seconds the breaker was read open or half-open, each reading held until the next.
fn shed_seconds(readings: &[(Duration, Breaker)], end: Duration) -> f64 {
    readings
        .iter()
        .enumerate()
        .filter(|(_, (_, b))| *b != Breaker::Closed)
        .map(|(i, (at, _))| {
            let until = readings.get(i + 1).map_or(end, |(next, _)| *next);
            until.saturating_sub(*at).as_secs_f64()
        })
        // A fold from +0: an empty f64 sum is -0, which prints as "-0 s".
        .fold(0.0, |total, s| total + s)
}

fn run(args: &Args) -> Result<ExitCode, String> {
    let soak = args.soak().map_err(|e| e.to_string())?;
    let photos = args.photos.load().map_err(|e| e.to_string())?;
    let cohorts = soak.traffic.mix.cohorts();
    let period: usize = cohorts.iter().map(|c| c.weight as usize).sum();
    let bodies = bodies::mix(&photos, soak.bad_share, period);
    let bad = bodies.kinds.iter().filter(|k| **k != Kind::Photo).count();
    std::fs::create_dir_all(&soak.out)
        .map_err(|e| format!("--out: cannot create {}: {e}", soak.out.display()))?;
    let names: Vec<String> = cohorts.iter().map(|c| c.device_type.clone()).collect();

    // Everything must answer before the soak starts: a silent part would read as a finding.
    let start = Instant::now();
    let sampler = Sampler::new(&soak, start);
    let first = sampler.read();
    if first.envoy.is_none() {
        return Err(format!("--admin: no answer from {}", soak.admin_metrics));
    }
    for s in &soak.sidecars {
        if first.sidecars.get(&s.version).is_none_or(Option::is_none) {
            return Err(format!("--sidecar: no answer from {}", s.metrics));
        }
    }
    if first.procs.is_empty() {
        return Err(match &soak.pids {
            Pids::Dir(d) => format!("--pid-dir: no NAME.pid file in {}", d.display()),
            Pids::Fixed(_) => "--process: nothing to watch".to_string(),
        });
    }
    if let Some(p) = first.procs.iter().find(|p| p.usage.is_none()) {
        return Err(format!(
            "cannot read /proc/{} ({}): is it running, and ours to read?",
            p.pid, p.name
        ));
    }
    let watched: Vec<String> = first
        .procs
        .iter()
        .map(|p| format!("{} ({})", p.name, p.pid))
        .collect();
    println!(
        "grayguard soak: {} requests at {}/s for {} s to {} ({} of every {} bodies bad inputs)\n  cohorts: {} (stable: {})\n  watching: {}\n  sampling every {} s, warm-up {} s",
        soak.traffic.requests,
        args.rate,
        soak.duration.as_secs(),
        soak.traffic.gateways[0].target,
        bad,
        bodies.kinds.len(),
        names.join(", "),
        names[soak.stable_cohort],
        watched.join(", "),
        soak.sample_every.as_secs(),
        soak.warmup.as_secs(),
    );
    println!("{}", sample::describe(&first));

    let bar = ProgressBar::new(soak.traffic.requests);
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {pos}/{len} replies  {msg}")
            .map_err(|e| e.to_string())?
            .progress_chars("=> "),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let sampling = sampler
        .clone()
        .spawn(soak.sample_every, Arc::clone(&stop), bar.clone());
    let result = traffic::run(&soak.traffic, Arc::new(bodies.images.clone()), &bar);
    bar.finish_and_clear();
    std::thread::sleep(SETTLE);
    stop.store(true, Ordering::Relaxed);
    let mut readings = vec![first];
    readings.extend(sampling.join().map_err(|_| "the sampler panicked")?);
    let last = sampler.read();
    println!("{}", sample::describe(&last));
    readings.push(last);
    let elapsed = start.elapsed();

    let frame = Frame {
        cohorts: &names,
        stable_cohort: soak.stable_cohort,
        kinds: &bodies.kinds,
        gray_version: &soak.traffic.gray_version,
        stable_version: &soak.traffic.stable_version,
        warmup: soak.warmup,
        max_growth: soak.max_growth,
        scheduled: soak.traffic.requests,
        skipped: result.skipped,
    };
    let verdict = Verdict::compute(
        &result.samples,
        &readings,
        shed_seconds(&result.breaker, elapsed),
        elapsed,
        &frame,
    );
    let text = verdict.render();
    let png = soak.out.join("soak.png");
    chart::draw(
        &png,
        &chart::Data {
            readings: &readings,
            samples: &result.samples,
            kinds: &bodies.kinds,
            cohorts: &names,
            breaker: &result.breaker,
            warmup: soak.warmup,
            bin: soak.sample_every,
            title: &format!(
                "grayguard soak: {} s at {}/s, {} % bad inputs",
                soak.duration.as_secs(),
                args.rate,
                args.bad_percent
            ),
        },
    )?;
    write(&soak.out.join("summary.txt"), &text)?;
    let json = serde_json::to_string_pretty(&verdict.json()).map_err(|e| e.to_string())?;
    write(&soak.out.join("summary.json"), &json)?;
    println!("\n{text}");
    println!(
        "wrote {}, {}, {}",
        png.display(),
        soak.out.join("summary.txt").display(),
        soak.out.join("summary.json").display()
    );
    if args.check && !verdict.failed().is_empty() {
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shed_time_holds_each_reading_until_the_next() {
        let s = |ms| Duration::from_millis(ms);
        let r = [
            (s(0), Breaker::Closed),
            (s(1000), Breaker::Open),
            (s(3000), Breaker::HalfOpen),
            (s(3500), Breaker::Closed),
            (s(9000), Breaker::Open),
        ];
        assert!((shed_seconds(&r, s(10_000)) - 3.5).abs() < 1e-9);
        assert_eq!(shed_seconds(&[], s(5)).to_string(), "0");
    }
}
