//! The on-call engineer's path, end to end with real processes: the front Envoy with the
//! filter, the stable and the oversensitive gray sidecar with the real model, a real
//! Prometheus evaluating mesh-config/prometheus/rules.yaml, the real Alertmanager with the
//! local mesh's configuration and templates, grayguard-alert-sink standing in for Slack,
//! WeChat Work and the webhook consumer, and grayguard-report serving the reports the
//! messages link to.
//!
//! grayguard sheds the gray cohort; Prometheus fires the shed alert; Alertmanager posts it to
//! the report server, which keeps this incident's report (one file in its reports folder, and
//! the index), and delivers it to all three receivers with the report link; the link leads to
//! that kept report (its record, evidence, every chart, decisions, gray vs stable for the gray
//! pod, the pod's log); and headless Chromium renders it (the PNG and the page are kept in
//! target/test-artifacts/on_call/ for a person to look at). When the shed ends (a healthy gray
//! replaces the bad one), the resolved notification rewrites the same file with the whole
//! incident.
//!
//! In confirm mode the same path carries the one-click confirmation: the alert asks a
//! person, the link in the message sheds the rule at the gateway, the decision header and
//! the incident record say so.

use std::time::{Duration, Instant};

use grayguard_contract::headers;
use grayguard_contract::operator::SECRET_ENV;
use grayguard_contract::record::Event;
use grayguard_contract::{Decision, Note, Side};
use grayguard_e2e::alerting::{AlertSink, Alertmanager, ReportServer, link};
use grayguard_e2e::mesh::{GRAY, Mesh, PHOTOS, STABLE, crane_rule_config, sidecar};
use grayguard_e2e::prometheus::Prometheus;
use grayguard_e2e::wait::eventually;
use grayguard_e2e::{browser, http, paths};
use serde_json::json;

const MIN_SAMPLES: usize = 5;
/// The pods the sidecars say they are (`x-served-by`), as a Deployment's are named.
const GRAY_POD: &str = "yolo-v10-gray-7d9f8c-x2x4q";
const STABLE_POD: &str = "yolo-v9-prod-5c6b7d-k8s2p";
/// The report's charts: latency, NMS time, throughput, boxes, errors, memory, evidence,
/// breaker, decisions.
const CHARTS: usize = 9;
/// How long the shed lasts where the test ends it.
const SHORT_SHED_S: u64 = 15;

/// The canonical rule; box count decides (latency and failure margins far away); the shed
/// outlasts the test.
fn plugin_config() -> String {
    plugin_config_with(None)
}

/// [`plugin_config`] with `breach.action` set (`shed` or `confirm`); confirm mode gets an
/// operator listener on a free port (its secret comes from the VM's environment, which the
/// harness sets).
fn plugin_config_with(action: Option<&str>) -> String {
    plugin_config_shed_for(action, 300)
}

/// A shed of `shed_for_s` seconds, and probes to gray on half of the cohort's requests after.
fn plugin_config_shed_for(action: Option<&str>, shed_for_s: u64) -> String {
    let mut config = crane_rule_config(json!({
        "detector": "sequential",
        "flag_header": headers::BREACH,
        "latency": { "header": headers::INFERENCE_LATENCY_MS, "max_ratio": 5, "min_samples": MIN_SAMPLES },
        "box_count": { "header": headers::BOX_COUNT, "max_shift": 0.25, "min_samples": MIN_SAMPLES },
        "error_rate": { "max_excess": 0.3, "min_samples": MIN_SAMPLES },
        "consecutive_failures": 5,
        "shed_for_s": shed_for_s,
        "probe_percent": if shed_for_s < 300 { 50 } else { 10 },
        "scope": "rule",
        "dry_run": false,
    }));
    if let Some(a) = action {
        config["breach"]["action"] = json!(a);
    }
    if action == Some("confirm") {
        config["operator"] = json!({
            "port": grayguard_e2e::process::free_port(),
            "secret_env": SECRET_ENV,
            "identity_header": "x-auth-request-email",
        });
    }
    config.to_string()
}

