//! The report as one self-contained HTML page: inline CSS, inline SVG charts, no scripts and
//! nothing fetched when it is opened, so it can be attached to a ticket or mailed. maud
//! escapes every value; only the SVG that plotters produced is inserted as is.

use jiff::{SignedDuration, Timestamp};
use maud::{DOCTYPE, Markup, PreEscaped, html};
use serde_json::{Map, Value};

use crate::incident::{Incident, Origin};
use crate::info::Source;
use crate::record::{Event, Record};
use crate::report::Report;

/// The report's style, shared with the kept reports' index.
pub const CSS: &str = r#"
body{font-family:"DejaVu Sans",system-ui,sans-serif;margin:0;color:#1d1d1f;background:#f5f5f7}
main{max-width:1000px;margin:0 auto;padding:24px}
header{background:#1d1d1f;color:#fff;padding:20px 24px}
header h1{margin:0 0 6px;font-size:22px}
header p{margin:0;color:#d2d2d7}
h2{font-size:18px;margin:28px 0 10px;border-bottom:1px solid #d2d2d7;padding-bottom:4px}
section{background:#fff;border-radius:8px;padding:4px 18px 14px;margin:16px 0}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #eee;vertical-align:top}
th{background:#fafafa;font-weight:600}
td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.differs td{background:#fff4e5}
tr.crossed td{background:#fdecea}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600}
.shed{background:#d93025;color:#fff}.alerting{background:#f29900;color:#fff}
.ended{background:#188038;color:#fff}.none{background:#5f6368;color:#fff}
.note{color:#5f6368;font-size:13px}
.facts{display:flex;gap:12px;flex-wrap:wrap;margin:10px 0}
.fact{background:#f5f5f7;border-radius:6px;padding:8px 12px;min-width:140px}
.fact b{display:block;font-size:18px}
.chart svg{width:100%;height:auto;display:block;margin:0 0 8px}
.ctitle{font-weight:600;margin:22px 0 4px;text-align:center}
.legend{font-size:12.5px;margin:0 0 0 64px;display:flex;gap:16px;flex-wrap:wrap;justify-content:center}
.swatch{display:inline-block;width:18px;height:3px;vertical-align:middle;margin-right:6px}
pre{background:#1d1d1f;color:#e8eaed;padding:12px;border-radius:6px;font-size:11.5px;overflow-x:auto;white-space:pre-wrap;word-break:break-all}
pre .hl{color:#fbbc04}
code{font-size:12px}
"#;

/// A time as `2026-11-30 15:04:05 UTC`.
pub fn when(t: Timestamp) -> String {
    t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// A duration as `1h 2m 3s` (whole seconds).
pub fn span(d: SignedDuration) -> String {
    let s = d.as_secs().max(0);
    match (s / 3600, s % 3600 / 60, s % 60) {
        (0, 0, sec) => format!("{sec}s"),
        (0, m, sec) => format!("{m}m {sec}s"),
        (h, m, sec) => format!("{h}h {m}m {sec}s"),
    }
}

fn number(v: &Value) -> String {
    match v.as_f64() {
        Some(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{f:.0}"),
        Some(f) => format!("{f:.3}"),
        None => match v {
            Value::String(s) => s.clone(),
            Value::Null => "—".into(),
            other => other.to_string(),
        },
    }
}

/// The state of the incident for the header badge.
fn status(i: &Incident) -> (&'static str, &'static str) {
    match (i.end, i.first_shed()) {
        (Some(_), _) => ("ended", "ended"),
        (None, Some(_)) => ("shed", "shedding"),
        (None, None) if i.alerted() => ("alerting", "alerting: waits for a person"),
        (None, None) => ("shed", "active"),
    }
}

/// The whole page.
pub fn render(r: &Report) -> String {
    let title = match &r.incident {
        Some(i) => format!(
            "grayguard incident: {} {} at {}",
            i.rule,
            i.trigger().unwrap_or(""),
            when(i.start)
        ),
        None => "grayguard incident report: no incident found".to_string(),
    };
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) }
                style { (PreEscaped(CSS)) }
            }
            body {
                (header(r))
                main {
                    @if let Some(i) = &r.incident {
                        (summary(r, i))
                        (evidence(i))
                        (charts(r))
                        (decisions(r))
                    } @else {
                        section {
                            h2 { "No incident" }
                            p { "No incident record in the logs read, and no breaker or alert above zero in Prometheus within the lookback. The sections below show the mesh as it is now." }
                        }
                    }
                    (diff(r))
                    (gateways(r))
                    (gray_logs(r))
                    (others(r))
                    (problems(r))
                    (footer(r))
                }
            }
        }
    };
    page.into_string()
}

fn header(r: &Report) -> Markup {
    html! {
        header {
            h1 { "grayguard incident report" }
            @if let Some(i) = &r.incident {
                @let (class, text) = status(i);
                p {
                    "rule " b { (i.rule) }
                    @if let Some(t) = i.trigger() { " · trigger " b { (t) } }
                    " · " span class={ "badge " (class) } { (text) }
                    " · started " (when(i.start))
                    @if let Some(e) = i.end { " · ended " (when(e)) " (" (span(e.duration_since(i.start))) ")" }
                }
            } @else {
                p { "generated " (when(r.generated_at)) }
            }
        }
    }
}

fn summary(r: &Report, i: &Incident) -> Markup {
    let first_shed = i.first_shed();
    let alert = i.records.iter().find(|x| x.event == Event::AlertStart);
    let shed_count = r
        .decisions
        .iter()
        .find(|(l, _)| l == "shed to stable")
        .and_then(|(_, v)| *v);
    html! {
        section id="summary" {
            h2 { "What happened" }
            div.facts {
                div.fact { span.note { "first alert or shed" } b { (i.start.strftime("%H:%M:%S")) } }
                @if let (Some(a), Some(s)) = (alert, first_shed) {
                    div.fact { span.note { "alert → shed" } b { (span(s.at.duration_since(a.at))) } }
                }
                @if let Some(who) = i.confirmed_by() {
                    div.fact { span.note { "confirmed by" } b { (who) } }
                }
                div.fact {
                    span.note { "duration" }
                    b { (span(i.end.unwrap_or(r.generated_at).duration_since(i.start))) @if i.end.is_none() { " so far" } }
                }
                @if let Some(n) = shed_count {
                    div.fact { span.note { "requests shed to stable" } b { (format!("{n:.0}")) } }
                }
            }
            @if i.origin == Origin::Records {
                p.note {
                    "Gateways: " @for (k, g) in i.gateways().iter().enumerate() { @if k > 0 { ", " } code { (short_source(g)) } }
                    ". Gray pods seen: "
                    @let pods = i.gray_pods();
                    @if pods.is_empty() { "none named in the records" }
                    @for (k, p) in pods.iter().enumerate() { @if k > 0 { ", " } code { (p) } }
                    "."
                }
            }
            @match i.origin {
                Origin::Records => {
                    table {
                        tr { th { "time (UTC)" } th { "gateway" } th { "event" } th { "trigger" } th { "details" } }
                        @for rec in &i.records {
                            tr {
                                td { (rec.at.strftime("%H:%M:%S%.3f")) }
                                td { code { (rec.gateway.as_deref().unwrap_or(short_source(&rec.source))) } }
                                td { (rec.event.as_str()) }
                                td { (rec.trigger.as_deref().unwrap_or("")) }
                                td { (details(rec)) }
                            }
                        }
                    }
                }
                Origin::Gauge => {
                    p.note { "No incident record was found in the logs given; the span comes from the breaker or alert gauge in Prometheus, so the detector's evidence is not available." }
                }
            }
        }
    }
}

/// The file name of a log path (the gateway it belongs to).
fn short_source(s: &str) -> &str {
    s.rsplit('/').next().unwrap_or(s)
}

fn details(rec: &Record) -> String {
    let f = &rec.fields;
    let mut parts = Vec::new();
    if let Some(who) = &rec.confirmed_by {
        parts.push(format!("confirmed by {who}"));
    }
    if rec.after_probe {
        parts.push("a half-open probe failed".into());
    }
    if let Some(reason) = f.get("flag_reason").and_then(Value::as_str) {
        parts.push(format!("sidecar flag: {reason}"));
    }
    if let Some(until) = f.get("shed_until").and_then(Value::as_str) {
        parts.push(format!("shed until {until}"));
    }
    if let Some(d) = f.get("shed_duration_s").and_then(Value::as_f64) {
        parts.push(format!("shed for {d:.1} s"));
    }
    if f.get("dry_run").and_then(Value::as_bool) == Some(true) {
        parts.push("dry run: nothing was shed".into());
    }
    if let Some(scope) = f.get("scope").and_then(Value::as_str) {
        parts.push(format!("scope {scope}"));
    }
    parts.join("; ")
}

fn evidence(i: &Incident) -> Markup {
    // The records that started something carry the detector's view at that moment.
    let starts: Vec<&Record> = i
        .records
        .iter()
        .filter(|r| matches!(r.event, Event::AlertStart | Event::ShedStart))
        .collect();
    if starts.is_empty() {
        return html! {};
    }
    html! {
        section id="evidence" {
            h2 { "The detector's evidence" }
            p.note {
                "Each test bets against \"gray has not changed beyond its margin\" on every gray reply, restarting wherever its evidence fell back (a change detector); it sheds when its evidence reaches its threshold, ln(arl · tests), which keeps false sheds below one per arl gray replies. "
                "The change point is where the shedding run of bets began; the estimate is the effect since then (a latency ratio, a relative box-count shift, a failure-share difference, a mean agreement with stable, or a mean against a ceiling) and the bound is what the same bets prove at the shed threshold."
            }
            @for (k, rec) in starts.iter().enumerate() {
                h3 {
                    (rec.event.as_str()) " · " (rec.trigger.as_deref().unwrap_or("")) " · " (rec.at.strftime("%H:%M:%S%.3f"))
                    " · " code { (short_source(&rec.source)) }
                }
                @let f = &rec.fields;
                // A re-shed after a probe often carries the tests as they stood: say so
                // rather than repeat them.
                @let tests = f.get("evidence").and_then(Value::as_array).filter(|t| !t.is_empty());
                @let repeats = tests.is_some() && starts[..k].iter().any(|p| p.fields.get("evidence") == f.get("evidence"));
                @if repeats {
                    p.note { "The same tests as above (the record carries them as last evaluated)." }
                } @else {
                p.note {
                    "detector " (f.get("detector").and_then(Value::as_str).unwrap_or("?"))
                    @if let Some(a) = f.get("arl") { ", arl " (number(a)) " gray replies per false shed" }
                    @if let Some(c) = f.get("consecutive_failures") { ", consecutive failures " (number(c)) }
                    @if let (Some(g), Some(s)) = (f.get("gray").and_then(Value::as_str), f.get("stable").and_then(Value::as_str)) {
                        ", gray " code { (g) } " vs stable " code { (s) }
                    }
                }
                @if tests.is_none() && f.get("detector").and_then(Value::as_str) == Some("sequential") {
                    p.note {
                        @match (rec.trigger.as_deref(), f.get("flag_reason").and_then(Value::as_str)) {
                            (Some("flag"), Some(reason)) => { "The sidecar's own watchdog flagged its replies (" code { (reason) } "), which sheds at once: no statistical test was needed." }
                            (Some("consecutive_failures"), _) => { "Gray failed " (number(&f["consecutive_failures"])) " times in a row, which sheds at once: no statistical test was needed." }
                            _ => { "The record carries no test." }
                        }
                    }
                }
                @if let Some(tests) = tests {
                    table {
                        tr {
                            th { "test" } th { "log e-value" } th { "threshold" } th { "crossed" }
                            th { "gray n" } th { "control n" } th { "change at" } th { "since" } th { "estimate" } th { "bound" }
                        }
                        @for t in tests {
                            @let crossed = t["crossed"].as_bool() == Some(true);
                            tr class=[crossed.then_some("crossed")] {
                                td { code { (t["test"].as_str().unwrap_or("?")) } }
                                td.num { (number(&t["log_e"])) }
                                td.num { (number(&t["threshold"])) }
                                td { @if crossed { b { "yes" } } @else { "no" } }
                                td.num { (number(&t["gray_n"])) }
                                td.num { (number(&t["control_n"])) }
                                td.num {
                                    (number(&t["change_at"]))
                                    @if let Some(at) = t["changed_at"].as_str() { br; small { (at) } }
                                }
                                td.num { (number(&t["since_n"])) }
                                td.num { (number(&t["estimate"])) }
                                td.num {
                                    @if let Some(b) = t.get("at_least") { "≥ " (number(b)) }
                                    @if let Some(b) = t.get("at_most") { "≤ " (number(b)) }
                                }
                            }
                        }
                    }
                }
                @if let Some(Value::Object(w)) = f.get("window") {
                    (key_values("the unit's window", w))
                }
                @if let Some(Value::Object(l)) = f.get("limits") {
                    (key_values("limits in force", l))
                }
                }
            }
        }
    }
}

fn key_values(caption: &str, m: &Map<String, Value>) -> Markup {
    html! {
        p.note { (caption) ": "
            @for (k, (name, v)) in m.iter().enumerate() {
                @if k > 0 { " · " }
                code { (name) } " " (number(v))
            }
        }
    }
}

fn charts(r: &Report) -> Markup {
    html! {
        section id="charts" {
            h2 { "Around the incident" }
            @if let Some((from, to)) = r.window {
                p.note {
                    "From " (when(from)) " to " (when(to)) ", one point every " (r.step_s) " s (Prometheus " code { (r.sources.prometheus) } "). "
                    "Dashed lines mark the incident's events."
                }
            }
            @for c in &r.charts {
                div.chart {
                    p.ctitle { (c.title) }
                    @if !c.legend.is_empty() {
                        div.legend {
                            @for (name, color) in &c.legend {
                                span { span.swatch style={ "background:" (color) } {} (name) }
                            }
                        }
                    }
                    @match &c.svg {
                        Ok(svg) => (PreEscaped(svg)),
                        Err(e) => p.note { (c.title) ": " (e) },
                    }
                }
            }
        }
    }
}

fn decisions(r: &Report) -> Markup {
    if r.decisions.is_empty() {
        return html! {};
    }
    html! {
        section id="decisions" {
            h2 { "Decisions during the incident" }
            p.note { "Increase of each gateway counter from the incident's start to its end (or now), summed over gateways." }
            table {
                @for (label, v) in &r.decisions {
                    tr { td { (label) } td.num { @match v { Some(n) => (format!("{n:.0}")), None => "—" } } }
                }
            }
        }
    }
}

fn diff(r: &Report) -> Markup {
    html! {
        section id="diff" {
            h2 { "Gray vs stable" }
            @if r.sidecars.is_empty() {
                p.note { "No sidecar URLs given." }
            } @else {
                p.note { "What each sidecar serves (" code { "GET /info" } "), one column per pod: every gray and stable sidecar given, and every gray pod the incident saw. Highlighted: gray and stable differ. A blank is unknown, not a difference." }
                table {
                    tr {
                        th { "" }
                        @for s in &r.sidecars {
                            th {
                                (s.role.as_str())
                                @if let Some(pod) = &s.pod { " " code { (pod) } }
                                @if !s.url.is_empty() { br; code { (s.url) } }
                            }
                        }
                    }
                    @for row in &r.diff {
                        tr class=[row.differs.then_some("differs")] {
                            td { code { (row.key) } }
                            @for v in &row.values { td { (v.as_deref().unwrap_or("")) } }
                        }
                    }
                }
                @for s in &r.sidecars {
                    @match &s.source {
                        Source::Info => {},
                        Source::Metrics(why) => p.note { (s.url) ": no " code { "/info" } " (" (why) "); described by its " code { "grayguard_sidecar_info" } " metric." },
                        Source::None(why) if s.url.is_empty() => p.note { (why) },
                        Source::None(why) => p.note { (s.url) ": " (why) },
                    }
                }
            }
        }
    }
}

fn gateways(r: &Report) -> Markup {
    html! {
        section id="gateways" {
            h2 { "Gateways now" }
            @for g in &r.gateways {
                h3 { code { (g.url) } }
                @match &g.server {
                    Ok(s) => p.note { "Envoy " (s.version) ", " (s.state) ", up " (s.uptime) },
                    Err(e) => p.note { (e) },
                }
                @match &g.rules {
                    Ok(rules) if !rules.is_empty() => table {
                        tr { th { "rule" } th { "state" } }
                        @for (rule, st) in rules { tr { td { (rule) } td { (st.describe()) } } }
                    },
                    Ok(_) => p.note { "no per-rule breaker gauges (are the stats tags rule and trigger configured?)" },
                    Err(e) => p.note { (e) },
                }
                @match &g.settings {
                    Ok(s) => p.note { "breach settings: "
                        @for (k, (name, v)) in s.iter().enumerate() { @if k > 0 { " · " } code { (name) } " " (v) }
                    },
                    Err(e) => p.note { (e) },
                }
            }
        }
    }
}

fn gray_logs(r: &Report) -> Markup {
    html! {
        section id="log" {
            h2 { "Gray sidecar logs (last lines)" }
            @if r.gray_logs.is_empty() {
                p.note { "No gray sidecar log given (" code { "--gray-log POD=FILE" } ")." }
            }
            @for tail in &r.gray_logs {
                h3 { "pod " code { (tail.pod) } }
                @match &tail.lines {
                    Ok(lines) if lines.is_empty() => p.note { "(empty)" },
                    Ok(lines) => {
                        @if let Some(p) = &tail.path { p.note { code { (p.display()) } } }
                        pre {
                            @for l in lines {
                                @if l.contains("WARN") || l.contains("ERROR") || l.contains("breach") {
                                    span.hl { (l) } "\n"
                                } @else { (l) "\n" }
                            }
                        }
                    },
                    Err(e) => p.note { (e) },
                }
            }
        }
    }
}

fn others(r: &Report) -> Markup {
    if r.all.len() < 2 {
        return html! {};
    }
    html! {
        section id="others" {
            h2 { "Every incident in the logs" }
            p.note { "Newest first. Another one: " code { "grayguard-report --rule RULE --at TIME" } "." }
            table {
                tr { th { "rule" } th { "trigger" } th { "start" } th { "end" } }
                @for i in r.all.iter().take(50) {
                    tr {
                        td { (i.rule) } td { (i.trigger().unwrap_or("")) } td { (when(i.start)) }
                        td { @match i.end { Some(e) => (when(e)), None => "ongoing" } }
                    }
                }
            }
        }
    }
}

fn problems(r: &Report) -> Markup {
    let mut all: Vec<String> = r.problems.clone();
    for c in &r.charts {
        if let Err(e) = &c.svg {
            all.push(format!("{}: {e}", c.title));
        }
    }
    if all.is_empty() {
        return html! {};
    }
    html! {
        section id="problems" {
            h2 { "Problems reading the sources" }
            ul { @for p in &all { li { (p) } } }
        }
    }
}

fn footer(r: &Report) -> Markup {
    let s = &r.sources;
    html! {
        p.note {
            "Generated " (when(r.generated_at)) " by grayguard-report from Prometheus " code { (s.prometheus) }
            ", gateways " @for g in &s.gateways { code { (g) } " " }
            ", logs " @for l in &s.envoy_logs { code { (l.display()) } " " } "."
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::incident::group;
    use crate::record::parse_line;
    use crate::report::{Report, Sources};

    fn report(lines: &[&str]) -> Report {
        let records: Vec<Record> = lines
            .iter()
            .map(|l| parse_line("/logs/envoy.log", l).unwrap().unwrap())
            .collect();
        let all = group(&records);
        Report {
            generated_at: "2026-11-30T15:10:00Z".parse().unwrap(),
            sources: Sources {
                prometheus: "http://127.0.0.1:9090".into(),
                gateways: vec!["http://127.0.0.1:9901".into()],
                gray: vec![],
                stable: vec![],
                envoy_logs: vec!["/logs/envoy.log".into()],
                gray_logs: vec![],
            },
            incident: all.last().cloned(),
            all,
            window: None,
            step_s: 5,
            charts: vec![],
            decisions: vec![],
            gateways: vec![],
            sidecars: vec![],
            diff: vec![],
            gray_logs: vec![],
            problems: vec![
                "GET http://127.0.0.1:9090/api/v1/query_range: connection refused".into(),
            ],
        }
    }

    #[test]
    fn a_flag_shed_says_why_instead_of_an_empty_table() {
        let page = render(&report(&[
            r#"{"grayguard":"incident","event":"shed_start","trigger":"flag","flag_reason":"latency","rule":"crane-cameras","at":"2026-11-30T15:04:05Z","detector":"sequential","evidence":[]}"#,
        ]));
        assert!(
            page.contains("The sidecar's own watchdog flagged its replies"),
            "{page}"
        );
        assert!(!page.contains("<th>log e-value</th>"));
        assert!(page.contains("Problems reading the sources"));
        assert!(page.contains("connection refused"));
    }

    #[test]
    fn a_confirmed_shed_and_its_evidence() {
        let page = render(&report(&[
            r#"{"grayguard":"incident","event":"alert_start","trigger":"box_count","rule":"crane-cameras","at":"2026-11-30T15:04:05Z","detector":"sequential","arl":1000000,"evidence":[{"test":"box_count_above","log_e":16.25,"threshold":15.62,"crossed":true,"gray_n":40,"control_n":120,"change_at":25,"changed_at":"2026-11-30T15:04:03.100Z","since_n":15,"estimate":2.8,"at_least":1.3}]}"#,
            r#"{"grayguard":"incident","event":"shed_start","trigger":"box_count","rule":"crane-cameras","at":"2026-11-30T15:05:35Z","confirmed_by":"ana <ana@example.com>","detector":"sequential","evidence":[{"test":"box_count_above","log_e":17.1,"threshold":15.62,"crossed":true}]}"#,
        ]));
        assert!(page.contains("alerting") || page.contains("shedding"));
        assert!(
            page.contains("alert → shed"),
            "time from the alert to the confirmation"
        );
        assert!(page.contains("1m 30s"));
        // Values from logs are escaped, never markup.
        assert!(
            page.contains("confirmed by ana &lt;ana@example.com&gt;"),
            "{page}"
        );
        assert!(!page.contains("<ana@example.com>"));
        assert!(page.contains("<tr class=\"crossed\">"));
        assert!(page.contains("≥ 1.300"), "{page}");
        assert!(page.contains("2026-11-30T15:04:03.100Z"));
        assert!(!page.contains("<script"));
    }

    #[test]
    fn names_the_gateways_the_gray_pods_and_each_pods_log() {
        use crate::info::{Role, Sidecar};
        use crate::report::LogTail;
        let mut r = report(&[
            r#"{"grayguard":"incident","event":"shed_start","trigger":"box_count","rule":"crane-cameras","at":"2026-11-30T15:04:05Z","gateway":"gw-0","gray_pods":["gray-a","gray-b"]}"#,
        ]);
        let side = |role, pod: &str, url: &str, source| Sidecar {
            role,
            url: url.into(),
            pod: Some(pod.into()),
            source,
            fields: Default::default(),
        };
        r.sidecars = vec![
            side(Role::Gray, "gray-a", "http://10.0.0.7:8080", Source::Info),
            side(
                Role::Stable,
                "stable-a",
                "http://10.0.0.8:8080",
                Source::Info,
            ),
            side(
                Role::Gray,
                "gray-b",
                "",
                Source::None(
                    "gray pod gray-b served the incident, but no --gray URL answers as it".into(),
                ),
            ),
        ];
        r.gray_logs = vec![
            LogTail { pod: "gray-a".into(), path: Some("/logs/a.log".into()), lines: Ok(vec!["WARN breach box_count".into()]) },
            LogTail { pod: "gray-b".into(), path: None, lines: Err("gray pod gray-b served the incident; no log of it was given (--gray-log gray-b=FILE)".into()) },
        ];
        let page = render(&r);
        assert!(page.contains("Gateways: <code>gw-0</code>"), "{page}");
        assert!(
            page.contains("Gray pods seen: <code>gray-a</code>, <code>gray-b</code>"),
            "{page}"
        );
        assert!(
            page.contains("<td><code>gw-0</code></td>"),
            "the record's gateway"
        );
        assert!(
            page.contains("gray <code>gray-b</code></th>"),
            "a column for the pod no URL answers as"
        );
        assert!(page.contains("no --gray URL answers as it"));
        assert!(page.contains("pod <code>gray-a</code>"));
        assert!(page.contains("<span class=\"hl\">WARN breach box_count</span>"));
        assert!(page.contains("--gray-log gray-b=FILE"));
    }

    #[test]
    fn no_incident_is_said_plainly() {
        let page = render(&report(&[]));
        assert!(page.contains("No incident"));
        assert!(page.contains("<title>grayguard incident report: no incident found</title>"));
    }

    #[test]
    fn durations_and_numbers_read_well() {
        assert_eq!(span(SignedDuration::from_secs(42)), "42s");
        assert_eq!(span(SignedDuration::from_secs(72)), "1m 12s");
        assert_eq!(span(SignedDuration::from_secs(3723)), "1h 2m 3s");
        assert_eq!(span(SignedDuration::from_secs(-5)), "0s");
        assert_eq!(number(&serde_json::json!(10.0)), "10");
        assert_eq!(number(&serde_json::json!(8.2519)), "8.252");
        assert_eq!(number(&serde_json::json!(null)), "—");
        assert_eq!(short_source("/a/b/envoy.log"), "envoy.log");
    }
}
