//! Synthetic gray releases for the detection simulator (`make bench-detect`) and the
//! detectors' statistical tests: streams of responses with realistic spread (lognormal or
//! Pareto latencies, binomial box counts, Bernoulli failures), stable and gray
//! interleaved at a chosen share, fed through the real decision core ([`Engine`]) on an
//! in-memory host whose clock advances with the traffic and ticks like Envoy's.

use grayguard_contract::Trigger;
use grayguard_contract::promotion::Verdict;

use crate::config;
use crate::engine::Engine;
use crate::host::{Host, MemoryHost};
use crate::metrics::Counter;
use crate::signals::{Observation, Reply};

/// The streams' generator: the filter's one (splitmix64).
pub use crate::rand::Rng;

/// How a side's latencies spread.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Latency {
    /// Lognormal with this median (ms) and log-scale sigma.
    LogNormal { median_ms: f64, sigma: f64 },
    /// Pareto with this minimum (ms) and tail index (heavier tails for smaller shapes;
    /// the variance is finite above 2).
    Pareto { min_ms: f64, shape: f64 },
}

impl Latency {
    pub fn draw(&self, r: &mut Rng) -> f64 {
        match *self {
            Latency::LogNormal { median_ms, sigma } => median_ms * (sigma * r.normal()).exp(),
            Latency::Pareto { min_ms, shape } => min_ms * r.unit().powf(-1.0 / shape),
        }
    }

    pub fn mean(&self) -> f64 {
        match *self {
            Latency::LogNormal { median_ms, sigma } => median_ms * (sigma * sigma / 2.0).exp(),
            Latency::Pareto { min_ms, shape } => min_ms * shape / (shape - 1.0),
        }
    }

    /// The same shape, every value multiplied by `k`.
    pub fn times(&self, k: f64) -> Latency {
        match *self {
            Latency::LogNormal { median_ms, sigma } => Latency::LogNormal {
                median_ms: median_ms * k,
                sigma,
            },
            Latency::Pareto { min_ms, shape } => Latency::Pareto {
                min_ms: min_ms * k,
                shape,
            },
        }
    }
}

/// How far a gray version's answers agree with stable's on the frames its sidecar has
/// stable answer too: a share of replies carries one frame's agreement, which is 1 with
/// probability `whole` (every box matched, or no box on either side) and otherwise
/// uniform in `[low, high]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Agreement {
    /// Share of gray replies that carry an agreement value (the comparison share).
    pub share: f64,
    pub whole: f64,
    pub low: f64,
    pub high: f64,
}

impl Agreement {
    pub fn draw(&self, r: &mut Rng) -> Option<f64> {
        if r.unit() >= self.share {
            return None;
        }
        Some(if r.unit() < self.whole {
            1.0
        } else {
            self.low + (self.high - self.low) * r.unit()
        })
    }
}

/// What one version answers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Side {
    pub latency: Latency,
    /// Box counts: Binomial(trials, p).
    pub box_trials: u32,
    pub box_p: f64,
    /// Failure probability (5xx without signals).
    pub fail: f64,
    /// Agreement values its replies carry (gray only; `None`: no comparison).
    pub agreement: Option<Agreement>,
    /// Added to every latency, ms (a version that is a few ms slower).
    pub latency_plus_ms: f64,
}

impl Side {
    /// Stable as the benchmark describes it: lognormal latency (median 100 ms, spread
    /// 0.3), 5 ± 2 boxes (Binomial(25, 0.2)), 1 % failures.
    pub const STABLE: Side = Side {
        latency: Latency::LogNormal {
            median_ms: 100.0,
            sigma: 0.3,
        },
        box_trials: 25,
        box_p: 0.2,
        fail: 0.01,
        agreement: None,
        latency_plus_ms: 0.0,
    };

    pub fn draw(&self, r: &mut Rng) -> Observation {
        let failed = r.unit() < self.fail;
        Observation {
            flagged: false,
            failed,
            latency_ms: (!failed).then(|| self.latency.draw(r) + self.latency_plus_ms),
            boxes: (!failed).then(|| r.binomial(self.box_trials, self.box_p)),
            agreement: self.agreement.and_then(|a| a.draw(r)),
        }
    }

    /// The same answers, with agreement values on a share of the replies.
    pub fn agreeing(self, a: Agreement) -> Side {
        Side {
            agreement: Some(a),
            ..self
        }
    }

    /// Box counts scaled by `k` in the mean (same trials).
    pub fn boxes_times(self, k: f64) -> Side {
        Side {
            box_p: (self.box_p * k).min(1.0),
            ..self
        }
    }

