//! Flagger's webhooks on the promotion verdict, answered by the report server
//! (`grayguard-report --serve`), which reads the gateways' `grayguard_promotion_state`
//! through Prometheus (`grayguard_promotion_state{rule="R"}`, one series per gateway):
//!
//! - `POST /flagger/confirm-promotion`: 200 only when the rule is proven on every gateway
//!   that reports it (none refuted, none pending); anything else 409, and Flagger keeps the
//!   canary waiting before its promotion without counting a failed check;
//! - `POST /flagger/rollback`: 200 when any gateway has refuted the rule, and Flagger rolls
//!   the canary back; anything else 409, and nothing happens.
//!
//! Flagger posts `{"name","namespace","phase","checksum","metadata":{...}}`: the rule is the
//! webhook's `metadata.rule`, or the URL's `?rule=` (which wins when both are given). A
//! request that names no rule is a 400; Prometheus out of reach is a 503 (Flagger retries,
//! then treats it as not yet: a gate that cannot see never opens, and never rolls back).
//! Flagger counts 200–202 as success; these answer 200 or a 4xx/5xx, never a 2xx "no".

use std::collections::BTreeMap;

use serde_json::{Value, json};

use grayguard_contract::promotion::Verdict;

use crate::promotion::{GatewayState, fleet, state_query};

/// Longest webhook body read, bytes (Flagger's payload is a few hundred).
pub const MAX_BODY_BYTES: u64 = 64 * 1024;

/// The two webhooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// Flagger's `confirm-promotion`: open when proven everywhere.
    ConfirmPromotion,
    /// Flagger's `rollback`: roll back when refuted anywhere.
    Rollback,
}

impl Hook {
    /// The hook served at `path`.
    pub fn at(path: &str) -> Option<Hook> {
        match path {
            "/flagger/confirm-promotion" => Some(Hook::ConfirmPromotion),
            "/flagger/rollback" => Some(Hook::Rollback),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Hook::ConfirmPromotion => "confirm-promotion",
            Hook::Rollback => "rollback",
        }
    }
}

/// What Flagger said about its canary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Payload {
    pub name: String,
    pub namespace: String,
    pub phase: String,
    pub metadata: BTreeMap<String, String>,
}

/// Flagger's payload; an empty body is an empty payload (a person's `curl -X POST`).
pub fn parse_payload(body: &[u8]) -> Result<Payload, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Payload::default());
    }
    let v: Value =
        serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    let text = |k: &str| v[k].as_str().unwrap_or_default().to_string();
    let metadata = v["metadata"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default();
    Ok(Payload {
        name: text("name"),
        namespace: text("namespace"),
        phase: text("phase"),
        metadata,
    })
}

/// The rule a call is about: the query's `rule`, else the payload's `metadata.rule`.
pub fn rule_of(query: &str, payload: &Payload) -> Option<String> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, v)| k == "rule" && !v.is_empty())
        .map(|(_, v)| v.into_owned())
        .or_else(|| {
            payload
                .metadata
                .get("rule")
                .filter(|r| !r.is_empty())
                .cloned()
        })
}

/// The answer to one call: its status and a JSON body that says why.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

/// Answers `hook` for `rule` from the gateways' states (or Prometheus' error).
pub fn answer(
    hook: Hook,
    rule: &str,
    payload: &Payload,
    states: Result<&[GatewayState], &str>,
) -> Answer {
    let canary =
        (!payload.name.is_empty()).then(|| format!("{}/{}", payload.namespace, payload.name));
    let states = match states {
        Ok(s) => s,
        Err(e) => {
            return Answer {
                status: 503,
                body: json!({
                    "hook": hook.as_str(), "rule": rule, "canary": canary,
                    "answer": "cannot read the gateways' verdicts from Prometheus: wait",
                    "error": e, "query": state_query(rule),
                }),
            };
        }
    };
    let verdict = fleet(states);
    let (open, why) = match (hook, verdict) {
        (Hook::ConfirmPromotion, Verdict::Proven) => {
            (true, "proven on every gateway: promote".to_string())
        }
        (Hook::ConfirmPromotion, Verdict::Refuted) => (
            false,
            "refuted at a gateway: never promote this version".to_string(),
        ),
        (Hook::ConfirmPromotion, Verdict::Pending) if states.is_empty() => {
            (false, "no gateway reports the rule yet: wait".to_string())
        }
        (Hook::ConfirmPromotion, Verdict::Pending) => {
            let waiting = states
                .iter()
                .filter(|s| s.verdict != Some(Verdict::Proven))
                .count();
            (
                false,
                format!("pending at {waiting} of {} gateways: wait", states.len()),
            )
        }
        (Hook::Rollback, Verdict::Refuted) => (true, "refuted at a gateway: roll back".to_string()),
        (Hook::Rollback, _) => (false, format!("{}: no rollback", verdict.as_str())),
    };
    let gateways: Vec<Value> = states
        .iter()
        .map(|s| {
            json!({
                "gateway": s.gateway, "instance": s.instance,
                "state": s.verdict.map_or("unknown", Verdict::as_str),
            })
        })
        .collect();
    Answer {
        status: if open { 200 } else { 409 },
        body: json!({
            "hook": hook.as_str(), "rule": rule, "canary": canary, "phase": payload.phase,
            "verdict": verdict.as_str(), "answer": why, "gateways": gateways,
            "query": state_query(rule),
        }),
    }
}

