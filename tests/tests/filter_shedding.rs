//! Breach shedding inside a real Envoy with two workers (two Wasm VMs sharing state):
//! the in-band flag sheds the very next request, box-count, latency, error-rate and
//! consecutive-failure triggers shed once `min_samples` is reached, half-open probes close
//! or re-open the breaker, malformed signals are ignored and counted, dry run never sheds,
//! and every start and end of shedding leaves one JSON incident line in the log.

use grayguard_contract::headers;
use grayguard_contract::metrics::filter as names;
use std::time::{Duration, Instant};

use grayguard_client::exposition::value as metric;
use grayguard_contract::record::{Event, Incident, Scope};
use grayguard_contract::{Decision, Note, Trigger};
use grayguard_e2e::envoy::Envoy;
use grayguard_e2e::http;
use grayguard_e2e::upstream::{Upstream, front_envoy};
use grayguard_e2e::wait::Wait;

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

/// Asks until the decision equals `want`, failing after `limit` requests or 10 s; returns
/// every decision seen.
fn ask_until(e: &Envoy, kind: &str, want: &str, limit: usize) -> Vec<String> {
    let mut seen = Vec::new();
    Wait::new(format!("{kind}: {want:?}"), Duration::from_secs(10))
        .every(Duration::from_millis(20))
        .until(|| {
            assert!(
                seen.len() < limit,
                "no {want:?} within {limit} requests: {seen:?}"
            );
            let (d, _) = ask(e, kind);
            seen.push(d.clone());
            if d == want {
                Ok(())
            } else {
                Err(format!("{seen:?}"))
            }
        });
    seen
}

/// Waits until the filter has handed `counter` over to Envoy at `n` or more. The counters
/// are handed over at the end of the tick that published the same requests' evidence and
/// evaluated it, so the filter has judged everything they count.
fn published(e: &Envoy, counter: &str, n: f64) {
    e.wait_metric(counter, Duration::from_secs(5), |v| v >= n);
}

/// Waits until `rule`'s breaker reads half-open: its shed period is over and it probes.
fn half_open(e: &Envoy, rule: &str) {
    let gauge = format!("{}{{rule=\"{rule}\"}}", names::RULE_BREAKER_STATE);
    e.wait_metric(&gauge, Duration::from_secs(10), |v| v == 2.0);
}

fn incident<'a>(
    all: &'a [Incident],
    event: Event,
    rule: &str,
    trigger: Trigger,
) -> Vec<&'a Incident> {
    all.iter()
        .filter(|i| i.event == event && i.rule == rule && i.trigger == trigger)
        .collect()
}

/// Sends `n` requests of `kind`, each of which must go gray.
fn gray_n(e: &Envoy, kind: &str, n: usize) {
    for i in 0..n {
        let (d, body) = ask(e, kind);
        assert_eq!(body, "v10-gray", "request {i} of {kind}: {d}");
    }
}

/// The window detector with every trigger, one rule per trigger (and a `noisy` one that
/// must never shed), rule scope; shed for `shed_for_s`, then half of each cohort probes.
fn config(shed_for_s: f64) -> String {
    format!(
        r#"{{
  "stable": "v9-prod", "gray": "v10-gray",
  "rules": [
    {{ "name": "flagged", "headers": {{ "x-device-type": {{ "exact": "cam-flag" }} }} }},
    {{ "name": "boxes",   "headers": {{ "x-device-type": {{ "exact": "cam-box" }} }} }},
    {{ "name": "slow",    "headers": {{ "x-device-type": {{ "exact": "cam-slow" }} }} }},
    {{ "name": "streak",  "headers": {{ "x-device-type": {{ "exact": "cam-streak" }} }} }},
    {{ "name": "errors",  "headers": {{ "x-device-type": {{ "exact": "cam-err" }} }} }},
    {{ "name": "noisy",   "headers": {{ "x-device-type": {{ "exact": "cam-noisy" }} }} }}
  ],
  "breach": {{
    "detector": "window",
    "latency":   {{ "header": "x-inference-latency-ms", "max_mean_ms": 100, "window_s": 5, "min_samples": 6 }},
    "box_count": {{ "header": "x-box-count", "max_sigma": 3, "window_s": 5, "min_samples": 6 }},
    "error_rate": {{ "max": 0.4, "window_s": 5, "min_samples": 6 }},
    "consecutive_failures": 4,
    "shed_for_s": {shed_for_s},
    "probe_percent": 50,
    "probe_successes": 3,
    "scope": "rule"
  }},
  "sync_ms": 100
}}"#
    )
}

