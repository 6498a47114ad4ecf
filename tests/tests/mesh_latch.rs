//! The mesh-wide latch end to end with real processes: three gateways (real Envoys with the
//! shipped plugin configuration, node ids `gw-0..2`) in front of the same stable and gray
//! sidecars serving the real model on real photos, the gray one the oversensitive release
//! (confidence 0.001) with its control listener and token. Traffic goes through the first
//! gateway until it sheds; it latches the gray workload, and then each of the other two sheds
//! the cohort after at most one gray reply, with no client error. Clients cannot latch or
//! clear through a gateway, nor reach the control port without the token. Once a healthy gray
//! replaces the bad one, half-open probes close every gateway and the first clears its latch.

use std::thread;
use std::time::{Duration, Instant};

use grayguard_client::exposition;
use grayguard_contract::latch::{PATH, Request, WORKLOAD_TOKEN_ENV};
use grayguard_contract::metrics::{filter as gw_metrics, sidecar as sc_metrics};
use grayguard_contract::{Trigger, headers};
use grayguard_e2e::envoy::TEST_LATCH_TOKEN;
use grayguard_e2e::http;
use grayguard_e2e::mesh::{
    Fleet, GRAY, PHOTOS, STABLE, Seen, local_plugin_config, sidecar, until_every_gateway_closes,
};
use grayguard_e2e::paths;
use grayguard_e2e::wait::eventually;
use serde_json::Value;

const GATEWAYS: usize = 3;
const SHED_FOR_S: u64 = 4;
const RULE: &str = "crane-cameras";
const CRANE: &str = "crane-camera";
const DOCK: &str = "dock-camera";
/// Most requests one phase sends through one gateway: every loop is bounded.
const MAX_REQUESTS: usize = 120;
/// Gray replies a gateway may serve between the first gateway's trip and its own shed.
const GRAY_ALLOWANCE: usize = 1;
/// Consecutive unshed gray replies that show a gateway's breaker closed again.
const CLOSED_RUN: usize = 3;

/// The shipped configuration with a short shed and every half-open request a probe, so the
/// whole cycle fits in seconds.
fn plugin_config() -> String {
    let mut c: Value = serde_json::from_str(&local_plugin_config()).unwrap();
    c["breach"]["shed_for_s"] = SHED_FOR_S.into();
    c["breach"]["probe_percent"] = 100.into();
    c.to_string()
}

/// Sends photo `i` through gateway `gw` as a device of `device_type`; any client-visible
/// error fails the test.
fn send(fleet: &Fleet, photos: &[Vec<u8>], gw: usize, device_type: &str, i: usize) -> Seen {
    let device = format!("{device_type}-{}", i % 3);
    fleet.send(gw, device_type, &device, &photos[i % photos.len()])
}

fn metric(text: &str, selector: &str) -> f64 {
    exposition::value(text, selector).unwrap_or(0.0)
}

fn control_post(fleet: &Fleet, body: &str, token: Option<&str>) -> http::Response {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let mut h = vec![("content-type", "application/x-www-form-urlencoded")];
    if let Some(b) = &bearer {
        h.push(("authorization", b.as_str()));
    }
    http::post(&fleet.gray.control_url(PATH), &h, body.as_bytes()).expect("control answered")
}

/// The `{action, result}` series of the gray workload's latch calls.
fn latch_requests(action: &str) -> String {
    format!(
        "{}{{action=\"{action}\",result=\"ok\"}}",
        sc_metrics::LATCH_REQUESTS_TOTAL
    )
}

/// The fleet (three gateways, the stable sidecar and the oversensitive gray one with its
/// control listener) and the photos, as the incident goes.
struct Latch {
    fleet: Fleet,
    photos: Vec<Vec<u8>>,
}

impl Latch {
    fn start() -> Latch {
        Latch {
            fleet: Fleet::start(
                &plugin_config(),
                sidecar(STABLE, "0.25"),
                sidecar(GRAY, "0.001"),
                GATEWAYS,
                2,
            ),
            photos: paths::photos(&PHOTOS),
        }
    }

    fn send(&self, gw: usize, device_type: &str, i: usize) -> Seen {
        send(&self.fleet, &self.photos, gw, device_type, i)
    }

