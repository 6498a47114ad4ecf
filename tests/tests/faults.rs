//! Faults injected into a running mesh, each with its expected outcome checked: real
//! processes (front Envoys running the shipped `mesh-config/local/envoy.yaml` — the gray
//! route's fallback onto stable included — with the filter, both sidecars with the real model,
//! real photos), the canonical plugin configuration with only its clock shortened, and traffic
//! from a gray cohort (`crane-camera`, the rule's) and a stable cohort (`dock-camera`, no
//! rule) while the fault happens. A client-visible error is any reply but a 200.
//!
//! | fault | expected outcome |
//! |---|---|
//! | gray sidecar SIGKILLed mid-traffic, two gateways | no client-visible error in either cohort: each gray request that meets the dead sidecar is answered by stable (a fallback: `fallback` in the decision); each gateway sheds the cohort after at most `consecutive_failures` (5) of them, its incident record says `consecutive_failures`, and `grayguard_fallbacks_total` counts every one its clients saw; the sidecar restarted on the same ports gets half-open probes (one that meets it still down is one more fallback, not an error) and gray comes back on both |
//! | gray sidecar hung (SIGSTOP) | no client-visible error: every gray request that meets it is answered by stable after the per-try timeout, within the route's 5 s (the p99 is printed); the cohort is shed; SIGCONT and the probes bring gray back |
//! | a model that really hangs (the hang model's black frame) in `run.sh`'s mesh | no client-visible error; the sidecar's liveness (`/healthz`) fails within its stall deadline; run.sh's liveness probe (the Deployments', once a second) fails three times, it sends SIGTERM as a kubelet does, the stalled sidecar exits at once, and run.sh starts it again and it is ready |
//! | stable sidecar SIGKILLed | its cohort gets Envoy's 503, as without the fallback; nothing is retried, onto gray or anywhere; the gray cohort does not notice |
//! | stable sidecar slow (queueing) | gray is not shed: a slow control lowers gray's latency ratio, and the detector has no evidence against gray |
//! | stable sidecar overloaded | its bounded queue answers 503 + `Retry-After` at once, through Envoy, to the stable cohort; the filter books each refusal as a control failure (which can only make gray look better), never as a latency or box sample, so gray is not shed |
//! | a fallback that carries stable's own breach flag | the flag is stable's, not gray's: the filter books the fallback as one gray failure and reads nothing else of it, so a streak shorter than `consecutive_failures` sheds nothing |
//! | a body over the gray route's retry buffer (16 MiB) | not kept for a retry: a healthy gray gets it once and refuses it (413), stable never sees it; a hung gray is not hedged and the request ends at the route's timeout; a dead gray is refused before any of it was sent, so stable gets it (and refuses it, 413); a body within the buffer (8 MiB) to a hung gray is kept whole (the gray cluster's connection buffer is as large) and answered by stable at the per-try timeout |
//! | front Envoy restarted while shedding (a fleet of one, with the latch) | the breaker and the evidence were that Envoy's shared data and are gone; the latch lives in the gray sidecar and survives: the new Envoy starts closed, sends the cohort to gray once, and re-sheds on that first reply (`shed=latch`) instead of after `min_samples`; the sidecars are untouched |
//!
//! The sidecar's start-up failures (model file unreadable, `libonnxruntime` missing: one
//! clear message, exit non-zero) are in `sidecar_startup.rs`; `run.sh`'s restarts of a process
//! that exits in `local_mesh_supervision.rs`; the fallback at the moment of a crash or a hang
//! with requests in flight (the reply's headers, Envoy's retry budget) in `gray_fallback.rs`.
//!
//! Both sidecars run one ONNX Runtime thread and have their own latency watchdog and stall
//! deadline pushed out of the way, so what is tested is the filter's judgement and Envoy's
//! routes, not the sidecar's flag. The gray cohort is paced at one request per sender every
//! few hundred ms, more than one filter tick apart. Latencies are printed (`--nocapture`),
//! and asserted only as the loose bounds the configuration guarantees.

use std::time::{Duration, Instant};

use grayguard_client::exposition;
use grayguard_contract::metrics::{filter as names, sidecar as sidecar_names};
use grayguard_contract::record::{Event, Incident};
use grayguard_contract::{Side, Trigger, headers};
use grayguard_e2e::envoy::{Envoy, RouteTimeouts};
use grayguard_e2e::http;
use grayguard_e2e::load::{Lane, Latencies, Load, Outcome, describe};
use grayguard_e2e::local_mesh::{FRONT, GRAY_SIDECAR, Launch, LocalMesh};
use grayguard_e2e::mesh::{Fleet, Front, GRAY, STABLE, local_plugin_config, sidecar};
use grayguard_e2e::paths;
use grayguard_e2e::shipped::{
    FALLBACK_CLUSTER, per_try_timeout, retry_buffer_limit, stream_idle_timeout,
};
use grayguard_e2e::sidecar::{BLACK_PNG, Sidecar, SidecarBuilder};
use grayguard_e2e::wait::eventually;
use serde_json::Value;

