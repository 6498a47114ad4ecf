//! A person's decision holds: a confirmed or direct shed stays open past any `shed_for_s`
//! with no probe, until its signed release link sends it half-open; other gateways (and a
//! restarted one) hold on the workload's `held:` item and let go when their check finds the
//! release.

use grayguard_contract::latch::{Held, Listing, Released, Request as LatchRequest};
use grayguard_contract::operator::{CONFIRM, RELEASE, SHED};

use super::*;
use crate::decision::Why;
use crate::engine::CHECK_EVERY_MS;
use crate::host::Call;

fn hold_config() -> String {
    confirm_config().replace(
        "\"shed_for_s\":10",
        "\"shed_for_s\":10,\"latch\":{\"cluster\":\"gray-control\",\"calls\":2,\"timeout_ms\":300}",
    )
}

/// The held gauge's release link (its `release` label).
fn release_link(h: &MemoryHost) -> Option<String> {
    gauge_label(h, names::HELD, Label::Release)
}

/// `POST /grayguard/shed?{query}` on the operator listener as `by`.
fn shed(e: &mut Engine, h: &MemoryHost, query: &str, by: &str) -> OperatorReply {
    let call = OperatorCall {
        method: "POST",
        by: Some(by),
        from: Some("10.0.0.7:5123"),
        ..OperatorCall::get(SHED, query)
    };
    e.operator(h, &call)
}

/// `ms` of time in ticks of 100 ms, every VM ticking and each sending one crane request a
/// tick: the requests' decisions.
fn run_for(vms: &mut [Engine], h: &MemoryHost, ms: u64) -> Vec<Why> {
    let mut seen = Vec::new();
    for i in 0..ms / 100 {
        h.advance_ms(100);
        for e in vms.iter_mut() {
            e.tick(h);
        }
        let n = vms.len();
        let e = &mut vms[i as usize % n];
        seen.push(ask(e, h, "crane").decision.why);
    }
    seen
}

/// The latch calls sent so far, read with the contract's grammar (hold checks are `GET`s
/// without a body and are left out).
fn latch_calls(h: &MemoryHost) -> Vec<LatchRequest> {
    h.calls()
        .iter()
        .filter(|c| !is_check(c))
        .map(|c| LatchRequest::parse(&c.body).expect("a latch request"))
        .collect()
}

fn is_check(c: &Call) -> bool {
    c.headers.contains(&(":method".into(), "GET".into()))
        && c.headers
            .contains(&(":path".into(), "/grayguard/latch".into()))
}

/// The token of the last hold check sent.
fn last_check(h: &MemoryHost) -> u32 {
    let i = h.calls().iter().rposition(is_check).expect("a hold check");
    u32::try_from(i).unwrap()
}

/// The events of the incident records so far, in order.
fn events(h: &MemoryHost) -> Vec<&'static str> {
    incidents(h).iter().map(|i| i.event.as_str()).collect()
}

fn listing(l: &Listing) -> Vec<u8> {
    serde_json::to_vec(l).unwrap()
}

fn held(rule: &str, trigger: Trigger) -> Listing {
    Listing {
        holds: vec![Held {
            rule: rule.into(),
            trigger,
            gateway: "gw-0".into(),
            age_ms: 1_000,
        }],
        ..Listing::default()
    }
}

fn released(rule: &str, via: &str) -> Listing {
    Listing {
        released: vec![Released {
            rule: rule.into(),
            gateway: via.into(),
            age_ms: 200,
        }],
        ..Listing::default()
    }
}

