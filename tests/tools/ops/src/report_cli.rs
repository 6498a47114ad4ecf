//! Command-line flags of `grayguard-report` and their validation; every error names the
//! flag. The defaults are the local mesh (`make run`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use jiff::{SignedDuration, Timestamp};

use crate::kept_cli::KeptArgs;
use crate::report::{GrayLog, Options, Sources};

/// Most lines of the gray sidecar's log shown.
pub const MAX_LOG_LINES: usize = 10_000;
/// Longest window charted on either side of the incident, seconds (a day).
pub const MAX_MARGIN_S: u64 = 86_400;
/// Longest Prometheus lookback when no log has a record, seconds (a week).
pub const MAX_LOOKBACK_S: u64 = 7 * 86_400;

/// Writes the postmortem of a grayguard incident as one self-contained HTML page: the
/// filter's incident records, charts from Prometheus around the incident, the decisions,
/// what differs between the gray and stable sidecars, the gateways' state and the gray
/// sidecar's log. With --serve, renders it on request instead (the alerts link there).
#[derive(Debug, Clone, Parser)]
#[command(name = "grayguard-report", version)]
pub struct Args {
    /// Prometheus that scrapes the gateways and sidecars.
    #[arg(long, default_value = "http://127.0.0.1:9090")]
    pub prometheus: String,
    /// Envoy admin URL of a gateway (repeatable).
    #[arg(long = "gateway", default_values_t = ["http://127.0.0.1:9901".to_string()])]
    pub gateways: Vec<String>,
    /// Base URL of a gray sidecar (repeatable; `GET /info`, else `/metrics`).
    #[arg(long = "gray", default_values_t = ["http://127.0.0.1:8082".to_string()])]
    pub gray: Vec<String>,
    /// Base URL of a stable sidecar (repeatable).
    #[arg(long = "stable", default_values_t = ["http://127.0.0.1:8081".to_string()])]
    pub stable: Vec<String>,
    /// A gateway's Envoy log holding the incident records (repeatable; in Kubernetes,
    /// `kubectl logs` of each gateway saved to a file).
    #[arg(long = "envoy-log", default_values_t = [".run/logs/envoy.log".to_string()])]
    pub envoy_logs: Vec<String>,
    /// A gray sidecar's log, whose last lines are shown, as POD=FILE (repeatable: one per
    /// gray pod); a FILE alone is labelled by its name without the extension.
    #[arg(long = "gray-log", default_values_t = [".run/logs/v10-gray.log".to_string()])]
    pub gray_logs: Vec<String>,
    /// Report on this rule's incidents only.
    #[arg(long)]
    pub rule: Option<String>,
    /// Report on the incident at this time (RFC 3339, or Unix seconds): the one spanning
    /// it, else the last before it. Default: the latest incident.
    #[arg(long)]
    pub at: Option<String>,
    /// Seconds charted before the incident's start (at most 86400).
    #[arg(long, default_value_t = 300)]
    pub before_s: u64,
    /// Seconds charted after the incident's end (at most 86400).
    #[arg(long, default_value_t = 120)]
    pub after_s: u64,
    /// Without incident records, how far back Prometheus' breaker and alert gauges are
    /// searched, seconds (at most a week).
    #[arg(long, default_value_t = 6 * 3600)]
    pub lookback_s: u64,
    /// Lines of the gray sidecar's log shown (at most 10000).
    #[arg(long, default_value_t = 80)]
    pub log_lines: usize,
    /// Most bytes read from the end of each log.
    #[arg(long, default_value_t = 64 * 1024 * 1024)]
    pub max_log_bytes: u64,
    /// Most points per chart series (10..=2000); sets the query step (at least 5 s).
    #[arg(long, default_value_t = 240)]
    pub max_points: u32,
    /// Smallest query step, seconds (1..=3600): Prometheus' scrape interval. Rates are taken
    /// over at least four of them.
    #[arg(long, default_value_t = 5)]
    pub min_step_s: u32,
    /// Timeout of each HTTP request, milliseconds.
    #[arg(long, default_value_t = 5_000)]
    pub timeout_ms: u64,
    /// Largest HTTP response read, bytes.
    #[arg(long, default_value_t = 32 * 1024 * 1024)]
    pub max_response_bytes: u64,
    /// Where the report is written.
    #[arg(long, default_value = ".run/reports/report.html")]
    pub out: PathBuf,
    /// Exit 1 when no incident is found (the report is written anyway).
    #[arg(long)]
    pub require_incident: bool,
    /// Serve reports on this address instead of writing one: `GET /report?rule=R&at=T`
    /// renders the incident of rule R at time T (the alerts' report links).
    #[arg(long)]
    pub serve: Option<SocketAddr>,
    #[command(flatten)]
    pub kept: KeptArgs,
    /// The promotion report and the Flagger webhooks (`crate::promotion`).
    #[command(flatten)]
    pub promotion: crate::promotion::Flags,
}

