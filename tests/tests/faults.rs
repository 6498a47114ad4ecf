//! Faults injected into a running mesh, each with its expected outcome checked: real
//! processes (the front Envoy with the filter, both sidecars with the real model, real
//! photos), the canonical plugin configuration with only its clock shortened, and traffic
//! from a gray cohort (`crane-camera`, the rule's) and a stable cohort (`dock-camera`, no
//! rule) while the fault happens.
//!
//! | fault | expected outcome |
//! |---|---|
//! | gray sidecar SIGKILLed mid-traffic | at most `consecutive_failures` (5) client-visible errors in the gray cohort (503s from Envoy), then the cohort is shed; none in the stable cohort; the restarted sidecar gets half-open probes and gray comes back |
//! | gray sidecar hung (SIGSTOP) | every gray request that meets it ends at the gray route's timeout (504; nothing waits longer); the cohort is shed; none in the stable cohort; SIGCONT and the probes bring gray back |
//! | stable sidecar slow (queueing) | gray is not shed: a slow control lowers gray's latency ratio |
//! | stable sidecar overloaded | its bounded queue answers 503 + `Retry-After` at once, through Envoy, to the stable cohort |
//! | front Envoy restarted while shedding | the breaker and the evidence were Envoy's shared data and are gone: the new Envoy starts closed, sends the cohort to gray and re-sheds the still-bad version after `min_samples` gray replies; the sidecars are untouched |
//!
//! Both sidecars run one ONNX Runtime thread and have their own latency watchdog pushed out
//! of the way, so what is tested is the filter's judgement and the route timeouts, not the
//! sidecar's flag. The gray cohort is paced at one request per sender every few hundred ms,
//! more than one filter tick apart.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use grayguard_contract::Trigger;
use grayguard_contract::metrics::filter as names;
use grayguard_e2e::envoy::RouteTimeouts;
use grayguard_e2e::load::{Lane, Load, Outcome, describe};
use grayguard_e2e::mesh::{GRAY, Mesh, STABLE, local_plugin_config};
use grayguard_e2e::prom;
use grayguard_e2e::sidecar::READY_TIMEOUT;
use serde_json::Value;

/// The rule's cohort (routed to gray) and a cohort no rule matches (always stable).
const GRAY_COHORT: &str = "crane-camera";
const STABLE_COHORT: &str = "dock-camera";
/// Lane indices in every test's load: gray cohort first.
const GRAY_LANE: usize = 0;
const STABLE_LANE: usize = 1;
/// The decision of a gray-cohort request while the rule's breaker is closed.
const CLOSED: &str = "gray; rule=crane-cameras";
/// Longest any test's traffic may run.
const MAX_LOAD: Duration = Duration::from_secs(150);

/// The canonical plugin configuration (mesh-config/local/envoy.yaml) with a shorter open
/// phase and more probes, so a fault-and-recovery cycle fits in seconds; every threshold
/// stays canonical. The latch is left out: it calls the gray sidecar's control listener,
/// which this harness does not start, and no outcome here depends on it.
fn config(shed_for_s: u64) -> (String, Value) {
    let mut v: Value = serde_json::from_str(&local_plugin_config()).unwrap();
    let breach = v["breach"].as_object_mut().unwrap();
    breach.remove("latch");
    breach.insert("shed_for_s".into(), shed_for_s.into());
    breach.insert("probe_percent".into(), 50.into());
    (v.to_string(), v)
}

/// A count the canonical configuration sets (`breach.<path>`).
fn setting(v: &Value, path: &[&str]) -> usize {
    let mut at = &v["breach"];
    for key in path {
        at = &at[key];
    }
    at.as_u64()
        .unwrap_or_else(|| panic!("breach.{} is not set", path.join("."))) as usize
}