#[test]
fn a_confirmed_shed_holds_past_any_shed_for_until_its_release_link() {
    let h = MemoryHost::new(T0);
    let mut vms = vec![engine(&h, &hold_config(), 1), engine(&h, &hold_config(), 2)];
    traffic(&mut vms, &h, 100, |_| 20);
    let link = alert_link(&h);
    let ok = operate(&mut vms[1], &h, CONFIRM, &link, true, Some("ana@ops"), None);
    assert_eq!((ok.status, result(&ok)), (200, "held".into()), "{ok:?}");

    // Three times `shed_for_s` (10 s): the cohort goes to stable, and not one probe.
    let seen = run_for(&mut vms, &h, 30_000);
    assert!(
        seen.iter().all(|w| *w == Why::Shed(Trigger::BoxCount)),
        "{seen:?}"
    );
    assert_eq!(h.counter(Counter::ProbeRequests), 0);
    let state = gauge_name_of(&h, names::RULE_BREAKER_STATE);
    assert_eq!(state, Some(1), "open, not half-open");
    // The workload was told once, by the worker that won the hold.
    let calls = latch_calls(&h);
    let hold = LatchRequest::Hold {
        rule: "cranes".into(),
        trigger: Trigger::BoxCount,
        gateway: "gateway".into(),
    };
    assert_eq!(calls, vec![hold.clone(), hold], "{calls:?}");

    // The release link: refused on the public listener, edited, or as a confirmation;
    // the alert's link does not release.
    let release = release_link(&h).expect("a held gauge at 1 with its release link");
    let public = operate(&mut vms[0], &h, RELEASE, &release, false, None, None);
    assert_eq!(public.status, 403);
    let forged = release.replace("trigger=box_count", "trigger=latency");
    let forged = operate(&mut vms[0], &h, RELEASE, &forged, true, None, None);
    assert_eq!((forged.status, result(&forged)), (403, "refused".into()));
    let as_confirm = operate(&mut vms[0], &h, CONFIRM, &release, true, None, None);
    assert_eq!(as_confirm.status, 403, "{as_confirm:?}");
    let alert_as_release = operate(&mut vms[0], &h, RELEASE, &link, true, None, None);
    assert_eq!(alert_as_release.status, 403, "{alert_as_release:?}");

    // Released: half-open at once; a second click changes nothing.
    let ok = operate(
        &mut vms[0],
        &h,
        RELEASE,
        &release,
        true,
        Some("bo@ops"),
        None,
    );
    assert_eq!((ok.status, result(&ok)), (200, "released".into()), "{ok:?}");
    let again = operate(
        &mut vms[1],
        &h,
        RELEASE,
        &release,
        true,
        Some("bo@ops"),
        None,
    );
    assert_eq!(
        (again.status, result(&again)),
        (200, "already_released".into())
    );
    let again = operate(&mut vms[1], &h, CONFIRM, &link, true, None, None);
    assert_eq!(
        (again.status, result(&again)),
        (200, "already_shed".into()),
        "the alert was answered: its link holds nothing again"
    );
    for e in &mut vms {
        e.tick(&h);
    }
    assert_eq!(release_link(&h), None, "the held gauge went back to 0");
    assert_eq!(
        latch_calls(&h).last(),
        Some(&LatchRequest::Release {
            rule: "cranes".into(),
            gateway: "gateway".into()
        })
    );
    // Healthy probes close it.
    for _ in 0..2 {
        let p = ask(&mut vms[0], &h, "crane");
        assert_eq!(p.decision.why, Why::Probe);
        answer(&mut vms[0], &h, &p, 100.0, 5, None);
    }
    assert_eq!(ask(&mut vms[1], &h, "crane").decision.why, Why::Matched);

    assert_eq!(
        events(&h),
        ["alert_start", "shed_start", "released", "shed_end"],
        "each step once"
    );
    let i = incidents(&h);
    assert_eq!(
        (
            i[1].held,
            i[1].held_by.as_deref(),
            i[1].confirmed_by.as_deref()
        ),
        (Some(true), Some("ana@ops"), Some("ana@ops"))
    );
    assert_eq!(
        (
            i[2].trigger,
            i[2].released_by.as_deref(),
            i[2].released_via.as_deref()
        ),
        (Trigger::BoxCount, Some("bo@ops"), None)
    );
}

/// The value of the one gauge whose bare name is `metric`.
fn gauge_name_of(h: &MemoryHost, metric: &str) -> Option<u64> {
    h.gauges()
        .into_iter()
        .find(|(name, _)| untag(name).is_some_and(|(_, bare)| bare == metric))
        .map(|(_, v)| v)
}

