//! The alert path for tests, all real and on free loopback ports, killed on drop: Debian's
//! Alertmanager with the local mesh's configuration (`mesh-config/local/alertmanager.yml`,
//! its templates and routes unchanged, its receivers pointed at the sink below),
//! `grayguard-alert-sink` (what a person would receive) and `grayguard-report --serve
//! --reports-dir` (where the messages' report links go, and the shed alerts' webhook, which
//! keeps each incident's report).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::http;
use crate::paths;
use crate::process::{Proc, free_port};
use crate::wait::Wait;

fn at(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A running `grayguard-alert-sink`.
pub struct AlertSink {
    pub proc: Proc,
    pub port: u16,
}

impl AlertSink {
    pub fn start() -> AlertSink {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let mut cmd = Command::new(paths::alert_sink());
        cmd.args(["--listen", &format!("127.0.0.1:{port}")]);
        let mut proc = Proc::spawn("alert-sink", cmd, dir.path()).own_dir(dir);
        proc.wait_for_port(at(port), Duration::from_secs(30));
        AlertSink { proc, port }
    }

    /// Every message received so far (`GET /messages`).
    pub fn messages(&self) -> Vec<Value> {
        let r = http::get(&format!("http://127.0.0.1:{}/messages", self.port))
            .expect("the sink answers");
        assert_eq!(r.status, 200, "{}", r.text());
        r.json().as_array().cloned().unwrap_or_default()
    }

    /// Polls until a message satisfies `pred`, failing the test (with what arrived) after
    /// `timeout`.
    pub fn wait_for(&self, what: &str, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        let outcome = Wait::new(format!("a {what}"), timeout)
            .every(Duration::from_millis(250))
            .poll(|| {
                let all = self.messages();
                let found = all.iter().find(|m| pred(m)).cloned();
                found.ok_or(format!("received: {all:#?}"))
            });
        outcome.unwrap_or_else(|t| panic!("{t}\nsink log:\n{}", self.proc.log()))
    }
}

/// A running `grayguard-report --serve`, keeping reports in a folder of its own.
pub struct ReportServer {
    pub proc: Proc,
    pub port: u16,
    /// Its `--reports-dir` (removed with it).
    pub reports: PathBuf,
}

impl ReportServer {
    /// Serves reports with the given source flags (`--prometheus`, `--gateway`, ...).
    pub fn start(sources: &[String]) -> ReportServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let reports = dir.path().join("reports");
        let mut cmd = Command::new(paths::report());
        cmd.args(["--serve", &format!("127.0.0.1:{port}")])
            .arg("--reports-dir")
            .arg(&reports)
            .args(sources);
        let mut proc = Proc::spawn("report", cmd, dir.path()).own_dir(dir);
        proc.wait_for_status(
            &format!("http://127.0.0.1:{port}/healthz"),
            200,
            Duration::from_secs(30),
        );
        ReportServer {
            proc,
            port,
            reports,
        }
    }

    /// `http://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The file names in its reports folder, sorted.
    pub fn kept(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.reports)
            .map(|d| {
                d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }
}

/// A running Alertmanager.
pub struct Alertmanager {
    pub proc: Proc,
    pub port: u16,
}

impl Alertmanager {
    /// The local mesh's Alertmanager, delivering to the sink on `sink_port`, and to the
    /// report server on `report_port` (the shed alerts' webhook, and the reports linked).
    /// Its routes and receivers are the file's; its grouping waits are a test's, `group_wait`
    /// 1 s and `group_interval` 5 s instead of 5 s and 1 min: a resolved notification leaves
    /// one `group_interval` after the firing one.
    pub fn start(sink_port: u16, report_port: u16) -> Alertmanager {
        let dir = tempfile::tempdir().expect("temp dir");
        let local = paths::root().join("mesh-config/local");
        let config = std::fs::read_to_string(local.join("alertmanager.yml")).unwrap();
        let links = dir.path().join("links.tmpl");
        let shared = paths::root().join("mesh-config/alerting/grayguard.tmpl");
        let rewritten = config
            .replace("127.0.0.1:9095", &format!("127.0.0.1:{sink_port}"))
            .replace("127.0.0.1:9096", &format!("127.0.0.1:{report_port}"))
            .replace("../alerting/grayguard.tmpl", &shared.display().to_string())
            .replace("- links.tmpl", &format!("- {}", links.display()))
            .replace("  group_wait: 5s\n", "  group_wait: 1s\n")
            .replace("  group_interval: 1m\n", "  group_interval: 5s\n");
        assert!(
            rewritten.contains(&format!("127.0.0.1:{sink_port}/slack"))
                && rewritten.contains(&format!("127.0.0.1:{report_port}/alertmanager"))
                && rewritten.contains("links.tmpl")
                && rewritten.contains("  group_wait: 1s\n")
                && rewritten.contains("  group_interval: 5s\n"),
            "mesh-config/local/alertmanager.yml changed shape:\n{rewritten}"
        );
        let template = std::fs::read_to_string(local.join("links.tmpl"))
            .unwrap()
            .replace("127.0.0.1:9096", &format!("127.0.0.1:{report_port}"));
        std::fs::write(&links, template).unwrap();
        let file = dir.path().join("alertmanager.yml");
        std::fs::write(&file, rewritten).unwrap();
        let port = free_port();
        let mut cmd = Command::new("prometheus-alertmanager");
        cmd.arg(format!("--config.file={}", file.display()))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=");
        let mut proc = Proc::spawn("alertmanager", cmd, dir.path()).own_dir(dir);
        proc.wait_for_status(
            &format!("http://127.0.0.1:{port}/-/ready"),
            200,
            Duration::from_secs(60),
        );
        Alertmanager { proc, port }
    }
}

/// The URL of the link labelled `label` in a sink message.
pub fn link(message: &Value, label: &str) -> Option<String> {
    message["links"]
        .as_array()?
        .iter()
        .find(|l| l["label"] == label)
        .and_then(|l| l["url"].as_str())
        .map(str::to_string)
}