    pub fn latency_times(self, k: f64) -> Side {
        Side {
            latency: self.latency.times(k),
            ..self
        }
    }

    /// Every latency `ms` higher.
    pub fn latency_plus(self, ms: f64) -> Side {
        Side {
            latency_plus_ms: ms,
            ..self
        }
    }

    pub fn failing(self, p: f64) -> Side {
        Side { fail: p, ..self }
    }
}

/// One simulated release.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Release {
    pub stable: Side,
    /// Gray before the change (or all along).
    pub gray: Side,
    /// Gray after `change_after` gray responses (`None`: no change).
    pub changed: Option<(usize, Side)>,
    /// Gray responses to simulate at most.
    pub gray_responses: usize,
    /// Share of responses that are gray, 0..1.
    pub gray_share: f64,
    /// Responses per simulated second (the tick runs every `sync_ms` of simulated time).
    pub rate_per_s: f64,
    /// Envoy workers (VMs) the traffic is spread over.
    pub workers: usize,
}

/// What happened to one release.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outcome {
    /// Gray responses served from the start of the release when the breaker opened, and
    /// the trigger.
    pub shed: Option<(usize, Trigger)>,
}

impl Outcome {
    /// Gray responses from the start of a change after `after` healthy ones to the shed;
    /// `Err` when it shed before the change (a false shed).
    pub fn delay(&self, after: usize) -> Option<Result<usize, usize>> {
        self.shed.map(|(at, _)| at.checked_sub(after).ok_or(at))
    }
}

/// Plays one release through `workers` VMs of the real decision core. The configuration
/// must route `x-device-type: gray` to gray with its first rule; the simulator sends that
/// for a gray response and `x-device-type: stable` otherwise.
pub fn play(config_json: &str, release: &Release, seed: u64) -> Result<Outcome, String> {
    let shed = drive(config_json, release, seed, |_, host, gray_seen| {
        opened(host).map(|t| (gray_seen, t))
    })?;
    Ok(Outcome { shed })
}

/// What a release's promotion verdict came to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Verdicted {
    /// The verdict the first rule reached, and the gray replies it took (`None`: still
    /// pending when the release ended).
    pub verdict: Option<(Verdict, usize)>,
    /// Shed before any verdict (a new epoch would start over).
    pub shed: Option<(usize, Trigger)>,
}

/// Plays one release until the first rule's promotion verdict is reached (or the release
/// ends, or the rule is shed).
pub fn play_promotion(
    config_json: &str,
    release: &Release,
    seed: u64,
) -> Result<Verdicted, String> {
    let out = drive(config_json, release, seed, |vms, host, gray_seen| {
        if let Some(t) = opened(host) {
            return Some(Err((gray_seen, t)));
        }
        let s = vms.first_mut()?.promotions(host).into_iter().next()?;
        (s.verdict != Verdict::Pending).then_some(Ok((s.verdict, s.verdict_gray_n as usize)))
    })?;
    Ok(match out {
        Some(Ok(v)) => Verdicted {
            verdict: Some(v),
            shed: None,
        },
        Some(Err(shed)) => Verdicted {
            verdict: None,
            shed: Some(shed),
        },
        None => Verdicted {
            verdict: None,
            shed: None,
        },
    })
}

/// The release's traffic through the VMs, the tick every `sync_ms` of simulated time;
/// after each tick `done` may end it with a value.
fn drive<T>(
    config_json: &str,
    release: &Release,
    seed: u64,
    mut done: impl FnMut(&mut [Engine], &MemoryHost, usize) -> Option<T>,
) -> Result<Option<T>, String> {
    let cfg = config::parse(config_json.as_bytes()).map_err(|e| e.to_string())?;
    let host = MemoryHost::new(1_700_000_000_000_000_000);
    let mut vms: Vec<Engine> = (0..release.workers.max(1))
        .map(|i| {
            let mut e = Engine::new(cfg.clone(), config_json.as_bytes(), seed ^ i as u64);
            e.start(&host);
            e
        })
        .collect();
    let mut rng = Rng::new(seed);
    let step_ns = (1e9 / release.rate_per_s.max(1e-3)) as u64;
    let tick_ns = cfg.sync_ms * 1_000_000;
    let mut next_tick = host.now_ns() + tick_ns;
    let mut gray_seen = 0usize;
    let mut i = 0usize;
    while gray_seen < release.gray_responses {
        let gray = rng.unit() < release.gray_share;
        let vm = &mut vms[i % release.workers.max(1)];
        i += 1;
        let kind = if gray { "gray" } else { "stable" };
        let routed = vm.decide(&host, |name| (name == "x-device-type").then_some(kind));
        let side = match (gray, release.changed) {
            (false, _) => release.stable,
            (true, Some((after, changed))) if gray_seen >= after => changed,
            (true, _) => release.gray,
        };
        if routed.decision.gray && gray {
            gray_seen += 1;
        }
        let reply = Reply {
            obs: side.draw(&mut rng),
            flag_reason: None,
            fallback: false,
        };
        vm.settle(&host, &routed, &reply);
        let now = host.now_ns() + step_ns;
        host.set_now(now);
        while now >= next_tick {
            for vm in &mut vms {
                vm.tick(&host);
            }
            next_tick += tick_ns;
            if let Some(v) = done(&mut vms, &host, gray_seen) {
                return Ok(Some(v));
            }
        }
    }
    Ok(None)
}

