//! The validated configuration: what every other module reads. Only `super::validate`
//! builds one.

use std::fmt;

use serde::Deserialize;

use crate::schedule::Window;

/// Buckets a share is drawn over: 10,000, so percent has two decimals (basis points).
pub const BUCKETS: u32 = 10_000;

/// A validated plugin configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Request header the route is written to (lower case).
    pub route_header: String,
    /// Route value (subset / cluster name) of the stable version.
    pub stable: String,
    /// Route value of the gray version.
    pub gray: String,
    /// The zone `hours` are written in, minutes east of UTC.
    pub utc_offset_min: i32,
    /// Whether a client's `x-time-of-day` may stand in for the proxy clock.
    pub trust_time_header: bool,
    /// Rules, tried in order; the first match wins.
    pub rules: Vec<Rule>,
    pub breach: Breach,
    /// How often each worker publishes its windows and evaluates the triggers, in ms.
    pub sync_ms: u64,
    /// Whether `x-time-of-day: HH` is stamped on every upstream request (for routes that
    /// match on it; each header write costs the request path a host call).
    pub time_header_upstream: bool,
    /// The operator listener, where a person confirms or dismisses (confirm mode).
    pub operator: Option<Operator>,
    /// The top-level promotion hypothesis (each rule's starts from it).
    pub promote: Option<Promote>,
}

impl fmt::Debug for Operator {
    /// The secret never reaches a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Operator")
            .field("port", &self.port)
            .field("secret", &"<redacted>")
            .field("secret_env", &self.secret_env)
            .field("link_ttl_s", &self.link_ttl_s)
            .field("identity_header", &self.identity_header)
            .finish()
    }
}

/// What a statistical trigger does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Shed the rule at once (the default).
    Shed,
    /// Raise an alert and shed only when a person confirms on the operator listener.
    Confirm,
}

/// The operator listener of confirm mode.
#[derive(Clone)]
pub struct Operator {
    /// The local port of the listener that serves operator requests (`/grayguard/...`);
    /// on any other port they are refused.
    pub port: u16,
    /// HMAC-SHA256 key of the one-click links (after [`Config::resolve_secret`]).
    pub secret: Vec<u8>,
    /// The VM environment variable the secret is read from, when not inline.
    pub secret_env: Option<String>,
    /// How long a link is valid, seconds.
    pub link_ttl_s: u64,
    /// Request header carrying the authenticated person (set by an authenticating proxy in
    /// front of the operator listener), recorded as `confirmed_by`.
    pub identity_header: Option<String>,
}

/// One routing rule: which requests are offered to gray.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    /// `(lower-case header name, matcher)`; all must match.
    pub headers: Vec<(String, Matcher)>,
    /// Local time window; `None` is all day.
    pub hours: Option<Window>,
    /// Share of matching requests sent to gray, in basis points (0..=10_000).
    pub percent_bp: u32,
    /// Header whose value keeps a device on the same side (lower case).
    pub sticky_header: Option<String>,
    /// What a statistical trigger does for this rule (default: `breach.action`).
    pub action: Action,
    /// The rule's promotion hypothesis: the top-level `promote` with the rule's own keys
    /// over it (`None`: no verdict for this rule).
    pub promote: Option<Promote>,
}

/// How one request header is matched.
#[derive(Debug, Clone)]
pub enum Matcher {
    Exact(String),
    Prefix(String),
    /// Matches the whole value (anchored), like Envoy's `safe_regex`.
    Regex(regex_lite::Regex),
}

impl Matcher {
    pub fn matches(&self, value: &str) -> bool {
        match self {
            Matcher::Exact(e) => value == e,
            Matcher::Prefix(p) => value.starts_with(p.as_str()),
            Matcher::Regex(r) => r.is_match(value),
        }
    }
}

/// How statistical triggers decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DetectorKind {
    /// Anytime-valid sequential tests of gray against the stable control (the default).
    Sequential,
    /// Fixed thresholds on sliding windows.
    Window,
}

/// Which stable responses the sequential detector compares a unit's gray responses with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Control {
    /// Every stable response through this proxy over the same period.
    All,
    /// Only the stable responses of the unit's own matched requests (those outside the
    /// rule's `percent`): a randomised control, the same cohort at the same time.
    Cohort,
}

/// What a breach sheds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Only the rule (cohort) whose gray traffic breached.
    Rule,
    /// Every rule.
    All,
}

/// Breach triggers and the breaker that acts on them.
#[derive(Debug, Clone)]
pub struct Breach {
    /// Response header carrying the sidecar's in-band breach flag (lower case).
    pub flag_header: String,
    pub latency: Option<Latency>,
    pub box_count: Option<BoxCount>,
    pub error_rate: Option<ErrorRate>,
    /// Gray failures in a row that open the breaker.
    pub consecutive_failures: Option<u32>,
    /// How long a breach sheds before probing, in ms.
    pub shed_for_ms: u64,
    /// Share of shed traffic sent to gray as probes while half-open, in basis points.
    pub probe_bp: u32,
    /// Healthy probes in a row that close a half-open breaker.
    pub probe_successes: u32,
    pub scope: Scope,
    pub dry_run: bool,
    pub detector: DetectorKind,
    /// What a statistical trigger does, unless a rule says otherwise.
    pub action: Action,
    /// Where to latch the gray workload when this gateway sheds (mesh-wide convergence).
    pub latch: Option<Latch>,
    /// Sequential detector: gray replies per false shed, in expectation, of a version within
    /// its margins.
    pub arl: f64,
    pub control: Control,
    /// Sequential detector: control replies the running reference remembers.
    pub control_memory: f64,
    /// Sequential detector: gray's agreement with stable on the same frames.
    pub agreement: Option<Agreement>,
}