/// Starts both sidecars and the front Envoy: stable at the canonical 0.25, gray at
/// `gray_conf` (0.25: a healthy release; 0.001: the incident's box flood).
fn start_mesh(config: &str, gray_conf: &str, stable_extra: &[&str]) -> Mesh {
    let common = ["--threads", "1", "--watchdog-latency-budget-ms", "60000"];
    let stable = [&common[..], &["--conf", "0.25"], stable_extra].concat();
    let gray = [&common[..], &["--conf", gray_conf]].concat();
    Mesh::start(config, &stable, &gray, 2)
}

fn lane(all: &[Outcome], lane: usize) -> Vec<Outcome> {
    all.iter().filter(|o| o.lane == lane).cloned().collect()
}

fn failed(outcomes: &[Outcome]) -> Vec<Outcome> {
    outcomes.iter().filter(|o| !o.ok()).cloned().collect()
}

/// Gray-cohort requests sent after `t` that gray served with the breaker closed.
fn closed_gray_after(all: &[Outcome], t: Duration) -> usize {
    all.iter()
        .filter(|o| o.lane == GRAY_LANE && o.sent >= t && o.ok() && o.served_by(GRAY))
        .filter(|o| o.decision.as_deref() == Some(CLOSED))
        .count()
}

/// The first gray-cohort reply sent after `t` whose decision says the rule is shed.
fn first_shed_after(all: &[Outcome], t: Duration) -> Option<Outcome> {
    all.iter()
        .filter(|o| o.lane == GRAY_LANE && o.sent >= t && o.decided("shed="))
        .min_by_key(|o| o.sent)
        .cloned()
}

fn metric(mesh: &Mesh, name: &str) -> f64 {
    prom::value(&mesh.envoy.prometheus(), name).unwrap_or(0.0)
}

/// Every breaker opening Envoy counted, by trigger.
fn breaches(mesh: &Mesh) -> Vec<(Trigger, f64)> {
    let text = mesh.envoy.prometheus();
    Trigger::ALL
        .into_iter()
        .map(|t| (t, prom::value(&text, &names::breaches(t)).unwrap_or(0.0)))
        .collect()
}

/// No client saw a transport error (refused, reset, its own 30 s timeout): every request
/// was answered with an HTTP status.
fn assert_all_answered(all: &[Outcome]) {
    let lost: Vec<Outcome> = all.iter().filter(|o| o.status.is_none()).cloned().collect();
    assert!(
        lost.is_empty(),
        "requests not answered:\n{}",
        describe(&lost)
    );
}

fn assert_no_stable_errors(all: &[Outcome]) {
    let stable = lane(all, STABLE_LANE);
    assert!(!stable.is_empty(), "the stable cohort sent nothing");
    let errors = failed(&stable);
    assert!(
        errors.is_empty(),
        "the stable cohort saw errors:\n{}",
        describe(&errors)
    );
}

/// The shed trigger of a decision header (`stable; rule=R; shed=T`).
fn shed_trigger(o: &Outcome) -> &str {
    o.decision
        .as_deref()
        .and_then(|d| d.split("shed=").nth(1))
        .unwrap_or("")
}

