//! The canonical rule's hours, as shipped: crane cameras go to gray from 00:00 to 06:00 in
//! the site's zone (`utc_offset`). The local mesh's front Envoy (`mesh-config/local/envoy.yaml`
//! as it is, ports moved to scripted upstreams) pins the hour its filter sees to the night
//! unless a client says another, so `make run`, `make demo` and `make soak` work at any hour;
//! a cluster's configuration (the same, without `trust_time_header`) routes by the proxy's
//! clock and ignores a client's hour.

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use grayguard_contract::headers;
use grayguard_contract::latch::TOKEN_ENV;
use grayguard_contract::operator::SECRET_ENV;
use grayguard_e2e::envoy::TEST_LATCH_TOKEN;
use grayguard_e2e::mesh::local_plugin_config;
use grayguard_e2e::process::{Proc, free_port};
use grayguard_e2e::upstream::{Upstream, front_envoy};
use grayguard_e2e::{http, paths};
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

/// The shipped local front Envoy, every port moved to a free one, in front of `stable` and
/// `gray`; killed on drop.
fn shipped_local_envoy(stable: &Upstream, gray: &Upstream) -> (Proc, u16) {
    let dir = tempfile::tempdir().unwrap();
    let (port, admin, operator, control) = (free_port(), free_port(), free_port(), free_port());
    let mut config =
        std::fs::read_to_string(paths::root().join("mesh-config/local/envoy.yaml")).unwrap();
    for (from, to) in [
        ("port_value: 10000 }", format!("port_value: {port} }}")),
        ("port_value: 9901 }", format!("port_value: {admin} }}")),
        ("port_value: 10100 }", format!("port_value: {operator} }}")),
        ("\"port\": 10100,", format!("\"port\": {operator},")),
        (
            "port_value: 8081 }",
            format!("port_value: {} }}", stable.port()),
        ),
        (
            "port_value: 8082 }",
            format!("port_value: {} }}", gray.port()),
        ),
        ("port_value: 9092 }", format!("port_value: {control} }}")),
        (
            "filename: target/grayguard_filter.wasm",
            format!("filename: {}", paths::wasm().display()),
        ),
    ] {
        assert_eq!(
            config.matches(from).count(),
            1,
            "mesh-config/local/envoy.yaml: expected {from:?} once"
        );
        config = config.replace(from, &to);
    }
    let path = dir.path().join("envoy.yaml");
    std::fs::write(&path, config).unwrap();
    let mut cmd = Command::new(paths::envoy());
    cmd.arg("-c")
        .arg(&path)
        .args(["--disable-hot-restart", "--concurrency", "1"])
        .args(["--log-level", "warn", "--service-node", "gw-0"])
        .env(SECRET_ENV, "grayguard-test-operator-secret")
        .env(TOKEN_ENV, TEST_LATCH_TOKEN);
    let mut proc = Proc::spawn("envoy", cmd, dir.path()).own_dir(dir);
    let timeout = Duration::from_secs(30);
    proc.wait_for_status(&format!("http://127.0.0.1:{admin}/ready"), 200, timeout);
    proc.wait_for_port(SocketAddr::from(([127, 0, 0, 1], port)), timeout);
    (proc, port)
}

#[test]
fn the_local_mesh_tries_gray_on_crane_cameras_at_night_whatever_the_clock() {
    let stable = Upstream::start("v9-prod");
    let gray = Upstream::start("v10-gray");
    let (_envoy, port) = shipped_local_envoy(&stable, &gray);
    let url = format!("http://127.0.0.1:{port}/infer");

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
