//! The Prometheus metrics of the sidecar (names are a public contract, see the README).

use std::collections::HashSet;

use grayguard_contract::metrics::sidecar as names;
use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

use crate::error::{Cut, ErrorKind};
use crate::signals::agreement::FrameAgreement;
use crate::signals::comparison::{Fail, Skip};
use crate::signals::latch::{Action, Refusal};
use crate::signals::meta::{Outcome, ReplyMeta};
use crate::signals::watchdog::Reason;

/// Request and model latency buckets, seconds (CPU inference sits at 0.1–0.3 s, GPU at a few ms).
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0,
    10.0,
];
/// NMS buckets, seconds (the budget is 1 ms).
const NMS_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05,
];
/// Images per model run.
const BATCH_BUCKETS: &[f64] = &[
    1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 32.0, 64.0, 128.0, 256.0,
];
/// Agreement and shares of a compared frame, in [0, 1]: `le="0"` counts total disagreement,
/// everything above `le="0.99"` full agreement.
const SHARE_BUCKETS: &[f64] = &[
    0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0,
];
/// Boxes per image.
const BOX_BUCKETS: &[f64] = &[
    0.0, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 300.0,
];

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    pub request_duration: Histogram,
    pub inference_duration: Histogram,
    pub nms_duration: Histogram,
    pub detections: Histogram,
    pub batch_size: Histogram,
    pub last_box_count: IntGauge,
    pub requests: IntCounterVec,
    pub errors: IntCounterVec,
    pub in_flight: IntGauge,
    pub queue_depth: IntGauge,
    pub ready: IntGauge,
    pub breach_active: IntGaugeVec,
    pub memory_bytes: IntGauge,
    pub memory_limit_bytes: IntGauge,
    pub gpu_memory_used_bytes: IntGauge,
    pub gpu_memory_total_bytes: IntGauge,
    pub gpu_utilisation: Gauge,
    pub stalled: IntGauge,
    pub stalls: IntCounter,
    pub stall_deadline_seconds: Gauge,
    pub info: IntGaugeVec,
    pub latches: IntGauge,
    pub latch_requests: IntCounterVec,
    pub latch_refused: IntCounterVec,
    pub open_connections: IntGauge,
    pub connections_dropped: IntCounterVec,
    pub comparisons: IntCounter,
    pub comparison_failures: IntCounterVec,
    pub comparison_skips: IntCounterVec,
    pub comparisons_in_flight: IntGauge,
    pub agreement: Histogram,
    pub agreement_missed_share: Histogram,
    pub agreement_extra_share: Histogram,
    pub class_confusions: IntCounterVec,
    pub matched_stable_boxes: IntCounterVec,
    pub agreements_pending: IntGauge,
    pub agreements_dropped: IntCounter,
    pub compare_requests: IntCounterVec,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

fn histogram(name: &str, help: &str, buckets: &[f64]) -> prometheus::Result<Histogram> {
    Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec()))
}

