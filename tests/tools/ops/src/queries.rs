//! What the report charts: one panel per question an on-call engineer asks about an
//! incident, each a few PromQL queries on the metric names of the contract crate.

use grayguard_contract::metrics::{filter, sidecar};

/// The confirm-mode alert gauge (labels `rule`, `trigger`, `confirm`): 1 while a rule waits
/// for a person.
pub const ALERT: &str = filter::ALERT;

/// How a panel draws its series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// Lines, y from zero.
    Lines,
    /// Lines with a dashed limit at this value (the evidence panel: 100 sheds).
    LinesWithLimit(u32),
    /// Breaker states as steps on the closed / open / half-open scale.
    Breaker,
}

/// One query of a panel: its legend (`{label}` is replaced by that label's value) and PromQL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub legend: String,
    pub expr: String,
}

/// One chart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Panel {
    pub title: String,
    pub unit: String,
    pub style: Style,
    pub queries: Vec<Query>,
    /// Series drawn as shaded spans where they are above zero (alerting).
    pub spans: Option<Query>,
}

fn q(legend: &str, expr: String) -> Query {
    Query {
        legend: legend.to_string(),
        expr,
    }
}

/// A gateway-side mean: the rate of a sum over the rate of its count.
fn mean(sum: &str, count: &str, w: &str) -> String {
    format!("sum(rate({sum}[{w}])) / sum(rate({count}[{w}]))")
}

/// The panels for `rule`, with rates over `w` (a PromQL duration such as `20s`).
pub fn panels(rule: &str, w: &str) -> Vec<Panel> {
    let r = rule.replace('\\', "\\\\").replace('"', "\\\"");
    // A sidecar histogram's p95 per track, in ms.
    let p95 = |histogram: &str, track: &str| {
        format!(
            "1000 * histogram_quantile(0.95, sum by (le) (rate({histogram}_bucket{{track=\"{track}\"}}[{w}])))"
        )
    };
    let errors = |track: &str| {
        format!(
            // No 5xx series at all is zero errors, not no data.
            "100 * (sum(rate({n}{{track=\"{track}\",status=~\"5..\"}}[{w}])) or vector(0)) / sum(rate({n}{{track=\"{track}\"}}[{w}]))",
            n = sidecar::REQUESTS_TOTAL
        )
    };
    let per_s = |name: &str| format!("sum(rate({name}[{w}]))");
    let replies = |track: &str| {
        format!(
            "sum(rate({}{{track=\"{track}\",status=\"200\"}}[{w}]))",
            sidecar::REQUESTS_TOTAL
        )
    };
    let mib = |name: &str| format!("max by (track) ({name}) / 1048576");
    let boxes = format!(
        "sum by (track) (rate({d}_sum[{w}])) / sum by (track) (rate({d}_count[{w}]))",
        d = sidecar::DETECTIONS_PER_IMAGE
    );
    vec![
        Panel {
            title: "Latency: gray vs stable".into(),
            unit: "ms".into(),
            style: Style::Lines,
            queries: vec![
                q(
                    "gray mean (gateway)",
                    format!(
                        "{} / 1000",
                        mean(filter::GRAY_LATENCY_US, filter::GRAY_LATENCY_SAMPLES, w)
                    ),
                ),
                q(
                    "stable mean (gateway)",
                    format!(
                        "{} / 1000",
                        mean(filter::STABLE_LATENCY_US, filter::STABLE_LATENCY_SAMPLES, w)
                    ),
                ),
                q(
                    "gray p95 (sidecar)",
                    p95(sidecar::REQUEST_DURATION_SECONDS, "gray"),
                ),
                q(
                    "stable p95 (sidecar)",
                    p95(sidecar::REQUEST_DURATION_SECONDS, "stable"),
                ),
            ],
            spans: None,
        },
        Panel {
            title: "NMS time: gray vs stable".into(),
            unit: "ms".into(),
            style: Style::Lines,
            queries: vec![
                q(
                    "gray p95 (sidecar)",
                    p95(sidecar::NMS_DURATION_SECONDS, "gray"),
                ),
                q(
                    "stable p95 (sidecar)",
                    p95(sidecar::NMS_DURATION_SECONDS, "stable"),
                ),
            ],
            spans: None,
        },
        Panel {
            title: "Throughput: gray vs stable".into(),
            unit: "replies/s".into(),
            style: Style::Lines,
            queries: vec![
                q("gray (sidecar, 200)", replies("gray")),
                q("stable (sidecar, 200)", replies("stable")),
            ],
            spans: None,
        },
        Panel {
            title: "Boxes per reply: gray vs stable".into(),
            unit: "boxes".into(),
            style: Style::Lines,
            queries: vec![
                q(
                    "gray (gateway)",
                    mean(filter::GRAY_BOXES, filter::GRAY_BOX_SAMPLES, w),
                ),
                q(
                    "stable (gateway)",
                    mean(filter::STABLE_BOXES, filter::STABLE_BOX_SAMPLES, w),
                ),
                q("{track} (sidecar)", boxes),
            ],
            spans: None,
        },
        Panel {
            title: "Errors".into(),
            unit: "% of replies".into(),
            style: Style::Lines,
            queries: vec![
                q(
                    "gray failures (gateway)",
                    format!(
                        "100 * {} / {}",
                        per_s(filter::GRAY_FAILURES),
                        per_s(filter::GRAY_RESPONSES)
                    ),
                ),
                q("gray 5xx (sidecar)", errors("gray")),
                q("stable 5xx (sidecar)", errors("stable")),
            ],
            spans: None,
        },
        Panel {
            title: "Memory: host and GPU (the largest pod of each track)".into(),
            unit: "MiB".into(),
            style: Style::Lines,
            queries: vec![
                q("{track} host", mib(sidecar::MEMORY_BYTES)),
                q("{track} GPU", mib(sidecar::GPU_MEMORY_USED_BYTES)),
            ],
            spans: None,
        },
        Panel {
            title: format!("Evidence of rule {rule} (100 sheds)"),
            unit: "% of threshold".into(),
            style: Style::LinesWithLimit(100),
            queries: vec![q(
                "{trigger}",
                format!(
                    "max by (trigger) ({}{{rule=\"{r}\"}})",
                    filter::EVIDENCE_PCT
                ),
            )],
            spans: None,
        },
        Panel {
            title: format!("Breaker of rule {rule}, alerting shaded"),
            unit: "state".into(),
            style: Style::Breaker,
            queries: vec![q(
                "{instance}",
                format!(
                    "max by (instance) ({}{{rule=\"{r}\"}})",
                    filter::RULE_BREAKER_STATE
                ),
            )],
            spans: Some(q("alerting", format!("max({ALERT}{{rule=\"{r}\"}})"))),
        },
        Panel {
            title: "Decisions".into(),
            unit: "requests/s".into(),
            style: Style::Lines,
            queries: vec![
                q("routed to gray", per_s(filter::ROUTED_GRAY)),
                q("routed to stable", per_s(filter::ROUTED_STABLE)),
                q("shed to stable", per_s(filter::SHED_REQUESTS)),
                q("probes to gray", per_s(filter::PROBE_REQUESTS)),
            ],
            spans: None,
        },
    ]
}

