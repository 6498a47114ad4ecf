//! Incidents: the records of one rule from the first alert or shed to the shed's end, across
//! every gateway's log; which one a report is about; and, where no log is at hand, the span
//! the breaker gauge shows in Prometheus.

use jiff::{SignedDuration, Timestamp};

use crate::record::{Event, Record};

/// One incident of one rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Incident {
    pub rule: String,
    /// The first alert or shed.
    pub start: Timestamp,
    /// The last shed end once every gateway that alerted or shed has ended; `None` while any
    /// is still alerting or shedding.
    pub end: Option<Timestamp>,
    /// Every record that belongs to it, in time order.
    pub records: Vec<Record>,
    /// Where the span came from, for the report to say.
    pub origin: Origin,
}

/// How the incident was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The filter's incident records in the gateways' logs.
    Records,
    /// The breaker (or alert) gauge in Prometheus: no records were available.
    Gauge,
}

impl Incident {
    /// The trigger of the first record that names one.
    pub fn trigger(&self) -> Option<&str> {
        self.records.iter().find_map(|r| r.trigger.as_deref())
    }

    /// The first record that started a shed (rather than an alert), if any.
    pub fn first_shed(&self) -> Option<&Record> {
        self.records.iter().find(|r| r.event == Event::ShedStart)
    }

    /// Who confirmed the shed, if a person did.
    pub fn confirmed_by(&self) -> Option<&str> {
        self.records.iter().find_map(|r| r.confirmed_by.as_deref())
    }

    /// The gateways whose records it has, in the order they joined: each record's gateway
    /// id, else the log it came from.
    pub fn gateways(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for r in &self.records {
            let g = r.gateway.as_deref().unwrap_or(&r.source);
            if !out.contains(&g) {
                out.push(g);
            }
        }
        out
    }

    /// Every gray pod any of its records saw, in the order first seen.
    pub fn gray_pods(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for p in self.records.iter().flat_map(|r| &r.gray_pods) {
            if !out.contains(&p.as_str()) {
                out.push(p);
            }
        }
        out
    }

    /// Whether it began in confirm mode (an alert waiting for a person).
    pub fn alerted(&self) -> bool {
        self.records.iter().any(|r| r.event == Event::AlertStart)
    }

    /// The span a report should chart: `before` the start to `after` the end (or now).
    pub fn window(
        &self,
        now: Timestamp,
        before: SignedDuration,
        after: SignedDuration,
    ) -> (Timestamp, Timestamp) {
        let from = self.start.checked_sub(before).unwrap_or(self.start);
        let to = self
            .end
            .and_then(|e| e.checked_add(after).ok())
            .unwrap_or(now)
            .min(now)
            .max(self.start);
        (from, to)
    }
}

/// Groups records (from any number of logs, in any order) into incidents, oldest first.
///
/// Per rule, an incident opens with an alert or a shed start on any gateway while none is
/// open, takes every record while any gateway (log) is alerting or shedding, and closes at
/// the shed end that leaves none open. A shed start after a bad probe continues the
/// incident; a shed end with nothing open (its start was before the part of the log read)
/// opens and closes an incident of its own, so it is not lost.
pub fn group(records: &[Record]) -> Vec<Incident> {
    let mut sorted: Vec<&Record> = records.iter().collect();
    sorted.sort_by_key(|r| r.at);
    let mut rules: Vec<&str> = sorted.iter().map(|r| r.rule.as_str()).collect();
    rules.sort_unstable();
    rules.dedup();
    let mut out = Vec::new();
    for rule in rules {
        let mut open: Option<Incident> = None;
        // Gateways (sources) alerting or shedding within the open incident.
        let mut active: Vec<&str> = Vec::new();
        for r in sorted.iter().filter(|r| r.rule == rule) {
            let incident = open.get_or_insert_with(|| Incident {
                rule: rule.to_string(),
                start: r.at,
                end: None,
                records: Vec::new(),
                origin: Origin::Records,
            });
            incident.records.push((*r).clone());
            match r.event {
                Event::AlertStart | Event::ShedStart => {
                    if !active.contains(&r.source.as_str()) {
                        active.push(&r.source);
                    }
                }
                Event::ShedEnd => {
                    active.retain(|s| *s != r.source);
                    if active.is_empty() {
                        incident.end = Some(r.at);
                        out.extend(open.take());
                    }
                }
                Event::Other(_) => {}
            }
        }
        out.extend(open);
    }
    out.sort_by_key(|i| i.start);
    out
}

