//! Shedding by each trigger across VMs, the breaker's probes and epochs, both detectors.

use super::*;
use crate::detect::sequential::plan::Hypothesis;
use crate::metrics::{Gauge, gauge_name};

#[test]
fn the_flag_sheds_the_very_next_request_on_every_vm() {
    let h = MemoryHost::new(T0);
    let mut a = engine(&h, SEQ, 1);
    let mut b = engine(&h, SEQ, 2);
    let r = ask(&mut a, &h, "crane");
    answer(&mut a, &h, &r, 10.0, 3, Some("box_count"));
    let next = ask(&mut b, &h, "crane");
    assert_eq!(text(&mut b, &next), "stable; rule=cranes; shed=flag");
    let i = incidents(&h);
    assert_eq!(i.len(), 1);
    assert_eq!(
        (Some(i[0].trigger.as_str()), i[0].flag_reason.as_deref()),
        (Some("flag"), Some("box_count"))
    );
}

#[test]
fn a_flood_is_shed_by_the_sequential_detector_across_two_vms() {
    let h = MemoryHost::new(T0);
    let mut vms = vec![engine(&h, SEQ, 1), engine(&h, SEQ, 2)];
    traffic(&mut vms, &h, 200, |_| 5);
    assert!(incidents(&h).is_empty(), "healthy gray is not shed");
    // Both VMs' observations are in the one shared record, none twice.
    let ev = vms[0].evidence(&h, 0).unwrap();
    assert_eq!(ev.epoch.gray.rate.n, 200.0);
    assert_eq!(ev.epoch.control.rate.n, 200.0);
    traffic(&mut vms, &h, 100, |_| 20);
    let i = incidents(&h);
    assert_eq!(i.len(), 1, "{i:?}");
    assert_eq!(i[0].trigger.as_str(), "box_count");
    assert_eq!(i[0].detector.as_str(), "sequential");
    let crossed: Vec<_> = i[0].evidence.iter().filter(|f| f.crossed).collect();
    // The flood came after 200 healthy responses: the change point is there.
    let f = crossed
        .iter()
        .find(|f| f.test == "box_count_above")
        .expect("the flood's test crossed");
    assert!((f.change_at - 200.0).abs() <= 20.0, "{f:?}");
    let shed = ask(&mut vms[1], &h, "crane");
    assert_eq!(
        text(&mut vms[1], &shed),
        "stable; rule=cranes; shed=box_count"
    );
    // The gauges say so, whichever VM writes them last: Envoy shares one gauge among
    // all VMs, and a VM that saw none of the traffic must not overwrite the evidence.
    let mut idle = engine(&h, SEQ, 3);
    let names = idle.unit_names().to_vec();
    let gauge = |g| h.gauge(&gauge_name(g, &names, ""));
    for last in 0..3 {
        vms[0].tick(&h);
        vms[1].tick(&h);
        idle.tick(&h);
        if last < 2 {
            vms[last].tick(&h);
        }
        assert_eq!(gauge(Gauge::BreakerState), Some(1));
        let pct = gauge(Gauge::Evidence(0, Trigger::BoxCount)).unwrap();
        assert!(pct >= 100, "last writer {last}: {pct}");
    }
}

#[test]
fn half_open_probes_close_and_a_new_epoch_starts() {
    let h = MemoryHost::new(T0);
    let mut vms = vec![engine(&h, SEQ, 1)];
    traffic(&mut vms, &h, 100, |_| 20);
    assert_eq!(incidents(&h).len(), 1);
    let e = &mut vms[0];
    h.advance_ms(10_000);
    e.tick(&h);
    for _ in 0..2 {
        let p = ask(e, &h, "crane");
        assert_eq!(text(e, &p), "gray; rule=cranes; probe");
        answer(e, &h, &p, 100.0, 5, None);
    }
    let back = ask(e, &h, "crane");
    assert_eq!(text(e, &back), "gray; rule=cranes");
    let i = incidents(&h);
    assert_eq!(i.last().unwrap().event.as_str(), "shed_end");
    // The evidence gauge starts the new epoch from nothing.
    e.tick(&h);
    let g = gauge_name(Gauge::Evidence(0, Trigger::BoxCount), e.unit_names(), "");
    assert_eq!(h.gauge(&g), Some(0));
    // The incident's observations do not count against the new epoch.
    traffic(&mut vms, &h, 10, |_| 5);
    let ev = vms[0].evidence(&h, 0).unwrap();
    assert!(ev.epoch.gray.rate.n <= 10.0, "{ev:?}");
}

