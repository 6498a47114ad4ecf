//! `make bench-promote`: how often the promotion verdict proves a gray version within its
//! budget, how often it wrongly proves one at or beyond it, and how many gray replies a
//! verdict takes — on synthetic releases through the real decision core with Envoy's
//! shared-data semantics (`grayguard_filter::simulate`), beside `make bench-detect`.
//!
//! ```text
//! cargo bench -p grayguard-filter --bench promote --features simulate -- \
//!     [--releases 1000] [--gray 10000] [--threads 2] [--seed 1] [--check]
//! ```
//!
//! `--check` exits 1 when a target below is missed.

use std::time::Instant;

use grayguard_contract::promotion::Verdict;
use grayguard_filter::simulate::{Latency, Release, Side, Verdicted, median_p90, play_promotion};

/// The hypothesis of the latency rows: at most +8 ms over stable's mean, alpha 5 %.
const LATENCY_BUDGET: &str =
    r#""promote":{"latency_max_increase_ms":8,"alpha":0.05,"min_gray_responses":200}"#;

/// The hypothesis of the box-count rows: within ±10 % of stable's mean, alpha 5 %.
const BOX_BUDGET: &str =
    r#""promote":{"box_count_max_shift":0.1,"alpha":0.05,"min_gray_responses":200}"#;

/// A rule with a hypothesis and no statistical trigger (the shedding path is measured by
/// `make bench-detect`; here nothing sheds the release before its verdict).
fn config(hypothesis: &str) -> String {
    format!(
        r#"{{"stable":"v9","gray":"v10",{hypothesis},
          "rules":[{{"name":"gray","headers":{{"x-device-type":{{"exact":"gray"}}}}}}],
          "breach":{{"detector":"sequential"}}}}"#
    )
}

struct Args {
    releases: usize,
    gray: usize,
    threads: usize,
    seed: u64,
    check: bool,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        releases: 1_000,
        gray: 10_000,
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
            "--gray" => a.gray = value()? as usize,
            "--threads" => a.threads = (value()? as usize).max(1),
            "--seed" => a.seed = value()?,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(a)
}

/// What a row expects.
#[derive(Clone, Copy, PartialEq)]
enum Expect {
    /// Within budget: proven in at least this share, with a median of at most this many
    /// gray replies.
    Proven(f64, usize),
    /// At or beyond the budget: proven in at most alpha of releases.
    NotProven,
    /// Beyond the budget: refuted, with a median of at most this many gray replies.
    Refuted(usize),
}

struct Row {
    name: &'static str,
    hypothesis: &'static str,
    stable: Side,
    gray: Side,
    expect: Expect,
}

fn rows() -> Vec<Row> {
    let s = Side::STABLE;
    let pareto = Side {
        latency: Latency::Pareto {
            min_ms: 60.0,
            shape: 2.5,
        },
        ..s
    };
    let row = |name, hypothesis, stable, gray, expect| Row {
        name,
        hypothesis,
        stable,
        gray,
        expect,
    };
    vec![
        row(
            "+3 ms (lognormal, median 100 ms, σ 0.3)",
            LATENCY_BUDGET,
            s,
            s.latency_plus(3.0),
            Expect::Proven(0.95, 1_500),
        ),
        row(
            "+3 ms (Pareto, 60 ms minimum, shape 2.5)",
            LATENCY_BUDGET,
            pareto,
            pareto.latency_plus(3.0),
            Expect::Proven(0.0, usize::MAX),
        ),
        row(
            "+8 ms (exactly the budget)",
            LATENCY_BUDGET,
            s,
            s.latency_plus(8.0),
            Expect::NotProven,
        ),
        row(
            "+8 ms, Pareto",
            LATENCY_BUDGET,
            pareto,
            pareto.latency_plus(8.0),
            Expect::NotProven,
        ),
        row(
            "+12 ms",
            LATENCY_BUDGET,
            s,
            s.latency_plus(12.0),
            Expect::Refuted(1_500),
        ),
        row(
            "boxes −5 % (budget ±10 %)",
            BOX_BUDGET,
            s,
            s.boxes_times(0.95),
            Expect::Proven(0.0, usize::MAX),
        ),
        row(
            "boxes −15 %",
            BOX_BUDGET,
            s,
            s.boxes_times(0.85),
            Expect::NotProven,
        ),
    ]
}