impl Metrics {
    /// Creates every metric. `gpu` adds the GPU gauges (CUDA builds with NVML).
    pub fn new(gpu: bool) -> prometheus::Result<Metrics> {
        let m = Metrics {
            registry: Registry::new(),
            request_duration: histogram(
                names::REQUEST_DURATION_SECONDS,
                "Server-side time of /infer, from decode to reply (the x-inference-latency-ms header).",
                LATENCY_BUCKETS,
            )?,
            inference_duration: histogram(
                names::INFERENCE_DURATION_SECONDS,
                "Time of the model run itself.",
                LATENCY_BUCKETS,
            )?,
            nms_duration: histogram(
                names::NMS_DURATION_SECONDS,
                "Output decoding and non-maximum suppression.",
                NMS_BUCKETS,
            )?,
            detections: histogram(
                names::DETECTIONS_PER_IMAGE,
                "Boxes returned per successfully processed image.",
                BOX_BUCKETS,
            )?,
            batch_size: histogram(
                names::BATCH_SIZE,
                "Images in the model run that served each successful /infer.",
                BATCH_BUCKETS,
            )?,
            last_box_count: IntGauge::new(
                names::LAST_BOX_COUNT,
                "Boxes returned for the most recent successful /infer.",
            )?,
            requests: IntCounterVec::new(
                Opts::new(names::REQUESTS_TOTAL, "/infer replies by HTTP status."),
                &["status"],
            )?,
            errors: IntCounterVec::new(
                Opts::new(names::ERRORS_TOTAL, "Failed requests by error kind."),
                &["kind"],
            )?,
            in_flight: IntGauge::new(
                names::IN_FLIGHT,
                "Admitted /infer requests not yet answered.",
            )?,
            queue_depth: IntGauge::new(
                names::QUEUE_DEPTH,
                "Admitted /infer requests waiting for a model worker.",
            )?,
            ready: IntGauge::new(names::READY, "1 when /ready answers 200.")?,
            breach_active: IntGaugeVec::new(
                Opts::new(
                    names::BREACH_ACTIVE,
                    "1 while the watchdog raises this reason in x-canary-breach.",
                ),
                &["reason"],
            )?,
            memory_bytes: IntGauge::new(
                names::MEMORY_BYTES,
                "Memory in use: cgroup working set, or process RSS without a cgroup limit.",
            )?,
            memory_limit_bytes: IntGauge::new(
                names::MEMORY_LIMIT_BYTES,
                "Memory limit: cgroup limit, or physical memory without one.",
            )?,
            gpu_memory_used_bytes: IntGauge::new(
                names::GPU_MEMORY_USED_BYTES,
                "GPU memory in use on the inference device.",
            )?,
            gpu_memory_total_bytes: IntGauge::new(
                names::GPU_MEMORY_TOTAL_BYTES,
                "GPU memory of the inference device.",
            )?,
            gpu_utilisation: Gauge::new(
                names::GPU_UTILISATION_RATIO,
                "Share of NVML's last sample period (0-1) in which the inference device ran kernels.",
            )?,
            stalled: IntGauge::new(
                names::STALLED,
                "1 while a model run has outlasted the stall deadline (/healthz answers 503).",
            )?,
            stalls: IntCounter::new(
                names::STALLS_TOTAL,
                "Model runs that outlasted the stall deadline.",
            )?,
            stall_deadline_seconds: Gauge::new(
                names::STALL_DEADLINE_SECONDS,
                "The stall deadline in force, seconds (0 until known).",
            )?,
            info: IntGaugeVec::new(
                Opts::new(names::INFO, "Constant 1, labelled with what is served."),
                &["model_version", "device"],
            )?,
            latches: IntGauge::new(
                names::LATCHES,
                "Live latches held for gateways (each adds latched:<trigger>@<rule> to x-canary-breach).",
            )?,
            latch_requests: IntCounterVec::new(
                Opts::new(
                    names::LATCH_REQUESTS_TOTAL,
                    "Calls to the latch endpoint on the control listener.",
                ),
                &["action", "result"],
            )?,
            latch_refused: IntCounterVec::new(
                Opts::new(
                    names::LATCH_REFUSED_TOTAL,
                    "Latch calls refused, by reason.",
                ),
                &["reason"],
            )?,
            open_connections: IntGauge::new(
                names::OPEN_CONNECTIONS,
                "Open client connections, both listeners.",
            )?,
            connections_dropped: IntCounterVec::new(
                Opts::new(
                    names::CONNECTIONS_DROPPED_TOTAL,
                    "Connections refused at the cap or cut by a time limit, by reason.",
                ),
                &["reason"],
            )?,
            comparisons: IntCounter::new(
                names::COMPARISONS_TOTAL,
                "Frames compared with stable that gave an agreement.",
            )?,
            comparison_failures: IntCounterVec::new(
                Opts::new(
                    names::COMPARISON_FAILURES_TOTAL,
                    "Comparisons with stable that gave no agreement, by reason.",
                ),
                &["reason"],
            )?,
            comparison_skips: IntCounterVec::new(
                Opts::new(
                    names::COMPARISON_SKIPS_TOTAL,
                    "Frames drawn for comparison but not sent to stable, by reason.",
                ),
                &["reason"],
            )?,
            comparisons_in_flight: IntGauge::new(
                names::COMPARISONS_IN_FLIGHT,
                "Comparisons waiting for stable's answer.",
            )?,
            agreement: histogram(
                names::AGREEMENT,
                "Agreement with stable per compared frame: box-by-box F1, class-aware, IoU >= 0.5 (x-canary-agreement).",
                SHARE_BUCKETS,
            )?,
            agreement_missed_share: histogram(
                names::AGREEMENT_MISSED_SHARE,
                "Share of stable's boxes this model missed, per compared frame.",
                SHARE_BUCKETS,
            )?,
            agreement_extra_share: histogram(
                names::AGREEMENT_EXTRA_SHARE,
                "Share of this model's boxes stable did not have, per compared frame.",
                SHARE_BUCKETS,
            )?,
            class_confusions: IntCounterVec::new(
                Opts::new(
                    names::CLASS_CONFUSIONS_TOTAL,
                    "Stable boxes this model answered in the same place with another class.",
                ),
                &["stable_class", "gray_class"],
            )?,
            matched_stable_boxes: IntCounterVec::new(
                Opts::new(
                    names::MATCHED_STABLE_BOXES_TOTAL,
                    "Stable boxes this model answered in the same place, whatever the class.",
                ),
                &["stable_class"],
            )?,
            agreements_pending: IntGauge::new(
                names::AGREEMENTS_PENDING,
                "Finished agreements waiting for a reply to carry them.",
            )?,
            agreements_dropped: IntCounter::new(
                names::AGREEMENTS_DROPPED_TOTAL,
                "Finished agreements dropped unsent (the oldest, from a full queue).",
            )?,
            compare_requests: IntCounterVec::new(
                Opts::new(
                    names::COMPARE_REQUESTS_TOTAL,
                    "Comparison requests (x-canary-compare: 1) served, by HTTP status; in no other serving metric.",
                ),
                &["status"],
            )?,
        };
        let r = &m.registry;
        r.register(Box::new(m.request_duration.clone()))?;
        r.register(Box::new(m.inference_duration.clone()))?;
        r.register(Box::new(m.nms_duration.clone()))?;
        r.register(Box::new(m.detections.clone()))?;
        r.register(Box::new(m.batch_size.clone()))?;
        r.register(Box::new(m.last_box_count.clone()))?;
        r.register(Box::new(m.requests.clone()))?;
        r.register(Box::new(m.errors.clone()))?;
        r.register(Box::new(m.in_flight.clone()))?;
        r.register(Box::new(m.queue_depth.clone()))?;
        r.register(Box::new(m.ready.clone()))?;
        r.register(Box::new(m.breach_active.clone()))?;
        r.register(Box::new(m.memory_bytes.clone()))?;
        r.register(Box::new(m.memory_limit_bytes.clone()))?;
        r.register(Box::new(m.stalled.clone()))?;
        r.register(Box::new(m.stalls.clone()))?;
        r.register(Box::new(m.stall_deadline_seconds.clone()))?;
        r.register(Box::new(m.info.clone()))?;
        r.register(Box::new(m.latches.clone()))?;
        r.register(Box::new(m.latch_requests.clone()))?;
        r.register(Box::new(m.latch_refused.clone()))?;
        r.register(Box::new(m.open_connections.clone()))?;
        r.register(Box::new(m.connections_dropped.clone()))?;
        r.register(Box::new(m.comparisons.clone()))?;
        r.register(Box::new(m.comparison_failures.clone()))?;
        r.register(Box::new(m.comparison_skips.clone()))?;
        r.register(Box::new(m.comparisons_in_flight.clone()))?;
        r.register(Box::new(m.agreement.clone()))?;
        r.register(Box::new(m.agreement_missed_share.clone()))?;
        r.register(Box::new(m.agreement_extra_share.clone()))?;
        r.register(Box::new(m.class_confusions.clone()))?;
        r.register(Box::new(m.matched_stable_boxes.clone()))?;
        r.register(Box::new(m.agreements_pending.clone()))?;
        r.register(Box::new(m.agreements_dropped.clone()))?;
        r.register(Box::new(m.compare_requests.clone()))?;
        if gpu {
            r.register(Box::new(m.gpu_memory_used_bytes.clone()))?;
            r.register(Box::new(m.gpu_memory_total_bytes.clone()))?;
            r.register(Box::new(m.gpu_utilisation.clone()))?;
        }
        // Every label value exists from the start, so dashboards see zeros, not gaps.
        for kind in ErrorKind::ALL {
            m.errors.with_label_values(&[kind.as_str()]);
        }
        for reason in Reason::ALL {
            m.breach_active.with_label_values(&[reason.as_str()]);
        }
        for action in Action::ALL {
            for result in ["ok", "refused"] {
                m.latch_requests
                    .with_label_values(&[action.as_str(), result]);
            }
        }
        for refusal in Refusal::ALL {
            m.latch_refused.with_label_values(&[refusal.as_str()]);
        }
        for cut in Cut::ALL {
            m.connections_dropped.with_label_values(&[cut.as_str()]);
        }
        for fail in Fail::ALL {
            m.comparison_failures.with_label_values(&[fail.as_str()]);
        }
        for skip in Skip::ALL {
            m.comparison_skips.with_label_values(&[skip.as_str()]);
        }
        m.compare_requests.with_label_values(&["200"]);
        Ok(m)
    }

