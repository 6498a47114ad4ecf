//! Reading single values out of a Prometheus text exposition (Envoy's admin
//! `/stats/prometheus`, the sidecars' `/metrics`).

/// The sum over every series called exactly `name` (any labels), or `None` if there is none.
/// Summing makes a gauge that Envoy renders once per label set still read as one number.
pub fn value(text: &str, name: &str) -> Option<f64> {
    series(text, name).map(|(_, v)| v).reduce(|a, b| a + b)
}

/// The value of the series called `name` whose label `label` equals `want`.
pub fn labelled_value(text: &str, name: &str, label: &str, want: &str) -> Option<f64> {
    let needle = format!("{label}=\"{want}\"");
    series(text, name)
        .filter(|(labels, _)| labels.split(',').any(|l| l.trim() == needle))
        .map(|(_, v)| v)
        .reduce(|a, b| a + b)
}

/// Every `(labels, value)` of the series called `name`; `labels` is the text between braces.
fn series<'a>(text: &'a str, name: &'a str) -> impl Iterator<Item = (&'a str, f64)> + 'a {
    text.lines().filter_map(move |line| {
        let rest = line.trim_start().strip_prefix(name)?;
        let (labels, rest) = if let Some(inner) = rest.strip_prefix('{') {
            let end = closing_brace(inner)?;
            (&inner[..end], &inner[end + 1..])
        } else if rest.starts_with([' ', '\t']) {
            ("", rest)
        } else {
            // A longer name that merely starts with `name` (e.g. `_bucket`).
            return None;
        };
        let v = rest.split_whitespace().next()?.parse::<f64>().ok()?;
        Some((labels, v))
    })
}

/// The index of the `}` that closes a label set, skipping braces inside quoted values.
fn closing_brace(s: &str) -> Option<usize> {
    let mut quoted = false;
    let mut escaped = false;
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
            labelled_value(
                ENVOY,
                "envoy_cluster_upstream_rq",
                "envoy_cluster_name",
                "v10-gray"
            ),
            Some(5.0)
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
    fn skips_braces_inside_quoted_label_values_and_bad_numbers() {
        let text = "m{path=\"/a}b\",q=\"x\\\"}\"} 3\nm{a=\"1\"} nope\nm{unclosed=\"1\" 4\n";
        assert_eq!(value(text, "m"), Some(3.0));
        assert_eq!(labelled_value(text, "m", "q", "x\\\"}"), Some(3.0));
    }

    #[test]
    fn reads_sidecar_style_counters() {
        let text = "grayguard_sidecar_requests_total{status=\"200\"} 9\n\
                    grayguard_sidecar_requests_total{status=\"400\"} 1\n";
        assert_eq!(value(text, "grayguard_sidecar_requests_total"), Some(10.0));
        assert_eq!(
            labelled_value(text, "grayguard_sidecar_requests_total", "status", "200"),
            Some(9.0)
        );
    }
}
