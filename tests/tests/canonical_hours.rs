//! The canonical rule's hours, as shipped: crane cameras go to gray from 00:00 to 06:00 in
//! the site's zone (`utc_offset`). The local mesh's front Envoy (`mesh-config/local/envoy.yaml`
//! as it is, ports moved to scripted upstreams) pins the hour its filter sees to the night
//! unless a client says another, so `make run`, `make demo` and `make soak` work at any hour;
//! a cluster's configuration (the same, without `trust_time_header`) routes by the proxy's
//! clock and ignores a client's hour.

use std::time::{SystemTime, UNIX_EPOCH};

use grayguard_contract::headers;
use grayguard_e2e::envoy::Envoy;
use grayguard_e2e::http;
use grayguard_e2e::mesh::local_plugin_config;
use grayguard_e2e::process::free_port;
use grayguard_e2e::upstream::{Upstream, front_envoy};
use serde_json::Value;

const GRAY: &str = "gray; rule=crane-cameras";
const STABLE: &str = "stable; no-rule";

/// The decision for a crane camera (or `device_type`) with `extra` headers, through `url`.
fn decision(url: &str, device_type: &str, extra: &[(&str, &str)]) -> String {
    let mut h = vec![
        (headers::DEVICE_TYPE, device_type),
        (headers::DEVICE_ID, "crane-001"),
    ];
    h.extend_from_slice(extra);
    let r = http::get_with(url, &h).expect("envoy answers");
    assert_eq!(r.status, 200, "{}", r.text());
    r.header(headers::DECISION).unwrap_or("<none>").to_string()
}

#[test]
fn the_local_mesh_tries_gray_on_crane_cameras_at_night_whatever_the_clock() {
    let stable = Upstream::start("v9-prod");
    let gray = Upstream::start("v10-gray");
    // The latch's control port: nothing listens there, and no shed calls it.
    let envoy = Envoy::start_shipped_local(stable.port(), gray.port(), free_port(), 1);
    let url = envoy.url("/infer");

    // No hour given: the pinned night, at any time of the day this runs.
    assert_eq!(decision(&url, "crane-camera", &[]), GRAY);
    assert_eq!(
        gray.last().unwrap().header(headers::TIME_OF_DAY),
        Some("02")
    );
    assert_eq!(decision(&url, "dock-camera", &[]), STABLE);
    // A client's hour is the rule's window, [00:00, 06:00).
    for (hour, want) in [
        ("00:00", GRAY),
        ("05:59", GRAY),
        ("06:00", STABLE),
        ("14", STABLE),
        ("23:59", STABLE),
    ] {
        assert_eq!(
            decision(&url, "crane-camera", &[(headers::TIME_OF_DAY, hour)]),
            want,
            "at {hour}"
        );
    }
}

/// The hour now in the site's zone (`utc_offset` of the canonical configuration, `+HH:MM`).
fn site_hour(config: &Value, at: SystemTime) -> u64 {
    let offset = config["utc_offset"].as_str().unwrap();
    let sign: i64 = if offset.starts_with('-') { -1 } else { 1 };
    let (h, m) = offset[1..].split_once(':').unwrap();
    let east_s = sign * (h.parse::<i64>().unwrap() * 3600 + m.parse::<i64>().unwrap() * 60);
    let secs = at.duration_since(UNIX_EPOCH).unwrap().as_secs() as i64 + east_s;
    (secs.rem_euclid(86_400) / 3600) as u64
}

#[test]
fn a_clusters_configuration_routes_by_the_site_clock_and_ignores_a_clients_hour() {
    // The cluster's configuration: the local one without the trusted hour (mesh_config checks
    // that the WasmPlugin's and the EnvoyFilter's are exactly that).
    let mut config: Value = serde_json::from_str(&local_plugin_config()).unwrap();
    config["trust_time_header"] = Value::Bool(false);
    let stable = Upstream::start("v9-prod");
    let gray = Upstream::start("v10-gray");
    let envoy = front_envoy(&config.to_string(), &stable, &gray);
    let url = envoy.url("/infer");
    for claimed in ["02", "14"] {
        let before = site_hour(&config, SystemTime::now());
        let got = decision(&url, "crane-camera", &[(headers::TIME_OF_DAY, claimed)]);
        let after = site_hour(&config, SystemTime::now());
        let expected = |h: u64| if h < 6 { GRAY } else { STABLE };
        assert!(
            got == expected(before) || got == expected(after),
            "a client claiming {claimed}:00 at site hour {before}: {got}"
        );
    }
}
