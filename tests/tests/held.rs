//! A person's decision holds, end to end with real processes: two gateways (real Envoys with
//! the shipped plugin configuration, its rule in confirm mode, node ids `gw-0`, `gw-1`) in
//! front of the real stable and gray sidecars serving the real model on real photos, the gray
//! one the oversensitive release with its control listener and token. The alert's signed link
//! confirms the shed at gw-0, which holds it and tells the gray workload; gw-1 holds after at
//! most one gray reply. A healthy gray then replaces the bad one — a restarted workload that
//! forgot the hold, which the gateways' checks send again — and both gateways stay on stable,
//! with no probe, through three times `shed_for_s` and a restart of gw-0's Envoy, though gray
//! would now pass every probe. The release link from the held gauge sends gw-0 half-open, gw-1
//! learns the release from its check, and healthy probes close both. Every step is in the
//! incident records, read with the contract's record type.

use std::time::{Duration, Instant};

use grayguard_client::exposition;
use grayguard_contract::latch::{Listing, PATH as LATCH, Standing};
use grayguard_contract::metrics::filter as names;
use grayguard_contract::operator::{CONFIRM, RELEASE};
use grayguard_contract::record::{self, Event, Incident, Record};
use grayguard_contract::{Flag, Note, Trigger};
use grayguard_e2e::envoy::{Envoy, TEST_LATCH_TOKEN};
use grayguard_e2e::http;
use grayguard_e2e::mesh::{
    Fleet, GRAY, PHOTOS, STABLE, Seen, local_plugin_config, sidecar, until_every_gateway_closes,
};
use grayguard_e2e::paths;
use grayguard_e2e::wait::eventually;
use serde_json::Value;

const GATEWAYS: usize = 2;
const WORKERS: u32 = 2;
const SHED_FOR_S: u64 = 3;
const RULE: &str = "crane-cameras";
const CRANE: &str = "crane-camera";
const DOCK: &str = "dock-camera";
/// The person, as the authenticating proxy in front of the operator listener names them
/// (the shipped configuration's `operator.identity_header`).
const IDENTITY: &str = "x-auth-request-email";
const ONCALL: &str = "oncall@example.com";
/// Most requests one phase sends through one gateway: every loop is bounded.
const MAX_REQUESTS: usize = 150;
/// Consecutive unshed, unprobed gray replies that show a gateway's breaker closed again.
const CLOSED_RUN: usize = 3;
/// A holding gateway checks every 5 s; a restarted workload gets the hold again within a
/// check or two (and a model load).
const RECHECK: Duration = Duration::from_secs(30);

/// The shipped configuration with its rule in confirm mode, a short shed and every
/// half-open request a probe: a hold is shown to outlast the shed many times over, and a
/// release to end in a few seconds.
fn plugin_config() -> String {
    let mut c: Value = serde_json::from_str(&local_plugin_config()).unwrap();
    c["rules"][0]["action"] = "confirm".into();
    c["breach"]["shed_for_s"] = SHED_FOR_S.into();
    c["breach"]["probe_percent"] = 100.into();
    c.to_string()
}

/// The incident records `envoy` logged, read with the contract's record type.
fn records(envoy: &Envoy) -> Vec<Incident> {
    envoy
        .log()
        .lines()
        .filter_map(record::parse_line)
        .filter_map(|r| match r.expect("a record that parses") {
            Record::Incident(i) => Some(*i),
            Record::Promotion(_) => None,
        })
        .collect()
}

fn events(records: &[Incident]) -> Vec<Event> {
    records.iter().map(|i| i.event).collect()
}

/// The `label` of the series of gauge `metric` at 1 on `envoy` (a signed link).
fn link_label(envoy: &Envoy, metric: &str, label: &str) -> Option<(String, String)> {
    exposition::samples(&envoy.prometheus(), metric)
        .into_iter()
        .find(|s| s.value == 1.0)
        .and_then(|s| {
            Some((
                s.labels.get("trigger")?.clone(),
                s.labels.get(label)?.clone(),
            ))
        })
}

/// The fleet and the photos, as the incident goes.
struct Held {
    fleet: Fleet,
    photos: Vec<Vec<u8>>,
    config: String,
    /// Requests sent so far (each a new photo and device).
    sent: usize,
}

impl Held {
    fn start() -> Held {
        let config = plugin_config();
        Held {
            fleet: Fleet::start(
                &config,
                sidecar(STABLE, "0.25"),
                sidecar(GRAY, "0.001"),
                GATEWAYS,
                WORKERS,
            ),
            photos: paths::photos(&PHOTOS),
            config,
            sent: 0,
        }
    }

    /// One request of `device_type` through gateway `gw`, each a photo and device in turn;
    /// any client-visible error fails the test.
    fn send(&mut self, gw: usize, device_type: &str) -> Seen {
        let i = self.sent;
        self.sent += 1;
        let device = format!("{device_type}-{}", i % 3);
        self.fleet.send(
            gw,
            device_type,
            &device,
            &self.photos[i % self.photos.len()],
        )
    }

