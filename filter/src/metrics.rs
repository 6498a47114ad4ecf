//! Envoy stats of the filter (admin `/stats/prometheus`). Counters are summed locally and
//! flushed on the tick, so the request path makes no host call for them; histograms are
//! recorded as values arrive; gauges are set on the tick from the shared breaker board.
//!
//! One more gauge, `grayguard_board_writes`, is not a reading for people but the change
//! mark of the shared board: every worker that writes the board adds one, and the request
//! path reads it (one host call, no copy) to re-read the board only when it moved.

use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;

use grayguard_contract::metrics::filter as names;

use crate::breach::Trigger;

/// Counters, in the order of [`counter_names`].
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

/// The counters' names; `grayguard_breaches_*` are the contract's prefix and trigger name.
pub fn counter_names() -> [String; 13] {
    let breaches = |t| names::breaches(t);
    [
        names::ROUTED_GRAY.into(),
        names::ROUTED_STABLE.into(),
        names::SHED_REQUESTS.into(),
        names::PROBE_REQUESTS.into(),
        breaches(Trigger::Flag),
        breaches(Trigger::Latency),
        breaches(Trigger::BoxCount),
        breaches(Trigger::ErrorRate),
        breaches(Trigger::ConsecutiveFailures),
        names::MALFORMED_SIGNALS.into(),
        names::SPOOFED_HEADERS_STRIPPED.into(),
        names::GRAY_FAILURES.into(),
        names::DRY_RUN_REQUESTS.into(),
    ]
}

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
    names::GRAY_LATENCY_MS,
    names::GRAY_BOX_COUNT,
    names::STABLE_BOX_COUNT,
];

/// Gauges.
#[derive(Debug, Clone, Copy)]
pub enum Gauge {
    /// 0 closed, 1 open, 2 half-open: the worst over units.
    BreakerState,
    /// Units shedding (open or half-open).
    BreakersOpen,
}

const GAUGE_NAMES: [&str; 2] = [names::BREAKER_STATE, names::BREAKERS_OPEN];

/// Board writes by every worker of the process (see the module docs). A gauge, not a
/// counter, so that an admin `/reset_counters` cannot turn it back to a value a VM saw.
const BOARD_WRITES: &str = names::BOARD_WRITES;

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
            counters: counter_names().map(|n| def(MetricType::Counter, &n)),
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
