//! Command-line flags of `grayguard-soak` and their validation into a typed [`Soak`] plan;
//! every error names the flag. The defaults are the local mesh (`make run`).

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use grayguard_client::cohort::Mix;
use grayguard_client::flags::{ConfigError, check_url};
use grayguard_client::photos::Photos;
use grayguard_client::traffic::{Gateway, MAX_CONCURRENCY, MAX_RATE, Plan};

/// Most requests one soak may schedule: every outcome is kept for the summary (about
/// 150 bytes each).
pub const MAX_REQUESTS: f64 = 1_000_000.0;
/// Longest soak, seconds (a day).
pub const MAX_DURATION_S: u64 = 86_400;
/// Largest share of bad inputs, percent: the soak is about load, not about a fuzz run.
pub const MAX_BAD_PERCENT: f64 = 50.0;
/// Most processes and sidecars watched.
pub const MAX_WATCHED: usize = 64;

/// Soaks the mesh: steady traffic of real photos and a share of bad inputs from device
/// cohorts for minutes to hours, while every process's memory (RSS) and open file
/// descriptors and the filter's and the sidecars' counters are sampled; then a summary, a
/// chart and the targets: memory growth within --max-growth-percent, no error in any cohort
/// (a failing gray's requests are answered by stable), every request answered, Envoy's, the
/// filter's and the sidecars' counts equal, gray's fallbacks onto stable accounted.
#[derive(Debug, Parser)]
// A later flag overrides an earlier one, so a script can set defaults its caller overrides.
#[command(name = "grayguard-soak", version, args_override_self = true)]
pub struct Args {
    /// Inference URL of the front Envoy (http, loopback unless --allow-remote).
    #[arg(long, default_value = "http://127.0.0.1:10000/infer")]
    pub target: String,
    /// Envoy admin base URL: the filter's counters, the breaker, the clusters' request counts.
    #[arg(long, default_value = "http://127.0.0.1:9901")]
    pub admin: String,
    /// A sidecar as `VERSION=URL` (repeatable): its /metrics is sampled and its request count
    /// compared with Envoy's cluster named VERSION.
    #[arg(long = "sidecar", default_values_t = [
        "v9-prod=http://127.0.0.1:8081".to_string(),
        "v10-gray=http://127.0.0.1:8082".to_string(),
    ])]
    pub sidecars: Vec<String>,
    /// A process to watch as `NAME=PID` (repeatable).
    #[arg(long = "process")]
    pub processes: Vec<String>,
    /// A folder of `NAME.pid` files to watch (mesh-config/local/run.sh keeps them in
    /// .run/pids/), read again at every sample, so that a restarted process is seen.
    #[arg(long)]
    pub pid_dir: Option<PathBuf>,
    /// Requests per second, sent on a fixed schedule (fractions allowed, at most 200).
    #[arg(long, default_value_t = 2.0)]
    pub rate: f64,
    /// Length of the soak, seconds (at most 86400).
    #[arg(long, default_value_t = 600)]
    pub duration_s: u64,
    /// Seconds at the start left out of the memory comparison, while allocators, caches and
    /// the model's arenas settle.
    #[arg(long, default_value_t = 60)]
    pub warmup_s: u64,
    /// Seconds between two samples of the processes and the counters (1..=600).
    #[arg(long, default_value_t = 5)]
    pub sample_s: u64,
    /// Share of bad inputs, percent (0..=50): truncated JPEG, wrong content type, empty body,
    /// bytes that are no image; each must be answered with its 4xx.
    #[arg(long, default_value_t = 10.0)]
    pub bad_percent: f64,
    /// Largest accepted memory growth of any process, percent: mean RSS of the last third
    /// of the soak after warm-up against the first third.
    #[arg(long, default_value_t = 10.0)]
    pub max_growth_percent: f64,
    /// A device cohort `TYPE[:DEVICES[:WEIGHT]]` (repeatable), as grayguard-demo's.
    #[arg(long = "cohort", default_values_t = [
        "crane-camera:4:1".to_string(),
        "dock-camera:4:1".to_string(),
    ])]
    pub cohorts: Vec<String>,
    /// The cohort no rule sends to gray: it must see no error at all (bad inputs aside).
    #[arg(long, default_value = "dock-camera")]
    pub stable_cohort: String,
    /// Most requests in flight; a scheduled request that finds them all busy is skipped and
    /// counted (the mesh did not keep up), so the rate stays bounded (at most 64).
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    #[command(flatten)]
    pub photos: Photos,
    /// Timeout of one request, milliseconds.
    #[arg(long, default_value_t = 30_000)]
    pub timeout_ms: u64,
    /// `x-model-version` (and Envoy cluster) of the gray version.
    #[arg(long, default_value = "v10-gray")]
    pub gray_version: String,
    /// `x-model-version` (and Envoy cluster) of the stable version.
    #[arg(long, default_value = "v9-prod")]
    pub stable_version: String,
    /// Envoy's cluster the gray route sends to (mesh-config/local/envoy.yaml: gray, with
    /// stable behind it): its retries are gray requests stable was asked too, which stable's
    /// counts include. A mesh without one counts no retries.
    #[arg(long, default_value = "v10-gray-fallback")]
    pub fallback_cluster: String,
    /// Where the summary (text and JSON) and the chart go.
    #[arg(long, default_value = ".run/soak")]
    pub out: PathBuf,
    /// Exit 1 unless every target is met.
    #[arg(long)]
    pub check: bool,
    /// Allow a target, admin or sidecar that is not on loopback.
    #[arg(long)]
    pub allow_remote: bool,
}