/// A flag with an unusable value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgError {
    pub flag: &'static str,
    pub message: String,
}

impl std::fmt::Display for ArgError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "--{}: {}", self.flag, self.message)
    }
}

fn err(flag: &'static str, message: impl Into<String>) -> ArgError {
    ArgError {
        flag,
        message: message.into(),
    }
}

/// `RFC 3339` or Unix seconds.
pub fn parse_time(text: &str) -> Result<Timestamp, String> {
    if let Ok(secs) = text.parse::<i64>() {
        return Timestamp::from_second(secs).map_err(|e| e.to_string());
    }
    text.parse::<Timestamp>().map_err(|_| {
        format!("{text:?} is neither RFC 3339 (2026-11-30T15:04:05Z) nor Unix seconds")
    })
}

/// `POD=FILE`, or `FILE` labelled by its file name without the extension.
pub fn parse_gray_log(text: &str) -> Result<GrayLog, ArgError> {
    let (pod, path) = match text.split_once('=') {
        Some((pod, path)) if !pod.contains('/') => (pod.to_string(), PathBuf::from(path)),
        _ => {
            let path = PathBuf::from(text);
            let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned());
            (stem.unwrap_or_default(), path)
        }
    };
    if pod.is_empty() || path.as_os_str().is_empty() {
        return Err(err("gray-log", format!("{text:?} is not POD=FILE or FILE")));
    }
    Ok(GrayLog { pod, path })
}

fn check_url(flag: &'static str, url: &str) -> Result<String, ArgError> {
    if url.starts_with("http://") && url.len() > "http://".len() {
        Ok(url.trim_end_matches('/').to_string())
    } else {
        Err(err(flag, format!("{url:?} is not an http:// URL")))
    }
}

impl Args {
    /// The sources, checked.
    pub fn sources(&self) -> Result<Sources, ArgError> {
        let urls = |flag, list: &[String]| -> Result<Vec<String>, ArgError> {
            list.iter().map(|u| check_url(flag, u)).collect()
        };
        Ok(Sources {
            prometheus: check_url("prometheus", &self.prometheus)?,
            gateways: urls("gateway", &self.gateways)?,
            gray: urls("gray", &self.gray)?,
            stable: urls("stable", &self.stable)?,
            envoy_logs: self.envoy_logs.iter().map(PathBuf::from).collect(),
            gray_logs: self
                .gray_logs
                .iter()
                .map(|g| parse_gray_log(g))
                .collect::<Result<_, _>>()?,
        })
    }

    /// The options at `now`, checked.
    pub fn options(&self, now: Timestamp) -> Result<Options, ArgError> {
        let at = self
            .at
            .as_deref()
            .map(parse_time)
            .transpose()
            .map_err(|e| err("at", e))?;
        let margin = |flag, s: u64| {
            if s > MAX_MARGIN_S {
                Err(err(flag, format!("{s} is over {MAX_MARGIN_S}")))
            } else {
                Ok(SignedDuration::from_secs(s as i64))
            }
        };
        if self.lookback_s == 0 || self.lookback_s > MAX_LOOKBACK_S {
            return Err(err("lookback-s", format!("must be 1..={MAX_LOOKBACK_S}")));
        }
        if self.log_lines > MAX_LOG_LINES {
            return Err(err("log-lines", format!("at most {MAX_LOG_LINES}")));
        }
        if !(10..=2000).contains(&self.max_points) {
            return Err(err("max-points", "must be 10..=2000"));
        }
        if !(1..=3600).contains(&self.min_step_s) {
            return Err(err("min-step-s", "must be 1..=3600"));
        }
        if self.max_log_bytes == 0 {
            return Err(err("max-log-bytes", "must be above 0"));
        }
        Ok(Options {
            rule: self.rule.clone(),
            at,
            before: margin("before-s", self.before_s)?,
            after: margin("after-s", self.after_s)?,
            lookback: SignedDuration::from_secs(self.lookback_s as i64),
            log_lines: self.log_lines,
            max_log_bytes: self.max_log_bytes,
            max_points: self.max_points,
            min_step_s: self.min_step_s,
            now,
        })
    }

