//! The sampler: every few seconds, each watched process's memory and open files (from
//! `/proc`) and the counters of the front Envoy (the filter's, the clusters', the gray
//! route's retries onto stable) and of every sidecar, one line each in the live view.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use indicatif::ProgressBar;

use grayguard_client::breaker::Breaker;
use grayguard_client::exposition;
use grayguard_client::fetch::{self, Client};
use grayguard_contract::metrics::{filter, sidecar};

use crate::config::{Pids, Soak};
use crate::procfs::{self, Usage};

/// One process at one sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Proc {
    pub name: String,
    pub pid: u32,
    /// `None` when the process could not be read (gone).
    pub usage: Option<Usage>,
}

/// The filter's and Envoy's counters at one sample.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EnvoyCounters {
    pub routed_gray: f64,
    pub routed_stable: f64,
    pub shed: f64,
    pub probes: f64,
    pub gray_failures: f64,
    /// Gray requests the filter saw answered by stable (`grayguard_fallbacks_total`, every
    /// rule).
    pub fallbacks: f64,
    pub breaker: Option<Breaker>,
    /// Requests Envoy sent to each version's cluster (`upstream_rq_total`).
    pub upstream: BTreeMap<String, f64>,
    /// The gray route's retries onto stable ([`Retries`]).
    pub retries: Retries,
}

/// The retry counters of the gray route's cluster (`v10-gray-fallback`): each retry is a gray
/// request sent to stable too, after gray failed or hedged at the per-try timeout.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Retries {
    /// Retries and hedges sent (`upstream_rq_retry`).
    pub sent: f64,
    /// Those whose answer was the one the client got (`upstream_rq_retry_success`).
    pub answered: f64,
    /// Retries refused by the circuit breaker (`upstream_rq_retry_overflow`).
    pub overflow: f64,
}

/// One sidecar's counters at one sample.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SidecarCounters {
    /// `/infer` replies, every status.
    pub requests: f64,
    /// Failures of every kind.
    pub errors: f64,
}

/// Everything read at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reading {
    /// From the start of the soak.
    pub at: Duration,
    pub procs: Vec<Proc>,
    /// `None` when the admin did not answer.
    pub envoy: Option<EnvoyCounters>,
    /// Per sidecar version; `None` when it did not answer.
    pub sidecars: BTreeMap<String, Option<SidecarCounters>>,
}

/// Envoy's Prometheus name of a cluster's request counter.
pub fn upstream_selector(cluster: &str) -> String {
    cluster_selector(cluster, "upstream_rq_total")
}

/// Envoy's Prometheus name of one of a cluster's counters (`upstream_rq_retry`, ...).
fn cluster_selector(cluster: &str, stat: &str) -> String {
    format!("envoy_cluster_{stat}{{envoy_cluster_name=\"{cluster}\"}}")
}

/// The filter's counters, the clusters' of `versions` and the gray route's retries on
/// `fallback` in an admin `/stats/prometheus` text.
pub fn envoy_counters(text: &str, versions: &[&str], fallback: &str) -> EnvoyCounters {
    let v = |name: &str| exposition::value(text, name).unwrap_or(0.0);
    EnvoyCounters {
        routed_gray: v(filter::ROUTED_GRAY),
        routed_stable: v(filter::ROUTED_STABLE),
        shed: v(filter::SHED_REQUESTS),
        probes: v(filter::PROBE_REQUESTS),
        gray_failures: v(filter::GRAY_FAILURES),
        fallbacks: v(filter::FALLBACKS),
        breaker: Breaker::read(text),
        upstream: versions
            .iter()
            .map(|c| (c.to_string(), v(&upstream_selector(c))))
            .collect(),
        retries: Retries {
            sent: v(&cluster_selector(fallback, "upstream_rq_retry")),
            answered: v(&cluster_selector(fallback, "upstream_rq_retry_success")),
            overflow: v(&cluster_selector(fallback, "upstream_rq_retry_overflow")),
        },
    }
}

