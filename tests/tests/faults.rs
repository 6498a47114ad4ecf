//! Faults injected into a running mesh, each with its expected outcome checked: real
//! processes (front Envoys with the filter, both sidecars with the real model, real photos),
//! the canonical plugin configuration with only its clock shortened, and traffic from a gray
//! cohort (`crane-camera`, the rule's) and a stable cohort (`dock-camera`, no rule) while the
//! fault happens.
//!
//! | fault | expected outcome |
//! |---|---|
//! | gray sidecar SIGKILLed mid-traffic, two gateways | per gateway, at most `consecutive_failures` (5) client-visible errors in the gray cohort (503s from Envoy), then that gateway sheds the cohort; none in the stable cohort; the sidecar restarted on the same ports gets half-open probes (a probe that meets it still down is an error) and gray comes back on both |
//! | gray sidecar hung (SIGSTOP) | every gray request that meets it ends at the gray route's timeout (504; nothing waits longer); the cohort is shed; none in the stable cohort; SIGCONT and the probes bring gray back |
//! | stable sidecar slow (queueing) | gray is not shed: a slow control lowers gray's latency ratio, and the detector has no evidence against gray |
//! | stable sidecar overloaded | its bounded queue answers 503 + `Retry-After` at once, through Envoy, to the stable cohort; the filter books each refusal as a control failure (which can only make gray look better), never as a latency or box sample, so gray is not shed |
//! | front Envoy restarted while shedding (a fleet of one, with the latch) | the breaker and the evidence were that Envoy's shared data and are gone; the latch lives in the gray sidecar and survives: the new Envoy starts closed, sends the cohort to gray once, and re-sheds on that first reply (`shed=latch`) instead of after `min_samples`; the sidecars are untouched |
//!
//! The sidecar's start-up failures (model file unreadable, `libonnxruntime` missing: one
//! clear message, exit non-zero) are in `sidecar_startup.rs`; `run.sh`'s restarts in
//! `local_mesh_supervision.rs`.
//!
//! Both sidecars run one ONNX Runtime thread and have their own latency watchdog pushed out
//! of the way, so what is tested is the filter's judgement and the route timeouts, not the
//! sidecar's flag. The gray cohort is paced at one request per sender every few hundred ms,
//! more than one filter tick apart.

use std::time::Duration;

use grayguard_client::exposition;
use grayguard_contract::metrics::filter as names;
use grayguard_contract::{Side, Trigger};
use grayguard_e2e::envoy::RouteTimeouts;
use grayguard_e2e::load::{Lane, Load, Outcome, describe};
use grayguard_e2e::mesh::{Fleet, GRAY, Mesh, STABLE, local_plugin_config, sidecar};
use grayguard_e2e::sidecar::READY_TIMEOUT;
use grayguard_e2e::wait::eventually;
use serde_json::Value;

/// The rule's cohort (routed to gray) and a cohort no rule matches (always stable).
const GRAY_COHORT: &str = "crane-camera";
const STABLE_COHORT: &str = "dock-camera";
/// Lane indices in every test's load: gray cohort first.
const GRAY_LANE: usize = 0;
const STABLE_LANE: usize = 1;
/// Longest any test's traffic may run.
const MAX_LOAD: Duration = Duration::from_secs(150);

/// The canonical plugin configuration (mesh-config/local/envoy.yaml) with a shorter open
/// phase and more probes, so a fault-and-recovery cycle fits in seconds; every threshold
/// stays canonical, the latch included (for a [`Fleet`]).
fn fleet_config(shed_for_s: u64) -> (String, Value) {
    let mut v: Value = serde_json::from_str(&local_plugin_config()).unwrap();
    let breach = v["breach"].as_object_mut().unwrap();
    breach.insert("shed_for_s".into(), shed_for_s.into());
    breach.insert("probe_percent".into(), 50.into());
    (v.to_string(), v)
}

