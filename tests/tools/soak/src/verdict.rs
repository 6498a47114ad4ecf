//! The soak's outcome from what the clients saw and what the sampler read: per cohort
//! replies and errors, per process memory growth and open files, whether the clients', Envoy's,
//! the filter's and the sidecars' counts agree (the gray route's retries onto stable
//! accounted), and the targets, met or not.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde_json::{Value, json};

use grayguard_client::decision::{Note, Route};
use grayguard_client::sample::{Outcome, Sample};

use crate::bodies::Kind;
use crate::sample::{Reading, Retries};

/// What the verdict needs besides the data.
#[derive(Debug, Clone)]
pub struct Frame<'a> {
    /// The cohorts' device types, in mix order.
    pub cohorts: &'a [String],
    /// The cohort that must see no error.
    pub stable_cohort: usize,
    /// The kind of every body, by index.
    pub kinds: &'a [Kind],
    pub gray_version: &'a str,
    pub stable_version: &'a str,
    pub warmup: Duration,
    pub max_growth: f64,
    /// Requests the schedule held.
    pub scheduled: u64,
    /// Scheduled requests not sent because every sender was busy.
    pub skipped: u64,
}

/// One cohort's replies.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CohortReport {
    pub name: String,
    pub sent: u64,
    /// Photos answered 200.
    pub photos_ok: u64,
    pub bad_sent: u64,
    /// Bad inputs answered with their 4xx.
    pub bad_as_expected: u64,
    pub served_gray: u64,
    pub served_stable: u64,
    /// Errors by kind: a photo not answered 200, a bad input not answered its 4xx, a
    /// transport failure.
    pub errors: BTreeMap<String, u64>,
}

impl CohortReport {
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// One process's memory and files over the soak.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessReport {
    pub name: String,
    /// Every pid the name had (more than one: it was restarted).
    pub pids: Vec<u32>,
    /// Readings in which it could not be read (gone).
    pub missing: usize,
    /// Mean RSS of the first and the last third after warm-up, bytes.
    pub first_third: Option<f64>,
    pub last_third: Option<f64>,
    pub peak_rss: u64,
    /// Open file descriptors at the first and the last reading after warm-up.
    pub fds: Option<(u64, u64)>,
}

impl ProcessReport {
    /// Growth from the first to the last third, as a fraction.
    pub fn growth(&self) -> Option<f64> {
        Some(self.last_third? / self.first_third? - 1.0)
    }
}

/// One count as seen from several places, which must agree.
#[derive(Debug, Clone, PartialEq)]
pub struct Agreement {
    pub what: String,
    /// `(where, count)`; `None` when that place could not be read.
    pub counts: Vec<(String, Option<f64>)>,
}

impl Agreement {
    pub fn agrees(&self) -> bool {
        let first = self.counts.first().and_then(|c| c.1);
        first.is_some() && self.counts.iter().all(|c| c.1 == first)
    }
}

/// A target and whether it was met.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub target: String,
    pub met: bool,
    pub detail: String,
}

/// Everything the summary says.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub duration: Duration,
    pub scheduled: u64,
    pub skipped: u64,
    pub sent: u64,
    pub transport_errors: u64,
    pub cohorts: Vec<CohortReport>,
    pub processes: Vec<ProcessReport>,
    pub agreements: Vec<Agreement>,
    /// The gray route's retries onto stable over the soak (`None`: the admin was not read).
    pub retries: Option<Retries>,
    /// Seconds the breaker was read open or half-open, of the seconds read.
    pub shed_s: f64,
    pub checks: Vec<Check>,
}

/// The error a sample is, if any, given the body it sent.
pub fn error_of(sample: &Sample, kind: Kind) -> Option<String> {
    match &sample.outcome {
        Outcome::Transport(_) => Some("transport".to_string()),
        Outcome::Reply(r) if r.status == kind.expected_status() => None,
        Outcome::Reply(r) if kind == Kind::Photo => Some(format!("HTTP {}", r.status)),
        Outcome::Reply(r) => Some(format!("{} answered {}", kind.name(), r.status)),
    }
}