/// A sidecar's counters in its `/metrics` text.
pub fn sidecar_counters(text: &str) -> SidecarCounters {
    SidecarCounters {
        requests: exposition::value(text, sidecar::REQUESTS_TOTAL).unwrap_or(0.0),
        errors: exposition::value(text, sidecar::ERRORS_TOTAL).unwrap_or(0.0),
    }
}

/// The `NAME.pid` files of `dir`, by name; unreadable ones (a restart in progress) are left
/// out.
pub fn pids_in(dir: &Path) -> Vec<(String, u32)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<(String, u32)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let path = e.path();
            let name = path
                .file_name()?
                .to_str()?
                .strip_suffix(".pid")?
                .to_string();
            let pid = std::fs::read_to_string(&path).ok()?.trim().parse().ok()?;
            Some((name, pid))
        })
        .collect();
    found.sort();
    found
}

/// Reads the processes and the counters.
#[derive(Debug, Clone)]
pub struct Sampler {
    client: Client,
    admin: String,
    fallback_cluster: String,
    sidecars: Vec<(String, String)>,
    pids: Pids,
    start: Instant,
}

/// How long one reading of a metrics page may take.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

impl Sampler {
    pub fn new(soak: &Soak, start: Instant) -> Sampler {
        Sampler {
            client: Client::new(READ_TIMEOUT, fetch::MAX_METRICS_BYTES),
            admin: soak.admin_metrics.clone(),
            fallback_cluster: soak.fallback_cluster.clone(),
            sidecars: soak
                .sidecars
                .iter()
                .map(|s| (s.version.clone(), s.metrics.clone()))
                .collect(),
            pids: soak.pids.clone(),
            start,
        }
    }

    /// The page at `url`, or `None` when it could not be read (counted as not answering).
    fn fetch(&self, url: &str) -> Option<String> {
        self.client.get(url, &[]).ok()
    }

    /// One reading, now.
    pub fn read(&self) -> Reading {
        let pids = match &self.pids {
            Pids::Fixed(fixed) => fixed.clone(),
            Pids::Dir(dir) => pids_in(dir),
        };
        let procs = pids
            .into_iter()
            .map(|(name, pid)| Proc {
                usage: procfs::read(pid),
                name,
                pid,
            })
            .collect();
        let versions: Vec<&str> = self.sidecars.iter().map(|(v, _)| v.as_str()).collect();
        let envoy = self
            .fetch(&self.admin)
            .map(|t| envoy_counters(&t, &versions, &self.fallback_cluster));
        let sidecars = self
            .sidecars
            .iter()
            .map(|(v, url)| (v.clone(), self.fetch(url).map(|t| sidecar_counters(&t))))
            .collect();
        Reading {
            at: self.start.elapsed(),
            procs,
            envoy,
            sidecars,
        }
    }

