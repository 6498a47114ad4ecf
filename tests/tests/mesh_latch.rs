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
use grayguard_contract::{Decision, Note, Trigger, headers};
use grayguard_e2e::envoy::TEST_LATCH_TOKEN;
use grayguard_e2e::http;
use grayguard_e2e::mesh::{Fleet, GRAY, STABLE, local_plugin_config};
use grayguard_e2e::paths;
use grayguard_e2e::sidecar::SidecarBuilder;
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

/// One ONNX Runtime thread each (the two sidecars share the cores); the sidecars' own
/// latency watchdog out of the way, so that the proxy decides.
fn sidecar(version: &str, conf: &str) -> SidecarBuilder {
    SidecarBuilder::new(version).args(&[
        "--threads",
        "1",
        "--watchdog-latency-budget-ms",
        "60000",
        "--conf",
        conf,
    ])
}

struct Photos(Vec<Vec<u8>>);

impl Photos {
    fn load() -> Photos {
        Photos(
            ["person.jpg", "dog.jpg", "kite.jpg", "giraffe.jpg"]
                .iter()
                .map(|n| std::fs::read(paths::image(n)).expect("read photo"))
                .collect(),
        )
    }

    fn get(&self, i: usize) -> &[u8] {
        &self.0[i % self.0.len()]
    }
}

/// A reply as a client saw it: which version served it and the filter's decision, when its
/// request was sent and when the reply was in.
#[derive(Debug)]
struct Seen {
    version: String,
    decision: Decision<'static>,
    sent: Instant,
    at: Instant,
}

impl Seen {
    fn gray(&self) -> bool {
        self.version == GRAY
    }
    fn shed(&self) -> Option<Trigger> {
        self.decision.shed()
    }
    fn probe(&self) -> bool {
        self.decision.note == Some(Note::Probe)
    }
}

