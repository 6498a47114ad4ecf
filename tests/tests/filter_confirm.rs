//! Confirm mode inside a real Envoy (two workers) with a public and an operator listener:
//! a box-count regression raises an alert instead of shedding (gray keeps serving and the
//! decision says so), the alert gauge carries the signed one-click link, the link is
//! refused on the public listener and when tampered with, following it on the operator
//! listener sheds the rule and holds it (once: a second click changes nothing), with the
//! person in the incident record; the flag still sheds at once without anyone.

use std::time::Duration;

use grayguard_client::exposition;
use grayguard_contract::headers;
use grayguard_contract::metrics::filter as names;
use grayguard_contract::operator::SECRET_ENV;
use grayguard_contract::record::{Event, Incident};
use grayguard_contract::{Decision, Trigger};
use grayguard_e2e::envoy::{Cluster, Envoy, Filter, Options};
use grayguard_e2e::http;
use grayguard_e2e::process::free_port;
use grayguard_e2e::upstream::Upstream;
use grayguard_e2e::wait::Wait;

fn config(operator_port: u16) -> String {
    format!(
        r#"{{
  "stable": "v9-prod", "gray": "v10-gray",
  "operator": {{ "port": {operator_port}, "secret_env": "{SECRET_ENV}", "identity_header": "x-auth-user" }},
  "rules": [
    {{ "name": "cranes", "headers": {{ "x-device-type": {{ "exact": "crane-camera" }} }}, "action": "confirm" }},
    {{ "name": "gates",  "headers": {{ "x-device-type": {{ "exact": "gate-camera" }} }} }}
  ],
  "breach": {{
    "box_count": {{ "header": "x-box-count", "min_samples": 10 }},
    "shed_for_s": 600, "probe_percent": 0
  }}
}}"#
    )
}

fn decision(e: &Envoy, kind: &str) -> String {
    let r = http::get_with(&e.url("/infer"), &[(headers::DEVICE_TYPE, kind)]).unwrap();
    r.header(headers::DECISION).unwrap().to_string()
}

/// The `confirm` label of the alert gauge that is at 1.
fn alert_link(e: &Envoy) -> Option<String> {
    exposition::samples(&e.prometheus(), names::ALERT)
        .into_iter()
        .find(|s| s.value == 1.0)
        .and_then(|s| s.labels.get("confirm").cloned())
}

/// Two scripted upstreams answering 100 ms and 5 boxes, and a front Envoy in confirm mode for
/// the crane cameras (the gate cameras' rule sheds), with its operator listener.
struct Confirm {
    gray: Upstream,
    envoy: Envoy,
    _stable: Upstream,
}

impl Confirm {
    fn start() -> Confirm {
        let stable = Upstream::start("v9-prod");
        let gray = Upstream::start("v10-gray");
        stable.set_signals("100", "5");
        gray.set_signals("100", "5");
        let op_port = free_port();
        let mut opts = Options::new(
            Filter::grayguard(&config(op_port)),
            Cluster::new("v9-prod", stable.addr),
            Cluster::new("v10-gray", gray.addr),
        );
        opts.operator_port = Some(op_port);
        opts.vm_env = vec![(SECRET_ENV.into(), "an-operator-secret-for-tests".into())];
        let envoy = Envoy::start(&opts);
        Confirm {
            gray,
            envoy,
            _stable: stable,
        }
    }

    /// Healthy first, then gray floods boxes until the crane cameras' rule alerts (it never
    /// sheds by itself); the link of the alert.
    fn alerting(&self) -> String {
        let e = &self.envoy;
        for _ in 0..20 {
            assert_eq!(decision(e, "crane-camera"), "gray; rule=cranes");
            decision(e, "dock-camera");
        }
        self.gray.set_signals("100", "30");
        Wait::new("the box-count alert", Duration::from_secs(20))
            .every(Duration::from_millis(20))
            .until(|| {
                let d = decision(e, "crane-camera");
                decision(e, "dock-camera");
                let shed = Decision::parse(&d).map(|d| d.shed());
                assert_eq!(shed, Ok(None), "confirm mode shed by itself: {d}");
                match alert_link(e) {
                    Some(link) if d == "gray; rule=cranes; alert=box_count" => Ok(link),
                    link => Err(format!("decision {d}, link {link:?}")),
                }
            })
    }