/// Two scripted upstreams answering 20 ms and 3 boxes, and a front Envoy with [`config`].
struct Shedding {
    stable: Upstream,
    gray: Upstream,
    envoy: Envoy,
}

impl Shedding {
    fn start(shed_for_s: f64) -> Shedding {
        let stable = Upstream::start("v9-prod");
        let gray = Upstream::start("v10-gray");
        stable.set_signals("20", "3");
        gray.set_signals("20", "3");
        let envoy = front_envoy(&config(shed_for_s), &stable, &gray);
        Shedding {
            stable,
            gray,
            envoy,
        }
    }

    /// A value of the admin's stats that must be at least `min`.
    fn at_least(&self, name: &str, min: f64) {
        let v = metric(&self.envoy.prometheus(), name).unwrap_or_else(|| panic!("{name} missing"));
        assert!(v >= min, "{name} = {v}, want ≥ {min}");
    }

    /// The incident records of `rule` starting a shed by `trigger`, in order; `n` of them.
    fn shed_starts(&self, rule: &str, trigger: Trigger, n: usize) -> Vec<Incident> {
        let all = self.envoy.incident_records();
        let starts: Vec<Incident> = incident(&all, Event::ShedStart, rule, trigger)
            .into_iter()
            .cloned()
            .collect();
        assert_eq!(starts.len(), n, "{all:#?}");
        starts
    }

    /// The one incident record of `rule` starting a shed by `trigger`.
    fn shed_start(&self, rule: &str, trigger: Trigger) -> Incident {
        self.shed_starts(rule, trigger, 1).remove(0)
    }

    /// Five gray replies to `kind` (of `rule`), once the filter has judged them as
    /// `samples`: the next request still goes to gray (5 samples < `min_samples`).
    fn five_samples_do_not_shed(&self, kind: &str, rule: &str, samples: &str) {
        gray_n(&self.envoy, kind, 5);
        published(&self.envoy, samples, 5.0);
        assert_eq!(
            ask(&self.envoy, kind).0,
            format!("gray; rule={rule}"),
            "5 samples < min_samples"
        );
    }

    /// Three gray replies to the flagged cohort, then the flag on one more (`box_count`): the
    /// rule is shed from then on.
    fn shed_by_the_flag(&self) {
        gray_n(&self.envoy, "cam-flag", 3);
        self.flag_once("box_count");
    }

    /// Gray raises its flag on one reply of the flagged cohort (which still went to gray),
    /// and clears it: the rule is shed from then on.
    fn flag_once(&self, reason: &str) {
        self.gray.set_flag(Some(reason));
        assert_eq!(
            ask(&self.envoy, "cam-flag"),
            ("gray; rule=flagged".into(), "v10-gray".into())
        );
        self.gray.set_flag(None);
    }
}

#[test]
fn the_flag_sheds_the_very_next_request_on_every_worker_and_only_its_rule() {
    // A shed period longer than the test: every request after the flag is shed.
    let t = Shedding::start(60.0);
    t.shed_by_the_flag();
    for _ in 0..60 {
        assert_eq!(
            ask(&t.envoy, "cam-flag"),
            ("stable; rule=flagged; shed=flag".into(), "v9-prod".into())
        );
    }
    // Other cohorts keep their gray traffic (scope: rule).
    gray_n(&t.envoy, "cam-noisy", 2);

    // Both workers (each with its own Wasm VM) served the requests above.
    let per_worker = t.envoy.connections_per_worker();
    assert_eq!(per_worker.len(), 2, "{per_worker:?}");
    assert!(per_worker.iter().all(|&n| n >= 10), "{per_worker:?}");

    published(&t.envoy, names::SHED_REQUESTS, 60.0);
    t.at_least("grayguard_breaches_flag", 1.0);
    t.at_least("grayguard_breakers_open", 1.0);
    t.at_least("grayguard_breaker_state", 1.0);
    let start = t.shed_start("flagged", Trigger::Flag);
    assert_eq!(start.flag_reason.as_deref(), Some("box_count"));
    assert_eq!(start.after_probe, Some(false));
}