    /// Samples every `every` on a thread until `stop`, printing a line per reading.
    pub fn spawn(
        self,
        every: Duration,
        stop: Arc<AtomicBool>,
        bar: ProgressBar,
    ) -> JoinHandle<Vec<Reading>> {
        std::thread::spawn(move || {
            let mut readings = Vec::new();
            let mut next = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                if Instant::now() >= next {
                    let r = self.read();
                    let line = describe(&r);
                    bar.suspend(|| println!("{line}"));
                    readings.push(r);
                    next += every;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            readings
        })
    }
}

/// The live view's line for a reading.
pub fn describe(r: &Reading) -> String {
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let procs: Vec<String> = r
        .procs
        .iter()
        .map(|p| match p.usage {
            Some(u) => format!("{} {:.0} MiB/{} fds", p.name, mib(u.rss_bytes), u.fds),
            None => format!("{} gone", p.name),
        })
        .collect();
    let envoy = r.envoy.as_ref().map_or("admin silent".to_string(), |e| {
        format!(
            "routed gray {} stable {} (shed {}, probes {}, fallbacks {}) breaker {}",
            e.routed_gray,
            e.routed_stable,
            e.shed,
            e.probes,
            e.fallbacks,
            e.breaker.map_or("?", Breaker::as_str)
        )
    });
    format!(
        "t={:>5.0}s  {}  | {envoy}",
        r.at.as_secs_f64(),
        procs.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADMIN: &str = "\
grayguard_routed_gray{} 12
grayguard_routed_stable{} 30
grayguard_shed_requests{} 9
grayguard_breaker_state{} 1
envoy_cluster_upstream_rq_total{envoy_cluster_name=\"v9-prod\"} 30
envoy_cluster_upstream_rq_total{envoy_cluster_name=\"v10-gray\"} 12
envoy_cluster_upstream_rq_total{envoy_cluster_name=\"outbound|9092|v10-gray|x\"} 2
grayguard_fallbacks_total{rule=\"crane-cameras\"} 3
grayguard_fallbacks_total{rule=\"night\"} 1
envoy_cluster_upstream_rq_retry{envoy_cluster_name=\"v10-gray-fallback\"} 5
envoy_cluster_upstream_rq_retry_success{envoy_cluster_name=\"v10-gray-fallback\"} 4
";

    #[test]
    fn reads_the_filter_and_the_clusters() {
        let e = envoy_counters(ADMIN, &["v9-prod", "v10-gray"], "v10-gray-fallback");
        assert_eq!((e.routed_gray, e.routed_stable, e.shed), (12.0, 30.0, 9.0));
        assert_eq!((e.probes, e.gray_failures, e.fallbacks), (0.0, 0.0, 4.0));
        assert_eq!(
            e.retries,
            Retries {
                sent: 5.0,
                answered: 4.0,
                overflow: 0.0
            }
        );
        // A mesh without the fallback's cluster has no retries.
        assert_eq!(
            envoy_counters(ADMIN, &[], "missing").retries,
            Retries::default()
        );
        assert_eq!(e.breaker, Some(Breaker::Open));
        assert_eq!(e.upstream["v9-prod"], 30.0);
        assert_eq!(e.upstream["v10-gray"], 12.0);
        let s = sidecar_counters(
            "grayguard_sidecar_requests_total{status=\"200\"} 7\n\
             grayguard_sidecar_requests_total{status=\"400\"} 2\n\
             grayguard_sidecar_errors_total{kind=\"bad_image\"} 2\n",
        );
        assert_eq!((s.requests, s.errors), (9.0, 2.0));
    }

    #[test]
    fn pid_files_are_read_by_name_and_bad_ones_skipped() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("v9-prod.pid"), "123\n").unwrap();
        std::fs::write(dir.path().join("envoy.pid"), "77").unwrap();
        std::fs::write(dir.path().join("broken.pid"), "").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "1").unwrap();
        assert_eq!(
            pids_in(dir.path()),
            vec![("envoy".to_string(), 77), ("v9-prod".to_string(), 123)]
        );
        assert!(pids_in(&dir.path().join("missing")).is_empty());
    }

    #[test]
    fn describes_a_reading() {
        let r = Reading {
            at: Duration::from_secs(65),
            procs: vec![
                Proc {
                    name: "envoy".into(),
                    pid: 1,
                    usage: Some(Usage {
                        rss_bytes: 50 << 20,
                        fds: 40,
                    }),
                },
                Proc {
                    name: "v10-gray".into(),
                    pid: 2,
                    usage: None,
                },
            ],
            envoy: Some(envoy_counters(ADMIN, &[], "v10-gray-fallback")),
            sidecars: BTreeMap::new(),
        };
        let line = describe(&r);
        assert!(line.starts_with("t=   65s"), "{line}");
        assert!(
            line.contains("envoy 50 MiB/40 fds, v10-gray gone"),
            "{line}"
        );
        assert!(line.contains("breaker OPEN"), "{line}");
    }
}