    /// Records one compared frame: its agreement, both shares, and the position matches by
    /// class (class names through `labels`, which bounds how many become label values).
    pub fn observe_agreement(&self, frame: &FrameAgreement, labels: &mut ClassLabels) {
        self.comparisons.inc();
        self.agreement.observe(frame.f1());
        self.agreement_missed_share.observe(frame.missed_share());
        self.agreement_extra_share.observe(frame.extra_share());
        for (stable, n) in frame.position_matched() {
            self.matched_stable_boxes
                .with_label_values(&[labels.label(stable)])
                .inc_by(n as u64);
        }
        for (stable, gray, n) in frame.confusions() {
            let stable = labels.label(stable).to_string();
            self.class_confusions
                .with_label_values(&[stable.as_str(), labels.label(gray)])
                .inc_by(n as u64);
        }
    }

    /// Records one reply, from the same value its signal headers were stamped from.
    pub fn observe(&self, reply: &ReplyMeta, status: u16) {
        self.requests
            .with_label_values(&[&status.to_string()])
            .inc();
        self.request_duration.observe(reply.latency_ms / 1000.0);
        match reply.outcome {
            Outcome::Detected {
                box_count,
                inference_ms,
                nms_ms,
                batch_size,
            } => {
                self.batch_size.observe(batch_size as f64);
                self.inference_duration.observe(inference_ms / 1000.0);
                self.nms_duration.observe(nms_ms / 1000.0);
                self.detections.observe(box_count as f64);
                self.last_box_count.set(box_count as i64);
            }
            Outcome::Failed(kind) => {
                self.errors.with_label_values(&[kind.as_str()]).inc();
            }
        }
    }

