//! End-to-end benchmark of the mesh with real processes (run by `tests/bench/e2e/run.sh`).
//!
//! 1. Front-proxy overhead: the same photo to the same sidecar, directly and through the front
//!    Envoy running the filter (rule matched, routed to that sidecar), alternating request by
//!    request in one run; the overhead is the median of the paired differences, reported as a
//!    share of the direct end-to-end latency (target: at most 2 %).
//! 2. Detection to shed: a fresh front Envoy per run learns the stable baseline, then the gray
//!    cohort is sent to the oversensitive gray version until the proxy sheds it. Reported per
//!    run: gray replies before the shed, and the time from the breaching reply (the last gray
//!    reply before the shed) to the first shed decision and to the breaker gauge showing open
//!    on Envoy's admin (target: within 1 s).
//!
//! Knobs (environment): GRAYGUARD_BENCH_E2E_PAIRS (request pairs for 1, default 60, at most
//! 5000), GRAYGUARD_BENCH_E2E_RUNS (runs of 2, default 5, at most 50).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use grayguard_e2e::mesh::{GRAY, Mesh, local_plugin_config};
use grayguard_e2e::paths;

/// Most gray-cohort requests one shed run may send before giving up.
const MAX_GRAY_PER_RUN: usize = 60;
/// Stable-cohort requests that teach the baseline before each shed run.
const BASELINE_REQUESTS: usize = 12;
/// Poll period of the breaker gauge on Envoy's admin.
const GAUGE_POLL: Duration = Duration::from_millis(2);

fn knob(name: &str, default: usize, max: usize) -> usize {
    match std::env::var(name) {
        Err(_) => default,
        Ok(v) => match v.parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => n,
            _ => panic!("{name}={v:?}: expected an integer in 1..={max}"),
        },
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// What a timed request returns: latency in ms, `x-model-version`, `x-canary-decision`.
type Timed = (f64, String, String);

/// Sends `photo` with a keep-alive `agent`; times it until the whole body is read.
fn timed_post(agent: &ureq::Agent, url: &str, headers: &[(&str, &str)], photo: &[u8]) -> Timed {
    let start = Instant::now();
    let mut req = agent.post(url);
    for (k, v) in headers {
        req = req.set(k, v);
    }
    let resp = req.send_bytes(photo).expect("request");
    let header = |name: &str| resp.header(name).unwrap_or_default().to_string();
    let (version, decision) = (header("x-model-version"), header("x-canary-decision"));
    let mut body = Vec::new();
    std::io::Read::read_to_end(&mut resp.into_reader(), &mut body).expect("body");
    (ms(start.elapsed()), version, decision)
}

fn overhead(pairs: usize, photo: &[u8]) {
    println!("== front-proxy overhead: {pairs} alternating request pairs, one photo, one sidecar");
    let config = local_plugin_config();
    // The gray sidecar is a normal one here (same threshold as stable): only the path differs.
    let flags = ["--conf", "0.25", "--threads", "2"];
    let mesh = Mesh::start(&config, &flags, &flags, 2);
    let direct_url = mesh.gray.url("/infer");
    let envoy_url = mesh.envoy.url("/infer");
    let headers = [
        ("content-type", "image/jpeg"),
        ("x-device-type", "crane-camera"),
        ("x-device-id", "crane-001"),
    ];
    let direct = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(30))
        .build();
    let proxied = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(30))
        .build();
    for _ in 0..5 {
        timed_post(&direct, &direct_url, &headers, photo);
        let (_, version, decision) = timed_post(&proxied, &envoy_url, &headers, photo);
        assert!(
            version == GRAY && decision == "gray; rule=crane-cameras",
            "the proxied request did not reach the gray sidecar through the rule: {version} {decision:?}"
        );
    }
    let (mut d, mut e, mut diff) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..pairs {
        let (a, b) = if i % 2 == 0 {
            let a = timed_post(&direct, &direct_url, &headers, photo).0;
            (a, timed_post(&proxied, &envoy_url, &headers, photo).0)
        } else {
            let b = timed_post(&proxied, &envoy_url, &headers, photo).0;
            (timed_post(&direct, &direct_url, &headers, photo).0, b)
        };
        d.push(a);
        e.push(b);
        diff.push(b - a);
    }
    let (d, e, diff) = (sorted(d), sorted(e), sorted(diff));
    let mean_diff = diff.iter().sum::<f64>() / diff.len() as f64;
    let sd = (diff.iter().map(|x| (x - mean_diff).powi(2)).sum::<f64>()
        / (diff.len().max(2) - 1) as f64)
        .sqrt();
    let ci = 1.96 * sd / (diff.len() as f64).sqrt();
    let p50 = percentile(&d, 0.5);
    let over = percentile(&diff, 0.5);
    println!(
        "direct to sidecar     p50 {:8.2} ms  p90 {:8.2} ms",
        p50,
        percentile(&d, 0.9)
    );
    println!(
        "via Envoy + filter    p50 {:8.2} ms  p90 {:8.2} ms",
        percentile(&e, 0.5),
        percentile(&e, 0.9)
    );
    println!("paired difference     p50 {over:+8.3} ms  mean {mean_diff:+.3} ms ± {ci:.3} (95 %)");
    let ratio = 100.0 * over / p50;
    println!(
        "RESULT front-proxy overhead: {over:+.3} ms = {ratio:+.2} % of {p50:.1} ms end to end (target <= 2 %): {}",
        if ratio <= 2.0 { "met" } else { "MISSED" }
    );
}