    /// What the gray workload holds, as its control listener lists it (the contract's
    /// listing; the gateways' token).
    fn workload(&self) -> Listing {
        let bearer = format!("Bearer {TEST_LATCH_TOKEN}");
        let r = http::get_with(
            &self.fleet.gray.control_url(LATCH),
            &[("authorization", &bearer)],
        )
        .expect("the control listener answers");
        assert_eq!(r.status, 200, "{}", r.text());
        Listing::parse(r.text().as_bytes()).expect("a listing")
    }

    /// Waits until the gray workload holds the rule (on `trigger`).
    fn wait_workload_holds(&self, what: &str, trigger: Trigger) {
        eventually(what, RECHECK, || match self.workload().standing(RULE) {
            Standing::Held(h) if h.trigger == trigger => Ok(()),
            other => Err(format!("{other:?}")),
        });
    }

    /// A person's click on gateway `gw`'s operator listener.
    fn click(&self, gw: usize, path: &str, query: &str) -> http::Response {
        let url = self.fleet.gateways[gw].operator_url(&format!("{path}?{query}"));
        http::get_with(&url, &[(IDENTITY, ONCALL)]).expect("the operator listener answers")
    }

    /// Both cohorts through gw-0 until the oversensitive gray raises confirm mode's alert
    /// (the cohort stays on gray meanwhile); the alert's trigger and its signed link.
    fn gw0_alerts(&mut self) -> (Trigger, String) {
        let mut seen = None;
        for _ in 0..MAX_REQUESTS {
            assert!(!self.send(0, DOCK).gray());
            let s = self.send(0, CRANE);
            assert!(s.shed().is_none(), "confirm mode shed on its own: {s:?}");
            if let Some(Note::Alert(t)) = s.decision.note {
                seen = Some(t);
                break;
            }
            assert!(s.closed_gray(), "{s:?}");
        }
        let trigger = seen.expect("gw-0 never alerted on the oversensitive gray version");
        let gw0 = &self.fleet.gateways[0];
        let (t, link) = eventually(
            "the alert gauge with its link",
            Duration::from_secs(5),
            || link_label(gw0, names::ALERT, "confirm").ok_or("no alert gauge at 1"),
        );
        assert_eq!(t, trigger.as_str());
        (trigger, link)
    }

    /// The click: the rule is shed and held at gw-0 at once; a second click changes nothing;
    /// the gray workload holds it within a tick.
    fn a_person_confirms_at_gw0(&mut self, trigger: Trigger, link: &str) {
        let ok = self.click(0, CONFIRM, link);
        assert_eq!(
            (ok.status, ok.json()["result"].as_str()),
            (200, Some("held")),
            "{}",
            ok.text()
        );
        let again = self.click(0, CONFIRM, link);
        assert_eq!(
            (again.status, again.json()["result"].as_str()),
            (200, Some("already_held"))
        );
        assert_eq!(self.send(0, CRANE).shed(), Some(trigger));
        self.wait_workload_holds("gw-0's hold reaches the gray workload", trigger);
    }

    /// gw-1, which saw nothing of the incident, holds the rule after at most one gray reply
    /// (the workload's `held:` item), and publishes a release link of its own.
    fn gw1_holds_within_one_gray_reply(&mut self) {
        let mut gray = 0;
        let mut held = false;
        for _ in 0..4 {
            let s = self.send(1, CRANE);
            if s.gray() {
                gray += 1;
                assert!(!held, "gray again after the hold: {s:?}");
            } else {
                assert_eq!(s.shed(), Some(Trigger::Latch), "{s:?}");
                held = true;
            }
        }
        assert!(
            held && gray <= 1,
            "gw-1: {gray} gray replies before holding"
        );
        let gw1 = &self.fleet.gateways[1];
        eventually("gw-1's held gauge", Duration::from_secs(5), || {
            link_label(gw1, names::HELD, "release").ok_or("no held gauge at 1")
        });
    }

    /// A healthy gray replaces the bad one on the same ports: a restarted workload, which
    /// forgot the hold. The gateways keep holding, and their checks hold it there again.
    fn a_restarted_workload_is_held_again(&mut self, trigger: Trigger) {
        self.fleet.gray.replace(Fleet::gray(sidecar(GRAY, "0.25")));
        for gw in 0..GATEWAYS {
            assert!(self.send(gw, CRANE).shed().is_some(), "gw-{gw} let go");
        }
        // gw-0 sends its own trigger again; gw-1 the one the workload told it.
        self.wait_workload_holds("a gateway's check holds the restarted workload", trigger);
    }

