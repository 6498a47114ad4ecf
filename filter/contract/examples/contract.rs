//! Prints the whole contract as JSON, for tools outside Rust (the mesh configuration
//! validator, `tests/validate/validate_mesh.py`, checks every configuration against it):
//!
//! ```text
//! {"filter":{"scalars":[...],"histograms":[]},"sidecar":{"scalars":[...],"histograms":[...]},
//!  "tags":[{"label":"rule","regex":"..."},...],"headers":{"route":"x-canary-route",...},
//!  "triggers":[...],"reasons":[...],"effects":[...],"verdicts":[...]}
//! ```
//!
//! Scalars are counters and gauges; histograms are exposed as `<name>_bucket`, `_sum` and
//! `_count`. Run with `cargo run -q -p grayguard-contract --example contract` (`make
//! contract-json` writes it to `target/contract.json`).

use grayguard_contract::metrics::{filter, sidecar};
use grayguard_contract::promotion::{Effect, Verdict};
use grayguard_contract::tags::Label;
use grayguard_contract::{Reason, Trigger, headers};

/// A JSON string: the contract's names and regexes need only `\` and `"` escaped (checked:
/// printable ASCII).
fn string(s: &str) -> String {
    assert!(
        s.bytes().all(|b| (0x20..0x7f).contains(&b)),
        "{s:?} is not printable ASCII"
    );
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn array<S: AsRef<str>>(items: impl IntoIterator<Item = S>) -> String {
    let v: Vec<String> = items.into_iter().map(|s| string(s.as_ref())).collect();
    format!("[{}]", v.join(","))
}

fn object<'a>(pairs: impl IntoIterator<Item = (&'a str, String)>) -> String {
    let v: Vec<String> = pairs
        .into_iter()
        .map(|(k, v)| format!("{}:{v}", string(k)))
        .collect();
    format!("{{{}}}", v.join(","))
}

fn metric_names(names: &[String]) -> Vec<String> {
    for n in names {
        assert!(
            n.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
            "metric name {n:?} is not [a-z0-9_]"
        );
    }
    names.to_vec()
}

fn owned(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| n.to_string()).collect()
}

fn main() {
    let tags =
        Label::ALL.map(|l| object([("label", string(l.as_str())), ("regex", string(&l.regex()))]));
    let hs = [
        ("route", headers::ROUTE),
        ("decision", headers::DECISION),
        ("breach", headers::BREACH),
        ("probe", headers::PROBE),
        ("compare", headers::COMPARE),
        ("time_of_day", headers::TIME_OF_DAY),
        ("inference_latency_ms", headers::INFERENCE_LATENCY_MS),
        ("nms_latency_ms", headers::NMS_LATENCY_MS),
        ("box_count", headers::BOX_COUNT),
        ("model_version", headers::MODEL_VERSION),
        ("agreement", headers::AGREEMENT),
        ("device_type", headers::DEVICE_TYPE),
        ("device_id", headers::DEVICE_ID),
    ];
    println!(
        "{}",
        object([
            (
                "filter",
                object([
                    ("scalars", array(metric_names(&filter::all()))),
                    ("histograms", "[]".into()),
                ])
            ),
            (
                "sidecar",
                object([
                    ("scalars", array(metric_names(&owned(sidecar::SCALARS)))),
                    (
                        "histograms",
                        array(metric_names(&owned(sidecar::HISTOGRAMS)))
                    ),
                ])
            ),
            ("tags", format!("[{}]", tags.join(","))),
            ("headers", object(hs.map(|(k, v)| (k, string(v))))),
            ("triggers", array(Trigger::ALL.map(Trigger::as_str))),
            ("reasons", array(Reason::ALL.map(Reason::as_str))),
            ("effects", array(Effect::ALL.map(Effect::as_str))),
            ("verdicts", array(Verdict::ALL.map(Verdict::as_str))),
        ])
    );
}
