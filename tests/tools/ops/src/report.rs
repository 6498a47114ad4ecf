//! Gathering a report: the incident from the gateways' logs (or, without them, from the
//! breaker gauge), the charts around it from Prometheus, the gateways' and sidecars' state
//! (every gray pod the incident saw included), and the gray pods' logs. Every source that
//! fails becomes a line under "Problems" and the report is still written with the rest.

use std::path::PathBuf;

use jiff::{SignedDuration, Timestamp};

use grayguard_contract::metrics::filter;

use grayguard_client::fetch::Client;
use grayguard_client::prometheus::{Prometheus, Series};

use crate::chart::{self, Chart, Line, Marker};
use crate::gateway::{self, Gateway};
use crate::incident::{self, Incident};
use crate::info::{self, Role, Row, Sidecar};
use crate::queries::{self, ALERT};
use crate::record::{self, Event, Record};

/// Where to read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sources {
    pub prometheus: String,
    /// Envoy admin base URLs, one per gateway.
    pub gateways: Vec<String>,
    /// Base URLs of the gray sidecars.
    pub gray: Vec<String>,
    /// Base URLs of the stable sidecars.
    pub stable: Vec<String>,
    /// Envoy logs holding the incident records, one per gateway.
    pub envoy_logs: Vec<PathBuf>,
    /// The gray sidecars' logs, one per pod.
    pub gray_logs: Vec<GrayLog>,
}

/// A gray sidecar's log and the pod it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrayLog {
    pub pod: String,
    pub path: PathBuf,
}

/// The last lines of one gray pod's log, or why there are none.
#[derive(Debug, Clone, PartialEq)]
pub struct LogTail {
    pub pod: String,
    /// `None`: the incident saw this pod, but no log of it was given.
    pub path: Option<PathBuf>,
    pub lines: Result<Vec<String>, String>,
}

/// Which incident, and how much around it.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    pub rule: Option<String>,
    pub at: Option<Timestamp>,
    /// Charted before the start and after the end.
    pub before: SignedDuration,
    pub after: SignedDuration,
    /// How far back Prometheus is searched when no log has a record.
    pub lookback: SignedDuration,
    /// Lines of the gray sidecar's log shown.
    pub log_lines: usize,
    /// Most bytes read from the end of each log.
    pub max_log_bytes: u64,
    /// Most points per chart series (sets the query step).
    pub max_points: u32,
    /// Smallest query step, seconds: Prometheus' scrape interval.
    pub min_step_s: u32,
    pub now: Timestamp,
}

/// One chart as rendered, or why it could not be.
#[derive(Debug, Clone, PartialEq)]
pub struct ChartOut {
    pub title: String,
    pub svg: Result<String, String>,
    /// Each series' name and colour.
    pub legend: Vec<(String, String)>,
}

/// Everything a report shows.
#[derive(Debug, Clone)]
pub struct Report {
    pub generated_at: Timestamp,
    pub sources: Sources,
    pub incident: Option<Incident>,
    /// Every incident found in the logs, newest first (the report is about one of them).
    pub all: Vec<Incident>,
    /// The charted span (cut to where data starts).
    pub window: Option<(Timestamp, Timestamp)>,
    pub step_s: u32,
    pub charts: Vec<ChartOut>,
    /// What the gateways did during the incident: label, count.
    pub decisions: Vec<(String, Option<f64>)>,
    pub gateways: Vec<Gateway>,
    /// Every sidecar given, then every gray pod the incident saw that none of them is.
    pub sidecars: Vec<Sidecar>,
    pub diff: Vec<Row>,
    /// The last lines of each gray pod's log given, then a line for each gray pod the
    /// incident saw without one.
    pub gray_logs: Vec<LogTail>,
    pub problems: Vec<String>,
}