fn cohorts(samples: &[Sample], f: &Frame<'_>) -> Vec<CohortReport> {
    let mut out: Vec<CohortReport> = f
        .cohorts
        .iter()
        .map(|name| CohortReport {
            name: name.clone(),
            ..CohortReport::default()
        })
        .collect();
    for s in samples {
        let Some(c) = out.get_mut(s.cohort) else {
            continue;
        };
        let kind = f.kinds.get(s.image).copied().unwrap_or(Kind::Photo);
        c.sent += 1;
        if kind == Kind::Photo {
            c.photos_ok += u64::from(s.reply().is_some_and(|r| r.status == 200));
        } else {
            c.bad_sent += 1;
        }
        match error_of(s, kind) {
            Some(e) => *c.errors.entry(e).or_default() += 1,
            None if kind != Kind::Photo => c.bad_as_expected += 1,
            None => {}
        }
        match s.reply().and_then(|r| r.served_by) {
            Some(Route::Gray) => c.served_gray += 1,
            Some(Route::Stable) => c.served_stable += 1,
            None => {}
        }
    }
    out
}

/// `errors N` and, when there are any, how many of each kind.
fn error_kinds(c: &CohortReport) -> String {
    let kinds: Vec<String> = c.errors.iter().map(|(k, n)| format!("{k}: {n}")).collect();
    if kinds.is_empty() {
        format!("errors {}", c.error_count())
    } else {
        format!("errors {} ({})", c.error_count(), kinds.join(", "))
    }
}

fn mean(v: &[u64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64)
}

/// Per process: memory in the first and last third after warm-up, peak, files, restarts.
pub fn processes(readings: &[Reading], warmup: Duration) -> Vec<ProcessReport> {
    let mut names: Vec<String> = readings
        .iter()
        .flat_map(|r| r.procs.iter().map(|p| p.name.clone()))
        .collect();
    names.sort();
    names.dedup();
    let end = readings.iter().map(|r| r.at).max().unwrap_or_default();
    let span = end.saturating_sub(warmup);
    let (first_end, last_start) = (warmup + span / 3, warmup + span * 2 / 3);
    names
        .into_iter()
        .map(|name| {
            let mut pids = Vec::new();
            let (mut first, mut last, mut fds) = (Vec::new(), Vec::new(), Vec::new());
            let (mut missing, mut peak) = (0, 0);
            for r in readings {
                let Some(p) = r.procs.iter().find(|p| p.name == name) else {
                    missing += 1;
                    continue;
                };
                if !pids.contains(&p.pid) {
                    pids.push(p.pid);
                }
                let Some(u) = p.usage else {
                    missing += 1;
                    continue;
                };
                peak = peak.max(u.rss_bytes);
                if r.at < warmup {
                    continue;
                }
                fds.push(u.fds);
                if r.at < first_end {
                    first.push(u.rss_bytes);
                } else if r.at >= last_start {
                    last.push(u.rss_bytes);
                }
            }
            ProcessReport {
                name,
                pids,
                missing,
                first_third: mean(&first),
                last_third: mean(&last),
                peak_rss: peak,
                fds: fds.first().zip(fds.last()).map(|(a, b)| (*a, *b)),
            }
        })
        .collect()
}

/// The gray route's retries over the soak: the last reading's counters less the first's.
fn retries(first: &Reading, last: &Reading) -> Option<Retries> {
    let (a, b) = (first.envoy.as_ref()?.retries, last.envoy.as_ref()?.retries);
    Some(Retries {
        sent: b.sent - a.sent,
        answered: b.answered - a.answered,
        overflow: b.overflow - a.overflow,
    })
}

/// Requests the filter routed to `side`, by the decisions the clients got.
fn decided(samples: &[Sample], side: Route) -> f64 {
    samples
        .iter()
        .filter(|s| {
            s.reply()
                .and_then(|r| r.decision())
                .is_some_and(|d| d.side == side)
        })
        .count() as f64
}

