//! Checks of single values: header names, route values, regexes, numbers in range. Each
//! names the field it judges in its error.

use crate::config::error::{ConfigError, invalid};
use crate::config::limits::{
    DEFAULT_MIN_SAMPLES, DEFAULT_WINDOW_S, MAX_COUNT, MAX_MIN_SAMPLES, MAX_REGEX_LEN, MAX_WINDOW_S,
};

/// A header name as Envoy sees it: lower case, an RFC 9110 token, no pseudo-headers.
pub fn header_name(field: &str, name: &str) -> Result<String, ConfigError> {
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
pub fn route_value(field: &str, value: &str) -> Result<String, ConfigError> {
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

pub fn regex(field: &str, pattern: &str) -> Result<regex_lite::Regex, ConfigError> {
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

pub fn percent(field: &str, p: f64) -> Result<u32, ConfigError> {
    if p.is_finite() && (0.0..=100.0).contains(&p) {
        Ok((p * 100.0).round() as u32)
    } else {
        Err(invalid(field, format!("must be 0..=100, got {p}")))
    }
}

pub fn positive(field: &str, v: f64) -> Result<f64, ConfigError> {
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err(invalid(
            field,
            format!("must be a positive number, got {v}"),
        ))
    }
}

pub fn non_negative(field: &str, v: f64) -> Result<f64, ConfigError> {
    if v.is_finite() && v >= 0.0 {
        Ok(v)
    } else {
        Err(invalid(field, format!("must be a number ≥ 0, got {v}")))
    }
}

/// A number in `[lo, hi]`.
pub fn ranged(field: &str, v: f64, lo: f64, hi: f64) -> Result<f64, ConfigError> {
    if v.is_finite() && (lo..=hi).contains(&v) {
        Ok(v)
    } else {
        Err(invalid(field, format!("must be in [{lo}, {hi}], got {v}")))
    }
}

/// A share in `[0, 1)`.
pub fn share(field: &str, v: f64) -> Result<f64, ConfigError> {
    if v.is_finite() && (0.0..1.0).contains(&v) {
        Ok(v)
    } else {
        Err(invalid(
            field,
            format!("must be a share in [0, 1), got {v}"),
        ))
    }
}

pub fn window(field: &str, s: Option<f64>) -> Result<u64, ConfigError> {
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

pub fn min_samples(field: &str, n: Option<i64>) -> Result<u32, ConfigError> {
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

pub fn count(field: &str, n: i64) -> Result<u32, ConfigError> {
    if (1..=MAX_COUNT).contains(&n) {
        Ok(n as u32)
    } else {
        Err(invalid(field, format!("must be 1..={MAX_COUNT}, got {n}")))
    }
}
