//! Confirm mode: alerts instead of sheds, the signed link, a person confirming or
//! dismissing.

use super::*;

#[test]
fn confirm_mode_alerts_instead_of_shedding_until_a_person_confirms() {
    let h = MemoryHost::new(T0);
    let mut vms = vec![
        engine(&h, &confirm_config(), 1),
        engine(&h, &confirm_config(), 2),
    ];
    traffic(&mut vms, &h, 100, |_| 20);
    let i = incidents(&h);
    assert_eq!(
        (i.len(), Some(i[0].event.as_str())),
        (1, Some("alert_start")),
        "{i:?}"
    );
    let link = alert_link(&h);
    assert_eq!(i[0].confirm.as_deref(), Some(link.as_str()));
    // Gray keeps serving, and says so.
    let r = ask(&mut vms[0], &h, "crane");
    assert_eq!(text(&mut vms[0], &r), "gray; rule=cranes; alert=box_count");
    // The public listener refuses the link; a forged one is refused on the operator's.
    let refused = operate(
        &mut vms[1],
        &h,
        "/grayguard/confirm",
        &link,
        false,
        None,
        None,
    );
    assert_eq!(refused.status, 403);
    let forged = link.replace("trigger=box_count", "trigger=latency");
    assert_eq!(
        operate(
            &mut vms[1],
            &h,
            "/grayguard/confirm",
            &forged,
            true,
            None,
            None
        )
        .status,
        403
    );
    // Confirmed: shed at once and held, with the person in the record; a second click
    // changes nothing.
    let ok = operate(
        &mut vms[1],
        &h,
        "/grayguard/confirm",
        &link,
        true,
        Some("ana@ops"),
        Some("10.0.0.7:5123"),
    );
    assert_eq!((ok.status, result(&ok)), (200, "held".into()), "{ok:?}");
    let again = operate(
        &mut vms[0],
        &h,
        "/grayguard/confirm",
        &link,
        true,
        Some("ana@ops"),
        None,
    );
    assert_eq!((again.status, result(&again)), (200, "already_held".into()));
    let shed = ask(&mut vms[0], &h, "crane");
    assert_eq!(
        text(&mut vms[0], &shed),
        "stable; rule=cranes; shed=box_count"
    );
    let i = incidents(&h);
    assert_eq!(i.len(), 2, "{i:?}");
    assert_eq!(
        (Some(i[1].event.as_str()), i[1].confirmed_by.as_deref()),
        (Some("shed_start"), Some("ana@ops"))
    );
    assert_eq!(
        (i[1].held, i[1].held_by.as_deref()),
        (Some(true), Some("ana@ops"))
    );
    assert_eq!(i[1].operator_from.as_deref(), Some("10.0.0.7:5123"));
    for e in &mut vms {
        e.tick(&h);
    }
    assert_eq!(h.counter(Counter::Confirmations), 1);
    assert_eq!(h.counter(Counter::OperatorRefused), 2);
    assert!(
        !h.gauges()
            .iter()
            .any(|(n, v)| n.ends_with("grayguard_alert") && *v == 1)
    );
}

#[test]
fn confirm_mode_leaves_outright_failure_to_no_one_and_can_be_dismissed() {
    let h = MemoryHost::new(T0);
    let mut e = engine(&h, &confirm_config(), 1);
    // The flag still sheds at once.
    let r = ask(&mut e, &h, "crane");
    answer(&mut e, &h, &r, 10.0, 3, Some("latency"));
    assert_eq!(incidents(&h)[0].event.as_str(), "shed_start");
    // A dismissed alert ends without a shed and the evidence starts afresh.
    let h = MemoryHost::new(T0);
    let mut vms = vec![engine(&h, &confirm_config(), 1)];
    traffic(&mut vms, &h, 100, |_| 20);
    let link = alert_link(&h);
    let d = operate(
        &mut vms[0],
        &h,
        "/grayguard/dismiss",
        &link,
        true,
        None,
        None,
    );
    assert_eq!(d.status, 200, "{d:?}");
    assert_eq!(
        operate(
            &mut vms[0],
            &h,
            "/grayguard/confirm",
            &link,
            true,
            None,
            None
        )
        .status,
        409
    );
    let i = incidents(&h);
    assert_eq!(
        (Some(i[1].event.as_str()), i[1].dismissed_by.as_deref()),
        (Some("alert_dismissed"), Some("anonymous"))
    );
    let r = ask(&mut vms[0], &h, "crane");
    assert_eq!(text(&mut vms[0], &r), "gray; rule=cranes");
    // An expired link no longer works.
    traffic(&mut vms, &h, 100, |_| 20);
    let link = alert_link(&h);
    h.advance_ms(3 * 3_600_000);
    let late = operate(
        &mut vms[0],
        &h,
        "/grayguard/confirm",
        &link,
        true,
        None,
        None,
    );
    assert_eq!(
        (late.status, late.body.contains("expired")),
        (403, true),
        "{late:?}"
    );
}

#[test]
fn confirm_mode_needs_an_operator_listener() {
    let no_operator = SEQ.replace(
        "\"shed_for_s\":10",
        "\"shed_for_s\":10,\"action\":\"confirm\"",
    );
    let err = parse(no_operator.as_bytes()).unwrap_err();
    assert_eq!(err.field(), "rules[0].action");
    let h = MemoryHost::new(T0);
    let mut e = engine(&h, SEQ, 1);
    let r = operate(
        &mut e,
        &h,
        "/grayguard/confirm",
        "rule=cranes",
        true,
        None,
        None,
    );
    assert_eq!(r.status, 403);
}
