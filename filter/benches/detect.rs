//! `make bench-detect`: how fast each detector sheds a real regression wherever in a
//! release it starts, and how often it sheds a healthy gray version — the `sequential`
//! detector (change detection by betting) and the `window` detector side by side, on the
//! same synthetic releases, through the real decision core (see
//! `grayguard_filter::simulate`).
//!
//! ```text
//! cargo bench -p grayguard-filter --bench detect --features simulate -- \
//!     [--releases 300] [--healthy 60] [--healthy-gray 100000] [--threads 2] [--seed 1] [--check]
//! ```
//!
//! `--check` exits 1 when a target below is missed.

use std::fmt::Write as _;
use std::time::Instant;

use grayguard_filter::simulate::{
    Agreement, Latency, Outcome, Release, Rng, Side, median_p90, play,
};

/// The sequential detector as the local mesh ships it (margins: ×1.25 latency, ±25 %
/// boxes, +2 points failures, mean agreement with stable 0.7; `arl` at its default,
/// 1,000,000 gray replies per false shed), without the non-statistical triggers.
const SEQUENTIAL: &str = r#"{"stable":"v9","gray":"v10",
  "rules":[{"name":"gray","headers":{"x-device-type":{"exact":"gray"}}}],
  "breach":{"detector":"sequential",
    "latency":{"header":"l","max_ratio":1.25,"min_samples":10},
    "box_count":{"header":"b","max_shift":0.25,"min_samples":10},
    "error_rate":{"max_excess":0.02,"min_samples":10},
    "agreement":{"min_mean":0.7,"min_samples":10}}}"#;

/// The window detector with thresholds a user would pick for the same margins: mean latency
/// above 1.25 × stable's mean, box mean outside stable ± 3 σ, more than 5 % failures, over
/// 30 s windows.
const WINDOW: &str = r#"{"stable":"v9","gray":"v10",
  "rules":[{"name":"gray","headers":{"x-device-type":{"exact":"gray"}}}],
  "breach":{"detector":"window",
    "latency":{"header":"l","max_mean_ms":130.8,"window_s":30,"min_samples":10},
    "box_count":{"header":"b","max_sigma":3,"window_s":30,"min_samples":10},
    "error_rate":{"max":0.05,"window_s":30,"min_samples":10}}}"#;

/// The default `breach.arl`.
const ARL: f64 = 1e6;

struct Args {
    releases: usize,
    healthy: usize,
    healthy_gray: usize,
    threads: usize,
    seed: u64,
    check: bool,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        releases: 300,
        healthy: 60,
        healthy_gray: 100_000,
        threads: 2,
        seed: 1,
        check: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--bench" => continue,
            "--check" => {
                a.check = true;
                continue;
            }
            _ => {}
        }
        let mut value = || {
            it.next()
                .ok_or(format!("{flag} needs a value"))?
                .parse::<u64>()
                .map_err(|e| format!("{flag}: {e}"))
        };
        match flag.as_str() {
            "--releases" => a.releases = value()? as usize,
            "--healthy" => a.healthy = value()? as usize,
            "--healthy-gray" => a.healthy_gray = value()? as usize,
            "--threads" => a.threads = (value()? as usize).max(1),
            "--seed" => a.seed = value()?,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(a)
}

/// Where in a release a regression starts.
#[derive(Clone, Copy)]
enum Onset {
    At(usize),
    /// Uniform in 1,000..10,000 gray replies, drawn per release (aligned to nothing).
    Random,
}

impl Onset {
    const ALL: [Onset; 4] = [
        Onset::At(0),
        Onset::At(300),
        Onset::At(2_500),
        Onset::Random,
    ];

    fn name(self) -> String {
        match self {
            Onset::At(n) => format!("onset {n}"),
            Onset::Random => "onset 1,000–10,000".into(),
        }
    }

    fn draw(self, seed: u64) -> usize {
        match self {
            Onset::At(n) => n,
            Onset::Random => 1_000 + (Rng::new(seed ^ 0x5eed).next_u64() % 9_001) as usize,
        }
    }
}

/// A regression row and its targets: most gray replies the median delay may take at every
/// onset (`None`: no target, a row for the record).
struct Regression {
    name: &'static str,
    gray: Side,
    target: Option<usize>,
}

