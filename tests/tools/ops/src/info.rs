//! What each sidecar serves, for the gray-vs-stable comparison: its `GET /info` document
//! (sidecar, model, runtime, flags, host), flattened to `section.field` rows. Every field is
//! optional: a sidecar without `/info` (an older build) is described by the labels of its
//! `grayguard_sidecar_info` metric instead, and a missing field reads as unknown, never as
//! a difference.

use std::collections::BTreeMap;

use grayguard_contract::headers;
use grayguard_contract::metrics::sidecar;
use serde_json::Value;

use grayguard_client::exposition;
use grayguard_client::fetch::Client;

/// Which side a sidecar serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Gray,
    Stable,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Gray => "gray",
            Role::Stable => "stable",
        }
    }
}

/// Where a sidecar's description came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `GET /info`.
    Info,
    /// The labels of `grayguard_sidecar_info` on `/metrics` (no `/info`; why in the text).
    Metrics(String),
    /// Neither answered (why).
    None(String),
}

/// One sidecar's description.
#[derive(Debug, Clone, PartialEq)]
pub struct Sidecar {
    pub role: Role,
    /// Its base URL (empty for a pod seen in an incident that no URL given answers as).
    pub url: String,
    /// The pod that answered there (its replies' `x-served-by`).
    pub pod: Option<String>,
    pub source: Source,
    /// `section.field` → shown value.
    pub fields: BTreeMap<String, String>,
}

/// The fields every report lists, in this order, whether or not a sidecar has them.
pub const KNOWN: &[&str] = &[
    "model.version",
    "model.path",
    "model.sha256",
    "model.input",
    "model.classes",
    "runtime.onnxruntime",
    "runtime.device",
    "runtime.intra_threads",
    "runtime.inter_threads",
    "sidecar.version",
    "sidecar.started_at",
    "host.hostname",
    "host.os",
    "host.arch",
    "host.cpus",
    "host.memory_bytes",
];

/// Fields that differ between any two pods by nature: shown, never flagged.
const PER_POD: &[&str] = &["sidecar.started_at", "host.hostname"];

/// The `/info` document flattened: nested objects joined with dots, `input` as `W×H`,
/// lists comma-separated, byte counts with a readable size.
pub fn flatten(doc: &Value) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    walk("", doc, &mut out);
    out
}

fn walk(prefix: &str, v: &Value, out: &mut BTreeMap<String, String>) {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                walk(&key, child, out);
            }
        }
        Value::Null => {}
        leaf if !prefix.is_empty() => {
            out.insert(prefix.to_string(), show(prefix, leaf));
        }
        _ => {}
    }
}

fn show(key: &str, v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(items) if key == "model.input" && items.len() == 2 => {
            format!("{}×{}", plain(&items[0]), plain(&items[1]))
        }
        Value::Array(items) => items.iter().map(plain).collect::<Vec<_>>().join(", "),
        Value::Number(n) if key.ends_with("_bytes") => match n.as_u64() {
            Some(b) => format!("{} ({b})", bytes(b)),
            None => n.to_string(),
        },
        other => plain(other),
    }
}

fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `b` bytes in GiB/MiB/KiB, one decimal.
pub fn bytes(b: u64) -> String {
    const UNITS: [(&str, f64); 3] = [
        ("GiB", 1024.0 * 1024.0 * 1024.0),
        ("MiB", 1024.0 * 1024.0),
        ("KiB", 1024.0),
    ];
    for (unit, size) in UNITS {
        if b as f64 >= size {
            return format!("{:.1} {unit}", b as f64 / size);
        }
    }
    format!("{b} B")
}

/// The fields the `grayguard_sidecar_info` metric gives (its labels `model_version`,
/// `device`), or `None` when the metrics lack it.
pub fn from_metrics(text: &str) -> Option<BTreeMap<String, String>> {
    let sample = exposition::samples(text, sidecar::INFO)
        .into_iter()
        .next()?;
    let mut out = BTreeMap::new();
    for (label, key) in [
        ("model_version", "model.version"),
        ("device", "runtime.device"),
    ] {
        if let Some(v) = sample.labels.get(label) {
            out.insert(key.to_string(), v.clone());
        }
    }
    Some(out)
}