/// One sidecar to sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sidecar {
    /// Its version: the `x-model-version` it stamps and Envoy's cluster in front of it.
    pub version: String,
    /// Its `/metrics` URL.
    pub metrics: String,
}

/// Where the watched processes' pids come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pids {
    /// Fixed `(name, pid)` pairs.
    Fixed(Vec<(String, u32)>),
    /// `NAME.pid` files in a folder, read at every sample.
    Dir(PathBuf),
}

/// A validated soak.
#[derive(Debug, Clone)]
pub struct Soak {
    /// The traffic, in the demo's terms (no live per-second view).
    pub traffic: Plan,
    pub admin_metrics: String,
    /// Envoy's cluster of the gray route's fallback (its retry counters).
    pub fallback_cluster: String,
    pub sidecars: Vec<Sidecar>,
    pub pids: Pids,
    pub duration: Duration,
    pub warmup: Duration,
    pub sample_every: Duration,
    /// Share of bad inputs, 0..=0.5.
    pub bad_share: f64,
    /// Largest accepted growth, as a fraction (0.1 for 10 %).
    pub max_growth: f64,
    /// Index of the stable cohort in the mix.
    pub stable_cohort: usize,
    pub out: PathBuf,
}

fn flag(name: &'static str, why: impl Into<String>) -> ConfigError {
    ConfigError::Flag(name, why.into())
}

/// `NAME=VALUE` → (`NAME`, `VALUE`), both non-empty.
fn pair<'a>(name: &'static str, s: &'a str) -> Result<(&'a str, &'a str), ConfigError> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() && !v.trim().is_empty() => Ok((k.trim(), v.trim())),
        _ => Err(flag(name, format!("{s:?} is not NAME=VALUE"))),
    }
}

