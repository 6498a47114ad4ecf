//! From JSON to a [`Config`]: parsing (serde, with the field path) and judging every
//! value, section by section; the secrets read from the VM's environment.

use grayguard_contract::headers;

use crate::config::error::{ConfigError, invalid};
use crate::config::fields::{
    count, header_name, min_samples, non_negative, percent, positive, ranged, regex, route_value,
    share, window,
};
use crate::config::limits::*;
use crate::config::raw::{RawBreach, RawConfig, RawLatch, RawOperator, RawPromote, RawRule};
use crate::config::types::{
    Action, Agreement, BUCKETS, BoxCount, Breach, Config, Control, DetectorKind, ErrorRate, Latch,
    Latency, Matcher, Operator, Promote, Rule, Scope,
};
use crate::schedule::{self, Window};

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
    // The breach settings first: a rule's action defaults to `breach.action`; and the
    // top-level hypothesis, which each rule's starts from.
    let breach = breach(raw.breach)?;
    let global = raw.promote.clone();
    let promote_all = global
        .clone()
        .map(|p| promote("promote", p, &breach))
        .transpose()?;
    let mut rules: Vec<Rule> = Vec::with_capacity(raw.rules.len());
    for (i, r) in raw.rules.into_iter().enumerate() {
        let rule = rule(i, r, &breach, global.as_ref())?;
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
        && let Some(i) = rules.iter().position(|r| r.percent_bp >= BUCKETS)
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
        promote: promote_all,
    })
}

/// A promotion hypothesis at `at` (`promote`, or `rules[i].promote` merged over it).
fn promote(at: &str, raw: RawPromote, breach: &Breach) -> Result<Promote, ConfigError> {
    let f = |k: &str| format!("{at}.{k}");
    if breach.detector != DetectorKind::Sequential {
        return Err(invalid(
            at,
            "the promotion verdict reads the sequential detector's evidence (`breach.detector: \"sequential\"`)",
        ));
    }
    let p = Promote {
        latency_max_increase_ms: raw
            .latency_max_increase_ms
            .map(|v| non_negative(&f("latency_max_increase_ms"), v))
            .transpose()?,
        latency_max_ratio: raw
            .latency_max_ratio
            .map(|v| ranged(&f("latency_max_ratio"), v, 1.0, MAX_RATIO))
            .transpose()?,
        box_count_max_shift: raw
            .box_count_max_shift
            .map(|v| ranged(&f("box_count_max_shift"), v, f64::MIN_POSITIVE, 1.0))
            .transpose()?,
        error_max_excess: raw
            .error_max_excess
            .map(|v| share(&f("error_max_excess"), v))
            .transpose()?,
        agreement_min: raw
            .agreement_min
            .map(|v| share(&f("agreement_min"), v))
            .transpose()?,
        alpha: {
            let (lo, hi) = PROMOTE_ALPHA_RANGE;
            ranged(
                &f("alpha"),
                raw.alpha.unwrap_or(DEFAULT_PROMOTE_ALPHA),
                lo,
                hi,
            )?
        },
        min_gray_responses: match raw.min_gray_responses {
            None => DEFAULT_MIN_GRAY_RESPONSES as u32,
            Some(n) if (1..=MAX_MIN_SAMPLES).contains(&n) => n as u32,
            Some(n) => {
                return Err(invalid(
                    f("min_gray_responses"),
                    format!("must be 1..={MAX_MIN_SAMPLES}, got {n}"),
                ));
            }
        },
        cap_factor: {
            let (lo, hi) = CAP_FACTOR_RANGE;
            ranged(
                &f("cap_factor"),
                raw.cap_factor.unwrap_or(DEFAULT_CAP_FACTOR),
                lo,
                hi,
            )?
        },
    };
    let stated = [
        p.latency_max_increase_ms,
        p.latency_max_ratio,
        p.box_count_max_shift,
        p.error_max_excess,
        p.agreement_min,
    ];
    if stated.iter().all(Option::is_none) {
        return Err(invalid(
            at,
            "states no budget: give at least one of latency_max_increase_ms, \
             latency_max_ratio, box_count_max_shift, error_max_excess, agreement_min",
        ));
    }
    Ok(p)
}

