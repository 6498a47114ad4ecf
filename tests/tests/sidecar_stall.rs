//! A model that really hangs: the release sidecar serving `make setup`'s hang model (the real
//! YOLO export behind a Loop of 2**62 trips on a black frame, sidecar/tools/hang_model.py),
//! with the real ONNX Runtime. It loads, warms up and answers photos like the original; a
//! black frame then starts a model run that never returns. Within the stall deadline (derived
//! from the warm-up) the sidecar fails its liveness probe, `/ready` turns 503, every reply
//! carries `x-canary-breach: stalled`, the stall is counted once, the self-check gives up at
//! the same deadline, and SIGTERM ends the process at once instead of draining a run that
//! cannot finish.
//!
//! Test code may panic freely: a failed expectation is a failed test.

use std::time::{Duration, Instant};

use grayguard_client::exposition as prom;
use grayguard_contract::metrics::sidecar as names;
use grayguard_contract::{Flag, Reason, headers};
use grayguard_e2e::sidecar::{BLACK_PNG, SidecarBuilder};
use grayguard_e2e::wait::eventually;
use grayguard_e2e::{http, paths};

/// The pod name the test gives the sidecar (as the manifests do, through the downward API).
const POD: &str = "yolo-v10-gray-7d9f8c-x2x4q";

#[test]
fn a_hung_model_fails_liveness_and_readiness_flags_every_reply_and_is_counted() {
    let mut sc = SidecarBuilder::new("v10-gray")
        .model(paths::hang_model())
        .env("POD_NAME", POD)
        // One thread: the stuck run spins one core until the process ends.
        .flag("--threads", "1")
        .flag("--warmup-runs", "3")
        // The derived deadline, shortened for the test: 4 warm-up medians, at least 2 s.
        .flag("--stall-factor", "4")
        .flag("--stall-min-s", "2")
        .flag("--self-check-interval-s", "1")
        // Far longer than the test waits: only the stall can end the drain early.
        .flag("--drain-timeout-s", "600")
        .start();
    let metric = |selector: &str| prom::value(&sc.metrics(), selector);
    let deadline_s = metric(names::STALL_DEADLINE_SECONDS).expect("the stall deadline gauge");
    assert!(
        deadline_s >= 2.0,
        "the deadline is at least --stall-min-s: {deadline_s}"
    );
    assert_eq!(metric(names::STALLS_TOTAL), Some(0.0));

    // The hang model serves photos as the original does, and every reply says who answered.
    let r = sc.infer_file("person.jpg");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header(headers::SERVED_BY), Some(POD));
    assert!(r.header(headers::BREACH).is_none());
    assert!(r.json()["fps"].as_f64().unwrap() > 0.0, "{}", r.text());
    let health = http::get(&sc.url("/healthz")).unwrap();
    assert_eq!(health.status, 200);
    assert_eq!(health.header(headers::SERVED_BY), Some(POD));

    // A black frame: the model run never returns (its client gives up after 30 s).
    let sent = Instant::now();
    let stuck = {
        let url = sc.url("/infer");
        std::thread::spawn(move || http::post(&url, &[("content-type", "image/png")], BLACK_PNG))
    };
    let failed_at = http::wait_for_status(
        &sc.url("/healthz"),
        503,
        Duration::from_secs_f64(deadline_s) + Duration::from_secs(30),
    );
    eprintln!(
        "liveness failed {:.2} s after the black frame was sent (stall deadline {deadline_s:.2} s)",
        (failed_at - sent).as_secs_f64()
    );
    let health = http::get(&sc.url("/healthz")).unwrap();
    assert_eq!(
        (health.status, health.json()["status"].clone()),
        (503, "stalled".into())
    );
    let ready = http::get(&sc.url("/ready")).unwrap();
    assert_eq!(
        (ready.status, ready.json()["status"].clone()),
        (503, "stalled".into())
    );

    // Every reply carries the first-hand flag gateways shed on: here a bad input, answered
    // at once (a photo would wait behind the stuck run).
    let r = http::post(&sc.url("/infer"), &[("content-type", "text/plain")], b"x").unwrap();
    assert_eq!(r.status, 415, "{}", r.text());
    let flag = Flag::parse(r.header(headers::BREACH).expect("a breach flag"));
    assert!(flag.reasons.contains(&Reason::Stalled), "{flag:?}");
    assert!(flag.first_hand());
    assert_eq!(r.header(headers::SERVED_BY), Some(POD));

    // Counted once; the gauges say it is now.
    assert_eq!(metric(names::STALLS_TOTAL), Some(1.0));
    assert_eq!(metric(names::STALLED), Some(1.0));
    assert_eq!(
        metric(&format!("{}{{reason=\"stalled\"}}", names::BREACH_ACTIVE)),
        Some(1.0)
    );
    assert_eq!(metric(names::READY), Some(0.0));

    // The self-check, stuck behind the hung run, gives up at the same deadline.
    eventually(
        "a self-check gives up at the stall deadline",
        Duration::from_secs_f64(deadline_s) + Duration::from_secs(30),
        || {
            sc.proc
                .log()
                .contains("no answer within the stall deadline")
        },
    );
    assert_eq!(metric(names::STALLS_TOTAL), Some(1.0));

    // SIGTERM: no drain of a run that cannot finish (the drain timeout is 10 minutes).
    let asked = Instant::now();
    let status = sc
        .proc
        .terminate(Duration::from_secs(60))
        .expect("a stalled sidecar exits on SIGTERM without draining");
    assert!(status.success(), "{status}\n{}", sc.proc.log());
    eprintln!(
        "exited {:.2} s after SIGTERM",
        asked.elapsed().as_secs_f64()
    );
    assert!(
        sc.proc
            .log()
            .contains("shutting down while stalled: 1 request(s) in flight are dropped"),
        "{}",
        sc.proc.log()
    );
    assert!(
        stuck.join().unwrap().is_err(),
        "the stuck request got an answer"
    );
}
