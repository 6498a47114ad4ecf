//! The agreement trigger in a real gateway: Envoy with the built filter (two workers, two Wasm
//! VMs sharing one evidence record), a stable sidecar serving the shipped model and a gray
//! sidecar comparing every frame with it (`--compare-with`, `--compare-percent 100`), driven
//! with the photos the model finds people in, each round one crane camera's request (the
//! rule's cohort: gray) and one dock camera's (stable: the control).
//!
//! * A gray whose two class scores are swapped answers with stable's boxes at stable's speed.
//!   While it does not compare, no reply carries an agreement and nothing is shed over as many
//!   gray replies as a shed by agreement may take. Once it compares, the filter sheds it by
//!   `agreement` within [`SHED_WITHIN`] compared frames (measured: 14, as the detector's
//!   arithmetic says); the incident record names the trigger, its evidence and the change
//!   point where the comparisons began, while the latency, box-count and failure tests stayed
//!   below their thresholds; the cameras then go to stable, and no client sees an error.
//! * A gray serving stable's own model (A/A) and comparing as many frames is never shed, and
//!   every value (1.000) reaches the gateway.
//!
//! The module takes about 70 s on the 2-core development machine under other work (68 and
//! 73 s in two runs at load 5–6; each test starts two sidecars, the first replaces its gray
//! one):
//!
//! ```text
//! cargo test -p grayguard-e2e --test e2e filter_agreement:: -- --test-threads=1
//! ```

use std::path::PathBuf;
use std::time::Duration;

use grayguard_client::exposition;
use grayguard_contract::headers;
use grayguard_contract::metrics::{filter as names, sidecar as sidecar_names};
use grayguard_contract::record::{DetectorKind, Event, Incident};
use grayguard_contract::{Decision, Note, Side, Trigger};
use grayguard_e2e::mesh::{self, GRAY, Mesh, STABLE};
use grayguard_e2e::paths::{self, WITH_PEOPLE};
use grayguard_e2e::sidecar::{self, SidecarBuilder};
use grayguard_e2e::wait::Wait;
use serde_json::json;

/// The gateway's `breach.arl`, and its `breach.agreement.min_mean` and `.min_samples`.
const ARL: f64 = 1e6;
const MIN_MEAN: f64 = 0.7;
const MIN_SAMPLES: u32 = 10;

/// The statistical tests the gateway's configuration asks for: latency against stable,
/// box count both ways, failures against stable, agreement.
const TESTS: f64 = 5.0;

/// Compared frames within which a gray that agrees 0 with stable on every frame is shed.
/// Each agreement `a` is scored `1 − a/0.7` (never below `1 − 1/0.7`), and the boldest of the
/// detector's stakes (0.99 of the largest safe one, `0.7/0.3`) multiplies its evidence by
/// `1 + 0.99 · 0.7/0.3 ≈ 3.31` on each frame that agrees 0. It sheds once that evidence,
/// weighted 0.3, reaches the tests' share of `arl`, `5 · 10⁶`: after
/// `ln(5 · 10⁶ / 0.3) / ln 3.31 ≈ 13.9`, so 14 frames, above `min_samples`. Measured: 14 (the
/// record's count). The margin covers values that ride on replies still in flight when the
/// evidence crosses (the client counts those too), and a tick that adds two values at once.
const SHED_WITHIN: usize = 18;

/// Rounds any phase may take: every crane camera's frame is compared, but for one stable
/// refuses while a dock camera's request waits for its model.
const MAX_ROUNDS: usize = 2 * SHED_WITHIN;

/// How long a phase's rounds may take on a loaded 2-core machine (a round is about three
/// model runs, one thread each).
const PHASE_WITHIN: Duration = Duration::from_secs(90);

/// Rounds sent after the shed, each of which must go to stable.
const AFTER_SHED: usize = 3;

/// How long the filter may take to hand its counters to Envoy (on its tick).
const PUBLISHED_WITHIN: Duration = Duration::from_secs(5);

