//! The sidecar under load and at shutdown, with the real model: a flood beyond `--max-queue`
//! is answered with fast 503s (never a hang), and SIGTERM lets in-flight requests finish
//! before the process exits 0.

use grayguard_contract::headers;
use std::time::{Duration, Instant};

use grayguard_client::exposition;
use grayguard_e2e::http;
use grayguard_e2e::paths;
use grayguard_e2e::sidecar::{Sidecar, SidecarBuilder};
use grayguard_e2e::wait::Wait;

/// One model worker, one waiting slot: at most two requests are admitted at a time.
fn one_slot_sidecar() -> Sidecar {
    SidecarBuilder::new("v-load")
        .flag("--max-queue", "1")
        .flag("--watchdog-latency-budget-ms", "60000")
        .start()
}

#[test]
fn a_flood_beyond_the_queue_gets_fast_503s_never_a_hang() {
    let sc = one_slot_sidecar();
    let url = sc.url("/infer");
    let image = paths::photo("person.jpg");

    // A flood of 12 simultaneous requests.
    let started = Instant::now();
    let replies: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..12)
            .map(|_| s.spawn(|| http::post(&url, &[("content-type", "image/jpeg")], &image)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap().expect("every request is answered"))
            .collect()
    });
    let elapsed = started.elapsed();
    let ok = replies.iter().filter(|r| r.status == 200).count();
    let full: Vec<_> = replies.iter().filter(|r| r.status == 503).collect();
    assert_eq!(
        ok + full.len(),
        12,
        "only 200s and 503s: {:?}",
        replies.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    assert!(ok >= 1, "the admitted requests are served");
    assert!(
        full.len() >= 6,
        "most of the flood is refused at once, got {} 503s",
        full.len()
    );
    for r in &full {
        assert_eq!(r.json()["kind"], "queue_full");
        assert_eq!(r.header("retry-after"), Some("1"));
        assert_eq!(r.header(headers::BOX_COUNT), Some("0"));
        assert!(r.header(headers::INFERENCE_LATENCY_MS).is_some());
    }
    // Bounded: the refused ones did not wait for the model (generous for a loaded CI box).
    assert!(elapsed < Duration::from_secs(60), "flood took {elapsed:?}");
    let text = sc.metrics();
    assert_eq!(
        exposition::value(&text, "grayguard_sidecar_errors_total{kind=\"queue_full\"}"),
        Some(full.len() as f64)
    );
    assert_eq!(
        exposition::value(&text, "grayguard_sidecar_requests_total{status=\"200\"}"),
        Some(ok as f64)
    );
    assert_eq!(
        exposition::value(&text, "grayguard_sidecar_in_flight"),
        Some(0.0)
    );
    assert_eq!(
        sc.infer_file("person.jpg").status,
        200,
        "healthy after the flood"
    );
}

#[test]
fn sigterm_lets_the_admitted_requests_finish_before_the_process_exits() {
    let mut sc = one_slot_sidecar();
    let url = sc.url("/infer");
    let image = paths::photo("person.jpg");
    // Two requests admitted (one on the model, one queued): both finish.
    std::thread::scope(|s| {
        let pending: Vec<_> = (0..2)
            .map(|_| s.spawn(|| http::post(&url, &[("content-type", "image/jpeg")], &image)))
            .collect();
        Wait::new("both requests in flight", Duration::from_secs(30))
            .every(Duration::from_millis(5))
            .until(|| {
                let text = sc.metrics();
                let n = exposition::value(&text, "grayguard_sidecar_in_flight");
                (n == Some(2.0))
                    .then_some(())
                    .ok_or(format!("in flight {n:?}"))
            });
        let status = sc
            .proc
            .terminate(Duration::from_secs(60))
            .expect("exits after draining");
        assert!(status.success(), "exit status {status}\n{}", sc.proc.log());
        for h in pending {
            let r = h
                .join()
                .unwrap()
                .expect("in-flight request answered, not reset");
            assert_eq!(r.status, 200, "{}", r.text());
            assert_eq!(r.json()["boxes"].as_array().unwrap().len(), 2);
        }
    });
    assert!(sc.proc.log().contains("drained"), "{}", sc.proc.log());
    assert!(
        http::get(&sc.url("/healthz")).is_err(),
        "nothing listens after exit"
    );
}