/// The incident a report is about: of those of `rule` (any rule when `None`), the one
/// spanning `at`, else the last that started before `at`, else the first after it; without
/// `at`, the latest.
pub fn select<'a>(
    incidents: &'a [Incident],
    rule: Option<&str>,
    at: Option<Timestamp>,
) -> Option<&'a Incident> {
    let mut of_rule = incidents
        .iter()
        .filter(|i| rule.is_none_or(|r| i.rule == r));
    let Some(at) = at else {
        return of_rule.max_by_key(|i| i.start);
    };
    let candidates: Vec<&Incident> = of_rule.by_ref().collect();
    let spanning = candidates
        .iter()
        .filter(|i| i.start <= at && i.end.is_none_or(|e| at <= e))
        .max_by_key(|i| i.start);
    let before = candidates
        .iter()
        .filter(|i| i.start <= at)
        .max_by_key(|i| i.start);
    let after = candidates
        .iter()
        .filter(|i| i.start > at)
        .min_by_key(|i| i.start);
    spanning.or(before).or(after).copied()
}

/// The last run of non-zero values in a gauge's samples `(time, value)` (in time order),
/// as an incident without records: `end` is `None` when the run lasts to the last sample.
pub fn from_gauge(rule: &str, samples: &[(Timestamp, f64)]) -> Option<Incident> {
    let last_on = samples.iter().rposition(|(_, v)| *v > 0.0)?;
    let first_on = samples[..=last_on]
        .iter()
        .rposition(|(_, v)| *v <= 0.0)
        .map_or(0, |i| i + 1);
    let end = samples.get(last_on + 1).map(|(t, _)| *t);
    Some(Incident {
        rule: rule.to_string(),
        start: samples[first_on].0,
        end,
        records: Vec::new(),
        origin: Origin::Gauge,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::parse_line;

    fn rec(source: &str, at: &str, event: &str, rule: &str, extra: &str) -> Record {
        let line = format!(
            r#"{{"grayguard":"incident","event":"{event}","rule":"{rule}","trigger":"box_count","at":"{at}"{extra}}}"#
        );
        parse_line(source, &line).unwrap().unwrap()
    }

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn one_incident_spans_every_gateway_until_the_last_end() {
        let records = vec![
            rec("g1", "2026-01-01T00:00:10Z", "shed_start", "r", ""),
            rec("g2", "2026-01-01T00:00:12Z", "shed_start", "r", ""),
            rec(
                "g1",
                "2026-01-01T00:00:40Z",
                "shed_start",
                "r",
                r#","after_probe":true"#,
            ),
            rec("g1", "2026-01-01T00:01:20Z", "shed_end", "r", ""),
            rec("g2", "2026-01-01T00:01:25Z", "shed_end", "r", ""),
            // The next incident of the same rule.
            rec("g1", "2026-01-01T01:00:00Z", "alert_start", "r", ""),
            rec(
                "g1",
                "2026-01-01T01:00:30Z",
                "shed_start",
                "r",
                r#","confirmed_by":"ana""#,
            ),
        ];
        let incidents = group(&records);
        assert_eq!(incidents.len(), 2);
        let first = &incidents[0];
        assert_eq!(first.start, t("2026-01-01T00:00:10Z"));
        assert_eq!(first.end, Some(t("2026-01-01T00:01:25Z")));
        assert_eq!(first.records.len(), 5);
        assert!(!first.alerted());
        assert_eq!(first.gateways(), vec!["g1", "g2"]);
        assert!(first.gray_pods().is_empty());
        let second = &incidents[1];
        assert_eq!(second.end, None, "still shedding");
        assert!(second.alerted());
        assert_eq!(second.confirmed_by(), Some("ana"));
        assert_eq!(
            second.first_shed().map(|r| r.at),
            Some(t("2026-01-01T01:00:30Z"))
        );
    }

    #[test]
    fn who_was_involved_is_every_gateway_and_gray_pod_its_records_name() {
        let records = vec![
            rec(
                "/logs/envoy.log",
                "2026-01-01T00:00:10Z",
                "shed_start",
                "r",
                r#","gateway":"gw-0","gray_pods":["pod-a","pod-b"]"#,
            ),
            rec(
                "/logs/envoy-gw1.log",
                "2026-01-01T00:00:11Z",
                "shed_start",
                "r",
                r#","gateway":"gw-1","gray_pods":["pod-b","pod-c"]"#,
            ),
            rec(
                "/logs/envoy-gw2.log",
                "2026-01-01T00:00:12Z",
                "shed_start",
                "r",
                "",
            ),
        ];
        let i = &group(&records)[0];
        assert_eq!(i.gateways(), vec!["gw-0", "gw-1", "/logs/envoy-gw2.log"]);
        assert_eq!(i.gray_pods(), vec!["pod-a", "pod-b", "pod-c"]);
    }

    #[test]
    fn rules_are_apart_and_a_lone_end_is_kept() {
        let records = vec![
            rec("g", "2026-01-01T00:00:05Z", "shed_end", "a", ""),
            rec("g", "2026-01-01T00:00:10Z", "shed_start", "b", ""),
            rec("g", "2026-01-01T00:00:20Z", "shed_start", "a", ""),
        ];
        let incidents = group(&records);
        let summary: Vec<(&str, bool)> = incidents
            .iter()
            .map(|i| (i.rule.as_str(), i.end.is_some()))
            .collect();
        assert_eq!(summary, vec![("a", true), ("b", false), ("a", false)]);
    }

    #[test]
    fn selection_by_rule_and_time() {
        let records = vec![
            rec("g", "2026-01-01T00:00:00Z", "shed_start", "a", ""),
            rec("g", "2026-01-01T00:10:00Z", "shed_end", "a", ""),
            rec("g", "2026-01-01T01:00:00Z", "shed_start", "b", ""),
            rec("g", "2026-01-01T01:10:00Z", "shed_end", "b", ""),
            rec("g", "2026-01-01T02:00:00Z", "shed_start", "a", ""),
        ];
        let incidents = group(&records);
        let pick = |rule, at: Option<&str>| {
            select(&incidents, rule, at.map(t)).map(|i| (i.rule.clone(), i.start.to_string()))
        };
        let latest = Some(("a".to_string(), "2026-01-01T02:00:00Z".to_string()));
        assert_eq!(pick(None, None), latest);
        assert_eq!(
            pick(Some("b"), None),
            Some(("b".into(), "2026-01-01T01:00:00Z".into()))
        );
        // Inside the first incident of a; between incidents: the one before; before all: the first.
        assert_eq!(
            pick(None, Some("2026-01-01T00:05:00Z")),
            Some(("a".into(), "2026-01-01T00:00:00Z".into()))
        );
        assert_eq!(
            pick(Some("a"), Some("2026-01-01T01:30:00Z")),
            Some(("a".into(), "2026-01-01T00:00:00Z".into()))
        );
        assert_eq!(
            pick(Some("b"), Some("2025-12-31T00:00:00Z")),
            Some(("b".into(), "2026-01-01T01:00:00Z".into()))
        );
        assert_eq!(pick(Some("c"), None), None);
    }

    #[test]
    fn the_window_surrounds_the_incident_and_stops_at_now() {
        let i = &group(&[
            rec("g", "2026-01-01T00:10:00Z", "shed_start", "a", ""),
            rec("g", "2026-01-01T00:11:00Z", "shed_end", "a", ""),
        ])[0];
        let m = SignedDuration::from_mins;
        assert_eq!(
            i.window(t("2026-01-01T01:00:00Z"), m(5), m(2)),
            (t("2026-01-01T00:05:00Z"), t("2026-01-01T00:13:00Z"))
        );
        assert_eq!(
            i.window(t("2026-01-01T00:12:00Z"), m(5), m(2)).1,
            t("2026-01-01T00:12:00Z")
        );
    }

    #[test]
    fn the_last_run_of_a_gauge_is_an_incident() {
        let s = |secs: i64, v: f64| (Timestamp::from_second(secs).unwrap(), v);
        let samples = [
            s(0, 0.0),
            s(5, 1.0),
            s(10, 0.0),
            s(15, 1.0),
            s(20, 2.0),
            s(25, 0.0),
        ];
        let i = from_gauge("r", &samples).unwrap();
        assert_eq!(i.start.as_second(), 15);
        assert_eq!(i.end.map(|e| e.as_second()), Some(25));
        assert_eq!(i.origin, Origin::Gauge);
        let ongoing = from_gauge("r", &samples[..5]).unwrap();
        assert_eq!(ongoing.end, None);
        assert!(from_gauge("r", &[s(0, 0.0)]).is_none());
        assert_eq!(from_gauge("r", &[s(0, 1.0)]).unwrap().start.as_second(), 0);
    }
}