/// Describes the sidecar at `url` (its base URL): `/info`, else `/metrics`; and which pod
/// answered.
pub fn fetch(client: &Client, role: Role, url: &str) -> Sidecar {
    let base = url.trim_end_matches('/');
    let (source, fields, pod) =
        match client.get_with_header(&format!("{base}/info"), &[], Some(headers::SERVED_BY)) {
            Ok((body, pod)) => match serde_json::from_str::<Value>(&body) {
                Ok(doc @ Value::Object(_)) => (Source::Info, flatten(&doc), pod),
                Ok(_) => fallback(client, base, "/info is not a JSON object".into()),
                Err(e) => fallback(client, base, format!("/info is not JSON: {e}")),
            },
            Err(e) => fallback(client, base, e.to_string()),
        };
    Sidecar {
        role,
        url: base.to_string(),
        pod,
        source,
        fields,
    }
}

fn fallback(
    client: &Client,
    base: &str,
    why: String,
) -> (Source, BTreeMap<String, String>, Option<String>) {
    match client.get_with_header(&format!("{base}/metrics"), &[], Some(headers::SERVED_BY)) {
        Ok((text, pod)) => match from_metrics(&text) {
            Some(fields) => (Source::Metrics(why), fields, pod),
            None => (
                Source::None(format!("{why}; /metrics has no {}", sidecar::INFO)),
                BTreeMap::new(),
                pod,
            ),
        },
        Err(e) => (Source::None(format!("{why}; {e}")), BTreeMap::new(), None),
    }
}

/// The gray pods an incident saw (`seen`, from its records) that none of `sidecars` answered
/// as: a column each, known by name only, so the comparison covers every pod involved and
/// says which could not be asked.
pub fn unreached(sidecars: &[Sidecar], seen: &[&str]) -> Vec<Sidecar> {
    seen.iter()
        .filter(|pod| {
            !sidecars
                .iter()
                .any(|s| s.role == Role::Gray && s.pod.as_deref() == Some(**pod))
        })
        .map(|pod| Sidecar {
            role: Role::Gray,
            url: String::new(),
            pod: Some(pod.to_string()),
            source: Source::None(format!(
                "gray pod {pod} served the incident, but no --gray URL answers as it"
            )),
            fields: BTreeMap::new(),
        })
        .collect()
}

/// One row of the comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub key: String,
    /// One value per sidecar, in the order given (`None`: unknown).
    pub values: Vec<Option<String>>,
    /// Gray and stable say different things (both known; per-pod fields never).
    pub differs: bool,
}

