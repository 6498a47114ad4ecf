//! The one reader of Prometheus text expositions (Envoy's admin `/stats/prometheus`, a
//! sidecar's `/metrics`), for the tools and the end-to-end tests: every sample of a metric
//! with its labels ([`samples`]), or the sum of the series a selector picks ([`value`]).
//!
//! A selector is a metric name, optionally with the labels a series must carry:
//! `grayguard_sidecar_requests_total`, `grayguard_sidecar_requests_total{status="200"}`.
//! [`value`] sums every series that matches, so a name alone reads the total over all label
//! sets (and a gauge Envoy renders once per label set still reads as one number).
//!
//! ```
//! use grayguard_client::exposition;
//!
//! let text = "# TYPE grayguard_sidecar_requests_total counter\n\
//!             grayguard_sidecar_requests_total{status=\"200\"} 9\n\
//!             grayguard_sidecar_requests_total{status=\"503\"} 1\n";
//! assert_eq!(exposition::value(text, "grayguard_sidecar_requests_total"), Some(10.0));
//! let refused = r#"grayguard_sidecar_requests_total{status="503"}"#;
//! assert_eq!(exposition::value(text, refused), Some(1.0));
//! let series = exposition::samples(text, "grayguard_sidecar_requests_total");
//! assert_eq!(series[0].labels["status"], "200");
//! ```

use std::collections::BTreeMap;

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Every sample called exactly `name` in `text` (comments, other names and unreadable lines
/// skipped).
pub fn samples(text: &str, name: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| l.trim_start().starts_with(name))
        .filter_map(parse_line)
        .filter(|s| s.name == name)
        .collect()
}

/// The sum of the series matching `selector`, or `None` if none does (or the selector is
/// not `name` or `name{label="value",...}`).
pub fn value(text: &str, selector: &str) -> Option<f64> {
    let (name, want) = parse_selector(selector)?;
    samples(text, name)
        .into_iter()
        .filter(|s| want.iter().all(|(k, v)| s.labels.get(k) == Some(v)))
        .map(|s| s.value)
        .reduce(|a, b| a + b)
}

/// `name{a="1",b="2"}` → (`name`, {a: 1, b: 2}).
fn parse_selector(selector: &str) -> Option<(&str, BTreeMap<String, String>)> {
    match selector.split_once('{') {
        None => Some((selector.trim(), BTreeMap::new())),
        Some((name, rest)) => {
            let (labels, after) = parse_labels(rest)?;
            after.trim().is_empty().then_some((name.trim(), labels))
        }
    }
}