#[test]
fn killed_gray_sidecar_costs_at_most_consecutive_failures_errors_and_probes_bring_it_back() {
    let (config, v) = config(3);
    let streak = setting(&v, &["consecutive_failures"]);
    let mut mesh = start_mesh(&config, "0.25", &[]);
    let pace = Duration::from_millis(300);
    let load = Load::start(
        &mesh.envoy.url("/infer"),
        &[
            Lane::new(GRAY_COHORT, pace, 400),
            Lane::new(STABLE_COHORT, pace, 400),
        ],
        MAX_LOAD,
    );
    load.wait_until("gray serves its cohort", Duration::from_secs(30), |all| {
        closed_gray_after(all, Duration::ZERO) >= 6
    });

    // The crash: no drain, connections reset, the port refuses.
    let killed_at = load.now();
    mesh.gray.proc.crash();
    let all = load.wait_until("the cohort is shed", Duration::from_secs(30), |all| {
        first_shed_after(all, killed_at).is_some()
    });
    let shed = first_shed_after(&all, killed_at).unwrap();

    // The kubelet's part: the same command on the same port.
    mesh.gray.respawn();
    mesh.gray.wait_ready(READY_TIMEOUT);
    let ready_at = load.now();
    load.wait_until(
        "gray serves its cohort again",
        Duration::from_secs(60),
        |all| closed_gray_after(all, ready_at) >= 3,
    );
    let all = load.stop();

    assert_all_answered(&all);
    assert_no_stable_errors(&all);
    let gray = lane(&all, GRAY_LANE);
    let before: Vec<Outcome> = gray
        .iter()
        .filter(|o| o.done < killed_at)
        .cloned()
        .collect();
    assert!(failed(&before).is_empty(), "{}", describe(&failed(&before)));
    // Between the crash and the shed: the streak, no more.
    let window: Vec<Outcome> = gray
        .iter()
        .filter(|o| o.done >= killed_at && o.sent < shed.sent)
        .cloned()
        .collect();
    let errors = failed(&window);
    assert!(
        (1..=streak).contains(&errors.len()),
        "{} gray-cohort errors between the crash and the shed (expected 1..={streak}):\n{}",
        errors.len(),
        describe(&window)
    );
    for e in &errors {
        // Envoy's own answer (the sidecar is gone): a 503, carrying the filter's decision.
        assert_eq!(e.status, Some(503), "{}", describe(std::slice::from_ref(e)));
        assert_eq!(e.decision.as_deref(), Some(CLOSED), "{}", describe(&errors));
    }
    assert!(
        ["consecutive_failures", "error_rate"].contains(&shed_trigger(&shed)),
        "shed by {}",
        describe(std::slice::from_ref(&shed))
    );
    // After the shed, the cohort's only errors are half-open probes that met the dead
    // sidecar before it was back.
    let later: Vec<Outcome> = gray
        .iter()
        .filter(|o| o.sent >= shed.sent)
        .cloned()
        .collect();
    let not_probes: Vec<Outcome> = failed(&later)
        .into_iter()
        .filter(|o| !o.decided("; probe"))
        .collect();
    assert!(not_probes.is_empty(), "{}", describe(&not_probes));
    let last = gray.last().unwrap();
    assert!(
        last.ok() && last.served_by(GRAY) && last.decision.as_deref() == Some(CLOSED),
        "gray is back: {}",
        describe(std::slice::from_ref(last))
    );
    assert!(
        metric(&mesh, &names::breaches(Trigger::ConsecutiveFailures))
            + metric(&mesh, &names::breaches(Trigger::ErrorRate))
            >= 1.0
    );
    eprintln!(
        "SIGKILL: {} gray-cohort errors before the shed (limit {streak}), shed by {}, {} failed probes after it",
        errors.len(),
        shed_trigger(&shed),
        failed(&later).len()
    );
}