#[test]
fn half_open_probes_close_the_breaker_and_a_bad_probe_opens_it_again() {
    let t = Shedding::start(1.5);
    t.shed_by_the_flag();
    assert_eq!(
        ask(&t.envoy, "cam-flag").0,
        "stable; rule=flagged; shed=flag"
    );

    // Half-open: probes, then closed again after three healthy probes.
    half_open(&t.envoy, "flagged");
    let seen = ask_until(&t.envoy, "cam-flag", "gray; rule=flagged", 200);
    let probes = seen
        .iter()
        .filter(|d| *d == "gray; rule=flagged; probe")
        .count();
    assert_eq!(probes, 3, "{seen:?}");
    assert!(
        seen.iter().all(|d| {
            let d = Decision::parse(d).unwrap_or_else(|e| panic!("decision {d:?}: {e}"));
            d.rule.as_deref() == Some("flagged")
                && matches!(
                    d.note,
                    None | Some(Note::Probe) | Some(Note::Shed(Trigger::Flag))
                )
        }),
        "{seen:?}"
    );

    // A bad probe opens the breaker again.
    t.flag_once("latency");
    half_open(&t.envoy, "flagged");
    t.gray.set_flag(Some("latency"));
    ask_until(&t.envoy, "cam-flag", "gray; rule=flagged; probe", 100);
    t.gray.set_flag(None);
    assert_eq!(
        ask(&t.envoy, "cam-flag").0,
        "stable; rule=flagged; shed=flag"
    );

    published(&t.envoy, names::PROBE_REQUESTS, 4.0);
    t.at_least("grayguard_breaches_flag", 3.0);
    t.at_least("grayguard_shed_requests", 1.0);
    // The first flag, the second one, and the flagged probe.
    let starts = t.shed_starts("flagged", Trigger::Flag, 3);
    assert_eq!(starts[0].flag_reason.as_deref(), Some("box_count"));
    assert_eq!(starts[0].after_probe, Some(false));
    assert_eq!(starts[1].after_probe, Some(false));
    assert_eq!(starts[2].after_probe, Some(true));
    assert_eq!(starts[2].flag_reason.as_deref(), Some("latency"));
    let all = t.envoy.incident_records();
    assert_eq!(
        incident(&all, Event::ShedEnd, "flagged", Trigger::Flag).len(),
        1,
        "{all:#?}"
    );
}

#[test]
fn malformed_signals_are_counted_and_ignored() {
    let t = Shedding::start(1.5);
    // No failure, no sample, no shed.
    t.gray.set_signals("NaN", "-3");
    gray_n(&t.envoy, "cam-noisy", 4);
    t.gray.set_signals("1e9", "many");
    gray_n(&t.envoy, "cam-noisy", 4);
    t.gray.set_signals("20", "3");
    published(&t.envoy, names::MALFORMED_SIGNALS, 16.0);
    assert_eq!(ask(&t.envoy, "cam-noisy").0, "gray; rule=noisy");
    let failures = metric(&t.envoy.prometheus(), names::GRAY_FAILURES).unwrap_or(0.0);
    assert_eq!(failures, 0.0, "a malformed signal is not a failure");
    let all = t.envoy.incident_records();
    assert!(all.iter().all(|i| i.rule != "noisy"), "{all:#?}");
}

#[test]
fn a_flood_of_boxes_sheds_on_the_learned_baseline_once_min_samples_is_reached() {
    let t = Shedding::start(1.5);
    // Stable teaches the baseline: 3 boxes.
    for _ in 0..10 {
        assert_eq!(ask(&t.envoy, "conveyor").0, "stable; no-rule");
    }
    t.gray.set_signals("20", "30");
    t.five_samples_do_not_shed("cam-box", "boxes", names::GRAY_BOX_SAMPLES);
    let sixth = Instant::now();
    ask_until(
        &t.envoy,
        "cam-box",
        "stable; rule=boxes; shed=box_count",
        100,
    );
    eprintln!("box-count breach shed after {:?}", sixth.elapsed());

    t.at_least("grayguard_breaches_box_count", 1.0);
    assert_eq!(
        t.stable.count(),
        11,
        "the baseline's replies and the shed request"
    );
    // The signal sums and counts (aggregated per VM and handed over on the tick).
    for name in [
        names::GRAY_BOX_SAMPLES,
        names::STABLE_BOX_SAMPLES,
        names::GRAY_LATENCY_SAMPLES,
        names::GRAY_BOXES,
        names::GRAY_LATENCY_US,
    ] {
        published(&t.envoy, name, 1.0);
    }
    let start = t.shed_start("boxes", Trigger::BoxCount);
    let w = start.window.expect("the window detector's view");
    assert!(w.box_mean.unwrap() > 20.0, "{w:?}");
    assert_eq!(w.baseline_mean, Some(3.0), "{w:?}");
    assert!(w.box_samples.unwrap() >= 6, "{w:?}");
}