    /// Books one reply: a comparison request (`x-canary-compare: 1`, a gray sidecar's copy of
    /// a frame) only in its own counter, so that comparisons move none of the serving
    /// metrics; any other through [`Metrics::observe`].
    pub fn observe_reply(&self, reply: &ReplyMeta, status: u16, comparison: bool) {
        if comparison {
            self.compare_requests
                .with_label_values(&[&status.to_string()])
                .inc();
        } else {
            self.observe(reply, status);
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            log::error!("cannot encode metrics: {e}");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// The class names the comparison metrics use as label values: the first `max` names seen
/// (the two models' classes, normally a handful), then [`ClassLabels::OTHER`], so that an
/// unexpected model cannot grow the series without bound.
#[derive(Debug)]
pub struct ClassLabels {
    max: usize,
    known: HashSet<String>,
}

impl ClassLabels {
    /// The label of every class past the first `max`.
    pub const OTHER: &'static str = "other";

    pub fn new(max: usize) -> ClassLabels {
        ClassLabels {
            max,
            known: HashSet::new(),
        }
    }

    /// `class` itself while it is known or there is room, else [`ClassLabels::OTHER`].
    pub fn label<'a>(&mut self, class: &'a str) -> &'a str {
        if self.known.contains(class) {
            return class;
        }
        if self.known.len() < self.max {
            self.known.insert(class.to_string());
            return class;
        }
        ClassLabels::OTHER
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signals::agreement::Labelled;
    use crate::signals::watchdog::BreachSet;

    #[test]
    fn renders_every_contract_name() {
        let m = Metrics::new(true).unwrap();
        m.requests.with_label_values(&["200"]).inc();
        m.info.with_label_values(&["v1", "cpu"]).set(1);
        // The per-class series exist once a frame was compared.
        let stable = [box_of("Fall", 0.0)];
        let gray = [box_of("Normal", 0.0)];
        let frame = FrameAgreement::between(&stable, &gray);
        m.observe_agreement(&frame, &mut ClassLabels::new(8));
        let text = m.render();
        for name in [
            "grayguard_sidecar_request_duration_seconds_bucket",
            "grayguard_sidecar_inference_duration_seconds_count",
            "grayguard_sidecar_nms_duration_seconds_sum",
            "grayguard_sidecar_detections_per_image_bucket",
            "grayguard_sidecar_batch_size_count",
            "grayguard_sidecar_last_box_count",
            "grayguard_sidecar_requests_total{status=\"200\"} 1",
            "grayguard_sidecar_errors_total{kind=\"queue_full\"} 0",
            "grayguard_sidecar_in_flight",
            "grayguard_sidecar_queue_depth",
            "grayguard_sidecar_ready",
            "grayguard_sidecar_breach_active{reason=\"box_count\"} 0",
            "grayguard_sidecar_memory_bytes",
            "grayguard_sidecar_memory_limit_bytes",
            "grayguard_sidecar_gpu_memory_used_bytes",
            "grayguard_sidecar_gpu_memory_total_bytes",
            "grayguard_sidecar_gpu_utilisation_ratio",
            "grayguard_sidecar_stalled 0",
            "grayguard_sidecar_stalls_total 0",
            "grayguard_sidecar_stall_deadline_seconds 0",
            "grayguard_sidecar_breach_active{reason=\"stalled\"} 0",
            "grayguard_sidecar_info{device=\"cpu\",model_version=\"v1\"} 1",
            "grayguard_sidecar_latches 0",
            "grayguard_sidecar_latch_requests_total{action=\"clear\",result=\"refused\"} 0",
            "grayguard_sidecar_latch_refused_total{reason=\"public_listener\"} 0",
            "grayguard_sidecar_open_connections 0",
            "grayguard_sidecar_connections_dropped_total{reason=\"idle_timeout\"} 0",
            "grayguard_sidecar_comparisons_total 1",
            "grayguard_sidecar_class_confusions_total{gray_class=\"Normal\",stable_class=\"Fall\"} 1",
            "grayguard_sidecar_matched_stable_boxes_total{stable_class=\"Fall\"} 1",
            "grayguard_sidecar_comparison_failures_total{reason=\"timeout\"} 0",
            "grayguard_sidecar_comparison_skips_total{reason=\"busy\"} 0",
            "grayguard_sidecar_comparisons_in_flight 0",
            "grayguard_sidecar_agreement_bucket",
            "grayguard_sidecar_agreements_pending 0",
            "grayguard_sidecar_agreements_dropped_total 0",
            "grayguard_sidecar_compare_requests_total{status=\"200\"} 0",
        ] {
            assert!(text.contains(name), "missing {name} in\n{text}");
        }
        // Everything the contract lists is registered, under its exact name.
        let series = |name: &str| {
            text.lines()
                .any(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        };
        for name in names::SCALARS {
            assert!(series(name), "contract scalar {name} not exported");
        }
        for name in names::HISTOGRAMS {
            assert!(
                series(&format!("{name}_count")),
                "contract histogram {name}"
            );
        }
        let cpu = Metrics::new(false).unwrap().render();
        assert!(!cpu.contains("gpu_memory") && !cpu.contains("gpu_utilisation"));
    }

    #[test]
    fn observations_match_the_headers() {
        let m = Metrics::new(false).unwrap();
        let ok = ReplyMeta {
            latency_ms: 200.0,
            outcome: Outcome::Detected {
                box_count: 4,
                inference_ms: 150.0,
                nms_ms: 0.5,
                batch_size: 2,
            },
            breach: BreachSet::default(),
            latched: Vec::new(),
            held: Vec::new(),
            agreement: None,
        };
        m.observe(&ok, 200);
        let bad = ReplyMeta {
            latency_ms: 1.0,
            outcome: Outcome::Failed(ErrorKind::UnsupportedMediaType),
            breach: BreachSet::default(),
            latched: Vec::new(),
            held: Vec::new(),
            agreement: None,
        };
        m.observe(&bad, 415);
        assert_eq!(m.last_box_count.get(), 4);
        assert_eq!(m.requests.with_label_values(&["200"]).get(), 1);
        assert_eq!(m.requests.with_label_values(&["415"]).get(), 1);
        assert_eq!(
            m.errors
                .with_label_values(&["unsupported_media_type"])
                .get(),
            1
        );
        assert_eq!(m.detections.get_sample_count(), 1);
        assert_eq!(m.batch_size.get_sample_sum(), 2.0);
        assert_eq!(m.request_duration.get_sample_count(), 2);
        assert!((m.request_duration.get_sample_sum() - 0.201).abs() < 1e-9);
    }

    fn box_of(class: &str, x: f32) -> Labelled<'_> {
        Labelled {
            class,
            x1: x,
            y1: 0.0,
            x2: x + 10.0,
            y2: 10.0,
        }
    }

    #[test]
    fn comparison_requests_stay_out_of_the_serving_metrics() {
        let m = Metrics::new(false).unwrap();
        let reply = |outcome| ReplyMeta {
            latency_ms: 150.0,
            outcome,
            breach: BreachSet::default(),
            latched: Vec::new(),
            held: Vec::new(),
            agreement: None,
        };
        let ok = reply(Outcome::Detected {
            box_count: 2,
            inference_ms: 140.0,
            nms_ms: 0.1,
            batch_size: 1,
        });
        m.observe_reply(&ok, 200, true);
        m.observe_reply(&reply(Outcome::Failed(ErrorKind::QueueFull)), 503, true);
        assert_eq!(m.compare_requests.with_label_values(&["200"]).get(), 1);
        assert_eq!(m.compare_requests.with_label_values(&["503"]).get(), 1);
        assert_eq!(m.requests.with_label_values(&["200"]).get(), 0);
        assert_eq!(m.requests.with_label_values(&["503"]).get(), 0);
        assert_eq!(m.errors.with_label_values(&["queue_full"]).get(), 0);
        assert_eq!(m.request_duration.get_sample_count(), 0);
        assert_eq!(m.detections.get_sample_count(), 0);
        assert_eq!(m.last_box_count.get(), 0);
        m.observe_reply(&ok, 200, false);
        assert_eq!(m.requests.with_label_values(&["200"]).get(), 1);
        assert_eq!(m.detections.get_sample_count(), 1);
    }

    #[test]
    fn a_compared_frame_fills_the_histograms_and_the_per_class_counts() {
        let m = Metrics::new(false).unwrap();
        let mut labels = ClassLabels::new(8);
        // Stable: Fall, Fall, Normal; gray: the first Fall as Normal, the rest right, plus
        // one box stable did not have.
        let stable = [
            box_of("Fall", 0.0),
            box_of("Fall", 100.0),
            box_of("Normal", 200.0),
        ];
        let gray = [
            box_of("Normal", 0.0),
            box_of("Fall", 100.0),
            box_of("Normal", 200.0),
            box_of("Normal", 300.0),
        ];
        let frame = FrameAgreement::between(&stable, &gray);
        m.observe_agreement(&frame, &mut labels);
        assert_eq!(m.comparisons.get(), 1);
        // F1 = 2·2 / 7, missed 1/3, extra 2/4.
        assert!((m.agreement.get_sample_sum() - 4.0 / 7.0).abs() < 1e-12);
        assert!((m.agreement_missed_share.get_sample_sum() - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(m.agreement_extra_share.get_sample_sum(), 0.5);
        let confused = |s: &str, g: &str| m.class_confusions.with_label_values(&[s, g]).get();
        assert_eq!(
            (confused("Fall", "Normal"), confused("Normal", "Fall")),
            (1, 0)
        );
        let matched = |s: &str| m.matched_stable_boxes.with_label_values(&[s]).get();
        assert_eq!((matched("Fall"), matched("Normal")), (2, 1));
    }

    #[test]
    fn class_labels_are_bounded() {
        let mut labels = ClassLabels::new(2);
        assert_eq!(labels.label("Normal"), "Normal");
        assert_eq!(labels.label("Fall"), "Fall");
        assert_eq!(labels.label("Crawl"), ClassLabels::OTHER);
        assert_eq!(labels.label("Normal"), "Normal");
    }
}
