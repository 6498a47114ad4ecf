//! Flagger's and Argo Rollouts' analyses of grayguard (mesh-config/variants/flagger and
//! variants/argo-rollouts) run against a real Prometheus scraping the real local mesh: the
//! front Envoy with the filter, a stable and a gray sidecar serving the real model, real
//! photos. The incident is replayed as a release: gray starts healthy (the same model and
//! threshold as stable), then is replaced by the oversensitive build (confidence 0.001, a
//! flood of false boxes) until grayguard sheds it.
//!
//! Every query must return exactly one value at every evaluation (Flagger fails a check that
//! returns no data), stay within its threshold while gray is healthy, and cross it once
//! grayguard has shed gray. The queries and thresholds are read from the variants themselves
//! (through the validator), with a short interval in place of the production one.

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use grayguard_contract::Decision;
use grayguard_contract::headers;
use grayguard_e2e::mesh::{GRAY, Mesh, PHOTOS, STABLE, crane_rule_config, sidecar};
use grayguard_e2e::paths;
use grayguard_e2e::prometheus::{Job, Prometheus};
use grayguard_e2e::sidecar::{READY_TIMEOUT, Sidecar};
use grayguard_e2e::wait::Wait;
use serde_json::{Value, json};

/// The interval put into the queries: long enough for several 1 s scrapes, short enough
/// that the replay takes about a minute.
const INTERVAL: &str = "10s";
const INTERVAL_S: u64 = 10;
/// How long gray is healthy under traffic (the first evaluations wait for one interval).
const HEALTHY_S: u64 = 20;
const MIN_SAMPLES: usize = 5;

/// The canonical rule with short windows and a shed long enough to outlast the replay; only
/// the box count can trip (latency and error thresholds far away).
fn plugin_config() -> String {
    crane_rule_config(json!({
        "flag_header": headers::BREACH,
        "latency": { "header": headers::INFERENCE_LATENCY_MS, "max_mean_ms": 60000, "window_s": 60, "min_samples": MIN_SAMPLES },
        "box_count": { "header": headers::BOX_COUNT, "max_sigma": 3, "window_s": 60, "min_samples": MIN_SAMPLES },
        "error_rate": { "max": 0.5, "window_s": 60, "min_samples": MIN_SAMPLES },
        "consecutive_failures": 5,
        "shed_for_s": 120,
        "probe_percent": 10,
        "scope": "rule",
        "dry_run": false,
    }))
    .to_string()
}

/// One analysis metric: which tool, its name, the query (interval substituted) and the
/// largest passing value.
#[derive(Debug, Clone)]
struct Check {
    tool: String,
    name: String,
    query: String,
    max: f64,
    strict: bool,
}

impl Check {
    fn passes(&self, v: f64) -> bool {
        if self.strict {
            v < self.max
        } else {
            v <= self.max
        }
    }
}

/// The analyses of both variants, as the validator reads them.
fn checks() -> Vec<Check> {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("queries.json");
    let run = Command::new(paths::python())
        .arg(paths::root().join("tests/validate/validate_mesh.py"))
        .arg("--contract")
        .arg(paths::contract_json())
        .arg("--analysis-queries")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    let queries: Vec<Value> = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    queries
        .iter()
        .map(|q| Check {
            tool: q["tool"].as_str().unwrap().into(),
            name: q["name"].as_str().unwrap().into(),
            query: q["query"]
                .as_str()
                .unwrap()
                .replace(q["interval"].as_str().unwrap(), INTERVAL),
            max: q["max"].as_f64().unwrap(),
            strict: q["strict"].as_bool().unwrap(),
        })
        .collect()
}

/// Evaluates every check once; each must answer exactly one value.
fn evaluate(prom: &Prometheus, checks: &[Check]) -> Vec<f64> {
    checks
        .iter()
        .map(|c| {
            let values = prom.query(&c.query);
            assert_eq!(
                values.len(),
                1,
                "{} {}: {} values (Flagger fails a check without data):\n{}",
                c.tool,
                c.name,
                values.len(),
                c.query
            );
            values[0]
        })
        .collect()
}

/// The gray sidecar on `port` (the one the front Envoy routes gray to), with `conf`.
fn gray_on(port: u16, conf: &str) -> Sidecar {
    let mut sc = sidecar(GRAY, conf).spawn_at(port, None);
    sc.proc
        .wait_for_port(SocketAddr::from(([127, 0, 0, 1], port)), READY_TIMEOUT);
    sc.wait_ready(READY_TIMEOUT);
    sc
}

