//! The report server's kept reports (`--reports-dir`): Alertmanager's webhook
//! (`POST /alertmanager`) keeps the report of each shed alert's incident, when the alert fires
//! and again when it resolves (rewritten whole, under the same name); `GET /reports/` is the
//! index, newest first; `GET /reports/FILE` a kept report; and the alerts' link,
//! `GET /reports/incident?rule=R&at=T`, leads (303) to the kept report of the incident of
//! rule R at time T, keeping it first if the webhook has not come yet.
//!
//! A report is kept only whole: when a chart could not be drawn (Prometheus did not answer),
//! nothing is written, the answer is a 503 that says why (Alertmanager retries it), and the
//! report kept before, if any, stays as it was. A notification that cannot be read is a 400
//! and changes nothing.

use jiff::Timestamp;
use percent_encoding::percent_decode_str;
use tiny_http::Method;

use grayguard_client::fetch::Client;
use grayguard_client::prometheus::Prometheus;

use crate::alert_hook;
use crate::answer::Answer;
use crate::body;
use crate::html;
use crate::incident::Incident;
use crate::kept::{Name, Shelf, Written};
use crate::kept_index;
use crate::report::{self, Options, Report, Sources};
use crate::serve;

/// Where Alertmanager's webhook receiver posts.
pub const WEBHOOK_PATH: &str = "/alertmanager";
/// Where the kept reports are served (the index at the folder itself).
pub const REPORTS_PATH: &str = "/reports/";
/// The alerts' link to an incident's kept report.
pub const LINK_PATH: &str = "/reports/incident";
/// Largest notification read, bytes (Alertmanager's carry a few alerts, a few KB).
pub const MAX_WEBHOOK_BYTES: u64 = 1024 * 1024;

/// Where the reports come from: the mesh (see [`Mesh`]).
pub trait Reports {
    /// The incident of `rule` at `at` (the one spanning it, else the last before it), if
    /// any; an error says why none could be looked for.
    fn incident(&self, rule: &str, at: Timestamp) -> Result<Option<Incident>, String>;
    /// The report of that incident, as it stands now.
    fn report(&self, rule: &str, at: Timestamp) -> Report;
}

/// The mesh the report server reads: its sources, and the options of its flags (rule, time
/// and now set per request).
#[derive(Debug, Clone)]
pub struct Mesh {
    pub client: Client,
    pub sources: Sources,
    pub options: Options,
}

impl Mesh {
    fn options(&self, rule: &str, at: Timestamp) -> Options {
        Options {
            rule: Some(rule.to_string()),
            at: Some(at),
            now: Timestamp::now(),
            ..self.options.clone()
        }
    }
}

impl Reports for Mesh {
    fn incident(&self, rule: &str, at: Timestamp) -> Result<Option<Incident>, String> {
        let prom = Prometheus::new(&self.sources.prometheus, self.client.clone());
        let mut problems = Vec::new();
        let (incident, _) =
            report::find(&prom, &self.sources, &self.options(rule, at), &mut problems);
        match incident {
            Some(i) => Ok(Some(i)),
            None if problems.is_empty() => Ok(None),
            None => Err(problems.join("; ")),
        }
    }

    fn report(&self, rule: &str, at: Timestamp) -> Report {
        report::gather(&self.client, &self.sources, &self.options(rule, at))
    }
}

/// The kept reports of one reports directory.
#[derive(Debug)]
pub struct Keeper<R> {
    shelf: Shelf,
    reports: R,
}

impl<R: Reports> Keeper<R> {
    pub fn new(shelf: Shelf, reports: R) -> Keeper<R> {
        Keeper { shelf, reports }
    }

    /// The answer to `request` if it is one of the kept reports' (see the module's doc),
    /// logged to standard error when it changed or failed to change what is kept.
    pub fn answer(&self, request: &mut tiny_http::Request) -> Option<Answer> {
        let url = request.url().to_string();
        let (path, query) = url.split_once('?').unwrap_or((&url, ""));
        let ours = path == WEBHOOK_PATH || path == "/reports" || path.starts_with(REPORTS_PATH);
        if !ours {
            return None;
        }
        let answer = match (request.method(), path) {
            (Method::Post, WEBHOOK_PATH) => match body::read(request, MAX_WEBHOOK_BYTES) {
                Ok(bytes) => self.on_webhook(&bytes),
                Err((status, why)) => Answer::text(status, format!("{why}; nothing was written\n")),
            },
            (Method::Get, LINK_PATH) => self.on_link(query),
            (Method::Get, "/reports" | REPORTS_PATH) => self.index(),
            (Method::Get, p) => self.file(&p[REPORTS_PATH.len()..]),
            _ => Answer::text(
                405,
                format!(
                    "POST {WEBHOOK_PATH}; GET {REPORTS_PATH}, {REPORTS_PATH}FILE, {LINK_PATH}?rule=R&at=T\n"
                ),
            ),
        };
        if path == WEBHOOK_PATH || answer.status >= 500 {
            for line in String::from_utf8_lossy(&answer.body).lines() {
                eprintln!("grayguard-report: {} {path}: {line}", answer.status);
            }
        }
        Some(answer)
    }