/// Prometheus as the local mesh's: the project's rules, alerts to `alertmanager`, the
/// gateway's `operator_url`, the sidecars' `track` and `version`; 1 s scrapes and
/// evaluations.
fn prometheus_config(mesh: &Mesh, alertmanager: u16, operator: &str) -> String {
    let rules = paths::root().join("mesh-config/prometheus/rules.yaml");
    format!(
        r#"global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: ["{rules}"]
alerting:
  alertmanagers:
    - static_configs: [{{ targets: ["127.0.0.1:{alertmanager}"] }}]
scrape_configs:
  - job_name: envoy
    metrics_path: /stats/prometheus
    static_configs:
      - targets: ["127.0.0.1:{admin}"]
        labels: {{ operator_url: "{operator}" }}
  - job_name: yolo-detector
    static_configs:
      - targets: ["127.0.0.1:{stable}"]
        labels: {{ version: {STABLE}, track: stable }}
      - targets: ["127.0.0.1:{gray}"]
        labels: {{ version: {GRAY}, track: gray }}
"#,
        rules = rules.display(),
        admin = mesh.envoy.admin,
        stable = mesh.stable.port,
        gray = mesh.gray.port,
    )
}

/// The whole alert path around a mesh with the real model: the stable and the oversensitive
/// gray sidecar, the alert sink, the report server (reading its sources per request, so it
/// starts before Prometheus exists), Alertmanager with the local configuration, and a
/// Prometheus scraping the mesh every second with the project's rules. Dropped in reverse.
struct AlertPath {
    photos: Vec<Vec<u8>>,
    /// Pairs of requests sent so far.
    sent: usize,
    mesh: Mesh,
    sink: AlertSink,
    reports: ReportServer,
    // Running for the path's life; the test talks to them through the others.
    _alertmanager: Alertmanager,
    _prometheus: Prometheus,
}

impl AlertPath {
    fn start(plugin_config: &str) -> AlertPath {
        let photos = paths::photos(&PHOTOS);
        let mesh = Mesh::start_with(
            plugin_config,
            sidecar(STABLE, "0.25").env("POD_NAME", STABLE_POD),
            sidecar(GRAY, "0.001").env("POD_NAME", GRAY_POD),
            2,
        );
        let sink = AlertSink::start();
        let url = |port: u16| format!("http://127.0.0.1:{port}");
        let prom_port = grayguard_e2e::process::free_port();
        let sources: Vec<String> = [
            ("--prometheus", url(prom_port)),
            ("--gateway", url(mesh.envoy.admin)),
            ("--gray", url(mesh.gray.port)),
            ("--stable", url(mesh.stable.port)),
            (
                "--envoy-log",
                mesh.envoy.proc.log_path().display().to_string(),
            ),
            (
                "--gray-log",
                format!("{GRAY_POD}={}", mesh.gray.proc.log_path().display()),
            ),
            // This Prometheus scrapes every second, since the mesh started (a minute before).
            ("--min-step-s", "1".to_string()),
            ("--before-s", "60".to_string()),
        ]
        .into_iter()
        .flat_map(|(k, v)| [k.to_string(), v])
        .collect();
        let reports = ReportServer::start(&sources);
        let am = Alertmanager::start(sink.port, reports.port);
        // Without confirm mode there is no operator listener and the link is never used.
        let operator =
            operator_url(&mesh).unwrap_or_else(|| url(grayguard_e2e::process::free_port()));
        let prom =
            Prometheus::start_config_on(&prometheus_config(&mesh, am.port, &operator), prom_port);
        prom.wait_targets_up(3, Duration::from_secs(30));
        AlertPath {
            photos,
            sent: 0,
            mesh,
            sink,
            reports,
            _alertmanager: am,
            _prometheus: prom,
        }
    }

    /// One request of the crane cameras' cohort (the rule's: gray) and one of the dock
    /// cameras (stable, the control), the same photo; neither client may see an error. The
    /// crane camera's decision.
    fn pair(&mut self) -> String {
        self.sent += 1;
        self.mesh.crane_and_dock(&self.photos, self.sent - 1)
    }

    /// Pairs of requests until the crane camera's decision is one `done` accepts (it may
    /// fail the test on one it must never see); that decision. Bounded in count.
    fn traffic_until(&mut self, what: &str, done: impl Fn(&Decision) -> bool) -> String {
        for _ in 0..16 * MIN_SAMPLES {
            let decision = self.pair();
            let parsed = Decision::parse(&decision)
                .unwrap_or_else(|e| panic!("decision header {decision:?}: {e}"));
            if done(&parsed) {
                return decision;
            }
        }
        panic!(
            "{what}: not within {} requests:\n{}",
            16 * MIN_SAMPLES,
            self.mesh.envoy.log()
        );
    }
}

