//! 3. Convergence of a fleet of gateways (the mesh-wide latch): `n` gateways with the
//!    canonical plugin configuration in front of one stable and one oversensitive gray
//!    sidecar. Gateway 0 carries the stable cohort and the gray cohort, one request after
//!    another, until it trips on its own evidence; every other gateway meanwhile carries a
//!    light gray-only cohort (one request, then a pause of [`LIGHT_GAP`]), which gives it no
//!    stable baseline to trip on by itself. Pollers watch gateway 0's breaker gauge and the
//!    gray workload's latch list. Reported per run, from the trip (gateway 0's breaching
//!    reply, as in section 2): when the latch was live on the workload; when each other
//!    gateway shed, that is when it got the gray reply carrying the latch (the last gray
//!    reply before its first shed reply: the filter opens the breaker on that reply), with the
//!    last of them as the fleet's convergence time (target: within 1 s); and how many gray
//!    replies each other gateway served after the trip (target: at most 1). A gateway learns
//!    of the latch from its next gray reply, so its time is bounded by the latch's own delay
//!    plus its traffic gap plus one gray reply, also reported.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use grayguard_contract::latch::PATH;
use grayguard_contract::{Decision, Note, headers};
use grayguard_e2e::envoy::TEST_LATCH_TOKEN;
use grayguard_e2e::mesh::{Fleet, GRAY, STABLE, local_plugin_config};
use grayguard_e2e::sidecar::SidecarBuilder;

use super::{BASELINE_REQUESTS, MAX_GRAY_PER_RUN, percentile, signed_ms, sorted, watch_gauge};

/// Pause of a light gateway's client between a reply and its next request: little crane
/// traffic, the replica the latch is for.
const LIGHT_GAP: Duration = Duration::from_millis(250);
/// ONNX Runtime threads of the gray sidecar, which every gateway's gray traffic shares.
const GRAY_THREADS: &str = "1";
/// Poll period of the gauges and of the latch list (one poller per gateway).
const POLL: Duration = Duration::from_millis(5);
/// How long the light clients go on after gateway 0 shed, at most.
const AFTER_TRIP: Duration = Duration::from_secs(5);

/// One reply a client got: when its request went out and the reply came in, and what it was.
#[derive(Debug, Clone, Copy)]
struct Reply {
    sent: Instant,
    received: Instant,
    gray: bool,
    probe: bool,
    shed: bool,
}

fn reply(fleet: &Fleet, gw: usize, device_type: &str, i: usize, photo: &[u8]) -> Reply {
    let sent = Instant::now();
    let r = fleet.infer(
        gw,
        device_type,
        &format!("{device_type}-{}", i % 4),
        photo,
        &[],
    );
    let received = Instant::now();
    assert_eq!(
        r.status,
        200,
        "gw-{gw}: a client saw an error: {}",
        r.text()
    );
    let text = r.header(headers::DECISION).unwrap_or_default();
    let d = Decision::parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
    Reply {
        sent,
        received,
        gray: r.header(headers::MODEL_VERSION) == Some(GRAY),
        probe: d.note == Some(Note::Probe),
        shed: d.shed().is_some(),
    }
}

/// When the gray workload first lists a latch, polled on its control port until `stop`.
fn watch_latch(url: String, stop: Arc<AtomicBool>) -> thread::JoinHandle<Option<Instant>> {
    thread::spawn(move || {
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(2))
            .build();
        let bearer = format!("Bearer {TEST_LATCH_TOKEN}");
        while !stop.load(Ordering::Relaxed) {
            let listed = agent
                .get(&url)
                .set("authorization", &bearer)
                .call()
                .ok()
                .and_then(|r| r.into_string().ok())
                .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok());
            if listed.is_some_and(|v| v["latches"].as_array().is_some_and(|l| !l.is_empty())) {
                return Some(Instant::now());
            }
            thread::sleep(POLL);
        }
        None
    })
}

/// What one run measured, in ms from the trip.
struct Run {
    latch_live: f64,
    /// When each other gateway shed (got the latched gray reply), in gateway order.
    opened: Vec<f64>,
    /// Each other gateway's gray (non-probe) replies received after the trip.
    gray_after: Vec<usize>,
    /// Client latency of the light gateways' gray replies: what bounds "open" from below,
    /// since a gateway learns of the latch from its next gray reply.
    gray_latency: Vec<f64>,
}