/// When the breaker gauge first reads non-zero, polled on the admin until `stop`.
fn watch_gauge(admin: String, stop: Arc<AtomicBool>) -> thread::JoinHandle<Option<Instant>> {
    thread::spawn(move || {
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(2))
            .build();
        let url = format!("{admin}/stats?filter=%5Egrayguard_breaker_state%24");
        while !stop.load(Ordering::Relaxed) {
            if let Some(text) = agent
                .get(&url)
                .call()
                .ok()
                .and_then(|r| r.into_string().ok())
            {
                let open = text
                    .lines()
                    .filter_map(|l| l.split(':').nth(1))
                    .any(|v| v.trim().parse::<f64>().is_ok_and(|v| v != 0.0));
                if open {
                    return Some(Instant::now());
                }
            }
            thread::sleep(GAUGE_POLL);
        }
        None
    })
}

fn detection_to_shed(runs: usize, photos: &[Vec<u8>]) {
    println!(
        "== detection to shed: {runs} runs, a fresh front Envoy each, canonical plugin config"
    );
    let config = local_plugin_config();
    let mut mesh = Mesh::start(
        &config,
        &["--conf", "0.25", "--threads", "1"],
        &["--conf", "0.01", "--threads", "1"],
        2,
    );
    let (mut to_decision, mut to_gauge) = (Vec::new(), Vec::new());
    for run in 0..runs {
        if run > 0 {
            // A fresh Envoy: no learned baseline, no breaker state.
            mesh.restart_envoy(&config, 2);
        }
        for i in 0..BASELINE_REQUESTS {
            let r = mesh.infer(
                "dock-camera",
                &format!("dock-{i}"),
                &photos[i % photos.len()],
                &[],
            );
            assert_eq!(r.status, 200, "baseline request failed: {}", r.text());
        }
        let stop = Arc::new(AtomicBool::new(false));
        let gauge = watch_gauge(mesh.envoy.admin_url(""), Arc::clone(&stop));
        let mut gray_replies = 0;
        let mut last_gray_received = None;
        let mut shed_sent = None;
        for i in 0..MAX_GRAY_PER_RUN {
            let sent = Instant::now();
            let r = mesh.infer(
                "crane-camera",
                &format!("crane-{}", i % 4),
                &photos[i % photos.len()],
                &[],
            );
            let received = Instant::now();
            assert_eq!(r.status, 200, "a client saw an error: {}", r.text());
            let decision = r
                .header("x-canary-decision")
                .unwrap_or_default()
                .to_string();
            if decision.contains("shed=") {
                shed_sent = Some(sent);
                break;
            }
            if r.header("x-model-version") == Some(GRAY) {
                gray_replies += 1;
                last_gray_received = Some(received);
            }
        }
        // Give the poller a moment to see a gauge that flipped at the very end.
        thread::sleep(Duration::from_millis(50));
        stop.store(true, Ordering::Relaxed);
        let gauge_open = gauge.join().expect("gauge poller");
        let (Some(breaching), Some(shed)) = (last_gray_received, shed_sent) else {
            println!("run {run}: no shed within {MAX_GRAY_PER_RUN} gray-cohort requests");
            continue;
        };
        let decision_ms = ms(shed.saturating_duration_since(breaching));
        // The gauge may flip before the client has even read the breaching reply: 0 then.
        let gauge_ms = gauge_open.map(|g| ms(g.saturating_duration_since(breaching)));
        println!(
            "run {run}: {gray_replies} gray replies, breaching reply -> shed decision {decision_ms:.2} ms, -> gauge open {}",
            gauge_ms.map_or("not seen".to_string(), |g| format!("{g:.2} ms"))
        );
        to_decision.push(decision_ms);
        if let Some(g) = gauge_ms {
            to_gauge.push(g);
        }
    }
    let (dec, gau) = (sorted(to_decision), sorted(to_gauge));
    let worst = dec
        .last()
        .copied()
        .unwrap_or(f64::NAN)
        .max(gau.last().copied().unwrap_or(0.0));
    println!(
        "RESULT detection to shed over {} run(s): shed decision p50 {:.2} ms max {:.2} ms; gauge open p50 {:.2} ms max {:.2} ms (target <= 1000 ms): {}",
        dec.len(),
        percentile(&dec, 0.5),
        dec.last().copied().unwrap_or(f64::NAN),
        percentile(&gau, 0.5),
        gau.last().copied().unwrap_or(f64::NAN),
        if dec.len() == runs && worst <= 1000.0 {
            "met"
        } else {
            "MISSED"
        }
    );
}

fn main() {
    let pairs = knob("GRAYGUARD_BENCH_E2E_PAIRS", 60, 5_000);
    let runs = knob("GRAYGUARD_BENCH_E2E_RUNS", 5, 50);
    let photos: Vec<Vec<u8>> = ["person.jpg", "horses.jpg", "dog.jpg", "giraffe.jpg"]
        .iter()
        .map(|n| std::fs::read(paths::image(n)).expect("read photo"))
        .collect();
    overhead(pairs, &photos[0]);
    detection_to_shed(runs, &photos);
}