    /// `GET /grayguard/confirm?{query}` on the operator listener, as `who`.
    fn confirm(&self, query: &str, who: &str) -> http::Response {
        let url = self
            .envoy
            .operator_url(&format!("/grayguard/confirm?{query}"));
        http::get_with(&url, &[("x-auth-user", who)]).unwrap()
    }
}

#[test]
fn a_regression_raises_an_alert_with_a_signed_link_refused_anywhere_but_the_operator_listener() {
    let t = Confirm::start();
    let e = &t.envoy;
    let link = t.alerting();
    assert!(
        link.starts_with("rule=cranes&trigger=box_count&exp="),
        "{link}"
    );
    let alerts = e.incident_records();
    assert_eq!(alerts[0].event, Event::AlertStart);
    assert_eq!(alerts[0].confirm.as_deref(), Some(link.as_str()));

    // Refused on the public listener, refused when edited; gray still serves meanwhile.
    let public = http::get(&e.url(&format!("/grayguard/confirm?{link}"))).unwrap();
    assert_eq!(public.status, 403, "{}", public.text());
    let edited = link.replace("trigger=box_count", "trigger=latency");
    let forged = http::get(&e.operator_url(&format!("/grayguard/confirm?{edited}"))).unwrap();
    assert_eq!(forged.status, 403, "{}", forged.text());
    assert!(forged.text().contains("bad signature"));
    assert_eq!(
        decision(e, "crane-camera"),
        "gray; rule=cranes; alert=box_count"
    );
    assert!(
        t.gray
            .seen()
            .iter()
            .all(|s| !s.path.starts_with("/grayguard/"))
    );
    let refused = e.wait_metric(names::OPERATOR_REFUSED, Duration::from_secs(3), |v| {
        v >= 2.0
    });
    assert_eq!(refused, 2.0);
}

#[test]
fn a_person_confirms_the_shed_with_the_signed_link_once() {
    let t = Confirm::start();
    let e = &t.envoy;
    let link = t.alerting();

    // Confirmed by a person: shed and held at once; a second click changes nothing.
    let ok = t.confirm(&link, "oncall@example.com");
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(ok.json()["result"], "held");
    assert_eq!(
        decision(e, "crane-camera"),
        "stable; rule=cranes; shed=box_count"
    );
    let again = t.confirm(&link, "oncall@example.com");
    assert_eq!(
        (again.status, again.json()["result"].as_str()),
        (200, Some("already_held"))
    );
    let all = e.incident_records();
    let shed: Vec<&Incident> = all.iter().filter(|i| i.event == Event::ShedStart).collect();
    assert_eq!(shed.len(), 1, "{all:#?}");
    assert_eq!(shed[0].confirmed_by.as_deref(), Some("oncall@example.com"));
    assert_eq!(shed[0].trigger, Trigger::BoxCount);

    let confirmed = e.wait_metric(names::CONFIRMATIONS, Duration::from_secs(3), |v| v >= 1.0);
    assert_eq!(confirmed, 1.0);
    assert_eq!(
        e.metric(&format!("{}{{rule=\"cranes\"}}", names::RULE_BREAKER_STATE)),
        Some(1.0)
    );
    assert!(alert_link(e).is_none(), "the alert gauge went back to 0");
    // Held until a person releases it: the held gauge carries the release link.
    let held = exposition::samples(&e.prometheus(), names::HELD)
        .into_iter()
        .find(|s| s.value == 1.0)
        .and_then(|s| s.labels.get("release").cloned());
    assert!(
        held.as_deref()
            .is_some_and(|l| l.starts_with("rule=cranes&trigger=box_count&exp=")),
        "{held:?}"
    );
}

#[test]
fn the_flag_sheds_a_confirm_mode_rules_neighbour_without_anyone() {
    let t = Confirm::start();
    let e = &t.envoy;
    t.gray.set_flag(Some("latency"));
    assert_eq!(decision(e, "gate-camera"), "gray; rule=gates");
    assert_eq!(decision(e, "gate-camera"), "stable; rule=gates; shed=flag");
}
