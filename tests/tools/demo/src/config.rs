//! Command-line flags of `grayguard-demo` and their validation into a typed run plan; every
//! error names the flag.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use grayguard_client::cohort::Mix;
pub use grayguard_client::flags::{ConfigError, check_url};
use grayguard_client::photos::Photos;
use grayguard_client::traffic::{Gateway, MAX_CONCURRENCY, MAX_RATE, Plan};

/// Longest run, seconds.
pub const MAX_DURATION_S: u64 = 3_600;
/// Most gateways (front Envoys) driven at once.
pub const MAX_GATEWAYS: usize = 16;

/// Replays the gray-release incident through the local mesh: steady traffic of real photos
/// from device cohorts, a live per-second view of where it went and why, then a timeline
/// chart and a summary.
#[derive(Debug, Parser)]
#[command(name = "grayguard-demo", version)]
pub struct Args {
    /// Inference URL of a front Envoy (http, loopback unless --allow-remote); repeat it, one
    /// per gateway, with as many --admin (requests go round-robin over the gateways).
    #[arg(long, default_values_t = ["http://127.0.0.1:10000/infer".to_string()])]
    pub target: Vec<String>,
    /// Envoy admin base URL of a gateway, polled for `grayguard_breaker_state` and the
    /// filter's counters; one per --target.
    #[arg(long, default_values_t = ["http://127.0.0.1:9901".to_string()])]
    pub admin: Vec<String>,
    /// Drive this many gateways of `make run GATEWAYS=N`: gateway i is the one --target and
    /// --admin with their ports moved by i (1..=16).
    #[arg(long, default_value_t = 1)]
    pub gateways: usize,
    /// Requests per second, sent on a fixed schedule (1..=200 per second; fractions allowed).
    #[arg(long, default_value_t = 2.0)]
    pub rate: f64,
    /// Length of the run, seconds (at most 3600).
    #[arg(long, default_value_t = 60)]
    pub duration_s: u64,
    /// Most requests in flight; a scheduled request that finds them all busy is skipped and
    /// counted, so the rate stays bounded (at most 64).
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// A device cohort `TYPE[:DEVICES[:WEIGHT]]` (repeatable): `x-device-type` TYPE, DEVICES
    /// sticky ids `TYPE-000`.. sent in turn, WEIGHT its share of the traffic.
    #[arg(long = "cohort", default_values_t = ["crane-camera:4:1".to_string(), "dock-camera:4:1".to_string()])]
    pub cohorts: Vec<String>,
    #[command(flatten)]
    pub photos: Photos,
    /// Where the chart, the summary and the per-request CSV go.
    #[arg(long, default_value = ".run/demo")]
    pub out: PathBuf,
    /// Timeout of one request, milliseconds.
    #[arg(long, default_value_t = 10_000)]
    pub timeout_ms: u64,
    /// How often the admin is polled, milliseconds (50..=10000).
    #[arg(long, default_value_t = 500)]
    pub admin_poll_ms: u64,
    /// `x-model-version` of the gray version.
    #[arg(long, default_value = "v10-gray")]
    pub gray_version: String,
    /// `x-model-version` of the stable version.
    #[arg(long, default_value = "v9-prod")]
    pub stable_version: String,
    /// Exit non-zero unless gray was reached and shed, nothing but probes reached gray after
    /// the trigger, and clients saw no error.
    #[arg(long)]
    pub check: bool,
    /// Allow a target or admin that is not on loopback.
    #[arg(long)]
    pub allow_remote: bool,
}

/// `url` with its port moved by `by` (`http://host:port/...`).
fn shift_port(flag: &'static str, url: &str, by: usize) -> Result<String, ConfigError> {
    let bad = |why: &str| ConfigError::Flag(flag, format!("{url:?}: {why}"));
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| bad("must start with http://"))?;
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let (host, port) = authority
        .rsplit_once(':')
        .ok_or_else(|| bad("needs an explicit port for --gateways"))?;
    let port: usize = port.parse().map_err(|_| bad("has a bad port"))?;
    let moved = u16::try_from(port + by).map_err(|_| bad("port out of range"))?;
    Ok(format!("http://{host}:{moved}{tail}"))
}

