//! Prints every metric name grayguard publishes, as JSON, for tools outside Rust (the mesh
//! configuration validator, `tests/validate/validate_mesh.py`):
//!
//! ```text
//! {"filter":{"scalars":[...],"histograms":[...]},"sidecar":{"scalars":[...],"histograms":[...]}}
//! ```
//!
//! Scalars are counters and gauges; histograms are exposed as `<name>_bucket`, `_sum` and
//! `_count`. Run with `cargo run -q -p grayguard-contract --example metric_names`.

use grayguard_contract::metrics::{filter, sidecar};

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
    println!(
        "{{\"filter\":{{\"scalars\":{},\"histograms\":[]}},\"sidecar\":{{\"scalars\":{},\"histograms\":{}}}}}",
        array(filter::all()),
        array(owned(sidecar::SCALARS)),
        array(owned(sidecar::HISTOGRAMS)),
    );
}