    pub fn timeout(&self) -> Result<Duration, ArgError> {
        match self.timeout_ms {
            1..=600_000 => Ok(Duration::from_millis(self.timeout_ms)),
            _ => Err(err("timeout-ms", "must be 1..=600000")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> Args {
        Args::try_parse_from([&["grayguard-report"], extra].concat()).unwrap()
    }

    #[test]
    fn defaults_are_the_local_mesh() {
        let a = args(&[]);
        let s = a.sources().unwrap();
        assert_eq!(s.prometheus, "http://127.0.0.1:9090");
        assert_eq!(s.gateways, vec!["http://127.0.0.1:9901"]);
        assert_eq!(s.envoy_logs, vec![PathBuf::from(".run/logs/envoy.log")]);
        assert_eq!(
            s.gray_logs,
            vec![GrayLog {
                pod: "v10-gray".into(),
                path: ".run/logs/v10-gray.log".into()
            }]
        );
        let now = Timestamp::from_second(1_764_515_000).unwrap();
        let o = a.options(now).unwrap();
        assert_eq!(o.at, None);
        assert_eq!(o.before, SignedDuration::from_secs(300));
    }

    #[test]
    fn times_and_bad_values_name_the_flag() {
        assert_eq!(parse_time("1764515085").unwrap().as_second(), 1_764_515_085);
        assert_eq!(
            parse_time("2026-11-30T15:04:05Z").unwrap().to_string(),
            "2026-11-30T15:04:05Z"
        );
        let now = Timestamp::now();
        let e = args(&["--at", "yesterday"]).options(now).unwrap_err();
        assert_eq!(e.flag, "at");
        assert!(
            e.to_string().starts_with("--at: \"yesterday\" is neither"),
            "{e}"
        );
        let e = args(&["--gateway", "127.0.0.1:9901"])
            .sources()
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "--gateway: \"127.0.0.1:9901\" is not an http:// URL"
        );
        assert_eq!(
            args(&["--before-s", "90000"])
                .options(now)
                .unwrap_err()
                .flag,
            "before-s"
        );
        assert_eq!(
            args(&["--max-points", "5"]).options(now).unwrap_err().flag,
            "max-points"
        );
        assert_eq!(
            args(&["--lookback-s", "0"]).options(now).unwrap_err().flag,
            "lookback-s"
        );
        assert_eq!(
            args(&["--timeout-ms", "0"]).timeout().unwrap_err().flag,
            "timeout-ms"
        );
        // Repeatable flags replace the defaults.
        let a = args(&["--gray", "http://a:1/", "--gray", "http://b:2"]);
        assert_eq!(a.sources().unwrap().gray, vec!["http://a:1", "http://b:2"]);
        // One gray log per pod, each labelled by its pod.
        let a = args(&[
            "--gray-log",
            "yolo-v10-gray-7d9f-a=/logs/a.log",
            "--gray-log",
            "/logs/v10-gray=x/b.log",
        ]);
        let logs = a.sources().unwrap().gray_logs;
        assert_eq!(logs[0].pod, "yolo-v10-gray-7d9f-a");
        assert_eq!(logs[0].path, PathBuf::from("/logs/a.log"));
        assert_eq!(
            logs[1].pod, "b",
            "a path with `=` in a folder name is a FILE"
        );
        assert_eq!(
            args(&["--gray-log", "=x.log"]).sources().unwrap_err().flag,
            "gray-log"
        );
    }
}