#[test]
fn a_direct_shed_holds_a_rule_whatever_its_breaker_did() {
    let h = MemoryHost::new(T0);
    let mut vms = vec![engine(&h, &hold_config(), 1), engine(&h, &hold_config(), 2)];
    vms[0].set_gateway("gw-0");
    // Only a POST on the operator listener, for a rule this configuration has.
    let get = operate(&mut vms[0], &h, SHED, "rule=cranes", true, None, None);
    assert_eq!(get.status, 405);
    let public = OperatorCall {
        method: "POST",
        on_operator: false,
        ..OperatorCall::get(SHED, "rule=cranes")
    };
    assert_eq!(vms[0].operator(&h, &public).status, 403);
    assert_eq!(shed(&mut vms[0], &h, "rule=docks", "ana").status, 404);
    assert_eq!(shed(&mut vms[0], &h, "rule=a b", "ana").status, 400);
    let r = ask(&mut vms[0], &h, "crane");
    assert_eq!(text(&mut vms[0], &r), "gray; rule=cranes");

    let ok = shed(&mut vms[0], &h, "rule=cranes", "ana@ops");
    assert_eq!((ok.status, result(&ok)), (200, "held".into()), "{ok:?}");
    let again = shed(&mut vms[1], &h, "rule=cranes", "ana@ops");
    assert_eq!((again.status, result(&again)), (200, "already_held".into()));
    let r = ask(&mut vms[1], &h, "crane");
    assert_eq!(text(&mut vms[1], &r), "stable; rule=cranes; shed=operator");
    let seen = run_for(&mut vms, &h, 30_000);
    assert!(
        seen.iter().all(|w| *w == Why::Shed(Trigger::Operator)),
        "{seen:?}"
    );
    assert_eq!(h.counter(Counter::ProbeRequests), 0);
    assert_eq!(h.counter(Counter::Breaches(Trigger::Operator)), 1);
    let i = incidents(&h);
    assert_eq!(i.len(), 1, "{i:?}");
    assert_eq!(
        (
            i[0].event.as_str(),
            i[0].trigger,
            i[0].held,
            i[0].held_by.as_deref(),
            i[0].confirmed_by.as_deref(),
            i[0].operator_from.as_deref()
        ),
        (
            "shed_start",
            Trigger::Operator,
            Some(true),
            Some("ana@ops"),
            None,
            Some("10.0.0.7:5123")
        )
    );
    assert_eq!(
        latch_calls(&h)[0],
        LatchRequest::Hold {
            rule: "cranes".into(),
            trigger: Trigger::Operator,
            gateway: "gw-0".into()
        }
    );

    // A link expires: one from three hours ago is refused; the gauge's renewed one works.
    let old = release_link(&h).unwrap();
    run_for(&mut vms, &h, 3 * 3_600_000 + 1_000);
    let late = operate(&mut vms[0], &h, RELEASE, &old, true, None, None);
    assert_eq!(
        (late.status, late.body.contains("expired")),
        (403, true),
        "{late:?}"
    );
    let fresh = release_link(&h).unwrap();
    assert_ne!(fresh, old);
    let ok = operate(&mut vms[0], &h, RELEASE, &fresh, true, None, None);
    assert_eq!((ok.status, result(&ok)), (200, "released".into()));
    assert_eq!(incidents(&h)[1].released_by.as_deref(), Some("anonymous"));
    assert_eq!(ask(&mut vms[1], &h, "crane").decision.why, Why::Probe);
}

#[test]
fn holding_a_shedding_rule_keeps_its_trigger_and_stops_its_probes() {
    let h = MemoryHost::new(T0);
    let mut e = engine(&h, &hold_config(), 1);
    let r = ask(&mut e, &h, "crane");
    answer(&mut e, &h, &r, 100.0, 5, Some("latency"));
    h.advance_ms(10_000);
    let p = ask(&mut e, &h, "crane");
    assert_eq!(p.decision.why, Why::Probe);
    let ok = shed(&mut e, &h, "rule=cranes", "ana");
    assert_eq!(result(&ok), "held");
    // The probe in flight no longer counts; nothing probes any more.
    answer(&mut e, &h, &p, 100.0, 5, None);
    answer(&mut e, &h, &p, 100.0, 5, None);
    let r = ask(&mut e, &h, "crane");
    assert_eq!(text(&mut e, &r), "stable; rule=cranes; shed=flag");
    let i = incidents(&h);
    assert_eq!(
        (
            i[1].event.as_str(),
            i[1].trigger,
            i[1].held,
            i[1].held_by.as_deref()
        ),
        ("held", Trigger::Operator, Some(true), Some("ana"))
    );
    // Its release link is the hold's: on `operator`.
    e.tick(&h);
    let link = release_link(&h).unwrap();
    assert!(link.starts_with("rule=cranes&trigger=operator&"), "{link}");
}

