//! The grayguard filter routing inside a real Envoy (two workers, so two Wasm VMs) in front
//! of two scripted upstreams: device type, time window, first match, sticky and drawn
//! shares, header stripping, the decision header and the metrics.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use grayguard_client::exposition::value as metric;
use grayguard_contract::headers;
use grayguard_contract::metrics::filter as names;
use grayguard_e2e::envoy::Envoy;
use grayguard_e2e::http;
use grayguard_e2e::upstream::{Upstream, front_envoy};
use grayguard_e2e::wait::eventually;

/// Sends one request (on a new connection) and returns (decision header, upstream name).
fn ask(e: &Envoy, headers: &[(&str, &str)]) -> (String, String) {
    let r = http::get_with(&e.url("/infer"), headers).expect("envoy answers");
    assert_eq!(r.status, 200, "{}", r.text());
    (
        r.header(headers::DECISION).unwrap_or("<none>").to_string(),
        r.text(),
    )
}

/// The local minute of the day now, in a zone `offset_min` east of UTC.
fn local_minute(offset_min: i64) -> i64 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    (secs / 60 + offset_min).rem_euclid(1440)
}

fn hhmm(minute: i64) -> String {
    let m = minute.rem_euclid(1440);
    format!("{:02}:{:02}", m / 60, m % 60)
}

/// The two-digit hour of a minute of the day.
fn hour(minute: i64) -> String {
    format!("{:02}", minute.rem_euclid(1440) / 60)
}

/// Two scripted upstreams and a front Envoy whose rules cover every way of matching: a
/// window around the current time in +05:30, one later today, a sticky 30 % share by regex,
/// two rules on one prefix, and a drawn 50 % share on two headers.
struct Routing {
    stable: Upstream,
    gray: Upstream,
    envoy: Envoy,
    /// The local minute (+05:30) when the configuration was written.
    now: i64,
}

impl Routing {
    fn start() -> Routing {
        let stable = Upstream::start("v9-prod");
        let gray = Upstream::start("v10-gray");
        let now = local_minute(330);
        let config = format!(
            r#"{{
        "stable": "v9-prod", "gray": "v10-gray", "utc_offset": "+05:30", "time_header_upstream": true,
        "rules": [
          {{ "name": "now-cranes", "headers": {{ "x-device-type": {{ "exact": "crane-camera" }} }},
             "hours": {{ "from": "{}", "to": "{}" }} }},
          {{ "name": "later-lidars", "headers": {{ "x-device-type": {{ "exact": "crane-lidar" }} }},
             "hours": {{ "from": "{}", "to": "{}" }} }},
          {{ "name": "gates", "headers": {{ "x-device-type": {{ "regex": "gate-[0-9]+" }} }},
             "percent": 30, "sticky_header": "x-device-id" }},
          {{ "name": "docks-first", "headers": {{ "x-device-type": {{ "prefix": "dock-" }} }} }},
          {{ "name": "docks-second", "headers": {{ "x-device-type": {{ "prefix": "dock-" }} }} }},
          {{ "name": "drawn", "headers": {{ "x-device-type": {{ "exact": "forklift" }},
                                            "x-site": {{ "exact": "north" }} }},
             "percent": 50 }}
        ]}}"#,
            hhmm(now - 120),
            hhmm(now + 120),
            hhmm(now + 180),
            hhmm(now + 300),
        );
        let envoy = front_envoy(&config, &stable, &gray);
        Routing {
            stable,
            gray,
            envoy,
            now,
        }
    }
}

