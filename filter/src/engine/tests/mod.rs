//! The engine through its rooms on the in-memory host: one VM or several sharing one
//! Envoy process's shared data, clock and metrics.

mod confirm;
mod detection;
mod faults;
mod hold;
mod latch;
mod promotion;
mod routing;

use grayguard_contract::Trigger;
use grayguard_contract::metrics::filter as names;
use grayguard_contract::tags::{Label, untag};

use super::*;
use crate::config::parse;
use crate::decision::Routed;
use crate::host::MemoryHost;
use crate::metrics::Counter;

const T0: u64 = 1_700_000_000_000_000_000;

fn engine(host: &MemoryHost, json: &str, seed: u64) -> Engine {
    let cfg = parse(json.as_bytes()).unwrap();
    let mut e = Engine::new(cfg, json.as_bytes(), seed);
    e.start(host);
    e
}

fn ask(e: &mut Engine, h: &MemoryHost, kind: &str) -> Routed {
    e.decide(h, |name| (name == "x-device-type").then_some(kind))
}

/// A response with the given latency and box count (and optional flag).
fn answer(e: &mut Engine, h: &MemoryHost, r: &Routed, lat: f64, boxes: u32, flag: Option<&str>) {
    let (lat, boxes) = (format!("{lat}"), boxes.to_string());
    let reply = e.read(r.decision.gray, Some(200), |name| match name {
        "x-inference-latency-ms" => Some(lat.as_bytes()),
        "x-box-count" => Some(boxes.as_bytes()),
        "x-canary-breach" => flag.map(str::as_bytes),
        _ => None,
    });
    e.settle(h, r, &reply);
}

fn fail(e: &mut Engine, h: &MemoryHost, r: &Routed) {
    let reply = e.read(r.decision.gray, Some(503), |_| None);
    e.settle(h, r, &reply);
}

fn text(e: &mut Engine, r: &Routed) -> String {
    e.decision_text(r, false).to_string()
}

/// The incident records the VMs logged, read with the contract's record type.
fn incidents(h: &MemoryHost) -> Vec<grayguard_contract::record::Incident> {
    h.logs()
        .iter()
        .filter_map(|(_, l)| grayguard_contract::record::parse_line(l))
        .filter_map(|r| match r.expect("a record that parses") {
            grayguard_contract::record::Record::Incident(i) => Some(*i),
            grayguard_contract::record::Record::Promotion(_) => None,
        })
        .collect()
}

const SEQ: &str = r#"{"stable":"v9","gray":"v10","sync_ms":100,
  "rules":[{"name":"cranes","headers":{"x-device-type":{"exact":"crane"}}}],
  "breach":{"latency":{"header":"x-inference-latency-ms","min_samples":10},
            "box_count":{"header":"x-box-count","min_samples":10},
            "error_rate":{"min_samples":10},
            "consecutive_failures":4,
            "shed_for_s":10,"probe_percent":100,"probe_successes":2}}"#;

/// Gray and stable traffic interleaved over two VMs, the tick every 100 ms.
fn traffic(vms: &mut [Engine], h: &MemoryHost, steps: usize, gray_boxes: impl Fn(usize) -> u32) {
    for i in 0..steps {
        let n = vms.len();
        let e = &mut vms[i % n];
        let r = ask(e, h, "crane");
        let boxes = if r.decision.gray { gray_boxes(i) } else { 5 };
        answer(
            e,
            h,
            &r,
            100.0 + (i % 7) as f64,
            boxes + (i % 3) as u32,
            None,
        );
        let s = ask(e, h, "dock");
        answer(e, h, &s, 100.0 + (i % 5) as f64, 4 + (i % 3) as u32, None);
        if i % 5 == 4 {
            h.advance_ms(100);
            for e in vms.iter_mut() {
                e.tick(h);
            }
        }
    }
}

/// A `GET` of `path?query` on the operator listener (`on_operator`) or elsewhere, as `by`
/// from `from`.
fn operate(
    e: &mut Engine,
    h: &MemoryHost,
    path: &str,
    query: &str,
    on_operator: bool,
    by: Option<&str>,
    from: Option<&str>,
) -> OperatorReply {
    let call = OperatorCall {
        on_operator,
        by,
        from,
        ..OperatorCall::get(path, query)
    };
    e.operator(h, &call)
}

/// The `label` of the gauge `metric` that is at 1 (a link: the alert's `confirm`, the
/// hold's `release`), read with the contract's stat-tag reader.
fn gauge_label(h: &MemoryHost, metric: &str, label: Label) -> Option<String> {
    h.gauges().into_iter().find_map(|(name, v)| {
        let (labels, bare) = untag(&name)?;
        (bare == metric && v == 1)
            .then(|| labels.into_iter().find(|(l, _)| *l == label))
            .flatten()
            .map(|(_, value)| value)
    })
}

/// The alert gauge's link (its `confirm` label).
fn alert_link(h: &MemoryHost) -> String {
    gauge_label(h, names::ALERT, Label::Confirm).expect("an alert gauge at 1")
}

/// The `result` of an operator answer's JSON body.
fn result(reply: &OperatorReply) -> String {
    let v: serde_json::Value = serde_json::from_str(&reply.body).expect("a JSON body");
    v["result"].as_str().expect("a result").to_string()
}

const SECRET: &str = "a-secret-of-at-least-16-bytes";

fn confirm_config() -> String {
    SEQ.replace(
        "\"shed_for_s\":10",
        "\"shed_for_s\":10,\"action\":\"confirm\"",
    )
    .replace(
        "\"sync_ms\":100,",
        &format!("\"sync_ms\":100,\"operator\":{{\"port\":10100,\"secret\":\"{SECRET}\",\"identity_header\":\"x-user\"}},"),
    )
}