fn regressions() -> Vec<Regression> {
    let s = Side::STABLE;
    let r = |name, gray, target| Regression { name, gray, target };
    vec![
        r("box count −40 %", s.boxes_times(0.6), Some(250)),
        r("latency ×1.6", s.latency_times(1.6), Some(100)),
        r("failures 1 % → 8 %", s.failing(0.08), Some(800)),
        r(
            "box flood 5 → 20",
            Side {
                box_trials: 100,
                ..s
            },
            Some(20),
        ),
        r("latency ×1.3", s.latency_times(1.3), None),
        r("box count −30 %", s.boxes_times(0.7), None),
        r(
            "classes swapped (agreement 0 on 70 % of compared frames)",
            s.agreeing(compared(0.3, 0.0, 0.0)),
            Some(400),
        ),
        r(
            "boxes drift off (agreement U(0.2, 0.7) on half the frames)",
            s.agreeing(compared(0.5, 0.2, 0.7)),
            None,
        ),
    ]
}

/// Agreement values on 20 % of gray's replies (`--compare-percent 20`): 1 with
/// probability `whole`, else uniform in `[low, high]`.
fn compared(whole: f64, low: f64, high: f64) -> Agreement {
    Agreement {
        share: 0.2,
        whole,
        low,
        high,
    }
}

fn healthy() -> Vec<(&'static str, Side)> {
    let s = Side::STABLE;
    vec![
        ("A/A", s),
        (
            "A/A, Pareto(2.5) latencies",
            Side {
                latency: Latency::Pareto {
                    min_ms: 60.0,
                    shape: 2.5,
                },
                ..s
            },
        ),
        ("latency ×1.1 (margin ×1.25)", s.latency_times(1.1)),
        ("box count −10 % (margin 25 %)", s.boxes_times(0.9)),
        ("box count +10 % (margin 25 %)", s.boxes_times(1.1)),
        ("failures 1 % → 2 % (margin +2 pts)", s.failing(0.02)),
        (
            "agreement with stable 0.9 on average (1 on 60 % of frames, else U(0.5, 1); margin 0.7)",
            s.agreeing(compared(0.6, 0.5, 1.0)),
        ),
    ]
}