    /// Traffic through gw-0 only, the gray cohort and a stable one in turn, until gw-0 sheds
    /// the cohort on its own evidence; it latches the gray workload on its next tick, under
    /// its node id. Returns when gw-0's last gray reply was in.
    fn gw0_trips_on_its_own_evidence_and_latches(&self) -> Instant {
        let mut tripped_by = None;
        let mut first_hand = None;
        for i in 0..MAX_REQUESTS {
            let stable = self.send(0, DOCK, i);
            assert!(!stable.gray(), "{stable:?}");
            let s = self.send(0, CRANE, i);
            if let Some(t) = s.shed() {
                first_hand = Some(t);
                break;
            }
            assert!(s.gray(), "{s:?}");
            tripped_by = Some(s.at);
        }
        let first_hand = first_hand.expect("gw-0 never shed the oversensitive gray version");
        assert_ne!(first_hand, Trigger::Latch, "gw-0 shed on its own evidence");
        let tripped_by = tripped_by.expect("gray replies before the shed");
        let gw0 = &self.fleet.gateways[0];
        gw0.wait_metric(gw_metrics::LATCH_CALLS, Duration::from_secs(5), |v| {
            v >= 1.0
        });
        assert_eq!(
            metric(&gw0.prometheus(), gw_metrics::LATCH_FAILURES),
            0.0,
            "gw-0's latch call failed (its log follows)"
        );
        // The live latches name the gateway that tripped, by its node id.
        let bearer = format!("Bearer {TEST_LATCH_TOKEN}");
        let listed = http::get_with(
            &self.fleet.gray.control_url(PATH),
            &[("authorization", &bearer)],
        )
        .unwrap();
        assert_eq!(listed.status, 200, "{}", listed.text());
        let listed = listed.text();
        assert!(
            listed.contains("gw-0") && !listed.contains("gw-1"),
            "{listed}"
        );
        tripped_by
    }