/// Per version, the requests sent to it over the soak: routed there by the filter (the
/// clients' decisions, the filter's count), sent by Envoy to its cluster, counted by its
/// sidecar. Stable's include the gray route's retries onto it: a gray request whose attempt
/// failed, or had no answer at the per-try timeout (a hedge), is sent to stable too, and both
/// sidecars count it. Then the fallbacks: gray requests whose answer came from stable, by the
/// clients' decisions, the filter's count and Envoy's retries that answered.
fn agreements(
    samples: &[Sample],
    first: &Reading,
    last: &Reading,
    f: &Frame<'_>,
) -> Vec<Agreement> {
    let delta = |pick: &dyn Fn(&Reading) -> Option<f64>| Some(pick(last)? - pick(first)?);
    let retried = retries(first, last).map(|r| r.sent);
    let plus_retries = |n: Option<f64>, route: Route| match route {
        Route::Gray => n,
        Route::Stable => Some(n? + retried?),
    };
    let mut rows: Vec<Agreement> = [
        (f.gray_version, Route::Gray),
        (f.stable_version, Route::Stable),
    ]
    .into_iter()
    .map(|(version, route)| {
        let side = if route == Route::Gray {
            "gray"
        } else {
            "stable"
        };
        let retries = if route == Route::Gray {
            ""
        } else {
            " + Envoy's retries onto it"
        };
        let sidecar = delta(&|r: &Reading| Some(r.sidecars.get(version)?.as_ref()?.requests));
        let cluster = delta(&|r: &Reading| r.envoy.as_ref()?.upstream.get(version).copied());
        let filter = delta(&|r: &Reading| {
            let e = r.envoy.as_ref()?;
            Some(match route {
                Route::Gray => e.routed_gray,
                Route::Stable => e.routed_stable,
            })
        });
        Agreement {
            what: format!("requests to {version}"),
            counts: vec![
                (
                    format!("clients' decisions {side}{retries}"),
                    plus_retries(Some(decided(samples, route)), route),
                ),
                (format!("{version} sidecar"), sidecar),
                (format!("Envoy cluster {version}"), cluster),
                (
                    format!("filter routed_{side}{retries}"),
                    plus_retries(filter, route),
                ),
            ],
        }
    })
    .collect();
    let fallbacks = samples
        .iter()
        .filter(|s| {
            s.reply()
                .and_then(|r| r.decision())
                .is_some_and(|d| d.note == Some(Note::Fallback))
        })
        .count() as f64;
    rows.push(Agreement {
        what: format!("gray requests {} answered", f.stable_version),
        counts: vec![
            ("clients' decisions `fallback`".into(), Some(fallbacks)),
            (
                "filter fallbacks".into(),
                delta(&|r: &Reading| Some(r.envoy.as_ref()?.fallbacks)),
            ),
            (
                "Envoy's retries that answered".into(),
                retries(first, last).map(|r| r.answered),
            ),
        ],
    });
    rows
}

fn percent(x: f64) -> String {
    format!("{:+.1} %", x * 100.0)
}