#[test]
fn hung_gray_sidecar_times_out_is_shed_and_comes_back_after_sigcont() {
    let (config, v) = config(3);
    let streak = setting(&v, &["consecutive_failures"]);
    let timeouts = RouteTimeouts::local();
    let mut mesh = start_mesh(&config, "0.25", &[]);
    // As many gray senders as the streak, so that the hung version's first timeouts fill it
    // together rather than one route timeout after another.
    let gray_senders = streak;
    let load = Load::start(
        &mesh.envoy.url("/infer"),
        &[
            Lane::new(GRAY_COHORT, Duration::from_secs(3), 400).senders(gray_senders),
            // The same load on stable: gray is compared with a control queueing alike.
            Lane::new(STABLE_COHORT, Duration::from_secs(3), 400).senders(gray_senders),
        ],
        MAX_LOAD,
    );
    load.wait_until("gray serves its cohort", Duration::from_secs(30), |all| {
        closed_gray_after(all, Duration::ZERO) >= 6
    });

    // The hang: the process keeps its socket (connections are accepted by the kernel) but
    // never answers.
    let stopped_at = load.now();
    mesh.gray.proc.signal("STOP");
    let all = load.wait_until(
        "the cohort is shed",
        timeouts.gray * 4 + Duration::from_secs(10),
        |all| first_shed_after(all, stopped_at).is_some(),
    );
    let shed = first_shed_after(&all, stopped_at).unwrap();
    mesh.gray.proc.signal("CONT");
    let resumed_at = load.now();
    load.wait_until(
        "gray serves its cohort again",
        Duration::from_secs(60),
        |all| closed_gray_after(all, resumed_at) >= 3,
    );
    let all = load.stop();
    mesh.gray.wait_ready(READY_TIMEOUT);

    assert_all_answered(&all);
    assert_no_stable_errors(&all);
    let gray = lane(&all, GRAY_LANE);
    let errors = failed(&gray);
    assert!(!errors.is_empty(), "the hang was not seen");
    for e in &errors {
        // Envoy's route timeout answered, not the client's own timeout, and not before the
        // hang.
        assert!(
            e.status == Some(504) && e.text.contains("upstream request timeout"),
            "{}",
            describe(std::slice::from_ref(e))
        );
        assert!(
            e.done >= stopped_at,
            "{}",
            describe(std::slice::from_ref(e))
        );
        assert!(
            e.done - e.sent >= timeouts.gray.mul_f64(0.9),
            "a timeout before the route's {:?}: {}",
            timeouts.gray,
            describe(std::slice::from_ref(e))
        );
    }
    // The streak, plus the requests already on their way to the hung version when it was
    // shed (one per sender at most).
    let before_shed = errors.iter().filter(|o| o.sent < shed.sent).count();
    assert!(
        before_shed <= streak + gray_senders,
        "{before_shed} gray-cohort errors before the shed (limit {streak} + {gray_senders} in flight):\n{}",
        describe(&errors)
    );
    let after_shed: Vec<Outcome> = errors
        .iter()
        .filter(|o| o.sent >= shed.sent && !o.decided("; probe"))
        .cloned()
        .collect();
    assert!(after_shed.is_empty(), "{}", describe(&after_shed));
    let last = gray.last().unwrap();
    assert!(
        last.ok() && last.served_by(GRAY) && last.decision.as_deref() == Some(CLOSED),
        "gray is back: {}",
        describe(std::slice::from_ref(last))
    );
    eprintln!(
        "SIGSTOP: {} gray-cohort 504s ({before_shed} before the shed by {}), gray route timeout {:?}",
        errors.len(),
        shed_trigger(&shed),
        timeouts.gray
    );
}