fn one_run(n: usize, photos: &[Vec<u8>]) -> Result<Run, String> {
    // The sidecars' own latency watchdog out of the way, as in section 2.
    let sidecar = |version: &str, conf: &str, threads: &str| {
        SidecarBuilder::new(version).args(&[
            "--threads",
            threads,
            "--watchdog-latency-budget-ms",
            "60000",
            "--conf",
            conf,
        ])
    };
    let fleet = Fleet::start(
        &local_plugin_config(),
        sidecar(STABLE, "0.25", "1"),
        sidecar(GRAY, "0.001", GRAY_THREADS),
        n,
        1,
    );
    let photo = |i: usize| photos[i % photos.len()].as_slice();
    for i in 0..BASELINE_REQUESTS {
        reply(&fleet, 0, "dock-camera", i, photo(i));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let gauge = watch_gauge(fleet.gateways[0].admin_url(""), Arc::clone(&stop), POLL);
    let latch = watch_latch(fleet.gray.control_url(PATH), Arc::clone(&stop));
    let tripped = AtomicBool::new(false);
    let (first, light): (Vec<Reply>, Vec<Vec<Reply>>) = thread::scope(|scope| {
        let light: Vec<_> = (1..n)
            .map(|gw| {
                let (fleet, tripped) = (&fleet, &tripped);
                scope.spawn(move || {
                    let mut seen = Vec::new();
                    let mut until = None;
                    for i in 0..1_000 {
                        if tripped.load(Ordering::Relaxed) && until.is_none() {
                            until = Some(Instant::now() + AFTER_TRIP);
                        }
                        let r = reply(fleet, gw, "crane-camera", i, photo(i));
                        seen.push(r);
                        let shed_twice = seen.iter().filter(|r| r.shed).count() >= 2;
                        if shed_twice || until.is_some_and(|u| Instant::now() > u) {
                            break;
                        }
                        thread::sleep(LIGHT_GAP);
                    }
                    seen
                })
            })
            .collect();
        let mut first = Vec::new();
        for i in 0..MAX_GRAY_PER_RUN {
            reply(&fleet, 0, "dock-camera", i, photo(i));
            let r = reply(&fleet, 0, "crane-camera", i, photo(i));
            first.push(r);
            if r.shed {
                break;
            }
        }
        tripped.store(true, Ordering::Relaxed);
        let light = light
            .into_iter()
            .map(|h| h.join().expect("light client"))
            .collect();
        (first, light)
    });
    thread::sleep(Duration::from_millis(100));
    stop.store(true, Ordering::Relaxed);
    let open0 = gauge.join().expect("gauge poller");
    let latch_live = latch.join().expect("latch poller");

    let open0 = open0.ok_or("gateway 0 never opened")?;
    let trip = first
        .iter()
        .filter(|r| r.gray && r.received <= open0)
        .map(|r| r.received)
        .next_back()
        .ok_or("gateway 0 opened before any gray reply")?;
    let latch_live = latch_live.ok_or("the latch never showed on the gray workload")?;
    let mut run = Run {
        latch_live: signed_ms(trip, latch_live),
        opened: Vec::new(),
        gray_after: Vec::new(),
        gray_latency: light
            .iter()
            .flatten()
            .filter(|r| r.gray)
            .map(|r| signed_ms(r.sent, r.received))
            .collect(),
    };
    for (k, seen) in light.iter().enumerate() {
        let gw = k + 1;
        let first_shed = seen
            .iter()
            .position(|r| r.shed)
            .ok_or(format!("gw-{gw} never shed"))?;
        let open = seen[..first_shed]
            .iter()
            .rev()
            .find(|r| r.gray)
            .map(|r| r.received)
            .ok_or(format!("gw-{gw} shed before any gray reply"))?;
        run.opened.push(signed_ms(trip, open));
        run.gray_after.push(
            seen.iter()
                .filter(|r| r.gray && !r.probe && r.received > trip)
                .count(),
        );
        if let Some(late) = seen.iter().find(|r| r.gray && !r.probe && r.sent > open) {
            return Err(format!(
                "gw-{gw} sent to gray after its breaker opened: {late:?}"
            ));
        }
    }
    Ok(run)
}

/// Runs `runs` fresh fleets of each size in `sizes` and prints a RESULT line per size.
pub fn convergence(sizes: &[usize], runs: usize, photos: &[Vec<u8>]) {
    println!(
        "== convergence: fleets of {sizes:?} gateways, {runs} run(s) each, gray-only light traffic on every gateway but gw-0 (a request, then {} ms), gray sidecar on {GRAY_THREADS} thread(s)",
        LIGHT_GAP.as_millis()
    );
    for &n in sizes {
        let (mut live, mut last, mut gray) = (Vec::new(), Vec::new(), Vec::new());
        let mut latency = Vec::new();
        let mut failed = 0;
        for run in 0..runs {
            match one_run(n, photos) {
                Ok(r) => {
                    println!(
                        "n={n} run {run}: trip -> latch live {:.1} ms; other gateways shed at {:?} ms; their gray replies after the trip {:?}",
                        r.latch_live,
                        r.opened.iter().map(|v| v.round()).collect::<Vec<_>>(),
                        r.gray_after,
                    );
                    live.push(r.latch_live);
                    if let Some(worst) = r.opened.iter().copied().reduce(f64::max) {
                        last.push(worst);
                    }
                    gray.extend(r.gray_after.iter().map(|&g| g as f64));
                    latency.extend(r.gray_latency);
                }
                Err(e) => {
                    failed += 1;
                    println!("n={n} run {run}: {e}");
                }
            }
        }
        let (live, last, gray, latency) =
            (sorted(live), sorted(last), sorted(gray), sorted(latency));
        let max = |v: &[f64]| v.last().copied().unwrap_or(f64::NAN);
        if n == 1 {
            println!(
                "RESULT convergence n=1 over {}/{runs} run(s): trip -> latch live p50 {:.1} ms max {:.1} ms (no other gateway)",
                live.len(),
                percentile(&live, 0.5),
                max(&live),
            );
            continue;
        }
        let verdict = |ok: bool| if failed == 0 && ok { "met" } else { "MISSED" };
        println!(
            "RESULT convergence n={n} over {}/{runs} run(s): trip -> latch live p50 {:.1} ms max {:.1} ms; gray replies per other gateway after the trip p50 {} max {} (target <= 1): {}; trip -> last gateway shed p50 {:.1} ms max {:.1} ms (target <= 1000 ms): {} -- a gateway learns of the latch from its next gray reply, and those took p50 {:.0} ms max {:.0} ms here",
            runs - failed,
            percentile(&live, 0.5),
            max(&live),
            percentile(&gray, 0.5),
            max(&gray),
            verdict(max(&gray) <= 1.0),
            percentile(&last, 0.5),
            max(&last),
            verdict(max(&last) <= 1000.0),
            percentile(&latency, 0.5),
            max(&latency),
        );
    }
}