/// [`fleet_config`] without the latch, for a single-gateway [`Mesh`] (whose gray sidecar has
/// no control listener): these faults' outcomes are one gateway's judgement.
fn config(shed_for_s: u64) -> (String, Value) {
    let (_, mut v) = fleet_config(shed_for_s);
    v["breach"].as_object_mut().unwrap().remove("latch");
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

/// Starts both sidecars (see [`sidecar`]) and the front Envoy with `workers` worker threads:
/// stable at the canonical 0.25 with `stable_extra` flags, gray at `gray_conf`.
fn start_mesh(config: &str, gray_conf: &str, stable_extra: &[&str], workers: u32) -> Mesh {
    Mesh::start_with(
        config,
        sidecar(STABLE, "0.25").args(stable_extra),
        sidecar(GRAY, gray_conf),
        workers,
    )
}

fn lane(all: &[Outcome], lane: usize) -> Vec<Outcome> {
    all.iter().filter(|o| o.lane == lane).cloned().collect()
}

fn failed(outcomes: &[Outcome]) -> Vec<Outcome> {
    outcomes.iter().filter(|o| !o.ok()).cloned().collect()
}

/// Requests of lane `lane` sent after `t` that gray served with the breaker closed.
fn closed_gray_after(all: &[Outcome], lane: usize, t: Duration) -> usize {
    all.iter()
        .filter(|o| o.lane == lane && o.sent >= t && served_closed(o))
        .count()
}

/// A 200 from gray, sent there by the rule with its breaker closed.
fn served_closed(o: &Outcome) -> bool {
    o.ok() && o.served_by(GRAY) && o.closed_gray()
}

/// The first reply of lane `lane` sent after `t` whose decision says the rule is shed.
fn first_shed_after(all: &[Outcome], lane: usize, t: Duration) -> Option<Outcome> {
    all.iter()
        .filter(|o| o.lane == lane && o.sent >= t && o.shed().is_some())
        .min_by_key(|o| o.sent)
        .cloned()
}

fn metric(mesh: &Mesh, name: &str) -> f64 {
    exposition::value(&mesh.envoy.prometheus(), name).unwrap_or(0.0)
}

/// Every breaker opening Envoy counted, by trigger.
fn breaches(mesh: &Mesh) -> Vec<(Trigger, f64)> {
    let text = mesh.envoy.prometheus();
    Trigger::ALL
        .into_iter()
        .map(|t| {
            (
                t,
                exposition::value(&text, &names::breaches(t)).unwrap_or(0.0),
            )
        })
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
    assert_lane_clean(all, STABLE_LANE);
}

/// Lane `lane` sent something and saw no error.
fn assert_lane_clean(all: &[Outcome], lane_index: usize) {
    let stable = lane(all, lane_index);
    assert!(!stable.is_empty(), "lane {lane_index} sent nothing");
    let errors = failed(&stable);
    assert!(
        errors.is_empty(),
        "lane {lane_index} (a stable cohort) saw errors:\n{}",
        describe(&errors)
    );
}

/// The SIGKILL test's lanes: the gray cohort through each gateway, then the stable cohort
/// through each.
const KILL_GATEWAYS: usize = 2;

#[test]
fn killed_gray_sidecar_costs_each_gateway_at_most_consecutive_failures_errors() {
    let (config, v) = fleet_config(3);
    let streak = setting(&v, &["consecutive_failures"]);
    let mut fleet = Fleet::start(
        &config,
        sidecar(STABLE, "0.25"),
        sidecar(GRAY, "0.25"),
        KILL_GATEWAYS,
        2,
    );
    let pace = Duration::from_millis(400);
    let gray_lanes: Vec<usize> = (0..KILL_GATEWAYS).collect();
    let stable_lanes: Vec<usize> = (KILL_GATEWAYS..2 * KILL_GATEWAYS).collect();
    let lanes: Vec<Lane> = (0..KILL_GATEWAYS)
        .map(|g| Lane::new(GRAY_COHORT, pace, 300).via(g))
        .chain((0..KILL_GATEWAYS).map(|g| Lane::new(STABLE_COHORT, pace, 300).via(g)))
        .collect();
    let load = Load::start(&fleet.targets(), &lanes, MAX_LOAD);
    load.wait_until(
        "gray serves its cohort through every gateway",
        Duration::from_secs(30),
        |all| {
            gray_lanes
                .iter()
                .all(|&l| closed_gray_after(all, l, Duration::ZERO) >= 3)
        },
    );

    // The crash: no drain, connections reset, the port refuses.
    let killed_at = load.now();
    fleet.gray.proc.crash();
    let all = load.wait_until(
        "every gateway sheds the cohort",
        Duration::from_secs(30),
        |all| {
            gray_lanes
                .iter()
                .all(|&l| first_shed_after(all, l, killed_at).is_some())
        },
    );
    let sheds: Vec<Outcome> = gray_lanes
        .iter()
        .map(|&l| first_shed_after(&all, l, killed_at).unwrap())
        .collect();

    // The kubelet's part: a new process on the same ports (as `make run` restarts it).
    fleet.gray.replace(Fleet::gray(sidecar(GRAY, "0.25")));
    let ready_at = load.now();
    load.wait_until(
        "gray serves its cohort again through every gateway",
        Duration::from_secs(60),
        |all| {
            gray_lanes
                .iter()
                .all(|&l| closed_gray_after(all, l, ready_at) >= 3)
        },
    );
    let all = load.stop();

    assert_all_answered(&all);
    for &l in &stable_lanes {
        assert_lane_clean(&all, l);
    }
    let mut report = Vec::new();
    for (&l, shed) in gray_lanes.iter().zip(&sheds) {
        let gray = lane(&all, l);
        let before: Vec<Outcome> = gray
            .iter()
            .filter(|o| o.done < killed_at)
            .cloned()
            .collect();
        assert!(failed(&before).is_empty(), "{}", describe(&failed(&before)));
        // Between the crash and this gateway's shed: its streak, no more. The other gateway's
        // shed cannot help here: its latch call met the dead sidecar.
        let window: Vec<Outcome> = gray
            .iter()
            .filter(|o| o.done >= killed_at && o.sent < shed.sent)
            .cloned()
            .collect();
        let errors = failed(&window);
        assert!(
            (1..=streak).contains(&errors.len()),
            "gw-{l}: {} gray-cohort errors between the crash and the shed (expected 1..={streak}):\n{}",
            errors.len(),
            describe(&window)
        );
        for e in &errors {
            // Envoy's own answer (the sidecar is gone): a 503, the rule's breaker closed.
            assert_eq!(e.status, Some(503), "{}", describe(std::slice::from_ref(e)));
            assert!(e.closed_gray(), "{}", describe(&errors));
        }
        assert!(
            matches!(
                shed.shed(),
                Some(Trigger::ConsecutiveFailures | Trigger::ErrorRate)
            ),
            "gw-{l} shed by {}",
            describe(std::slice::from_ref(shed))
        );
        // After the shed, the cohort's only errors are half-open probes that met the
        // sidecar before it was back.
        let later: Vec<Outcome> = gray
            .iter()
            .filter(|o| o.sent >= shed.sent)
            .cloned()
            .collect();
        let not_probes: Vec<Outcome> = failed(&later).into_iter().filter(|o| !o.probe()).collect();
        assert!(not_probes.is_empty(), "{}", describe(&not_probes));
        let last = gray.last().unwrap();
        assert!(
            served_closed(last),
            "gw-{l}: gray is back: {}",
            describe(std::slice::from_ref(last))
        );
        let gw = &fleet.gateways[l];
        let text = gw.prometheus();
        let opened = [Trigger::ConsecutiveFailures, Trigger::ErrorRate]
            .iter()
            .map(|&t| exposition::value(&text, &names::breaches(t)).unwrap_or(0.0))
            .sum::<f64>();
        assert!(opened >= 1.0, "gw-{l} counted no breach");
        report.push(format!(
            "gw-{l}: {} errors before the shed (limit {streak}), shed by {:?}, {} failed probes after it",
            errors.len(),
            shed.shed().unwrap(),
            failed(&later).len()
        ));
    }
    eprintln!("SIGKILL: {}", report.join("; "));
}

#[test]
fn hung_gray_sidecar_times_out_is_shed_and_comes_back_after_sigcont() {
    let (config, v) = config(3);
    let streak = setting(&v, &["consecutive_failures"]);
    let timeouts = RouteTimeouts::local();
    // One worker: the bounds below count requests against one breaker, without the up to
    // one sync interval (100 ms) in which a second worker has not yet seen a trip.
    let mut mesh = start_mesh(&config, "0.25", &[], 1);
    let targets = [mesh.envoy.url("/infer")];
    // As many gray senders as the streak, so that the hung version's timeouts fill it
    // together rather than one route timeout after another.
    let gray_senders = streak;
    let load = Load::start(
        &targets,
        &[
            Lane::new(GRAY_COHORT, Duration::from_secs(3), 400).senders(gray_senders),
            // The same load on stable: gray is compared with a control queueing alike.
            Lane::new(STABLE_COHORT, Duration::from_secs(3), 400).senders(gray_senders),
        ],
        MAX_LOAD,
    );
    load.wait_until("gray serves its cohort", Duration::from_secs(30), |all| {
        closed_gray_after(all, GRAY_LANE, Duration::ZERO) >= 6
    });

    // The hang: the process keeps its socket (connections are accepted by the kernel) but
    // never answers.
    let stopped_at = load.now();
    mesh.gray.proc.signal("STOP");
    let all = load.wait_until(
        "the cohort is shed",
        timeouts.gray * 4 + Duration::from_secs(10),
        |all| first_shed_after(all, GRAY_LANE, stopped_at).is_some(),
    );
    let shed = first_shed_after(&all, GRAY_LANE, stopped_at).unwrap();
    mesh.gray.proc.signal("CONT");
    let resumed_at = load.now();
    load.wait_until(
        "gray serves its cohort again",
        Duration::from_secs(60),
        |all| closed_gray_after(all, GRAY_LANE, resumed_at) >= 3,
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
    // The streak counts failures of requests sent after the newest success, so the requests
    // already on their way when the process stopped (one per sender) are apart from it; of
    // those sent later, the streak's, plus what the other senders had in flight when it
    // filled, reach the hung version.
    let at_stop = errors.iter().filter(|o| o.sent < stopped_at).count();
    assert!(
        at_stop <= gray_senders,
        "{at_stop} gray-cohort errors of requests sent before the stop (at most {gray_senders} in flight):\n{}",
        describe(&errors)
    );
    let closed_after: Vec<Outcome> = errors
        .iter()
        .filter(|o| o.sent >= stopped_at && o.closed_gray())
        .cloned()
        .collect();
    let limit = streak + gray_senders - 1;
    assert!(
        (1..=limit).contains(&closed_after.len()),
        "{} gray-cohort errors routed to the hung version after the stop (expected 1..={limit}: the streak {streak} and {} more in flight):\n{}",
        closed_after.len(),
        gray_senders - 1,
        describe(&errors)
    );
    let after_shed: Vec<Outcome> = errors
        .iter()
        .filter(|o| o.sent >= shed.sent && !o.probe())
        .cloned()
        .collect();
    assert!(after_shed.is_empty(), "{}", describe(&after_shed));
    let last = gray.last().unwrap();
    assert!(
        served_closed(last),
        "gray is back: {}",
        describe(std::slice::from_ref(last))
    );
    eprintln!(
        "SIGSTOP: {} gray-cohort 504s ({at_stop} in flight at the stop, {} routed to the hung version after it, shed by {:?}), gray route timeout {:?}",
        errors.len(),
        closed_after.len(),
        shed.shed().unwrap(),
        timeouts.gray
    );
}

/// The stable sidecar with one model run at a time and at most two waiting; gray healthy.
fn start_with_small_stable_queue(shed_for_s: u64) -> (Mesh, usize) {
    let (config, v) = config(shed_for_s);
    let min_samples = setting(&v, &["latency", "min_samples"]);
    (
        start_mesh(&config, "0.25", &["--max-queue", "2"], 2),
        min_samples,
    )
}

/// Runs `lanes` (the gray cohort's first) through the mesh until gray has replied twice as
/// often as the latency test needs before it may shed (`min_samples`); every request was
/// answered, and gray (judged against the control of `situation`) was neither shed nor
/// failed. Every outcome.
fn gray_judged(mesh: &Mesh, lanes: &[Lane], min_samples: usize, situation: &str) -> Vec<Outcome> {
    let load = Load::start(&[mesh.envoy.url("/infer")], lanes, MAX_LOAD);
    load.wait_until(
        &format!("enough gray replies to judge {situation}"),
        Duration::from_secs(90),
        |all| lane(all, GRAY_LANE).len() >= 2 * min_samples,
    );
    let all = load.stop();
    assert_all_answered(&all);
    let gray = lane(&all, GRAY_LANE);
    let shed: Vec<Outcome> = gray.iter().filter(|o| !served_closed(o)).cloned().collect();
    assert!(
        shed.is_empty(),
        "gray was shed or failed {situation}:\n{}",
        describe(&shed)
    );
    all
}

/// No breaker opened by any trigger, and none open now.
fn assert_never_shed(mesh: &Mesh) {
    for (t, n) in breaches(mesh) {
        assert_eq!(n, 0.0, "breaker opened by {t:?}");
    }
    assert_eq!(metric(mesh, names::BREAKER_STATE), 0.0);
}

#[test]
fn a_slow_stable_is_a_slower_control_and_does_not_shed_gray() {
    let (mesh, min_samples) = start_with_small_stable_queue(30);
    // Two stable senders back to back keep its queue busy (each request waits for the
    // other's run), never full. Gray is judged against a control that is slower than itself.
    let lanes = [
        Lane::new(GRAY_COHORT, Duration::from_millis(400), 400),
        Lane::new(STABLE_COHORT, Duration::ZERO, 1000).senders(2),
    ];
    let all = gray_judged(&mesh, &lanes, min_samples, "against a slow stable");
    assert_no_stable_errors(&all);
    let gray = lane(&all, GRAY_LANE);
    // Every reply's latency is in the filter's sums once it has handed them over.
    let stable_replies = lane(&all, STABLE_LANE).len() as f64;
    let text = eventually(
        "the filter hands over every reply's latency",
        Duration::from_secs(5),
        || {
            let text = mesh.envoy.prometheus();
            let n = |name| exposition::value(&text, name).unwrap_or(0.0);
            let (g, s) = (
                n(names::GRAY_LATENCY_SAMPLES),
                n(names::STABLE_LATENCY_SAMPLES),
            );
            if g >= gray.len() as f64 && s >= stable_replies {
                Ok(text)
            } else {
                Err(format!("latency samples: gray {g}, stable {s}"))
            }
        },
    );
    let mean_ms = |sum: &str, n: &str| {
        exposition::value(&text, sum).unwrap_or(0.0)
            / exposition::value(&text, n).unwrap_or(1.0).max(1.0)
            / 1000.0
    };
    let gray_ms = mean_ms(names::GRAY_LATENCY_US, names::GRAY_LATENCY_SAMPLES);
    let stable_ms = mean_ms(names::STABLE_LATENCY_US, names::STABLE_LATENCY_SAMPLES);
    assert!(
        stable_ms > gray_ms,
        "the control was not the slower side: stable {stable_ms:.0} ms, gray {gray_ms:.0} ms"
    );
    assert_never_shed(&mesh);
    let evidence = format!("{}{{trigger=\"latency\"}}", names::EVIDENCE_PCT);
    assert_eq!(
        exposition::value(&text, &evidence),
        Some(0.0),
        "no evidence against gray's latency"
    );
    eprintln!(
        "slow stable: control {stable_ms:.0} ms vs gray {gray_ms:.0} ms, {} gray replies, no shed",
        gray.len()
    );
}

#[test]
fn an_overloaded_stable_answers_503_with_retry_after_and_does_not_shed_gray() {
    let (mesh, min_samples) = start_with_small_stable_queue(30);
    // Six stable senders against a queue of two. The sidecar refuses what it cannot queue at
    // once with 503 + Retry-After, which Envoy hands to the client unchanged; the filter
    // books each refusal as a control failure, not as a fast, empty control sample, so gray
    // (judged against that control) is not shed.
    let lanes = [
        Lane::new(GRAY_COHORT, Duration::from_millis(300), 400),
        Lane::new(STABLE_COHORT, Duration::from_millis(50), 4000).senders(6),
    ];
    let all = gray_judged(&mesh, &lanes, min_samples, "while stable is overloaded");
    let stable = lane(&all, STABLE_LANE);
    let refused: Vec<&Outcome> = stable.iter().filter(|o| o.status == Some(503)).collect();
    assert!(
        refused.len() * 4 >= stable.len(),
        "stable was not overloaded: {} of {} refused",
        refused.len(),
        stable.len()
    );
    for r in &refused {
        let one = describe(std::slice::from_ref(*r));
        assert_eq!(r.retry_after.as_deref(), Some("1"), "{one}");
        assert!(
            r.served_by(STABLE) && r.text.contains("queue_full"),
            "{one}"
        );
        let d = r.parsed().unwrap();
        assert!(d.side == Side::Stable && d.rule.is_none(), "{one}");
    }
    let other: Vec<Outcome> = stable
        .iter()
        .filter(|o| !(o.ok() || o.status == Some(503)))
        .cloned()
        .collect();
    assert!(other.is_empty(), "{}", describe(&other));
    let gray = lane(&all, GRAY_LANE);
    assert_never_shed(&mesh);
    eprintln!(
        "overloaded stable: {} of {} stable requests refused with 503 + Retry-After, {} gray replies, no shed",
        refused.len(),
        stable.len(),
        gray.len()
    );
}

#[test]
fn restarted_gateway_starts_closed_and_resheds_on_the_first_latched_gray_reply() {
    let (config, v) = fleet_config(120);
    let min_samples = setting(&v, &["box_count", "min_samples"]);
    // The incident's gray version: the same model at a 0.001 threshold, a flood of boxes.
    let mut fleet = Fleet::start(
        &config,
        sidecar(STABLE, "0.25"),
        sidecar(GRAY, "0.001"),
        1,
        2,
    );
    // One gray sender: each request is sent after the previous reply, so "gray replies
    // before the shed" counts what the gateway saw before deciding.
    let pace = Duration::from_millis(300);
    let lanes = [
        Lane::new(GRAY_COHORT, pace, 200),
        Lane::new(STABLE_COHORT, pace, 200),
    ];
    let until_shed = |load: Load| {
        load.wait_until("the cohort is shed", Duration::from_secs(90), |all| {
            let gray = lane(all, GRAY_LANE);
            gray.len() >= 3 && gray.iter().rev().take(3).all(|o| o.shed().is_some())
        });
        load.stop()
    };
    let gray_before_shed = |all: &[Outcome]| {
        let shed = first_shed_after(all, GRAY_LANE, Duration::ZERO).unwrap();
        let served = all
            .iter()
            .filter(|o| o.lane == GRAY_LANE && o.sent < shed.sent && o.served_by(GRAY))
            .count();
        (served, shed)
    };

    let load = Load::start(&fleet.targets(), &lanes, MAX_LOAD);
    let first = until_shed(load);
    let gw =
        |fleet: &Fleet| exposition::value(&fleet.gateways[0].prometheus(), names::BREAKER_STATE);
    assert_eq!(gw(&fleet), Some(1.0), "shedding");
    // The gateway latches the gray workload on its next tick.
    fleet.gateways[0].wait_metric(names::LATCH_CALLS, Duration::from_secs(10), |n| n >= 1.0);
    assert_eq!(
        exposition::value(&fleet.gateways[0].prometheus(), names::LATCH_FAILURES).unwrap_or(0.0),
        0.0,
        "the latch call failed"
    );
    let gray_pid = fleet.gray.proc.pid();
    let (served_first, shed_first) = gray_before_shed(&first);

    // A new Envoy process as gw-0, in front of the same sidecars.
    fleet.restart_gateway(0, &config, 2);
    // No breaker reading yet, or closed.
    assert!(
        matches!(gw(&fleet), None | Some(0.0)),
        "a new Envoy starts closed: {:?}",
        gw(&fleet)
    );
    let load = Load::start(&fleet.targets(), &lanes, MAX_LOAD);
    let second = until_shed(load);
    let (served_second, shed_second) = gray_before_shed(&second);

    for all in [&first, &second] {
        assert_all_answered(all);
        assert_no_stable_errors(all);
        let gray = lane(all, GRAY_LANE);
        assert!(failed(&gray).is_empty(), "{}", describe(&failed(&gray)));
        // Each Envoy sent the cohort to gray first.
        assert!(served_closed(&gray[0]), "{}", describe(&gray[..1]));
    }
    // The first Envoy learned it from its own evidence: at least min_samples gray replies.
    assert!(
        served_first >= min_samples,
        "shed after {served_first} gray replies, fewer than min_samples {min_samples}:\n{}",
        describe(&lane(&first, GRAY_LANE))
    );
    assert_ne!(
        shed_first.shed(),
        Some(Trigger::Latch),
        "shed on its own evidence"
    );
    // The new one re-learned it from the latch the sidecar kept: one gray reply.
    assert_eq!(
        served_second,
        1,
        "re-shed after {served_second} gray replies:\n{}",
        describe(&lane(&second, GRAY_LANE))
    );
    assert_eq!(shed_second.shed(), Some(Trigger::Latch));
    assert_eq!(
        fleet.gray.proc.pid(),
        gray_pid,
        "the sidecar was not restarted"
    );
    assert_eq!(gw(&fleet), Some(1.0), "shedding again");
    eprintln!(
        "Envoy restart: the first gateway shed after {served_first} gray replies by {:?} (min_samples {min_samples}); the restarted one after {served_second} by {:?}",
        shed_first.shed().unwrap(),
        shed_second.shed().unwrap()
    );
}
