//! The incident end to end with real processes: the front Envoy running the filter, a stable
//! (v9-prod) and a gray (v10-gray) sidecar serving the real model, real photos. The gray
//! version is the classic bad release: the same model with a confidence threshold of 0.001,
//! which floods replies with small false boxes. The test follows one gray cohort through
//! routing, the automatic shed (box count against the control of concurrent stable replies),
//! the shed period, and the half-open probe, and checks that the decision header tells each
//! step, that no client sees an error, and that Envoy's and the sidecars' counters agree.

use grayguard_contract::headers;
use grayguard_contract::{Decision, Note};
use std::time::{Duration, Instant};

use grayguard_client::exposition::value as metric;
use grayguard_e2e::http::Response;
use grayguard_e2e::mesh::{GRAY, Mesh, PHOTOS, STABLE, crane_rule_config, sidecar};
use grayguard_e2e::paths;
use grayguard_e2e::wait::Wait;
use serde_json::json;

const MIN_SAMPLES: usize = 5;
const SHED_FOR_S: u64 = 4;

/// The canonical rule with a short shed and a high probe share, so the whole cycle fits in
/// a few seconds; the latency and error margins are wide so that the box count alone
/// decides.
fn plugin_config() -> String {
    crane_rule_config(json!({
        "flag_header": headers::BREACH,
        "detector": "sequential",
        "latency": { "header": headers::INFERENCE_LATENCY_MS, "max_ratio": 5, "min_samples": MIN_SAMPLES },
        "box_count": { "header": headers::BOX_COUNT, "max_shift": 0.25, "min_samples": MIN_SAMPLES },
        "error_rate": { "max_excess": 0.3, "min_samples": MIN_SAMPLES },
        "consecutive_failures": 5,
        "shed_for_s": SHED_FOR_S,
        "probe_percent": 50,
        "scope": "rule",
        "dry_run": false,
    }))
    .to_string()
}

/// What the clients saw, counted as the test goes.
#[derive(Debug, Default)]
struct Seen {
    served_gray: usize,
    served_stable: usize,
    shed: usize,
    probes: usize,
    gray_boxes: Vec<u32>,
    stable_boxes: Vec<u32>,
}

impl Seen {
    /// Checks the reply is a success with grayguard's headers and counts it; returns the
    /// version that served it and the decision header.
    fn record(&mut self, r: &Response) -> (String, String) {
        assert_eq!(
            r.status,
            200,
            "a client saw an error: {} {:?}",
            r.text(),
            r.headers
        );
        let version = r
            .header(headers::MODEL_VERSION)
            .expect(headers::MODEL_VERSION)
            .to_string();
        let decision = r
            .header(headers::DECISION)
            .unwrap_or_else(|| {
                panic!(
                    "no x-canary-decision (is the filter loaded?): {:?}",
                    r.headers
                )
            })
            .to_string();
        let boxes: u32 = r
            .header(headers::BOX_COUNT)
            .expect(headers::BOX_COUNT)
            .parse()
            .expect("x-box-count is an integer");
        let body_boxes = r.json()["boxes"].as_array().expect("boxes").len();
        assert_eq!(boxes as usize, body_boxes, "x-box-count vs the body");
        match version.as_str() {
            GRAY => {
                self.served_gray += 1;
                self.gray_boxes.push(boxes);
            }
            STABLE => {
                self.served_stable += 1;
                self.stable_boxes.push(boxes);
            }
            other => panic!("unknown x-model-version {other}"),
        }
        let parsed = Decision::parse(&decision)
            .unwrap_or_else(|e| panic!("decision header {decision:?}: {e}"));
        if parsed.shed().is_some() {
            self.shed += 1;
        }
        if parsed.note == Some(Note::Probe) {
            self.probes += 1;
        }
        (version, decision)
    }
}

fn mean(v: &[u32]) -> f64 {
    v.iter().map(|&x| f64::from(x)).sum::<f64>() / v.len().max(1) as f64
}

