//! The metadata of one `/infer` reply. The same value becomes the signal headers (here) and
//! the metric observations ([`Metrics::observe`](crate::introspect::metrics::Metrics::observe)),
//! so what Envoy reads and what Prometheus scrapes cannot disagree.

use grayguard_contract::{Flag, Trigger, headers};
use hyper::header::{HeaderMap, HeaderName, HeaderValue};

use super::agreement::Agreement;
use super::watchdog::BreachSet;
use crate::error::ErrorKind;

pub const INFERENCE_LATENCY: HeaderName = HeaderName::from_static(headers::INFERENCE_LATENCY_MS);
pub const NMS_LATENCY: HeaderName = HeaderName::from_static(headers::NMS_LATENCY_MS);
pub const BOX_COUNT: HeaderName = HeaderName::from_static(headers::BOX_COUNT);
pub const MODEL_VERSION: HeaderName = HeaderName::from_static(headers::MODEL_VERSION);
pub const CANARY_BREACH: HeaderName = HeaderName::from_static(headers::BREACH);
pub const CANARY_AGREEMENT: HeaderName = HeaderName::from_static(headers::AGREEMENT);
/// Stamped on every reply of both listeners (not only `/infer`'s), see
/// [`served_by`](super::served_by).
pub const SERVED_BY: HeaderName = HeaderName::from_static(headers::SERVED_BY);

/// Result-specific part of a reply.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Boxes were computed. Times in ms.
    Detected {
        box_count: usize,
        inference_ms: f64,
        nms_ms: f64,
        /// Images in the model run that served this request.
        batch_size: usize,
    },
    Failed(ErrorKind),
}

#[derive(Debug, Clone, PartialEq)]
pub struct ReplyMeta {
    /// Server-side time from the start of decoding to the reply, ms.
    pub latency_ms: f64,
    pub outcome: Outcome,
    /// Active watchdog reasons at reply time.
    pub breach: BreachSet,
    /// `(trigger, rule)` of the latches gateways hold on this workload, for a reply that is
    /// not a half-open probe (empty for a probe).
    pub latched: Vec<(Trigger, String)>,
    /// `(trigger, rule)` of the rules a person holds through a gateway, on every reply.
    pub held: Vec<(Trigger, String)>,
    /// A finished comparison's agreement with stable that this reply carries, once (gray
    /// sidecars with `--compare-with`, successful replies only).
    pub agreement: Option<Agreement>,
}

/// Milliseconds as a header / JSON decimal: microsecond resolution.
pub fn round_ms(ms: f64) -> f64 {
    (ms * 1000.0).round() / 1000.0
}

impl ReplyMeta {
    pub fn box_count(&self) -> usize {
        match self.outcome {
            Outcome::Detected { box_count, .. } => box_count,
            Outcome::Failed(_) => 0,
        }
    }

    pub fn nms_ms(&self) -> f64 {
        match self.outcome {
            Outcome::Detected { nms_ms, .. } => nms_ms,
            Outcome::Failed(_) => 0.0,
        }
    }

    /// The `x-canary-breach` value: the watchdog's reasons, then the latches and the holds
    /// (`None`: quiet).
    pub fn flag(&self) -> Option<String> {
        if self.breach.is_empty() && self.latched.is_empty() && self.held.is_empty() {
            return None;
        }
        let flag = Flag {
            reasons: self.breach.iter().collect(),
            latched: self.latched.clone(),
            held: self.held.clone(),
            unknown: 0,
        };
        Some(flag.render())
    }