/// The answer to a call that named no rule, or whose body is unreadable.
pub fn bad_request(hook: Hook, why: &str) -> Answer {
    Answer {
        status: 400,
        body: json!({
            "hook": hook.as_str(), "answer": why,
            "usage": format!("POST /flagger/{}?rule=RULE, or the rule in the webhook's metadata: {{\"rule\": \"RULE\"}}", hook.as_str()),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gw(name: &str, v: Option<Verdict>) -> GatewayState {
        GatewayState {
            instance: format!("{name}:9901"),
            gateway: name.into(),
            verdict: v,
        }
    }

    const FLAGGER: &[u8] = br#"{"name":"yolo-detector","namespace":"yolo","phase":"Progressing","checksum":"abc","metadata":{"rule":"crane-cameras","other":"x"}}"#;

    #[test]
    fn reads_flaggers_payload_and_the_rule() {
        let p = parse_payload(FLAGGER).unwrap();
        assert_eq!(
            (p.name.as_str(), p.namespace.as_str()),
            ("yolo-detector", "yolo")
        );
        assert_eq!(p.phase, "Progressing");
        assert_eq!(rule_of("", &p).as_deref(), Some("crane-cameras"));
        assert_eq!(rule_of("rule=night", &p).as_deref(), Some("night"));
        assert_eq!(rule_of("rule=", &Payload::default()), None);
        assert_eq!(parse_payload(b"  ").unwrap(), Payload::default());
        assert!(parse_payload(b"{nope").unwrap_err().contains("not JSON"));
        assert_eq!(Hook::at("/flagger/rollback"), Some(Hook::Rollback));
        assert_eq!(Hook::at("/flagger/other"), None);
    }

    #[test]
    fn confirm_promotion_opens_only_when_every_gateway_has_proven() {
        use Verdict::*;
        let p = parse_payload(FLAGGER).unwrap();
        let ask = |states: &[GatewayState]| {
            answer(Hook::ConfirmPromotion, "crane-cameras", &p, Ok(states))
        };
        let a = ask(&[gw("gw-0", Some(Proven)), gw("gw-1", Some(Pending))]);
        assert_eq!(a.status, 409);
        assert_eq!(a.body["answer"], "pending at 1 of 2 gateways: wait");
        assert_eq!(a.body["gateways"][1]["state"], "pending");
        assert_eq!(ask(&[]).status, 409);
        assert_eq!(
            ask(&[gw("gw-0", Some(Proven)), gw("gw-1", Some(Refuted))]).status,
            409
        );
        assert_eq!(
            ask(&[gw("gw-0", Some(Proven)), gw("gw-1", None)]).status,
            409
        );
        let open = ask(&[gw("gw-0", Some(Proven)), gw("gw-1", Some(Proven))]);
        assert_eq!(open.status, 200);
        assert_eq!(open.body["canary"], "yolo/yolo-detector");
        assert_eq!(
            open.body["query"],
            "grayguard_promotion_state{rule=\"crane-cameras\"}"
        );
    }

    #[test]
    fn rollback_fires_when_any_gateway_refuted_and_never_on_an_error() {
        use Verdict::*;
        let p = Payload::default();
        let ask = |states: &[GatewayState]| answer(Hook::Rollback, "r", &p, Ok(states));
        assert_eq!(
            ask(&[gw("a", Some(Proven)), gw("b", Some(Refuted))]).status,
            200
        );
        assert_eq!(
            ask(&[gw("a", Some(Proven)), gw("b", Some(Proven))]).status,
            409
        );
        assert_eq!(ask(&[gw("a", Some(Pending))]).status, 409);
        for hook in [Hook::Rollback, Hook::ConfirmPromotion] {
            let e = answer(hook, "r", &p, Err("connection refused"));
            assert_eq!(e.status, 503);
            assert_eq!(e.body["error"], "connection refused");
        }
        assert_eq!(bad_request(Hook::Rollback, "no rule").status, 400);
    }
}