/// The rule's cohort (routed to gray) and a cohort no rule matches (always stable).
const GRAY_COHORT: &str = "crane-camera";
const STABLE_COHORT: &str = "dock-camera";
const RULE: &str = "crane-cameras";
/// Lane indices in every test's load: gray cohort first.
const GRAY_LANE: usize = 0;
const STABLE_LANE: usize = 1;
/// Longest any test's traffic may run.
const MAX_LOAD: Duration = Duration::from_secs(150);

/// The canonical plugin configuration (mesh-config/local/envoy.yaml) with a shorter open
/// phase and more probes, so a fault-and-recovery cycle fits in seconds; every threshold
/// stays canonical, the latch included (for a fleet whose gray sidecar has its control
/// listener).
fn fleet_config(shed_for_s: u64) -> (String, Value) {
    let mut v: Value = serde_json::from_str(&local_plugin_config()).unwrap();
    let breach = v["breach"].as_object_mut().unwrap();
    breach.insert("shed_for_s".into(), shed_for_s.into());
    breach.insert("probe_percent".into(), 50.into());
    (v.to_string(), v)
}

/// [`fleet_config`] without the latch: these faults' outcomes are one gateway's judgement,
/// not a gray workload latched by an earlier shed.
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

/// A sidecar of `version` as these tests run it: [`sidecar`] (one ONNX Runtime thread, the
/// latency watchdog out of the way) with its stall deadline out of the way too, so that a
/// SIGSTOP is a hang the gateway sees, not one the sidecar flags after SIGCONT.
fn node(version: &str) -> SidecarBuilder {
    sidecar(version, "0.25").args(&["--stall-min-s", "600"])
}