#[test]
fn a_bad_probe_reopens() {
    let h = MemoryHost::new(T0);
    let mut vms = vec![engine(&h, SEQ, 1)];
    traffic(&mut vms, &h, 100, |_| 20);
    let e = &mut vms[0];
    h.advance_ms(10_000);
    let p = ask(e, &h, "crane");
    answer(e, &h, &p, 100.0, 60, None);
    let i = incidents(&h);
    assert_eq!(i.len(), 2);
    assert_eq!(
        (Some(i[1].trigger.as_str()), i[1].after_probe),
        (Some("box_count"), Some(true))
    );
    let again = ask(e, &h, "crane");
    assert_eq!(text(e, &again), "stable; rule=cranes; shed=box_count");
}

#[test]
fn consecutive_failures_shed_across_vms() {
    let h = MemoryHost::new(T0);
    let mut vms = [engine(&h, SEQ, 1), engine(&h, SEQ, 2)];
    for i in 0..4 {
        let e = &mut vms[i % 2];
        let r = ask(e, &h, "crane");
        fail(e, &h, &r);
        h.advance_ms(1);
    }
    h.advance_ms(100);
    for e in &mut vms {
        e.tick(&h);
    }
    h.advance_ms(100);
    vms[0].tick(&h);
    let i = incidents(&h);
    assert_eq!(i.len(), 1, "{i:?}");
    assert_eq!(i[0].trigger.as_str(), "consecutive_failures");
}

#[test]
fn a_streak_after_a_success_within_one_tick_still_counts() {
    let h = MemoryHost::new(T0);
    let mut e = engine(&h, SEQ, 1);
    let ok = ask(&mut e, &h, "crane");
    answer(&mut e, &h, &ok, 100.0, 5, None);
    for _ in 0..4 {
        let r = ask(&mut e, &h, "crane");
        fail(&mut e, &h, &r);
    }
    e.tick(&h);
    assert_eq!(incidents(&h)[0].trigger.as_str(), "consecutive_failures");
}

#[test]
fn dry_run_evaluates_and_never_sheds() {
    let h = MemoryHost::new(T0);
    let dry = SEQ.replace("\"shed_for_s\":10", "\"shed_for_s\":10,\"dry_run\":true");
    let mut vms = vec![engine(&h, &dry, 1)];
    traffic(&mut vms, &h, 100, |_| 20);
    assert!(incidents(&h)[0].dry_run);
    let r = ask(&mut vms[0], &h, "crane");
    assert_eq!(
        text(&mut vms[0], &r),
        "gray; rule=cranes; dry-run=box_count"
    );
}

#[test]
fn the_window_detector_still_works() {
    let h = MemoryHost::new(T0);
    let win = r#"{"stable":"v9","gray":"v10",
      "rules":[{"name":"cranes","headers":{"x-device-type":{"exact":"crane"}}}],
      "breach":{"detector":"window",
                "box_count":{"header":"x-box-count","max_sigma":3,"window_s":5,"min_samples":6}}}"#;
    let mut vms = vec![engine(&h, win, 1)];
    traffic(&mut vms, &h, 40, |_| 5);
    assert!(incidents(&h).is_empty());
    traffic(&mut vms, &h, 40, |_| 30);
    let i = incidents(&h);
    assert_eq!(
        (Some(i[0].trigger.as_str()), Some(i[0].detector.as_str())),
        (Some("box_count"), Some("window"))
    );
}

#[test]
fn cohort_control_uses_only_the_rules_own_stable_share() {
    let h = MemoryHost::new(T0);
    let cohort = SEQ
        .replace(
            r#""exact":"crane"}}}"#,
            r#""exact":"crane"}},"percent":50}"#,
        )
        .replace(
            r#""error_rate":{"min_samples":10},"#,
            r#""error_rate":{"min_samples":10},"control":"cohort","#,
        );
    let mut e = engine(&h, &cohort, 3);
    for i in 0..60 {
        let r = ask(&mut e, &h, "crane");
        answer(&mut e, &h, &r, 100.0, 5, None);
        // Other stable traffic with very different boxes must not count.
        let s = ask(&mut e, &h, "dock");
        answer(&mut e, &h, &s, 100.0, 50, None);
        if i % 5 == 4 {
            h.advance_ms(100);
            e.tick(&h);
        }
    }
    let ev = e.evidence(&h, 0).unwrap();
    assert_eq!(ev.epoch.gray.rate.n + ev.epoch.control.rate.n, 60.0);
    assert!(ev.epoch.control.boxes.mean().is_some_and(|m| m == 5.0));
    assert!(incidents(&h).is_empty());
}

