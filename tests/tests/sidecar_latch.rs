//! The latch, sidecar side, against the real binary, model and photos: gateways latch the
//! gray workload through its control listener (with a bearer token from the environment
//! twin), every `/infer` reply then carries `latched:<trigger>@<rule>` in `x-canary-breach`
//! except a half-open probe's, a clear drops only latches older than the clearing gateway's
//! healthy evidence, latches lapse on their own, the public port refuses latch paths, and
//! every call is counted and logged. Each test starts its own sidecar ([`latch_sidecar`]).

use std::time::Duration;

use grayguard_contract::latch::{PATH, Request, WORKLOAD_TOKEN_ENV};
use grayguard_contract::{Flag, Trigger, headers};

use grayguard_client::exposition;
use grayguard_e2e::http::{self, Response};
use grayguard_e2e::paths;
use grayguard_e2e::sidecar::{Sidecar, SidecarBuilder};
use grayguard_e2e::wait::eventually;

const TOKEN: &str = "e2e-latch-token-7f3a9c1d";

fn latch(rule: &str, trigger: Trigger, for_ms: u64, gateway: &str) -> String {
    Request::Latch {
        rule: rule.into(),
        trigger,
        for_ms,
        gateway: gateway.into(),
    }
    .render()
}

fn clear(rule: &str, healthy_for_ms: u64, gateway: &str) -> String {
    Request::Clear {
        rule: rule.into(),
        healthy_for_ms,
        gateway: gateway.into(),
    }
    .render()
}

fn post(url: &str, body: &str, token: Option<&str>) -> Response {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let mut h = vec![("content-type", "application/x-www-form-urlencoded")];
    if let Some(b) = &bearer {
        h.push(("authorization", b.as_str()));
    }
    http::post(url, &h, body.as_bytes()).expect("control call answered")
}

/// `POST /infer` of person.jpg, as a half-open probe or not.
fn infer(sc: &Sidecar, probe: bool) -> Response {
    let image = std::fs::read(paths::image("person.jpg")).unwrap();
    let mut h = vec![("content-type", "image/jpeg")];
    if probe {
        h.push((headers::PROBE, "1"));
    }
    let r = http::post(&sc.url("/infer"), &h, &image).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    r
}

fn flag(r: &Response) -> Option<Flag> {
    r.header(headers::BREACH).map(Flag::parse)
}

fn metric(sc: &Sidecar, series: &str) -> f64 {
    exposition::value(&sc.metrics(), series).unwrap_or_else(|| panic!("no {series}"))
}

/// Each `(series, value)` of the sidecar's `/metrics` now.
fn assert_counted(sc: &Sidecar, want: &[(&str, f64)]) {
    let text = sc.metrics();
    for (series, want) in want {
        assert_eq!(
            exposition::value(&text, series),
            Some(*want),
            "{series}\n{text}"
        );
    }
}

/// Each line in the sidecar's log.
fn assert_logged(sc: &Sidecar, lines: &[&str]) {
    let log = sc.proc.log();
    for line in lines {
        assert!(log.contains(line), "no {line:?} in\n{log}");
    }
}

/// A gray sidecar with its control listener, requiring [`TOKEN`] (from the environment twin),
/// latches of at most a minute, its latency watchdog out of the way.
fn latch_sidecar() -> Sidecar {
    SidecarBuilder::new("v-latch")
        .control()
        .env(WORKLOAD_TOKEN_ENV, TOKEN)
        .flag("--latch-max-s", "60")
        .flag("--watchdog-latency-budget-ms", "60000")
        .start()
}

/// gw-1 latches the crane cameras' rule on its box count for 30 s.
fn latch_by_gw1(sc: &Sidecar) -> Response {
    let r = post(
        &sc.control_url(PATH),
        &latch("crane-cameras", Trigger::BoxCount, 30_000, "gw-1"),
        Some(TOKEN),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    r
}

fn bearer() -> String {
    format!("Bearer {TOKEN}")
}

#[test]
fn only_the_token_on_the_control_port_pulls_the_latch_and_the_token_stays_secret() {
    let sc = latch_sidecar();
    let control = sc.control_url(PATH);
    assert_logged(
        &sc,
        &["control listener: /grayguard/latch (bearer token required)"],
    );
    let body = latch("crane-cameras", Trigger::BoxCount, 30_000, "gw-1");
    for token in [None, Some("e2e-latch-token-7f3a9c1e")] {
        let r = post(&control, &body, token);
        assert_eq!(r.status, 401, "{}", r.text());
        assert_eq!(r.json()["kind"], "unauthorized");
        assert!(r.header("www-authenticate").is_some());
    }
    assert_eq!(http::get(&control).unwrap().status, 401);
    // The public port does not serve latch paths, token or not.
    let r = post(&sc.url(PATH), &body, Some(TOKEN));
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(r.json()["kind"], "not_found");
    assert!(flag(&infer(&sc, false)).is_none(), "nothing latched");
    // The control port serves nothing but the latch.
    assert_eq!(http::get(&sc.control_url("/metrics")).unwrap().status, 404);
    let r = post(&sc.control_url("/infer"), &body, Some(TOKEN));
    assert_eq!(r.status, 404, "{}", r.text());
    // A body outside the grammar.
    let r = post(&control, "action=latch&rule=crane-cameras", Some(TOKEN));
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["kind"], "bad_request");

    assert_counted(
        &sc,
        &[
            (
                "grayguard_sidecar_latch_requests_total{action=\"unknown\",result=\"refused\"}",
                4.0,
            ),
            (
                "grayguard_sidecar_latch_refused_total{reason=\"bad_token\"}",
                3.0,
            ),
            (
                "grayguard_sidecar_latch_refused_total{reason=\"bad_request\"}",
                1.0,
            ),
            (
                "grayguard_sidecar_latch_refused_total{reason=\"public_listener\"}",
                1.0,
            ),
            ("grayguard_sidecar_latches", 0.0),
        ],
    );
    assert!(
        !sc.proc.log().contains(TOKEN),
        "the token never reaches the log"
    );
    let info = http::get(&sc.url("/info")).unwrap().json();
    assert_eq!(info["flags"]["control-token"], "<redacted>");
}