impl Args {
    /// The gateways from --target, --admin and --gateways.
    fn gateways(&self) -> Result<Vec<Gateway>, ConfigError> {
        if !(1..=MAX_GATEWAYS).contains(&self.gateways) {
            return Err(ConfigError::Flag(
                "gateways",
                format!("{} is outside 1..={MAX_GATEWAYS}", self.gateways),
            ));
        }
        if self.target.len() != self.admin.len() {
            return Err(ConfigError::Flag(
                "admin",
                format!(
                    "give one --admin per --target ({} targets, {} admins)",
                    self.target.len(),
                    self.admin.len()
                ),
            ));
        }
        let listed: Vec<(String, String)> = if self.gateways > 1 {
            if self.target.len() != 1 {
                return Err(ConfigError::Flag(
                    "gateways",
                    "derives the gateways from one --target and one --admin".into(),
                ));
            }
            (0..self.gateways)
                .map(|i| {
                    Ok((
                        shift_port("target", &self.target[0], i)?,
                        shift_port("admin", &self.admin[0], i)?,
                    ))
                })
                .collect::<Result<_, ConfigError>>()?
        } else {
            self.target
                .iter()
                .cloned()
                .zip(self.admin.iter().cloned())
                .collect()
        };
        if listed.len() > MAX_GATEWAYS {
            return Err(ConfigError::Flag(
                "target",
                format!("at most {MAX_GATEWAYS} gateways"),
            ));
        }
        Ok(listed
            .into_iter()
            .enumerate()
            .map(|(i, (target, admin))| Gateway {
                name: format!("gw-{i}"),
                target,
                admin_metrics: format!("{}/stats/prometheus", admin.trim_end_matches('/')),
            })
            .collect())
    }