impl Args {
    pub fn soak(&self) -> Result<Soak, ConfigError> {
        for (name, url) in [("target", &self.target), ("admin", &self.admin)] {
            check_url(name, url, self.allow_remote)?;
        }
        if !(self.rate.is_finite() && self.rate > 0.0 && self.rate <= MAX_RATE) {
            return Err(flag(
                "rate",
                format!(
                    "{} is outside (0, {MAX_RATE}] requests per second",
                    self.rate
                ),
            ));
        }
        if !(1..=MAX_DURATION_S).contains(&self.duration_s) {
            return Err(flag(
                "duration-s",
                format!("{} is outside 1..={MAX_DURATION_S}", self.duration_s),
            ));
        }
        let requests = (self.duration_s as f64 * self.rate).floor().max(1.0);
        if requests > MAX_REQUESTS {
            return Err(flag(
                "rate",
                format!(
                    "{} requests/s for {} s is more than {MAX_REQUESTS} requests",
                    self.rate, self.duration_s
                ),
            ));
        }
        if self.warmup_s >= self.duration_s {
            return Err(flag(
                "warmup-s",
                format!(
                    "{} leaves nothing of --duration-s {} to measure",
                    self.warmup_s, self.duration_s
                ),
            ));
        }
        if !(1..=600).contains(&self.sample_s) {
            return Err(flag(
                "sample-s",
                format!("{} is outside 1..=600", self.sample_s),
            ));
        }
        if (self.duration_s - self.warmup_s) < 3 * self.sample_s {
            return Err(flag(
                "sample-s",
                format!(
                    "{} s between samples leaves fewer than three samples after the warm-up",
                    self.sample_s
                ),
            ));
        }
        if !(0.0..=MAX_BAD_PERCENT).contains(&self.bad_percent) {
            return Err(flag(
                "bad-percent",
                format!("{} is outside 0..={MAX_BAD_PERCENT}", self.bad_percent),
            ));
        }
        if !(self.max_growth_percent.is_finite() && self.max_growth_percent >= 0.0) {
            return Err(flag(
                "max-growth-percent",
                format!("{} is not a percentage", self.max_growth_percent),
            ));
        }
        if !(1..=MAX_CONCURRENCY).contains(&self.concurrency) {
            return Err(flag(
                "concurrency",
                format!("{} is outside 1..={MAX_CONCURRENCY}", self.concurrency),
            ));
        }
        if self.timeout_ms == 0 {
            return Err(flag("timeout-ms", "must be positive"));
        }
        self.photos.check()?;
        if self.gray_version == self.stable_version || self.gray_version.trim().is_empty() {
            return Err(flag(
                "gray-version",
                "must be non-empty and differ from --stable-version",
            ));
        }
        if self.fallback_cluster.trim().is_empty()
            || [&self.gray_version, &self.stable_version].contains(&&self.fallback_cluster)
        {
            return Err(flag(
                "fallback-cluster",
                "must be non-empty and differ from the versions' clusters",
            ));
        }
        let mut sidecars = Vec::new();
        for s in &self.sidecars {
            let (version, url) = pair("sidecar", s)?;
            check_url("sidecar", url, self.allow_remote)?;
            if sidecars.iter().any(|x: &Sidecar| x.version == version) {
                return Err(flag("sidecar", format!("{version} is given twice")));
            }
            sidecars.push(Sidecar {
                version: version.to_string(),
                metrics: format!("{}/metrics", url.trim_end_matches('/')),
            });
        }
        for v in [&self.gray_version, &self.stable_version] {
            if !sidecars.iter().any(|s| &s.version == v) {
                return Err(flag(
                    "sidecar",
                    format!("no sidecar is given for version {v}"),
                ));
            }
        }
        let pids = match (&self.pid_dir, self.processes.is_empty()) {
            (Some(_), false) => {
                return Err(flag("process", "give --process or --pid-dir, not both"));
            }
            (Some(dir), true) => Pids::Dir(dir.clone()),
            (None, _) => {
                let mut fixed = Vec::new();
                for p in &self.processes {
                    let (name, pid) = pair("process", p)?;
                    let pid = pid
                        .parse::<u32>()
                        .map_err(|_| flag("process", format!("{pid:?} is not a pid")))?;
                    fixed.push((name.to_string(), pid));
                }
                if fixed.is_empty() {
                    return Err(flag(
                        "process",
                        "watch something: --process NAME=PID or --pid-dir",
                    ));
                }
                Pids::Fixed(fixed)
            }
        };
        if sidecars.len() > MAX_WATCHED || matches!(&pids, Pids::Fixed(f) if f.len() > MAX_WATCHED)
        {
            return Err(flag("process", format!("watch at most {MAX_WATCHED}")));
        }
        let mix = Mix::parse(&self.cohorts)?;
        let stable_cohort = mix
            .cohorts()
            .iter()
            .position(|c| c.device_type == self.stable_cohort)
            .ok_or_else(|| {
                flag(
                    "stable-cohort",
                    format!("{} is not one of the --cohort types", self.stable_cohort),
                )
            })?;
        let admin = self.admin.trim_end_matches('/');
        Ok(Soak {
            traffic: Plan {
                // One gateway: the soak's counters are one Envoy's against the sidecars'.
                gateways: vec![Gateway {
                    name: "gw-0".into(),
                    target: self.target.clone(),
                    admin_metrics: format!("{admin}/stats/prometheus"),
                }],
                interval: Duration::from_secs_f64(1.0 / self.rate),
                requests: requests as u64,
                concurrency: self.concurrency,
                mix,
                timeout: Duration::from_millis(self.timeout_ms),
                // The breaker for the chart's shed state; the counters come with the samples.
                admin_poll: Duration::from_secs(1),
                gray_version: self.gray_version.clone(),
                stable_version: self.stable_version.clone(),
                live: false,
            },
            admin_metrics: format!("{admin}/stats/prometheus"),
            fallback_cluster: self.fallback_cluster.clone(),
            sidecars,
            pids,
            duration: Duration::from_secs(self.duration_s),
            warmup: Duration::from_secs(self.warmup_s),
            sample_every: Duration::from_secs(self.sample_s),
            bad_share: self.bad_percent / 100.0,
            max_growth: self.max_growth_percent / 100.0,
            stable_cohort,
            out: self.out.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> Args {
        let mut v = vec!["grayguard-soak", "--process", "envoy=1"];
        v.extend_from_slice(extra);
        Args::try_parse_from(v).unwrap()
    }

    #[test]
    fn defaults_are_the_local_mesh_for_ten_minutes() {
        let s = args(&[]).soak().unwrap();
        assert_eq!(s.duration, Duration::from_secs(600));
        assert_eq!(s.traffic.requests, 1200);
        assert_eq!(s.traffic.gateways[0].target, "http://127.0.0.1:10000/infer");
        assert_eq!(s.admin_metrics, "http://127.0.0.1:9901/stats/prometheus");
        assert_eq!(s.fallback_cluster, "v10-gray-fallback");
        assert!(!s.traffic.live);
        let versions: Vec<&str> = s.sidecars.iter().map(|c| c.version.as_str()).collect();
        assert_eq!(versions, ["v9-prod", "v10-gray"]);
        assert_eq!(s.sidecars[1].metrics, "http://127.0.0.1:8082/metrics");
        assert_eq!(s.pids, Pids::Fixed(vec![("envoy".into(), 1)]));
        assert_eq!(s.stable_cohort, 1);
        assert!((s.bad_share - 0.1).abs() < 1e-12 && (s.max_growth - 0.1).abs() < 1e-12);
    }

    #[test]
    fn every_bad_flag_is_named() {
        let cases: &[(&[&str], &str)] = &[
            (&["--rate", "0"], "--rate"),
            (&["--rate", "200", "--duration-s", "86400"], "--rate"),
            (&["--duration-s", "0"], "--duration-s"),
            (&["--warmup-s", "600"], "--warmup-s"),
            (&["--sample-s", "0"], "--sample-s"),
            (
                &["--duration-s", "20", "--warmup-s", "10", "--sample-s", "5"],
                "--sample-s",
            ),
            (&["--bad-percent", "60"], "--bad-percent"),
            (&["--max-growth-percent=-1"], "--max-growth-percent"),
            (&["--concurrency", "0"], "--concurrency"),
            (&["--timeout-ms", "0"], "--timeout-ms"),
            (&["--gray-version", "v9-prod"], "--gray-version"),
            (&["--fallback-cluster", "v9-prod"], "--fallback-cluster"),
            (&["--sidecar", "v9-prod"], "--sidecar"),
            (&["--sidecar", "v9-prod=http://10.1.1.1:8081"], "--sidecar"),
            (&["--stable-cohort", "nobody"], "--stable-cohort"),
            (&["--cohort", "bad type"], "--cohort"),
            (&["--target", "http://10.0.0.1/infer"], "--target"),
            (&["--pid-dir", "/tmp"], "--process"),
            (&["--process", "x=y"], "--process"),
        ];
        for (flags, name) in cases {
            let e = args(flags).soak().unwrap_err().to_string();
            assert!(e.starts_with(name), "{flags:?}: {e}");
        }
        let none = Args::try_parse_from(["grayguard-soak"]).unwrap().soak();
        assert!(none.unwrap_err().to_string().starts_with("--process"));
    }

    #[test]
    fn a_later_flag_overrides_and_lists_still_add_up() {
        let s = args(&[
            "--rate", "1", "--rate", "4", "--cohort", "a", "--cohort", "b",
        ])
        .soak()
        .unwrap_err();
        // Both cohorts were kept (neither is the default stable cohort).
        assert!(s.to_string().starts_with("--stable-cohort"), "{s}");
        let s = args(&[
            "--rate",
            "1",
            "--rate",
            "4",
            "--duration-s",
            "10",
            "--warmup-s",
            "1",
            "--sample-s",
            "1",
        ])
        .soak()
        .unwrap();
        assert_eq!(s.traffic.requests, 40);
        let two = args(&["--process", "x=2"]).soak().unwrap();
        assert_eq!(
            two.pids,
            Pids::Fixed(vec![("envoy".into(), 1), ("x".into(), 2)])
        );
    }

    #[test]
    fn a_pid_folder_replaces_fixed_processes() {
        let a = Args::try_parse_from(["grayguard-soak", "--pid-dir", ".run/pids"]).unwrap();
        assert_eq!(a.soak().unwrap().pids, Pids::Dir(".run/pids".into()));
    }
}
