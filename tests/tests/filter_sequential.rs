//! The sequential detector inside a real Envoy (two workers, two Wasm VMs sharing one
//! evidence record), against scripted upstreams that draw every answer from a
//! distribution: a gray version as good as stable (A/A) is never shed over a few thousand
//! gray responses, while a −40 % box count, a ×1.6 latency and a failure-rate rise that
//! start after a few hundred healthy gray replies are each shed by the right trigger soon
//! after they start (never before), with the change point, the effect since it and its
//! bound in the incident record, and the per-rule gauges.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::simulated;

use grayguard_client::exposition;
use grayguard_contract::headers;
use grayguard_contract::metrics::filter as names;
use grayguard_contract::record::{DetectorKind, Event, Evidence, Incident};
use grayguard_contract::{Decision, Note, Trigger};
use grayguard_e2e::http;
use grayguard_e2e::upstream::{Seen, Upstream, front_envoy};
use grayguard_filter::simulate::Side;

const CONFIG: &str = r#"{
  "stable": "v9-prod", "gray": "v10-gray",
  "rules": [
    { "name": "aa",    "headers": { "x-device-type": { "exact": "cam-aa" } } },
    { "name": "boxes", "headers": { "x-device-type": { "exact": "cam-boxes" } } },
    { "name": "slow",  "headers": { "x-device-type": { "exact": "cam-slow" } } },
    { "name": "fail",  "headers": { "x-device-type": { "exact": "cam-fail" } } }
  ],
  "breach": {
    "detector": "sequential", "arl": 1000000,
    "latency":   { "header": "x-inference-latency-ms", "max_ratio": 1.25, "min_samples": 10 },
    "box_count": { "header": "x-box-count", "max_shift": 0.25, "min_samples": 10 },
    "error_rate": { "max_excess": 0.02, "min_samples": 10 },
    "shed_for_s": 600, "probe_percent": 0
  }
}"#;

/// Gray responses the A/A cohort must get through unshed.
const AA_GRAY: usize = 2_000;

/// Healthy gray replies each regressing cohort gets before its regression starts.
const ONSET: usize = 300;

/// What gray does for each cohort.
fn gray_side(device: Option<&str>) -> Side {
    let s = Side::STABLE;
    match device {
        Some("cam-boxes") => s.boxes_times(0.6),
        Some("cam-slow") => s.latency_times(1.6),
        Some("cam-fail") => s.failing(0.08),
        _ => s,
    }
}

/// Per cohort: gray responses served, and the gray responses served when it was first
/// shed.
#[derive(Default)]
struct Cohort {
    gray: AtomicUsize,
    shed_after: AtomicUsize,
    shed: AtomicBool,
}