/// Gray's mean agreement with stable (the gray sidecar's paired comparison).
#[derive(Debug, Clone)]
pub struct Agreement {
    /// Response header carrying one comparison's agreement (lower case).
    pub header: String,
    /// Gray's mean agreement below this sheds.
    pub min_mean: f64,
    pub min_samples: u32,
}

/// A release owner's hypothesis for the promotion verdict: the budgets gray must be proven
/// within (each optional; at least one is set), at what confidence, after how many replies.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Promote {
    /// Gray mean latency at most this many ms above the control's.
    pub latency_max_increase_ms: Option<f64>,
    /// Gray mean latency at most this multiple of the control's.
    pub latency_max_ratio: Option<f64>,
    /// Gray mean box count within this relative shift of the control's, both ways.
    pub box_count_max_shift: Option<f64>,
    /// Gray failure share at most the control's plus this.
    pub error_max_excess: Option<f64>,
    /// Gray mean agreement with stable at least this.
    pub agreement_min: Option<f64>,
    /// Probability of proving a version outside its budget (and of refuting one inside).
    pub alpha: f64,
    /// Gray replies before any verdict.
    pub min_gray_responses: u32,
    /// Latencies and box counts are clipped at this multiple of the control's mean.
    pub cap_factor: f64,
}

/// The latch call: an HTTP call from the gateway to the gray workload's control listener.
#[derive(Clone)]
pub struct Latch {
    /// The Envoy cluster of the gray workload's control port.
    pub cluster: String,
    /// `:authority` of the call.
    pub authority: String,
    /// How long to wait for an answer, ms.
    pub timeout_ms: u64,
    /// Calls per latch or clear (each may land on another gray pod).
    pub calls: u32,
    /// The VM environment variable holding the shared token (sent as a bearer token).
    pub token_env: Option<String>,
    /// The token (after [`Config::resolve_secret`]).
    pub token: Option<String>,
}

impl fmt::Debug for Latch {
    /// The token never reaches a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Latch")
            .field("cluster", &self.cluster)
            .field("authority", &self.authority)
            .field("timeout_ms", &self.timeout_ms)
            .field("calls", &self.calls)
            .field("token_env", &self.token_env)
            .finish()
    }
}

/// Gray latency.
#[derive(Debug, Clone)]
pub struct Latency {
    pub header: String,
    /// Ceiling on the gray mean, ms (window detector: the threshold; sequential: an
    /// absolute limit beside the ratio). `None`: no ceiling (sequential only).
    pub max_mean_ms: Option<f64>,
    /// Sequential: acceptable gray mean as a multiple of the control's.
    pub max_ratio: f64,
    pub window_ms: u64,
    pub min_samples: u32,
}

/// Gray mean box count against the stable baseline.
#[derive(Debug, Clone)]
pub struct BoxCount {
    pub header: String,
    /// Window detector: allowed distance of the gray mean from the baseline mean, in
    /// baseline std units.
    pub max_sigma: f64,
    /// Sequential: acceptable |gray mean − control mean| / control mean, both directions.
    pub max_shift: f64,
    pub window_ms: u64,
    pub min_samples: u32,
    /// Fixed `(mean, std)`; `None` learns it from stable responses.
    pub baseline: Option<(f64, f64)>,
    /// Floor on the baseline std, in boxes, so a perfectly steady stable model does not
    /// turn every wobble into a breach.
    pub min_std: f64,
}

/// Share of failed gray responses.
#[derive(Debug, Clone)]
pub struct ErrorRate {
    /// Ceiling, 0..1 (window detector: the threshold, which the rate must exceed;
    /// sequential: an absolute limit beside the excess). `None`: no ceiling (sequential only).
    pub max: Option<f64>,
    /// Sequential: acceptable gray failure share above the control's, 0..1.
    pub max_excess: f64,
    pub window_ms: u64,
    pub min_samples: u32,
}

impl Config {
    /// Number of breakers: one per rule (`scope: rule`) or a single one (`scope: all`).
    pub fn units(&self) -> usize {
        match self.breach.scope {
            Scope::Rule => self.rules.len(),
            Scope::All => usize::from(!self.rules.is_empty()),
        }
    }

    /// The promotion hypothesis of a unit: its rule's (`scope: rule`) or the top-level one
    /// (`scope: all`).
    pub fn promote_of(&self, unit: usize) -> Option<&Promote> {
        match self.breach.scope {
            Scope::Rule => self.rules.get(unit).and_then(|r| r.promote.as_ref()),
            Scope::All => self.promote.as_ref(),
        }
    }

    /// The breaker a rule's gray traffic belongs to.
    pub fn unit_of(&self, rule: usize) -> usize {
        match self.breach.scope {
            Scope::Rule => rule,
            Scope::All => 0,
        }
    }

    /// Longest window any trigger looks at, in ms (0 when no windowed trigger is on).
    pub fn max_window_ms(&self) -> u64 {
        self.windows_ms().max().unwrap_or(0)
    }

    /// Shortest window any trigger looks at, in ms (0 when none).
    pub fn min_window_ms(&self) -> u64 {
        self.windows_ms().min().unwrap_or(0)
    }

    /// The window of each statistical trigger that is on, ms.
    fn windows_ms(&self) -> impl Iterator<Item = u64> {
        let b = &self.breach;
        [
            b.latency.as_ref().map(|t| t.window_ms),
            b.box_count.as_ref().map(|t| t.window_ms),
            b.error_rate.as_ref().map(|t| t.window_ms),
        ]
        .into_iter()
        .flatten()
    }
}
