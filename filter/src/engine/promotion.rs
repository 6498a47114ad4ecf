//! The promotion verdict, as the gateway tells it: one JSON line in Envoy's log when a
//! rule's verdict is reached (`{"grayguard":"promotion",...}`, beside the incident
//! records), and every rule's verdict as it stands on the operator listener
//! (`GET /grayguard/promotion`). The verdict itself is the detector's
//! (`crate::detect::sequential::promotion`).

use serde_json::{Value, json};

use crate::detect::Standing;
use crate::engine::{Engine, OperatorReply};
use crate::host::{Host, Level};
use crate::incident::rfc3339;

impl Engine {
    /// Logs a verdict this VM's write reached.
    pub(super) fn log_verdict(&self, host: &impl Host, s: &Standing) {
        let mut v = self.standing_json(s);
        if let Value::Object(o) = &mut v {
            o.insert("grayguard".into(), json!("promotion"));
            o.insert("event".into(), json!(s.verdict.as_str()));
            o.insert("gateway".into(), json!(self.gateway));
            o.insert("stable".into(), json!(self.cfg.stable));
            o.insert("gray".into(), json!(self.cfg.gray));
        }
        host.log(Level::Info, &v.to_string());
    }

    /// `GET /grayguard/promotion`: every rule's verdict, as the shared evidence says now.
    pub(super) fn promotion_reply(&mut self, host: &impl Host) -> OperatorReply {
        let now = host.now_ns();
        let board = self
            .board
            .refresh(host, &self.keys.board, self.units)
            .clone();
        let rules: Vec<Value> = self
            .detector
            .promotions(&self.store(host), &board, now)
            .iter()
            .map(|s| self.standing_json(s))
            .collect();
        OperatorReply {
            status: 200,
            body: json!({ "gateway": self.gateway, "at": rfc3339(now), "rules": rules })
                .to_string(),
        }
    }

    /// One rule's verdict: its hypothesis, each effect's interval against its budget, the
    /// gray replies weighed and the times.
    fn standing_json(&self, s: &Standing) -> Value {
        let rule = self.unit_names.get(s.unit).map_or("?", String::as_str);
        let hypothesis = self.cfg.promote_of(s.unit).map(|p| {
            json!({
                "latency_max_increase_ms": p.latency_max_increase_ms,
                "latency_max_ratio": p.latency_max_ratio,
                "box_count_max_shift": p.box_count_max_shift,
                "error_max_excess": p.error_max_excess,
                "agreement_min": p.agreement_min,
                "alpha": p.alpha,
                "min_gray_responses": p.min_gray_responses,
                "cap_factor": p.cap_factor,
            })
        });
        let effects: Vec<Value> = s
            .bounds
            .iter()
            .map(|b| {
                let (upper_pct, lower_pct) = b.percent();
                json!({
                    "effect": b.effect.as_str(),
                    "budget": b.budget,
                    "estimate": num(b.estimate),
                    "lower": num(b.lower),
                    "upper": num(b.upper),
                    "inside": b.inside,
                    "upper_pct": num(upper_pct),
                    "lower_pct": num(lower_pct),
                })
            })
            .collect();
        let ms = |v: f64| (v > 0.0).then(|| rfc3339((v * 1e6) as u64));
        json!({
            "rule": rule,
            "state": s.verdict.as_str(),
            "gray_n": s.gray_n,
            "hypothesis": hypothesis,
            "effects": effects,
            "epoch_started": ms(s.started_ms),
            "verdict_at": ms(s.verdict_ms),
            "verdict_gray_n": (s.verdict_ms > 0.0).then_some(s.verdict_gray_n),
            "time_to_verdict_s": (s.verdict_ms > 0.0 && s.started_ms > 0.0)
                .then(|| ((s.verdict_ms - s.started_ms) / 1000.0).max(0.0)),
        })
    }
}

/// A finite number rounded to 4 decimals, or null.
fn num(v: f64) -> Value {
    if v.is_finite() {
        json!((v * 1e4).round() / 1e4)
    } else {
        Value::Null
    }
}