    /// Alertmanager's notification: every shed alert's incident report kept.
    pub fn on_webhook(&self, body: &[u8]) -> Answer {
        let note = match alert_hook::parse(body) {
            Ok(n) => n,
            Err(e) => {
                return Answer::text(
                    400,
                    format!("unreadable notification: {e}; nothing was written\n"),
                );
            }
        };
        if note.shed.is_empty() {
            return Answer::text(
                200,
                format!(
                    "no shed alert in this notification ({} other alert(s)): nothing to keep\n",
                    note.ignored
                ),
            );
        }
        let mut lines = Vec::new();
        let mut failed = false;
        for alert in &note.shed {
            let what = format!(
                "{} {} of rule {} at {}{}",
                alert.alertname,
                if alert.firing { "firing" } else { "resolved" },
                alert.rule,
                alert.starts_at,
                alert
                    .instance
                    .as_deref()
                    .map(|i| format!(" ({i})"))
                    .unwrap_or_default(),
            );
            match self.keep(&alert.rule, alert.starts_at) {
                Ok(w) => lines.push(format!("{what}: {}", describe(&w))),
                Err(e) => {
                    failed = true;
                    lines.push(format!("{what}: not kept: {e}"));
                }
            }
        }
        let text = lines.join("\n") + "\n";
        Answer::text(if failed { 503 } else { 200 }, text)
    }

    /// The alerts' link: to the kept report of the incident of `rule` at `at`.
    pub fn on_link(&self, query: &str) -> Answer {
        let (rule, at) = match serve::parse_query(query) {
            Ok(serve::Request {
                rule: Some(rule),
                at: Some(at),
            }) => (rule, at),
            Ok(_) => {
                return Answer::text(
                    400,
                    format!("{LINK_PATH} needs rule and at (?rule=R&at=T)\n"),
                );
            }
            Err(e) => return Answer::text(400, format!("{e}\n")),
        };
        let incident = match self.reports.incident(&rule, at) {
            Ok(Some(i)) => i,
            Ok(None) => {
                return Answer::text(
                    404,
                    format!(
                        "no incident of rule {rule} at {at} in the gateways' logs or in Prometheus\n"
                    ),
                );
            }
            Err(e) => {
                return Answer::text(
                    503,
                    format!("the incident of rule {rule} at {at} could not be looked for: {e}\n"),
                );
            }
        };
        let name = Name::of(&incident);
        if !self.shelf.has(&name)
            && let Err(e) = self.keep(&rule, at)
        {
            return Answer::text(
                503,
                format!(
                    "the report of rule {rule}'s incident from {} is not kept yet and could not be kept now: {e}\nAs it stands: /report?rule={rule}&at={}\n",
                    incident.start,
                    at.as_second()
                ),
            );
        }
        Answer::see_other(format!("{REPORTS_PATH}{}", kept_index::href(&name.file())))
    }

    /// The index of the kept reports.
    pub fn index(&self) -> Answer {
        match self.shelf.list() {
            Ok(kept) => Answer::html(kept_index::render(
                &kept,
                self.shelf.limits(),
                Timestamp::now(),
            )),
            Err(e) => Answer::text(503, format!("{e}\n")),
        }
    }

    /// A kept report (`file` as it appears in the URL, percent-encoded).
    pub fn file(&self, file: &str) -> Answer {
        let name = percent_decode_str(file).decode_utf8_lossy();
        match self.shelf.read(&name) {
            Some(bytes) => Answer::html(bytes),
            None => Answer::text(
                404,
                format!("no kept report {name:?}; the index is at {REPORTS_PATH}\n"),
            ),
        }
    }

    /// Keeps the report of the incident of `rule` at `at` as it stands, and the index.
    fn keep(&self, rule: &str, at: Timestamp) -> Result<Written, String> {
        let r = self.reports.report(rule, at);
        let Some(incident) = &r.incident else {
            let why = if r.problems.is_empty() {
                String::new()
            } else {
                format!(" ({})", r.problems.join("; "))
            };
            return Err(format!(
                "no incident of rule {rule} at {at} in the gateways' logs or in Prometheus{why}"
            ));
        };
        let name = Name::of(incident);
        if let Some(e) = r.charts.iter().find_map(|c| c.svg.as_ref().err()) {
            return Err(format!(
                "a chart could not be drawn, Prometheus did not answer ({e}): {} was not written, and what is kept is as it was",
                name.file()
            ));
        }
        let written = self.shelf.keep(&name, html::render(&r).as_bytes())?;
        let index = kept_index::render(&self.shelf.list()?, self.shelf.limits(), Timestamp::now());
        self.shelf.write_index(index.as_bytes())?;
        Ok(written)
    }
}