#[test]
fn a_latched_workload_flags_every_reply_but_a_half_open_probes() {
    let sc = latch_sidecar();
    let control = sc.control_url(PATH);
    let r = latch_by_gw1(&sc);
    assert_eq!(r.json()["applied"], "latched");
    let f = flag(&infer(&sc, false)).expect("latched reply flagged");
    assert_eq!(
        f.latched,
        vec![(Trigger::BoxCount, "crane-cameras".to_string())]
    );
    assert!(
        !f.first_hand(),
        "a latch alone is not the workload's own breach"
    );
    assert!(
        flag(&infer(&sc, true)).is_none(),
        "a half-open probe bypasses the latch"
    );
    let nope = http::get(&sc.url("/nope")).unwrap();
    assert_eq!(nope.status, 404);
    assert!(flag(&nope).is_some(), "error replies carry the latch too");
    let listed = http::get_with(&control, &[("authorization", &bearer())]).unwrap();
    assert_eq!(listed.status, 200);
    let live = listed.json()["latches"].clone();
    assert_eq!(live.as_array().unwrap().len(), 1, "{live}");
    assert_eq!(live[0]["gateway"], "gw-1");
    assert_eq!(live[0]["trigger"], "box_count");
    assert_eq!(metric(&sc, "grayguard_sidecar_latches"), 1.0);

    assert_counted(
        &sc,
        &[
            (
                "grayguard_sidecar_latch_requests_total{action=\"latch\",result=\"ok\"}",
                1.0,
            ),
            (
                "grayguard_sidecar_latch_requests_total{action=\"list\",result=\"ok\"}",
                1.0,
            ),
        ],
    );
    assert_logged(
        &sc,
        &["latch: gateway gw-1 latched rule crane-cameras on box_count for 30000 ms"],
    );
}

#[test]
fn a_clear_drops_only_latches_older_than_the_clearing_gateways_healthy_probes() {
    let sc = latch_sidecar();
    let control = sc.control_url(PATH);
    latch_by_gw1(&sc);
    // gw-2's probes have been healthy for a minute, since before gw-1 latched: gw-1 saw a
    // fresher breach, so its latch stays.
    let r = post(
        &control,
        &clear("crane-cameras", 60_000, "gw-2"),
        Some(TOKEN),
    );
    assert_eq!(
        (r.status, r.json()["cleared"].as_u64()),
        (200, Some(0)),
        "{}",
        r.text()
    );
    assert!(flag(&infer(&sc, false)).is_some());
    // Healthy for the last 100 ms, and the latch is older: it goes. Time itself must pass
    // here: the latch has to be older than those 100 ms.
    std::thread::sleep(Duration::from_millis(300));
    let r = post(&control, &clear("crane-cameras", 100, "gw-2"), Some(TOKEN));
    assert_eq!(r.json()["cleared"], 1, "{}", r.text());
    assert!(flag(&infer(&sc, false)).is_none(), "cleared");

    assert_counted(
        &sc,
        &[
            (
                "grayguard_sidecar_latch_requests_total{action=\"clear\",result=\"ok\"}",
                2.0,
            ),
            ("grayguard_sidecar_latches", 0.0),
        ],
    );
    assert_logged(
        &sc,
        &[
            "latch: gateway gw-2 cleared rule crane-cameras: 0 latch(es)",
            "latch: gateway gw-2 cleared rule crane-cameras: 1 latch(es) set before its 100 ms of healthy probes",
        ],
    );
}

#[test]
fn a_latch_nobody_clears_lapses_on_its_own() {
    let sc = latch_sidecar();
    let r = post(
        &sc.control_url(PATH),
        &latch("gates", Trigger::Latency, 1_500, "gw-3"),
        Some(TOKEN),
    );
    assert_eq!(r.status, 200);
    let nope = http::get(&sc.url("/nope")).unwrap();
    assert_eq!(nope.header(headers::BREACH), Some("latched:latency@gates"));
    eventually("the latch lapses", Duration::from_secs(20), || {
        let r = http::get(&sc.url("/nope")).unwrap();
        r.header(headers::BREACH)
            .map_or(Ok(()), |b| Err(format!("{}: {b}", headers::BREACH)))
    });

    assert_counted(
        &sc,
        &[
            (
                "grayguard_sidecar_latch_requests_total{action=\"latch\",result=\"ok\"}",
                1.0,
            ),
            ("grayguard_sidecar_latches", 0.0),
        ],
    );
    assert_logged(
        &sc,
        &["latch: gateway gw-3 latched rule gates on latency for 1500 ms"],
    );
}
