//! The configuration as JSON states it: serde shapes that reject unknown fields and wrong
//! types (with the field path), before any value is judged (`super::validate`).

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::config::types::{Action, Control, DetectorKind, Scope};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub route_header: Option<String>,
    pub stable: String,
    pub gray: String,
    pub utc_offset: Option<String>,
    pub trust_time_header: Option<bool>,
    pub rules: Vec<RawRule>,
    pub breach: Option<RawBreach>,
    pub sync_ms: Option<i64>,
    pub time_header_upstream: Option<bool>,
    pub operator: Option<RawOperator>,
    pub promote: Option<RawPromote>,
}

/// A release owner's hypothesis: every part optional (`promote`, and per rule).
#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawPromote {
    pub latency_max_increase_ms: Option<f64>,
    pub latency_max_ratio: Option<f64>,
    pub box_count_max_shift: Option<f64>,
    pub error_max_excess: Option<f64>,
    pub agreement_min: Option<f64>,
    pub alpha: Option<f64>,
    pub min_gray_responses: Option<i64>,
    pub cap_factor: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLatch {
    pub cluster: String,
    pub authority: Option<String>,
    pub timeout_ms: Option<i64>,
    pub calls: Option<i64>,
    pub token_env: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOperator {
    pub port: i64,
    pub secret: Option<String>,
    pub secret_env: Option<String>,
    pub link_ttl_s: Option<i64>,
    pub identity_header: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    pub name: String,
    #[serde(default)]
    pub headers: BTreeMap<String, RawMatch>,
    pub hours: Option<RawHours>,
    pub percent: Option<f64>,
    pub sticky_header: Option<String>,
    pub action: Option<Action>,
    pub promote: Option<RawPromote>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMatch {
    pub exact: Option<String>,
    pub prefix: Option<String>,
    pub regex: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHours {
    pub from: String,
    pub to: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawBreach {
    pub flag_header: Option<String>,
    pub latency: Option<RawLatency>,
    pub box_count: Option<RawBoxCount>,
    pub error_rate: Option<RawErrorRate>,
    pub consecutive_failures: Option<i64>,
    pub shed_for_s: Option<f64>,
    pub probe_percent: Option<f64>,
    pub probe_successes: Option<i64>,
    pub scope: Option<Scope>,
    pub dry_run: Option<bool>,
    pub detector: Option<DetectorKind>,
    pub action: Option<Action>,
    pub latch: Option<RawLatch>,
    pub arl: Option<f64>,
    pub control: Option<Control>,
    pub control_memory: Option<i64>,
    pub agreement: Option<RawAgreement>,
    /// Keys of the detector's earlier form, refused with a pointer to what replaced them.
    pub alpha: Option<serde_json::Value>,
    pub segment_responses: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAgreement {
    pub header: Option<String>,
    pub min_mean: Option<f64>,
    pub min_samples: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLatency {
    pub header: String,
    pub max_mean_ms: Option<f64>,
    pub max_ratio: Option<f64>,
    pub window_s: Option<f64>,
    pub min_samples: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBoxCount {
    pub header: String,
    pub max_sigma: Option<f64>,
    pub max_shift: Option<f64>,
    pub window_s: Option<f64>,
    pub min_samples: Option<i64>,
    pub baseline: Option<RawBaseline>,
    pub min_std: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBaseline {
    pub mean: f64,
    pub std: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawErrorRate {
    pub max: Option<f64>,
    pub max_excess: Option<f64>,
    pub window_s: Option<f64>,
    pub min_samples: Option<i64>,
}