#[test]
fn findings_name_the_tests_of_the_plan() {
    let h = MemoryHost::new(T0);
    let mut vms = vec![engine(&h, SEQ, 1)];
    traffic(&mut vms, &h, 100, |_| 5);
    let f = vms[0].findings(0);
    assert!(f.iter().any(|f| f.hypothesis == Hypothesis::LatencyRatio));
    assert!(f.iter().all(|f| !f.crossed()));
}

#[test]
fn gray_agreement_values_are_counted_and_a_disagreeing_gray_is_shed_by_them() {
    let cfg = SEQ.replace(
        "\"consecutive_failures\":4,",
        "\"consecutive_failures\":4,\"agreement\":{\"min_mean\":0.7,\"min_samples\":10},",
    );
    let h = MemoryHost::new(T0);
    let mut e = engine(&h, &cfg, 1);
    // A reply from `version` with healthy signals and an agreement value; then the tick.
    let reply = |e: &mut Engine, kind: &str, version: &str, agreement: &str| {
        let r = ask(e, &h, kind);
        e.on_response(&h, &r, |n| match n {
            ":status" => Some(&b"200"[..]),
            "x-model-version" => Some(version.as_bytes()),
            "x-inference-latency-ms" => Some(&b"100"[..]),
            "x-box-count" => Some(&b"2"[..]),
            "x-canary-agreement" => Some(agreement.as_bytes()),
            _ => None,
        });
        h.advance_ms(100);
        e.tick(&h);
        r
    };
    // Neither a stable reply's value nor a fallback's (stable answered a gray request) is
    // gray's: not counted, not bet on.
    reply(&mut e, "dock", "v9", "0.000");
    let r = reply(&mut e, "crane", "v9", "0.000");
    assert!(r.decision.gray);
    assert_eq!(h.counter(Counter::GrayAgreementSamples), 0);
    assert_eq!(h.counter(Counter::GrayFailures), 1);
    // Five frames agreed, then gray disagrees on every one.
    for _ in 0..5 {
        reply(&mut e, "crane", "v10", "1.000");
    }
    assert_eq!(h.counter(Counter::GrayAgreementMilli), 5_000);
    let mut zeros = 0;
    while incidents(&h).is_empty() {
        assert!(zeros < 40, "not shed after {zeros} disagreeing frames");
        let r = reply(&mut e, "crane", "v10", "0.000");
        assert_eq!(text(&mut e, &r), "gray; rule=cranes");
        zeros += 1;
    }
    assert_eq!(h.counter(Counter::GrayAgreementSamples), 5 + zeros);
    assert_eq!(h.counter(Counter::GrayAgreementMilli), 5_000);
    let i = incidents(&h);
    assert_eq!((i.len(), i[0].trigger), (1, Trigger::Agreement), "{i:?}");
    // The test scored every value; the change point (in gray replies: the fallback and the
    // five that agreed) is where the disagreement began, and the bound is at the margin.
    let f = &i[0].evidence[0];
    assert_eq!(
        (f.test.as_str(), f.crossed, f.gray_n, f.change_at, f.since_n),
        (
            "agreement_below",
            true,
            (5 + zeros) as f64,
            6.0,
            zeros as f64
        ),
        "{f:?}"
    );
    assert_eq!(f.estimate, Some(0.0));
    assert!(f.at_most.is_some_and(|b| b <= 0.7), "{f:?}");
    // The boldest stake wins a factor 1 + 0.99/(1/0.7 − 1) ≈ 3.31 per disagreeing frame
    // against a threshold of 5 tests × arl 10⁶ over its weight 0.3: 14 frames.
    assert_eq!(zeros, 14);
    let next = ask(&mut e, &h, "crane");
    assert_eq!(text(&mut e, &next), "stable; rule=cranes; shed=agreement");
}
