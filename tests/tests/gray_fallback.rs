//! A failing gray version costs the cameras nothing, seen at the moment of the fault: the
//! real front Envoy running the shipped `mesh-config/local/envoy.yaml` (`shipped`: ports
//! moved, nothing else changed — the filter, the gray route's aggregate cluster and its one
//! retry onto stable) in front of two real sidecars with the real model, with four gray
//! requests in flight when the fault strikes (more retries at once than Envoy's default
//! circuit breaker allows) and both cohorts' traffic going on:
//!
//! - gray SIGKILLed: no client sees an error; the gray cohort's requests are answered by
//!   stable (`x-model-version: v9-prod`, `x-envoy-attempt-count: 2`, the stable pod in
//!   `x-served-by`, `fallback` in the decision);
//! - gray hung (SIGSTOP): no client error; each request that meets it is answered by stable
//!   after the per-try timeout.
//!
//! The latencies of the affected requests are printed, not asserted (`--nocapture`). What the
//! filter makes of the fallbacks over time (the shed, the records, the recovery), a killed
//! stable and the other faults are `faults.rs`'s.
//!
//! Test code may panic freely: a failed expectation is a failed test.

use std::time::{Duration, Instant};

use grayguard_client::exposition as prom;
use grayguard_contract::metrics::sidecar as names;
use grayguard_contract::{Decision, Note, Side, headers};
use grayguard_e2e::load::{Lane, Latencies, Load, Outcome, describe};
use grayguard_e2e::mesh::{Fleet, Front, GRAY, STABLE, local_plugin_config};
use grayguard_e2e::shipped::{FALLBACK_CLUSTER, per_try_timeout};
use grayguard_e2e::sidecar::{Sidecar, SidecarBuilder};
use grayguard_e2e::wait::Wait;
use grayguard_e2e::{http, paths};

/// The pods' names, as the manifests pass them through the downward API.
const STABLE_POD: &str = "yolo-v9-prod-0";
const GRAY_POD: &str = "yolo-v10-gray-0";

/// The shipped gateway in front of both sidecars, each with its pod name (the gray one with
/// its control listener, as the local mesh runs it).
fn start() -> Fleet {
    Fleet::start_on(
        Front::Shipped,
        &local_plugin_config(),
        SidecarBuilder::new(STABLE).env("POD_NAME", STABLE_POD),
        SidecarBuilder::new(GRAY)
            .env("POD_NAME", GRAY_POD)
            .flag("--threads", "1"),
        1,
        2,
    )
}

fn url(mesh: &Fleet) -> String {
    mesh.gateways[0].url("/infer")
}

const GRAY_COHORT: usize = 0;
const STABLE_COHORT: usize = 1;

/// The gray cohort (crane cameras, routed to gray) and the stable cohort (dock cameras), one
/// sender each, a request a second at most: light enough that stable can take gray's share
/// on this small machine. Bounded.
fn cohorts(mesh: &Fleet) -> Load {
    Load::start(
        &[url(mesh)],
        &[
            Lane::new("crane-camera", Duration::from_secs(1), 200),
            Lane::new("dock-camera", Duration::from_secs(1), 200),
        ],
        Duration::from_secs(180),
    )
}

/// `n` gray-cohort requests sent together through the gateway (their retries are in flight
/// together), plus one more by hand whose headers are kept; collected by [`Burst::join`].
struct Burst {
    load: Load,
    hand: std::thread::JoinHandle<(Duration, http::Response)>,
    n: usize,
}

impl Burst {
    fn send(mesh: &Fleet, n: usize) -> Burst {
        let load = Load::start(
            &[url(mesh)],
            // One request per sender; a short pace lets each stop as soon as it is answered.
            &[Lane::new("crane-camera", Duration::from_millis(10), n).senders(n)],
            Duration::from_secs(60),
        );
        let url = url(mesh);
        let hand = std::thread::spawn(move || {
            let sent = Instant::now();
            let r = crane(&url);
            (sent.elapsed(), r)
        });
        Burst { load, hand, n }
    }

    /// Waits until gray has admitted them all (they are in flight there).
    fn wait_admitted(&self, gray: &Sidecar) {
        Wait::new("gray admits the burst", Duration::from_secs(60))
            .every(Duration::from_millis(20))
            .until(|| {
                let in_flight = prom::value(&gray.metrics(), names::IN_FLIGHT);
                if in_flight.is_some_and(|v| v >= (self.n + 1) as f64) {
                    Ok(())
                } else {
                    Err(format!("in flight {in_flight:?}"))
                }
            });
    }

