//! The Istio side of the gray fallback (mesh-config/routing/gray-fallback.yaml) checked by the
//! real Envoy, since Istio's schema cannot look inside an EnvoyFilter's patch values: the
//! patches are applied, as istiod applies ADD and MERGE, to an Istio-shaped gateway
//! configuration (the shipped VirtualService's two routes under Istio's route and subset
//! cluster names, with its timeouts and retries), `envoy --mode validate` accepts the result,
//! and requests through it show the fallback: a failing or hung gray is answered by stable on
//! the retry, a healthy gray by gray, and the stable route is never retried onto gray.
//!
//! Test code may panic freely: a failed expectation is a failed test.

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use grayguard_client::exposition as prom;
use grayguard_contract::headers;
use grayguard_e2e::process::{Proc, free_port};
use grayguard_e2e::upstream::Upstream;
use grayguard_e2e::{http, paths};
use serde_json::{Value, json};

const HOST: &str = "yolo-detector.yolo.svc.cluster.local";

/// Istio's name for a subset's cluster on the model port.
fn subset_cluster(subset: &str) -> String {
    format!("outbound|8080|{subset}|{HOST}")
}

/// The documents of a YAML file, as JSON (through the project's Python).
fn yaml(path: &str) -> Vec<Value> {
    let out = Command::new(paths::python())
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps(list(yaml.safe_load_all(open(sys.argv[1])))))",
        ])
        .arg(paths::root().join(path))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A VirtualService duration (`5s`, `1.5s`) as Envoy's protobuf JSON takes it.
fn duration(v: &Value) -> String {
    v.as_str().expect("a duration").to_string()
}

/// The route Istio writes for the VirtualService's http route `name` going to `subset`: its
/// timeout, and its retries with Istio's previous-hosts predicate.
fn istio_route(vs: &Value, name: &str, subset: &str, header: Option<(&str, &str)>) -> Value {
    let route = vs["spec"]["http"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("no http route {name:?} in the VirtualService"));
    let retries = &route["retries"];
    let mut matcher = json!({ "prefix": "/" });
    if let Some((h, v)) = header {
        matcher["headers"] = json!([{ "name": h, "string_match": { "exact": v } }]);
    }
    json!({
        "name": name,
        "match": matcher,
        "route": {
            "cluster": subset_cluster(subset),
            "timeout": duration(&route["timeout"]),
            "retry_policy": {
                "retry_on": retries["retryOn"],
                "num_retries": retries["attempts"],
                "per_try_timeout": duration(&retries["perTryTimeout"]),
                "retry_host_predicate": [{
                    "name": "envoy.retry_host_predicates.previous_hosts",
                    "typed_config": { "@type": "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate" },
                }],
                "host_selection_retry_max_attempts": 5,
            },
        },
    })
}

/// Merges `patch` into `into` as a protobuf merge does: messages field by field, repeated
/// fields appended, anything else replaced.
fn merge(into: &mut Value, patch: &Value) {
    match (into, patch) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (Value::Array(a), Value::Array(b)) => a.extend(b.iter().cloned()),
        (slot, v) => *slot = v.clone(),
    }
}

/// The gateway's configuration with the EnvoyFilter's patches applied.
fn patched_gateway(port: u16, admin: u16, gray: &Upstream, stable: &Upstream) -> Value {
    let vs = yaml("mesh-config/routing/virtual-service.yaml").remove(0);
    let mut vhost = json!({
        "name": "yolo.example.com:80",
        "domains": ["*"],
        "routes": [
            istio_route(&vs, "gray", "v10-gray", Some((headers::ROUTE, "v10-gray"))),
            istio_route(&vs, "stable", "v9-prod", None),
        ],
    });
    let cluster = |subset: &str, at: &Upstream| {
        json!({
            "name": subset_cluster(subset),
            "type": "STATIC",
            "connect_timeout": "1s",
            "load_assignment": {
                "cluster_name": subset_cluster(subset),
                "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address": { "socket_address": {
                    "address": "127.0.0.1", "port_value": at.port() } } } }] }],
            },
        })
    };
    let mut clusters = vec![cluster("v10-gray", gray), cluster("v9-prod", stable)];

    let filter = yaml("mesh-config/routing/gray-fallback.yaml").remove(0);
    assert_eq!(filter["kind"], "EnvoyFilter");
    let patches = filter["spec"]["configPatches"].as_array().unwrap();
    assert_eq!(patches.len(), 4, "{patches:#?}");
    for p in patches {
        assert_eq!(p["match"]["context"], "GATEWAY");
        let value = &p["patch"]["value"];
        match (
            p["applyTo"].as_str().unwrap(),
            p["patch"]["operation"].as_str().unwrap(),
        ) {
            ("CLUSTER", "ADD") => clusters.push(value.clone()),
            ("CLUSTER", "MERGE") => {
                let m = &p["match"]["cluster"];
                assert_eq!(
                    (&m["service"], &m["portNumber"]),
                    (&json!(HOST), &json!(8080)),
                    "{m}"
                );
                let name = subset_cluster(m["subset"].as_str().unwrap());
                let cluster = clusters
                    .iter_mut()
                    .find(|c| c["name"] == name.as_str())
                    .unwrap_or_else(|| {
                        panic!("the patch names cluster {name}, which Istio would not write")
                    });
                merge(cluster, value);
            }
            ("HTTP_ROUTE", "MERGE") => {
                let name = &p["match"]["routeConfiguration"]["vhost"]["route"]["name"];
                let routes = vhost["routes"].as_array_mut().unwrap();
                let route = routes
                    .iter_mut()
                    .find(|r| &r["name"] == name)
                    .unwrap_or_else(|| {
                        panic!("the patch names route {name}, which Istio would not write")
                    });
                merge(route, value);
            }
            ("VIRTUAL_HOST", "MERGE") => {
                let name = &p["match"]["routeConfiguration"]["vhost"]["name"];
                assert_eq!(name, &vhost["name"], "the gateway's virtual host");
                merge(&mut vhost, value);
            }
            other => panic!("unexpected patch {other:?}"),
        }
    }
    json!({
        "admin": { "address": { "socket_address": { "address": "127.0.0.1", "port_value": admin } } },
        "static_resources": {
            "listeners": [{
                "name": "0.0.0.0_8080",
                "address": { "socket_address": { "address": "127.0.0.1", "port_value": port } },
                "filter_chains": [{ "filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": "outbound_0.0.0.0_8080",
                        "route_config": { "name": "http.8080", "virtual_hosts": [vhost] },
                        "http_filters": [{
                            "name": "envoy.filters.http.router",
                            "typed_config": { "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" },
                        }],
                    },
                }] }],
            }],
            "clusters": clusters,
        },
    })
}