    /// Writes the signal headers (on every reply, success or failure).
    pub fn stamp(&self, headers: &mut HeaderMap, model_version: &HeaderValue) {
        let num = |v: String| HeaderValue::from_str(&v).unwrap_or(HeaderValue::from_static("0"));
        headers.insert(
            INFERENCE_LATENCY,
            num(format!("{:.3}", round_ms(self.latency_ms))),
        );
        headers.insert(NMS_LATENCY, num(format!("{:.3}", round_ms(self.nms_ms()))));
        headers.insert(BOX_COUNT, HeaderValue::from(self.box_count()));
        headers.insert(MODEL_VERSION, model_version.clone());
        if let Some(flag) = self.flag()
            && let Ok(v) = HeaderValue::from_str(&flag)
        {
            headers.insert(CANARY_BREACH, v);
        }
        if let Some(a) = self.agreement
            && let Ok(v) = HeaderValue::from_str(&a.render())
        {
            headers.insert(CANARY_AGREEMENT, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signals::watchdog::Reason;

    fn header<'a>(h: &'a HeaderMap, name: &HeaderName) -> &'a str {
        h.get(name).unwrap().to_str().unwrap()
    }

    #[test]
    fn success_stamps_all_signals() {
        let mut breach = BreachSet::default();
        breach.insert(Reason::Latency);
        breach.insert(Reason::Errors);
        let meta = ReplyMeta {
            latency_ms: 151.23456,
            outcome: Outcome::Detected {
                box_count: 3,
                inference_ms: 140.0,
                nms_ms: 0.0421,
                batch_size: 1,
            },
            breach,
            latched: Vec::new(),
            held: Vec::new(),
            agreement: None,
        };
        let mut h = HeaderMap::new();
        meta.stamp(&mut h, &HeaderValue::from_static("v10-gray"));
        assert!(h.get(&CANARY_AGREEMENT).is_none());
        assert_eq!(header(&h, &INFERENCE_LATENCY), "151.235");
        assert_eq!(header(&h, &NMS_LATENCY), "0.042");
        assert_eq!(header(&h, &BOX_COUNT), "3");
        assert_eq!(header(&h, &MODEL_VERSION), "v10-gray");
        assert_eq!(header(&h, &CANARY_BREACH), "latency,errors");
    }

    #[test]
    fn failure_stamps_zero_boxes_and_no_breach_header_when_quiet() {
        let meta = ReplyMeta {
            latency_ms: 0.5,
            outcome: Outcome::Failed(ErrorKind::BadImage),
            breach: BreachSet::default(),
            latched: Vec::new(),
            held: Vec::new(),
            agreement: None,
        };
        let mut h = HeaderMap::new();
        meta.stamp(&mut h, &HeaderValue::from_static("v9"));
        assert_eq!(header(&h, &BOX_COUNT), "0");
        assert_eq!(header(&h, &NMS_LATENCY), "0.000");
        assert!(h.get(&CANARY_BREACH).is_none());
    }

    #[test]
    fn latches_follow_the_watchdog_reasons_in_the_flag() {
        let mut breach = BreachSet::default();
        breach.insert(Reason::Memory);
        let mut meta = ReplyMeta {
            latency_ms: 1.0,
            outcome: Outcome::Failed(ErrorKind::BadImage),
            breach,
            latched: vec![
                (Trigger::BoxCount, "crane-cameras".into()),
                (Trigger::Flag, "*".into()),
            ],
            held: Vec::new(),
            agreement: None,
        };
        let mut h = HeaderMap::new();
        meta.stamp(&mut h, &HeaderValue::from_static("v10"));
        let value = header(&h, &CANARY_BREACH);
        assert_eq!(
            value,
            "memory,latched:box_count@crane-cameras,latched:flag@*"
        );
        // What the filter reads back: a latch alone is not first-hand news.
        let read = Flag::parse(value);
        assert!(read.first_hand());
        meta.breach = BreachSet::default();
        let mut h = HeaderMap::new();
        meta.stamp(&mut h, &HeaderValue::from_static("v10"));
        let read = Flag::parse(header(&h, &CANARY_BREACH));
        assert!(!read.first_hand());
        assert_eq!(read.latched.len(), 2);
        // Holds come last, and alone still raise the flag.
        meta.held = vec![(Trigger::Latency, "crane-cameras".into())];
        let mut h = HeaderMap::new();
        meta.stamp(&mut h, &HeaderValue::from_static("v10"));
        assert_eq!(
            header(&h, &CANARY_BREACH),
            "latched:box_count@crane-cameras,latched:flag@*,held:latency@crane-cameras"
        );
        meta.latched.clear();
        let mut h = HeaderMap::new();
        meta.stamp(&mut h, &HeaderValue::from_static("v10"));
        let read = Flag::parse(header(&h, &CANARY_BREACH));
        assert_eq!(read.held_for("crane-cameras"), Some(Trigger::Latency));
    }

    #[test]
    fn an_agreement_is_stamped_with_three_decimals() {
        let frame = crate::signals::agreement::FrameAgreement {
            stable_boxes: 3,
            gray_boxes: 3,
            matched: 2,
            ..Default::default()
        };
        let meta = ReplyMeta {
            latency_ms: 1.0,
            outcome: Outcome::Detected {
                box_count: 3,
                inference_ms: 1.0,
                nms_ms: 0.1,
                batch_size: 1,
            },
            breach: BreachSet::default(),
            latched: Vec::new(),
            held: Vec::new(),
            agreement: Some(frame.value()),
        };
        let mut h = HeaderMap::new();
        meta.stamp(&mut h, &HeaderValue::from_static("v10"));
        assert_eq!(header(&h, &CANARY_AGREEMENT), "0.666");
    }
}
