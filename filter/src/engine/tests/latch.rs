//! The mesh-wide latch: sent on a first-hand shed, obeyed for this rule only, cleared by
//! healthy probes.

use super::*;
use crate::decision::Why;
use crate::host::{Faults, Level};

fn latch_config() -> String {
    SEQ.replace(
        "\"shed_for_s\":10",
        "\"shed_for_s\":10,\"latch\":{\"cluster\":\"gray-control\",\"calls\":2,\"timeout_ms\":300}",
    )
}

#[test]
fn a_first_hand_shed_latches_the_gray_workload_on_the_next_tick() {
    let h = MemoryHost::new(T0);
    let mut e = engine(&h, &latch_config(), 1);
    e.set_gateway("gw 1");
    let r = ask(&mut e, &h, "crane");
    answer(&mut e, &h, &r, 10.0, 3, Some("box_count"));
    assert!(
        h.calls().is_empty(),
        "sent from the tick, not the request path"
    );
    e.tick(&h);
    let calls = h.calls();
    assert_eq!(calls.len(), 2, "{calls:?}");
    let c = &calls[0];
    assert_eq!((c.cluster.as_str(), c.timeout_ms), ("gray-control", 300));
    assert!(
        c.headers
            .contains(&(":path".into(), "/grayguard/latch".into()))
    );
    assert!(c.headers.contains(&(":method".into(), "POST".into())));
    assert_eq!(
        c.body,
        "action=latch&rule=cranes&trigger=flag&for_ms=10000&gateway=gw_1"
    );
    assert_eq!(h.counter(Counter::LatchCalls), 2);
    // An answer that is not 2xx, or none, counts as a failure.
    e.answered(&h, 0, Some(200), None);
    e.answered(&h, 1, Some(503), None);
    e.answered(&h, 2, None, None);
    e.tick(&h);
    assert_eq!(h.counter(Counter::LatchFailures), 2);
}

#[test]
fn another_gateways_latch_sheds_this_rule_and_is_not_passed_on() {
    let h = MemoryHost::new(T0);
    let mut e = engine(&h, &latch_config(), 1);
    // A latch for another rule is none of this rule's business.
    let r = ask(&mut e, &h, "crane");
    answer(&mut e, &h, &r, 10.0, 3, Some("latched:box_count@gates"));
    assert!(incidents(&h).is_empty());
    let r = ask(&mut e, &h, "crane");
    answer(&mut e, &h, &r, 10.0, 3, Some("latched:box_count@cranes"));
    let i = incidents(&h);
    assert_eq!(
        (Some(i[0].trigger.as_str()), i[0].flag_reason.as_deref()),
        (Some("latch"), Some("latched:box_count@cranes"))
    );
    let next = ask(&mut e, &h, "crane");
    assert_eq!(text(&mut e, &next), "stable; rule=cranes; shed=latch");
    e.tick(&h);
    assert!(h.calls().is_empty(), "a latch is not latched again");
    // The workload's own reason beside a latch is first-hand.
    let h = MemoryHost::new(T0);
    let mut e = engine(&h, &latch_config(), 1);
    let r = ask(&mut e, &h, "crane");
    answer(
        &mut e,
        &h,
        &r,
        10.0,
        3,
        Some("memory,latched:box_count@gates"),
    );
    e.tick(&h);
    assert_eq!(incidents(&h)[0].trigger.as_str(), "flag");
    assert_eq!(h.calls().len(), 2);
}

#[test]
fn healthy_probes_clear_only_latches_older_than_their_evidence() {
    let h = MemoryHost::new(T0);
    let mut e = engine(&h, &latch_config(), 1);
    let r = ask(&mut e, &h, "crane");
    answer(&mut e, &h, &r, 10.0, 3, Some("box_count"));
    e.tick(&h);
    h.advance_ms(10_000);
    let p = ask(&mut e, &h, "crane");
    assert_eq!(p.decision.why, Why::Probe);
    answer(&mut e, &h, &p, 100.0, 5, None);
    h.advance_ms(1_500);
    let p = ask(&mut e, &h, "crane");
    answer(&mut e, &h, &p, 100.0, 5, None);
    e.tick(&h);
    let calls = h.calls();
    let clear = calls.last().unwrap();
    assert_eq!(
        clear.body,
        "action=clear&rule=cranes&healthy_for_ms=1500&gateway=gateway"
    );
    // A probe that meets another gateway's latch (an old workload without probe
    // support) re-opens as a latch, not as this gateway's own finding.
    let h = MemoryHost::new(T0);
    let mut e = engine(&h, &latch_config(), 1);
    let r = ask(&mut e, &h, "crane");
    answer(&mut e, &h, &r, 10.0, 3, Some("box_count"));
    e.tick(&h);
    h.advance_ms(10_000);
    let p = ask(&mut e, &h, "crane");
    answer(&mut e, &h, &p, 100.0, 5, Some("latched:box_count@cranes"));
    e.tick(&h);
    let i = incidents(&h);
    assert_eq!(
        (Some(i[1].trigger.as_str()), i[1].after_probe),
        (Some("latch"), Some(true))
    );
    assert_eq!(
        h.calls().len(),
        2,
        "only the first, first-hand shed latched"
    );
}

#[test]
fn dry_run_and_failed_dispatches_latch_nothing_silently() {
    let h = MemoryHost::new(T0);
    let dry = latch_config().replace("\"shed_for_s\":10", "\"shed_for_s\":10,\"dry_run\":true");
    let mut e = engine(&h, &dry, 1);
    let r = ask(&mut e, &h, "crane");
    answer(&mut e, &h, &r, 10.0, 3, Some("box_count"));
    e.tick(&h);
    assert!(h.calls().is_empty());
    let h = MemoryHost::new(T0);
    h.set_faults(Faults {
        dispatch_fails: true,
        ..Faults::default()
    });
    let mut e = engine(&h, &latch_config(), 1);
    let r = ask(&mut e, &h, "crane");
    answer(&mut e, &h, &r, 10.0, 3, Some("box_count"));
    e.tick(&h);
    assert_eq!(h.counter(Counter::LatchFailures), 2);
    assert!(
        h.logs()
            .iter()
            .any(|(l, m)| *l == Level::Warn && m.contains("0 of 2 sent"))
    );
}
