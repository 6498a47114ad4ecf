//! Breach shedding inside a real Envoy with two workers (two Wasm VMs sharing state):
//! the in-band flag sheds the very next request, box-count, latency, error-rate and
//! consecutive-failure triggers shed once `min_samples` is reached, half-open probes close
//! or re-open the breaker, malformed signals are ignored and counted, dry run never sheds,
//! and every start and end of shedding leaves one JSON incident line in the log.

use grayguard_contract::headers;
use grayguard_contract::metrics::filter as names;
use std::time::{Duration, Instant};

use grayguard_client::exposition::value as metric;
use grayguard_e2e::envoy::{Cluster, Envoy, Filter, Options};
use grayguard_e2e::http;
use grayguard_e2e::upstream::Upstream;
use serde_json::Value;

/// Sync interval of the filter in these tests (publication and evaluation tick), ms.
const SYNC_MS: u64 = 100;

fn start(config: &str, stable: &Upstream, gray: &Upstream) -> Envoy {
    Envoy::start(&Options::new(
        Filter::grayguard(config),
        Cluster::new("v9-prod", stable.addr),
        Cluster::new("v10-gray", gray.addr),
    ))
}

/// One request from a device of `kind` (new connection each time, so both workers serve):
/// (decision, upstream that answered).
fn ask(e: &Envoy, kind: &str) -> (String, String) {
    let r =
        http::get_with(&e.url("/infer"), &[(headers::DEVICE_TYPE, kind)]).expect("envoy answers");
    (
        r.header(headers::DECISION).unwrap_or("<none>").to_string(),
        r.text(),
    )
}

/// Asks until the decision equals `want`, failing after `limit` requests or 10 s.
fn ask_until(e: &Envoy, kind: &str, want: &str, limit: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    for _ in 0..limit {
        let (d, _) = ask(e, kind);
        seen.push(d.clone());
        if d == want {
            return seen;
        }
        assert!(
            Instant::now() < deadline,
            "no {want:?} within 10 s: {seen:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("no {want:?} within {limit} requests: {seen:?}");
}

/// Waits long enough for every worker to publish and evaluate at least once.
fn settle() {
    std::thread::sleep(Duration::from_millis(4 * SYNC_MS));
}

/// The incident records logged so far.
fn incidents(e: &Envoy) -> Vec<Value> {
    e.log()
        .lines()
        .filter(|l| l.contains("\"grayguard\":\"incident\""))
        .map(|l| {
            let json = &l[l.find('{').expect("json in line")..];
            serde_json::from_str(json).unwrap_or_else(|err| panic!("{err}: {l}"))
        })
        .collect()
}

fn incident<'a>(all: &'a [Value], event: &str, rule: &str, trigger: &str) -> Vec<&'a Value> {
    all.iter()
        .filter(|v| v["event"] == event && v["rule"] == rule && v["trigger"] == trigger)
        .collect()
}

/// Sends `n` requests of `kind`, each of which must go gray.
fn gray_n(e: &Envoy, kind: &str, n: usize) {
    for i in 0..n {
        let (d, body) = ask(e, kind);
        assert_eq!(body, "v10-gray", "request {i} of {kind}: {d}");
    }
}

const CONFIG: &str = r#"{
  "stable": "v9-prod", "gray": "v10-gray",
  "rules": [
    { "name": "flagged", "headers": { "x-device-type": { "exact": "cam-flag" } } },
    { "name": "boxes",   "headers": { "x-device-type": { "exact": "cam-box" } } },
    { "name": "slow",    "headers": { "x-device-type": { "exact": "cam-slow" } } },
    { "name": "streak",  "headers": { "x-device-type": { "exact": "cam-streak" } } },
    { "name": "errors",  "headers": { "x-device-type": { "exact": "cam-err" } } },
    { "name": "noisy",   "headers": { "x-device-type": { "exact": "cam-noisy" } } }
  ],
  "breach": {
    "detector": "window",
    "latency":   { "header": "x-inference-latency-ms", "max_mean_ms": 100, "window_s": 5, "min_samples": 6 },
    "box_count": { "header": "x-box-count", "max_sigma": 3, "window_s": 5, "min_samples": 6 },
    "error_rate": { "max": 0.4, "window_s": 5, "min_samples": 6 },
    "consecutive_failures": 4,
    "shed_for_s": 1.5,
    "probe_percent": 50,
    "probe_successes": 3,
    "scope": "rule"
  },
  "sync_ms": 100
}"#;