/// Waits until the report server says the webhook of `alert` (`firing` or `resolved`) kept
/// the incident's report; the line it logged.
fn webhook_kept(reports: &ReportServer, status: &str) -> String {
    let wanted = format!("200 /alertmanager: GrayguardRuleShedding {status} of rule crane-cameras");
    eventually(
        &format!("the report server keeps the report ({status})"),
        Duration::from_secs(90),
        || {
            let log = reports.proc.log();
            let line = log
                .lines()
                .find(|l| l.contains(&wanted))
                .map(str::to_string);
            line.ok_or(format!("report server log:\n{log}"))
        },
    )
}

/// The one kept report's file name in the report server's folder, beside its index (and
/// nothing else: no temporary file left).
fn the_kept_report(reports: &ReportServer) -> String {
    let files = reports.kept();
    let kept: Vec<&String> = files.iter().filter(|f| *f != "index.html").collect();
    assert!(
        files.contains(&"index.html".to_string()),
        "no index: {files:?}"
    );
    assert_eq!(kept.len(), 1, "one report per incident: {files:?}");
    kept[0].clone()
}

#[test]
fn a_shed_keeps_its_report_and_the_alert_links_to_it() {
    let mut path = AlertPath::start(&plugin_config());

    // Traffic until grayguard sheds the crane cameras' gray cohort (the oversensitive gray
    // floods boxes); dock cameras go to stable and are the control.
    let decision = path.traffic_until("grayguard sheds the oversensitive gray", |d| {
        d.shed().is_some()
    });
    assert_eq!(decision, "stable; rule=crane-cameras; shed=box_count");
    let shed_at = Instant::now();
    let AlertPath {
        mesh,
        sink,
        reports,
        ..
    } = &path;

    // Prometheus fires GrayguardRuleShedding; Alertmanager posts it to the report server, which
    // keeps this incident's report, named by rule, trigger and start, and the index.
    let line = webhook_kept(reports, "firing");
    eprintln!("{line} ({:?} after the shed)", shed_at.elapsed());
    let file = the_kept_report(reports);
    assert!(
        file.starts_with("crane-cameras.box_count.") && file.ends_with("Z.html"),
        "{file}"
    );
    assert!(line.contains(&file), "{line}");

    // ... and delivers it to every receiver.
    let firing = |channel: &'static str| {
        move |m: &serde_json::Value| {
            m["channel"] == channel
                && m["status"] == "firing"
                && m["alertnames"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|n| n == "GrayguardRuleShedding"))
        }
    };
    let slack = sink.wait_for("Slack message", Duration::from_secs(60), firing("slack"));
    let wechat = sink.wait_for("WeChat message", Duration::from_secs(20), firing("wechat"));
    let webhook = sink.wait_for("webhook call", Duration::from_secs(20), firing("webhook"));
    assert!(
        slack["title"]
            .as_str()
            .unwrap()
            .starts_with("[FIRING:1] GrayguardRuleShedding · rule crane-cameras"),
        "{slack:#}"
    );
    let text = slack["text"].as_str().unwrap();
    assert!(
        text.contains(&format!(
            "Gateway 127.0.0.1:{} sheds the gray traffic of rule crane-cameras to stable",
            mesh.envoy.admin
        )),
        "{text}"
    );
    // A shed needs no confirmation: no confirmation link, the report link in both chats.
    assert!(!text.contains("Shed gray now"), "{text}");
    let report_url = link(&slack, "Incident report").expect("the Slack message links the report");
    assert_eq!(
        link(&wechat, "Incident report").as_deref(),
        Some(report_url.as_str())
    );
    assert_eq!(
        link(&slack, "title link").as_deref(),
        Some(report_url.as_str())
    );
    assert!(
        webhook["text"]
            .as_str()
            .unwrap()
            .contains("rule=crane-cameras"),
        "{webhook:#}"
    );

    // The link leads to the kept report: the report server's own copy of the file.
    assert!(
        report_url.starts_with(&reports.url("/reports/incident?rule=crane-cameras&instance=")),
        "{report_url}"
    );
    let to = http::get(&report_url).expect("the report server answers");
    assert_eq!(to.status, 303, "{}", to.text());
    assert_eq!(
        to.header("location"),
        Some(format!("/reports/{file}").as_str())
    );
    let r = http::get(&reports.url(&format!("/reports/{file}"))).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.header("content-type")
            .unwrap_or_default()
            .starts_with("text/html")
    );
    let kept = reports.reports.join(&file);
    let html = std::fs::read_to_string(&kept).unwrap();
    assert_eq!(r.text(), html, "the link serves the file kept");
    assert_eq!(
        the_kept_report(reports),
        file,
        "following the link kept nothing else"
    );
    // The index lists it.
    let index = http::get(&reports.url("/reports/")).unwrap().text();
    assert!(index.contains(&format!("href=\"{file}\"")), "{index}");

    // The kept report is this incident's, whole.
    for expected in [
        "<title>grayguard incident: crane-cameras box_count at ",
        "shed_start",
        "box_count_above",
        "The detector's evidence",
        "Around the incident",
        "NMS time",
        "Throughput",
        "Memory: host and GPU",
        "Decisions during the incident",
        "Gray vs stable",
        "v10-gray",
        "v9-prod",
        "Gateways now",
        "Gray sidecar logs (last lines)",
    ] {
        assert!(html.contains(expected), "the report lacks {expected:?}");
    }
    // Who was involved: the gray pod by its own name (its replies' x-served-by), and its log.
    assert!(
        html.contains(&format!("gray <code>{GRAY_POD}</code>")),
        "no gray pod column"
    );
    assert!(html.contains(&format!("stable <code>{STABLE_POD}</code>")));
    assert!(
        html.contains(&format!("pod <code>{GRAY_POD}</code>")),
        "no log of the gray pod"
    );
    assert_eq!(html.matches("<svg").count(), CHARTS, "every chart");
    assert!(
        html.contains("one point every 1 s"),
        "the charts' step is the scrape interval"
    );
    // The charts have data: the evidence crossed 100 and the breaker opened (the SVG has
    // lines, not just the axes and "no data").
    assert!(
        !html.contains("no data in this window"),
        "a chart without data"
    );
    assert!(!html.contains("Problems reading the sources"), "{html}");
    // Self-contained: nothing is fetched when it is opened.
    for outside in ["<script", "<link", "src=\"http", "@import"] {
        assert!(
            !html.contains(outside),
            "the report refers outside itself: {outside}"
        );
    }

    // Headless Chromium renders the kept file: the same document comes out of its parser,
    // and the screenshot is a page, not a blank.
    let artifacts = paths::root().join("target/test-artifacts/on_call");
    std::fs::create_dir_all(&artifacts).unwrap();
    let page = artifacts.join("report.html");
    let png = artifacts.join("report.png");
    std::fs::write(&page, &html).unwrap();
    let _ = std::fs::remove_file(&png);
    let dom = browser::dom(&kept);
    assert_eq!(
        dom.matches("<svg").count(),
        CHARTS,
        "Chromium's DOM lost charts"
    );
    assert!(dom.contains("box_count_above"));
    browser::screenshot(&kept, &png, 1100, 1600);
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(browser::png_size(&bytes), Some((1100, 1600)));
    assert!(
        bytes.len() > 100_000,
        "a {} byte screenshot is too small to hold the report",
        bytes.len()
    );
    eprintln!(
        "report rendered: {} ({} KB)",
        png.display(),
        bytes.len() / 1024
    );
}