/// The incident as it goes: the mesh (the stable sidecar at 0.25, the oversensitive gray at
/// 0.001), the photos in turn, and what the clients saw so far.
struct Incident {
    mesh: Mesh,
    photos: Vec<Vec<u8>>,
    seen: Seen,
}

impl Incident {
    fn start() -> Incident {
        Incident {
            mesh: Mesh::start_with(
                &plugin_config(),
                sidecar(STABLE, "0.25"),
                sidecar(GRAY, "0.001"),
                2,
            ),
            photos: paths::photos(&PHOTOS),
            seen: Seen::default(),
        }
    }

    /// Sends photo `i` as device `device` of `kind` (with `extra` headers) and records the
    /// reply: the version that served it and the decision.
    fn send(
        &mut self,
        kind: &str,
        device: &str,
        i: usize,
        extra: &[(&str, &str)],
    ) -> (String, String) {
        let photo = &self.photos[i % self.photos.len()];
        let r = self.mesh.infer(kind, device, photo, extra);
        self.seen.record(&r)
    }

    /// Traffic outside the rule goes to stable and gives the proxy its stable control; a
    /// client cannot force itself onto gray with the route or decision headers.
    fn stable_teaches_the_baseline(&mut self) {
        for i in 0..2 * MIN_SAMPLES {
            let got = self.send("dock-camera", &format!("dock-{}", i % 3), i, &[]);
            assert_eq!(got, (STABLE.into(), "stable; no-rule".into()));
        }
        let spoofed = self.send(
            "dock-camera",
            "dock-0",
            0,
            &[(headers::ROUTE, GRAY), (headers::DECISION, "gray; rule=x")],
        );
        assert_eq!(spoofed, (STABLE.into(), "stable; no-rule".into()));
    }

    /// The gray cohort goes to gray until its box counts cross their margin over the
    /// control's; then the proxy sheds it to stable and says why. Returns when the last gray
    /// request was sent (the breaker opened while the proxy handled its reply, so after it).
    fn gray_is_shed_on_its_box_count(&mut self) -> Instant {
        let mut last_gray_sent = None;
        let mut shed_seen = false;
        for i in 0..4 * MIN_SAMPLES {
            let sent = Instant::now();
            let (version, decision) =
                self.send("crane-camera", &format!("crane-{}", i % 2), i, &[]);
            if version == GRAY {
                assert_eq!(decision, "gray; rule=crane-cameras");
                last_gray_sent = Some(sent);
            } else {
                assert_eq!(decision, "stable; rule=crane-cameras; shed=box_count");
                shed_seen = true;
                break;
            }
        }
        let seen = &self.seen;
        assert!(
            shed_seen,
            "gray was not shed after {} gray replies (gray boxes {:?}, stable boxes {:?})",
            seen.served_gray, seen.gray_boxes, seen.stable_boxes
        );
        assert!(
            seen.served_gray >= MIN_SAMPLES,
            "shed after only {} gray replies, before min_samples {MIN_SAMPLES}",
            seen.served_gray
        );
        assert!(
            mean(&seen.gray_boxes) > mean(&seen.stable_boxes),
            "the oversensitive gray version should find more boxes: gray {:?} stable {:?}",
            seen.gray_boxes,
            seen.stable_boxes
        );
        last_gray_sent.expect("gray replies before the shed")
    }