/// The canonical rule (every crane camera to gray) with the sequential detector's latency,
/// box-count and failure tests beside the agreement trigger, and a shed that lasts the test.
fn config() -> String {
    mesh::crane_rule_config(json!({
        "detector": "sequential",
        "arl": ARL,
        "latency": { "header": headers::INFERENCE_LATENCY_MS, "max_ratio": 1.25, "min_samples": 10 },
        "box_count": { "header": headers::BOX_COUNT, "max_shift": 0.25, "min_samples": 10 },
        "error_rate": { "max_excess": 0.02, "min_samples": 10 },
        "agreement": { "header": headers::AGREEMENT, "min_mean": MIN_MEAN, "min_samples": MIN_SAMPLES },
        "shed_for_s": 600,
        "probe_percent": 0,
    }))
    .to_string()
}

/// A sidecar as the mesh tests run them (one ONNX Runtime thread, its own latency watchdog
/// out of the way) at stable's threshold, serving `model` (the shipped one when `None`).
fn sidecar(version: &str, model: Option<PathBuf>) -> SidecarBuilder {
    let b = mesh::sidecar(version, "0.25");
    match model {
        Some(m) => b.model(m),
        None => b,
    }
}

/// `builder` comparing every frame (with the stable sidecar its `--compare-with` names).
fn comparing(builder: SidecarBuilder) -> SidecarBuilder {
    builder.flag("--compare-percent", "100")
}

/// What one round's crane camera saw.
struct Crane {
    side: Side,
    note: Option<Note>,
    /// The `x-model-version` that answered.
    version: String,
    agreement: Option<f64>,
}

/// Round `k`: a crane and a dock camera's request with the same photo, both answered 200
/// (`Mesh::crane_and_dock_reply`); what the crane camera's reply said, its decision read by
/// the contract's grammar.
fn round(mesh: &Mesh, photos: &[Vec<u8>], k: usize) -> Crane {
    let r = mesh.crane_and_dock_reply(photos, k);
    let text = r.header(headers::DECISION).expect("a decision header");
    let d = Decision::parse(text).expect("the decision follows the grammar");
    assert_eq!(d.rule.as_deref(), Some("crane-cameras"), "{text}");
    Crane {
        side: d.side,
        note: d.note,
        version: r.header(headers::MODEL_VERSION).unwrap_or("-").to_string(),
        agreement: sidecar::agreement(&r),
    }
}

/// Sends rounds from `*k` on until `done` accepts the crane camera's (which may fail the
/// test on one it must never see), within [`MAX_ROUNDS`] and [`PHASE_WITHIN`].
fn rounds_until(
    mesh: &Mesh,
    photos: &[Vec<u8>],
    k: &mut usize,
    what: &str,
    mut done: impl FnMut(&Crane) -> bool,
) {
    let first = *k;
    Wait::new(what, PHASE_WITHIN)
        .every(Duration::ZERO)
        .until(|| {
            assert!(
                *k - first < MAX_ROUNDS,
                "{what}: not within {MAX_ROUNDS} rounds"
            );
            let c = round(mesh, photos, *k);
            *k += 1;
            if done(&c) {
                Ok(())
            } else {
                Err(format!("{} rounds", *k - first))
            }
        });
}

/// The value of `selector` in the gateway's stats (it must be there).
fn stat(mesh: &Mesh, selector: &str) -> f64 {
    mesh.envoy
        .metric(selector)
        .unwrap_or_else(|| panic!("{selector} missing"))
}

/// `grayguard_evidence_pct` of the crane cameras' `trigger`.
fn evidence_pct(mesh: &Mesh, trigger: Trigger) -> f64 {
    stat(
        mesh,
        &format!(
            "{}{{rule=\"crane-cameras\",trigger=\"{}\"}}",
            names::EVIDENCE_PCT,
            trigger.as_str()
        ),
    )
}