    /// Through three times `shed_for_s` every crane request of both gateways goes to stable,
    /// and none is a probe, though gray is healthy now.
    fn every_gateway_stays_shed_for(&mut self, span: Duration) {
        let until = Instant::now() + span;
        let mut n = 0;
        while Instant::now() < until && n < MAX_REQUESTS {
            let gw = n % GATEWAYS;
            let s = self.send(gw, CRANE);
            assert!(!s.gray() && s.shed().is_some(), "gw-{gw} let go: {s:?}");
            n += 1;
        }
        assert!(
            Instant::now() >= until,
            "the loop ran out of requests first"
        );
        for (gw, envoy) in self.fleet.gateways.iter().enumerate() {
            let probes = exposition::value(&envoy.prometheus(), names::PROBE_REQUESTS);
            assert_eq!(probes.unwrap_or(0.0), 0.0, "gw-{gw} probed a held rule");
        }
    }

    /// gw-0's Envoy restarts (fresh shared data): it holds again after at most one gray
    /// reply, on the workload's word.
    fn a_restarted_gateway_holds_again(&mut self) {
        self.fleet.restart_gateway(0, &self.config, WORKERS);
        let mut gray = 0;
        for _ in 0..4 {
            let s = self.send(0, CRANE);
            if s.gray() {
                gray += 1;
            } else {
                assert_eq!(s.shed(), Some(Trigger::Latch), "{s:?}");
            }
        }
        assert!(gray <= 1, "the restarted gw-0 served {gray} gray replies");
    }

    /// The release link from gw-0's held gauge: refused on the public listener, then
    /// followed on the operator listener (a second click changes nothing); gw-0 goes
    /// half-open at once, gw-1 on its next check, and healthy probes close both.
    fn the_release_link_closes_every_gateway(&mut self) {
        let gw0 = &self.fleet.gateways[0];
        let (_, release) = eventually("gw-0's held gauge", Duration::from_secs(5), || {
            link_label(gw0, names::HELD, "release").ok_or("no held gauge at 1")
        });
        let public = http::get(&gw0.url(&format!("{RELEASE}?{release}"))).unwrap();
        assert_eq!(public.status, 403, "{}", public.text());
        assert!(
            self.send(0, CRANE).shed().is_some(),
            "released by the public listener"
        );
        let ok = self.click(0, RELEASE, &release);
        assert_eq!(
            (ok.status, ok.json()["result"].as_str()),
            (200, Some("released")),
            "{}",
            ok.text()
        );
        let again = self.click(0, RELEASE, &release);
        assert_eq!(again.json()["result"], "already_released");
        let probes = until_every_gateway_closes(
            GATEWAYS,
            CLOSED_RUN,
            MAX_REQUESTS * GATEWAYS,
            RECHECK + Duration::from_secs(60),
            |gw| self.send(gw, CRANE),
        );
        assert!(probes.iter().all(|&n| n >= 1), "probes {probes:?}");
        assert!(
            matches!(self.workload().standing(RULE), Standing::Released(r) if r.gateway == "gw-0"),
            "{:?}",
            self.workload()
        );
    }
}

#[test]
fn a_confirmed_shed_holds_through_restarts_until_its_release_link() {
    let mut t = Held::start();
    let (trigger, link) = t.gw0_alerts();
    t.a_person_confirms_at_gw0(trigger, &link);
    t.gw1_holds_within_one_gray_reply();
    t.a_restarted_workload_is_held_again(trigger);
    t.every_gateway_stays_shed_for(Duration::from_secs(3 * SHED_FOR_S + 1));
    // gw-0's first process: the alert, then the person's held shed.
    let first = records(&t.fleet.gateways[0]);
    t.a_restarted_gateway_holds_again();
    t.every_gateway_stays_shed_for(Duration::from_secs(SHED_FOR_S + 1));
    t.the_release_link_closes_every_gateway();

    assert_eq!(
        events(&first),
        [Event::AlertStart, Event::ShedStart],
        "{first:#?}"
    );
    let held = &first[1];
    assert_eq!(
        (
            held.trigger,
            held.held,
            held.confirmed_by.as_deref(),
            held.held_by.as_deref()
        ),
        (trigger, Some(true), Some(ONCALL), Some(ONCALL))
    );
    assert!(held.operator_from.is_some(), "{held:?}");
    // Each other step, on each gateway, once: held on the workload's word, released
    // (here by the person, there by the check), closed by probes.
    for (gw, envoy) in t.fleet.gateways.iter().enumerate() {
        let r = records(envoy);
        assert_eq!(
            events(&r),
            [Event::ShedStart, Event::Released, Event::ShedEnd],
            "gw-{gw}: {r:#?}"
        );
        let flag = Flag::parse(r[0].flag_reason.as_deref().unwrap_or(""));
        assert_eq!(
            (r[0].trigger, r[0].held, flag.held_for(RULE)),
            (Trigger::Latch, Some(true), Some(trigger)),
            "gw-{gw}: {:?}",
            r[0]
        );
        let released = &r[1];
        let by_whom = (
            released.released_by.as_deref(),
            released.released_via.as_deref(),
        );
        if gw == 0 {
            assert_eq!(by_whom, (Some(ONCALL), None), "{released:?}");
        } else {
            assert_eq!(by_whom, (None, Some("gw-0")), "{released:?}");
        }
    }
}
