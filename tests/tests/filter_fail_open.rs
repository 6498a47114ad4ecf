//! The filter never takes the gateway down: a panic inside the Wasm VM, with the failure
//! policy the shipped configurations use (`FAIL_OPEN`), fails the one request that crashed
//! it and leaves every later one flowing — to stable, since without the filter nothing sets
//! the route header. (`FAIL_RELOAD` would bring the filter back after a second, but fails
//! every request of that second: measured, and the reason the configurations fail open.)
//! A configuration the filter refuses is refused as a whole before it serves (see
//! `filter_config`). Uses a build of the real filter with the `crash-test` feature, which
//! panics on a request carrying `x-grayguard-test-panic`.

use grayguard_contract::headers;
use grayguard_e2e::envoy::{Cluster, Envoy, Filter, Options};
use grayguard_e2e::http;
use grayguard_e2e::paths;
use grayguard_e2e::upstream::Upstream;

const CONFIG: &str = r#"{ "stable": "v9-prod", "gray": "v10-gray",
  "rules": [ { "name": "cranes", "headers": { "x-device-type": { "exact": "crane-camera" } } } ] }"#;

fn front(config: &str, policy: &str, stable: &Upstream, gray: &Upstream) -> Envoy {
    let mut opts = Options::new(
        Filter::Wasm {
            module: paths::crash_test_wasm(),
            config: config.into(),
        },
        Cluster::new("v9-prod", stable.addr),
        Cluster::new("v10-gray", gray.addr),
    );
    opts.failure_policy = Some(policy.into());
    opts.concurrency = 1;
    Envoy::start(&opts)
}

fn ask(e: &Envoy, extra: &[(&str, &str)]) -> http::Response {
    let mut h = vec![(headers::DEVICE_TYPE, "crane-camera")];
    h.extend_from_slice(extra);
    http::get_with(&e.url("/infer"), &h).expect("envoy answers")
}

#[test]
fn a_panic_in_the_vm_fails_open_to_stable() {
    let stable = Upstream::start("v9-prod");
    let gray = Upstream::start("v10-gray");
    let e = front(CONFIG, "FAIL_OPEN", &stable, &gray);
    let before = ask(&e, &[]);
    assert_eq!((before.status, before.text().as_str()), (200, "v10-gray"));
    assert_eq!(before.header(headers::DECISION), Some("gray; rule=cranes"));

    let crash = ask(&e, &[("x-grayguard-test-panic", "1")]);
    eprintln!("the crashing request: {} {}", crash.status, crash.text());
    assert!(e.log().contains("grayguard crash test"), "the VM did panic");
    // Every request after the crash is answered, by stable, without the filter.
    for _ in 0..20 {
        let r = ask(&e, &[]);
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.text(), "v9-prod");
        assert_eq!(r.header(headers::DECISION), None);
    }
}