#[test]
fn slow_stable_does_not_shed_gray_and_an_overloaded_one_answers_503_with_retry_after() {
    let (config, v) = config(30);
    let min_samples = setting(&v, &["latency", "min_samples"]);
    // Stable: one model run at a time, at most two waiting.
    let mesh = start_mesh(&config, "0.25", &["--max-queue", "2"]);
    let url = mesh.envoy.url("/infer");

    // 1. Slow: two stable senders back to back keep its queue busy (each request waits for
    //    the other's run), never full. Gray is judged against a control that is slower
    //    than itself.
    let load = Load::start(
        &url,
        &[
            Lane::new(GRAY_COHORT, Duration::from_millis(400), 400),
            Lane::new(STABLE_COHORT, Duration::ZERO, 1000).senders(2),
        ],
        MAX_LOAD,
    );
    // Twice what the latency test needs before it may shed.
    let all = load.wait_until(
        "enough gray replies to judge",
        Duration::from_secs(90),
        |all| lane(all, GRAY_LANE).len() >= 2 * min_samples,
    );
    let all = {
        drop(all);
        load.stop()
    };
    assert_all_answered(&all);
    assert_no_stable_errors(&all);
    let gray = lane(&all, GRAY_LANE);
    let shed: Vec<Outcome> = gray
        .iter()
        .filter(|o| !(o.ok() && o.served_by(GRAY) && o.decision.as_deref() == Some(CLOSED)))
        .cloned()
        .collect();
    assert!(
        shed.is_empty(),
        "gray was shed or failed:\n{}",
        describe(&shed)
    );
    std::thread::sleep(Duration::from_millis(500));
    let text = mesh.envoy.prometheus();
    let mean_ms = |sum: &str, n: &str| {
        prom::value(&text, sum).unwrap_or(0.0)
            / prom::value(&text, n).unwrap_or(1.0).max(1.0)
            / 1000.0
    };
    let gray_ms = mean_ms(names::GRAY_LATENCY_US, names::GRAY_LATENCY_SAMPLES);
    let stable_ms = mean_ms(names::STABLE_LATENCY_US, names::STABLE_LATENCY_SAMPLES);
    assert!(
        stable_ms > gray_ms,
        "the control was not the slower side: stable {stable_ms:.0} ms, gray {gray_ms:.0} ms"
    );
    for (t, n) in breaches(&mesh) {
        assert_eq!(n, 0.0, "breaker opened by {t:?}");
    }
    assert_eq!(metric(&mesh, names::BREAKER_STATE), 0.0);
    let evidence = format!("{}{{trigger=\"latency\"}}", names::EVIDENCE_PCT);
    assert_eq!(
        prom::value(&text, &evidence),
        Some(0.0),
        "no evidence against gray's latency"
    );

    // 2. Overloaded: a burst beyond its queue is refused at once by the sidecar, and Envoy
    //    hands the 503 and its Retry-After to the client unchanged.
    let burst = Load::start(
        &url,
        &[
            Lane::new(GRAY_COHORT, Duration::ZERO, 0),
            Lane::new(STABLE_COHORT, Duration::ZERO, 12).senders(12),
        ],
        Duration::from_secs(60),
    );
    let all = burst.wait_until("the burst is answered", Duration::from_secs(60), |all| {
        all.len() == 12
    });
    assert_all_answered(&all);
    let refused: Vec<&Outcome> = all.iter().filter(|o| o.status == Some(503)).collect();
    assert!(
        refused.len() >= 6,
        "most of the burst is refused:\n{}",
        describe(&all)
    );
    for r in &refused {
        assert_eq!(r.retry_after.as_deref(), Some("1"), "{}", describe(&all));
        assert!(
            r.served_by(STABLE) && r.text.contains("queue_full"),
            "{}",
            describe(&all)
        );
        assert_eq!(r.decision.as_deref(), Some("stable; no-rule"));
    }
    assert!(
        all.iter().all(|o| o.ok() || o.status == Some(503)),
        "{}",
        describe(&all)
    );
    eprintln!(
        "slow stable: control {stable_ms:.0} ms vs gray {gray_ms:.0} ms, {} gray replies, no shed; burst: {} of 12 refused with Retry-After",
        gray.len(),
        refused.len()
    );
}

#[test]
#[ignore = "open: the filter books the signals of stable's 503 refusals (x-inference-latency-ms \
            near 0, x-box-count 0) as control samples, which makes gray look slower and \
            flood-ier than stable; measured: shed=latency after 10 gray replies"]
fn overloaded_stable_does_not_shed_gray() {
    let (config, v) = config(30);
    let min_samples = setting(&v, &["latency", "min_samples"]);
    let mesh = start_mesh(&config, "0.25", &["--max-queue", "1"]);
    let load = Load::start(
        &mesh.envoy.url("/infer"),
        &[
            Lane::new(GRAY_COHORT, Duration::from_millis(300), 400),
            Lane::new(STABLE_COHORT, Duration::from_millis(50), 4000).senders(6),
        ],
        MAX_LOAD,
    );
    load.wait_until("enough gray replies", Duration::from_secs(90), |all| {
        lane(all, GRAY_LANE).len() >= 6 * min_samples
    });
    let all = load.stop();
    assert_all_answered(&all);
    let stable = lane(&all, STABLE_LANE);
    let refused = stable.iter().filter(|o| o.status == Some(503)).count();
    assert!(
        refused * 2 >= stable.len(),
        "stable was overloaded: {refused} of {} refused",
        stable.len()
    );
    let gray = lane(&all, GRAY_LANE);
    let shed: Vec<Outcome> = gray
        .iter()
        .filter(|o| !(o.ok() && o.served_by(GRAY) && o.decision.as_deref() == Some(CLOSED)))
        .cloned()
        .collect();
    assert!(shed.is_empty(), "gray was shed:\n{}", describe(&shed));
}