/// Reads every source and assembles the report.
pub fn gather(client: &Client, sources: &Sources, opts: &Options) -> Report {
    let mut problems = Vec::new();
    let prom = Prometheus::new(&sources.prometheus, client.clone());
    let (incident, all) = find(&prom, sources, opts, &mut problems);

    let mut window = incident
        .as_ref()
        .map(|i| i.window(opts.now, opts.before, opts.after));
    let step_s = window.map_or(opts.min_step_s, |(a, b)| {
        step(a, b, opts.max_points, opts.min_step_s)
    });
    let mut charts = Vec::new();
    let mut decisions = Vec::new();
    if let (Some(i), Some((from, to))) = (&incident, window) {
        let (drawn, shown_from) = draw_charts(&prom, i, from, to, step_s, opts.min_step_s);
        charts = drawn;
        window = Some((shown_from, to));
        decisions = count_decisions(&prom, i, opts, &mut problems);
    }

    let gateways: Vec<Gateway> = sources
        .gateways
        .iter()
        .map(|g| gateway::fetch(client, g))
        .collect();
    let mut sidecars: Vec<Sidecar> = sources
        .gray
        .iter()
        .map(|u| (Role::Gray, u))
        .chain(sources.stable.iter().map(|u| (Role::Stable, u)))
        .map(|(role, u)| info::fetch(client, role, u))
        .collect();
    let seen: Vec<&str> = incident.as_ref().map_or(Vec::new(), Incident::gray_pods);
    let unreached = info::unreached(&sidecars, &seen);
    sidecars.extend(unreached);
    let diff = info::diff(&sidecars);
    let gray_logs = log_tails(&sources.gray_logs, &seen, opts);

    Report {
        generated_at: opts.now,
        sources: sources.clone(),
        incident,
        all: all.into_iter().rev().collect(),
        window,
        step_s,
        charts,
        decisions,
        gateways,
        sidecars,
        diff,
        gray_logs,
        problems,
    }
}

/// The incident `opts` asks for (by rule and time) from the gateways' logs, else from the
/// breaker and alert gauges in Prometheus; and every incident of the logs, oldest first.
/// What could not be read is added to `problems`.
pub fn find(
    prom: &Prometheus,
    sources: &Sources,
    opts: &Options,
    problems: &mut Vec<String>,
) -> (Option<Incident>, Vec<Incident>) {
    let mut records: Vec<Record> = Vec::new();
    for path in &sources.envoy_logs {
        match record::scan_file(path, opts.max_log_bytes) {
            Ok(scan) => {
                if scan.unreadable > 0 {
                    problems.push(format!(
                        "{}: {} incident line(s) could not be read",
                        path.display(),
                        scan.unreadable
                    ));
                }
                if scan.truncated && scan.records.is_empty() {
                    problems.push(format!(
                        "{}: only its last {} bytes were read",
                        path.display(),
                        opts.max_log_bytes
                    ));
                }
                records.extend(scan.records);
            }
            Err(e) => problems.push(e),
        }
    }
    let all = incident::group(&records);
    let mut incident = incident::select(&all, opts.rule.as_deref(), opts.at).cloned();
    if incident.is_none() {
        match from_prometheus(prom, opts) {
            Ok(found) => incident = found,
            Err(e) => problems.push(e),
        }
    }
    (incident, all)
}

/// The last lines of each gray log given, then a line for each pod in `seen` that has none.
fn log_tails(logs: &[GrayLog], seen: &[&str], opts: &Options) -> Vec<LogTail> {
    let mut out: Vec<LogTail> = logs
        .iter()
        .map(|log| LogTail {
            pod: log.pod.clone(),
            path: Some(log.path.clone()),
            lines: record::read_tail(&log.path, opts.max_log_bytes)
                .map(|(text, _)| last_lines(&text, opts.log_lines))
                .map_err(|e| format!("{}: {e}", log.path.display())),
        })
        .collect();
    for pod in seen {
        if !logs.iter().any(|l| l.pod == *pod) {
            out.push(LogTail {
                pod: pod.to_string(),
                path: None,
                lines: Err(format!(
                    "gray pod {pod} served the incident; no log of it was given (--gray-log {pod}=FILE)"
                )),
            });
        }
    }
    out
}

/// The query step for a window: at most `max_points` points, at least `min_step_s` (a
/// scrape interval).
pub fn step(from: Timestamp, to: Timestamp, max_points: u32, min_step_s: u32) -> u32 {
    let span = to.as_second().saturating_sub(from.as_second()).max(1) as u64;
    let raw = span.div_ceil(u64::from(max_points.max(1)));
    raw.max(u64::from(min_step_s.max(1)))
        .min(u64::from(u32::MAX)) as u32
}

/// `t` rounded down to a whole number of `step_s` steps from the epoch.
pub fn on_grid(t: Timestamp, step_s: u32) -> Timestamp {
    let s = t.as_second();
    Timestamp::from_second(s - s.rem_euclid(i64::from(step_s.max(1)))).unwrap_or(t)
}

/// The rate window for a step: two steps, and at least four scrapes.
pub fn rate_window(step_s: u32, min_step_s: u32) -> String {
    format!("{}s", (2 * step_s).max(4 * min_step_s.max(1)))
}