    pub fn plan(&self) -> Result<Plan, ConfigError> {
        let gateways = self.gateways()?;
        for g in &gateways {
            check_url("target", &g.target, self.allow_remote)?;
            check_url("admin", &g.admin_metrics, self.allow_remote)?;
        }
        if !(self.rate.is_finite() && self.rate > 0.0 && self.rate <= MAX_RATE) {
            return Err(ConfigError::Flag(
                "rate",
                format!(
                    "{} is outside (0, {MAX_RATE}] requests per second",
                    self.rate
                ),
            ));
        }
        if !(1..=MAX_DURATION_S).contains(&self.duration_s) {
            return Err(ConfigError::Flag(
                "duration-s",
                format!("{} is outside 1..={MAX_DURATION_S}", self.duration_s),
            ));
        }
        if !(1..=MAX_CONCURRENCY).contains(&self.concurrency) {
            return Err(ConfigError::Flag(
                "concurrency",
                format!("{} is outside 1..={MAX_CONCURRENCY}", self.concurrency),
            ));
        }
        if self.timeout_ms == 0 {
            return Err(ConfigError::Flag("timeout-ms", "must be positive".into()));
        }
        if !(50..=10_000).contains(&self.admin_poll_ms) {
            return Err(ConfigError::Flag(
                "admin-poll-ms",
                format!("{} is outside 50..=10000", self.admin_poll_ms),
            ));
        }
        self.photos.check()?;
        for (flag, v) in [
            ("gray-version", &self.gray_version),
            ("stable-version", &self.stable_version),
        ] {
            if v.trim().is_empty() {
                return Err(ConfigError::Flag(flag, "must not be empty".into()));
            }
        }
        if self.gray_version == self.stable_version {
            return Err(ConfigError::Flag(
                "gray-version",
                "must differ from --stable-version".into(),
            ));
        }
        let mix = Mix::parse(&self.cohorts)?;
        // Whole requests only: the schedule is i / rate for i in 0..requests.
        let requests = ((self.duration_s as f64) * self.rate).floor().max(1.0) as u64;
        Ok(Plan {
            gateways,
            interval: Duration::from_secs_f64(1.0 / self.rate),
            requests,
            concurrency: self.concurrency,
            mix,
            timeout: Duration::from_millis(self.timeout_ms),
            admin_poll: Duration::from_millis(self.admin_poll_ms),
            gray_version: self.gray_version.clone(),
            stable_version: self.stable_version.clone(),
            live: true,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> Args {
        let mut v = vec!["grayguard-demo"];
        v.extend_from_slice(extra);
        Args::try_parse_from(v).unwrap()
    }

    #[test]
    fn defaults_make_a_valid_plan() {
        let p = args(&[]).plan().unwrap();
        assert_eq!(p.requests, 120);
        assert_eq!(p.gateways.len(), 1);
        assert_eq!(
            p.gateways[0].admin_metrics,
            "http://127.0.0.1:9901/stats/prometheus"
        );
        assert_eq!(p.mix.cohorts().len(), 2);
        assert_eq!(p.mix.cohorts()[0].device_type, "crane-camera");
    }

    #[test]
    fn every_bad_flag_is_named() {
        let cases: &[(&[&str], &str)] = &[
            (&["--rate", "0"], "--rate"),
            (&["--rate", "NaN"], "--rate"),
            (&["--rate", "500"], "--rate"),
            (&["--duration-s", "0"], "--duration-s"),
            (&["--concurrency", "0"], "--concurrency"),
            (&["--concurrency", "65"], "--concurrency"),
            (&["--timeout-ms", "0"], "--timeout-ms"),
            (&["--admin-poll-ms", "1"], "--admin-poll-ms"),
            (&["--max-images", "0"], "--max-images"),
            (&["--gray-version", "v9-prod"], "--gray-version"),
            (&["--cohort", "bad type"], "--cohort"),
            (&["--target", "https://127.0.0.1/infer"], "--target"),
            (&["--target", "http://10.0.0.1:10000/infer"], "--target"),
            (&["--admin", "http://:9901"], "--admin"),
            (&["--gateways", "0"], "--gateways"),
            (&["--gateways", "17"], "--gateways"),
            (
                &[
                    "--admin",
                    "http://127.0.0.1:1",
                    "--admin",
                    "http://127.0.0.1:2",
                ],
                "--admin",
            ),
            (
                &["--gateways", "2", "--target", "http://127.0.0.1/infer"],
                "--target",
            ),
        ];
        for (flags, name) in cases {
            let e = args(flags).plan().unwrap_err().to_string();
            assert!(e.starts_with(name), "{flags:?}: {e}");
        }
    }

    #[test]
    fn remote_and_ipv6_loopback_targets() {
        assert!(
            args(&["--target", "http://[::1]:10000/infer"])
                .plan()
                .is_ok()
        );
        assert!(
            args(&["--target", "http://localhost:10000/infer"])
                .plan()
                .is_ok()
        );
        assert!(
            args(&["--target", "http://10.0.0.1:10000/infer", "--allow-remote"])
                .plan()
                .is_ok()
        );
    }

    #[test]
    fn gateways_are_derived_or_listed() {
        let p = args(&["--gateways", "3"]).plan().unwrap();
        let g: Vec<(&str, &str, &str)> = p
            .gateways
            .iter()
            .map(|g| (g.name.as_str(), g.target.as_str(), g.admin_metrics.as_str()))
            .collect();
        assert_eq!(
            g[2],
            (
                "gw-2",
                "http://127.0.0.1:10002/infer",
                "http://127.0.0.1:9903/stats/prometheus"
            )
        );
        let listed = args(&[
            "--target",
            "http://127.0.0.1:1/infer",
            "--admin",
            "http://127.0.0.1:2",
            "--target",
            "http://127.0.0.1:3/infer",
            "--admin",
            "http://127.0.0.1:4",
        ])
        .plan()
        .unwrap();
        assert_eq!(listed.gateways[1].target, "http://127.0.0.1:3/infer");
    }

    #[test]
    fn fractional_rates_schedule_whole_requests() {
        let p = args(&["--rate", "0.5", "--duration-s", "5"])
            .plan()
            .unwrap();
        assert_eq!(p.requests, 2);
        assert_eq!(p.interval, Duration::from_secs(2));
        let p = args(&["--rate", "0.1", "--duration-s", "1"])
            .plan()
            .unwrap();
        assert_eq!(p.requests, 1);
    }
}
