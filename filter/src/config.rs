//! The plugin configuration: the JSON contract (serde structs that reject unknown fields)
//! and its validation into a typed [`Config`]. Every rejection is a [`ConfigError`] naming
//! the field path (`rules[0].hours.from`) and the reason.

use std::collections::BTreeMap;
use std::fmt;

use grayguard_contract::headers;
use serde::Deserialize;

use crate::rules;
use crate::schedule::{self, Window};

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

/// A rejected configuration: which field, and why.
#[derive(Debug, Clone, PartialEq)]
pub enum ConfigError {
    /// The text is not JSON, a field has the wrong type, is unknown, or is missing.
    Json { path: String, message: String },
    /// A field is well-formed JSON but its value is not acceptable.
    Invalid { field: String, reason: String },
}

impl ConfigError {
    /// The field path the error is about (`.` for the whole document).
    pub fn field(&self) -> &str {
        match self {
            ConfigError::Json { path, .. } => path,
            ConfigError::Invalid { field, .. } => field,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Json { path, message } => {
                write!(f, "invalid grayguard config: field `{path}`: {message}")
            }
            ConfigError::Invalid { field, reason } => {
                write!(f, "invalid grayguard config: field `{field}`: {reason}")
            }
        }
    }
}

impl std::error::Error for ConfigError {}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

