//! Synthetic gray releases for the detection simulator (`make bench-detect`) and the
//! detectors' statistical tests: streams of responses with realistic spread (lognormal or
//! Pareto latencies, binomial box counts, Bernoulli failures), stable and gray
//! interleaved at a chosen share, fed through the real decision core ([`Engine`]) on an
//! in-memory host whose clock advances with the traffic and ticks like Envoy's.

use grayguard_contract::Trigger;

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

/// What one version answers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Side {
    pub latency: Latency,
    /// Box counts: Binomial(trials, p).
    pub box_trials: u32,
    pub box_p: f64,
    /// Failure probability (5xx without signals).
    pub fail: f64,
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
    };

    pub fn draw(&self, r: &mut Rng) -> Observation {
        let failed = r.unit() < self.fail;
        Observation {
            flagged: false,
            failed,
            latency_ms: (!failed).then(|| self.latency.draw(r)),
            boxes: (!failed).then(|| r.binomial(self.box_trials, self.box_p)),
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
        };
        vm.settle(&host, &routed, &reply);
        let now = host.now_ns() + step_ns;
        host.set_now(now);
        while now >= next_tick {
            for vm in &mut vms {
                vm.tick(&host);
            }
            next_tick += tick_ns;
            if let Some(t) = opened(&host) {
                return Ok(Outcome {
                    shed: Some((gray_seen, t)),
                });
            }
        }
    }
    Ok(Outcome { shed: None })
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
/// validity (no more false sheds than alpha allows, heavy tails and small counts included),
/// power (the regressions the benchmark describes are shed) and the margins.
#[cfg(test)]
mod tests {
    use super::*;

    fn config(alpha: f64, triggers: &str, min_samples: u32) -> String {
        let t = triggers
            .replace("MIN", &min_samples.to_string())
            .replace('\n', " ");
        format!(
            r#"{{"stable":"v9","gray":"v10",
              "rules":[{{"name":"gray","headers":{{"x-device-type":{{"exact":"gray"}}}}}}],
              "breach":{{"alpha":{alpha},{t}}}}}"#
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

    /// Share of `n` releases shed, and the delays.
    fn shed_share(cfg: &str, r: &Release, n: usize, seed: u64) -> (f64, Vec<usize>) {
        let mut delays = Vec::new();
        for i in 0..n {
            let mut r = *r;
            r.workers = 1 + i % 3;
            let o = play(cfg, &r, seed * 10_007 + i as u64).unwrap();
            if let Some((at, _)) = o.shed {
                delays.push(at);
            }
        }
        (delays.len() as f64 / n as f64, delays)
    }

    /// Upper limit for an observed share when the true one is at most `p` (3 σ).
    fn limit(p: f64, n: usize) -> f64 {
        p + 3.0 * (p * (1.0 - p) / n as f64).sqrt() + 1.0 / n as f64
    }

    #[test]
    fn healthy_versions_are_not_shed_even_with_heavy_tails_and_small_counts() {
        let cfg = config(0.01, ALL, 10);
        let heavy = Side {
            latency: Latency::Pareto {
                min_ms: 60.0,
                shape: 2.5,
            },
            ..Side::STABLE
        };
        let small = config(0.01, ALL, 5);
        let cases = [
            (&cfg, release(Side::STABLE, 2_000, 0.25)),
            (&cfg, release(heavy, 2_000, 0.25)),
            (&small, release(Side::STABLE, 300, 0.05)),
            (&cfg, release(Side::STABLE.latency_times(1.1), 2_000, 0.5)),
            (&cfg, release(Side::STABLE.boxes_times(0.9), 2_000, 0.25)),
        ];
        for (i, (cfg, r)) in cases.iter().enumerate() {
            let (share, _) = shed_share(cfg, r, 150, i as u64);
            assert!(share <= limit(0.01, 150), "case {i}: shed {share}");
        }
    }

    /// At the edge of each margin the false-shed probability is at most alpha. A large
    /// alpha with one hypothesis per run makes the check sharp with few releases.
    #[test]
    fn at_the_margins_sheds_stay_within_alpha() {
        let alpha = 0.3;
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
            let cfg = config(alpha, trigger, 10);
            let mut r = release(gray, 1_500, 0.25);
            r.stable = stable;
            let n = 200;
            let (share, _) = shed_share(&cfg, &r, n, 100 + i as u64);
            assert!(share <= limit(alpha, n), "case {i}: shed {share} > {alpha}");
        }
    }

    #[test]
    fn the_regressions_of_the_benchmark_are_shed() {
        let cfg = config(0.01, ALL, 10);
        let flood = Side {
            box_trials: 100,
            ..Side::STABLE
        };
        // (gray, most gray responses the median may take)
        let cases = [
            (Side::STABLE.boxes_times(0.6), 150),
            (Side::STABLE.latency_times(1.6), 100),
            (Side::STABLE.failing(0.08), 600),
            (flood, 20),
        ];
        for (i, (gray, median_max)) in cases.into_iter().enumerate() {
            let (share, delays) = shed_share(&cfg, &release(gray, 3_000, 0.25), 40, 200 + i as u64);
            assert!(share >= 0.95, "case {i}: shed {share}");
            let (median, _) = median_p90(delays).unwrap();
            assert!(
                median <= median_max,
                "case {i}: median {median} > {median_max}"
            );
        }
    }

    #[test]
    fn a_regression_after_a_long_healthy_stretch_is_not_drowned() {
        let cfg = config(0.01, ALL, 10);
        let flood = Side {
            box_trials: 100,
            ..Side::STABLE
        };
        let mut r = release(Side::STABLE, 5_000, 0.25);
        r.changed = Some((4_000, flood));
        for seed in 0..10 {
            let o = play(&cfg, &r, 300 + seed).unwrap();
            let delay = o.delay(4_000);
            assert!(
                matches!(delay, Some(Ok(d)) if d <= 40),
                "seed {seed}: {o:?}"
            );
        }
    }
}