/// The counters of the decisions table: what the gateways did during the incident.
pub fn decision_counters() -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = [
        ("routed to gray", filter::ROUTED_GRAY),
        ("routed to stable", filter::ROUTED_STABLE),
        ("shed to stable", filter::SHED_REQUESTS),
        ("half-open probes to gray", filter::PROBE_REQUESTS),
        ("would have been shed (dry run)", filter::DRY_RUN_REQUESTS),
        ("failed gray replies", filter::GRAY_FAILURES),
    ]
    .into_iter()
    .map(|(label, name)| (label.to_string(), name.to_string()))
    .collect();
    v.extend(
        grayguard_contract::Trigger::ALL
            .into_iter()
            .map(|t| (format!("breaker openings: {t}"), filter::breaches(t))),
    );
    v
}

/// The legend of a series: `{label}` in `template` replaced by the series' label value.
pub fn legend(template: &str, labels: &std::collections::BTreeMap<String, String>) -> String {
    let mut out = template.to_string();
    for (k, v) in labels {
        out = out.replace(&format!("{{{k}}}"), v);
    }
    // A placeholder whose label the series lacks.
    if out.contains('{') {
        template.replace(['{', '}'], "")
    } else {
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_panel_names_only_published_metrics() {
        let published: Vec<String> = filter::all()
            .into_iter()
            .chain(sidecar::SCALARS.iter().map(|s| s.to_string()))
            .chain(
                sidecar::HISTOGRAMS
                    .iter()
                    .flat_map(|h| ["_bucket", "_sum", "_count"].map(|s| format!("{h}{s}"))),
            )
            .chain([ALERT.to_string()])
            .collect();
        for p in panels("crane-cameras", "20s") {
            for query in p.queries.iter().chain(&p.spans) {
                for word in query
                    .expr
                    .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                {
                    if word.starts_with("grayguard_") {
                        assert!(
                            published.iter().any(|n| n == word),
                            "{word} in {}",
                            query.expr
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn the_practices_charts_are_all_there() {
        let titles: Vec<String> = panels("r", "20s").into_iter().map(|p| p.title).collect();
        for wanted in [
            "Latency",
            "NMS time",
            "Throughput",
            "Boxes",
            "Errors",
            "Memory",
            "Evidence",
            "Breaker",
            "Decisions",
        ] {
            assert!(
                titles.iter().any(|t| t.starts_with(wanted)),
                "no {wanted} chart: {titles:?}"
            );
        }
        let memory = panels("r", "20s")
            .into_iter()
            .find(|p| p.title.starts_with("Memory"))
            .unwrap();
        let exprs: Vec<&str> = memory.queries.iter().map(|q| q.expr.as_str()).collect();
        assert!(exprs.iter().any(|e| e.contains(sidecar::MEMORY_BYTES)));
        assert!(
            exprs
                .iter()
                .any(|e| e.contains(sidecar::GPU_MEMORY_USED_BYTES))
        );
    }

    #[test]
    fn rule_names_are_quoted_and_legends_filled() {
        let p = panels("a\"b", "20s");
        let evidence = p.iter().find(|p| p.title.starts_with("Evidence")).unwrap();
        assert!(evidence.queries[0].expr.contains("rule=\"a\\\"b\""));
        let labels = [("trigger".to_string(), "box_count".to_string())]
            .into_iter()
            .collect();
        assert_eq!(legend("{trigger}", &labels), "box_count");
        assert_eq!(legend("{instance}", &labels), "instance");
        assert_eq!(legend("gray", &labels), "gray");
    }

    #[test]
    fn the_decisions_table_counts_every_trigger() {
        let names: Vec<String> = decision_counters().into_iter().map(|(_, n)| n).collect();
        for t in grayguard_contract::Trigger::ALL {
            assert!(names.contains(&filter::breaches(t)));
        }
    }
}