/// Sends photo `i` through gateway `gw` as a device of `device_type`; any client-visible
/// error fails the test.
fn send(fleet: &Fleet, photos: &Photos, gw: usize, device_type: &str, i: usize) -> Seen {
    let sent = Instant::now();
    let r = fleet.infer(
        gw,
        device_type,
        &format!("{device_type}-{}", i % 3),
        photos.get(i),
        &[],
    );
    assert_eq!(
        r.status,
        200,
        "gw-{gw}: a client saw an error: {} {:?}",
        r.text(),
        r.headers
    );
    let decision = r.header(headers::DECISION).expect("x-canary-decision");
    Seen {
        version: r
            .header(headers::MODEL_VERSION)
            .expect("x-model-version")
            .to_string(),
        decision: Decision::parse(decision)
            .unwrap_or_else(|e| panic!("{decision:?}: {e}"))
            .into_owned(),
        sent,
        at: Instant::now(),
    }
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

#[test]
fn one_gateway_trips_and_every_gateway_sheds_within_a_reply() {
    let photos = Photos::load();
    let mut fleet = Fleet::start(
        &plugin_config(),
        sidecar(STABLE, "0.25"),
        sidecar(GRAY, "0.001"),
        GATEWAYS,
        2,
    );
    let latched_ok = format!(
        "{}{{action=\"latch\",result=\"ok\"}}",
        sc_metrics::LATCH_REQUESTS_TOTAL
    );
    let cleared_ok = format!(
        "{}{{action=\"clear\",result=\"ok\"}}",
        sc_metrics::LATCH_REQUESTS_TOTAL
    );

    // 1. Traffic through gw-0 only, the gray cohort and a stable one in turn, until gw-0
    //    sheds the cohort on its own evidence.
    let mut tripped_by = None;
    let mut first_hand = None;
    for i in 0..MAX_REQUESTS {
        let stable = send(&fleet, &photos, 0, DOCK, i);
        assert!(!stable.gray(), "{stable:?}");
        let s = send(&fleet, &photos, 0, CRANE, i);
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
    // gw-0 calls the control port on its next tick.
    fleet.gateways[0].wait_metric(gw_metrics::LATCH_CALLS, Duration::from_secs(5), |v| {
        v >= 1.0
    });
    assert_eq!(
        metric(&fleet.gateways[0].prometheus(), gw_metrics::LATCH_FAILURES),
        0.0,
        "gw-0's latch call failed (its log follows)"
    );
    // The live latches name the gateway that tripped, by its node id.
    let bearer = format!("Bearer {TEST_LATCH_TOKEN}");
    let listed =
        http::get_with(&fleet.gray.control_url(PATH), &[("authorization", &bearer)]).unwrap();
    assert_eq!(listed.status, 200, "{}", listed.text());
    let listed = listed.text();
    assert!(
        listed.contains("gw-0") && !listed.contains("gw-1"),
        "{listed}"
    );

    // 2. Then the gray cohort through the other two at once: each sheds after at most one
    //    gray reply, with the latch as the reason, and stays shed.
    let per_gateway: Vec<(usize, usize, Duration)> = thread::scope(|scope| {
        let handles: Vec<_> = (1..GATEWAYS)
            .map(|gw| {
                let (fleet, photos) = (&fleet, &photos);
                scope.spawn(move || {
                    let mut gray = 0;
                    let mut shed_at = None;
                    for i in 0..MAX_REQUESTS {
                        let s = send(fleet, photos, gw, CRANE, i);
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
    // Traffic outside the rule is untouched.
    assert!(!send(&fleet, &photos, 1, DOCK, 0).gray());

    // 3. Nobody else pulls the latch: not through a gateway (even with the right token), not
    //    on the control port without it; a client's probe mark is stripped.
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
            let r = control_post(&fleet, body, token);
            assert_eq!(r.status, 401, "{body} with {token:?}: {}", r.text());
        }
    }
    // Counted (the counters reach Envoy on the tick).
    fleet.gateways[1].wait_metric(gw_metrics::OPERATOR_REFUSED, Duration::from_secs(5), |v| {
        v >= 2.0
    });
    let spoofed = fleet.infer(2, CRANE, "crane-0", photos.get(0), &[(headers::PROBE, "1")]);
    assert_eq!(spoofed.status, 200);
    assert_eq!(spoofed.header(headers::MODEL_VERSION), Some(STABLE));
    let gray_metrics = fleet.gray.metrics();
    assert_eq!(
        metric(&gray_metrics, &latched_ok),
        control_before,
        "a spoof latched"
    );
    assert_eq!(
        metric(&gray_metrics, &cleared_ok),
        0.0,
        "nothing cleared while every gateway sheds"
    );
    // 4. A healthy gray replaces the bad one (a new process on the same ports: its latches
    //    are gone with the old one). Probes close every gateway, and gw-0's clear reaches it.
    fleet.gray.replace(
        sidecar(GRAY, "0.25")
            .control()
            .env(WORKLOAD_TOKEN_ENV, TEST_LATCH_TOKEN),
    );
    let deadline = Instant::now() + Duration::from_secs(SHED_FOR_S + 60);
    let mut closed_run = [0usize; GATEWAYS];
    let mut probes = [0usize; GATEWAYS];
    for i in 0..MAX_REQUESTS * GATEWAYS {
        if closed_run.iter().all(|&n| n >= CLOSED_RUN) || Instant::now() > deadline {
            break;
        }
        let gw = i % GATEWAYS;
        assert!(!send(&fleet, &photos, gw, DOCK, i).gray());
        let s = send(&fleet, &photos, gw, CRANE, i);
        if s.gray() && s.decision.note.is_none() {
            closed_run[gw] += 1;
        } else {
            closed_run[gw] = 0;
            probes[gw] += usize::from(s.probe());
        }
    }
    assert!(
        closed_run.iter().all(|&n| n >= CLOSED_RUN),
        "not every gateway closed again: runs {closed_run:?}, probes {probes:?}"
    );
    assert!(
        probes.iter().all(|&n| n >= 1),
        "probes per gateway {probes:?}"
    );
    for (gw, envoy) in fleet.gateways.iter().enumerate() {
        let state = metric(&envoy.prometheus(), gw_metrics::BREAKER_STATE);
        assert_eq!(state, 0.0, "gw-{gw}'s breaker gauge");
        let failures = metric(&envoy.prometheus(), gw_metrics::LATCH_FAILURES);
        assert_eq!(failures, 0.0, "gw-{gw}'s latch calls failed");
    }
    // The clear is sent on the tick after gw-0 closed.
    let deadline = Instant::now() + Duration::from_secs(5);
    while metric(&fleet.gray.metrics(), &cleared_ok) < 1.0 {
        assert!(
            Instant::now() < deadline,
            "gw-0 closed but no clear reached the gray workload: {}",
            fleet.gray.metrics()
        );
        thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(metric(&fleet.gray.metrics(), sc_metrics::LATCHES), 0.0);
}