/// The last `n` lines of `text`.
pub fn last_lines(text: &str, n: usize) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| l.to_string())
        .collect()
}

/// Without records: the latest run of a rule's breaker (or alert) above zero within the
/// lookback, per Prometheus. The samples sit on a grid of whole steps from the epoch, so the
/// same run has the same start whenever it is asked for (a kept report's name holds).
fn from_prometheus(prom: &Prometheus, opts: &Options) -> Result<Option<Incident>, String> {
    let from = opts.now.checked_sub(opts.lookback).unwrap_or(opts.now);
    let step_s = step(from, opts.now, 1000, opts.min_step_s);
    let from = on_grid(from, step_s);
    let mut found: Vec<Incident> = Vec::new();
    for gauge in [filter::RULE_BREAKER_STATE, ALERT] {
        let series = prom.range(&format!("max by (rule) ({gauge})"), from, opts.now, step_s)?;
        for s in series {
            let rule = s.label("rule");
            if opts.rule.as_deref().is_some_and(|r| r != rule) {
                continue;
            }
            found.extend(incident::from_gauge(rule, &s.points));
        }
    }
    let at = opts.at;
    Ok(found
        .into_iter()
        .filter(|i| at.is_none_or(|t| i.start <= t))
        .max_by_key(|i| i.start))
}

fn seconds_from(origin: Timestamp, t: Timestamp) -> f64 {
    t.duration_since(origin).as_secs_f64()
}

/// The label of an event marker.
fn marker_label(r: &Record) -> String {
    let trigger = r.trigger.as_deref().unwrap_or("");
    match (&r.event, &r.confirmed_by) {
        (Event::AlertStart, _) => format!("alert {trigger}"),
        (Event::ShedStart, Some(who)) => format!("shed, confirmed by {who}"),
        (Event::ShedStart, None) if r.after_probe => "re-shed after a probe".to_string(),
        (Event::ShedStart, None) => format!("shed {trigger}"),
        (Event::ShedEnd, _) => "shed ends".to_string(),
        (Event::Other(e), _) => e.clone(),
    }
}

fn draw_charts(
    prom: &Prometheus,
    i: &Incident,
    from: Timestamp,
    to: Timestamp,
    step_s: u32,
    min_step_s: u32,
) -> (Vec<ChartOut>, Timestamp) {
    let origin = i.start;
    let to_line = |legend: &str, s: &Series| Line {
        legend: queries::legend(legend, &s.labels),
        points: s
            .points
            .iter()
            .map(|&(t, v)| (seconds_from(origin, t), v))
            .collect(),
    };
    let mut markers: Vec<Marker> = Vec::new();
    for r in &i.records {
        let m = Marker {
            x: seconds_from(origin, r.at),
            label: marker_label(r),
        };
        // Several gateways log the same moment: one marker is enough.
        if !markers
            .iter()
            .any(|o| o.label == m.label && (o.x - m.x).abs() < 2.0)
        {
            markers.push(m);
        }
    }
    let x_desc = format!("seconds from {} UTC", origin.strftime("%Y-%m-%d %H:%M:%S"));
    let w = rate_window(step_s, min_step_s);
    // Fetch everything first: the charts share one x range, cut to where there is data (a
    // mesh started a minute before the incident has nothing to show five minutes back).
    let fetched: Vec<(queries::Panel, Result<PanelData, String>)> = queries::panels(&i.rule, &w)
        .into_iter()
        .map(|p| {
            let data = (|| {
                let mut lines = Vec::new();
                for q in &p.queries {
                    for s in prom.range(&q.expr, from, to, step_s)? {
                        lines.push(to_line(&q.legend, &s));
                    }
                }
                let mut spans = Vec::new();
                if let Some(q) = &p.spans {
                    for s in prom.range(&q.expr, from, to, step_s)? {
                        let line = to_line(&q.legend, &s);
                        spans.extend(chart::spans(&line.points, f64::from(step_s)));
                    }
                }
                Ok((lines, spans))
            })();
            (p, data)
        })
        .collect();
    let first = fetched
        .iter()
        .filter_map(|(_, d)| d.as_ref().ok())
        .flat_map(|(lines, _)| lines.iter().flat_map(|l| l.points.first().map(|p| p.0)))
        .fold(f64::INFINITY, f64::min);
    let x_from = seconds_from(origin, from);
    let x_to = seconds_from(origin, to);
    let x0 = if first.is_finite() {
        (first - f64::from(step_s)).clamp(x_from, x_to.min(0.0))
    } else {
        x_from
    };
    let shown_from = origin
        .checked_add(SignedDuration::from_secs_f64(x0))
        .unwrap_or(from);
    let charts = fetched
        .into_iter()
        .map(|(p, data)| match data {
            Ok((lines, spans)) => {
                let c = Chart {
                    title: p.title.clone(),
                    unit: p.unit.clone(),
                    style: p.style,
                    lines,
                    spans,
                    markers: markers.clone(),
                    x: (x0, x_to),
                    step_s: f64::from(step_s),
                    x_desc: x_desc.clone(),
                };
                ChartOut {
                    legend: chart::legend(&c),
                    svg: chart::svg(&c),
                    title: p.title,
                }
            }
            Err(e) => ChartOut {
                title: p.title,
                svg: Err(e),
                legend: Vec::new(),
            },
        })
        .collect();
    (charts, shown_from)
}

