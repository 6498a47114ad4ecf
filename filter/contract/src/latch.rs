//! The latch: how a gateway that shed a rule tells the gray workload, so that every other
//! gateway sheds the rule on its next gray response. The workload holds the latch and adds
//! `latched:<trigger>@<rule>` to the breach flag of every response that is not a half-open
//! probe (probes carry [`crate::headers::PROBE`] and are judged on their own merits).
//!
//! ```text
//! POST /grayguard/latch                     (the workload's own control listener only)
//! content-type: application/x-www-form-urlencoded
//! authorization: Bearer <token>             (when the workload is configured with one)
//!
//! body  = "action=latch&rule=" rule "&trigger=" trigger "&for_ms=" ms "&gateway=" id
//!       / "action=clear&rule=" rule "&healthy_for_ms=" ms "&gateway=" id
//! ```
//!
//! A latch lasts `for_ms` (the shedding gateway's `shed_for_s`). A gateway whose half-open
//! probes proved gray healthy clears the rule's latches, but only those set before its
//! healthy probes began (`healthy_for_ms` ago, by the workload's clock): a latch set since,
//! by a gateway that saw a fresh breach, stays.

use crate::reason::Trigger;

/// The latch endpoint on the workload's control listener.
pub const PATH: &str = "/grayguard/latch";

/// The conventional environment variable holding the latch token on the gateway: its Wasm VM
/// reads it (`breach.latch.token_env` in the shipped configurations).
pub const TOKEN_ENV: &str = "GRAYGUARD_LATCH_TOKEN";

/// The gray sidecar's environment variable for the same token (the `--control-token`
/// twin), which it then requires on every control call.
pub const WORKLOAD_TOKEN_ENV: &str = "GRAYGUARD_SIDECAR_CONTROL_TOKEN";

/// Longest gateway id kept, in bytes.
pub const MAX_GATEWAY_LEN: usize = 128;

/// One latch request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Hold the latch for `rule` on `trigger` for `for_ms`.
    Latch {
        rule: String,
        trigger: Trigger,
        for_ms: u64,
        gateway: String,
    },
    /// Drop the rule's latches set more than `healthy_for_ms` ago.
    Clear {
        rule: String,
        healthy_for_ms: u64,
        gateway: String,
    },
}

/// A body that is not a latch request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRequest(pub &'static str);

/// A gateway id made safe for the body and logs: printable ASCII without `&`, `=`, `,`,
/// `@`, at most [`MAX_GATEWAY_LEN`] bytes (others become `_`).
pub fn gateway_id(raw: &str) -> String {
    let id: String = raw
        .chars()
        .take(MAX_GATEWAY_LEN)
        .map(|c| {
            if c.is_ascii_graphic() && !"&=,@%+".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if id.is_empty() { "gateway".into() } else { id }
}

impl Request {
    pub fn render(&self) -> String {
        match self {
            Request::Latch {
                rule,
                trigger,
                for_ms,
                gateway,
            } => format!(
                "action=latch&rule={rule}&trigger={}&for_ms={for_ms}&gateway={}",
                trigger.as_str(),
                gateway_id(gateway)
            ),
            Request::Clear {
                rule,
                healthy_for_ms,
                gateway,
            } => format!(
                "action=clear&rule={rule}&healthy_for_ms={healthy_for_ms}&gateway={}",
                gateway_id(gateway)
            ),
        }
    }

    pub fn parse(body: &str) -> Result<Request, BadRequest> {
        let mut fields: [Option<&str>; 6] = [None; 6];
        const KEYS: [&str; 6] = [
            "action",
            "rule",
            "trigger",
            "for_ms",
            "healthy_for_ms",
            "gateway",
        ];
        for pair in body.trim().split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair
                .split_once('=')
                .ok_or(BadRequest("a field without a value"))?;
            let i = KEYS
                .iter()
                .position(|key| *key == k)
                .ok_or(BadRequest("an unknown field"))?;
            if fields[i].replace(v).is_some() {
                return Err(BadRequest("a field given twice"));
            }
        }
        let [action, rule, trigger, for_ms, healthy, gateway] = fields;
        let rule = rule.ok_or(BadRequest("no rule"))?;
        if !(crate::decision::valid_rule_name(rule) || rule == "*") {
            return Err(BadRequest("a bad rule name"));
        }
        let gateway = gateway.ok_or(BadRequest("no gateway"))?;
        if gateway.is_empty() || gateway_id(gateway) != gateway {
            return Err(BadRequest("a bad gateway id"));
        }
        let ms = |v: Option<&str>| v.and_then(|v| v.parse::<u64>().ok());
        match action {
            Some("latch") if healthy.is_none() => Ok(Request::Latch {
                rule: rule.into(),
                trigger: trigger
                    .and_then(Trigger::parse)
                    .ok_or(BadRequest("no known trigger"))?,
                for_ms: ms(for_ms).ok_or(BadRequest("no for_ms"))?,
                gateway: gateway.into(),
            }),
            Some("clear") if trigger.is_none() && for_ms.is_none() => Ok(Request::Clear {
                rule: rule.into(),
                healthy_for_ms: ms(healthy).ok_or(BadRequest("no healthy_for_ms"))?,
                gateway: gateway.into(),
            }),
            Some("latch" | "clear") => Err(BadRequest("fields of the other action")),
            _ => Err(BadRequest("no action (latch or clear)")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip() {
        let l = Request::Latch {
            rule: "crane-cameras".into(),
            trigger: Trigger::BoxCount,
            for_ms: 30_000,
            gateway: "gw-1".into(),
        };
        assert_eq!(
            l.render(),
            "action=latch&rule=crane-cameras&trigger=box_count&for_ms=30000&gateway=gw-1"
        );
        assert_eq!(Request::parse(&l.render()), Ok(l));
        let c = Request::Clear {
            rule: "*".into(),
            healthy_for_ms: 1_500,
            gateway: "router~10.0.0.1~gw.istio-system".into(),
        };
        assert_eq!(Request::parse(&c.render()), Ok(c));
    }

    #[test]
    fn bad_bodies_are_refused() {
        for bad in [
            "",
            "action=latch",
            "action=latch&rule=r&trigger=box_count&for_ms=1",
            "action=latch&rule=r&trigger=boxes&for_ms=1&gateway=g",
            "action=latch&rule=r&trigger=flag&for_ms=-1&gateway=g",
            "action=latch&rule=r&trigger=flag&for_ms=1&gateway=g&healthy_for_ms=1",
            "action=clear&rule=r&healthy_for_ms=1&gateway=g&trigger=flag",
            "action=pull&rule=r&gateway=g",
            "action=clear&rule=a b&healthy_for_ms=1&gateway=g",
            "action=clear&rule=r&healthy_for_ms=1&gateway=a@b",
            "action=clear&rule=r&rule=s&healthy_for_ms=1&gateway=g",
            "action=clear&rule=r&healthy_for_ms=1&gateway=g&extra=1",
        ] {
            assert!(Request::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(gateway_id("a b&c=d@e"), "a_b_c_d_e");
        assert_eq!(gateway_id(""), "gateway");
        assert_eq!(gateway_id(&"x".repeat(500)).len(), MAX_GATEWAY_LEN);
    }
}