#[test]
fn breaches_shed_and_half_open_recovers() {
    let stable = Upstream::start("v9-prod");
    let gray = Upstream::start("v10-gray");
    stable.set_signals("20", "3");
    gray.set_signals("20", "3");
    let e = start(CONFIG, &stable, &gray);

    // ---- the in-band flag sheds the very next request, on any worker
    gray_n(&e, "cam-flag", 3);
    gray.set_flag(Some("box_count"));
    assert_eq!(
        ask(&e, "cam-flag"),
        ("gray; rule=flagged".into(), "v10-gray".into())
    );
    let flagged_at = Instant::now();
    gray.set_flag(None);
    for _ in 0..6 {
        assert_eq!(
            ask(&e, "cam-flag"),
            ("stable; rule=flagged; shed=flag".into(), "v9-prod".into())
        );
    }
    // Other cohorts keep their gray traffic (scope: rule).
    gray_n(&e, "cam-noisy", 2);

    // ---- half-open: probes, then closed again after three healthy probes
    std::thread::sleep(Duration::from_millis(1_600).saturating_sub(flagged_at.elapsed()));
    let seen = ask_until(&e, "cam-flag", "gray; rule=flagged", 200);
    let probes = seen
        .iter()
        .filter(|d| *d == "gray; rule=flagged; probe")
        .count();
    assert_eq!(probes, 3, "{seen:?}");
    assert!(
        seen.iter()
            .all(|d| d.ends_with("probe") || d.ends_with("shed=flag") || d == "gray; rule=flagged"),
        "{seen:?}"
    );

    // ---- a bad probe opens the breaker again
    gray.set_flag(Some("latency"));
    assert_eq!(ask(&e, "cam-flag").0, "gray; rule=flagged");
    std::thread::sleep(Duration::from_millis(1_600));
    ask_until(&e, "cam-flag", "gray; rule=flagged; probe", 100);
    gray.set_flag(None);
    assert_eq!(ask(&e, "cam-flag").0, "stable; rule=flagged; shed=flag");

    // ---- malformed signals are counted and ignored (no failure, no sample, no shed)
    gray.set_signals("NaN", "-3");
    gray_n(&e, "cam-noisy", 4);
    gray.set_signals("1e9", "many");
    gray_n(&e, "cam-noisy", 4);
    gray.set_signals("20", "3");
    settle();
    assert_eq!(ask(&e, "cam-noisy").0, "gray; rule=noisy");
    e.wait_metric("grayguard_malformed_signals", Duration::from_secs(3), |v| {
        v >= 16.0
    });

    // ---- box count: learned stable baseline (3 boxes), gray floods 30 boxes
    for _ in 0..10 {
        assert_eq!(ask(&e, "conveyor").0, "stable; no-rule");
    }
    gray.set_signals("20", "30");
    gray_n(&e, "cam-box", 5);
    settle();
    assert_eq!(
        ask(&e, "cam-box").0,
        "gray; rule=boxes",
        "5 samples < min_samples"
    );
    let sixth = Instant::now();
    ask_until(&e, "cam-box", "stable; rule=boxes; shed=box_count", 100);
    eprintln!("box-count breach shed after {:?}", sixth.elapsed());

    // ---- latency: gray mean 500 ms > 100 ms
    gray.set_signals("500", "3");
    gray_n(&e, "cam-slow", 5);
    settle();
    assert_eq!(
        ask(&e, "cam-slow").0,
        "gray; rule=slow",
        "5 samples < min_samples"
    );
    ask_until(&e, "cam-slow", "stable; rule=slow; shed=latency", 100);
    gray.set_signals("20", "3");

    // ---- consecutive failures: 3 in a row do nothing, the 4th sheds
    gray.set_status(503);
    for _ in 0..3 {
        let (d, _) = ask(&e, "cam-streak");
        assert_eq!(d, "gray; rule=streak");
    }
    settle();
    assert_eq!(
        ask(&e, "cam-streak").0,
        "gray; rule=streak",
        "3 failures < 4"
    );
    ask_until(
        &e,
        "cam-streak",
        "stable; rule=streak; shed=consecutive_failures",
        50,
    );

    // ---- error rate: every other response fails (never 4 in a row), 50 % > 40 %
    for i in 0..5 {
        gray.set_status(if i % 2 == 0 { 500 } else { 200 });
        assert_eq!(ask(&e, "cam-err").0, "gray; rule=errors");
    }
    settle();
    gray.set_status(200);
    assert_eq!(
        ask(&e, "cam-err").0,
        "gray; rule=errors",
        "5 samples < min_samples"
    );
    // Six samples, three failed: the evaluator's next tick sheds. No request is sent
    // meanwhile (successes would lower the rate; failures could make a streak).
    e.wait_metric(
        "grayguard_breaches_error_rate",
        Duration::from_secs(5),
        |v| v >= 1.0,
    );
    assert_eq!(ask(&e, "cam-err").0, "stable; rule=errors; shed=error_rate");

    // Both workers (each with its own Wasm VM) served the requests above.
    let per_worker = e.connections_per_worker();
    assert_eq!(per_worker.len(), 2, "{per_worker:?}");
    assert!(per_worker.iter().all(|&n| n >= 10), "{per_worker:?}");

    // ---- metrics and incident records
    let text = e.prometheus();
    let at_least = |name: &str, min: f64| {
        let v = metric(&text, name).unwrap_or_else(|| panic!("{name} missing"));
        assert!(v >= min, "{name} = {v}, want ≥ {min}");
    };
    at_least("grayguard_breaches_flag", 3.0);
    at_least("grayguard_breaches_box_count", 1.0);
    at_least("grayguard_breaches_latency", 1.0);
    at_least("grayguard_breaches_consecutive_failures", 1.0);
    at_least("grayguard_shed_requests", 10.0);
    at_least("grayguard_probe_requests", 4.0);
    at_least("grayguard_breakers_open", 4.0);
    at_least("grayguard_breaker_state", 1.0);
    at_least("grayguard_gray_failures", 7.0);
    // The signal sums and counts (aggregated per VM and handed over on the tick).
    for name in [
        names::GRAY_BOX_SAMPLES,
        names::STABLE_BOX_SAMPLES,
        names::GRAY_LATENCY_SAMPLES,
        names::GRAY_BOXES,
        names::GRAY_LATENCY_US,
    ] {
        e.wait_metric(name, Duration::from_secs(3), |v| v > 0.0);
    }

    let all = incidents(&e);
    let starts = incident(&all, "shed_start", "flagged", "flag");
    // The first flag, the second one, and the flagged probe.
    assert_eq!(starts.len(), 3, "{all:#?}");
    assert_eq!(starts[0]["flag_reason"], "box_count");
    assert_eq!(starts[0]["after_probe"], false);
    assert_eq!(starts[1]["after_probe"], false);
    assert_eq!(starts[2]["after_probe"], true);
    assert_eq!(starts[2]["flag_reason"], "latency");
    assert_eq!(incident(&all, "shed_end", "flagged", "flag").len(), 1);
    let boxes = incident(&all, "shed_start", "boxes", "box_count");
    assert_eq!(boxes.len(), 1, "{all:#?}");
    let w = &boxes[0]["window"];
    assert!(w["box_mean"].as_f64().unwrap() > 20.0, "{w}");
    assert_eq!(w["baseline_mean"], 3.0, "{w}");
    assert!(w["box_samples"].as_u64().unwrap() >= 6, "{w}");
    let slow = incident(&all, "shed_start", "slow", "latency");
    assert_eq!(slow.len(), 1, "{all:#?}");
    assert!(slow[0]["window"]["latency_mean_ms"].as_f64().unwrap() > 100.0);
    assert_eq!(
        incident(&all, "shed_start", "streak", "consecutive_failures").len(),
        1
    );
    let errs = incident(&all, "shed_start", "errors", "error_rate");
    assert_eq!(errs.len(), 1, "{all:#?}");
    assert!(errs[0]["window"]["error_rate"].as_f64().unwrap() > 0.4);
    assert!(incident(&all, "shed_start", "noisy", "flag").is_empty());
}