/// One line on what a write did.
fn describe(w: &Written) -> String {
    let mut s = format!(
        "{} {} ({} KB)",
        if w.replaced { "rewrote" } else { "kept" },
        w.kept.file,
        w.kept.bytes.div_ceil(1024)
    );
    if !w.removed.is_empty() {
        s += &format!(
            "; removed the oldest, over the limits: {}",
            w.removed.join(", ")
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;
    use crate::incident::group;
    use crate::kept::Limits;
    use crate::record::parse_line;
    use crate::report::ChartOut;

    const SHED: &str = r#"{"grayguard":"incident","event":"shed_start","rule":"crane-cameras","trigger":"box_count","at":"2026-11-30T15:04:05.678Z","gateway":"gw-0"}"#;
    const END: &str = r#"{"grayguard":"incident","event":"shed_end","rule":"crane-cameras","at":"2026-11-30T15:09:00Z","gateway":"gw-0"}"#;

    /// The mesh as this module's tests stage it: the records so far, and whether Prometheus
    /// answers.
    struct Staged {
        records: Vec<&'static str>,
        prometheus_up: Cell<bool>,
        gathered: Cell<usize>,
    }

    impl Staged {
        fn new(records: &[&'static str]) -> Staged {
            Staged {
                records: records.to_vec(),
                prometheus_up: Cell::new(true),
                gathered: Cell::new(0),
            }
        }
    }

    impl Reports for &Staged {
        fn incident(&self, rule: &str, at: Timestamp) -> Result<Option<Incident>, String> {
            let records: Vec<_> = self
                .records
                .iter()
                .map(|l| parse_line("gw", l).unwrap().unwrap())
                .collect();
            Ok(crate::incident::select(&group(&records), Some(rule), Some(at)).cloned())
        }

        fn report(&self, rule: &str, at: Timestamp) -> Report {
            self.gathered.set(self.gathered.get() + 1);
            let incident = self.incident(rule, at).unwrap();
            let svg = if self.prometheus_up.get() {
                Ok("<svg></svg>".to_string())
            } else {
                Err("GET http://127.0.0.1:9090/api/v1/query_range: connection refused".to_string())
            };
            Report {
                generated_at: at,
                sources: Sources {
                    prometheus: "http://127.0.0.1:9090".into(),
                    gateways: vec![],
                    gray: vec![],
                    stable: vec![],
                    envoy_logs: vec![],
                    gray_logs: vec![],
                },
                all: incident.iter().cloned().collect(),
                incident,
                window: None,
                step_s: 5,
                charts: vec![ChartOut {
                    title: "Latency".into(),
                    svg,
                    legend: vec![],
                }],
                decisions: vec![],
                gateways: vec![],
                sidecars: vec![],
                diff: vec![],
                gray_logs: vec![],
                problems: vec![],
            }
        }
    }

    fn keeper<'a>(dir: &std::path::Path, mesh: &'a Staged) -> Keeper<&'a Staged> {
        let limits = Limits {
            max_reports: 10,
            max_bytes: 1 << 20,
        };
        Keeper::new(Shelf::open(dir, limits).unwrap(), mesh)
    }

    fn notification(status: &str) -> String {
        format!(
            r#"{{"version":"4","status":"{status}","alerts":[{{"status":"{status}","labels":{{"alertname":"GrayguardRuleShedding","rule":"crane-cameras","instance":"127.0.0.1:9901"}},"startsAt":"2026-11-30T15:04:12Z"}}]}}"#
        )
    }

    const FILE: &str = "crane-cameras.box_count.20261130T150405Z.html";

    fn text(a: &Answer) -> String {
        String::from_utf8_lossy(&a.body).into_owned()
    }

    #[test]
    fn a_shed_alert_keeps_its_incidents_report_and_its_end_rewrites_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut mesh = Staged::new(&[SHED]);
        let k = keeper(dir.path(), &mesh);
        let a = k.on_webhook(notification("firing").as_bytes());
        assert_eq!(a.status, 200, "{}", text(&a));
        assert!(
            text(&a).starts_with("GrayguardRuleShedding firing of rule crane-cameras"),
            "{}",
            text(&a)
        );
        assert!(text(&a).contains(&format!("kept {FILE}")), "{}", text(&a));
        let first = std::fs::read_to_string(dir.path().join(FILE)).unwrap();
        assert!(first.contains("shedding"), "{first}");
        assert!(dir.path().join("index.html").is_file());

        // The shed ends: the resolved notification rewrites the same file with the end.
        mesh.records.push(END);
        let k = keeper(dir.path(), &mesh);
        let a = k.on_webhook(notification("resolved").as_bytes());
        assert_eq!(a.status, 200, "{}", text(&a));
        assert!(
            text(&a).contains(&format!("rewrote {FILE}")),
            "{}",
            text(&a)
        );
        let whole = std::fs::read_to_string(dir.path().join(FILE)).unwrap();
        assert!(
            whole.contains("shed_end") && whole.contains("ended"),
            "{whole}"
        );
        let index = text(&k.index());
        assert!(index.contains(&format!("href=\"{FILE}\"")), "{index}");
        assert_eq!(text(&k.file(FILE)), whole);
    }

    #[test]
    fn without_prometheus_nothing_kept_is_lost() {
        let dir = tempfile::tempdir().unwrap();
        let mesh = Staged::new(&[SHED]);
        let k = keeper(dir.path(), &mesh);
        assert_eq!(k.on_webhook(notification("firing").as_bytes()).status, 200);
        let kept = std::fs::read(dir.path().join(FILE)).unwrap();
        mesh.prometheus_up.set(false);
        let a = k.on_webhook(notification("resolved").as_bytes());
        assert_eq!(a.status, 503, "Alertmanager retries it");
        assert!(
            text(&a).contains("Prometheus did not answer"),
            "{}",
            text(&a)
        );
        assert!(text(&a).contains("connection refused"), "{}", text(&a));
        assert_eq!(std::fs::read(dir.path().join(FILE)).unwrap(), kept);
        // Nothing is written where nothing was kept either.
        let empty = tempfile::tempdir().unwrap();
        let k = keeper(empty.path(), &mesh);
        assert_eq!(k.on_webhook(notification("firing").as_bytes()).status, 503);
        assert!(!empty.path().join(FILE).exists());
    }

    #[test]
    fn an_unreadable_notification_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mesh = Staged::new(&[SHED]);
        let k = keeper(dir.path(), &mesh);
        k.on_webhook(notification("firing").as_bytes());
        let before = std::fs::read(dir.path().join(FILE)).unwrap();
        let a = k.on_webhook(b"{\"alerts\": 3}");
        assert_eq!(a.status, 400);
        assert!(text(&a).contains("nothing was written"), "{}", text(&a));
        assert_eq!(std::fs::read(dir.path().join(FILE)).unwrap(), before);
        // Another team's alert: fine, and nothing to keep.
        let a = k.on_webhook(br#"{"alerts":[{"labels":{"alertname":"NodeDiskFull"}}]}"#);
        assert_eq!(a.status, 200);
        assert!(text(&a).contains("nothing to keep"));
        // A shed alert of a rule without any incident: an error, nothing written.
        let other = notification("firing").replace("crane-cameras", "dock-cameras");
        let a = k.on_webhook(other.as_bytes());
        assert_eq!(a.status, 503);
        assert!(
            text(&a).contains("no incident of rule dock-cameras"),
            "{}",
            text(&a)
        );
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            2,
            "the report and the index"
        );
    }

    #[test]
    fn the_alerts_link_leads_to_the_kept_report_keeping_it_first_if_needed() {
        let dir = tempfile::tempdir().unwrap();
        let mesh = Staged::new(&[SHED]);
        let k = keeper(dir.path(), &mesh);
        // Before the webhook: the link keeps the report, then leads there.
        let a = k.on_link("rule=crane-cameras&instance=127.0.0.1%3A9901&at=1796051052");
        assert_eq!(a.status, 303, "{}", text(&a));
        assert_eq!(a.location.as_deref(), Some(&*format!("/reports/{FILE}")));
        assert!(dir.path().join(FILE).is_file());
        assert_eq!(mesh.gathered.get(), 1);
        // Once kept, the link only leads there.
        let a = k.on_link("rule=crane-cameras&at=2026-11-30T15:05:00Z");
        assert_eq!(a.location.as_deref(), Some(&*format!("/reports/{FILE}")));
        assert_eq!(mesh.gathered.get(), 1, "no second report");
        assert_eq!(k.on_link("rule=crane-cameras").status, 400);
        assert_eq!(k.on_link("rule=crane-cameras&at=soon").status, 400);
        assert_eq!(k.on_link("rule=dock-cameras&at=1796051052").status, 404);
        assert_eq!(k.file("nope.html").status, 404);
        assert_eq!(k.file("..%2Findex.html").status, 404);
        assert_eq!(k.file("index.html").status, 200);
    }
}