#[test]
fn a_slow_gray_sheds_on_latency_once_min_samples_is_reached() {
    let t = Shedding::start(1.5);
    // Gray mean 500 ms > 100 ms.
    t.gray.set_signals("500", "3");
    t.five_samples_do_not_shed("cam-slow", "slow", names::GRAY_LATENCY_SAMPLES);
    ask_until(&t.envoy, "cam-slow", "stable; rule=slow; shed=latency", 100);

    t.at_least("grayguard_breaches_latency", 1.0);
    let slow = t.shed_start("slow", Trigger::Latency);
    let w = slow.window.expect("the window detector's view");
    assert!(w.latency_mean_ms.unwrap() > 100.0, "{w:?}");
}

#[test]
fn consecutive_failures_shed_on_the_fourth_in_a_row() {
    let t = Shedding::start(1.5);
    t.gray.set_status(503);
    for _ in 0..3 {
        let (d, _) = ask(&t.envoy, "cam-streak");
        assert_eq!(d, "gray; rule=streak");
    }
    published(&t.envoy, names::GRAY_FAILURES, 3.0);
    assert_eq!(
        ask(&t.envoy, "cam-streak").0,
        "gray; rule=streak",
        "3 failures < 4"
    );
    ask_until(
        &t.envoy,
        "cam-streak",
        "stable; rule=streak; shed=consecutive_failures",
        50,
    );

    t.at_least("grayguard_breaches_consecutive_failures", 1.0);
    t.at_least("grayguard_gray_failures", 4.0);
    t.shed_start("streak", Trigger::ConsecutiveFailures);
}

#[test]
fn an_error_rate_above_its_ceiling_sheds_without_a_streak() {
    let t = Shedding::start(1.5);
    // Every other response fails (never 4 in a row): 50 % > 40 %.
    for i in 0..5 {
        t.gray.set_status(if i % 2 == 0 { 500 } else { 200 });
        assert_eq!(ask(&t.envoy, "cam-err").0, "gray; rule=errors");
    }
    published(&t.envoy, names::GRAY_RESPONSES, 5.0);
    t.gray.set_status(200);
    assert_eq!(
        ask(&t.envoy, "cam-err").0,
        "gray; rule=errors",
        "5 samples < min_samples"
    );
    // Six samples, three failed: the evaluator's next tick sheds. No request is sent
    // meanwhile (successes would lower the rate; failures could make a streak).
    t.envoy.wait_metric(
        "grayguard_breaches_error_rate",
        Duration::from_secs(5),
        |v| v >= 1.0,
    );
    assert_eq!(
        ask(&t.envoy, "cam-err").0,
        "stable; rule=errors; shed=error_rate"
    );

    t.at_least("grayguard_gray_failures", 3.0);
    let errs = t.shed_start("errors", Trigger::ErrorRate);
    let w = errs.window.expect("the window detector's view");
    assert!(w.error_rate.unwrap() > 0.4, "{w:?}");
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
    let e = front_envoy(config, &stable, &gray);
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
    let all = e.incident_records();
    assert_eq!(all.len(), 1, "{all:#?}");
    assert_eq!(all[0].event, Event::ShedStart);
    assert_eq!(all[0].rule, "*");
    assert_eq!(all[0].scope, Scope::All);
    assert!(all[0].dry_run);
    assert_eq!(all[0].flag_reason.as_deref(), Some("memory"));
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
    let e = front_envoy(config, &stable, &gray);
    for _ in 0..8 {
        assert_eq!(ask(&e, "dock-camera").0, "stable; no-rule");
    }
    published(&e, names::STABLE_BOX_SAMPLES, 8.0);
    // Time itself must pass: the 1 s window has to age past every stable reply (nothing
    // reports what a window holds).
    std::thread::sleep(Duration::from_millis(1_200));
    gray_n(&e, "crane-camera", 5);
    ask_until(
        &e,
        "crane-camera",
        "stable; rule=cranes; shed=box_count",
        100,
    );

    let all = e.incident_records();
    let starts = incident(&all, Event::ShedStart, "cranes", Trigger::BoxCount);
    assert_eq!(starts.len(), 1, "{all:#?}");
    let w = starts[0]
        .window
        .as_ref()
        .expect("the window detector's view");
    assert_eq!(w.baseline_mean, Some(3.0), "{w:?}");
    // The last window that still held `min_samples` of the eight stable replies.
    let learned_from = w.baseline_samples.unwrap();
    assert!((6..=8).contains(&learned_from), "{w:?}");
    assert_eq!(w.baseline_held, Some(true), "{w:?}");
    assert_eq!(
        stable.count(),
        9,
        "the baseline's replies and the shed request"
    );
}