#[test]
fn when_the_shed_ends_the_kept_report_is_rewritten_with_the_whole_incident() {
    let mut path = AlertPath::start(&plugin_config_shed_for(None, SHORT_SHED_S));
    path.traffic_until("grayguard sheds the oversensitive gray", |d| {
        d.shed().is_some()
    });
    webhook_kept(&path.reports, "firing");
    let file = the_kept_report(&path.reports);
    let firing = std::fs::read_to_string(path.reports.reports.join(&file)).unwrap();
    assert!(!firing.contains("shed_end"), "the shed has not ended yet");

    // A healthy gray replaces the bad one; once the shed is over, the probes find it healthy
    // and the rule closes.
    path.mesh
        .gray
        .replace(sidecar(GRAY, "0.25").env("POD_NAME", GRAY_POD));
    path.traffic_until("the probes close the rule again", |d| {
        *d == Decision::rule(Side::Gray, "crane-cameras", None)
    });

    // The alert resolves; its notification rewrites the same file, now with the end.
    let line = webhook_kept(&path.reports, "resolved");
    assert!(line.contains(&format!("rewrote {file}")), "{line}");
    assert_eq!(
        the_kept_report(&path.reports),
        file,
        "the same file, no second one"
    );
    let whole = std::fs::read_to_string(path.reports.reports.join(&file)).unwrap();
    for expected in ["shed_start", "shed_end", "ended"] {
        assert!(
            whole.contains(expected),
            "the rewritten report lacks {expected:?}"
        );
    }
    assert_eq!(whole.matches("<svg").count(), CHARTS, "every chart");
}

/// The base URL of the front Envoy's operator listener, where confirmations go (it has one
/// when the plugin configuration has confirm mode's `operator`).
fn operator_url(mesh: &Mesh) -> Option<String> {
    mesh.envoy.operator.map(|p| format!("http://127.0.0.1:{p}"))
}

