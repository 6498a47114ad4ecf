//! The sidecar's own breach detector: rolling time windows of request latency, box counts and
//! server-side errors, plus a sustained-memory rule. Pure logic with the clock passed in, so
//! every transition is unit tested; the server feeds it and stamps what it reports.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// A breach reason, as written in `x-canary-breach` and in `breach_active{reason}`.
pub use grayguard_contract::Reason;

/// A reason's bit in a [`BreachSet`].
fn bit(r: Reason) -> u8 {
    match r {
        Reason::Latency => 1,
        Reason::BoxCount => 2,
        Reason::Errors => 4,
        Reason::Memory => 8,
        Reason::Stalled => 16,
    }
}

/// The set of active reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BreachSet(u8);

impl BreachSet {
    pub fn insert(&mut self, r: Reason) {
        self.0 |= bit(r);
    }

    pub fn contains(self, r: Reason) -> bool {
        self.0 & bit(r) != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = Reason> {
        Reason::ALL.into_iter().filter(move |r| self.contains(*r))
    }
}

impl std::fmt::Display for BreachSet {
    /// The breach flag value, e.g. `latency,box_count` (the contract's grammar).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut text = String::new();
        grayguard_contract::reason::render_flag(self.iter(), &mut text);
        f.write_str(&text)
    }
}

/// Expected box count per image, and how far the window mean may stray from it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BoxBaseline {
    pub mean: f64,
    pub std: f64,
    /// Allowed distance from `mean`, in units of `std`.
    pub sigma: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct WatchdogConfig {
    /// Raise `latency` when the window mean request latency exceeds this, ms.
    pub latency_budget_ms: f64,
    /// Raise `box_count` when the window mean is outside `mean ± sigma·std` (off when `None`).
    pub box_baseline: Option<BoxBaseline>,
    /// Raise `errors` when the share of server-side failures exceeds this (0..=1).
    pub max_error_rate: f64,
    /// Length of the rolling windows.
    pub window: Duration,
    /// Below this many samples in a window its rule stays quiet.
    pub min_samples: usize,
    /// Raise `memory` when usage / limit stays above this fraction ...
    pub memory_fraction: f64,
    /// ... for this long.
    pub memory_hold: Duration,
}

/// Most samples a window keeps (bounds memory at very high request rates; the oldest go first).
const MAX_SAMPLES: usize = 100_000;

/// Time-bounded samples with a running sum.
#[derive(Debug, Default)]
struct Window {
    samples: VecDeque<(Instant, f64)>,
    sum: f64,
}

impl Window {
    fn push(&mut self, now: Instant, v: f64) {
        if self.samples.len() == MAX_SAMPLES
            && let Some((_, old)) = self.samples.pop_front()
        {
            self.sum -= old;
        }
        self.samples.push_back((now, v));
        self.sum += v;
    }

    fn evict(&mut self, now: Instant, window: Duration) {
        while let Some(&(t, v)) = self.samples.front() {
            if now.saturating_duration_since(t) <= window {
                break;
            }
            self.samples.pop_front();
            self.sum -= v;
        }
        if self.samples.is_empty() {
            // Re-anchor so float drift cannot accumulate over days.
            self.sum = 0.0;
        }
    }

    fn len(&self) -> usize {
        self.samples.len()
    }

    fn mean(&self) -> Option<f64> {
        (!self.samples.is_empty()).then(|| self.sum / self.samples.len() as f64)
    }
}

#[derive(Debug)]
pub struct Watchdog {
    cfg: WatchdogConfig,
    latency_ms: Window,
    boxes: Window,
    /// 1.0 per server-side failure, 0.0 per success.
    outcomes: Window,
    memory_high_since: Option<Instant>,
}

impl Watchdog {
    pub fn new(cfg: WatchdogConfig) -> Watchdog {
        Watchdog {
            cfg,
            latency_ms: Window::default(),
            boxes: Window::default(),
            outcomes: Window::default(),
            memory_high_since: None,
        }
    }

    pub fn config(&self) -> &WatchdogConfig {
        &self.cfg
    }