/// `name{k="v",...} value [timestamp]`, or `None` for anything else.
pub fn parse_line(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.starts_with('#') || line.is_empty() {
        return None;
    }
    let name_end = line.find(|c: char| c == '{' || c.is_whitespace())?;
    let name = &line[..name_end];
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(inner) = rest.strip_prefix('{') {
        let (parsed, after) = parse_labels(inner)?;
        labels = parsed;
        rest = after;
    }
    let value = rest.split_whitespace().next()?.parse::<f64>().ok()?;
    Some(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// The labels up to the closing brace (values unescaped: `\"`, `\\`, `\n`), and the text
/// after it.
fn parse_labels(mut s: &str) -> Option<(BTreeMap<String, String>, &str)> {
    let mut labels = BTreeMap::new();
    loop {
        s = s.trim_start_matches([',', ' ']);
        if let Some(after) = s.strip_prefix('}') {
            return Some((labels, after));
        }
        let eq = s.find('=')?;
        let key = s[..eq].trim().to_string();
        let mut chars = s[eq + 1..].char_indices();
        if chars.next()?.1 != '"' {
            return None;
        }
        let mut value = String::new();
        let mut escaped = false;
        let end = loop {
            let (i, c) = chars.next()?;
            match (escaped, c) {
                (true, 'n') => value.push('\n'),
                (true, c) => value.push(c),
                (false, '\\') => {}
                (false, '"') => break i,
                (false, c) => value.push(c),
            }
            escaped = !escaped && c == '\\';
        };
        labels.insert(key, value);
        s = &s[eq + 1 + end + 1..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENVOY: &str = "\
# TYPE grayguard_routed_gray counter
grayguard_routed_gray{} 12
# TYPE grayguard_breaker_state gauge
grayguard_breaker_state 1
grayguard_gray_box_count_bucket{le=\"1\"} 0
grayguard_gray_box_count_sum{} 340.5
grayguard_gray_box_count_count{} 10
envoy_cluster_upstream_rq{envoy_response_code=\"200\",envoy_cluster_name=\"v9-prod\"} 7
envoy_cluster_upstream_rq{envoy_response_code=\"200\",envoy_cluster_name=\"v10-gray\"} 5
";

    #[test]
    fn reads_plain_and_labelled_series() {
        assert_eq!(value(ENVOY, "grayguard_routed_gray"), Some(12.0));
        assert_eq!(value(ENVOY, "grayguard_breaker_state"), Some(1.0));
        assert_eq!(value(ENVOY, "grayguard_gray_box_count_sum"), Some(340.5));
        assert_eq!(value(ENVOY, "envoy_cluster_upstream_rq"), Some(12.0));
        assert_eq!(
            value(
                ENVOY,
                "envoy_cluster_upstream_rq{envoy_cluster_name=\"v10-gray\"}"
            ),
            Some(5.0)
        );
        // Label order in the selector does not matter; every label must match.
        assert_eq!(
            value(
                ENVOY,
                "envoy_cluster_upstream_rq{envoy_cluster_name=\"v9-prod\",envoy_response_code=\"200\"}"
            ),
            Some(7.0)
        );
        assert_eq!(
            value(
                ENVOY,
                "envoy_cluster_upstream_rq{envoy_cluster_name=\"v11\"}"
            ),
            None
        );
    }

    #[test]
    fn does_not_confuse_prefixes_or_comments() {
        // `grayguard_gray_box_count` itself has no series, only _bucket/_sum/_count.
        assert_eq!(value(ENVOY, "grayguard_gray_box_count"), None);
        assert_eq!(value(ENVOY, "grayguard_routed"), None);
        assert_eq!(value(ENVOY, "TYPE"), None);
        assert_eq!(value("", "x"), None);
        // A selector that is not one is no match, not a panic.
        assert_eq!(value(ENVOY, "grayguard_routed_gray{"), None);
        assert_eq!(value(ENVOY, "grayguard_routed_gray{} x"), None);
    }

    #[test]
    fn skips_braces_and_commas_inside_quoted_label_values_and_bad_numbers() {
        let text = "m{path=\"/a}b,c\",q=\"x\\\"}\"} 3\nm{a=\"1\"} nope\nm{unclosed=\"1\" 4\n";
        assert_eq!(value(text, "m"), Some(3.0));
        assert_eq!(value(text, "m{path=\"/a}b,c\"}"), Some(3.0));
        assert_eq!(value(text, "m{q=\"x\\\"}\"}"), Some(3.0));
    }

    #[test]
    fn reads_sidecar_series() {
        let text = "grayguard_sidecar_requests_total{status=\"200\"} 9\n\
                    grayguard_sidecar_requests_total{status=\"400\"} 1\n\
                    grayguard_sidecar_info{device=\"cpu\",model_version=\"v9\"} 1\n\
                    grayguard_sidecar_ready 1\n";
        assert_eq!(value(text, "grayguard_sidecar_requests_total"), Some(10.0));
        assert_eq!(
            value(text, "grayguard_sidecar_requests_total{status=\"200\"}"),
            Some(9.0)
        );
        assert_eq!(
            value(
                text,
                "grayguard_sidecar_info{device=\"cpu\",model_version=\"v9\"}"
            ),
            Some(1.0)
        );
        assert_eq!(value(text, "grayguard_sidecar_ready"), Some(1.0));
    }

    #[test]
    fn reads_labels_values_and_skips_the_rest() {
        let text = "# TYPE grayguard_rule_breaker_state gauge\n\
            grayguard_rule_breaker_state{rule=\"crane-cameras\"} 1\n\
            grayguard_rule_breaker_state_other 3\n\
            grayguard_breaker_state 2\n\
            grayguard_sidecar_info{device=\"cpu\",model_version=\"v10 \\\"gray\\\"\"} 1 1700000000\n\
            broken{a=\"1\" 4\n";
        let s = samples(text, "grayguard_rule_breaker_state");
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].labels["rule"], "crane-cameras");
        assert_eq!(s[0].value, 1.0);
        assert_eq!(samples(text, "grayguard_breaker_state")[0].value, 2.0);
        let info = &samples(text, "grayguard_sidecar_info")[0];
        assert_eq!(info.labels["model_version"], "v10 \"gray\"");
        assert_eq!(info.labels["device"], "cpu");
        assert!(samples(text, "broken").is_empty());
        assert!(parse_line("x{a=1} 2").is_none());
    }
}