/// The trigger of the first breaker opening, if any (read off the breach counters).
fn opened(host: &MemoryHost) -> Option<Trigger> {
    Trigger::ALL
        .into_iter()
        .find(|t| host.counter(Counter::Breaches(*t)) > 0)
}

/// Median and 90th percentile of a sample (nearest rank), if any.
pub fn median_p90(mut v: Vec<usize>) -> Option<(usize, usize)> {
    if v.is_empty() {
        return None;
    }
    v.sort_unstable();
    let at = |q: f64| v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
    Some((at(0.5), at(0.9)))
}

/// The statistical properties of the sequential detector, checked through the real core:
/// validity (no more false sheds per gray reply than `arl` allows, at the very edge of
/// each margin and with heavy tails), power (the regressions the benchmark describes are
/// shed as fast as it says) and no dilution (a regression after a long healthy stretch is
/// met as fast as one from the start).
#[cfg(test)]
mod tests {
    use super::*;

    fn config(arl: f64, triggers: &str, min_samples: u32) -> String {
        let t = triggers
            .replace("MIN", &min_samples.to_string())
            .replace('\n', " ");
        format!(
            r#"{{"stable":"v9","gray":"v10",
              "rules":[{{"name":"gray","headers":{{"x-device-type":{{"exact":"gray"}}}}}}],
              "breach":{{"arl":{arl},{t}}}}}"#
        )
    }

    const ALL: &str = r#""latency":{"header":"l","min_samples":MIN},
        "box_count":{"header":"b","min_samples":MIN},
        "error_rate":{"min_samples":MIN}"#;

    fn release(gray: Side, gray_responses: usize, share: f64) -> Release {
        Release {
            stable: Side::STABLE,
            gray,
            changed: None,
            gray_responses,
            gray_share: share,
            rate_per_s: 50.0,
            workers: 2,
        }
    }

    /// Over `n` releases: the sheds, the gray replies served in all (to the shed, or to
    /// the end), and the delays of the sheds.
    fn sheds(cfg: &str, r: &Release, n: usize, seed: u64) -> (usize, usize, Vec<usize>) {
        let (mut replies, mut delays) = (0, Vec::new());
        for i in 0..n {
            let mut r = *r;
            r.workers = 1 + i % 3;
            let o = play(cfg, &r, seed * 10_007 + i as u64).unwrap();
            match o.shed {
                Some((at, _)) => {
                    replies += at;
                    delays.push(at);
                }
                None => replies += r.gray_responses,
            }
        }
        (delays.len(), replies, delays)
    }

    /// Upper limit (3 σ) for the count of events of a Poisson process with mean `mean`.
    fn limit(mean: f64) -> f64 {
        mean + 3.0 * mean.sqrt() + 1.0
    }

    #[test]
    fn healthy_versions_are_not_shed_even_with_heavy_tails_and_small_counts() {
        let cfg = config(1e6, ALL, 10);
        let heavy = Side {
            latency: Latency::Pareto {
                min_ms: 60.0,
                shape: 2.5,
            },
            ..Side::STABLE
        };
        let small = config(1e6, ALL, 5);
        let cases = [
            (&cfg, release(Side::STABLE, 2_000, 0.25)),
            (&cfg, release(heavy, 2_000, 0.25)),
            (&small, release(Side::STABLE, 300, 0.05)),
            (&cfg, release(Side::STABLE.latency_times(1.1), 2_000, 0.5)),
            (&cfg, release(Side::STABLE.boxes_times(0.9), 2_000, 0.25)),
        ];
        for (i, (cfg, r)) in cases.iter().enumerate() {
            let (shed, replies, _) = sheds(cfg, r, 100, i as u64);
            assert!(
                shed as f64 <= limit(replies as f64 / 1e6),
                "case {i}: {shed} sheds in {replies} gray replies"
            );
        }
    }

    /// At the very edge of each margin (the worst case a version within it can be) false
    /// sheds stay below one per `arl` gray replies. A small `arl` makes the check sharp
    /// with few replies.
    #[test]
    fn at_the_margins_false_sheds_stay_below_one_per_arl() {
        let arl = 200.0;
        let heavy = Latency::Pareto {
            min_ms: 60.0,
            shape: 2.5,
        };
        let cases = [
            (
                r#""latency":{"header":"l","max_ratio":1.25,"min_samples":MIN}"#,
                Side::STABLE.latency_times(1.25),
                Side::STABLE,
            ),
            (
                r#""latency":{"header":"l","max_ratio":1.25,"min_samples":MIN}"#,
                Side {
                    latency: heavy.times(1.25),
                    ..Side::STABLE
                },
                Side {
                    latency: heavy,
                    ..Side::STABLE
                },
            ),
            (
                r#""box_count":{"header":"b","max_shift":0.25,"min_samples":MIN}"#,
                Side::STABLE.boxes_times(1.25),
                Side::STABLE,
            ),
            (
                r#""box_count":{"header":"b","max_shift":0.25,"min_samples":MIN}"#,
                Side::STABLE.boxes_times(0.75),
                Side::STABLE,
            ),
            (
                r#""error_rate":{"max_excess":0.02,"min_samples":MIN}"#,
                Side::STABLE.failing(0.03),
                Side::STABLE,
            ),
        ];
        for (i, (trigger, gray, stable)) in cases.into_iter().enumerate() {
            let cfg = config(arl, trigger, 10);
            let mut r = release(gray, 1_000, 0.25);
            r.stable = stable;
            let (shed, replies, _) = sheds(&cfg, &r, 60, 100 + i as u64);
            assert!(
                shed as f64 <= limit(replies as f64 / arl),
                "case {i}: {shed} sheds in {replies} gray replies, arl {arl}"
            );
        }
    }

    /// Gray's agreement with stable: a broken version (classes swapped: every frame with a
    /// box disagrees) is shed within tens of compared frames, a healthy one never.
    #[test]
    fn disagreement_with_stable_is_shed_and_agreement_is_not() {
        let cfg = config(
            1e6,
            r#""latency":{"header":"l","min_samples":MIN},
               "agreement":{"min_mean":0.7,"min_samples":MIN}"#,
            10,
        );
        let compared = |whole: f64, low: f64, high: f64| {
            Side::STABLE.agreeing(Agreement {
                share: 0.2,
                whole,
                low,
                high,
            })
        };
        let healthy = release(compared(0.7, 0.5, 1.0), 5_000, 0.25);
        let (shed, replies, _) = sheds(&cfg, &healthy, 20, 400);
        assert!(
            shed as f64 <= limit(replies as f64 / 1e6),
            "{shed} in {replies}"
        );
        let swapped = release(compared(0.3, 0.0, 0.0), 5_000, 0.25);
        let (shed, _, at) = sheds(&cfg, &swapped, 20, 401);
        assert_eq!(shed, 20);
        let (median, _) = median_p90(at).unwrap();
        // About one gray reply in five carries a comparison.
        assert!(median <= 5 * 60, "median {median} gray replies");
    }

    /// The regressions of the benchmark, from the first gray reply and after an unaligned
    /// healthy stretch: each is shed within the median the benchmark promises, and as fast
    /// after the stretch as from the start.
    #[test]
    fn the_regressions_of_the_benchmark_are_shed_at_any_onset() {
        let cfg = config(1e6, ALL, 10);
        let flood = Side {
            box_trials: 100,
            ..Side::STABLE
        };
        // (gray after the change, most gray replies the median may take)
        let cases = [
            (Side::STABLE.boxes_times(0.6), 250),
            (Side::STABLE.latency_times(1.6), 100),
            (Side::STABLE.failing(0.08), 800),
            (flood, 20),
        ];
        for (i, (gray, median_max)) in cases.into_iter().enumerate() {
            for onset in [0, 2_345] {
                let mut r = release(Side::STABLE, onset + 3_000, 0.25);
                r.changed = Some((onset, gray));
                let (shed, _, at) = sheds(&cfg, &r, 30, 200 + i as u64);
                assert_eq!(shed, 30, "case {i}, onset {onset}: {at:?}");
                let delays = at.iter().map(|a| a.saturating_sub(onset)).collect();
                assert!(
                    at.iter().all(|a| *a >= onset),
                    "case {i}: shed before the change"
                );
                let (median, _) = median_p90(delays).unwrap();
                assert!(
                    median <= median_max,
                    "case {i}, onset {onset}: median {median} > {median_max}"
                );
            }
        }
    }
}