#[test]
fn device_type_and_hours_choose_the_route() {
    let t = Routing::start();
    assert_eq!(
        ask(&t.envoy, &[(headers::DEVICE_TYPE, "crane-camera")]),
        ("gray; rule=now-cranes".into(), "v10-gray".into())
    );
    let seen = t.gray.last().unwrap();
    assert_eq!(seen.header(headers::ROUTE), Some("v10-gray"));
    let stamped = seen.header(headers::TIME_OF_DAY).unwrap().to_string();
    assert!(
        [hour(t.now), hour(t.now + 60)].contains(&stamped),
        "x-time-of-day {stamped}, local minute {}",
        t.now
    );
    assert_eq!(
        ask(&t.envoy, &[(headers::DEVICE_TYPE, "crane-lidar")]),
        ("stable; no-rule".into(), "v9-prod".into()),
        "outside its hours"
    );
    assert_eq!(
        ask(&t.envoy, &[(headers::DEVICE_TYPE, "conveyor")]),
        ("stable; no-rule".into(), "v9-prod".into())
    );
}

#[test]
fn the_first_matching_rule_wins_and_a_regex_matches_the_whole_value() {
    let t = Routing::start();
    assert_eq!(
        ask(&t.envoy, &[(headers::DEVICE_TYPE, "dock-7")]).0,
        "gray; rule=docks-first"
    );
    assert_eq!(
        ask(&t.envoy, &[(headers::DEVICE_TYPE, "gate-12x")]).0,
        "stable; no-rule"
    );
}

#[test]
fn a_sticky_share_keeps_each_device_on_its_side_and_every_request_is_counted() {
    let t = Routing::start();
    // 30 % of 500 devices, each always on the same side.
    let mut sides = Vec::new();
    for i in 0..500 {
        let id = format!("gate-cam-{i:04}");
        let (decision, body) = ask(
            &t.envoy,
            &[(headers::DEVICE_TYPE, "gate-3"), (headers::DEVICE_ID, &id)],
        );
        match decision.as_str() {
            "gray; rule=gates" => assert_eq!(body, "v10-gray"),
            "stable; rule=gates; percent" => assert_eq!(body, "v9-prod"),
            other => panic!("unexpected decision {other}"),
        }
        sides.push(body);
    }
    let share = sides.iter().filter(|b| *b == "v10-gray").count() as f64 / 5.0;
    assert!((share - 30.0).abs() <= 6.0, "sticky share {share} %");
    for (i, side) in sides.iter().enumerate().take(60) {
        let id = format!("gate-cam-{i:04}");
        let (_, body) = ask(
            &t.envoy,
            &[(headers::DEVICE_TYPE, "gate-3"), (headers::DEVICE_ID, &id)],
        );
        assert_eq!(&body, side, "device {id} switched sides");
    }

    // Counters are flushed on the filter's tick: every request routed once, none shed.
    let sent = f64::from(500 + 60);
    let text = eventually(
        "the filter counts every request",
        Duration::from_secs(5),
        || {
            let text = t.envoy.prometheus();
            let routed = [names::ROUTED_GRAY, names::ROUTED_STABLE]
                .map(|n| metric(&text, n).unwrap_or(0.0))
                .iter()
                .sum::<f64>();
            if routed >= sent {
                Ok(text)
            } else {
                Err(format!("{routed} of {sent} routed"))
            }
        },
    );
    let gray_n = metric(&text, names::ROUTED_GRAY).unwrap();
    let stable_n = metric(&text, names::ROUTED_STABLE).unwrap();
    assert_eq!(gray_n + stable_n, sent);
    assert_eq!(gray_n, t.gray.count() as f64);
    assert_eq!(stable_n, t.stable.count() as f64);
    for name in [
        "grayguard_shed_requests",
        "grayguard_probe_requests",
        "grayguard_breaches_flag",
        "grayguard_breaches_latency",
        "grayguard_breaches_box_count",
        "grayguard_breaches_error_rate",
        "grayguard_breaches_consecutive_failures",
        "grayguard_malformed_signals",
        "grayguard_breaker_state",
        "grayguard_breakers_open",
    ] {
        assert_eq!(metric(&text, name), Some(0.0), "{name}");
    }
}