#[test]
fn dry_run_never_sheds_and_scope_all_covers_every_rule() {
    let stable = Upstream::start("v9-prod");
    let gray = Upstream::start("v10-gray");
    gray.set_signals("20", "3");
    let config = r#"{
      "stable": "v9-prod", "gray": "v10-gray",
      "rules": [
        { "name": "cranes", "headers": { "x-device-type": { "exact": "crane-camera" } } },
        { "name": "gates",  "headers": { "x-device-type": { "exact": "gate-camera" } } }
      ],
      "breach": { "shed_for_s": 60, "scope": "all", "dry_run": true }
    }"#;
    let e = start(config, &stable, &gray);
    gray_n(&e, "crane-camera", 2);
    gray.set_flag(Some("memory"));
    assert_eq!(ask(&e, "crane-camera").0, "gray; rule=cranes");
    gray.set_flag(None);
    for _ in 0..5 {
        assert_eq!(
            ask(&e, "crane-camera"),
            ("gray; rule=cranes; dry-run=flag".into(), "v10-gray".into())
        );
        assert_eq!(
            ask(&e, "gate-camera"),
            ("gray; rule=gates; dry-run=flag".into(), "v10-gray".into())
        );
    }
    e.wait_metric("grayguard_dry_run_requests", Duration::from_secs(3), |v| {
        v >= 10.0
    });
    let text = e.prometheus();
    assert_eq!(metric(&text, "grayguard_breaches_flag"), Some(1.0));
    assert_eq!(metric(&text, "grayguard_shed_requests"), Some(0.0));
    assert_eq!(metric(&text, "grayguard_routed_stable"), Some(0.0));
    let all = incidents(&e);
    assert_eq!(all.len(), 1, "{all:#?}");
    assert_eq!(all[0]["event"], "shed_start");
    assert_eq!(all[0]["rule"], "*");
    assert_eq!(all[0]["scope"], "all");
    assert_eq!(all[0]["dry_run"], true);
    assert_eq!(all[0]["flag_reason"], "memory");
}

