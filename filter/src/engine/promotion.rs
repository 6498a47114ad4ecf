//! The promotion verdict, as the gateway tells it: one JSON line in Envoy's log when a
//! rule's verdict is reached (`{"grayguard":"promotion",...}`, beside the incident
//! records), and every rule's verdict as it stands on the operator listener
//! (`GET /grayguard/promotion`). The verdict itself is the detector's
//! (`crate::detect::sequential::promotion`); the records are the contract's
//! (`grayguard_contract::record`).

use grayguard_contract::record::{
    self, EffectBounds, Hypothesis, Promotion, PromotionReply, Record, RuleVerdict,
};

use crate::detect::Standing;
use crate::engine::{Engine, OperatorReply};
use crate::host::{Host, Level};
use crate::incident::rfc3339;

impl Engine {
    /// Logs a verdict this VM's write reached.
    pub(super) fn log_verdict(&self, host: &impl Host, s: &Standing) {
        let line = record::render(&Record::Promotion(Box::new(Promotion {
            event: s.verdict,
            verdict: self.rule_verdict(s),
            gateway: Some(self.gateway.clone()),
            stable: Some(self.cfg.stable.clone()),
            gray: Some(self.cfg.gray.clone()),
        })));
        host.log(Level::Info, &line);
    }

    /// Every rule's promotion verdict as the shared evidence says now.
    pub fn promotions(&mut self, host: &impl Host) -> Vec<Standing> {
        let now = host.now_ns();
        let board = self
            .board
            .refresh(host, &self.keys.board, self.units)
            .clone();
        self.detector.promotions(&self.store(host), &board, now)
    }

    /// `GET /grayguard/promotion`: every rule's verdict, as the shared evidence says now.
    pub(super) fn promotion_reply(&mut self, host: &impl Host) -> OperatorReply {
        let now = host.now_ns();
        let rules = self
            .promotions(host)
            .iter()
            .map(|s| self.rule_verdict(s))
            .collect();
        let reply = PromotionReply {
            gateway: self.gateway.clone(),
            at: rfc3339(now),
            rules,
        };
        OperatorReply {
            status: 200,
            body: serde_json::to_string(&reply).unwrap_or_default(),
        }
    }

    /// One rule's verdict: its hypothesis, each effect's interval against its budget, the
    /// gray replies weighed and the times.
    fn rule_verdict(&self, s: &Standing) -> RuleVerdict {
        let hypothesis = self.cfg.promote_of(s.unit).map(|p| Hypothesis {
            latency_max_increase_ms: p.latency_max_increase_ms,
            latency_max_ratio: p.latency_max_ratio,
            box_count_max_shift: p.box_count_max_shift,
            error_max_excess: p.error_max_excess,
            agreement_min: p.agreement_min,
            alpha: p.alpha,
            min_gray_responses: p.min_gray_responses,
            cap_factor: p.cap_factor,
        });
        let effects = s
            .bounds
            .iter()
            .map(|b| {
                let (upper_pct, lower_pct) = b.percent();
                EffectBounds {
                    effect: b.effect,
                    budget: b.budget,
                    estimate: num(b.estimate),
                    lower: num(b.lower),
                    upper: num(b.upper),
                    inside: b.inside,
                    upper_pct: num(upper_pct),
                    lower_pct: num(lower_pct),
                }
            })
            .collect();
        let at = |ms: f64| (ms > 0.0).then(|| rfc3339((ms * 1e6) as u64));
        let reached = s.verdict_ms > 0.0;
        RuleVerdict {
            rule: self
                .unit_names
                .get(s.unit)
                .map_or("?", String::as_str)
                .to_string(),
            state: s.verdict,
            gray_n: s.gray_n,
            hypothesis,
            effects,
            epoch_started: at(s.started_ms),
            verdict_at: at(s.verdict_ms),
            verdict_gray_n: reached.then_some(s.verdict_gray_n),
            time_to_verdict_s: (reached && s.started_ms > 0.0)
                .then(|| ((s.verdict_ms - s.started_ms) / 1000.0).max(0.0)),
        }
    }
}

/// A finite number rounded to 4 decimals (JSON has no room for infinities).
fn num(v: f64) -> Option<f64> {
    v.is_finite().then(|| (v * 1e4).round() / 1e4)
}