#[test]
fn another_gateway_holds_on_the_workloads_word_and_lets_go_when_it_is_released() {
    let h = MemoryHost::new(T0);
    let mut e = engine(&h, &hold_config(), 1);
    e.set_gateway("gw-1");
    // A hold for another rule is none of this rule's business.
    let r = ask(&mut e, &h, "crane");
    answer(&mut e, &h, &r, 100.0, 5, Some("held:box_count@gates"));
    assert!(incidents(&h).is_empty());
    let r = ask(&mut e, &h, "crane");
    answer(&mut e, &h, &r, 100.0, 5, Some("held:box_count@cranes"));
    let i = incidents(&h);
    assert_eq!(
        (
            i[0].event.as_str(),
            i[0].trigger,
            i[0].held,
            i[0].flag_reason.as_deref()
        ),
        (
            "shed_start",
            Trigger::Latch,
            Some(true),
            Some("held:box_count@cranes")
        )
    );
    let r = ask(&mut e, &h, "crane");
    assert_eq!(text(&mut e, &r), "stable; rule=cranes; shed=latch");
    e.tick(&h);
    assert!(h.calls().is_empty(), "a learned hold is not sent back");
    e.tick(&h);
    let link = release_link(&h).unwrap();
    assert!(link.starts_with("rule=cranes&trigger=box_count&"), "{link}");

    // The checks: every CHECK_EVERY_MS, one GET with the token.
    h.advance_ms(CHECK_EVERY_MS);
    e.tick(&h);
    let c = &h.calls()[0];
    assert!(is_check(c), "{c:?}");
    assert_eq!((c.cluster.as_str(), c.body.as_str()), ("gray-control", ""));
    assert!(e.awaits_listing(last_check(&h)));
    e.tick(&h);
    assert_eq!(h.calls().len(), 1, "one check per period");
    // Still held there: nothing changes.
    let t = last_check(&h);
    e.answered(
        &h,
        t,
        Some(200),
        Some(&listing(&held("cranes", Trigger::BoxCount))),
    );
    assert!(!e.awaits_listing(t));
    // A failed check changes nothing either.
    h.advance_ms(CHECK_EVERY_MS);
    e.tick(&h);
    e.answered(&h, last_check(&h), Some(503), Some(b"{}"));
    h.advance_ms(CHECK_EVERY_MS);
    e.tick(&h);
    e.answered(&h, last_check(&h), Some(200), Some(b"not a listing"));
    assert_eq!(
        ask(&mut e, &h, "crane").decision.why,
        Why::Shed(Trigger::Latch)
    );
    // A workload that forgot it (restarted) is sent the hold again, on its own trigger.
    h.advance_ms(CHECK_EVERY_MS);
    e.tick(&h);
    e.answered(
        &h,
        last_check(&h),
        Some(200),
        Some(&listing(&Listing::default())),
    );
    e.tick(&h);
    let hold = LatchRequest::Hold {
        rule: "cranes".into(),
        trigger: Trigger::BoxCount,
        gateway: "gw-1".into(),
    };
    assert_eq!(latch_calls(&h), vec![hold.clone(), hold]);
    assert_eq!(
        ask(&mut e, &h, "crane").decision.why,
        Why::Shed(Trigger::Latch)
    );
    // Released at gw-0: released here, half-open, and nothing is sent back.
    h.advance_ms(CHECK_EVERY_MS);
    e.tick(&h);
    let t = last_check(&h);
    e.answered(
        &h,
        t,
        Some(200),
        Some(&listing(&released("cranes", "gw-0"))),
    );
    let i = incidents(&h);
    let last = i.last().unwrap();
    assert_eq!(
        (
            last.event.as_str(),
            last.released_via.as_deref(),
            last.released_by.as_deref()
        ),
        ("released", Some("gw-0"), None)
    );
    e.tick(&h);
    assert_eq!(latch_calls(&h).len(), 2, "no release sent back");
    for _ in 0..2 {
        let p = ask(&mut e, &h, "crane");
        assert_eq!(p.decision.why, Why::Probe);
        answer(&mut e, &h, &p, 100.0, 5, None);
    }
    assert_eq!(ask(&mut e, &h, "crane").decision.why, Why::Matched);
}

#[test]
fn a_reply_stamped_before_the_workload_heard_of_the_release_does_not_hold_again() {
    let h = MemoryHost::new(T0);
    let mut e = engine(&h, &hold_config(), 1);
    assert_eq!(result(&shed(&mut e, &h, "rule=cranes", "ana")), "held");
    e.tick(&h);
    let link = release_link(&h).unwrap();
    assert_eq!(
        result(&operate(&mut e, &h, RELEASE, &link, true, None, None)),
        "released"
    );
    // The release call leaves on the next tick; a probe's reply still says held, and is
    // judged on its merits instead.
    let p = ask(&mut e, &h, "crane");
    assert_eq!(p.decision.why, Why::Probe);
    answer(&mut e, &h, &p, 100.0, 5, Some("held:operator@cranes"));
    assert_eq!(events(&h), ["shed_start", "released"]);
    // Past the grace (sync 100 ms + the call's 300 ms + 1 s), the workload's word counts
    // again: a hold it still reports is a hold.
    h.advance_ms(1_400);
    let p = ask(&mut e, &h, "crane");
    answer(&mut e, &h, &p, 100.0, 5, Some("held:operator@cranes"));
    assert_eq!(events(&h), ["shed_start", "released", "held"]);
}