/// A sidecar metric (0 while the series does not exist).
fn sidecar_metric(sc: &sidecar::Sidecar, selector: &str) -> f64 {
    exposition::value(&sc.metrics(), selector).unwrap_or(0.0)
}

#[test]
fn a_class_swapped_gray_is_shed_by_agreement_once_it_compares_and_by_nothing_before() {
    let photos = paths::photos(&WITH_PEOPLE);
    let swapped = || sidecar(GRAY, Some(paths::class_swapped_model()));
    let mut mesh = Mesh::start_with(&config(), sidecar(STABLE, None), swapped(), 2);
    let mut k = 0;

    // Not comparing: as many gray replies as a shed by agreement may take, none carrying an
    // agreement, none shed (the class swap is invisible to the other tests).
    let mut n = 0;
    rounds_until(&mesh, &photos, &mut k, "gray replies, not compared", |c| {
        assert_eq!(
            (c.side, c.note, c.version.as_str(), c.agreement),
            (Side::Gray, None, GRAY, None)
        );
        n += 1;
        n >= SHED_WITHIN
    });
    let silent = k;
    mesh.envoy
        .wait_metric(names::GRAY_RESPONSES, PUBLISHED_WITHIN, |v| {
            v >= silent as f64
        });
    assert_eq!(stat(&mesh, names::GRAY_AGREEMENT_SAMPLES), 0.0);
    assert_eq!(evidence_pct(&mesh, Trigger::Agreement), 0.0);
    assert!(mesh.envoy.incident_records().is_empty());

    // The same gray, comparing every frame.
    let stable_url = mesh.stable.url("/infer");
    mesh.gray
        .replace(comparing(swapped().flag("--compare-with", &stable_url)));
    let mut seen = Vec::new();
    let compared_from = k;
    rounds_until(&mesh, &photos, &mut k, "the gray shed by agreement", |c| {
        if c.side == Side::Stable {
            assert_eq!(c.note, Some(Note::Shed(Trigger::Agreement)));
            return true;
        }
        assert_eq!((c.note, c.version.as_str()), (None, GRAY));
        seen.extend(c.agreement);
        false
    });
    eprintln!(
        "class-swapped gray: shed after {} agreements seen by the client, in {} rounds ({} rounds not compared before)",
        seen.len(),
        k - compared_from,
        silent
    );
    assert!(seen.iter().all(|a| *a == 0.0), "{seen:?}");
    assert!(
        (MIN_SAMPLES as usize..=SHED_WITHIN).contains(&seen.len()),
        "{} agreements before the shed",
        seen.len()
    );
    // From then on the cameras are answered by stable, and no client saw an error (every
    // round checks both replies).
    for _ in 0..AFTER_SHED {
        let c = round(&mesh, &photos, k);
        k += 1;
        assert_eq!(
            (c.side, c.note, c.version.as_str()),
            (Side::Stable, Some(Note::Shed(Trigger::Agreement)), STABLE)
        );
    }

    // The incident record, read with the contract's type.
    let records = mesh.envoy.incident_records();
    assert_eq!(records.len(), 1, "{records:#?}");
    let i: &Incident = &records[0];
    assert_eq!(
        (i.event, i.trigger, i.rule.as_str(), i.detector),
        (
            Event::ShedStart,
            Trigger::Agreement,
            "crane-cameras",
            DetectorKind::Sequential
        )
    );
    assert_eq!((i.arl, i.consecutive_failures), (Some(ARL), 0));
    assert_eq!(i.limits.agreement_min_mean, Some(MIN_MEAN));
    // It carries the agreement test's evidence: every value it scored was 0, and the change
    // point is where the comparisons began, not before.
    assert_eq!(i.evidence.len(), 1, "{:#?}", i.evidence);
    let f = &i.evidence[0];
    assert_eq!((f.test.as_str(), f.crossed), ("agreement_below", true));
    assert!(f.log_e >= f.threshold, "{f:?}");
    assert!((f.threshold - (TESTS * ARL).ln()).abs() < 1e-3, "{f:?}");
    assert!(
        f.gray_n >= f64::from(MIN_SAMPLES) && f.gray_n <= seen.len() as f64,
        "{f:?}: the client saw {} values",
        seen.len()
    );
    assert_eq!(f.estimate, Some(0.0), "{f:?}");
    assert!(f.at_most.is_some_and(|b| b <= MIN_MEAN), "{f:?}");
    assert!(f.change_at >= silent as f64, "{f:?}");
    eprintln!("the record: {} compared frames to the shed", f.gray_n);

    // The latency, box-count and failure tests stayed below their thresholds (the gauges
    // show the epoch the shed ended), and only the agreement trigger opened the breaker.
    assert!(evidence_pct(&mesh, Trigger::Agreement) >= 100.0);
    for t in [Trigger::Latency, Trigger::BoxCount, Trigger::ErrorRate] {
        let pct = evidence_pct(&mesh, t);
        assert!(pct < 100.0, "{}: {pct}", t.as_str());
    }
    for t in Trigger::ALL {
        let want = if t == Trigger::Agreement { 1.0 } else { 0.0 };
        assert_eq!(stat(&mesh, &names::breaches(t)), want, "{}", t.as_str());
    }
    // Every value the gateway read was a 0; the gray sidecar compared at least as many.
    let read = stat(&mesh, names::GRAY_AGREEMENT_SAMPLES);
    assert!(read >= f.gray_n, "{read} < {}", f.gray_n);
    assert_eq!(stat(&mesh, names::GRAY_AGREEMENT_MILLI), 0.0);
    assert!(sidecar_metric(&mesh.gray, sidecar_names::COMPARISONS_TOTAL) >= read);
}

