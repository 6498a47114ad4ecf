//! Property tests of everything that reads bytes a host, a client or a peer controls: the
//! plugin configuration, signal headers, breach flags, the decision header, latch and
//! operator requests, and the shared-data codecs (board, evidence record, window
//! snapshots) — any input is an error or a value, never a panic — plus round trips of
//! what grayguard writes, and a stateful run of the whole decision core against a host
//! that fails, races and lies about the time.
//!
//! `make test` runs each property over a bounded number of cases (`PROPTEST_CASES`,
//! default 256); `make fuzz` runs them much longer.

use proptest::prelude::*;

use grayguard_contract::decision::{Decision, Note, Side};
use grayguard_contract::latch::Request as LatchRequest;
use grayguard_contract::operator::{Link, Purpose};
use grayguard_contract::{Flag, Reason, Trigger};

use crate::breaker::Board;
use crate::config;
use crate::detect::sequential::evidence::Record;
use crate::engine::Engine;
use crate::host::{Faults, Host, MemoryHost};
use crate::shared::codec;
use crate::signals::{self, Reply};

fn trigger() -> impl Strategy<Value = Trigger> {
    prop::sample::select(Trigger::ALL.to_vec())
}

fn rule_name() -> impl Strategy<Value = String> {
    "[A-Za-z0-9._-]{1,64}"
}