    /// The burst's outcomes, and the hand request's latency and reply.
    fn join(self) -> (Vec<Outcome>, Duration, http::Response) {
        let n = self.n;
        self.load
            .wait_until("the burst's replies", Duration::from_secs(60), |all| {
                all.len() == n
            });
        let (took, reply) = self.hand.join().unwrap();
        (self.load.stop(), took, reply)
    }
}

/// One request of the gray cohort's camera, by hand.
fn crane(url: &str) -> http::Response {
    let photo = std::fs::read(paths::image("person.jpg")).unwrap();
    http::post(
        url,
        &[
            ("content-type", "image/jpeg"),
            (headers::DEVICE_TYPE, "crane-camera"),
            (headers::DEVICE_ID, "crane-by-hand"),
        ],
        &photo,
    )
    .expect("the gateway answers")
}

/// What the filter sees of a fallback: stable's reply to a request it routed to gray, on the
/// second attempt.
fn is_fallback(r: &http::Response) {
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header(headers::MODEL_VERSION), Some(STABLE));
    assert_eq!(r.header(headers::SERVED_BY), Some(STABLE_POD));
    assert_eq!(r.header(headers::ENVOY_ATTEMPT_COUNT), Some("2"));
    let decision = Decision::parse(r.header(headers::DECISION).unwrap()).unwrap();
    assert_eq!(
        (decision.side, decision.rule.as_deref(), decision.note),
        (Side::Gray, Some("crane-cameras"), Some(Note::Fallback))
    );
}

/// The filter sent it to gray (a fallback when stable answered it).
fn gray_routed(o: &Outcome) -> bool {
    o.parsed().is_some_and(|d| d.side == Side::Gray)
}

fn no_errors(all: &[Outcome]) {
    let failed: Vec<Outcome> = all.iter().filter(|o| !o.ok()).cloned().collect();
    assert!(
        failed.is_empty(),
        "client-visible errors:\n{}",
        describe(&failed)
    );
}

/// Checks that every gray-cohort request of `after` was answered by stable, and prints how
/// those the filter routed to gray (the fallbacks; `hand` is one more) fared.
fn fallbacks(what: &str, after: &[&Outcome], hand: Duration) -> usize {
    let by_gray: Vec<Outcome> = after
        .iter()
        .filter(|o| !o.served_by(STABLE))
        .map(|o| (*o).clone())
        .collect();
    assert!(
        by_gray.is_empty(),
        "{what}: not answered by stable:\n{}",
        describe(&by_gray)
    );
    let mut took: Vec<Duration> = after
        .iter()
        .filter(|o| gray_routed(o))
        .map(|o| o.latency())
        .collect();
    took.push(hand);
    let latencies = Latencies::of(took);
    eprintln!(
        "{what}: {} gray-cohort requests answered by stable, {} of them routed to gray (fallbacks): latency {latencies}",
        after.len() + 1,
        latencies.n
    );
    latencies.n
}

const BURST: usize = 3;