#[test]
fn restarted_envoy_starts_closed_and_resheds_the_still_bad_version_after_min_samples() {
    let (config, v) = config(120);
    let min_samples = setting(&v, &["box_count", "min_samples"]);
    // The incident's gray version: the same model at a 0.001 threshold, a flood of boxes.
    let mut mesh = start_mesh(&config, "0.001", &[]);
    let pace = Duration::from_millis(300);
    let lanes = [
        Lane::new(GRAY_COHORT, pace, 200).senders(2),
        Lane::new(STABLE_COHORT, pace, 200),
    ];
    let until_shed = |load: &Load| {
        load.wait_until("the cohort is shed", Duration::from_secs(60), |all| {
            first_shed_after(all, Duration::ZERO).is_some()
                && lane(all, GRAY_LANE)
                    .iter()
                    .rev()
                    .take(3)
                    .all(|o| o.decided("shed="))
        })
    };
    let gray_before_shed = |all: &[Outcome]| {
        let shed = first_shed_after(all, Duration::ZERO).unwrap();
        all.iter()
            .filter(|o| o.lane == GRAY_LANE && o.sent < shed.sent && o.served_by(GRAY))
            .count()
    };

    let load = Load::start(&mesh.envoy.url("/infer"), &lanes, MAX_LOAD);
    let first = until_shed(&load);
    let first = {
        drop(first);
        load.stop()
    };
    assert_eq!(metric(&mesh, names::BREAKER_STATE), 1.0, "shedding");
    let gray_pid = mesh.gray.proc.pid();
    let gray_served = gray_before_shed(&first);

    // A new Envoy process in front of the same sidecars.
    mesh.restart_envoy(&config, 2);
    assert_eq!(
        metric(&mesh, names::BREAKER_STATE),
        0.0,
        "a new Envoy starts closed"
    );
    let load = Load::start(&mesh.envoy.url("/infer"), &lanes, MAX_LOAD);
    let second = until_shed(&load);
    let second = {
        drop(second);
        load.stop()
    };

    for all in [&first, &second] {
        assert_all_answered(all);
        assert_no_stable_errors(all);
        let gray = lane(all, GRAY_LANE);
        assert!(failed(&gray).is_empty(), "{}", describe(&failed(&gray)));
        // Each Envoy sent the cohort to gray first, and shed it only once it had seen
        // `min_samples` gray replies of its own.
        assert_eq!(
            gray[0].decision.as_deref(),
            Some(CLOSED),
            "{}",
            describe(&gray[..1])
        );
        let served = gray_before_shed(all);
        assert!(
            served >= min_samples,
            "shed after {served} gray replies, fewer than min_samples {min_samples}:\n{}",
            describe(&gray)
        );
    }
    let reshed = gray_before_shed(&second);
    assert_eq!(
        mesh.gray.proc.pid(),
        gray_pid,
        "the sidecar was not restarted"
    );
    assert_eq!(metric(&mesh, names::BREAKER_STATE), 1.0, "shedding again");
    eprintln!(
        "Envoy restart: shed after {gray_served} gray replies, re-shed after {reshed} by the new Envoy (min_samples {min_samples}), trigger {}",
        shed_trigger(&first_shed_after(&second, Duration::ZERO).unwrap())
    );
}