/// Plays `n` releases over `threads` threads; `release(i)` describes the i-th. A release
/// the core refuses to play (a configuration error) stops the benchmark.
fn run(
    config: &str,
    n: usize,
    a: &Args,
    release: impl Fn(usize) -> Release + Sync,
) -> Vec<Outcome> {
    let per = n.div_ceil(a.threads);
    let release = &release;
    let out: Vec<Result<Outcome, String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..a.threads)
            .map(|t| {
                s.spawn(move || {
                    (t * per..((t + 1) * per).min(n))
                        .map(|i| {
                            let seed = a.seed.wrapping_mul(1_000_003).wrapping_add(i as u64);
                            play(config, &release(i), seed)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    });
    out.into_iter()
        .map(|o| {
            o.unwrap_or_else(|e| {
                eprintln!("bench-detect: {e}");
                std::process::exit(2)
            })
        })
        .collect()
}

fn release(
    gray: Side,
    changed: Option<(usize, Side)>,
    gray_responses: usize,
    rate: f64,
    i: usize,
) -> Release {
    Release {
        stable: Side::STABLE,
        gray,
        changed,
        gray_responses,
        gray_share: 0.25,
        rate_per_s: rate,
        workers: 2 + i % 2,
    }
}

/// Delays from the onsets, and the sheds before them.
fn delays(outcomes: &[Outcome], onsets: &[usize]) -> (Vec<usize>, usize) {
    let mut d = Vec::new();
    let mut early = 0;
    for (o, at) in outcomes.iter().zip(onsets) {
        match o.delay(*at) {
            Some(Ok(x)) => d.push(x),
            Some(Err(_)) => early += 1,
            None => {}
        }
    }
    (d, early)
}

/// A 95 % interval for a Poisson rate: `k` events over `exposure` (Wilson–Hilferty).
fn rate_interval(k: usize, exposure: f64) -> (f64, f64) {
    let z = 1.96;
    let kf = k as f64;
    let lo = if k == 0 {
        0.0
    } else {
        kf * (1.0 - 1.0 / (9.0 * kf) - z / (3.0 * kf.sqrt())).powi(3)
    };
    let k1 = kf + 1.0;
    let hi = k1 * (1.0 - 1.0 / (9.0 * k1) + z / (3.0 * k1.sqrt())).powi(3);
    (lo / exposure, hi / exposure)
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
    let mut missed: Vec<String> = Vec::new();
    println!(
        "Synthetic releases through the real decision core: stable lognormal latency (median \
         100 ms, σ 0.3), 5 ± 2 boxes (Binomial(25, 0.2)), 1 % failures; gray 25 % of the \
         traffic at 50 replies/s over 2–3 workers. Sequential: arl {ARL:.0} (gray replies \
         per false shed), min_samples 10, default margins.\n"
    );
    println!(
        "## Regressions: gray replies from the start of the regression to the shed, median (p90), \
         {} releases per cell\n",
        a.releases
    );
    let mut head = String::from("| regression |");
    for o in Onset::ALL {
        let _ = write!(head, " sequential, {} |", o.name());
    }
    println!("{head} dilution (late ÷ onset 0) | window, onset 0 |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for r in regressions() {
        let mut row = format!("| {} |", r.name);
        let mut medians = Vec::new();
        for onset in Onset::ALL {
            let onsets: Vec<usize> = (0..a.releases)
                .map(|i| onset.draw(a.seed.wrapping_add(i as u64)))
                .collect();
            let out = run(SEQUENTIAL, a.releases, &a, |i| {
                let at = onsets[i];
                release(Side::STABLE, Some((at, r.gray)), at + 5_000, 50.0, i)
            });
            let (d, early) = delays(&out, &onsets);
            let shed = d.len();
            let cell = match median_p90(d) {
                Some((m, p)) => {
                    medians.push(m);
                    if let Some(t) = r.target
                        && m > t
                    {
                        missed.push(format!("{}, {}: median {m} > {t}", r.name, onset.name()));
                    }
                    format!("{m} ({p})")
                }
                None => "–".into(),
            };
            let note = if shed < a.releases || early > 0 {
                format!(" [{shed} shed, {early} before the onset]")
            } else {
                String::new()
            };
            let _ = write!(row, " {cell}{note} |");
        }
        let dilution = match medians.as_slice() {
            [m0, _, m2, mr] if *m0 > 0 => {
                let (x, y) = (*m2 as f64 / *m0 as f64, *mr as f64 / *m0 as f64);
                if r.target.is_some() && (x > 1.3 || y > 1.3) {
                    missed.push(format!("{}: dilution {x:.2} / {y:.2} > 1.3", r.name));
                }
                format!("{x:.2} / {y:.2}")
            }
            _ => "–".into(),
        };
        let win = run(WINDOW, a.releases, &a, |i| {
            release(r.gray, None, 5_000, 50.0, i)
        });
        let (wd, _) = delays(&win, &vec![0; win.len()]);
        let wcell = median_p90(wd).map_or("–".into(), |(m, p)| format!("{m} ({p})"));
        let target = r
            .target
            .map_or(String::new(), |t| format!(" (target ≤ {t})"));
        println!("{row} {dilution} | {wcell} |{target}");
    }

    println!(
        "\n## Healthy versions: false sheds per gray reply (sequential: {} releases of {} gray \
         replies each, at 1,000 replies/s so that the run is quick; window: the share of \
         {} releases of 10,000 gray replies shed)\n",
        a.healthy, a.healthy_gray, a.healthy
    );
    println!(
        "| healthy gray version | sequential: false sheds | gray replies | per reply (95 %) | ≤ 1/arl | window: shed |"
    );
    println!("|---|---:|---:|---:|:-:|---:|");
    for (name, gray) in healthy() {
        let out = run(SEQUENTIAL, a.healthy, &a, |i| {
            release(gray, None, a.healthy_gray, 1_000.0, i)
        });
        let sheds = out.iter().filter(|o| o.shed.is_some()).count();
        let exposure: usize = out
            .iter()
            .map(|o| o.shed.map_or(a.healthy_gray, |(at, _)| at))
            .sum();
        let (lo, hi) = rate_interval(sheds, exposure as f64);
        let ok = hi <= 1.0 / ARL;
        if !ok {
            missed.push(format!(
                "{name}: false sheds per reply up to {hi:.2e} > 1/arl"
            ));
        }
        let win = run(WINDOW, a.healthy, &a, |i| {
            release(gray, None, 10_000, 50.0, i)
        });
        let wshare =
            win.iter().filter(|o| o.shed.is_some()).count() as f64 / win.len().max(1) as f64;
        println!(
            "| {name} | {sheds} | {exposure} | {:.1e} [{lo:.1e}, {hi:.1e}] | {} | {:.1} % |",
            sheds as f64 / exposure.max(1) as f64,
            if ok { "yes" } else { "no" },
            100.0 * wshare
        );
    }
    println!(
        "\nThe sequential detector's guarantee: a version within its margins is shed falsely at most \
         once per arl gray replies in expectation, and within its first N gray replies with \
         probability at most N/arl. Peers decide on other clocks: Kayenta ~1 h analysis \
         intervals, Flagger and Argo Rollouts a metric interval of a minute or more per check."
    );
    println!("({:.0} s)", start.elapsed().as_secs_f64());
    if !missed.is_empty() {
        println!("\nTargets missed:");
        for m in &missed {
            println!("- {m}");
        }
        if a.check {
            std::process::exit(1);
        }
    }
}
