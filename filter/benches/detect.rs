//! `make bench-detect`: how often each detector sheds a healthy gray version, and how many
//! gray responses a real regression gets through before it is shed — the `sequential`
//! and `window` detectors side by side, on the same synthetic releases, through the real
//! decision core (see `grayguard_filter::simulate`).
//!
//! ```text
//! cargo bench -p grayguard-filter --bench detect --features simulate -- \
//!     [--releases 1000] [--regressions 300] [--gray 10000] [--threads 2] [--seed 1]
//! ```

use std::fmt::Write as _;
use std::time::Instant;

use grayguard_filter::simulate::{Latency, Outcome, Release, Side, median_p90, play};

/// The sequential detector as the local mesh ships it (margins: ×1.25 latency, ±25 %
/// boxes, +2 points failures; alpha 1 %), without the non-statistical triggers.
const SEQUENTIAL: &str = r#"{"stable":"v9","gray":"v10",
  "rules":[{"name":"gray","headers":{"x-device-type":{"exact":"gray"}}}],
  "breach":{"detector":"sequential","alpha":0.01,
    "latency":{"header":"l","max_ratio":1.25,"min_samples":10},
    "box_count":{"header":"b","max_shift":0.25,"min_samples":10},
    "error_rate":{"max_excess":0.02,"min_samples":10}}}"#;

/// The window detector with thresholds a user would pick for the same margins: mean latency
/// above 1.25 × stable's mean, box mean outside stable ± 3 σ, more than 5 % failures, over
/// 30 s windows.
const WINDOW: &str = r#"{"stable":"v9","gray":"v10",
  "rules":[{"name":"gray","headers":{"x-device-type":{"exact":"gray"}}}],
  "breach":{"detector":"window",
    "latency":{"header":"l","max_mean_ms":130.8,"window_s":30,"min_samples":10},
    "box_count":{"header":"b","max_sigma":3,"window_s":30,"min_samples":10},
    "error_rate":{"max":0.05,"window_s":30,"min_samples":10}}}"#;

struct Args {
    releases: usize,
    regressions: usize,
    gray: usize,
    threads: usize,
    seed: u64,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        releases: 1_000,
        regressions: 300,
        gray: 10_000,
        threads: 2,
        seed: 1,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--bench" {
            continue;
        }
        let mut value = || {
            it.next()
                .ok_or(format!("{flag} needs a value"))?
                .parse::<u64>()
                .map_err(|e| format!("{flag}: {e}"))
        };
        match flag.as_str() {
            "--releases" => a.releases = value()? as usize,
            "--regressions" => a.regressions = value()? as usize,
            "--gray" => a.gray = value()? as usize,
            "--threads" => a.threads = (value()? as usize).max(1),
            "--seed" => a.seed = value()?,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(a)
}

/// One row of the table: a gray version and whether shedding it is right.
struct Case {
    name: &'static str,
    healthy: bool,
    gray: Side,
    /// A regression that starts after this many healthy gray responses.
    after: Option<usize>,
}

fn cases() -> Vec<Case> {
    let s = Side::STABLE;
    let heavy = Side {
        latency: Latency::Pareto {
            min_ms: 60.0,
            shape: 2.5,
        },
        ..s
    };
    let case = |name, healthy, gray| Case {
        name,
        healthy,
        gray,
        after: None,
    };
    vec![
        case("A/A", true, s),
        case("A/A, Pareto(2.5) latencies", true, heavy),
        case("latency ×1.1 (margin ×1.25)", true, s.latency_times(1.1)),
        case("box count −10 % (margin 25 %)", true, s.boxes_times(0.9)),
        case("box count +10 % (margin 25 %)", true, s.boxes_times(1.1)),
        case("failures 1 % → 2 % (margin +2 pts)", true, s.failing(0.02)),
        case("box count −20 % (within margin)", false, s.boxes_times(0.8)),
        case("box count −40 %", false, s.boxes_times(0.6)),
        case(
            "box flood 5 → 20",
            false,
            Side {
                box_trials: 100,
                ..s
            },
        ),
        case("latency ×1.3", false, s.latency_times(1.3)),
        case("latency ×1.6", false, s.latency_times(1.6)),
        case("failures 1 % → 3 % (at margin)", false, s.failing(0.03)),
        case("failures 1 % → 8 %", false, s.failing(0.08)),
        Case {
            name: "box flood after 5,000 healthy",
            healthy: false,
            gray: Side {
                box_trials: 100,
                ..s
            },
            after: Some(5_000),
        },
        Case {
            name: "box count −40 % after 5,000 healthy",
            healthy: false,
            gray: s.boxes_times(0.6),
            after: Some(5_000),
        },
    ]
}