#[test]
fn learned_baseline_outlives_a_quiet_stable_cohort() {
    // Stable traffic teaches the baseline, then stops (every device left is in the gray
    // cohort, or stable replies are slow and sparse): the box-count window of stable
    // replies empties, yet a flood of gray boxes must still shed.
    let stable = Upstream::start("v9-prod");
    let gray = Upstream::start("v10-gray");
    stable.set_signals("20", "3");
    gray.set_signals("20", "30");
    let config = r#"{
      "stable": "v9-prod", "gray": "v10-gray",
      "rules": [ { "name": "cranes", "headers": { "x-device-type": { "exact": "crane-camera" } } } ],
      "breach": {
        "detector": "window",
        "box_count": { "header": "x-box-count", "max_sigma": 3, "window_s": 1, "min_samples": 6 },
        "shed_for_s": 60
      },
      "sync_ms": 100
    }"#;
    let e = start(config, &stable, &gray);
    for _ in 0..8 {
        assert_eq!(ask(&e, "dock-camera").0, "stable; no-rule");
    }
    settle();
    // Longer than the window: no stable reply is in it any more.
    std::thread::sleep(Duration::from_millis(1_200));
    gray_n(&e, "crane-camera", 5);
    ask_until(
        &e,
        "crane-camera",
        "stable; rule=cranes; shed=box_count",
        100,
    );

    let all = incidents(&e);
    let starts = incident(&all, "shed_start", "cranes", "box_count");
    assert_eq!(starts.len(), 1, "{all:#?}");
    let w = &starts[0]["window"];
    assert_eq!(w["baseline_mean"], 3.0, "{w}");
    // The last window that still held `min_samples` of the eight stable replies.
    let learned_from = w["baseline_samples"].as_u64().unwrap();
    assert!((6..=8).contains(&learned_from), "{w}");
    assert_eq!(w["baseline_held"], true, "{w}");
}
