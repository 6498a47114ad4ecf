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
/// Default `breach.alpha`: the probability that a gray version within the margins is ever
/// shed by a statistical trigger of the sequential detector.
pub const DEFAULT_ALPHA: f64 = 0.01;
/// Accepted range of `breach.alpha`.
pub const ALPHA_RANGE: (f64, f64) = (1e-9, 0.5);
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
/// Default `breach.segment_responses`: gray responses after which the sequential detector
/// starts a fresh test beside the one running since the last close.
pub const DEFAULT_SEGMENT_RESPONSES: i64 = 1_000;
/// Accepted range of `breach.segment_responses`.
pub const SEGMENT_RANGE: (i64, i64) = (10, 1_000_000_000);
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