#[test]
fn a_late_check_answer_does_not_touch_a_newer_hold() {
    let h = MemoryHost::new(T0);
    let mut e = engine(&h, &hold_config(), 1);
    let r = ask(&mut e, &h, "crane");
    answer(&mut e, &h, &r, 100.0, 5, Some("held:flag@cranes"));
    h.advance_ms(CHECK_EVERY_MS);
    e.tick(&h);
    let stale = last_check(&h);
    // Released here meanwhile, then held again by a person.
    e.tick(&h);
    let link = release_link(&h).unwrap();
    assert_eq!(
        result(&operate(&mut e, &h, RELEASE, &link, true, None, None)),
        "released"
    );
    assert_eq!(result(&shed(&mut e, &h, "rule=cranes", "ana")), "held");
    // The old check's answer says released: it is about the old hold, and changes nothing.
    e.answered(
        &h,
        stale,
        Some(200),
        Some(&listing(&released("cranes", "gw-0"))),
    );
    assert_eq!(
        ask(&mut e, &h, "crane").decision.why,
        Why::Shed(Trigger::Latch)
    );
    assert_eq!(events(&h), ["shed_start", "released", "held"]);
}

#[test]
fn a_probe_that_meets_a_hold_holds() {
    let h = MemoryHost::new(T0);
    let mut e = engine(&h, &hold_config(), 1);
    let r = ask(&mut e, &h, "crane");
    answer(&mut e, &h, &r, 100.0, 5, Some("box_count"));
    h.advance_ms(10_000);
    let p = ask(&mut e, &h, "crane");
    assert_eq!(p.decision.why, Why::Probe);
    answer(&mut e, &h, &p, 100.0, 5, Some("held:operator@cranes"));
    let i = incidents(&h);
    assert_eq!(
        (i[1].event.as_str(), i[1].trigger),
        ("held", Trigger::Operator)
    );
    h.advance_ms(60_000);
    assert_eq!(
        ask(&mut e, &h, "crane").decision.why,
        Why::Shed(Trigger::Flag)
    );
}

#[test]
fn a_restarted_gateway_holds_after_one_gray_reply() {
    // A fresh Envoy: a fresh engine on fresh shared data.
    let h = MemoryHost::new(T0);
    let mut vms = vec![engine(&h, &hold_config(), 1), engine(&h, &hold_config(), 2)];
    let first = ask(&mut vms[0], &h, "crane");
    assert!(first.decision.gray);
    answer(
        &mut vms[0],
        &h,
        &first,
        100.0,
        5,
        Some("held:box_count@cranes"),
    );
    for e in &mut vms {
        e.tick(&h);
    }
    let seen = run_for(&mut vms, &h, 25_000);
    assert!(
        seen.iter().all(|w| *w == Why::Shed(Trigger::Latch)),
        "{seen:?}"
    );
}

#[test]
fn a_hold_check_moves_no_requests_view_of_the_board() {
    let h = MemoryHost::new(T0);
    let mut e = engine(&h, &hold_config(), 1);
    assert_eq!(result(&shed(&mut e, &h, "rule=cranes", "ana")), "held");
    e.tick(&h);
    let mark = h.board_mark();
    h.advance_ms(CHECK_EVERY_MS);
    e.tick(&h);
    assert!(is_check(h.calls().last().unwrap()));
    assert_eq!(h.board_mark(), mark);
}

#[test]
fn without_the_latch_a_hold_is_this_gateways_alone() {
    let h = MemoryHost::new(T0);
    let mut e = engine(&h, &confirm_config(), 1);
    assert_eq!(result(&shed(&mut e, &h, "rule=cranes", "ana")), "held");
    run_for(std::slice::from_mut(&mut e), &h, 30_000);
    assert!(h.calls().is_empty(), "no one to tell or ask");
    assert_eq!(
        ask(&mut e, &h, "crane").decision.why,
        Why::Shed(Trigger::Operator)
    );
}
