//! The promotion verdict through the engine: reached on the shared evidence, logged once as
//! the contract's record, served on the operator listener (and refused elsewhere), on the
//! gauges, and reset by a shed.

use grayguard_contract::promotion::{Bound, Effect, Verdict};
use grayguard_contract::record::{self, PromotionReply, Record};

use super::*;
use crate::metrics::{Gauge, gauge_name};

fn promote_config() -> String {
    SEQ.replace(
        "\"sync_ms\":100,",
        "\"sync_ms\":100,\"operator\":{\"port\":10100,\"secret\":\"a-secret-of-at-least-16-bytes\"},\
         \"promote\":{\"latency_max_increase_ms\":20,\"box_count_max_shift\":0.5,\"alpha\":0.05,\"min_gray_responses\":50},",
    )
}

fn verdicts(h: &MemoryHost) -> Vec<record::Promotion> {
    h.logs()
        .iter()
        .filter_map(|(_, l)| record::parse_line(l))
        .filter_map(|r| match r.expect("a record that parses") {
            Record::Promotion(p) => Some(*p),
            Record::Incident(_) => None,
        })
        .collect()
}

fn state(h: &MemoryHost) -> Option<u64> {
    h.gauge(&gauge_name(
        Gauge::PromotionState(0),
        &["cranes".into()],
        "",
    ))
}

#[test]
fn a_gray_like_stable_is_proven_once_logged_and_served_to_the_operator() {
    let h = MemoryHost::new(T0);
    let mut vms = vec![
        engine(&h, &promote_config(), 1),
        engine(&h, &promote_config(), 2),
    ];
    traffic(&mut vms, &h, 40, |_| 5);
    assert_eq!(
        state(&h),
        Some(Verdict::Pending.gauge()),
        "too few gray replies yet"
    );
    assert!(verdicts(&h).is_empty());
    traffic(&mut vms, &h, 3_000, |_| 5);
    assert_eq!(state(&h), Some(Verdict::Proven.gauge()));
    // Exactly one line, by the VM whose write reached it.
    let v = verdicts(&h);
    assert_eq!(v.len(), 1, "{v:?}");
    assert_eq!(
        (v[0].event, v[0].verdict.state),
        (Verdict::Proven, Verdict::Proven)
    );
    assert!(v[0].verdict.verdict_gray_n.unwrap_or(0.0) >= 50.0);
    let latency = v[0]
        .verdict
        .effects
        .iter()
        .find(|e| e.effect == Effect::LatencyIncrease)
        .unwrap();
    assert_eq!(latency.inside, Some(true));
    assert!(latency.upper.unwrap() <= 20.0 && latency.lower.unwrap() >= -20.0);
    // The budget gauges say how far each interval reaches.
    let upper = h
        .gauge(&gauge_name(
            Gauge::PromotionBound(0, Effect::LatencyIncrease, Bound::Upper),
            &["cranes".into()],
            "",
        ))
        .unwrap();
    assert!(upper <= 100, "{upper}");
    // The operator listener serves every rule's verdict; the public one refuses it.
    let e = &mut vms[0];
    let reply = operate(e, &h, "/grayguard/promotion", "", true, None, None);
    assert_eq!(reply.status, 200, "{}", reply.body);
    let r: PromotionReply = serde_json::from_str(&reply.body).unwrap();
    assert_eq!((r.rules.len(), r.rules[0].state), (1, Verdict::Proven));
    assert_eq!(
        operate(e, &h, "/grayguard/promotion", "", false, None, None).status,
        403
    );
    // A shed starts a new epoch: pending again.
    let g = ask(e, &h, "crane");
    answer(e, &h, &g, 100.0, 5, Some("latency"));
    e.tick(&h);
    assert_eq!(state(&h), Some(Verdict::Pending.gauge()));
    let r: PromotionReply =
        serde_json::from_str(&operate(e, &h, "/grayguard/promotion", "", true, None, None).body)
            .unwrap();
    assert_eq!(r.rules[0].state, Verdict::Pending);
}

#[test]
fn a_gray_far_beyond_its_budget_is_refuted() {
    let h = MemoryHost::new(T0);
    // No box-count trigger sheds it first: the verdict alone judges the boxes.
    let cfg = promote_config().replace(
        r#""box_count":{"header":"x-box-count","min_samples":10},"#,
        "",
    );
    let mut vms = vec![engine(&h, &cfg, 1)];
    // Gray finds 2.4 times the boxes against a ±50 % budget.
    traffic(&mut vms, &h, 3_000, |_| 12);
    assert!(incidents(&h).is_empty());
    let v = verdicts(&h);
    assert_eq!(v.len(), 1, "{v:?}");
    assert_eq!(v[0].event, Verdict::Refuted);
    let boxes = v[0]
        .verdict
        .effects
        .iter()
        .find(|e| e.effect == Effect::BoxShift)
        .unwrap();
    assert_eq!(boxes.inside, Some(false));
    assert!(boxes.lower.unwrap() > 1.5, "{boxes:?}");
    assert_eq!(state(&h), Some(Verdict::Refuted.gauge()));
}
