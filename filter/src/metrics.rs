//! Envoy stats of the filter (admin `/stats/prometheus`). Counters are summed locally and
//! flushed on the tick, so the request path makes no host call for them; histograms are
//! recorded as values arrive; gauges are set on the tick from the shared breaker board.
//!
//! One more gauge, `grayguard_board_writes`, is not a reading for people but the change
//! mark of the shared board: every worker that writes the board adds one, and the request
//! path reads it (one host call, no copy) to re-read the board only when it moved.

use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;

use crate::breach::Trigger;

/// Counters, in the order of [`COUNTER_NAMES`].
#[derive(Debug, Clone, Copy)]
pub enum Counter {
    RoutedGray,
    RoutedStable,
    ShedRequests,
    ProbeRequests,
    BreachesFlag,
    BreachesLatency,
    BreachesBoxCount,
    BreachesErrorRate,
    BreachesConsecutiveFailures,
    MalformedSignals,
    SpoofedHeadersStripped,
    GrayFailures,
    DryRunRequests,
}

pub const COUNTER_NAMES: [&str; 13] = [
    "grayguard_routed_gray",
    "grayguard_routed_stable",
    "grayguard_shed_requests",
    "grayguard_probe_requests",
    "grayguard_breaches_flag",
    "grayguard_breaches_latency",
    "grayguard_breaches_box_count",
    "grayguard_breaches_error_rate",
    "grayguard_breaches_consecutive_failures",
    "grayguard_malformed_signals",
    "grayguard_spoofed_headers_stripped",
    "grayguard_gray_failures",
    "grayguard_dry_run_requests",
];

impl Counter {
    pub fn breach(t: Trigger) -> Counter {
        match t {
            Trigger::Flag => Counter::BreachesFlag,
            Trigger::Latency => Counter::BreachesLatency,
            Trigger::BoxCount => Counter::BreachesBoxCount,
            Trigger::ErrorRate => Counter::BreachesErrorRate,
            Trigger::ConsecutiveFailures => Counter::BreachesConsecutiveFailures,
        }
    }
}

/// Histograms.
#[derive(Debug, Clone, Copy)]
pub enum Histogram {
    GrayLatencyMs,
    GrayBoxCount,
    StableBoxCount,
}

const HISTOGRAM_NAMES: [&str; 3] = [
    "grayguard_gray_latency_ms",
    "grayguard_gray_box_count",
    "grayguard_stable_box_count",
];

/// Gauges.
#[derive(Debug, Clone, Copy)]
pub enum Gauge {
    /// 0 closed, 1 open, 2 half-open: the worst over units.
    BreakerState,
    /// Units shedding (open or half-open).
    BreakersOpen,
}

const GAUGE_NAMES: [&str; 2] = ["grayguard_breaker_state", "grayguard_breakers_open"];

/// Board writes by every worker of the process (see the module docs). A gauge, not a
/// counter, so that an admin `/reset_counters` cannot turn it back to a value a VM saw.
const BOARD_WRITES: &str = "grayguard_board_writes";

/// Metric ids of this VM plus the counter deltas not yet flushed.
#[derive(Debug)]
pub struct Metrics {
    counters: [Option<u32>; 13],
    pending: [u64; 13],
    histograms: [Option<u32>; 3],
    gauges: [Option<u32>; 2],
    last_gauges: [Option<u64>; 2],
    board_writes: Option<u32>,
}

impl Metrics {
    /// Defines every metric (a metric that cannot be defined is skipped, never fatal).
    pub fn define() -> Metrics {
        let def = |t, name: &str| hostcalls::define_metric(t, name).ok();
        Metrics {
            counters: COUNTER_NAMES.map(|n| def(MetricType::Counter, n)),
            pending: [0; 13],
            histograms: HISTOGRAM_NAMES.map(|n| def(MetricType::Histogram, n)),
            gauges: GAUGE_NAMES.map(|n| def(MetricType::Gauge, n)),
            last_gauges: [None; 2],
            board_writes: def(MetricType::Gauge, BOARD_WRITES),
        }
    }

    /// The board's change mark; `None` when the host cannot tell (then read the board).
    pub fn board_mark(&self) -> Option<u64> {
        self.board_writes
            .and_then(|id| hostcalls::get_metric(id).ok())
    }

    /// Moves the board's change mark, after a write of the board.
    pub fn board_written(&self) {
        if let Some(id) = self.board_writes {
            let _ = hostcalls::increment_metric(id, 1);
        }
    }

    pub fn count(&mut self, c: Counter) {
        if let Some(p) = self.pending.get_mut(c as usize) {
            *p += 1;
        }
    }

    pub fn record(&self, h: Histogram, value: f64) {
        if let Some(Some(id)) = self.histograms.get(h as usize) {
            let _ = hostcalls::record_metric(*id, value.max(0.0).round() as u64);
        }
    }

    /// Sets a gauge (skipping the host call when the value did not change).
    pub fn set(&mut self, g: Gauge, value: u64) {
        let i = g as usize;
        if let (Some(Some(id)), Some(last)) = (self.gauges.get(i), self.last_gauges.get_mut(i)) {
            if *last != Some(value) && hostcalls::record_metric(*id, value).is_ok() {
                *last = Some(value);
            }
        }
    }

    /// Adds the pending counter deltas to Envoy's counters.
    pub fn flush(&mut self) {
        for (id, p) in self.counters.iter().zip(self.pending.iter_mut()) {
            if *p > 0 {
                if let Some(id) = id {
                    let _ = hostcalls::increment_metric(*id, *p as i64);
                }
                *p = 0;
            }
        }
    }
}
