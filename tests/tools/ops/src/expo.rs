//! Samples of a Prometheus text exposition (Envoy's admin `/stats/prometheus`, a sidecar's
//! `/metrics`) with their labels, for reading current gauges and info metrics straight from
//! the gateways and sidecars.

use std::collections::BTreeMap;

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Every sample called `name` in `text` (comments, other names and unreadable lines
/// skipped).
pub fn samples(text: &str, name: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(parse_line)
        .filter(|s| s.name == name)
        .collect()
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

/// The labels up to the closing brace, and the text after it.
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
