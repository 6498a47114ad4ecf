//! What the host, the clock and the replies may get wrong: no observation lost, no panic,
//! no shed of a healthy gray.

use super::*;
use crate::host::Faults;

#[test]
fn host_failures_lose_no_observation_and_panic_nowhere() {
    let h = MemoryHost::new(T0);
    let mut vms = vec![engine(&h, SEQ, 1)];
    // Writes fail for a while: the observations wait in the VM.
    h.set_faults(Faults {
        writes_fail: true,
        ..Faults::default()
    });
    traffic(&mut vms, &h, 50, |_| 5);
    assert_eq!(vms[0].evidence(&h, 0), None);
    // Heavy contention, then recovery: everything lands once.
    h.set_faults(Faults {
        cas_conflicts: 40,
        ..Faults::default()
    });
    traffic(&mut vms, &h, 50, |_| 5);
    h.set_faults(Faults::default());
    h.advance_ms(100);
    vms[0].tick(&h);
    let ev = vms[0].evidence(&h, 0).unwrap();
    assert_eq!(ev.epoch.gray.rate.n, 100.0);
    // Reads fail: requests still route (to gray, as the board reads closed).
    h.set_faults(Faults {
        reads_fail: true,
        ..Faults::default()
    });
    let r = ask(&mut vms[0], &h, "crane");
    assert!(r.decision.gray);
    vms[0].tick(&h);
    h.set_faults(Faults::default());
    // A corrupt record or board is replaced, not trusted.
    h.set_shared(&vms[0].keys.evidence, b"garbage", None)
        .unwrap();
    h.set_shared(&vms[0].keys.board, b"garbage", None).unwrap();
    traffic(&mut vms, &h, 10, |_| 5);
    assert!(vms[0].evidence(&h, 0).is_some());
}

#[test]
fn a_clock_going_backwards_neither_panics_nor_sheds() {
    let h = MemoryHost::new(T0);
    let mut vms = vec![engine(&h, SEQ, 1)];
    traffic(&mut vms, &h, 50, |_| 5);
    h.set_now(T0 - 3_600_000_000_000);
    traffic(&mut vms, &h, 50, |_| 5);
    h.set_now(0);
    traffic(&mut vms, &h, 10, |_| 5);
    assert!(incidents(&h).is_empty());
    // A breaker opened in the "future" half-opens once the clock passes it again.
    let r = ask(&mut vms[0], &h, "crane");
    answer(&mut vms[0], &h, &r, 1.0, 1, Some("latency"));
    h.set_now(T0);
    let p = ask(&mut vms[0], &h, "crane");
    assert_eq!(text(&mut vms[0], &p), "gray; rule=cranes; probe");
}

#[test]
fn malformed_signals_are_counted_not_used() {
    let h = MemoryHost::new(T0);
    let mut e = engine(&h, SEQ, 1);
    let r = ask(&mut e, &h, "crane");
    let reply = e.read(true, Some(200), |name| match name {
        "x-inference-latency-ms" => Some(&b"NaN"[..]),
        "x-box-count" => Some(&b"\xff\xfe"[..]),
        _ => None,
    });
    assert_eq!(
        (reply.obs.latency_ms, reply.obs.boxes, reply.obs.failed),
        (None, None, false)
    );
    e.settle(&h, &r, &reply);
    e.tick(&h);
    assert_eq!(h.counter(Counter::MalformedSignals), 2);
}

#[test]
fn a_failed_reply_is_a_failure_not_a_sample() {
    let h = MemoryHost::new(T0);
    let mut e = engine(&h, SEQ, 1);
    // What a sidecar with a full queue stamps on its 503.
    let reply = e.read(true, Some(503), |name| match name {
        "x-inference-latency-ms" => Some(&b"0.412"[..]),
        "x-box-count" => Some(&b"0"[..]),
        _ => None,
    });
    assert_eq!(
        (reply.obs.latency_ms, reply.obs.boxes, reply.obs.failed),
        (None, None, true)
    );
}