#[test]
fn analyses_hold_while_gray_is_healthy_and_fail_once_grayguard_sheds() {
    let checks = checks();
    for tool in ["flagger", "argo-rollouts"] {
        assert!(
            checks.iter().filter(|c| c.tool == tool).count() >= 4,
            "{tool}: expected its four analysis metrics: {checks:?}"
        );
    }
    let photos = paths::photos(&PHOTOS);
    let mut mesh = Mesh::start_with(
        &plugin_config(),
        sidecar(STABLE, "0.25"),
        sidecar(GRAY, "0.25"),
        2,
    );
    let prom = Prometheus::start(&[
        Job {
            name: "envoy".into(),
            path: "/stats/prometheus".into(),
            targets: vec![format!("127.0.0.1:{}", mesh.envoy.admin)],
        },
        Job {
            name: "yolo-detector".into(),
            path: "/metrics".into(),
            targets: vec![
                format!("127.0.0.1:{}", mesh.stable.port),
                format!("127.0.0.1:{}", mesh.gray.port),
            ],
        },
    ]);
    prom.wait_targets_up(3, Duration::from_secs(30));

    // One request of each cohort, the same photo: gray (crane cameras) and stable (the rest).
    let mut sent = 0usize;
    let mut pair = |mesh: &Mesh| -> String {
        sent += 1;
        mesh.crane_and_dock(&photos, sent - 1)
    };

    // 1. Gray is healthy: every check passes at every evaluation.
    let start = Instant::now();
    let mut healthy_evaluations = 0;
    let mut next_eval = start + Duration::from_secs(INTERVAL_S);
    for _ in 0..400 {
        if start.elapsed() > Duration::from_secs(HEALTHY_S) {
            break;
        }
        let decision = pair(&mesh);
        assert_eq!(
            decision, "gray; rule=crane-cameras",
            "healthy gray was shed"
        );
        if Instant::now() >= next_eval {
            let values = evaluate(&prom, &checks);
            for (c, v) in checks.iter().zip(&values) {
                assert!(
                    c.passes(*v),
                    "{} {} = {v} crossed {} while gray is healthy:\n{}",
                    c.tool,
                    c.name,
                    c.max,
                    c.query
                );
            }
            let gray = prom.query(&format!("sum(increase(grayguard_routed_gray[{INTERVAL}]))"));
            assert!(
                gray[0] > 0.0,
                "no gray traffic in the window: the checks prove nothing"
            );
            healthy_evaluations += 1;
            next_eval = Instant::now() + Duration::from_secs(3);
        }
    }
    assert!(
        healthy_evaluations >= 3,
        "only {healthy_evaluations} evaluations while healthy"
    );

    // 2. The bad build replaces gray (same port, so the same Envoy cluster); traffic resumes
    //    once it is ready, until grayguard sheds it on the box count.
    let port = mesh.gray.port;
    assert!(
        mesh.gray.proc.terminate(Duration::from_secs(30)).is_some(),
        "the healthy gray did not stop on SIGTERM"
    );
    mesh.gray = gray_on(port, "0.001");
    let mut shed = false;
    for _ in 0..8 * MIN_SAMPLES {
        let decision = pair(&mesh);
        if Decision::parse(&decision).is_ok_and(|d| d.shed().is_some()) {
            assert_eq!(decision, "stable; rule=crane-cameras; shed=box_count");
            shed = true;
            break;
        }
    }
    assert!(shed, "grayguard did not shed the oversensitive gray");

    // 3. After the shed every check crosses its threshold within one interval (the queries
    //    look back one interval, as Flagger and Argo Rollouts do at each evaluation).
    let shed_at = Instant::now();
    let mut crossed = vec![None; checks.len()];
    // Traffic and an evaluation after another, until every check crossed or the interval is
    // over; what crossed is checked below.
    let _ = Wait::new(
        "every check crosses its threshold",
        Duration::from_secs(INTERVAL_S),
    )
    .every(Duration::ZERO)
    .poll(|| {
        pair(&mesh);
        let values = evaluate(&prom, &checks);
        for (i, (c, v)) in checks.iter().zip(&values).enumerate() {
            if !c.passes(*v) && crossed[i].is_none() {
                crossed[i] = Some((*v, shed_at.elapsed()));
            }
        }
        crossed.iter().all(Option::is_some)
    });
    let report: Vec<String> = checks
        .iter()
        .zip(&crossed)
        .map(|(c, x)| format!("{} {} (max {}): {x:?}", c.tool, c.name, c.max))
        .collect();
    eprintln!("after the shed:\n{}", report.join("\n"));
    assert!(
        crossed.iter().all(Option::is_some),
        "checks that did not fail within {INTERVAL} of the shed:\n{}",
        report.join("\n")
    );
}