    /// A successful inference: its latency (ms) and box count.
    pub fn record_success(&mut self, now: Instant, latency_ms: f64, box_count: usize) {
        self.latency_ms.push(now, latency_ms);
        self.boxes.push(now, box_count as f64);
        self.outcomes.push(now, 0.0);
    }

    /// A server-side failure (client errors are not recorded: they say nothing of the model).
    pub fn record_error(&mut self, now: Instant) {
        self.outcomes.push(now, 1.0);
    }

    /// Memory in use as a fraction of the limit (`None` when unknown: the rule resets).
    pub fn record_memory(&mut self, now: Instant, fraction: Option<f64>) {
        match fraction {
            Some(f) if f > self.cfg.memory_fraction => {
                self.memory_high_since.get_or_insert(now);
            }
            _ => self.memory_high_since = None,
        }
    }

    /// Mean request latency of the current window, ms.
    pub fn mean_latency_ms(&mut self, now: Instant) -> Option<f64> {
        self.latency_ms.evict(now, self.cfg.window);
        self.latency_ms.mean()
    }

    /// The reasons active at `now`. Each rule clears as soon as its condition does (including
    /// when old samples age out of the window and fewer than `min_samples` remain).
    pub fn evaluate(&mut self, now: Instant) -> BreachSet {
        let w = self.cfg.window;
        self.latency_ms.evict(now, w);
        self.boxes.evict(now, w);
        self.outcomes.evict(now, w);
        let min = self.cfg.min_samples.max(1);
        let mut set = BreachSet::default();
        if self.latency_ms.len() >= min
            && self
                .latency_ms
                .mean()
                .is_some_and(|m| m > self.cfg.latency_budget_ms)
        {
            set.insert(Reason::Latency);
        }
        if let Some(b) = self.cfg.box_baseline
            && self.boxes.len() >= min
            && self
                .boxes
                .mean()
                .is_some_and(|m| (m - b.mean).abs() > b.sigma * b.std)
        {
            set.insert(Reason::BoxCount);
        }
        if self.outcomes.len() >= min
            && self
                .outcomes
                .mean()
                .is_some_and(|share| share > self.cfg.max_error_rate)
        {
            set.insert(Reason::Errors);
        }
        if self
            .memory_high_since
            .is_some_and(|since| now.saturating_duration_since(since) >= self.cfg.memory_hold)
        {
            set.insert(Reason::Memory);
        }
        set
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> WatchdogConfig {
        WatchdogConfig {
            latency_budget_ms: 100.0,
            box_baseline: Some(BoxBaseline {
                mean: 2.0,
                std: 1.0,
                sigma: 3.0,
            }),
            max_error_rate: 0.2,
            window: Duration::from_secs(10),
            min_samples: 5,
            memory_fraction: 0.95,
            memory_hold: Duration::from_secs(60),
        }
    }

    fn s(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    #[test]
    fn breach_set_formats_as_the_header_value() {
        let mut b = BreachSet::default();
        assert_eq!(b.to_string(), "");
        b.insert(Reason::Memory);
        b.insert(Reason::Latency);
        b.insert(Reason::BoxCount);
        assert_eq!(b.to_string(), "latency,box_count,memory");
        assert!(!b.contains(Reason::Errors));
    }

    #[test]
    fn latency_needs_min_samples_then_raises_and_clears_on_recovery() {
        let t0 = Instant::now();
        let mut w = Watchdog::new(cfg());
        for i in 0..4 {
            w.record_success(t0 + s(i), 500.0, 2);
        }
        assert!(w.evaluate(t0 + s(4)).is_empty(), "4 samples < min_samples");
        w.record_success(t0 + s(4), 500.0, 2);
        assert!(w.evaluate(t0 + s(4)).contains(Reason::Latency));
        // Fast requests pull the mean back under the budget: (5*500 + 45*10)/50 = 59 ms.
        for _ in 0..45 {
            w.record_success(t0 + s(5), 10.0, 2);
        }
        assert!(w.evaluate(t0 + s(5)).is_empty());
    }

    #[test]
    fn flags_clear_when_samples_age_out() {
        let t0 = Instant::now();
        let mut w = Watchdog::new(cfg());
        for _ in 0..5 {
            w.record_success(t0, 500.0, 2);
        }
        assert!(
            w.evaluate(t0 + s(10)).contains(Reason::Latency),
            "window is inclusive"
        );
        assert!(w.evaluate(t0 + s(11)).is_empty(), "all samples expired");
        assert_eq!(w.mean_latency_ms(t0 + s(11)), None);
    }

    #[test]
    fn box_count_outside_mean_plus_minus_k_sigma() {
        let t0 = Instant::now();
        let mut w = Watchdog::new(cfg());
        // Mean 5 is exactly at 2 + 3*1: not outside.
        for _ in 0..5 {
            w.record_success(t0, 1.0, 5);
        }
        assert!(w.evaluate(t0).is_empty());
        for _ in 0..5 {
            w.record_success(t0, 1.0, 40);
        }
        assert_eq!(w.evaluate(t0).to_string(), "box_count");
        // Boxes vanishing is a breach too (mean below 2 - 3 = -1 cannot happen with sigma 3,
        // so use a tighter baseline).
        let mut c = cfg();
        c.box_baseline = Some(BoxBaseline {
            mean: 10.0,
            std: 1.0,
            sigma: 3.0,
        });
        let mut w = Watchdog::new(c);
        for _ in 0..5 {
            w.record_success(t0, 1.0, 0);
        }
        assert!(w.evaluate(t0).contains(Reason::BoxCount));
    }

    #[test]
    fn box_rule_is_off_without_a_baseline() {
        let t0 = Instant::now();
        let mut c = cfg();
        c.box_baseline = None;
        let mut w = Watchdog::new(c);
        for _ in 0..10 {
            w.record_success(t0, 1.0, 1000);
        }
        assert!(w.evaluate(t0).is_empty());
    }

    #[test]
    fn error_share_above_the_maximum() {
        let t0 = Instant::now();
        let mut w = Watchdog::new(cfg());
        for _ in 0..8 {
            w.record_success(t0, 1.0, 2);
        }
        w.record_error(t0);
        w.record_error(t0);
        // 2/10 = 0.2 is not above 0.2.
        assert!(w.evaluate(t0).is_empty());
        w.record_error(t0);
        assert_eq!(w.evaluate(t0).to_string(), "errors");
        // Errors alone (no latency samples) still raise it.
        let mut w = Watchdog::new(cfg());
        for _ in 0..5 {
            w.record_error(t0);
        }
        assert_eq!(w.evaluate(t0).to_string(), "errors");
    }

    #[test]
    fn memory_must_stay_high_for_the_hold_time() {
        let t0 = Instant::now();
        let mut w = Watchdog::new(cfg());
        w.record_memory(t0, Some(0.97));
        w.record_memory(t0 + s(30), Some(0.99));
        assert!(w.evaluate(t0 + s(59)).is_empty());
        assert_eq!(w.evaluate(t0 + s(60)).to_string(), "memory");
        // One sample below the threshold resets the clock.
        w.record_memory(t0 + s(61), Some(0.5));
        assert!(w.evaluate(t0 + s(61)).is_empty());
        w.record_memory(t0 + s(62), Some(0.96));
        assert!(w.evaluate(t0 + s(100)).is_empty());
        assert!(w.evaluate(t0 + s(122)).contains(Reason::Memory));
        // Unknown usage resets too.
        w.record_memory(t0 + s(123), None);
        assert!(w.evaluate(t0 + s(200)).is_empty());
    }

    #[test]
    fn windows_stay_bounded() {
        let t0 = Instant::now();
        let mut w = Watchdog::new(cfg());
        for _ in 0..(MAX_SAMPLES + 10) {
            w.record_success(t0, 1.0, 1);
        }
        assert_eq!(w.latency_ms.len(), MAX_SAMPLES);
        assert!((w.mean_latency_ms(t0).unwrap() - 1.0).abs() < 1e-9);
    }
}