#[test]
fn an_a_a_gray_comparing_as_many_frames_is_never_shed_and_its_values_reach_the_gateway() {
    let photos = paths::photos(&WITH_PEOPLE);
    let mesh = Mesh::start_comparing(
        &config(),
        sidecar(STABLE, None),
        comparing(sidecar(GRAY, None)),
        2,
    );
    let mut k = 0;
    let mut seen = Vec::new();
    rounds_until(
        &mesh,
        &photos,
        &mut k,
        "as many agreements as a shed may take",
        |c| {
            assert_eq!(
                (c.side, c.note, c.version.as_str()),
                (Side::Gray, None, GRAY)
            );
            seen.extend(c.agreement);
            seen.len() >= SHED_WITHIN
        },
    );
    assert!(seen.iter().all(|a| *a == 1.0), "{seen:?}");

    // The gateway read every value the clients saw, each 1.000, and weighed them: no
    // evidence, no shed.
    let n = seen.len() as f64;
    mesh.envoy
        .wait_metric(names::GRAY_AGREEMENT_SAMPLES, PUBLISHED_WITHIN, |v| v >= n);
    assert_eq!(stat(&mesh, names::GRAY_AGREEMENT_SAMPLES), n);
    assert_eq!(stat(&mesh, names::GRAY_AGREEMENT_MILLI), 1000.0 * n);
    assert_eq!(evidence_pct(&mesh, Trigger::Agreement), 0.0);
    assert!(mesh.envoy.incident_records().is_empty());
    assert_eq!(
        stat(
            &mesh,
            &format!("{}{{rule=\"crane-cameras\"}}", names::RULE_BREAKER_STATE)
        ),
        0.0
    );
    // The sidecars agree: gray compared them all and agreed on each, stable served them.
    let sum = sidecar_metric(&mesh.gray, &format!("{}_sum", sidecar_names::AGREEMENT));
    let count = sidecar_metric(&mesh.gray, &format!("{}_count", sidecar_names::AGREEMENT));
    assert!(count >= n && sum == count, "sum {sum}, count {count}");
    let served = sidecar_metric(
        &mesh.stable,
        &format!(
            "{}{{status=\"200\"}}",
            sidecar_names::COMPARE_REQUESTS_TOTAL
        ),
    );
    assert!(served >= count, "{served} < {count}");
}