#[test]
fn an_overloaded_control_does_not_shed_a_healthy_gray() {
    let h = MemoryHost::new(T0);
    let mut e = engine(&h, SEQ, 1);
    for i in 0..400 {
        let g = ask(&mut e, &h, "crane");
        assert_eq!(text(&mut e, &g), "gray; rule=cranes", "request {i}");
        answer(
            &mut e,
            &h,
            &g,
            100.0 + (i % 7) as f64,
            5 + (i % 3) as u32,
            None,
        );
        // Stable refuses two requests in three at once, as its full queue does.
        let s = ask(&mut e, &h, "dock");
        if i % 3 == 0 {
            let k = i / 3;
            answer(
                &mut e,
                &h,
                &s,
                100.0 + (k % 7) as f64,
                5 + (k % 3) as u32,
                None,
            );
        } else {
            let refusal = e.read(false, Some(503), |name| match name {
                "x-inference-latency-ms" => Some(&b"0.4"[..]),
                "x-box-count" => Some(&b"0"[..]),
                _ => None,
            });
            e.settle(&h, &s, &refusal);
        }
        if i % 5 == 4 {
            h.advance_ms(100);
            e.tick(&h);
        }
    }
    assert!(incidents(&h).is_empty(), "{:?}", incidents(&h));
}

/// A reply to a gray-routed request: `version` answered, after `attempts` tries, from `pod`.
fn reply_from(
    e: &mut Engine,
    h: &MemoryHost,
    r: &Routed,
    version: &str,
    attempts: &str,
    pod: &str,
) -> bool {
    e.on_response(h, r, |n| match n {
        ":status" => Some(&b"200"[..]),
        "x-model-version" => Some(version.as_bytes()),
        "x-envoy-attempt-count" => Some(attempts.as_bytes()),
        "x-served-by" => Some(pod.as_bytes()),
        // Stable's own signals, and its own watchdog's flag: none of it is gray's.
        "x-canary-breach" => (version == "v9").then_some(&b"latency"[..]),
        "x-inference-latency-ms" => Some(&b"100"[..]),
        "x-box-count" => Some(&b"5"[..]),
        _ => None,
    })
}

#[test]
fn a_gray_request_stable_answered_is_one_gray_failure_and_nothing_else() {
    let h = MemoryHost::new(T0);
    let mut e = engine(&h, SEQ, 1);
    // Gray answers twice, from two pods (one a hedged answer that beat stable's).
    for (pod, attempts) in [("yolo-v10-a", "1"), ("yolo-v10-b", "2")] {
        let r = ask(&mut e, &h, "crane");
        assert!(!reply_from(&mut e, &h, &r, "v10", attempts, pod));
        assert_eq!(text(&mut e, &r), "gray; rule=cranes");
    }
    // Then three of its requests are answered by stable (Envoy's retry after gray failed).
    for _ in 0..3 {
        let r = ask(&mut e, &h, "crane");
        let fallback = reply_from(&mut e, &h, &r, "v9", "2", "yolo-v9-x");
        assert!(fallback);
        assert_eq!(e.decision_text(&r, fallback), "gray; rule=cranes; fallback");
    }
    e.tick(&h);
    assert_eq!(h.counter(Counter::GrayResponses), 5);
    assert_eq!(h.counter(Counter::GrayFailures), 3);
    assert_eq!(
        h.counter(Counter::GrayLatencySamples),
        2,
        "stable's latency is not gray's"
    );
    assert_eq!(
        h.named_counter(&crate::metrics::fallbacks_name("cranes")),
        3
    );
    assert!(
        incidents(&h).is_empty(),
        "stable's own flag does not shed gray"
    );
    // A fourth in a row sheds on consecutive failures, as four crashes would, and the
    // record names the gray pods this gateway heard from (not stable's).
    let r = ask(&mut e, &h, "crane");
    reply_from(&mut e, &h, &r, "v9", "2", "yolo-v9-x");
    e.tick(&h);
    let i = incidents(&h);
    assert_eq!(i.len(), 1, "{i:?}");
    assert_eq!(i[0].trigger, Trigger::ConsecutiveFailures);
    assert_eq!(i[0].gray_pods, ["yolo-v10-a", "yolo-v10-b"]);
    assert_eq!(i[0].gateway.as_deref(), Some("gateway"));
}