/// Plays `n` releases of a row over `a.threads` threads.
fn run(row: &Row, a: &Args) -> Vec<Verdicted> {
    let cfg = config(row.hypothesis);
    let per = a.releases.div_ceil(a.threads);
    let out: Vec<Result<Verdicted, String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..a.threads)
            .map(|t| {
                let cfg = &cfg;
                s.spawn(move || {
                    (t * per..((t + 1) * per).min(a.releases))
                        .map(|i| {
                            let release = Release {
                                stable: row.stable,
                                gray: row.gray,
                                changed: None,
                                gray_responses: a.gray,
                                // A gray version gets a small share of the traffic: the
                                // control (all stable replies) is nine times as large.
                                gray_share: 0.1,
                                rate_per_s: 1_000.0,
                                workers: 2 + i % 2,
                            };
                            let seed = a.seed.wrapping_mul(1_000_003).wrapping_add(i as u64);
                            play_promotion(cfg, &release, seed)
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
                eprintln!("bench-promote: {e}");
                std::process::exit(2)
            })
        })
        .collect()
}

fn main() {
    let a = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("bench-promote: {e}");
            std::process::exit(2);
        }
    };
    let start = Instant::now();
    let mut missed = Vec::new();
    println!(
        "Synthetic releases through the real decision core: stable lognormal latency (median \
         100 ms, σ 0.3) or Pareto, 5 ± 2 boxes, 1 % failures; gray 10 % of the traffic over 2–3 \
         workers; {} releases per row, each watched for up to {} gray replies. Hypotheses: \
         latency at most +8 ms, or box count within ±10 %; alpha 5 %; min_gray_responses \
         200.\n",
        a.releases, a.gray
    );
    println!(
        "| gray version | proven | refuted | pending | median (p90) gray replies to the verdict |"
    );
    println!("|---|---:|---:|---:|---:|");
    for row in rows() {
        let out = run(&row, &a);
        let n = out.len().max(1) as f64;
        let with = |v: Verdict| -> Vec<usize> {
            out.iter()
                .filter_map(|o| o.verdict.filter(|(x, _)| *x == v).map(|(_, at)| at))
                .collect()
        };
        let (proven, refuted) = (with(Verdict::Proven), with(Verdict::Refuted));
        let pending = out.len() - proven.len() - refuted.len();
        let share = |v: &[usize]| v.len() as f64 / n;
        let decided: Vec<usize> = proven.iter().chain(&refuted).copied().collect();
        let speed = median_p90(decided).map_or("–".into(), |(m, p)| format!("{m} ({p})"));
        println!(
            "| {} | {:.1} % | {:.1} % | {:.1} % | {speed} |",
            row.name,
            100.0 * share(&proven),
            100.0 * share(&refuted),
            100.0 * pending as f64 / n
        );
        let median = |v: Vec<usize>| median_p90(v).map_or(usize::MAX, |(m, _)| m);
        match row.expect {
            Expect::Proven(at_least, within) => {
                if share(&proven) < at_least {
                    missed.push(format!(
                        "{}: proven in {:.1} % < {:.0} %",
                        row.name,
                        100.0 * share(&proven),
                        100.0 * at_least
                    ));
                }
                let m = median(proven);
                if within < usize::MAX && m > within {
                    missed.push(format!("{}: median {m} > {within}", row.name));
                }
            }
            Expect::NotProven => {
                // alpha, with room for the sampling error of the share (3 σ).
                let limit = 0.05 + 3.0 * (0.05 * 0.95 / n).sqrt();
                if share(&proven) > limit {
                    missed.push(format!(
                        "{}: proven in {:.1} % > alpha",
                        row.name,
                        100.0 * share(&proven)
                    ));
                }
            }
            Expect::Refuted(within) => {
                let m = median(refuted);
                if m > within {
                    missed.push(format!("{}: refuted median {m} > {within}", row.name));
                }
            }
        }
    }
    println!(
        "\nThe guarantee: whatever the true effects and however long it is watched, a version \
         outside its budget (on latencies and box counts clipped at cap_factor × stable's mean) \
         is declared proven with probability at most alpha."
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