/// A panel's series and shaded spans.
type PanelData = (Vec<Line>, Vec<(f64, f64)>);

/// Each decision counter's increase over the incident (from its start to its end or now).
fn count_decisions(
    prom: &Prometheus,
    i: &Incident,
    opts: &Options,
    problems: &mut Vec<String>,
) -> Vec<(String, Option<f64>)> {
    let end = i.end.unwrap_or(opts.now).min(opts.now);
    let span_s = end.as_second().saturating_sub(i.start.as_second()).max(1);
    // Reach back one scrape, to the last sample before the start.
    let range = format!("{}s", span_s + i64::from(opts.min_step_s));
    let mut failed = false;
    queries::decision_counters()
        .into_iter()
        .map(|(label, name)| {
            let v = match prom.instant(&format!("sum(increase({name}[{range}]))"), end) {
                Ok(series) => series
                    .first()
                    .and_then(|s| s.points.first())
                    .map(|p| p.1.round()),
                Err(e) => {
                    if !failed {
                        problems.push(e);
                        failed = true;
                    }
                    None
                }
            };
            (label, v)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_and_rate_windows_fit_the_window() {
        let t = |s: i64| Timestamp::from_second(s).unwrap();
        assert_eq!(step(t(0), t(60), 240, 5), 5);
        assert_eq!(step(t(0), t(3600), 240, 5), 15);
        assert_eq!(step(t(0), t(0), 240, 5), 5);
        assert_eq!(step(t(0), t(60), 240, 1), 1);
        assert_eq!(rate_window(5, 5), "20s");
        assert_eq!(rate_window(15, 5), "30s");
        assert_eq!(rate_window(1, 1), "4s");
        assert_eq!(on_grid(t(1_764_515_087), 22), t(1_764_515_082));
        assert_eq!(on_grid(t(44), 22), t(44));
    }

    #[test]
    fn every_gray_pod_seen_gets_its_log_or_says_it_has_none() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.log");
        std::fs::write(&a, "one\ntwo\nWARN three\n").unwrap();
        let logs = vec![
            GrayLog {
                pod: "gray-a".into(),
                path: a,
            },
            GrayLog {
                pod: "gray-c".into(),
                path: dir.path().join("missing.log"),
            },
        ];
        let opts = Options {
            rule: None,
            at: None,
            before: SignedDuration::ZERO,
            after: SignedDuration::ZERO,
            lookback: SignedDuration::from_secs(60),
            log_lines: 2,
            max_log_bytes: 1 << 20,
            max_points: 240,
            min_step_s: 5,
            now: Timestamp::UNIX_EPOCH,
        };
        let tails = log_tails(&logs, &["gray-a", "gray-b"], &opts);
        let pods: Vec<&str> = tails.iter().map(|t| t.pod.as_str()).collect();
        assert_eq!(pods, vec!["gray-a", "gray-c", "gray-b"]);
        assert_eq!(tails[0].lines, Ok(vec!["two".into(), "WARN three".into()]));
        assert!(tails[1].lines.as_ref().unwrap_err().contains("missing.log"));
        assert_eq!(tails[2].path, None);
        assert!(
            tails[2]
                .lines
                .as_ref()
                .unwrap_err()
                .contains("--gray-log gray-b=FILE")
        );
    }

    #[test]
    fn the_log_tail_keeps_the_last_lines() {
        assert_eq!(last_lines("a\nb\nc\n", 2), vec!["b", "c"]);
        assert_eq!(last_lines("a", 5), vec!["a"]);
        assert!(last_lines("", 5).is_empty());
    }
}