/// A rule's own promotion keys over the top-level ones.
fn merge_promote(global: Option<&RawPromote>, own: Option<RawPromote>) -> Option<RawPromote> {
    match (global, own) {
        (None, None) => None,
        (Some(g), None) => Some(g.clone()),
        (None, Some(o)) => Some(o),
        (Some(g), Some(o)) => Some(RawPromote {
            latency_max_increase_ms: o.latency_max_increase_ms.or(g.latency_max_increase_ms),
            latency_max_ratio: o.latency_max_ratio.or(g.latency_max_ratio),
            box_count_max_shift: o.box_count_max_shift.or(g.box_count_max_shift),
            error_max_excess: o.error_max_excess.or(g.error_max_excess),
            agreement_min: o.agreement_min.or(g.agreement_min),
            alpha: o.alpha.or(g.alpha),
            min_gray_responses: o.min_gray_responses.or(g.min_gray_responses),
            cap_factor: o.cap_factor.or(g.cap_factor),
        }),
    }
}

fn rule(
    i: usize,
    raw: RawRule,
    breach: &Breach,
    global: Option<&RawPromote>,
) -> Result<Rule, ConfigError> {
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
    let promote = merge_promote(global, raw.promote)
        .map(|p| promote(&at("promote"), p, breach))
        .transpose()?;
    Ok(Rule {
        name: raw.name,
        headers,
        hours,
        percent_bp,
        sticky_header,
        action: raw.action.unwrap_or(breach.action),
        promote,
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
    let raw = raw.unwrap_or_default();
    if raw.alpha.is_some() {
        return Err(invalid(
            "breach.alpha",
            "replaced by `breach.arl` (gray replies per false shed, in expectation; default \
             1e6): the sequential detector now detects a change at any time, see the filter's \
             README",
        ));
    }
    if raw.segment_responses.is_some() {
        return Err(invalid(
            "breach.segment_responses",
            "no longer needed: the sequential detector restarts its bets at every reply \
             (see `breach.arl`)",
        ));
    }
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
    let agreement = match raw.agreement {
        None => None,
        Some(_) if detector == DetectorKind::Window => {
            return Err(invalid(
                "breach.agreement",
                "a sequential trigger (`breach.detector: \"sequential\"`)",
            ));
        }
        Some(a) => Some(Agreement {
            header: header_name(
                "breach.agreement.header",
                a.header.as_deref().unwrap_or(headers::AGREEMENT),
            )?,
            min_mean: ranged(
                "breach.agreement.min_mean",
                a.min_mean.unwrap_or(DEFAULT_AGREEMENT_MIN_MEAN),
                0.01,
                1.0,
            )?,
            min_samples: min_samples("breach.agreement.min_samples", a.min_samples)?,
        }),
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
    let breach = Breach {
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
        arl: {
            let (lo, hi) = ARL_RANGE;
            ranged("breach.arl", raw.arl.unwrap_or(DEFAULT_ARL), lo, hi)?
        },
        control: raw.control.unwrap_or(Control::All),
        control_memory: {
            let n = raw.control_memory.unwrap_or(DEFAULT_CONTROL_MEMORY);
            let (lo, hi) = CONTROL_MEMORY_RANGE;
            if !(lo..=hi).contains(&n) {
                return Err(invalid(
                    "breach.control_memory",
                    format!("must be {lo}..={hi}, got {n}"),
                ));
            }
            n as f64
        },
        agreement,
    };
    control_reaches_min_samples(&breach)?;
    Ok(breach)
}

/// The sequential detector's tests against stable wait for `min_samples` control replies, and
/// the control's running count tends to `control_memory`: a larger `min_samples` would leave
/// them without a reference forever.
fn control_reaches_min_samples(b: &Breach) -> Result<(), ConfigError> {
    if b.detector != DetectorKind::Sequential {
        return Ok(());
    }
    let wanted = [
        (
            "breach.latency.min_samples",
            b.latency.as_ref().map(|t| t.min_samples),
        ),
        (
            "breach.box_count.min_samples",
            b.box_count.as_ref().map(|t| t.min_samples),
        ),
        (
            "breach.error_rate.min_samples",
            b.error_rate.as_ref().map(|t| t.min_samples),
        ),
    ];
    for (field, n) in wanted {
        if let Some(n) = n.filter(|&n| f64::from(n) > b.control_memory) {
            return Err(invalid(
                field,
                format!(
                    "{n} is more than breach.control_memory ({}): the control's running count \
                     never reaches it, so the test would never have a reference",
                    b.control_memory
                ),
            ));
        }
    }
    Ok(())
}