#[test]
fn a_crashed_gray_is_answered_by_stable_with_no_client_error() {
    let mut mesh = start();
    let before = crane(&url(&mesh));
    assert_eq!(before.status, 200, "{}", before.text());
    assert_eq!(before.header(headers::MODEL_VERSION), Some(GRAY));
    assert_eq!(before.header(headers::SERVED_BY), Some(GRAY_POD));
    assert_eq!(before.header(headers::ENVOY_ATTEMPT_COUNT), Some("1"));

    let load = cohorts(&mesh);
    load.wait_until("gray serves its cohort", Duration::from_secs(60), |all| {
        all.iter()
            .filter(|o| o.lane == GRAY_COHORT && o.served_by(GRAY))
            .count()
            >= 2
    });
    // Four requests in flight at gray when it dies (more retries at once than Envoy's
    // default circuit breaker allows), besides the cohort's own.
    let burst = Burst::send(&mesh, BURST);
    burst.wait_admitted(&mesh.gray);
    mesh.gray.proc.crash();
    let crashed = load.now();
    let (burst, hand_took, hand) = burst.join();
    is_fallback(&hand);
    load.wait_for_replies_after(
        "the gray cohort after the crash",
        Duration::from_secs(60),
        GRAY_COHORT,
        crashed,
        3,
    );
    let all = load.stop();

    no_errors(&all);
    no_errors(&burst);
    // The burst was routed to gray before any failure: every one fell back.
    assert!(burst.iter().all(gray_routed), "{}", describe(&burst));
    let after: Vec<&Outcome> = all
        .iter()
        .filter(|o| o.lane == GRAY_COHORT && o.done > crashed && !o.served_by(GRAY))
        .chain(&burst)
        .collect();
    let fell_back = fallbacks("gray SIGKILL", &after, hand_took);
    let late: Vec<Outcome> = all
        .iter()
        .filter(|o| o.lane == GRAY_COHORT && o.sent > crashed && !o.served_by(STABLE))
        .cloned()
        .collect();
    assert!(
        late.is_empty(),
        "gray served after its crash:\n{}",
        describe(&late)
    );
    let stable_cohort: Vec<Outcome> = all
        .iter()
        .filter(|o| o.lane == STABLE_COHORT && !o.served_by(STABLE))
        .cloned()
        .collect();
    assert!(stable_cohort.is_empty(), "{}", describe(&stable_cohort));
    let stat = |s: &str| mesh.gateways[0].cluster_stat(FALLBACK_CLUSTER, s);
    assert_eq!(stat("upstream_rq_retry_overflow"), 0.0);
    assert!(
        stat("upstream_rq_retry_success") >= fell_back as f64,
        "every fallback is a successful retry: {}",
        stat("upstream_rq_retry_success")
    );
}

#[test]
fn a_hung_gray_is_answered_by_stable_after_the_per_try_timeout() {
    let mesh = start();
    let warm = cohorts(&mesh);
    warm.wait_until("gray serves its cohort", Duration::from_secs(60), |all| {
        all.iter()
            .filter(|o| o.lane == GRAY_COHORT && o.served_by(GRAY))
            .count()
            >= 2
    });
    no_errors(&warm.stop());
    // Four requests in flight at gray when it hangs, all timing out together.
    let burst = Burst::send(&mesh, BURST);
    burst.wait_admitted(&mesh.gray);
    mesh.gray.proc.signal("STOP");
    let (burst, hand_took, hand) = burst.join();
    is_fallback(&hand);
    // And the cohort's requests routed after it hung.
    let after = Load::start(
        &[url(&mesh)],
        &[Lane::new("crane-camera", Duration::from_millis(500), 3)],
        Duration::from_secs(60),
    );
    after.wait_until(
        "the cohort after the hang",
        Duration::from_secs(60),
        |all| all.len() == 3,
    );
    let after = after.stop();
    mesh.gray.proc.signal("CONT");

    no_errors(&burst);
    no_errors(&after);
    assert!(burst.iter().all(gray_routed), "{}", describe(&burst));
    let all: Vec<&Outcome> = burst.iter().chain(&after).collect();
    let fell_back = fallbacks("gray SIGSTOP", &all, hand_took);
    // A request that met the hung gray waited out the per-try timeout before stable was asked.
    let per_try = per_try_timeout();
    for o in all.iter().filter(|o| gray_routed(o)) {
        assert!(
            o.latency() >= per_try,
            "answered before the per-try timeout: {}",
            describe(std::slice::from_ref(*o))
        );
    }
    assert!(hand_took >= per_try);
    // (A hedged per-try timeout is counted as a retry, not in upstream_rq_per_try_timeout.)
    let stat = |s: &str| mesh.gateways[0].cluster_stat(FALLBACK_CLUSTER, s);
    assert_eq!(stat("upstream_rq_retry_overflow"), 0.0);
    assert!(stat("upstream_rq_retry_success") >= fell_back as f64);
    eprintln!(
        "gray SIGSTOP: per-try timeout {:.1} s; stable's mean server-side latency {:.3} s",
        per_try.as_secs_f64(),
        stable_mean(&mesh.stable)
    );
}

/// The stable sidecar's mean server-side latency (decode to reply) so far, seconds.
fn stable_mean(stable: &Sidecar) -> f64 {
    let text = stable.metrics();
    let count = prom::value(&text, "grayguard_sidecar_request_duration_seconds_count").unwrap();
    let sum = prom::value(&text, "grayguard_sidecar_request_duration_seconds_sum").unwrap();
    sum / count.max(1.0)
}