/// The comparison of `sidecars`: the known fields, then every other field any of them has
/// (flags first), one row each.
pub fn diff(sidecars: &[Sidecar]) -> Vec<Row> {
    let mut keys: Vec<String> = KNOWN.iter().map(|k| k.to_string()).collect();
    let mut extra: Vec<&String> = sidecars
        .iter()
        .flat_map(|s| s.fields.keys())
        .filter(|k| !KNOWN.contains(&k.as_str()))
        .collect();
    extra.sort_by_key(|k| (!k.starts_with("flags."), k.as_str()));
    extra.dedup();
    keys.extend(extra.into_iter().cloned());
    keys.into_iter()
        .map(|key| {
            let values: Vec<Option<String>> = sidecars
                .iter()
                .map(|s| s.fields.get(&key).cloned())
                .collect();
            let side = |role: Role| -> Vec<&String> {
                let mut v: Vec<&String> = sidecars
                    .iter()
                    .zip(&values)
                    .filter(|(s, _)| s.role == role)
                    .filter_map(|(_, v)| v.as_ref())
                    .collect();
                v.sort();
                v.dedup();
                v
            };
            let (gray, stable) = (side(Role::Gray), side(Role::Stable));
            let differs = !PER_POD.contains(&key.as_str())
                && !gray.is_empty()
                && !stable.is_empty()
                && gray != stable;
            Row {
                key,
                values,
                differs,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sidecar(role: Role, doc: Value) -> Sidecar {
        Sidecar {
            role,
            url: String::new(),
            pod: None,
            source: Source::Info,
            fields: flatten(&doc),
        }
    }

    #[test]
    fn every_gray_pod_seen_has_a_column() {
        let mut a = sidecar(Role::Gray, json!({"model": {"version": "v10-gray"}}));
        a.pod = Some("gray-a".into());
        let mut s = sidecar(Role::Stable, json!({"model": {"version": "v9-prod"}}));
        // A stable pod of the same name is not the gray one.
        s.pod = Some("gray-b".into());
        let missing = unreached(&[a.clone(), s.clone()], &["gray-a", "gray-b"]);
        assert_eq!(missing.len(), 1);
        assert_eq!(missing[0].pod.as_deref(), Some("gray-b"));
        assert_eq!(missing[0].role, Role::Gray);
        assert!(matches!(&missing[0].source, Source::None(why) if why.contains("no --gray URL")));
        // Unknown everywhere in its column: never a difference.
        let rows = diff(&[a, s, missing[0].clone()]);
        let version = rows.iter().find(|r| r.key == "model.version").unwrap();
        assert_eq!(version.values[2], None);
        assert!(version.differs);
    }

    #[test]
    fn flattens_the_info_document() {
        let doc = json!({
            "sidecar": {"version": "0.1.0", "started_at": "2026-11-30T15:00:00Z"},
            "model": {"path": "/m.onnx", "sha256": "ab12", "version": "v10-gray",
                      "input": [640, 640], "classes": ["Normal", "Fall"]},
            "runtime": {"onnxruntime": "1.31.1", "device": "cpu", "intra_threads": 1, "inter_threads": null},
            "flags": {"conf": 0.001, "max_queue": 64},
            "host": {"memory_bytes": 25_769_803_776u64, "cpus": 2}
        });
        let f = flatten(&doc);
        assert_eq!(f["model.input"], "640×640");
        assert_eq!(f["model.classes"], "Normal, Fall");
        assert_eq!(f["runtime.intra_threads"], "1");
        assert!(!f.contains_key("runtime.inter_threads"));
        assert_eq!(f["flags.conf"], "0.001");
        assert_eq!(f["host.memory_bytes"], "24.0 GiB (25769803776)");
        assert_eq!(f["host.cpus"], "2");
    }

    #[test]
    fn differences_are_flagged_only_where_both_sides_are_known() {
        let gray = sidecar(
            Role::Gray,
            json!({"model": {"version": "v10-gray", "sha256": "aa"},
                   "flags": {"conf": 0.001}, "host": {"hostname": "a"}}),
        );
        let stable = sidecar(
            Role::Stable,
            json!({"model": {"version": "v9-prod", "sha256": "aa"},
                   "flags": {"conf": 0.25, "extra": true}, "host": {"hostname": "b"}}),
        );
        let rows = diff(&[gray, stable]);
        let row = |k: &str| rows.iter().find(|r| r.key == k).unwrap();
        assert!(row("model.version").differs);
        assert!(!row("model.sha256").differs);
        assert!(row("flags.conf").differs);
        assert!(
            !row("flags.extra").differs,
            "unknown on gray: not a difference"
        );
        assert!(!row("host.hostname").differs, "per pod by nature");
        assert_eq!(row("runtime.device").values, vec![None, None]);
        // Known fields first, then flags, in a fixed order.
        assert_eq!(rows[0].key, "model.version");
        assert_eq!(rows[KNOWN.len()].key, "flags.conf");
    }

    #[test]
    fn the_info_metric_stands_in_for_info() {
        let text = "# TYPE grayguard_sidecar_info gauge\n\
                    grayguard_sidecar_info{device=\"cpu\",model_version=\"v10-gray\"} 1\n";
        let f = from_metrics(text).unwrap();
        assert_eq!(f["model.version"], "v10-gray");
        assert_eq!(f["runtime.device"], "cpu");
        assert!(from_metrics("other 1\n").is_none());
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 * 1024 * 1024), "3.0 MiB");
    }
}