#[test]
fn without_a_sticky_header_each_request_is_drawn() {
    let t = Routing::start();
    let drawn: Vec<String> = (0..200)
        .map(|_| {
            ask(
                &t.envoy,
                &[(headers::DEVICE_TYPE, "forklift"), ("x-site", "north")],
            )
            .1
        })
        .collect();
    let share = drawn.iter().filter(|b| *b == "v10-gray").count() as f64 / 2.0;
    assert!((share - 50.0).abs() <= 15.0, "drawn share {share} %");
}

#[test]
fn spoofed_route_decision_breach_and_time_headers_are_stripped_and_counted() {
    let t = Routing::start();
    // They have no effect and never reach upstream.
    let spoof = [
        (headers::DEVICE_TYPE, "conveyor"),
        (headers::ROUTE, "v10-gray"),
        (headers::DECISION, "gray; rule=mine"),
        (headers::BREACH, "latency"),
        (headers::TIME_OF_DAY, "03"),
    ];
    assert_eq!(
        ask(&t.envoy, &spoof),
        ("stable; no-rule".into(), "v9-prod".into())
    );
    let seen = t.stable.last().unwrap();
    assert_eq!(seen.header(headers::ROUTE), Some("v9-prod"));
    assert_eq!(seen.header(headers::DECISION), None);
    assert_eq!(seen.header(headers::BREACH), None);
    assert_ne!(
        seen.header(headers::TIME_OF_DAY),
        Some("03"),
        "client clock not trusted"
    );
    // A client's breach header does not shed gray traffic.
    for _ in 0..5 {
        let flagged = [
            (headers::DEVICE_TYPE, "crane-camera"),
            (headers::BREACH, "box_count"),
        ];
        assert_eq!(ask(&t.envoy, &flagged).0, "gray; rule=now-cranes");
    }
    // Counted on the filter's tick.
    t.envoy.wait_metric(
        names::SPOOFED_HEADERS_STRIPPED,
        Duration::from_secs(5),
        |v| v >= 8.0,
    );
}

#[test]
fn trusted_time_header_picks_the_window_and_wraps_midnight() {
    let stable = Upstream::start("v9-prod");
    let gray = Upstream::start("v10-gray");
    let config = r#"{
        "stable": "v9-prod", "gray": "v10-gray", "utc_offset": "+08:00", "trust_time_header": true, "time_header_upstream": true,
        "route_header": "x-canary-route",
        "rules": [ { "name": "night-cranes", "headers": { "x-device-type": { "exact": "crane-camera" } },
                     "hours": { "from": "22:00", "to": "02:00" } } ]
    }"#;
    let e = front_envoy(config, &stable, &gray);
    let cases = [
        ("21:59", "stable; no-rule", "21"),
        ("22", "gray; rule=night-cranes", "22"),
        ("23:30", "gray; rule=night-cranes", "23"),
        ("00", "gray; rule=night-cranes", "00"),
        ("01:59", "gray; rule=night-cranes", "01"),
        ("02:00", "stable; no-rule", "02"),
        ("12", "stable; no-rule", "12"),
    ];
    for (time, want, stamped) in cases {
        let (decision, body) = ask(
            &e,
            &[
                (headers::DEVICE_TYPE, "crane-camera"),
                (headers::TIME_OF_DAY, time),
            ],
        );
        assert_eq!(decision, want, "at {time}");
        let up = if body == "v10-gray" { &gray } else { &stable };
        assert_eq!(
            up.last().unwrap().header(headers::TIME_OF_DAY),
            Some(stamped)
        );
    }
    // A malformed client time falls back to the proxy clock (+08:00).
    let (_, body) = ask(
        &e,
        &[
            (headers::DEVICE_TYPE, "crane-camera"),
            (headers::TIME_OF_DAY, "25:99"),
        ],
    );
    let up = if body == "v10-gray" { &gray } else { &stable };
    let now = local_minute(480);
    let stamped = up
        .last()
        .unwrap()
        .header(headers::TIME_OF_DAY)
        .unwrap()
        .to_string();
    assert!([hour(now), hour(now + 60)].contains(&stamped), "{stamped}");
}
