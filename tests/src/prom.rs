//! The one reader of Prometheus text expositions in the tests, the benchmarks and the demo
//! (Envoy's admin `/stats/prometheus`, the sidecars' `/metrics`).
//!
//! A selector is a metric name, optionally with the labels a series must carry:
//! `grayguard_sidecar_requests_total`, `grayguard_sidecar_requests_total{status="200"}`.
//! [`value`] sums every series that matches, so a name alone reads the total over all label
//! sets (and a gauge Envoy renders once per label set still reads as one number).

/// The sum of the series matching `selector`, or `None` if none does.
pub fn value(text: &str, selector: &str) -> Option<f64> {
    let (name, want) = parse_selector(selector)?;
    text.lines()
        .filter_map(|line| series(line, name))
        .filter(|(labels, _)| want.iter().all(|w| labels.contains(w)))
        .map(|(_, v)| v)
        .reduce(|a, b| a + b)
}

/// `name{a="1",b="2"}` → (`name`, [`a="1"`, `b="2"`]).
fn parse_selector(selector: &str) -> Option<(&str, Vec<&str>)> {
    match selector.split_once('{') {
        None => Some((selector.trim(), Vec::new())),
        Some((name, rest)) => {
            let inner = rest.strip_suffix('}')?;
            Some((name.trim(), split_labels(inner)))
        }
    }
}

/// The `(labels, value)` of one sample line of the metric called exactly `name`.
fn series<'a>(line: &'a str, name: &str) -> Option<(Vec<&'a str>, f64)> {
    let rest = line.trim_start().strip_prefix(name)?;
    let (labels, rest) = if let Some(inner) = rest.strip_prefix('{') {
        let end = closing_brace(inner)?;
        (split_labels(&inner[..end]), &inner[end + 1..])
    } else if rest.starts_with([' ', '\t']) {
        (Vec::new(), rest)
    } else {
        // A longer name that merely starts with `name` (e.g. `_bucket`), or a comment.
        return None;
    };
    let v = rest.split_whitespace().next()?.parse::<f64>().ok()?;
    Some((labels, v))
}

/// `a="1",b="x,y"` → [`a="1"`, `b="x,y"`] (commas inside quoted values are kept).
fn split_labels(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                out.push(s[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(s[start..].trim());
    out.retain(|l| !l.is_empty());
    out
}

/// The index of the `}` that closes a label set, skipping braces inside quoted values.
fn closing_brace(s: &str) -> Option<usize> {
    let (mut quoted, mut escaped) = (false, false);
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '}' if !quoted => return Some(i),
            _ => {}
        }
    }
    None
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
    }

    #[test]
    fn skips_braces_and_commas_inside_quoted_label_values_and_bad_numbers() {
        let text = "m{path=\"/a}b,c\",q=\"x\\\"}\"} 3\nm{a=\"1\"} nope\nm{unclosed=\"1\" 4\n";
        assert_eq!(value(text, "m"), Some(3.0));
        assert_eq!(value(text, "m{path=\"/a}b,c\"}"), Some(3.0));
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
}