#[test]
fn a_a_is_never_shed_and_regressions_after_a_healthy_stretch_are() {
    let stable = Upstream::start("v9-prod");
    let gray = Upstream::start("v10-gray");
    stable.set_sampler(Some(Arc::new(|n, _: &Seen| {
        simulated::draw(Side::STABLE, 0x5eed_0000 + n, 0.0)
    })));
    // Each cohort's gray answers are healthy for its first ONSET replies, then regress.
    let answered: Arc<[AtomicUsize; 4]> = Arc::new(Default::default());
    gray.set_sampler(Some(Arc::new(move |n, seen: &Seen| {
        let device = seen.header(headers::DEVICE_TYPE);
        let i = ["cam-aa", "cam-boxes", "cam-slow", "cam-fail"]
            .iter()
            .position(|d| Some(*d) == device)
            .unwrap_or(0);
        let k = answered[i].fetch_add(1, Ordering::SeqCst);
        let side = if k < ONSET {
            Side::STABLE
        } else {
            gray_side(device)
        };
        simulated::draw(side, 0x9a11_0000 + n, 0.0)
    })));
    let e = front_envoy(CONFIG, &stable, &gray);
    let cohorts = ["cam-aa", "cam-boxes", "cam-slow", "cam-fail"];
    let state: Vec<Cohort> = cohorts.iter().map(|_| Cohort::default()).collect();
    // The load's bound in time; in count, the A/A cohort's gray replies.
    let deadline = Instant::now() + Duration::from_secs(240);

    // Four client threads; each round sends one request per unshed cohort and as many
    // stable (dock) requests, so the control sees as much traffic as gray does.
    std::thread::scope(|s| {
        for t in 0..4 {
            let (e, state) = (&e, &state);
            s.spawn(move || {
                while state[0].gray.load(Ordering::SeqCst) < AA_GRAY {
                    assert!(Instant::now() < deadline, "traffic did not finish in time");
                    for (i, kind) in cohorts.iter().enumerate() {
                        if i > 0 && state[i].shed.load(Ordering::SeqCst) && t > 0 {
                            continue;
                        }
                        let r = http::get_with(&e.url("/infer"), &[(headers::DEVICE_TYPE, kind)])
                            .expect("envoy answers");
                        let text = r.header(headers::DECISION).expect("decision header");
                        let d = Decision::parse(text).expect("decision follows the grammar");
                        if let Some(Note::Shed(_)) = d.note {
                            if !state[i].shed.swap(true, Ordering::SeqCst) {
                                let n = state[i].gray.load(Ordering::SeqCst);
                                state[i].shed_after.store(n, Ordering::SeqCst);
                            }
                        } else if r.header("x-upstream") == Some("v10-gray") {
                            state[i].gray.fetch_add(1, Ordering::SeqCst);
                        }
                        let dock = http::get_with(
                            &e.url("/infer"),
                            &[(headers::DEVICE_TYPE, "dock-camera")],
                        )
                        .expect("envoy answers");
                        assert_eq!(dock.header("x-upstream"), Some("v9-prod"));
                    }
                }
            });
        }
    });

    let n = |i: usize| state[i].shed_after.load(Ordering::SeqCst);
    let shed = |i: usize| state[i].shed.load(Ordering::SeqCst);
    eprintln!(
        "aa gray responses {}, shed: boxes after {} ({}), slow after {} ({}), fail after {} ({})",
        state[0].gray.load(Ordering::SeqCst),
        n(1),
        shed(1),
        n(2),
        shed(2),
        n(3),
        shed(3)
    );
    assert!(
        !shed(0),
        "the A/A cohort was shed: {:#?}",
        e.incident_records()
    );
    // Never before the change, and soon after it (gray replies since the onset; the
    // bench's medians are ~150, ~80 and ~500).
    for (i, name, most) in [
        (1, "box count −40 %", 500),
        (2, "latency ×1.6", 300),
        (3, "failures 8 %", 1_600),
    ] {
        assert!(shed(i), "{name}: not shed");
        assert!(
            n(i) >= ONSET,
            "{name}: shed before the change, after {}",
            n(i)
        );
        assert!(
            n(i) - ONSET <= most,
            "{name}: shed {} after the change",
            n(i) - ONSET
        );
    }

    // The incident records name the trigger and carry the evidence.
    let all = e.incident_records();
    let start = |rule: &str| -> &Incident {
        let v: Vec<&Incident> = all
            .iter()
            .filter(|i| i.rule == rule && i.event == Event::ShedStart)
            .collect();
        assert_eq!(v.len(), 1, "{rule}: {all:#?}");
        v[0]
    };
    let crossed = |i: &'_ Incident, test: &str| -> Evidence {
        i.evidence
            .iter()
            .find(|f| f.test == test && f.crossed)
            .unwrap_or_else(|| panic!("no crossed {test}: {i:#?}"))
            .clone()
    };
    let boxes = start("boxes");
    assert_eq!(
        (boxes.trigger, boxes.detector),
        (Trigger::BoxCount, DetectorKind::Sequential)
    );
    let f = crossed(boxes, "box_count_below");
    assert!(f.log_e >= f.threshold, "{f:?}");
    // The change point is found near the onset, and the same evidence bounds the shift
    // since then beyond the margin (−25 %: at the moment of the shed, just beyond it).
    let change = f.change_at;
    assert!(
        (change - ONSET as f64).abs() <= 80.0,
        "change point {change}: {f:?}"
    );
    assert!(f.at_most.unwrap() <= -0.25, "{f:?}");
    assert!(f.estimate.unwrap() < -0.25, "{f:?}");
    let slow = start("slow");
    assert_eq!(slow.trigger, Trigger::Latency);
    let f = crossed(slow, "latency_ratio");
    assert!(f.at_least.unwrap() >= 1.25, "{f:?}");
    let change = f.change_at;
    assert!(
        (change - ONSET as f64).abs() <= 40.0,
        "change point {change}: {f:?}"
    );
    let fail = start("fail");
    assert_eq!(fail.trigger, Trigger::ErrorRate);
    crossed(fail, "error_rate_excess");
    assert!(all.iter().all(|i| i.rule != "aa"));

    // The per-rule gauges, with their labels.
    let text = e.prometheus();
    let gauge = |name: &str, labels: &[(&str, &str)]| {
        let set: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        let selector = format!("{name}{{{}}}", set.join(","));
        exposition::value(&text, &selector).unwrap_or_else(|| panic!("{selector} missing"))
    };
    let t = Trigger::BoxCount.as_str();
    assert!(gauge(names::EVIDENCE_PCT, &[("rule", "boxes"), ("trigger", t)]) >= 100.0);
    for trigger in ["latency", "box_count", "error_rate"] {
        let v = gauge(names::EVIDENCE_PCT, &[("rule", "aa"), ("trigger", trigger)]);
        assert!(v < 100.0, "aa {trigger}: {v}");
    }
    assert_eq!(gauge(names::RULE_BREAKER_STATE, &[("rule", "boxes")]), 1.0);
    assert_eq!(gauge(names::RULE_BREAKER_STATE, &[("rule", "aa")]), 0.0);
}