    /// While the breaker is open nothing of the cohort reaches gray; once the shed period is
    /// over, a half-open probe does, marked as such. Other traffic keeps flowing to stable
    /// throughout. Bounded in count and time; what was seen is checked after.
    fn only_probes_reach_gray_after_the_shed(&mut self, opened_after: Instant) {
        let mut first_probe = None;
        let mut after_probe = 0;
        let mut i = 0;
        let within = Wait::new(
            "three replies after the first probe",
            Duration::from_secs(SHED_FOR_S + 20),
        )
        .every(Duration::ZERO)
        .poll(|| {
            let sent = Instant::now();
            let (version, decision) =
                self.send("crane-camera", &format!("crane-{}", i % 2), i, &[]);
            if version == GRAY {
                assert_eq!(
                    decision, "gray; rule=crane-cameras; probe",
                    "only probes may reach gray after the shed"
                );
                let waited = sent.duration_since(opened_after);
                assert!(
                    waited >= Duration::from_secs(SHED_FOR_S),
                    "probe {waited:?} after the breaker opened, before shed_for_s {SHED_FOR_S}s"
                );
                first_probe.get_or_insert(sent);
            } else {
                assert_eq!(decision, "stable; rule=crane-cameras; shed=box_count");
            }
            if first_probe.is_some() {
                after_probe += 1;
            }
            if i % 4 == 3 {
                let got = self.send("dock-camera", "dock-1", i, &[]);
                assert_eq!(got, (STABLE.into(), "stable; no-rule".into()));
            }
            i += 1;
            after_probe >= 3 || i >= 200
        });
        assert!(
            first_probe.is_some(),
            "no half-open probe within {SHED_FOR_S}s + 20s of the shed ({within:?})"
        );
        assert!(self.seen.shed >= 1);
    }

    /// Envoy's counters, the sidecars' counters and the clients agree; after the shed only
    /// probes reached gray, and the incident is still being shed.
    fn counters_agree(&self, gray_before_shed: usize) {
        let (seen, mesh) = (&self.seen, &self.mesh);
        let stats = mesh.envoy.prometheus();
        let envoy = |name: &str| {
            metric(&stats, name).unwrap_or_else(|| panic!("{name} missing from Envoy's stats"))
        };
        let sidecar_requests = |m: &str| {
            metric(m, "grayguard_sidecar_requests_total").expect("grayguard_sidecar_requests_total")
        };
        let (gray_metrics, stable_metrics) = (mesh.gray.metrics(), mesh.stable.metrics());
        let counts = format!(
            "seen {seen:?}; envoy routed_gray {} routed_stable {} shed {} probes {}; sidecars gray {} stable {}",
            envoy("grayguard_routed_gray"),
            envoy("grayguard_routed_stable"),
            envoy("grayguard_shed_requests"),
            envoy("grayguard_probe_requests"),
            sidecar_requests(&gray_metrics),
            sidecar_requests(&stable_metrics),
        );
        assert_eq!(
            envoy("grayguard_routed_gray"),
            seen.served_gray as f64,
            "{counts}"
        );
        assert_eq!(
            sidecar_requests(&gray_metrics),
            seen.served_gray as f64,
            "{counts}"
        );
        assert_eq!(
            envoy("grayguard_routed_stable"),
            seen.served_stable as f64,
            "{counts}"
        );
        assert_eq!(
            sidecar_requests(&stable_metrics),
            seen.served_stable as f64,
            "{counts}"
        );
        assert_eq!(
            envoy("grayguard_shed_requests"),
            seen.shed as f64,
            "{counts}"
        );
        assert_eq!(
            envoy("grayguard_probe_requests"),
            seen.probes as f64,
            "{counts}"
        );
        assert!(envoy("grayguard_breaches_box_count") >= 1.0, "{counts}");
        assert_eq!(
            seen.served_gray,
            gray_before_shed + seen.probes,
            "after the shed only probes reached gray: {counts}"
        );
        // The gray version still floods boxes, so the incident is still being shed.
        let state = envoy("grayguard_breaker_state");
        assert!(
            state == 1.0 || state == 2.0,
            "breaker state {state}: {counts}"
        );
    }
}

/// One incident in four steps, each a method of [`Incident`] that says what it checks.
#[test]
fn gray_cohort_is_routed_shed_and_probed_without_client_errors() {
    let mut incident = Incident::start();
    incident.stable_teaches_the_baseline();
    let opened_after = incident.gray_is_shed_on_its_box_count();
    let gray_before_shed = incident.seen.served_gray;
    incident.only_probes_reach_gray_after_the_shed(opened_after);
    incident.counters_agree(gray_before_shed);
}
