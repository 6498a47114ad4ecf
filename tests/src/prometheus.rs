//! A real Prometheus (Debian's) on a free loopback port scraping given targets every second,
//! killed on drop, and instant queries through its HTTP API.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::http;
use crate::process::{Proc, free_port};
use crate::wait::Wait;

/// One scrape job: its name, metrics path and `host:port` targets.
#[derive(Debug, Clone)]
pub struct Job {
    pub name: String,
    pub path: String,
    pub targets: Vec<String>,
}

/// A running Prometheus (killed on drop).
pub struct Prometheus {
    pub proc: Proc,
    pub port: u16,
}

impl Prometheus {
    /// Starts Prometheus scraping `jobs` every second and waits until it is ready.
    pub fn start(jobs: &[Job]) -> Prometheus {
        let mut config = String::from(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n",
        );
        for job in jobs {
            let targets: Vec<String> = job.targets.iter().map(|t| format!("\"{t}\"")).collect();
            config += &format!(
                "  - job_name: {}\n    metrics_path: {}\n    static_configs:\n      - targets: [{}]\n",
                job.name,
                job.path,
                targets.join(", ")
            );
        }
        Prometheus::start_config(&config)
    }

    /// Starts Prometheus with the configuration `config` (YAML) and waits until it is ready.
    pub fn start_config(config: &str) -> Prometheus {
        Prometheus::start_config_on(config, free_port())
    }

    /// [`Prometheus::start_config`] on a given port (chosen with `free_port`), for clients
    /// that must know it before Prometheus starts.
    pub fn start_config_on(config: &str, port: u16) -> Prometheus {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("prometheus.yml");
        std::fs::write(&file, config).unwrap();
        let mut cmd = Command::new("prometheus");
        cmd.arg(format!("--config.file={}", file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"));
        let mut proc = Proc::spawn("prometheus", cmd, dir.path()).own_dir(dir);
        let timeout = Duration::from_secs(60);
        proc.wait_for_port(SocketAddr::from(([127, 0, 0, 1], port)), timeout);
        proc.wait_for_status(&format!("http://127.0.0.1:{port}/-/ready"), 200, timeout);
        Prometheus { proc, port }
    }

    /// The values of an instant query (a vector result), failing the test on a query error.
    pub fn query(&self, expr: &str) -> Vec<f64> {
        let url = format!("http://127.0.0.1:{}/api/v1/query", self.port);
        let body = format!("query={}", urlencode(expr));
        let r = http::post(
            &url,
            &[("content-type", "application/x-www-form-urlencoded")],
            body.as_bytes(),
        )
        .expect("Prometheus answers");
        let json: Value = r.json();
        assert_eq!(json["status"], "success", "query {expr:?}: {json}");
        assert_eq!(
            json["data"]["resultType"], "vector",
            "query {expr:?}: {json}"
        );
        json["data"]["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                let v = s["value"][1].as_str().unwrap();
                v.parse::<f64>()
                    .unwrap_or_else(|_| panic!("query {expr:?}: value {v:?}"))
            })
            .collect()
    }

    /// Waits until every target is up (scraped at least once).
    pub fn wait_targets_up(&self, count: usize, timeout: Duration) {
        let outcome = Wait::new(format!("{count} targets up"), timeout)
            .every(Duration::from_millis(250))
            .poll(|| {
                let up = self.query("sum(up)");
                (up.first().copied().unwrap_or(0.0) >= count as f64)
                    .then_some(())
                    .ok_or(format!("up {up:?}"))
            });
        if let Err(t) = outcome {
            panic!("{t}:\n{}", self.proc.log());
        }
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
