//! The accepted ranges and the defaults of the configuration: every limit is named here,
//! and the configuration reference (`filter/README.md`) states the same numbers.

/// Most rules one configuration may hold.
pub const MAX_RULES: usize = 256;
/// Longest accepted window, in seconds (one day).
pub const MAX_WINDOW_S: f64 = 86_400.0;
/// Longest accepted `shed_for_s` (one week).
pub const MAX_SHED_S: f64 = 7.0 * 86_400.0;
/// Most samples a trigger may wait for.
pub const MAX_MIN_SAMPLES: i64 = 1_000_000;
/// Most consecutive failures / healthy probes a trigger may count.
pub const MAX_COUNT: i64 = 1_000;
/// Longest accepted regex pattern, in bytes.
pub const MAX_REGEX_LEN: usize = 1_024;
/// Accepted range of `sync_ms`.
pub const SYNC_MS_RANGE: (i64, i64) = (10, 10_000);

/// Default `sync_ms`: how often each worker publishes its windows and evaluates triggers.
pub const DEFAULT_SYNC_MS: u64 = 100;
/// Default `breach.box_count.min_std`: floor on the baseline standard deviation, in boxes.
pub const DEFAULT_MIN_STD: f64 = 1.0;
/// Default `breach.probe_successes`: healthy probes that close a half-open breaker.
pub const DEFAULT_PROBE_SUCCESSES: u32 = 3;
/// Default `breach.arl`: gray replies per false shed, in expectation, of a gray version
/// within its margins (the sequential detector's average run length to a false alarm).
pub const DEFAULT_ARL: f64 = 1e6;
/// Accepted range of `breach.arl`.
pub const ARL_RANGE: (f64, f64) = (100.0, 1e12);
/// Default `breach.latency.max_ratio`: gray mean latency up to this multiple of stable's.
pub const DEFAULT_MAX_RATIO: f64 = 1.25;
/// Largest `breach.latency.max_ratio`.
pub const MAX_RATIO: f64 = 100.0;
/// Default `breach.box_count.max_shift`: |gray mean − stable mean| / stable mean up to this.
pub const DEFAULT_MAX_SHIFT: f64 = 0.25;
/// Largest `breach.box_count.max_shift`.
pub const MAX_SHIFT: f64 = 10.0;
/// Default `breach.error_rate.max_excess`: gray failure share up to stable's plus this.
pub const DEFAULT_MAX_EXCESS: f64 = 0.02;
/// Default `breach.box_count.max_sigma` (window detector).
pub const DEFAULT_MAX_SIGMA: f64 = 3.0;
/// Default `window_s` of a trigger (window detector), seconds.
pub const DEFAULT_WINDOW_S: f64 = 60.0;
/// Default `min_samples` of a trigger.
pub const DEFAULT_MIN_SAMPLES: i64 = 20;
/// Default `breach.control_memory`: control replies the sequential detector's running
/// reference remembers (an exponentially weighted mean over about this many).
pub const DEFAULT_CONTROL_MEMORY: i64 = 1_000;
/// Accepted range of `breach.control_memory`.
pub const CONTROL_MEMORY_RANGE: (i64, i64) = (10, 10_000_000);
/// Default `breach.agreement.min_mean`: gray's mean agreement with stable (F1 of the boxes
/// on the same frames) below this sheds.
pub const DEFAULT_AGREEMENT_MIN_MEAN: f64 = 0.7;
/// Default `promote.alpha`: the probability of proving a gray version outside its budget.
pub const DEFAULT_PROMOTE_ALPHA: f64 = 0.05;
/// Accepted range of `promote.alpha`.
pub const PROMOTE_ALPHA_RANGE: (f64, f64) = (1e-6, 0.5);
/// Default `promote.min_gray_responses`: gray replies before any verdict.
pub const DEFAULT_MIN_GRAY_RESPONSES: i64 = 200;
/// Default `promote.cap_factor`: latencies and box counts are clipped at this multiple of
/// the control's mean for the verdict.
pub const DEFAULT_CAP_FACTOR: f64 = 3.0;
/// Accepted range of `promote.cap_factor`.
pub const CAP_FACTOR_RANGE: (f64, f64) = (1.5, 100.0);
/// Default `breach.latch.timeout_ms`.
pub const DEFAULT_LATCH_TIMEOUT_MS: i64 = 1_000;
/// Accepted range of `breach.latch.timeout_ms`.
pub const LATCH_TIMEOUT_RANGE: (i64, i64) = (50, 30_000);
/// Default `breach.latch.calls`: calls per latch (each may reach another gray pod).
pub const DEFAULT_LATCH_CALLS: i64 = 2;
/// Accepted range of `breach.latch.calls`.
pub const LATCH_CALLS_RANGE: (i64, i64) = (1, 16);
/// Shortest accepted `operator.secret`, in bytes.
pub const MIN_SECRET_BYTES: usize = 16;
/// Default `operator.link_ttl_s`: how long a one-click link stays valid.
pub const DEFAULT_LINK_TTL_S: i64 = 3_600;
/// Accepted range of `operator.link_ttl_s`.
pub const LINK_TTL_RANGE: (i64, i64) = (60, 7 * 86_400);