impl Verdict {
    /// `readings` are the sampler's, the first taken before any traffic and the last after
    /// the final replies settled; `breaker` the admin's readings during the run.
    pub fn compute(
        samples: &[Sample],
        readings: &[Reading],
        breaker_open_s: f64,
        duration: Duration,
        f: &Frame<'_>,
    ) -> Verdict {
        let cohorts = cohorts(samples, f);
        let processes = processes(readings, f.warmup);
        let default = Reading::default();
        let first = readings.first().unwrap_or(&default);
        let last = readings.last().unwrap_or(&default);
        let agreements = agreements(samples, first, last, f);
        let retries = retries(first, last);
        let transport_errors = samples.iter().filter(|s| s.reply().is_none()).count() as u64;
        let mut checks = Vec::new();

        let grown: Vec<String> = processes
            .iter()
            .filter(|p| p.growth().is_none_or(|g| g > f.max_growth))
            .map(|p| match p.growth() {
                Some(g) => format!("{} {}", p.name, percent(g)),
                None => format!("{} not measured in both thirds", p.name),
            })
            .collect();
        let worst = processes
            .iter()
            .filter_map(|p| Some((p.growth()?, p.name.as_str())))
            .max_by(|a, b| a.0.total_cmp(&b.0));
        checks.push(Check {
            target: format!(
                "memory of every process grows at most {} (first to last third after warm-up)",
                percent(f.max_growth)
            ),
            met: !processes.is_empty() && grown.is_empty(),
            detail: if processes.is_empty() {
                "no process was watched".to_string()
            } else if grown.is_empty() {
                worst.map_or(String::new(), |(g, n)| {
                    format!("largest: {n} {}", percent(g))
                })
            } else {
                grown.join(", ")
            },
        });
        let unsteady: Vec<String> = processes
            .iter()
            .filter(|p| p.pids.len() != 1 || p.missing > 0)
            .map(|p| {
                format!(
                    "{}: pids {:?}, unreadable in {} samples",
                    p.name, p.pids, p.missing
                )
            })
            .collect();
        checks.push(Check {
            target: "every process ran throughout (no restart, no exit)".into(),
            met: unsteady.is_empty(),
            detail: unsteady.join("; "),
        });
        let stable = cohorts.get(f.stable_cohort);
        checks.push(Check {
            target: format!(
                "no error in the stable cohort ({})",
                stable.map_or("?", |c| c.name.as_str())
            ),
            met: stable.is_some_and(|c| c.sent > 0 && c.error_count() == 0),
            detail: stable.map_or(String::new(), |c| {
                format!("{} sent, {}", c.sent, error_kinds(c))
            }),
        });
        let others: Vec<&CohortReport> = cohorts
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != f.stable_cohort)
            .map(|(_, c)| c)
            .collect();
        checks.push(Check {
            target: "no error in the other cohorts either (a failing gray is answered by stable)"
                .into(),
            met: others.iter().all(|c| c.error_count() == 0),
            detail: others
                .iter()
                .map(|c| format!("{}: {} sent, {}", c.name, c.sent, error_kinds(c)))
                .collect::<Vec<_>>()
                .join("; "),
        });
        let bad_sent: u64 = cohorts.iter().map(|c| c.bad_sent).sum();
        let bad_ok: u64 = cohorts.iter().map(|c| c.bad_as_expected).sum();
        checks.push(Check {
            target: "every bad input answered with its 4xx, in every cohort".into(),
            met: bad_ok == bad_sent,
            detail: format!("{bad_ok} of {bad_sent}"),
        });
        let sent = samples.len() as u64;
        checks.push(Check {
            target: "every request answered (none lost, none skipped)".into(),
            met: transport_errors == 0 && f.skipped == 0 && sent + f.skipped == f.scheduled,
            detail: format!(
                "{} of {} answered, {transport_errors} transport errors, {} skipped",
                sent - transport_errors,
                f.scheduled,
                f.skipped
            ),
        });
        let disagree: Vec<String> = agreements
            .iter()
            .filter(|a| !a.agrees())
            .map(|a| format!("{}: {:?}", a.what, a.counts))
            .collect();
        checks.push(Check {
            target: "the clients', Envoy's, the filter's and the sidecars' counts agree".into(),
            met: disagree.is_empty(),
            detail: disagree.join("; "),
        });
        Verdict {
            duration,
            scheduled: f.scheduled,
            skipped: f.skipped,
            sent,
            transport_errors,
            cohorts,
            processes,
            agreements,
            retries,
            shed_s: breaker_open_s,
            checks,
        }
    }

    pub fn failed(&self) -> Vec<&Check> {
        self.checks.iter().filter(|c| !c.met).collect()
    }

    /// The summary as text.
    pub fn render(&self) -> String {
        let mib = |b: f64| b / (1024.0 * 1024.0);
        let mut t = String::new();
        let _ = writeln!(t, "grayguard soak: summary");
        let _ = writeln!(
            t,
            "duration                 {:.0} s",
            self.duration.as_secs_f64()
        );
        let _ = writeln!(
            t,
            "requests                 {} scheduled, {} sent, {} answered, {} skipped",
            self.scheduled,
            self.sent,
            self.sent - self.transport_errors,
            self.skipped
        );
        let _ = writeln!(
            t,
            "breaker open/half-open   {:.0} s of the run",
            self.shed_s
        );
        let _ = writeln!(t, "cohorts");
        for c in &self.cohorts {
            let _ = writeln!(
                t,
                "  {:<14} sent {:>6}  photos ok {:>6}  bad inputs {:>5} ({} got their 4xx)  served gray {:>6} stable {:>6}  {}",
                c.name,
                c.sent,
                c.photos_ok,
                c.bad_sent,
                c.bad_as_expected,
                c.served_gray,
                c.served_stable,
                error_kinds(c)
            );
        }
        let _ = writeln!(
            t,
            "processes (RSS MiB: first third -> last third after warm-up, growth; peak; fds first -> last)"
        );
        for p in &self.processes {
            let third = |v: Option<f64>| v.map_or("-".to_string(), |b| format!("{:.1}", mib(b)));
            let _ = writeln!(
                t,
                "  {:<14} {:>7} -> {:>7}  {:>9}  peak {:>7.1}  fds {}{}",
                p.name,
                third(p.first_third),
                third(p.last_third),
                p.growth().map_or("-".to_string(), percent),
                mib(p.peak_rss as f64),
                p.fds
                    .map_or("-".to_string(), |(a, b)| format!("{a} -> {b}")),
                if p.pids.len() > 1 {
                    format!("  (restarted: pids {:?})", p.pids)
                } else {
                    String::new()
                }
            );
        }
        if let Some(r) = self.retries {
            let _ = writeln!(
                t,
                "gray route's retries     {} sent onto stable ({} answered the client, {} hedges gray answered first), {} refused by the circuit breaker",
                r.sent,
                r.answered,
                r.sent - r.answered,
                r.overflow
            );
        }
        let _ = writeln!(t, "counts over the soak");
        for a in &self.agreements {
            let counts: Vec<String> = a
                .counts
                .iter()
                .map(|(w, c)| format!("{w} {}", c.map_or("?".to_string(), |c| format!("{c}"))))
                .collect();
            let _ = writeln!(
                t,
                "  {:<22} {}  [{}]",
                a.what,
                counts.join(", "),
                if a.agrees() { "agree" } else { "DISAGREE" }
            );
        }
        let _ = writeln!(t, "targets");
        for c in &self.checks {
            let _ = writeln!(
                t,
                "  [{}] {}{}",
                if c.met { "met" } else { "NOT MET" },
                c.target,
                if c.detail.is_empty() {
                    String::new()
                } else {
                    format!(": {}", c.detail)
                }
            );
        }
        t
    }

    /// The summary as JSON (for tools and tests).
    pub fn json(&self) -> Value {
        json!({
            "duration_s": self.duration.as_secs_f64(),
            "scheduled": self.scheduled,
            "sent": self.sent,
            "answered": self.sent - self.transport_errors,
            "skipped": self.skipped,
            "transport_errors": self.transport_errors,
            "breaker_open_s": self.shed_s,
            "retries": self.retries.map(|r| json!({
                "sent": r.sent, "answered": r.answered, "overflow": r.overflow,
            })),
            "cohorts": self.cohorts.iter().map(|c| json!({
                "name": c.name,
                "sent": c.sent,
                "photos_ok": c.photos_ok,
                "bad_sent": c.bad_sent,
                "bad_as_expected": c.bad_as_expected,
                "served_gray": c.served_gray,
                "served_stable": c.served_stable,
                "errors": c.errors,
            })).collect::<Vec<_>>(),
            "processes": self.processes.iter().map(|p| json!({
                "name": p.name,
                "pids": p.pids,
                "missing": p.missing,
                "first_third_rss_bytes": p.first_third,
                "last_third_rss_bytes": p.last_third,
                "growth": p.growth(),
                "peak_rss_bytes": p.peak_rss,
                "fds": p.fds.map(|(a, b)| [a, b]),
            })).collect::<Vec<_>>(),
            "counts": self.agreements.iter().map(|a| json!({
                "what": a.what,
                "agree": a.agrees(),
                "counts": a.counts.iter().map(|(w, c)| json!({"where": w, "count": c})).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "targets": self.checks.iter().map(|c| json!({
                "target": c.target, "met": c.met, "detail": c.detail,
            })).collect::<Vec<_>>(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::procfs::Usage;
    use crate::sample::{EnvoyCounters, Proc, SidecarCounters};
    use grayguard_client::reply::Reply;

    /// A reply from `served_by`, routed there by the filter.
    fn reply(status: u16, served_by: Route) -> Outcome {
        let decision = match served_by {
            Route::Gray => "gray; rule=crane",
            Route::Stable => "stable; no-rule",
        };
        answered(status, served_by, decision)
    }

    fn answered(status: u16, served_by: Route, decision: &str) -> Outcome {
        Outcome::Reply(Reply {
            status,
            decision: Some(Ok(grayguard_client::decision::parse(decision).unwrap())),
            served_by: Some(served_by),
            box_count: None,
            breach: None,
        })
    }

    fn sample(cohort: usize, image: usize, outcome: Outcome) -> Sample {
        Sample {
            sent: Duration::ZERO,
            done: Duration::ZERO,
            cohort,
            image,
            gateway: 0,
            outcome,
        }
    }

    fn reading(at_s: u64, rss_mib: u64, requests: [f64; 2], upstream: [f64; 2]) -> Reading {
        let envoy = EnvoyCounters {
            routed_stable: upstream[0],
            routed_gray: upstream[1],
            upstream: [
                ("v9".to_string(), upstream[0]),
                ("v10".to_string(), upstream[1]),
            ]
            .into_iter()
            .collect(),
            ..EnvoyCounters::default()
        };
        Reading {
            at: Duration::from_secs(at_s),
            procs: vec![Proc {
                name: "envoy".into(),
                pid: 7,
                usage: Some(Usage {
                    rss_bytes: rss_mib << 20,
                    fds: 30,
                }),
            }],
            envoy: Some(envoy),
            sidecars: [
                (
                    "v9".to_string(),
                    Some(SidecarCounters {
                        requests: requests[0],
                        errors: 0.0,
                    }),
                ),
                (
                    "v10".to_string(),
                    Some(SidecarCounters {
                        requests: requests[1],
                        errors: 0.0,
                    }),
                ),
            ]
            .into_iter()
            .collect(),
        }
    }

    const KINDS: [Kind; 3] = [Kind::Photo, Kind::Truncated, Kind::WrongType];

    fn frame<'a>(cohorts: &'a [String]) -> Frame<'a> {
        Frame {
            cohorts,
            stable_cohort: 1,
            kinds: &KINDS,
            gray_version: "v10",
            stable_version: "v9",
            warmup: Duration::from_secs(10),
            max_growth: 0.10,
            scheduled: 5,
            skipped: 0,
        }
    }

    #[test]
    fn a_clean_soak_meets_every_target() {
        let names = ["crane".to_string(), "dock".to_string()];
        let samples = vec![
            sample(0, 0, reply(200, Route::Gray)),
            sample(1, 0, reply(200, Route::Stable)),
            sample(1, 1, reply(400, Route::Stable)),
            sample(0, 2, reply(415, Route::Gray)),
            sample(1, 0, reply(200, Route::Stable)),
        ];
        // Memory 100 MiB in the first third after warm-up, 105 in the last.
        let readings = vec![
            reading(0, 300, [0.0, 0.0], [0.0, 0.0]),
            reading(12, 100, [1.0, 1.0], [1.0, 1.0]),
            reading(20, 103, [2.0, 1.0], [2.0, 1.0]),
            reading(29, 105, [2.0, 2.0], [2.0, 2.0]),
            reading(31, 105, [3.0, 2.0], [3.0, 2.0]),
        ];
        let v = Verdict::compute(
            &samples,
            &readings,
            4.0,
            Duration::from_secs(30),
            &frame(&names),
        );
        assert!(v.failed().is_empty(), "{}", v.render());
        let envoy = &v.processes[0];
        assert_eq!(envoy.first_third, Some(100.0 * 1048576.0));
        assert!((envoy.growth().unwrap() - 0.05).abs() < 1e-9);
        assert_eq!(envoy.peak_rss, 300 << 20);
        assert_eq!(v.cohorts[1].bad_as_expected, 1);
        assert_eq!(v.cohorts[0].served_gray, 2);
        assert!(
            v.render()
                .contains("[met] no error in the stable cohort (dock)")
        );
        assert_eq!(
            v.json()["targets"].as_array().unwrap().len(),
            v.checks.len()
        );
    }

    #[test]
    fn errors_growth_restarts_and_disagreements_are_named() {
        let names = ["crane".to_string(), "dock".to_string()];
        let samples = vec![
            sample(1, 0, reply(503, Route::Stable)),
            sample(1, 1, reply(200, Route::Stable)),
            sample(0, 0, Outcome::Transport("reset".into())),
        ];
        let mut readings = vec![
            reading(0, 100, [0.0, 0.0], [0.0, 0.0]),
            reading(12, 100, [1.0, 0.0], [1.0, 0.0]),
            reading(20, 120, [1.0, 0.0], [1.0, 0.0]),
            reading(30, 130, [5.0, 0.0], [2.0, 0.0]),
        ];
        readings[3].procs[0].pid = 8;
        let mut f = frame(&names);
        f.skipped = 2;
        let v = Verdict::compute(&samples, &readings, 0.0, Duration::from_secs(30), &f);
        let failed: Vec<&str> = v.failed().iter().map(|c| c.target.as_str()).collect();
        assert_eq!(failed.len(), 7, "{failed:?}");
        assert_eq!(
            v.cohorts[1].errors,
            [
                ("HTTP 503".to_string(), 1),
                ("truncated JPEG answered 200".to_string(), 1)
            ]
            .into_iter()
            .collect()
        );
        assert_eq!(v.cohorts[0].errors["transport"], 1);
        let text = v.render();
        assert!(text.contains("envoy +30.0 %"), "{text}");
        assert!(text.contains("restarted: pids [7, 8]"), "{text}");
        assert!(text.contains("DISAGREE"), "{text}");
    }

    #[test]
    fn a_gray_request_stable_was_asked_too_is_counted_on_both_sides() {
        let names = ["crane".to_string(), "dock".to_string()];
        // Gray answered one request, another fell back to stable, a third was hedged and
        // gray's answer won; two went to stable.
        let samples = vec![
            sample(0, 0, reply(200, Route::Gray)),
            sample(
                0,
                0,
                answered(200, Route::Stable, "gray; rule=crane; fallback"),
            ),
            sample(0, 0, reply(200, Route::Gray)),
            sample(1, 0, reply(200, Route::Stable)),
            sample(1, 0, reply(200, Route::Stable)),
        ];
        let mut last = reading(31, 100, [4.0, 3.0], [4.0, 3.0]);
        let envoy = last.envoy.as_mut().unwrap();
        (envoy.routed_stable, envoy.fallbacks) = (2.0, 1.0);
        envoy.retries = Retries {
            sent: 2.0,
            answered: 1.0,
            overflow: 0.0,
        };
        let readings = vec![
            reading(0, 100, [0.0, 0.0], [0.0, 0.0]),
            reading(12, 100, [1.0, 1.0], [1.0, 1.0]),
            reading(20, 100, [2.0, 2.0], [2.0, 2.0]),
            last,
        ];
        let v = Verdict::compute(
            &samples,
            &readings,
            0.0,
            Duration::from_secs(31),
            &frame(&names),
        );
        assert!(v.failed().is_empty(), "{}", v.render());
        let counts: Vec<Vec<Option<f64>>> = v
            .agreements
            .iter()
            .map(|a| a.counts.iter().map(|c| c.1).collect())
            .collect();
        assert_eq!(counts[0], [Some(3.0); 4], "to gray");
        assert_eq!(counts[1], [Some(4.0); 4], "to stable, the retries included");
        assert_eq!(counts[2], [Some(1.0); 3], "fallbacks");
        let text = v.render();
        assert!(
            text.contains("2 sent onto stable (1 answered the client, 1 hedges"),
            "{text}"
        );
        assert_eq!(v.json()["retries"]["sent"], 2.0);
        // A fallback the filter did not count is a disagreement.
        let mut readings = readings;
        readings[3].envoy.as_mut().unwrap().fallbacks = 0.0;
        let v = Verdict::compute(&samples, &readings, 0.0, Duration::ZERO, &frame(&names));
        assert!(!v.agreements[2].agrees());
    }
}