/// JSON values up to a few levels deep, with the keys the configuration knows among others.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f)
            .map_or(serde_json::Value::Null, serde_json::Value::Number)),
        "[ -~]{0,12}".prop_map(serde_json::Value::from),
    ];
    let keys = prop::sample::select(vec![
        "stable",
        "gray",
        "rules",
        "breach",
        "name",
        "headers",
        "exact",
        "regex",
        "percent",
        "hours",
        "from",
        "to",
        "latency",
        "box_count",
        "error_rate",
        "min_samples",
        "alpha",
        "detector",
        "operator",
        "latch",
        "port",
        "secret",
        "max_ratio",
        "window_s",
        "x",
    ]);
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            prop::collection::btree_map(keys.clone().prop_map(String::from), inner, 0..6)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(256),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn any_bytes_as_configuration_are_refused_with_a_field_or_accepted(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Err(e) = config::parse(&bytes) {
            prop_assert!(!e.field().is_empty());
            prop_assert!(!e.to_string().contains('\n'));
        }
    }

    #[test]
    fn any_json_as_configuration_is_refused_with_a_field_or_accepted(v in json_value()) {
        let text = v.to_string();
        match config::parse(text.as_bytes()) {
            Ok(c) => {
                // What is accepted also builds a core.
                let _ = Engine::new(c, text.as_bytes(), 1);
            }
            Err(e) => prop_assert!(!e.field().is_empty() && !e.to_string().contains('\n')),
        }
    }

    #[test]
    fn signal_parsers_return_bounded_numbers_or_malformed(text in "\\PC{0,40}") {
        if let Ok(v) = signals::latency_ms(&text) {
            prop_assert!(v.is_finite() && (0.0..=signals::MAX_LATENCY_MS).contains(&v));
        }
        if let Ok(v) = signals::box_count(&text) {
            prop_assert!(v.fract() == 0.0 && (0.0..=signals::MAX_BOX_COUNT).contains(&v));
        }
        let reason = signals::flag_reason(&text);
        prop_assert!(!reason.is_empty() && reason.len() <= signals::MAX_FLAG_LEN);
    }

    #[test]
    fn decisions_round_trip_and_any_text_parses_or_errs(
        gray in any::<bool>(), rule in prop::option::of(rule_name()),
        note in prop::option::of((0u8..5, trigger())), junk in "\\PC{0,60}",
    ) {
        let side = if gray { Side::Gray } else { Side::Stable };
        let d = match &rule {
            None => Decision::no_rule(side),
            Some(r) => Decision::rule(side, r, note.map(|(k, t)| match k {
                0 => Note::Percent,
                1 => Note::Shed(t),
                2 => Note::Probe,
                3 => Note::DryRun(t),
                _ => Note::Alert(t),
            })),
        };
        let text = d.render();
        prop_assert_eq!(Decision::parse(&text), Ok(d.clone()));
        let _ = Decision::parse(&junk);
    }

    #[test]
    fn flags_round_trip_and_any_text_parses(
        reasons in prop::collection::vec(prop::sample::select(Reason::ALL.to_vec()), 0..4),
        latched in prop::collection::vec((trigger(), rule_name()), 0..4),
        held in prop::collection::vec((trigger(), rule_name()), 0..4),
        junk in "\\PC{0,80}",
    ) {
        let mut f = Flag { reasons, latched, held, unknown: 0 };
        f.reasons.sort();
        f.reasons.dedup();
        let text = f.render();
        if !text.is_empty() {
            prop_assert_eq!(Flag::parse(&text), f);
        }
        let _ = Flag::parse(&junk);
    }

    #[test]
    fn latch_and_operator_requests_round_trip_and_junk_is_refused(
        rule in rule_name(), t in trigger(), ms in any::<u64>(), gw in "[!-~]{1,40}",
        junk in "\\PC{0,120}",
    ) {
        let latch = LatchRequest::Latch { rule: rule.clone(), trigger: t, for_ms: ms, gateway: gw.clone() };
        let parsed = LatchRequest::parse(&latch.render());
        prop_assert!(parsed.is_ok(), "{:?}", parsed);
        let clear = LatchRequest::Clear { rule: rule.clone(), healthy_for_ms: ms, gateway: gw.clone() };
        prop_assert!(LatchRequest::parse(&clear.render()).is_ok());
        let hold = LatchRequest::Hold { rule: rule.clone(), trigger: t, gateway: gw.clone() };
        prop_assert!(LatchRequest::parse(&hold.render()).is_ok());
        let release = LatchRequest::Release { rule: rule.clone(), gateway: gw };
        prop_assert!(LatchRequest::parse(&release.render()).is_ok());
        let _ = LatchRequest::parse(&junk);
        let _ = grayguard_contract::latch::Listing::parse(junk.as_bytes());
        let _ = grayguard_contract::operator::shed_rule(&junk);
        let purpose = if ms % 2 == 0 { Purpose::Alert } else { Purpose::Release };
        let link = crate::link::sign(b"0123456789abcdef", purpose, &rule, t, ms);
        prop_assert_eq!(Link::parse(&link.query()), Ok(link.clone()));
        let _ = Link::parse(&junk);
    }

    #[test]
    fn shared_data_codecs_take_any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..600), units in 0usize..4) {
        let _ = codec::decode_board(&bytes, units);
        let _ = codec::decode_record(&bytes);
        let _ = codec::decode_snapshot(&bytes, units);
        let _ = codec::decode_workers(&bytes);
    }

    #[test]
    fn mutated_codec_bytes_decode_or_err(flip in any::<(usize, u8)>()) {
        let mut board = Board::new(3);
        board.0[1] = board.0[1].trip(5, Trigger::BoxCount, 10);
        board.0[2] = board.0[2].hold(5, Trigger::Operator, Trigger::Operator, 10).map_or(board.0[2], |(b, _)| b);
        let mut bytes = codec::encode_board(&board);
        let i = flip.0 % bytes.len();
        bytes[i] ^= flip.1.max(1);
        let _ = codec::decode_board(&bytes, 3);
        let mut rec = codec::encode_record(&Record::new(2, 3, 1));
        let i = flip.0 % rec.len();
        rec[i] ^= flip.1.max(1);
        let _ = codec::decode_record(&rec);
    }

    /// The whole core under a random schedule of requests, replies (good, failed, flagged,
    /// malformed), ticks, clock jumps (backwards too), operator requests and host faults,
    /// over two VMs: no panic, and the routing stays valid.
    #[test]
    fn the_core_survives_any_schedule_and_any_host(ops in prop::collection::vec((0u8..10, any::<u32>()), 1..120)) {
        let cfg_text = br#"{"stable":"v9","gray":"v10","sync_ms":100,
          "operator":{"port":1,"secret":"0123456789abcdef-x"},
          "rules":[{"name":"cranes","headers":{"x-device-type":{"exact":"crane"}},"percent":60},
                   {"name":"gates","headers":{"x-device-type":{"prefix":"gate"}},"action":"confirm"}],
          "breach":{"latency":{"header":"l","min_samples":3},"box_count":{"header":"b","min_samples":3},
                    "error_rate":{"min_samples":3},"consecutive_failures":3,"shed_for_s":1,
                    "probe_percent":50,"latch":{"cluster":"c"}}}"#;
        let cfg = config::parse(cfg_text).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let h = MemoryHost::new(1_700_000_000_000_000_000);
        let mut vms = [Engine::new(cfg.clone(), cfg_text, 1), Engine::new(cfg, cfg_text, 2)];
        for e in &mut vms {
            e.start(&h);
        }
        for (op, x) in ops {
            let e = &mut vms[(x % 2) as usize];
            let kind = ["crane", "gate-7", "dock"][(x % 3) as usize];
            match op {
                0..=4 => {
                    let r = e.decide(&h, |n| (n == "x-device-type").then_some(kind));
                    prop_assert!(r.decision.gray == r.decision.header("n").side.eq(&Side::Gray));
                    let _ = e.decision_text(&r, false);
                    let (lat, boxes) = (format!("{}", x % 400), format!("{}", x % 30));
                    let flag = ["box_count", "latched:latency@cranes", "junk", ""][(x % 4) as usize];
                    let status = [200, 200, 503, 200][(x % 4) as usize];
                    let version: &[u8] = [&b"v10-gray"[..], b"v9-prod", b"junk\xff", b""][(x % 4) as usize];
                    let reply = e.read(r.decision.gray, Some(status), |n| match n {
                        "l" if x % 7 != 0 => Some(lat.as_bytes()),
                        "b" if x % 11 != 0 => Some(boxes.as_bytes()),
                        "x-canary-breach" if x % 13 == 0 => Some(flag.as_bytes()),
                        "x-model-version" if x % 5 == 0 => Some(version),
                        "x-envoy-attempt-count" if x % 3 == 0 => Some(&b"2"[..]),
                        "x-served-by" if x % 2 == 0 => Some(&b"pod-\xff"[..]),
                        "b" => Some(&b"\xff"[..]),
                        _ => None,
                    });
                    e.settle(&h, &r, &reply);
                }
                5 => {
                    h.advance_ms(u64::from(x % 500));
                    e.tick(&h);
                }
                6 => h.set_now(1_700_000_000_000_000_000u64.wrapping_add(u64::from(x) * 1_000_000_000).wrapping_sub(2_000_000_000_000)),
                7 => h.set_faults(Faults {
                    writes_fail: x % 5 == 0,
                    cas_conflicts: x % 20,
                    reads_fail: x % 7 == 0,
                    dispatch_fails: x % 3 == 0,
                }),
                8 => {
                    let q = format!("rule=gates&trigger=box_count&exp={x}&sig={}", "0".repeat(64));
                    let path = ["/grayguard/confirm", "/grayguard/release", "/grayguard/shed"][x as usize % 3];
                    let call = crate::engine::OperatorCall {
                        method: if x % 4 == 0 { "POST" } else { "GET" },
                        on_operator: x % 2 == 0,
                        by: Some("\u{7}me"),
                        ..crate::engine::OperatorCall::get(path, if x % 3 == 2 { "rule=gates" } else { &q })
                    };
                    let reply = e.operator(&h, &call);
                    prop_assert!(reply.status >= 200);
                }
                _ => {
                    let r = e.decide(&h, |n| (n == "x-device-type").then_some(kind));
                    let reply = Reply::reset();
                    e.settle(&h, &r, &reply);
                    let listing: &[u8] = if x % 4 == 0 { br#"{"holds":[],"released":[{"rule":"gates","gateway":"g","age_ms":1}]}"# } else { b"{" };
                    e.answered(&h, x % 8, if x % 2 == 0 { Some(200) } else { None }, Some(listing));
                }
            }
        }
        let _ = h.now_ns();
    }
}