/// `gateways` shipped front Envoys (`workers` worker threads each, plugin configuration
/// `config`) in front of `stable` and `gray`.
fn start(
    config: &str,
    stable: SidecarBuilder,
    gray: SidecarBuilder,
    gateways: usize,
    workers: u32,
) -> Fleet {
    Fleet::start_on(Front::Shipped, config, stable, gray, gateways, workers)
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

fn metric(envoy: &Envoy, name: &str) -> f64 {
    envoy.metric(name).unwrap_or(0.0)
}

/// Every breaker opening Envoy counted, by trigger.
fn breaches(envoy: &Envoy) -> Vec<(Trigger, f64)> {
    let text = envoy.prometheus();
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

/// The rule's fallbacks the gateway counted (`grayguard_fallbacks_total{rule}`).
fn fallbacks_counted(envoy: &Envoy) -> f64 {
    metric(envoy, &format!("{}{{rule=\"{RULE}\"}}", names::FALLBACKS))
}

/// Waits until the gateway has counted `n` fallbacks (the filter hands its counters over on
/// its tick), failing the test if it counts another number.
fn assert_fallbacks_counted(envoy: &Envoy, n: usize) {
    eventually(
        "the gateway counts every fallback its clients saw",
        Duration::from_secs(10),
        || match fallbacks_counted(envoy) {
            c if c == n as f64 => Ok(()),
            c => Err(format!("{c} counted, {n} seen by the clients")),
        },
    );
}

/// The incident records of a gateway whose shedding started.
fn shed_starts(envoy: &Envoy) -> Vec<Incident> {
    envoy
        .incident_records()
        .into_iter()
        .filter(|i| i.event == Event::ShedStart)
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

/// No client of any lane saw an error, and every lane sent something.
fn assert_no_client_errors(all: &[Outcome], lanes: usize) {
    for l in 0..lanes {
        assert!(all.iter().any(|o| o.lane == l), "lane {l} sent nothing");
    }
    let errors = failed(all);
    assert!(
        errors.is_empty(),
        "client-visible errors:\n{}",
        describe(&errors)
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

/// A fallback as the client sees it: a 200 from stable on Envoy's second attempt.
fn assert_fallback(o: &Outcome) {
    assert!(
        o.fallback() && o.ok() && o.served_by(STABLE) && o.attempts == Some(2),
        "not a fallback: {}",
        describe(std::slice::from_ref(o))
    );
}

/// The SIGKILL test's lanes: the gray cohort through each gateway, then the stable cohort
/// through each.
const KILL_GATEWAYS: usize = 2;

#[test]
fn a_killed_gray_costs_no_client_an_error_and_each_gateway_sheds_after_its_streak_of_fallbacks() {
    let (config, v) = fleet_config(3);
    let streak = setting(&v, &["consecutive_failures"]);
    let mut fleet = start(&config, node(STABLE), node(GRAY), KILL_GATEWAYS, 2);
    let pace = Duration::from_millis(400);
    let gray_lanes: Vec<usize> = (0..KILL_GATEWAYS).collect();
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
    fleet.gray.replace(Fleet::gray(node(GRAY)));
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
    assert_no_client_errors(&all, lanes.len());
    let mut report = Vec::new();
    for (&l, shed) in gray_lanes.iter().zip(&sheds) {
        let gray = lane(&all, l);
        // Between the crash and this gateway's shed: every reply is stable's answer to a
        // request routed to gray (unless gray sent it just before it died), its streak and
        // at most one more: the filter trips on its tick (the workers' merged streaks), and
        // the sender sends again as soon as the streak's last reply came. The other gateway's
        // shed cannot help here: its latch call met the dead sidecar.
        let window: Vec<Outcome> = gray
            .iter()
            .filter(|o| o.done >= killed_at && o.sent < shed.sent)
            .filter(|o| !(o.sent < killed_at && o.served_by(GRAY)))
            .cloned()
            .collect();
        for o in &window {
            assert_fallback(o);
        }
        assert!(
            (1..=streak + 1).contains(&window.len()),
            "gw-{l}: {} fallbacks between the crash and the shed (expected 1..={}):\n{}",
            window.len(),
            streak + 1,
            describe(&window)
        );
        assert_eq!(
            shed.shed(),
            Some(Trigger::ConsecutiveFailures),
            "gw-{l} shed by {}",
            describe(std::slice::from_ref(shed))
        );
        let gw = &fleet.gateways[l];
        let record = shed_starts(gw).into_iter().next().expect("a shed record");
        assert_eq!(record.trigger, Trigger::ConsecutiveFailures, "{record:?}");
        assert_eq!(record.rule, RULE);
        assert_eq!(record.gateway.as_deref(), Some(format!("gw-{l}").as_str()));
        assert!(record.consecutive_failures as usize >= streak, "{record:?}");
        // After the shed: shed to stable, probes, and probes that met the sidecar before it
        // was back (fallbacks), then gray again; never an error (checked above).
        let probe_fallbacks = gray
            .iter()
            .filter(|o| o.sent >= shed.sent && o.fallback())
            .count();
        let last = gray.last().unwrap();
        assert!(
            served_closed(last),
            "gw-{l}: gray is back: {}",
            describe(std::slice::from_ref(last))
        );
        let seen = all
            .iter()
            .filter(|o| o.gateway == l && o.fallback())
            .count();
        assert_fallbacks_counted(gw, seen);
        assert_eq!(
            gw.cluster_stat(FALLBACK_CLUSTER, "upstream_rq_retry_overflow"),
            0.0
        );
        report.push(format!(
            "gw-{l}: {} fallbacks before the shed (streak {streak}), shed by {:?} (record: {:?}), {probe_fallbacks} probes answered by stable after it",
            window.len(),
            shed.shed().unwrap(),
            record.trigger
        ));
    }
    let affected = Latencies::of(all.iter().filter(|o| o.fallback()).map(Outcome::latency));
    eprintln!(
        "gray SIGKILL: 0 client-visible errors of {} requests; {}; fallbacks' latency {affected}",
        all.len(),
        report.join("; ")
    );
}

#[test]
fn a_hung_gray_costs_no_client_an_error_is_shed_and_comes_back_after_sigcont() {
    let (config, v) = config(3);
    let streak = setting(&v, &["consecutive_failures"]);
    let per_try = per_try_timeout();
    let route = RouteTimeouts::local().gray;
    // One worker: the bounds below count requests against one breaker, without the up to
    // one sync interval (100 ms) in which a second worker has not yet seen a trip.
    let fleet = start(&config, node(STABLE), node(GRAY), 1, 1);
    // Two gray senders, so that the hung version's per-try timeouts fill the streak two at a
    // time; one stable sender: stable takes gray's share on top of its own, on one thread,
    // each within what is left of the route's timeout after the per-try one.
    let gray_senders = 2;
    let load = Load::start(
        &fleet.targets(),
        &[
            Lane::new(GRAY_COHORT, Duration::from_secs(2), 400).senders(gray_senders),
            Lane::new(STABLE_COHORT, Duration::from_secs(2), 400),
        ],
        MAX_LOAD,
    );
    load.wait_until("gray serves its cohort", Duration::from_secs(30), |all| {
        closed_gray_after(all, GRAY_LANE, Duration::ZERO) >= 6
    });

    // The hang: the process keeps its socket (connections are accepted by the kernel) but
    // never answers.
    let stopped_at = load.now();
    fleet.gray.proc.signal("STOP");
    let all = load.wait_until(
        "the cohort is shed",
        (per_try + Duration::from_secs(3)) * streak as u32 + Duration::from_secs(10),
        |all| first_shed_after(all, GRAY_LANE, stopped_at).is_some(),
    );
    let shed = first_shed_after(&all, GRAY_LANE, stopped_at).unwrap();
    fleet.gray.proc.signal("CONT");
    let resumed_at = load.now();
    load.wait_until(
        "gray serves its cohort again",
        Duration::from_secs(60),
        |all| closed_gray_after(all, GRAY_LANE, resumed_at) >= 3,
    );
    let all = load.stop();

    assert_all_answered(&all);
    assert_no_client_errors(&all, 2);
    let gray = lane(&all, GRAY_LANE);
    let affected: Vec<Outcome> = gray.iter().filter(|o| o.fallback()).cloned().collect();
    assert!(!affected.is_empty(), "the hang was not seen");
    for o in &affected {
        assert_fallback(o);
        // Stable was asked once gray had not answered within the per-try timeout, and
        // answered within the route's timeout.
        assert!(
            o.latency() >= per_try && o.latency() <= route,
            "answered outside [{per_try:?}, {route:?}]: {}",
            describe(std::slice::from_ref(o))
        );
        assert!(
            o.done >= stopped_at,
            "{}",
            describe(std::slice::from_ref(o))
        );
    }
    // The streak counts failures of requests sent after the newest success, so the requests
    // already on their way when the process stopped (one per sender) are apart from it; of
    // those sent later, the streak's reach the hung version, plus what the other senders had
    // in flight when it filled, plus one per sender sent before the filter's next tick trips
    // the breaker (a sender sends again as soon as its fallback is answered).
    let at_stop = affected.iter().filter(|o| o.sent < stopped_at).count();
    assert!(
        at_stop <= gray_senders,
        "{at_stop} fallbacks of requests sent before the stop (at most {gray_senders} in flight):\n{}",
        describe(&affected)
    );
    let routed_after = affected
        .iter()
        .filter(|o| o.sent >= stopped_at && o.sent < shed.sent)
        .count();
    let limit = streak + 2 * gray_senders - 1;
    assert!(
        (1..=limit).contains(&routed_after),
        "{routed_after} fallbacks routed to the hung version after the stop (expected 1..={limit}: the streak {streak}, {} more in flight, {gray_senders} before the tick):\n{}",
        gray_senders - 1,
        describe(&affected)
    );
    assert_eq!(shed.shed(), Some(Trigger::ConsecutiveFailures));
    let gw = &fleet.gateways[0];
    let record = shed_starts(gw).into_iter().next().expect("a shed record");
    assert_eq!(record.trigger, Trigger::ConsecutiveFailures, "{record:?}");
    assert_fallbacks_counted(gw, affected.len());
    let last = gray.last().unwrap();
    assert!(
        served_closed(last),
        "gray is back: {}",
        describe(std::slice::from_ref(last))
    );
    let latencies = Latencies::of(affected.iter().map(Outcome::latency));
    eprintln!(
        "gray SIGSTOP: 0 client-visible errors of {} requests; {} fallbacks ({at_stop} in flight at the stop, {routed_after} routed to the hung version after it), shed by {:?}; fallbacks' latency {latencies} (per-try timeout {:.1} s, route {:.1} s)",
        all.len(),
        affected.len(),
        shed.shed().unwrap(),
        per_try.as_secs_f64(),
        route.as_secs_f64()
    );
}

#[test]
fn a_model_that_really_hangs_in_the_local_mesh_fails_its_liveness_and_is_restarted_with_no_client_error()
 {
    // run.sh's mesh with the hang model as the gray version, at stable's threshold, its stall
    // deadline shortened as in sidecar_stall.rs (4 warm-up medians, at least 2 s).
    let hang = paths::hang_model();
    let mesh = LocalMesh::start(
        Launch::Terminal,
        &[
            ("GRAYGUARD_RUN_BACKOFF_S", "1"),
            // The kubelet's probe as shipped (3 failures in a row), once a second instead of
            // every 10 s.
            ("GRAYGUARD_RUN_LIVENESS_PERIOD_S", "1"),
            ("GRAYGUARD_RUN_LIVENESS_TIMEOUT_S", "1"),
            ("GRAYGUARD_GRAY_MODEL", hang.to_str().unwrap()),
            (
                "GRAYGUARD_GRAY_ARGS",
                "--conf 0.25 --warmup-runs 3 --stall-factor 4 --stall-min-s 2",
            ),
        ],
    );
    let gray_pid = mesh.pid(GRAY).unwrap();
    let deadline_s = exposition::value(
        &http::get(&format!("{GRAY_SIDECAR}/metrics"))
            .unwrap()
            .text(),
        sidecar_names::STALL_DEADLINE_SECONDS,
    )
    .expect("the stall deadline gauge");
    // Light traffic: while gray's stuck run spins one of the two cores, stable alone answers
    // both cohorts, each of gray's after the per-try timeout.
    let load = Load::start(
        &[FRONT.to_string()],
        &[
            Lane::new(GRAY_COHORT, Duration::from_secs(1), 400),
            Lane::new(STABLE_COHORT, Duration::from_secs(2), 400),
        ],
        Duration::from_secs(240),
    );
    load.wait_until("gray serves its cohort", Duration::from_secs(60), |all| {
        closed_gray_after(all, GRAY_LANE, Duration::ZERO) >= 3
    });

    // A black frame from a crane camera: gray's model run never returns.
    let sent = Instant::now();
    let hung_at = load.now();
    let frame = std::thread::spawn(|| {
        http::post(
            FRONT,
            &[
                ("content-type", "image/png"),
                (headers::DEVICE_TYPE, GRAY_COHORT),
                (headers::DEVICE_ID, "crane-black-frame"),
            ],
            BLACK_PNG,
        )
    });
    let failed_at = http::wait_for_status(
        &format!("{GRAY_SIDECAR}/healthz"),
        503,
        Duration::from_secs_f64(deadline_s) + Duration::from_secs(30),
    );
    let liveness_s = (failed_at - sent).as_secs_f64();
    // The kubelet's part, played by run.sh: three failed liveness probes in a row, SIGTERM (a
    // stalled sidecar exits at once instead of draining), and the restart after its back-off.
    eventually(
        "run.sh restarts the gray sidecar and it is ready",
        Duration::from_secs(120),
        || match mesh.pid(GRAY) {
            Some(pid)
                if pid != gray_pid
                    && http::get(&format!("{GRAY_SIDECAR}/healthz"))
                        .is_ok_and(|r| r.status == 200) =>
            {
                Ok(())
            }
            pid => Err(format!("pid {pid:?}; run.sh's log:\n{}", mesh.log())),
        },
    );
    let restarted_s = sent.elapsed().as_secs_f64();
    // What follows is the canonical breaker's (30 s open, then 10 % probes until three are
    // healthy), which the faults above and filter_shedding.rs cover: its requests meanwhile
    // are answered too.
    let stop_at = load.now();
    load.wait_until(
        "the gray cohort answered after the restart",
        Duration::from_secs(30),
        |all| {
            all.iter()
                .filter(|o| o.lane == GRAY_LANE && o.sent >= stop_at && o.ok())
                .count()
                >= 2
        },
    );
    let all = load.stop();

    let frame = frame.join().unwrap().expect("the black frame is answered");
    assert_eq!(frame.status, 200, "{}", frame.text());
    assert_eq!(frame.header(headers::MODEL_VERSION), Some(STABLE));
    assert_all_answered(&all);
    assert_no_client_errors(&all, 2);
    assert_eq!(mesh.restarts(GRAY), 1);
    let log = mesh.log();
    for line in [
        "[run] v10-gray failed its liveness probe (http://127.0.0.1:8082/healthz: 503), 3 of 3",
        "[run] v10-gray is not alive: SIGTERM",
        "[run] v10-gray exited (exit status 0)",
    ] {
        assert!(log.contains(line), "no {line:?} in run.sh's log:\n{log}");
    }
    assert!(
        !log.contains("v10-gray did not exit within"),
        "a stalled sidecar exits on SIGTERM:\n{log}"
    );
    assert!(
        !log.contains("v9-prod failed its liveness probe"),
        "stable stayed alive:\n{log}"
    );
    assert!(
        mesh.component_log(GRAY)
            .contains("shutting down while stalled"),
        "{}",
        mesh.component_log(GRAY)
    );
    let affected: Vec<Outcome> = all
        .iter()
        .filter(|o| o.sent >= hung_at && o.fallback())
        .cloned()
        .collect();
    assert!(!affected.is_empty(), "no request met the hung model");
    let latencies = Latencies::of(affected.iter().map(Outcome::latency));
    eprintln!(
        "hung model in run.sh's mesh: 0 client-visible errors of {} requests; liveness 503 {liveness_s:.2} s after the black frame (stall deadline {deadline_s:.2} s), restarted by run.sh's liveness probe and ready {restarted_s:.1} s after it; {} fallbacks' latency {latencies}",
        all.len(),
        affected.len()
    );
}

#[test]
fn a_killed_stable_fails_its_own_cohort_and_nothing_is_retried_onto_gray() {
    let mut fleet = start(&config(30).0, node(STABLE), node(GRAY), 1, 2);
    let load = Load::start(
        &fleet.targets(),
        &[
            Lane::new(GRAY_COHORT, Duration::from_secs(1), 200),
            Lane::new(STABLE_COHORT, Duration::from_secs(1), 200),
        ],
        MAX_LOAD,
    );
    load.wait_until("both cohorts served", Duration::from_secs(60), |all| {
        [GRAY_LANE, STABLE_LANE]
            .iter()
            .all(|&l| all.iter().filter(|o| o.lane == l && o.ok()).count() >= 2)
    });
    fleet.stable.proc.crash();
    let crashed = load.now();
    load.wait_for_replies_after(
        "the stable cohort after the crash",
        Duration::from_secs(60),
        STABLE_LANE,
        crashed,
        4,
    );
    let all = load.stop();

    // The stable cohort gets Envoy's 503 for every request after the crash, as without the
    // fallback, and none of them from gray.
    let stable_after: Vec<&Outcome> = all
        .iter()
        .filter(|o| o.lane == STABLE_LANE && o.sent > crashed)
        .collect();
    for o in &stable_after {
        let one = describe(std::slice::from_ref(*o));
        assert_eq!(o.status, Some(503), "{one}");
        assert!(!o.served_by(GRAY), "{one}");
    }
    // The gray cohort does not notice.
    let gray_cohort: Vec<Outcome> = all
        .iter()
        .filter(|o| o.lane == GRAY_LANE && !served_closed(o))
        .cloned()
        .collect();
    assert!(gray_cohort.is_empty(), "{}", describe(&gray_cohort));
    // Nothing retried: gray served exactly its cohort, and no cluster retried anything.
    let served = lane(&all, GRAY_LANE).len();
    let counted = exposition::value(
        &fleet.gray.metrics(),
        &format!("{}{{status=\"200\"}}", sidecar_names::REQUESTS_TOTAL),
    )
    .unwrap();
    assert_eq!(counted, served as f64, "gray answered only its own cohort");
    for cluster in [FALLBACK_CLUSTER, STABLE, GRAY] {
        assert_eq!(
            fleet.gateways[0].cluster_stat(cluster, "upstream_rq_retry"),
            0.0,
            "{cluster} retried"
        );
    }
    eprintln!(
        "stable SIGKILL: {} stable-cohort requests after the crash, all Envoy's 503; {served} gray-cohort replies, all from gray, 0 retries",
        stable_after.len()
    );
}

/// The stable sidecar with one model run at a time and at most two waiting; gray healthy.
fn start_with_small_stable_queue(shed_for_s: u64) -> (Fleet, usize) {
    let (config, v) = config(shed_for_s);
    let min_samples = setting(&v, &["latency", "min_samples"]);
    (
        start(
            &config,
            node(STABLE).args(&["--max-queue", "2"]),
            node(GRAY),
            1,
            2,
        ),
        min_samples,
    )
}

/// Runs `lanes` (the gray cohort's first) through the mesh until gray has replied twice as
/// often as the latency test needs before it may shed (`min_samples`); every request was
/// answered, and gray (judged against the control of `situation`) was neither shed nor
/// failed. Every outcome.
fn gray_judged(fleet: &Fleet, lanes: &[Lane], min_samples: usize, situation: &str) -> Vec<Outcome> {
    let load = Load::start(&fleet.targets(), lanes, MAX_LOAD);
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
fn assert_never_shed(envoy: &Envoy) {
    for (t, n) in breaches(envoy) {
        assert_eq!(n, 0.0, "breaker opened by {t:?}");
    }
    assert_eq!(metric(envoy, names::BREAKER_STATE), 0.0);
}

#[test]
fn a_slow_stable_is_a_slower_control_and_does_not_shed_gray() {
    let (fleet, min_samples) = start_with_small_stable_queue(30);
    let envoy = &fleet.gateways[0];
    // Two stable senders back to back keep its queue busy (each request waits for the
    // other's run), never full. Gray is judged against a control that is slower than itself.
    let lanes = [
        Lane::new(GRAY_COHORT, Duration::from_millis(400), 400),
        Lane::new(STABLE_COHORT, Duration::ZERO, 1000).senders(2),
    ];
    let all = gray_judged(&fleet, &lanes, min_samples, "against a slow stable");
    assert_no_stable_errors(&all);
    let gray = lane(&all, GRAY_LANE);
    // Every reply's latency is in the filter's sums once it has handed them over.
    let stable_replies = lane(&all, STABLE_LANE).len() as f64;
    let text = eventually(
        "the filter hands over every reply's latency",
        Duration::from_secs(5),
        || {
            let text = envoy.prometheus();
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
    assert_never_shed(envoy);
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
    let (fleet, min_samples) = start_with_small_stable_queue(30);
    // Six stable senders against a queue of two. The sidecar refuses what it cannot queue at
    // once with 503 + Retry-After, which Envoy hands to the client unchanged (stable is never
    // retried); the filter books each refusal as a control failure, not as a fast, empty
    // control sample, so gray (judged against that control) is not shed.
    let lanes = [
        Lane::new(GRAY_COHORT, Duration::from_millis(300), 400),
        Lane::new(STABLE_COHORT, Duration::from_millis(50), 4000).senders(6),
    ];
    let all = gray_judged(&fleet, &lanes, min_samples, "while stable is overloaded");
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
        assert_eq!(r.attempts, Some(1), "{one}");
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
    assert_never_shed(&fleet.gateways[0]);
    eprintln!(
        "overloaded stable: {} of {} stable requests refused with 503 + Retry-After, {} gray replies, no shed",
        refused.len(),
        stable.len(),
        gray.len()
    );
}

#[test]
fn stable_s_breach_flag_on_a_fallback_is_not_read_as_gray_s() {
    let (config, v) = config(30);
    let streak = setting(&v, &["consecutive_failures"]);
    // Stable flags every reply: a memory fraction every process exceeds, held for no time.
    let stable = node(STABLE).args(&[
        "--watchdog-memory-fraction",
        "0.000001",
        "--watchdog-memory-hold-s",
        "0",
        "--memory-poll-ms",
        "50",
    ]);
    let fleet = start(&config, stable, node(GRAY), 1, 1);
    let envoy = &fleet.gateways[0];
    let flagged = format!("{}{{reason=\"memory\"}}", sidecar_names::BREACH_ACTIVE);
    eventually(
        "stable flags a memory breach",
        Duration::from_secs(10),
        || exposition::value(&fleet.stable.metrics(), &flagged) == Some(1.0),
    );
    let crane = |n: usize| {
        let load = Load::start(
            &fleet.targets(),
            &[Lane::new(GRAY_COHORT, Duration::ZERO, n)],
            MAX_LOAD,
        );
        load.wait_until("the crane requests", Duration::from_secs(90), |all| {
            all.len() == n
        });
        load.stop()
    };

    // Gray hangs for one request short of the streak: each is answered by stable, flag and
    // all, one after another.
    fleet.gray.proc.signal("STOP");
    let fallbacks = crane(streak - 1);
    fleet.gray.proc.signal("CONT");
    // It first works off what it was sent while stopped (answers nobody waits for any more).
    eventually(
        "gray works off its backlog",
        Duration::from_secs(60),
        || exposition::value(&fleet.gray.metrics(), sidecar_names::IN_FLIGHT) == Some(0.0),
    );
    for o in &fallbacks {
        assert_fallback(o);
        assert!(
            o.breach.is_some(),
            "stable's flag: {}",
            describe(&fallbacks)
        );
    }
    // Gray answers again, to a breaker that never opened: neither stable's flag nor the
    // fallbacks (fewer than the streak) were gray's breach.
    let after = crane(3);
    for o in &after {
        assert!(served_closed(o), "{}", describe(&after));
    }
    assert_never_shed(envoy);
    assert_eq!(metric(envoy, &names::breaches(Trigger::Flag)), 0.0);
    assert_fallbacks_counted(envoy, fallbacks.len());
    eprintln!(
        "stable's flag on a fallback: {} fallbacks flagged {:?} by stable, no shed, gray closed after",
        fallbacks.len(),
        fallbacks[0].breach.as_deref().unwrap_or("-")
    );
}

/// What a client that uploads a body saw: a reply, or the connection reset while it was still
/// sending (a server may answer, and close, before it has read a body it refuses).
type Upload = Result<http::Response, String>;

/// POSTs `body` as a crane camera's JPEG through `envoy`, the client waiting up to `timeout`.
fn post_crane(envoy: &Envoy, body: &[u8], timeout: Duration) -> (Duration, Upload) {
    let sent = Instant::now();
    let r = http::request_within(
        "POST",
        &envoy.url("/infer"),
        &[
            ("content-type", "image/jpeg"),
            (headers::DEVICE_TYPE, GRAY_COHORT),
            (headers::DEVICE_ID, "crane-large-upload"),
        ],
        Some(body),
        timeout,
    )
    .map_err(|e| e.to_string());
    (sent.elapsed(), r)
}

fn summary(r: &Upload) -> String {
    match r {
        Ok(r) => format!(
            "{} from {} ({} attempt(s), decision {:?})",
            r.status,
            r.header(headers::MODEL_VERSION).unwrap_or("Envoy"),
            r.header(headers::ENVOY_ATTEMPT_COUNT).unwrap_or("-"),
            r.header(headers::DECISION).unwrap_or("-")
        ),
        Err(e) => format!("no reply ({e})"),
    }
}

/// A sidecar's `/infer` replies with `status`.
fn replies(sidecar: &Sidecar, status: u16) -> f64 {
    let selector = format!("{}{{status=\"{status}\"}}", sidecar_names::REQUESTS_TOTAL);
    exposition::value(&sidecar.metrics(), &selector).unwrap_or(0.0)
}

#[test]
fn a_body_over_the_retry_buffer_is_not_kept_for_a_retry() {
    let mut fleet = start(&config(30).0, node(STABLE), node(GRAY), 1, 2);
    let body = vec![0xffu8; retry_buffer_limit() + (1 << 20)];
    let stable_requests =
        || exposition::value(&fleet.stable.metrics(), sidecar_names::REQUESTS_TOTAL).unwrap_or(0.0);

    // A healthy gray gets it once and refuses it (413), as any sidecar does
    // (--max-body-bytes); Envoy gave up keeping it for a retry, and stable never saw it. The
    // client gets the 413, or a reset when gray answered while it was still sending.
    let (_, healthy) = post_crane(&fleet.gateways[0], &body, http::TIMEOUT);
    if let Ok(r) = &healthy {
        assert_eq!(r.status, 413, "{}", summary(&healthy));
        assert_eq!(r.header(headers::MODEL_VERSION), Some(GRAY));
        assert_eq!(r.header(headers::ENVOY_ATTEMPT_COUNT), Some("1"));
    }
    eventually("gray refused it once", Duration::from_secs(10), || {
        replies(&fleet.gray, 413) == 1.0
    });
    assert_eq!(stable_requests(), 0.0);
    let abandoned = fleet.gateways[0].cluster_stat(FALLBACK_CLUSTER, "retry_or_shadow_abandoned");
    assert!(abandoned >= 1.0, "retry_or_shadow_abandoned {abandoned}");

    // A hung gray: nothing to retry with, so no hedge at the per-try timeout. The gray
    // cluster's 16 MiB connection buffer takes nearly all of it and the request ends at the
    // route's timeout (counted from the end of the request); were the upload to stall (gray
    // reads nothing), at the listener's stream idle timeout. Stable never sees it.
    let idle = stream_idle_timeout();
    let route = RouteTimeouts::local().gray;
    fleet.gray.proc.signal("STOP");
    let (took, hung) = post_crane(&fleet.gateways[0], &body, idle + Duration::from_secs(15));

    assert!(took >= route, "{} after {took:?}", summary(&hung));
    if let Ok(r) = &hung {
        assert!([408, 504].contains(&r.status), "{}", summary(&hung));
        assert_eq!(r.header(headers::MODEL_VERSION), None);
    }
    assert_eq!(stable_requests(), 0.0, "stable never sees it");

    // A body within the retry buffer, though far over Envoy's default connection buffers
    // (1 MiB) and the kernel's socket buffers, is kept whole while the hung gray reads
    // none of it: the per-try timeout hands it to stable (which refuses these bytes, 400,
    // as gray would have).
    let within = vec![0xffu8; retry_buffer_limit() / 2];
    let (within_took, kept) = post_crane(&fleet.gateways[0], &within, http::TIMEOUT);
    fleet.gray.proc.signal("CONT");
    let kept_reply = kept
        .as_ref()
        .unwrap_or_else(|e| panic!("the body within the retry buffer: no reply ({e})"));
    assert_eq!(
        (
            kept_reply.header(headers::MODEL_VERSION),
            kept_reply.header(headers::ENVOY_ATTEMPT_COUNT)
        ),
        (Some(STABLE), Some("2")),
        "{}",
        summary(&kept)
    );
    assert!(
        within_took < route,
        "{} after {within_took:?}",
        summary(&kept)
    );

    // A dead gray refuses the connection before a byte of the body went to it: the retry
    // is under way before Envoy stops keeping the body, and stable refuses it (413) as gray
    // would have.
    fleet.gray.proc.crash();
    let (_, dead) = post_crane(&fleet.gateways[0], &body, http::TIMEOUT);
    if let Ok(r) = &dead {
        assert_eq!(r.status, 413, "{}", summary(&dead));
    }
    eventually("stable refused it once", Duration::from_secs(10), || {
        replies(&fleet.stable, 413) == 1.0
    });
    eprintln!(
        "body over the retry buffer ({} MiB): healthy gray: {}; hung gray: {} after {:.1} s; dead gray: {}; a {} MiB body within it to the hung gray: {} after {:.1} s",
        body.len() >> 20,
        summary(&healthy),
        summary(&hung),
        took.as_secs_f64(),
        summary(&dead),
        within.len() >> 20,
        summary(&kept),
        within_took.as_secs_f64()
    );
}

#[test]
fn restarted_gateway_starts_closed_and_resheds_on_the_first_latched_gray_reply() {
    let (config, v) = fleet_config(120);
    let min_samples = setting(&v, &["box_count", "min_samples"]);
    // The incident's gray version: the same model at a 0.001 threshold, a flood of boxes.
    let mut fleet = start(&config, node(STABLE), sidecar(GRAY, "0.001"), 1, 2);
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
    let gw = |fleet: &Fleet| fleet.gateways[0].metric(names::BREAKER_STATE);
    assert_eq!(gw(&fleet), Some(1.0), "shedding");
    // The gateway latches the gray workload on its next tick.
    fleet.gateways[0].wait_metric(names::LATCH_CALLS, Duration::from_secs(10), |n| n >= 1.0);
    assert_eq!(metric(&fleet.gateways[0], names::LATCH_FAILURES), 0.0);
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
        assert_no_client_errors(all, lanes.len());
        // Each Envoy sent the cohort to gray first.
        let gray = lane(all, GRAY_LANE);
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