fn envoy(config: &std::path::Path) -> Command {
    let mut cmd = Command::new(paths::envoy());
    cmd.arg("-c")
        .arg(config)
        .args(["--disable-hot-restart", "--log-level", "warn"]);
    cmd
}

/// A request on `route` (the filter's route header; `None`: the stable route).
fn send(port: u16, route: Option<&str>) -> http::Response {
    let mut h = vec![("content-type", "image/jpeg")];
    if let Some(r) = route {
        h.push((headers::ROUTE, r));
    }
    http::post(&format!("http://127.0.0.1:{port}/infer"), &h, b"frame").unwrap()
}

#[test]
fn the_istio_patch_sends_a_failed_gray_attempt_to_stable_and_never_stable_to_gray() {
    let gray = Upstream::start("v10-gray");
    let stable = Upstream::start("v9-prod");
    let dir = tempfile::tempdir().unwrap();
    let (port, admin) = (free_port(), free_port());
    let config = dir.path().join("gateway.json");
    let bootstrap = patched_gateway(port, admin, &gray, &stable);
    std::fs::write(&config, serde_json::to_string_pretty(&bootstrap).unwrap()).unwrap();
    // The gray subset's connections hold a whole body the gray route keeps for its retry
    // (a hung gray that reads nothing must not stall the upload: faults.rs, on the local
    // configuration).
    let resources = &bootstrap["static_resources"];
    let gray_cluster = resources["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == subset_cluster("v10-gray").as_str())
        .unwrap();
    let vhost = &resources["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]["route_config"]
        ["virtual_hosts"][0];
    let gray_route = vhost["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "gray")
        .unwrap();
    assert_eq!(
        gray_cluster["per_connection_buffer_limit_bytes"], gray_route["request_body_buffer_limit"],
        "{gray_cluster:#}"
    );
    assert!(gray_route["request_body_buffer_limit"].as_u64() >= Some(1 << 20));

    let out = envoy(&config)
        .args(["--mode", "validate"])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.contains("OK"),
        "Envoy refuses the patched gateway:\n{text}"
    );

    let mut proc = Proc::spawn("envoy", envoy(&config), dir.path());
    proc.wait_for_status(
        &format!("http://127.0.0.1:{admin}/ready"),
        200,
        Duration::from_secs(30),
    );
    proc.wait_for_port(
        SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(30),
    );
    let answered = |r: &http::Response| {
        (
            r.status,
            r.header("x-upstream").map(str::to_string),
            r.header(headers::ENVOY_ATTEMPT_COUNT).map(str::to_string),
        )
    };
    let by = |name: &str, attempts: &str| (200, Some(name.to_string()), Some(attempts.into()));

    // A healthy gray answers its route.
    assert_eq!(answered(&send(port, Some("v10-gray"))), by("v10-gray", "1"));
    // A failing gray: the retry is stable's.
    gray.set_status(503);
    assert_eq!(answered(&send(port, Some("v10-gray"))), by("v9-prod", "2"));
    // A hung gray: stable is asked after the per-try timeout and answers first.
    gray.set_status(200);
    gray.set_delay(Duration::from_secs(4));
    let sent = Instant::now();
    assert_eq!(answered(&send(port, Some("v10-gray"))), by("v9-prod", "2"));
    assert!(sent.elapsed() >= Duration::from_millis(1500));
    gray.set_delay(Duration::ZERO);
    // The stable route is never retried onto gray: stable's 503 reaches the client.
    let before = gray.count();
    stable.set_status(503);
    let r = send(port, None);
    assert_eq!((r.status, r.header("x-upstream")), (503, Some("v9-prod")));
    assert_eq!(gray.count(), before, "a stable request reached gray");

    let stats = http::get(&format!("http://127.0.0.1:{admin}/stats/prometheus"))
        .unwrap()
        .text();
    let retries = prom::value(
        &stats,
        "envoy_cluster_upstream_rq_retry{envoy_cluster_name=\"grayguard-gray-fallback\"}",
    );
    assert_eq!(retries, Some(2.0), "the two gray fallbacks");
}