/// Plays `n` releases of a case over `threads` threads.
fn run(config: &str, c: &Case, n: usize, a: &Args) -> Vec<Outcome> {
    let release = |i: usize| Release {
        stable: Side::STABLE,
        gray: if c.after.is_some() {
            Side::STABLE
        } else {
            c.gray
        },
        changed: c.after.map(|k| (k, c.gray)),
        gray_responses: a.gray + c.after.unwrap_or(0),
        gray_share: 0.25,
        rate_per_s: 50.0,
        workers: 2 + i % 2,
    };
    let per = n.div_ceil(a.threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..a.threads)
            .map(|t| {
                s.spawn(move || {
                    (t * per..((t + 1) * per).min(n))
                        .filter_map(|i| {
                            let seed = a.seed.wrapping_mul(1_000_003).wrapping_add(i as u64);
                            play(config, &release(i), seed).ok()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    })
}

/// `shed share | median | p90` for one detector; sheds before a change are false sheds,
/// counted apart.
fn cell(outcomes: &[Outcome], after: usize) -> String {
    let n = outcomes.len().max(1) as f64;
    let delays: Vec<usize> = outcomes
        .iter()
        .filter_map(|o| o.delay(after).and_then(Result::ok))
        .collect();
    let early = outcomes
        .iter()
        .filter(|o| matches!(o.delay(after), Some(Err(_))))
        .count();
    let share = delays.len() as f64 / n;
    let early = if early > 0 {
        format!(" (+{:.1} % before it)", 100.0 * early as f64 / n)
    } else {
        String::new()
    };
    match median_p90(delays) {
        Some((m, p)) => format!("{:.2} %{early} | {m} | {p}", 100.0 * share),
        None => format!("{:.2} %{early} | – | –", 100.0 * share),
    }
}

fn main() {
    let a = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("bench-detect: {e}");
            std::process::exit(2);
        }
    };
    let start = Instant::now();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Synthetic releases through the real decision core: stable lognormal latency (median \
         100 ms, σ 0.3), 5 ± 2 boxes (Binomial(25, 0.2)), 1 % failures; gray 25 % of the \
         traffic at 50 responses/s over 2–3 workers; up to {} gray responses per release; \
         healthy cases {} releases, regressions {}.\n",
        a.gray, a.releases, a.regressions
    );
    let _ = writeln!(
        out,
        "| gray version | sequential: shed | median | p90 | window: shed | median | p90 |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|");
    let mut worst_healthy: f64 = 0.0;
    for c in cases() {
        let n = if c.healthy { a.releases } else { a.regressions };
        let seq = run(SEQUENTIAL, &c, n, &a);
        let win = run(WINDOW, &c, n, &a);
        if c.healthy {
            let shed = seq.iter().filter(|o| o.shed.is_some()).count();
            worst_healthy = worst_healthy.max(shed as f64 / seq.len().max(1) as f64);
        }
        let _ = writeln!(
            out,
            "| {}{} | {} | {} |",
            c.name,
            if c.healthy { " — healthy" } else { "" },
            cell(&seq, c.after.unwrap_or(0)),
            cell(&win, c.after.unwrap_or(0))
        );
        print!("{out}");
        out.clear();
    }
    println!(
        "\nDelays are gray responses from the start of the regression to the shed. \
         Sequential, worst false-shed share of a healthy version: {:.2} % (alpha 1 %). \
         Peers decide on other clocks: Kayenta ~1 h analysis intervals, Flagger and Argo \
         Rollouts a metric interval of a minute or more per check.",
        100.0 * worst_healthy
    );
    println!("({:.0} s)", start.elapsed().as_secs_f64());
}