    /// The gray cohort through the other two gateways at once: each sheds after at most one
    /// gray reply, with the latch as the reason, and stays shed; traffic outside the rule is
    /// untouched.
    fn every_other_gateway_sheds_within_one_reply(&self, tripped_by: Instant) {
        let per_gateway: Vec<(usize, usize, Duration)> = thread::scope(|scope| {
            let handles: Vec<_> = (1..GATEWAYS)
                .map(|gw| {
                    scope.spawn(move || {
                        let mut gray = 0;
                        let mut shed_at = None;
                        for i in 0..MAX_REQUESTS {
                            let s = self.send(gw, CRANE, i);
                            match s.shed() {
                                Some(t) => {
                                    assert_eq!(t, Trigger::Latch, "gw-{gw}: {s:?}");
                                    shed_at.get_or_insert(s.sent);
                                }
                                None if shed_at.is_some() => {
                                    panic!("gw-{gw}: gray again after its shed: {s:?}")
                                }
                                None => {
                                    assert!(s.gray() && !s.probe(), "gw-{gw}: {s:?}");
                                    gray += 1;
                                }
                            }
                            if shed_at.is_some() && i >= gray + 3 {
                                break;
                            }
                        }
                        let shed_at = shed_at.unwrap_or_else(|| panic!("gw-{gw} never shed"));
                        (gw, gray, shed_at.duration_since(tripped_by))
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (gw, gray, lag) in &per_gateway {
            eprintln!(
                "gw-{gw}: {gray} gray repl(ies) after gw-0's trip; its first shed request was sent \
                 {lag:?} after the trip"
            );
            assert!(
                *gray <= GRAY_ALLOWANCE,
                "gw-{gw} served {gray} gray replies after gw-0 tripped (allowance {GRAY_ALLOWANCE})"
            );
        }
        assert!(!self.send(1, DOCK, 0).gray());
    }

    /// Nobody else pulls the latch: not through a gateway (even with the right token), not on
    /// the control port without it; a client's probe mark is stripped; nothing is cleared
    /// while every gateway sheds.
    fn nobody_else_pulls_the_latch(&self) {
        let fleet = &self.fleet;
        let latched_ok = latch_requests("latch");
        let control_before = metric(&fleet.gray.metrics(), &latched_ok);
        let latch = Request::Latch {
            rule: RULE.into(),
            trigger: Trigger::Flag,
            for_ms: 60_000,
            gateway: "client".into(),
        }
        .render();
        let clear = Request::Clear {
            rule: RULE.into(),
            healthy_for_ms: 60_000,
            gateway: "client".into(),
        }
        .render();
        let bearer = format!("Bearer {TEST_LATCH_TOKEN}");
        for body in [&latch, &clear] {
            let r = http::post(
                &fleet.gateways[1].url(PATH),
                &[
                    ("content-type", "application/x-www-form-urlencoded"),
                    ("authorization", &bearer),
                ],
                body.as_bytes(),
            )
            .unwrap();
            assert_eq!(r.status, 403, "{body} through a gateway: {}", r.text());
            for token in [None, Some("not-the-latch-token-at-all")] {
                let r = control_post(fleet, body, token);
                assert_eq!(r.status, 401, "{body} with {token:?}: {}", r.text());
            }
        }
        // Counted (the counters reach Envoy on the tick).
        fleet.gateways[1].wait_metric(gw_metrics::OPERATOR_REFUSED, Duration::from_secs(5), |v| {
            v >= 2.0
        });
        let spoofed = fleet.infer(
            2,
            CRANE,
            "crane-0",
            &self.photos[0],
            &[(headers::PROBE, "1")],
        );
        assert_eq!(spoofed.status, 200);
        assert_eq!(spoofed.header(headers::MODEL_VERSION), Some(STABLE));
        let gray_metrics = fleet.gray.metrics();
        assert_eq!(
            metric(&gray_metrics, &latched_ok),
            control_before,
            "a spoof latched"
        );
        assert_eq!(
            metric(&gray_metrics, &latch_requests("clear")),
            0.0,
            "nothing cleared while every gateway sheds"
        );
    }

    /// A healthy gray replaces the bad one (a new process on the same ports: its latches are
    /// gone with the old one). Probes close every gateway, and gw-0's clear reaches it.
    fn a_healthy_gray_closes_every_gateway_and_gw0_clears(&mut self) {
        self.fleet.gray.replace(
            sidecar(GRAY, "0.25")
                .control()
                .env(WORKLOAD_TOKEN_ENV, TEST_LATCH_TOKEN),
        );
        let mut i = 0;
        let probes = until_every_gateway_closes(
            GATEWAYS,
            CLOSED_RUN,
            MAX_REQUESTS * GATEWAYS,
            Duration::from_secs(SHED_FOR_S + 60),
            |gw| {
                i += 1;
                assert!(!self.send(gw, DOCK, i).gray());
                self.send(gw, CRANE, i)
            },
        );
        assert!(
            probes.iter().all(|&n| n >= 1),
            "probes per gateway {probes:?}"
        );
        for (gw, envoy) in self.fleet.gateways.iter().enumerate() {
            let state = metric(&envoy.prometheus(), gw_metrics::BREAKER_STATE);
            assert_eq!(state, 0.0, "gw-{gw}'s breaker gauge");
            let failures = metric(&envoy.prometheus(), gw_metrics::LATCH_FAILURES);
            assert_eq!(failures, 0.0, "gw-{gw}'s latch calls failed");
        }
        // The clear is sent on the tick after gw-0 closed.
        let gray = &self.fleet.gray;
        let cleared_ok = latch_requests("clear");
        eventually(
            "gw-0's clear reaches the gray workload",
            Duration::from_secs(5),
            || {
                let text = gray.metrics();
                (metric(&text, &cleared_ok) >= 1.0)
                    .then_some(())
                    .ok_or(text)
            },
        );
        assert_eq!(metric(&gray.metrics(), sc_metrics::LATCHES), 0.0);
    }
}

/// One incident across the fleet in four steps, each a method of [`Latch`] that says what it
/// checks.
#[test]
fn one_gateway_trips_and_every_gateway_sheds_within_a_reply() {
    let mut latch = Latch::start();
    let tripped_by = latch.gw0_trips_on_its_own_evidence_and_latches();
    latch.every_other_gateway_sheds_within_one_reply(tripped_by);
    latch.nobody_else_pulls_the_latch();
    latch.a_healthy_gray_closes_every_gateway_and_gw0_clears();
}