/// A confirmation link with the last hex digit of its signature changed.
fn tampered(url: &str) -> String {
    let mut s = url.to_string();
    let last = s.pop().expect("a non-empty link");
    s.push(if last == '0' { '1' } else { '0' });
    s
}

#[test]
fn in_confirm_mode_the_link_in_the_alert_sheds_gray() {
    let mut path = AlertPath::start(&plugin_config_with(Some("confirm")));
    let operator = operator_url(&path.mesh).expect("the front Envoy has an operator listener");

    // The trigger fires, but in confirm mode the cohort stays on gray, flagged as alerting.
    let decision = path.traffic_until("the box-count trigger alerts", |d| {
        assert!(d.shed().is_none(), "confirm mode shed on its own: {d:?}");
        matches!(d.note, Some(Note::Alert(_)))
    });
    assert_eq!(decision, "gray; rule=crane-cameras; alert=box_count");

    // A person receives the question with the one-click link, in both chats and the webhook.
    let asks = |channel: &'static str| {
        move |m: &serde_json::Value| {
            m["channel"] == channel
                && m["status"] == "firing"
                && m["alertnames"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|n| n == "GrayguardShedAwaitsConfirmation"))
        }
    };
    let slack = path.sink.wait_for(
        "confirmation request",
        Duration::from_secs(60),
        asks("slack"),
    );
    let wechat = path
        .sink
        .wait_for("WeChat request", Duration::from_secs(20), asks("wechat"));
    let webhook = path
        .sink
        .wait_for("webhook request", Duration::from_secs(20), asks("webhook"));
    let confirm = link(&slack, "Shed gray now").expect("the Slack message carries the link");
    assert!(
        confirm.starts_with(&format!(
            "{operator}/grayguard/confirm?rule=crane-cameras&trigger=box_count&exp="
        )),
        "{confirm}"
    );
    assert_eq!(
        link(&wechat, "Shed gray now").as_deref(),
        Some(confirm.as_str())
    );
    assert_eq!(
        link(&webhook, "confirm_url").as_deref(),
        Some(confirm.as_str())
    );
    assert_eq!(
        path.pair(),
        "gray; rule=crane-cameras; alert=box_count",
        "nobody clicked yet"
    );

    // Only a valid signature, only on the operator listener.
    let forged = http::get(&tampered(&confirm)).unwrap();
    assert_eq!(forged.status, 403, "{}", forged.text());
    let query = confirm.split_once('?').unwrap().1;
    let public = http::get(&path.mesh.envoy.url(&format!("/grayguard/confirm?{query}"))).unwrap();
    assert_ne!(
        public.status, 200,
        "the public listener took a confirmation"
    );
    assert_eq!(path.pair(), "gray; rule=crane-cameras; alert=box_count");

    // The click sheds the rule as the trigger would have; a second click changes nothing.
    let clicked = http::get(&confirm).unwrap();
    assert_eq!(clicked.status, 200, "{}", clicked.text());
    assert_eq!(path.pair(), "stable; rule=crane-cameras; shed=box_count");
    let again = http::get(&confirm).unwrap();
    assert_eq!(again.status, 200, "{}", again.text());
    assert_eq!(path.pair(), "stable; rule=crane-cameras; shed=box_count");

    // The incident record names who confirmed, and so does the report.
    let records = path.mesh.envoy.incident_records();
    let record = records
        .iter()
        .find(|i| i.confirmed_by.is_some())
        .unwrap_or_else(|| panic!("no confirmed shed_start record: {records:#?}"));
    assert_eq!(record.event, Event::ShedStart, "{record:?}");
    // The confirmed shed fires the shed alert, whose notification rewrites the incident's
    // report, kept since the confirmation request: one report, now saying who confirmed.
    let line = webhook_kept(&path.reports, "firing");
    let file = the_kept_report(&path.reports);
    assert!(line.contains(&format!("rewrote {file}")), "{line}");
    let to = http::get(&link(&slack, "Incident report").unwrap()).unwrap();
    assert_eq!(to.status, 303, "{}", to.text());
    assert_eq!(
        to.header("location"),
        Some(format!("/reports/{file}").as_str())
    );
    let report = http::get(&path.reports.url(&format!("/reports/{file}")))
        .unwrap()
        .text();
    assert!(
        report.contains("confirmed by"),
        "the report does not say who confirmed"
    );
    assert!(report.contains("alert_start"), "the report lacks the alert");
}