// ------------------------------------------------------------------ the JSON contract

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    route_header: Option<String>,
    stable: String,
    gray: String,
    utc_offset: Option<String>,
    trust_time_header: Option<bool>,
    rules: Vec<RawRule>,
    breach: Option<RawBreach>,
    sync_ms: Option<i64>,
    time_header_upstream: Option<bool>,
    operator: Option<RawOperator>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLatch {
    cluster: String,
    authority: Option<String>,
    timeout_ms: Option<i64>,
    calls: Option<i64>,
    token_env: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOperator {
    port: i64,
    secret: Option<String>,
    secret_env: Option<String>,
    link_ttl_s: Option<i64>,
    identity_header: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: String,
    #[serde(default)]
    headers: BTreeMap<String, RawMatch>,
    hours: Option<RawHours>,
    percent: Option<f64>,
    sticky_header: Option<String>,
    action: Option<Action>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMatch {
    exact: Option<String>,
    prefix: Option<String>,
    regex: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHours {
    from: String,
    to: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBreach {
    flag_header: Option<String>,
    latency: Option<RawLatency>,
    box_count: Option<RawBoxCount>,
    error_rate: Option<RawErrorRate>,
    consecutive_failures: Option<i64>,
    shed_for_s: Option<f64>,
    probe_percent: Option<f64>,
    probe_successes: Option<i64>,
    scope: Option<Scope>,
    dry_run: Option<bool>,
    detector: Option<DetectorKind>,
    action: Option<Action>,
    latch: Option<RawLatch>,
    alpha: Option<f64>,
    control: Option<Control>,
    segment_responses: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLatency {
    header: String,
    max_mean_ms: Option<f64>,
    max_ratio: Option<f64>,
    window_s: Option<f64>,
    min_samples: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBoxCount {
    header: String,
    max_sigma: Option<f64>,
    max_shift: Option<f64>,
    window_s: Option<f64>,
    min_samples: Option<i64>,
    baseline: Option<RawBaseline>,
    min_std: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBaseline {
    mean: f64,
    std: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawErrorRate {
    max: Option<f64>,
    max_excess: Option<f64>,
    window_s: Option<f64>,
    min_samples: Option<i64>,
}

// ------------------------------------------------------------------ the typed config

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
    /// Sequential detector: probability of ever shedding a gray version within the margins.
    pub alpha: f64,
    pub control: Control,
    /// Sequential detector: gray responses per restart segment.
    pub segment_responses: u32,
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

    /// The breaker a rule's gray traffic belongs to.
    pub fn unit_of(&self, rule: usize) -> usize {
        match self.breach.scope {
            Scope::Rule => rule,
            Scope::All => 0,
        }
    }

    /// Longest window any trigger looks at, in ms (0 when no windowed trigger is on).
    pub fn max_window_ms(&self) -> u64 {
        let b = &self.breach;
        [
            b.latency.as_ref().map(|t| t.window_ms),
            b.box_count.as_ref().map(|t| t.window_ms),
            b.error_rate.as_ref().map(|t| t.window_ms),
        ]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(0)
    }

    /// Shortest window any trigger looks at, in ms (0 when none).
    pub fn min_window_ms(&self) -> u64 {
        let b = &self.breach;
        [
            b.latency.as_ref().map(|t| t.window_ms),
            b.box_count.as_ref().map(|t| t.window_ms),
            b.error_rate.as_ref().map(|t| t.window_ms),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(0)
    }
}

// ------------------------------------------------------------------ parsing + validation

/// Parses and validates a plugin configuration.
pub fn parse(json: &[u8]) -> Result<Config, ConfigError> {
    let de = &mut serde_json::Deserializer::from_slice(json);
    let raw: RawConfig = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        ConfigError::Json {
            path: if path.is_empty() { ".".into() } else { path },
            message: strip_position(&inner),
        }
    })?;
    validate(raw)
}

/// serde_json appends "at line L column C", which is noise for a one-line JSON string.
fn strip_position(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(i) if e.line() > 0 => {
            format!("{} (line {}, column {})", &text[..i], e.line(), e.column())
        }
        _ => text,
    }
}

fn validate(raw: RawConfig) -> Result<Config, ConfigError> {
    let route_header = header_name(
        "route_header",
        raw.route_header.as_deref().unwrap_or(headers::ROUTE),
    )?;
    let stable = route_value("stable", &raw.stable)?;
    let gray = route_value("gray", &raw.gray)?;
    if stable == gray {
        return Err(invalid("gray", "must differ from `stable`"));
    }
    let utc_offset_min = match raw.utc_offset.as_deref() {
        None => 0,
        Some(text) => schedule::parse_offset(text).ok_or_else(|| {
            invalid(
                "utc_offset",
                format!("expected +HH:MM or -HH:MM within ±14:00, got {text:?}"),
            )
        })?,
    };
    if raw.rules.len() > MAX_RULES {
        return Err(invalid(
            "rules",
            format!("at most {MAX_RULES} rules, got {}", raw.rules.len()),
        ));
    }
    // The breach settings first: a rule's action defaults to `breach.action`.
    let breach = breach(raw.breach)?;
    let mut rules: Vec<Rule> = Vec::with_capacity(raw.rules.len());
    for (i, r) in raw.rules.into_iter().enumerate() {
        let rule = rule(i, r, breach.action)?;
        if rules.iter().any(|o| o.name == rule.name) {
            return Err(invalid(
                format!("rules[{i}].name"),
                format!("duplicate rule name {:?}", rule.name),
            ));
        }
        rules.push(rule);
    }
    let operator = raw.operator.map(operator).transpose()?;
    if operator.is_none()
        && let Some(i) = rules.iter().position(|r| r.action == Action::Confirm)
    {
        return Err(invalid(
            format!("rules[{i}].action"),
            "confirm mode needs `operator` (its listener port and the secret that signs the links)",
        ));
    }
    if breach.control == Control::Cohort
        && let Some(i) = rules.iter().position(|r| r.percent_bp >= rules::BUCKETS)
    {
        return Err(invalid(
            format!("rules[{i}].percent"),
            "`breach.control: \"cohort\"` compares gray with the rule's own stable share: \
             percent must be below 100",
        ));
    }
    let sync_ms = match raw.sync_ms {
        None => DEFAULT_SYNC_MS,
        Some(v) => {
            let (lo, hi) = SYNC_MS_RANGE;
            if !(lo..=hi).contains(&v) {
                return Err(invalid("sync_ms", format!("must be {lo}..={hi}, got {v}")));
            }
            v as u64
        }
    };
    Ok(Config {
        route_header,
        stable,
        gray,
        utc_offset_min,
        trust_time_header: raw.trust_time_header.unwrap_or(false),
        rules,
        breach,
        sync_ms,
        time_header_upstream: raw.time_header_upstream.unwrap_or(false),
        operator,
    })
}

fn rule(i: usize, raw: RawRule, default_action: Action) -> Result<Rule, ConfigError> {
    let at = |f: &str| format!("rules[{i}].{f}");
    if !grayguard_contract::decision::valid_rule_name(&raw.name) {
        return Err(invalid(
            at("name"),
            format!(
                "expected 1-64 characters of [A-Za-z0-9._-], got {:?}",
                raw.name
            ),
        ));
    }
    let mut headers = Vec::with_capacity(raw.headers.len());
    for (name, m) in raw.headers {
        let field = format!("rules[{i}].headers.{name}");
        let lname = header_name(&field, &name)?;
        let matcher = match (m.exact, m.prefix, m.regex) {
            (Some(e), None, None) => Matcher::Exact(e),
            (None, Some(p), None) => Matcher::Prefix(p),
            (None, None, Some(r)) => Matcher::Regex(regex(&format!("{field}.regex"), &r)?),
            _ => {
                return Err(invalid(
                    field,
                    "expected exactly one of `exact`, `prefix`, `regex`",
                ));
            }
        };
        headers.push((lname, matcher));
    }
    let hours = match raw.hours {
        None => None,
        Some(h) => {
            let from = schedule::parse_hhmm(&h.from, false).ok_or_else(|| {
                invalid(
                    at("hours.from"),
                    format!("expected HH:MM (00:00..23:59), got {:?}", h.from),
                )
            })?;
            let to = schedule::parse_hhmm(&h.to, true).ok_or_else(|| {
                invalid(
                    at("hours.to"),
                    format!("expected HH:MM (00:00..24:00), got {:?}", h.to),
                )
            })?;
            if from == to || (from == 0 && to == schedule::DAY_MIN) {
                return Err(invalid(
                    at("hours"),
                    "`from` equals `to` (an empty or all-day window); omit `hours` for all day",
                ));
            }
            Some(Window { from, to })
        }
    };
    let percent_bp = percent(&at("percent"), raw.percent.unwrap_or(100.0))?;
    let sticky_header = raw
        .sticky_header
        .map(|h| header_name(&at("sticky_header"), &h))
        .transpose()?;
    Ok(Rule {
        name: raw.name,
        headers,
        hours,
        percent_bp,
        sticky_header,
        action: raw.action.unwrap_or(default_action),
    })
}

fn latch(raw: RawLatch) -> Result<Latch, ConfigError> {
    let name_ok = |v: &str| {
        !v.is_empty()
            && v.len() <= 256
            && v.bytes()
                .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
    };
    if !name_ok(&raw.cluster) {
        return Err(invalid(
            "breach.latch.cluster",
            format!("expected an Envoy cluster name, got {:?}", raw.cluster),
        ));
    }
    let authority = raw.authority.unwrap_or_else(|| raw.cluster.clone());
    if !name_ok(&authority) {
        return Err(invalid(
            "breach.latch.authority",
            format!("expected a host, got {authority:?}"),
        ));
    }
    let ranged_int = |field: &str, v: i64, (lo, hi): (i64, i64)| {
        if (lo..=hi).contains(&v) {
            Ok(v)
        } else {
            Err(invalid(field, format!("must be {lo}..={hi}, got {v}")))
        }
    };
    Ok(Latch {
        cluster: raw.cluster,
        authority,
        timeout_ms: ranged_int(
            "breach.latch.timeout_ms",
            raw.timeout_ms.unwrap_or(DEFAULT_LATCH_TIMEOUT_MS),
            LATCH_TIMEOUT_RANGE,
        )? as u64,
        calls: ranged_int(
            "breach.latch.calls",
            raw.calls.unwrap_or(DEFAULT_LATCH_CALLS),
            LATCH_CALLS_RANGE,
        )? as u32,
        token_env: raw.token_env.filter(|t| !t.is_empty()),
        token: None,
    })
}

fn check_secret(field: &str, secret: &str) -> Result<(), ConfigError> {
    if secret.len() < MIN_SECRET_BYTES {
        return Err(invalid(
            field,
            format!("must be at least {MIN_SECRET_BYTES} bytes (it signs the one-click links)"),
        ));
    }
    Ok(())
}

impl Config {
    /// Reads `operator.secret_env` and `breach.latch.token_env` from the VM's environment
    /// (`env` looks a variable up): a missing or short secret is a configuration error
    /// naming the variable.
    pub fn resolve_secret(
        &mut self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<(), ConfigError> {
        if let Some(l) = &mut self.breach.latch
            && let Some(name) = l.token_env.clone()
        {
            let token = env(&name).ok_or_else(|| {
                invalid(
                    "breach.latch.token_env",
                    format!(
                        "{name} is not set in the Wasm VM's environment (vm_config.environment_variables)"
                    ),
                )
            })?;
            check_secret("breach.latch.token_env", &token)?;
            l.token = Some(token);
        }
        let Some(op) = &mut self.operator else {
            return Ok(());
        };
        let Some(name) = op.secret_env.clone() else {
            return Ok(());
        };
        let value = env(&name).ok_or_else(|| {
            invalid(
                "operator.secret_env",
                format!("{name} is not set in the Wasm VM's environment (vm_config.environment_variables)"),
            )
        })?;
        check_secret("operator.secret_env", &value)?;
        op.secret = value.into_bytes();
        Ok(())
    }
}

fn operator(raw: RawOperator) -> Result<Operator, ConfigError> {
    let port = u16::try_from(raw.port)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| {
            invalid(
                "operator.port",
                format!("must be 1..=65535, got {}", raw.port),
            )
        })?;
    let (secret, secret_env) = match (raw.secret, raw.secret_env) {
        (Some(s), None) => {
            check_secret("operator.secret", &s)?;
            (s.into_bytes(), None)
        }
        (None, Some(env)) if !env.is_empty() => (Vec::new(), Some(env)),
        _ => {
            return Err(invalid(
                "operator",
                "expected exactly one of `secret` and `secret_env` (the name of the VM \
                 environment variable holding it)",
            ));
        }
    };
    let ttl = raw.link_ttl_s.unwrap_or(DEFAULT_LINK_TTL_S);
    let (lo, hi) = LINK_TTL_RANGE;
    if !(lo..=hi).contains(&ttl) {
        return Err(invalid(
            "operator.link_ttl_s",
            format!("must be {lo}..={hi} seconds, got {ttl}"),
        ));
    }
    Ok(Operator {
        port,
        secret,
        secret_env,
        link_ttl_s: ttl as u64,
        identity_header: raw
            .identity_header
            .map(|h| header_name("operator.identity_header", &h))
            .transpose()?,
    })
}

fn breach(raw: Option<RawBreach>) -> Result<Breach, ConfigError> {
    let raw = raw.unwrap_or(RawBreach {
        flag_header: None,
        latency: None,
        box_count: None,
        error_rate: None,
        consecutive_failures: None,
        shed_for_s: None,
        probe_percent: None,
        probe_successes: None,
        scope: None,
        dry_run: None,
        detector: None,
        action: None,
        latch: None,
        alpha: None,
        control: None,
        segment_responses: None,
    });
    let detector = raw.detector.unwrap_or(DetectorKind::Sequential);
    let window_only = |field: &str| {
        invalid(
            field,
            "required by the window detector (`breach.detector: \"window\"`)",
        )
    };
    let flag_header = header_name(
        "breach.flag_header",
        raw.flag_header.as_deref().unwrap_or(headers::BREACH),
    )?;
    let latency = match raw.latency {
        None => None,
        Some(l) => {
            let max_mean_ms = l
                .max_mean_ms
                .map(|v| positive("breach.latency.max_mean_ms", v))
                .transpose()?;
            if detector == DetectorKind::Window && max_mean_ms.is_none() {
                return Err(window_only("breach.latency.max_mean_ms"));
            }
            Some(Latency {
                header: header_name("breach.latency.header", &l.header)?,
                max_mean_ms,
                max_ratio: ranged(
                    "breach.latency.max_ratio",
                    l.max_ratio.unwrap_or(DEFAULT_MAX_RATIO),
                    1.0,
                    MAX_RATIO,
                )?,
                window_ms: window("breach.latency.window_s", l.window_s)?,
                min_samples: min_samples("breach.latency.min_samples", l.min_samples)?,
            })
        }
    };
    let box_count = match raw.box_count {
        None => None,
        Some(b) => {
            let baseline = match b.baseline {
                None => None,
                Some(base) => Some((
                    non_negative("breach.box_count.baseline.mean", base.mean)?,
                    non_negative("breach.box_count.baseline.std", base.std)?,
                )),
            };
            Some(BoxCount {
                header: header_name("breach.box_count.header", &b.header)?,
                max_sigma: positive(
                    "breach.box_count.max_sigma",
                    b.max_sigma.unwrap_or(DEFAULT_MAX_SIGMA),
                )?,
                max_shift: ranged(
                    "breach.box_count.max_shift",
                    b.max_shift.unwrap_or(DEFAULT_MAX_SHIFT),
                    f64::MIN_POSITIVE,
                    MAX_SHIFT,
                )?,
                window_ms: window("breach.box_count.window_s", b.window_s)?,
                min_samples: min_samples("breach.box_count.min_samples", b.min_samples)?,
                baseline,
                min_std: non_negative(
                    "breach.box_count.min_std",
                    b.min_std.unwrap_or(DEFAULT_MIN_STD),
                )?,
            })
        }
    };
    let error_rate = match raw.error_rate {
        None => None,
        Some(e) => {
            let max = e
                .max
                .map(|v| share("breach.error_rate.max", v))
                .transpose()?;
            if detector == DetectorKind::Window && max.is_none() {
                return Err(window_only("breach.error_rate.max"));
            }
            Some(ErrorRate {
                max,
                max_excess: share(
                    "breach.error_rate.max_excess",
                    e.max_excess.unwrap_or(DEFAULT_MAX_EXCESS),
                )?,
                window_ms: window("breach.error_rate.window_s", e.window_s)?,
                min_samples: min_samples("breach.error_rate.min_samples", e.min_samples)?,
            })
        }
    };
    let consecutive_failures = raw
        .consecutive_failures
        .map(|n| count("breach.consecutive_failures", n))
        .transpose()?;
    let shed_for_s = raw.shed_for_s.unwrap_or(300.0);
    if !(shed_for_s.is_finite() && shed_for_s > 0.0 && shed_for_s <= MAX_SHED_S) {
        return Err(invalid(
            "breach.shed_for_s",
            format!("must be in (0, {MAX_SHED_S}] seconds, got {shed_for_s}"),
        ));
    }
    Ok(Breach {
        flag_header,
        latency,
        box_count,
        error_rate,
        consecutive_failures,
        shed_for_ms: (shed_for_s * 1000.0).round() as u64,
        probe_bp: percent("breach.probe_percent", raw.probe_percent.unwrap_or(1.0))?,
        probe_successes: raw
            .probe_successes
            .map(|n| count("breach.probe_successes", n))
            .transpose()?
            .unwrap_or(DEFAULT_PROBE_SUCCESSES),
        scope: raw.scope.unwrap_or(Scope::Rule),
        dry_run: raw.dry_run.unwrap_or(false),
        detector,
        action: raw.action.unwrap_or(Action::Shed),
        latch: raw.latch.map(latch).transpose()?,
        alpha: {
            let (lo, hi) = ALPHA_RANGE;
            ranged("breach.alpha", raw.alpha.unwrap_or(DEFAULT_ALPHA), lo, hi)?
        },
        control: raw.control.unwrap_or(Control::All),
        segment_responses: {
            let n = raw.segment_responses.unwrap_or(DEFAULT_SEGMENT_RESPONSES);
            let (lo, hi) = SEGMENT_RANGE;
            if !(lo..=hi).contains(&n) {
                return Err(invalid(
                    "breach.segment_responses",
                    format!("must be {lo}..={hi}, got {n}"),
                ));
            }
            n as u32
        },
    })
}

/// A header name as Envoy sees it: lower case, an RFC 9110 token, no pseudo-headers.
fn header_name(field: &str, name: &str) -> Result<String, ConfigError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if ok {
        Ok(name.to_ascii_lowercase())
    } else {
        Err(invalid(
            field,
            format!("expected an HTTP header name (1-128 token characters), got {name:?}"),
        ))
    }
}

/// A route value: it goes into a header and into `x-canary-decision`.
fn route_value(field: &str, value: &str) -> Result<String, ConfigError> {
    let ok = !value.is_empty()
        && value.len() <= 128
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:/".contains(&b));
    if ok {
        Ok(value.to_string())
    } else {
        Err(invalid(
            field,
            format!("expected 1-128 characters of [A-Za-z0-9._:/-], got {value:?}"),
        ))
    }
}

fn regex(field: &str, pattern: &str) -> Result<regex_lite::Regex, ConfigError> {
    if pattern.len() > MAX_REGEX_LEN {
        return Err(invalid(
            field,
            format!("pattern longer than {MAX_REGEX_LEN} bytes"),
        ));
    }
    regex_lite::Regex::new(&format!("^(?:{pattern})$")).map_err(|e| {
        let first = e.to_string();
        let reason = first.lines().last().unwrap_or("").trim().to_string();
        invalid(field, format!("bad regex {pattern:?}: {reason}"))
    })
}

fn percent(field: &str, p: f64) -> Result<u32, ConfigError> {
    if p.is_finite() && (0.0..=100.0).contains(&p) {
        Ok((p * 100.0).round() as u32)
    } else {
        Err(invalid(field, format!("must be 0..=100, got {p}")))
    }
}

fn positive(field: &str, v: f64) -> Result<f64, ConfigError> {
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err(invalid(
            field,
            format!("must be a positive number, got {v}"),
        ))
    }
}

fn non_negative(field: &str, v: f64) -> Result<f64, ConfigError> {
    if v.is_finite() && v >= 0.0 {
        Ok(v)
    } else {
        Err(invalid(field, format!("must be a number ≥ 0, got {v}")))
    }
}

/// A number in `[lo, hi]`.
fn ranged(field: &str, v: f64, lo: f64, hi: f64) -> Result<f64, ConfigError> {
    if v.is_finite() && (lo..=hi).contains(&v) {
        Ok(v)
    } else {
        Err(invalid(field, format!("must be in [{lo}, {hi}], got {v}")))
    }
}

/// A share in `[0, 1)`.
fn share(field: &str, v: f64) -> Result<f64, ConfigError> {
    if v.is_finite() && (0.0..1.0).contains(&v) {
        Ok(v)
    } else {
        Err(invalid(
            field,
            format!("must be a share in [0, 1), got {v}"),
        ))
    }
}

fn window(field: &str, s: Option<f64>) -> Result<u64, ConfigError> {
    let s = s.unwrap_or(DEFAULT_WINDOW_S);
    if (0.1..=MAX_WINDOW_S).contains(&s) {
        Ok((s * 1000.0).round() as u64)
    } else {
        Err(invalid(
            field,
            format!("must be 0.1..={MAX_WINDOW_S} seconds, got {s}"),
        ))
    }
}

fn min_samples(field: &str, n: Option<i64>) -> Result<u32, ConfigError> {
    let n = n.unwrap_or(DEFAULT_MIN_SAMPLES);
    if (1..=MAX_MIN_SAMPLES).contains(&n) {
        Ok(n as u32)
    } else {
        Err(invalid(
            field,
            format!("must be 1..={MAX_MIN_SAMPLES}, got {n}"),
        ))
    }
}

fn count(field: &str, n: i64) -> Result<u32, ConfigError> {
    if (1..=MAX_COUNT).contains(&n) {
        Ok(n as u32)
    } else {
        Err(invalid(field, format!("must be 1..={MAX_COUNT}, got {n}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the README (every key set).
    pub const FULL: &str = r#"{
      "route_header": "x-canary-route",
      "stable": "v9-prod",
      "gray": "v10-gray",
      "utc_offset": "+08:00",
      "trust_time_header": false,
      "rules": [
        { "name": "night-cranes",
          "headers": { "x-device-type": { "exact": "crane-camera" } },
          "hours": { "from": "00:00", "to": "06:00" },
          "percent": 100,
          "sticky_header": "x-device-id" }
      ],
      "breach": {
        "flag_header": "x-canary-breach",
        "latency":   { "header": "x-inference-latency-ms", "max_mean_ms": 100, "window_s": 120, "min_samples": 20 },
        "box_count": { "header": "x-box-count", "max_sigma": 3, "window_s": 120, "min_samples": 20 },
        "error_rate": { "max": 0.05, "window_s": 60, "min_samples": 20 },
        "consecutive_failures": 3,
        "shed_for_s": 300,
        "probe_percent": 1,
        "scope": "rule",
        "dry_run": false
      }
    }"#;

    #[test]
    fn full_example_parses() {
        let c = parse(FULL.as_bytes()).unwrap();
        assert_eq!(c.route_header, "x-canary-route");
        assert_eq!(c.utc_offset_min, 480);
        assert_eq!(c.rules.len(), 1);
        let r = &c.rules[0];
        assert_eq!(r.hours, Some(Window { from: 0, to: 360 }));
        assert_eq!(r.percent_bp, 10_000);
        assert_eq!(r.sticky_header.as_deref(), Some("x-device-id"));
        let b = &c.breach;
        assert_eq!(b.latency.as_ref().unwrap().window_ms, 120_000);
        assert_eq!(b.box_count.as_ref().unwrap().min_std, DEFAULT_MIN_STD);
        assert_eq!(b.error_rate.as_ref().unwrap().max, Some(0.05));
        assert_eq!(b.consecutive_failures, Some(3));
        assert_eq!(b.shed_for_ms, 300_000);
        assert_eq!(b.probe_bp, 100);
        assert_eq!(b.scope, Scope::Rule);
        assert_eq!(c.max_window_ms(), 120_000);
        assert_eq!(c.min_window_ms(), 60_000);
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let c = parse(br#"{"stable":"a","gray":"b","rules":[{"name":"r"}]}"#).unwrap();
        assert_eq!(c.route_header, "x-canary-route");
        assert_eq!(c.utc_offset_min, 0);
        assert!(!c.trust_time_header);
        assert_eq!(c.rules[0].percent_bp, 10_000);
        assert!(c.rules[0].hours.is_none());
        assert!(c.rules[0].headers.is_empty());
        let b = &c.breach;
        assert_eq!(b.flag_header, "x-canary-breach");
        assert!(b.latency.is_none() && b.box_count.is_none() && b.error_rate.is_none());
        assert!(b.consecutive_failures.is_none());
        assert_eq!(b.shed_for_ms, 300_000);
        assert_eq!(b.probe_bp, 100);
        assert_eq!(b.probe_successes, DEFAULT_PROBE_SUCCESSES);
        assert_eq!(b.scope, Scope::Rule);
        assert!(!b.dry_run);
        assert_eq!(c.sync_ms, DEFAULT_SYNC_MS);
        assert_eq!(c.max_window_ms(), 0);
    }

    #[test]
    fn sequential_settings_and_their_defaults() {
        let c = parse(
            br#"{"stable":"a","gray":"b","rules":[{"name":"r"}],"breach":{
                 "latency":{"header":"l"},"box_count":{"header":"b"},"error_rate":{}}}"#,
        )
        .unwrap();
        let b = &c.breach;
        assert_eq!(b.detector, DetectorKind::Sequential);
        assert_eq!(b.alpha, DEFAULT_ALPHA);
        assert_eq!(b.control, Control::All);
        assert_eq!(b.segment_responses, DEFAULT_SEGMENT_RESPONSES as u32);
        let l = b.latency.as_ref().unwrap();
        assert_eq!((l.max_mean_ms, l.max_ratio), (None, DEFAULT_MAX_RATIO));
        assert_eq!(l.min_samples, DEFAULT_MIN_SAMPLES as u32);
        let x = b.box_count.as_ref().unwrap();
        assert_eq!(
            (x.max_shift, x.max_sigma),
            (DEFAULT_MAX_SHIFT, DEFAULT_MAX_SIGMA)
        );
        let e = b.error_rate.as_ref().unwrap();
        assert_eq!((e.max, e.max_excess), (None, DEFAULT_MAX_EXCESS));
        assert!(!c.time_header_upstream);
        let set = parse(
            br#"{"stable":"a","gray":"b","rules":[],"time_header_upstream":true,"breach":{
                 "detector":"window","alpha":0.001,"control":"cohort","segment_responses":500,
                 "latency":{"header":"l","max_mean_ms":80,"max_ratio":1.5},
                 "error_rate":{"max":0.1,"max_excess":0.05}}}"#,
        )
        .unwrap();
        let b = &set.breach;
        assert_eq!(
            (b.detector, b.alpha, b.control, b.segment_responses),
            (DetectorKind::Window, 0.001, Control::Cohort, 500)
        );
        assert_eq!(b.latency.as_ref().unwrap().max_mean_ms, Some(80.0));
        assert_eq!(b.error_rate.as_ref().unwrap().max_excess, 0.05);
        assert!(set.time_header_upstream);
    }

    #[test]
    fn operator_secrets_come_inline_or_from_the_environment_and_never_print() {
        let inline = parse(
            br#"{"stable":"a","gray":"b","rules":[{"name":"r","action":"confirm"}],
                 "operator":{"port":10100,"secret":"0123456789abcdef!"}}"#,
        )
        .unwrap();
        assert_eq!(inline.rules[0].action, Action::Confirm);
        let op = inline.operator.as_ref().unwrap();
        assert_eq!(
            (op.port, op.secret.as_slice(), op.link_ttl_s),
            (10100, &b"0123456789abcdef!"[..], 3600)
        );
        assert!(
            !format!("{inline:?}").contains("0123456789abcdef"),
            "redacted in Debug"
        );
        let json = br#"{"stable":"a","gray":"b","rules":[],"breach":{"action":"confirm"},
                        "operator":{"port":1,"secret_env":"GG_SECRET"}}"#;
        let mut c = parse(json).unwrap();
        assert_eq!(c.breach.action, Action::Confirm);
        let err = c.clone().resolve_secret(|_| None).unwrap_err();
        assert_eq!(err.field(), "operator.secret_env");
        assert!(err.to_string().contains("GG_SECRET is not set"), "{err}");
        let short = c.clone().resolve_secret(|_| Some("x".into())).unwrap_err();
        assert!(short.to_string().contains("at least 16"));
        c.resolve_secret(|n| (n == "GG_SECRET").then(|| "s".repeat(20)))
            .unwrap();
        assert_eq!(c.operator.unwrap().secret, b"s".repeat(20));
    }

    #[test]
    fn header_names_are_lower_cased() {
        let c = parse(
            br#"{"stable":"a","gray":"b","route_header":"X-Route",
                 "rules":[{"name":"r","headers":{"X-Device-Type":{"prefix":"cr"}}}]}"#,
        )
        .unwrap();
        assert_eq!(c.route_header, "x-route");
        assert_eq!(c.rules[0].headers[0].0, "x-device-type");
    }

    #[test]
    fn regex_is_anchored() {
        let c = parse(
            br#"{"stable":"a","gray":"b",
                 "rules":[{"name":"r","headers":{"x":{"regex":"crane-(cam|lidar)"}}}]}"#,
        )
        .unwrap();
        let m = &c.rules[0].headers[0].1;
        assert!(m.matches("crane-cam"));
        assert!(m.matches("crane-lidar"));
        assert!(!m.matches("big-crane-cam"));
        assert!(!m.matches("crane-camera"));
    }

    /// Rejections: (config, field named, words in the reason).
    #[test]
    fn rejections_name_field_and_reason() {
        let base = |rules: &str, breach: &str| {
            format!(r#"{{"stable":"v9","gray":"v10","rules":[{rules}],"breach":{{{breach}}}}}"#)
        };
        let r = |extra: &str| base(&format!(r#"{{"name":"r"{extra}}}"#), "");
        let b = |breach: &str| base(r#"{"name":"r"}"#, breach);
        let cases: Vec<(String, &str, &str)> = vec![
            ("not json".into(), ".", "expected"),
            (
                r#"{"stable":"a","gray":"b"}"#.into(),
                ".",
                "missing field `rules`",
            ),
            (
                r#"{"stable":"a","gray":"b","rules":[],"color":1}"#.into(),
                "color",
                "unknown field",
            ),
            (
                r#"{"stable":"a","gray":"a","rules":[]}"#.into(),
                "gray",
                "differ",
            ),
            (
                r#"{"stable":"a b","gray":"c","rules":[]}"#.into(),
                "stable",
                "expected",
            ),
            (
                r#"{"stable":"a","gray":"b","rules":[],"utc_offset":"8"}"#.into(),
                "utc_offset",
                "+HH:MM",
            ),
            (
                r#"{"stable":"a","gray":"b","rules":[],"route_header":"bad header"}"#.into(),
                "route_header",
                "header name",
            ),
            (
                r#"{"stable":"a","gray":"b","rules":[],"sync_ms":1}"#.into(),
                "sync_ms",
                "10..=10000",
            ),
            (
                r#"{"stable":"a","gray":"b","rules":{}}"#.into(),
                "rules",
                "expected a sequence",
            ),
            (
                r(r#","hours":{"from":"25:00","to":"06:00"}"#),
                "rules[0].hours.from",
                "HH:MM",
            ),
            (
                r(r#","hours":{"from":"01:00","to":"6"}"#),
                "rules[0].hours.to",
                "HH:MM",
            ),
            (
                r(r#","hours":{"from":"01:00","to":"01:00"}"#),
                "rules[0].hours",
                "empty",
            ),
            (
                r(r#","hours":{"from":"01:00"}"#),
                "rules[0].hours",
                "missing field `to`",
            ),
            (r(r#","percent":101"#), "rules[0].percent", "0..=100"),
            (r(r#","percent":-1"#), "rules[0].percent", "0..=100"),
            (r(r#","percent":"50""#), "rules[0].percent", "invalid type"),
            (
                r(r#","headers":{"x":{"regex":"(unclosed"}}"#),
                "rules[0].headers.x.regex",
                "bad regex",
            ),
            (
                r(r#","headers":{"x":{"exact":"a","prefix":"b"}}"#),
                "rules[0].headers.x",
                "exactly one",
            ),
            (
                r(r#","headers":{"x":{}}"#),
                "rules[0].headers.x",
                "exactly one",
            ),
            (
                r(r#","headers":{"x":{"glob":"*"}}"#),
                "rules[0].headers.x.glob",
                "unknown field",
            ),
            (
                r(r#","sticky_header":"""#),
                "rules[0].sticky_header",
                "header name",
            ),
            (r(r#","extra":true"#), "rules[0].extra", "unknown field"),
            (
                base(r#"{"name":"r"},{"name":"r"}"#, ""),
                "rules[1].name",
                "duplicate",
            ),
            (
                base(r#"{"name":"has space"}"#, ""),
                "rules[0].name",
                "expected",
            ),
            (
                b(r#""latency":{"header":"l","max_mean_ms":0,"window_s":1,"min_samples":1}"#),
                "breach.latency.max_mean_ms",
                "positive",
            ),
            (
                b(r#""latency":{"header":"l","max_mean_ms":1,"window_s":-5,"min_samples":1}"#),
                "breach.latency.window_s",
                "seconds",
            ),
            (
                b(r#""latency":{"header":"l","max_mean_ms":1,"window_s":1,"min_samples":0}"#),
                "breach.latency.min_samples",
                "1..=",
            ),
            (
                b(r#""latency":{"max_mean_ms":1}"#),
                "breach.latency",
                "missing field `header`",
            ),
            (
                b(r#""detector":"window","latency":{"header":"l"}"#),
                "breach.latency.max_mean_ms",
                "required by the window detector",
            ),
            (
                b(r#""detector":"window","error_rate":{}"#),
                "breach.error_rate.max",
                "required by the window detector",
            ),
            (
                b(r#""detector":"bayes""#),
                "breach.detector",
                "unknown variant",
            ),
            (b(r#""alpha":0"#), "breach.alpha", "must be in"),
            (b(r#""alpha":0.9"#), "breach.alpha", "must be in"),
            (
                b(r#""control":"cohorts""#),
                "breach.control",
                "unknown variant",
            ),
            (
                b(r#""segment_responses":5"#),
                "breach.segment_responses",
                "10..=",
            ),
            (
                b(r#""latency":{"header":"l","max_ratio":0.9}"#),
                "breach.latency.max_ratio",
                "must be in [1",
            ),
            (
                b(r#""box_count":{"header":"b","max_shift":0}"#),
                "breach.box_count.max_shift",
                "must be in",
            ),
            (
                b(r#""error_rate":{"max_excess":1}"#),
                "breach.error_rate.max_excess",
                "[0, 1)",
            ),
            (
                b(r#""box_count":{"header":"b","max_sigma":-3,"window_s":1,"min_samples":1}"#),
                "breach.box_count.max_sigma",
                "positive",
            ),
            (
                b(
                    r#""box_count":{"header":"b","max_sigma":3,"window_s":1,"min_samples":1,"baseline":{"mean":-1,"std":1}}"#,
                ),
                "breach.box_count.baseline.mean",
                "≥ 0",
            ),
            (
                b(
                    r#""box_count":{"header":"b","max_sigma":3,"window_s":1,"min_samples":1,"min_std":-0.5}"#,
                ),
                "breach.box_count.min_std",
                "≥ 0",
            ),
            (
                b(r#""error_rate":{"max":1.5,"window_s":1,"min_samples":1}"#),
                "breach.error_rate.max",
                "[0, 1)",
            ),
            (
                b(r#""consecutive_failures":0"#),
                "breach.consecutive_failures",
                "1..=",
            ),
            (b(r#""shed_for_s":0"#), "breach.shed_for_s", "(0,"),
            (
                b(r#""probe_percent":200"#),
                "breach.probe_percent",
                "0..=100",
            ),
            (
                b(r#""probe_successes":0"#),
                "breach.probe_successes",
                "1..=",
            ),
            (b(r#""scope":"cluster""#), "breach.scope", "unknown variant"),
            (b(r#""dry_run":"yes""#), "breach.dry_run", "invalid type"),
            (
                b(r#""flag_header":"a:b""#),
                "breach.flag_header",
                "header name",
            ),
        ];
        for (json, field, reason) in cases {
            let err = match parse(json.as_bytes()) {
                Ok(_) => panic!("accepted {json}"),
                Err(e) => e,
            };
            assert_eq!(err.field(), field, "{json}\n→ {err}");
            let text = err.to_string();
            assert!(
                text.contains(reason),
                "{json}\n→ {text} (wanted {reason:?})"
            );
            assert!(text.contains(&format!("`{field}`")), "{text}");
            assert!(!text.contains('\n'), "one line: {text}");
        }
    }
}
