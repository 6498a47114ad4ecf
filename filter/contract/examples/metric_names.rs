//! Prints every metric name grayguard publishes, as JSON, for tools outside Rust (the mesh
//! configuration validator, `tests/validate/validate_mesh.py`):
//!
//! ```text
//! {"filter":{"scalars":[...],"histograms":[...]},"sidecar":{"scalars":[...],"histograms":[...]}}
//! ```
//!
//! Scalars are counters and gauges; histograms are exposed as `<name>_bucket`, `_sum` and
//! `_count`. Run with `cargo run -q -p grayguard-contract --example metric_names`.

use grayguard_contract::Trigger;
use grayguard_contract::metrics::{filter, sidecar};

const FILTER_SCALARS: &[&str] = &[
    filter::ROUTED_GRAY,
    filter::ROUTED_STABLE,
    filter::SHED_REQUESTS,
    filter::PROBE_REQUESTS,
    filter::DRY_RUN_REQUESTS,
    filter::GRAY_FAILURES,
    filter::MALFORMED_SIGNALS,
    filter::SPOOFED_HEADERS_STRIPPED,
    filter::BREAKER_STATE,
    filter::BREAKERS_OPEN,
    filter::BOARD_WRITES,
];
const FILTER_HISTOGRAMS: &[&str] = &[
    filter::GRAY_LATENCY_MS,
    filter::GRAY_BOX_COUNT,
    filter::STABLE_BOX_COUNT,
];
const SIDECAR_SCALARS: &[&str] = &[
    sidecar::LAST_BOX_COUNT,
    sidecar::REQUESTS_TOTAL,
    sidecar::ERRORS_TOTAL,
    sidecar::IN_FLIGHT,
    sidecar::QUEUE_DEPTH,
    sidecar::READY,
    sidecar::BREACH_ACTIVE,
    sidecar::MEMORY_BYTES,
    sidecar::MEMORY_LIMIT_BYTES,
    sidecar::GPU_MEMORY_USED_BYTES,
    sidecar::GPU_MEMORY_TOTAL_BYTES,
    sidecar::INFO,
];
const SIDECAR_HISTOGRAMS: &[&str] = &[
    sidecar::REQUEST_DURATION_SECONDS,
    sidecar::INFERENCE_DURATION_SECONDS,
    sidecar::NMS_DURATION_SECONDS,
    sidecar::DETECTIONS_PER_IMAGE,
];

/// A JSON array of names (metric names need no escaping: `[a-z0-9_]` only, checked).
fn array(names: impl IntoIterator<Item = String>) -> String {
    let quoted: Vec<String> = names
        .into_iter()
        .inspect(|n| {
            assert!(
                n.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "metric name {n:?} is not [a-z0-9_]"
            );
        })
        .map(|n| format!("\"{n}\""))
        .collect();
    format!("[{}]", quoted.join(","))
}

fn owned(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| n.to_string()).collect()
}

fn main() {
    let mut filter_scalars = owned(FILTER_SCALARS);
    filter_scalars.extend(Trigger::ALL.into_iter().map(filter::breaches));
    println!(
        "{{\"filter\":{{\"scalars\":{},\"histograms\":{}}},\"sidecar\":{{\"scalars\":{},\"histograms\":{}}}}}",
        array(filter_scalars),
        array(owned(FILTER_HISTOGRAMS)),
        array(owned(SIDECAR_SCALARS)),
        array(owned(SIDECAR_HISTOGRAMS)),
    );
}
