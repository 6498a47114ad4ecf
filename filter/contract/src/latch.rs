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
//!       / "action=hold&rule=" rule "&trigger=" trigger "&gateway=" id
//!       / "action=release&rule=" rule "&gateway=" id
//!
//! GET /grayguard/latch                      (the same listener and token)
//! → 200, a JSON [`Listing`]: the live latches, the holds, the recent releases
//! ```
//!
//! A latch lasts `for_ms` (the shedding gateway's `shed_for_s`). A gateway whose half-open
//! probes proved gray healthy clears the rule's latches, but only those set before its
//! healthy probes began (`healthy_for_ms` ago, by the workload's clock): a latch set since,
//! by a gateway that saw a fresh breach, stays.
//!
//! A **hold** is a person's decision (a confirmed or a direct shed) and has no expiry: the
//! workload keeps it until a `release` and adds `held:<trigger>@<rule>` to the flag of every
//! reply, half-open probes included, so every gateway that reads it holds the rule too. A
//! release drops the rule's hold and leaves a **release record** (the tombstone) for as long
//! as the longest latch lives, so that a holding gateway's periodic `GET` can tell
//! "released" (the record is there) from "this workload never heard of it, or restarted and
//! forgot" (neither a hold nor a release: the gateway holds on and sends its hold again). A
//! new hold on the rule replaces its release record.

use serde::{Deserialize, Serialize};

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
    /// Hold `rule` shed (a person decided, on `trigger`'s evidence or directly) until a
    /// release.
    Hold {
        rule: String,
        trigger: Trigger,
        gateway: String,
    },
    /// A person released the rule's hold: drop it and keep the release record.
    Release { rule: String, gateway: String },
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
            Request::Hold {
                rule,
                trigger,
                gateway,
            } => format!(
                "action=hold&rule={rule}&trigger={}&gateway={}",
                trigger.as_str(),
                gateway_id(gateway)
            ),
            Request::Release { rule, gateway } => {
                format!("action=release&rule={rule}&gateway={}", gateway_id(gateway))
            }
        }
    }

    /// The rule the request is about.
    pub fn rule(&self) -> &str {
        match self {
            Request::Latch { rule, .. }
            | Request::Clear { rule, .. }
            | Request::Hold { rule, .. }
            | Request::Release { rule, .. } => rule,
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
        let known_trigger = || {
            trigger
                .and_then(Trigger::parse)
                .ok_or(BadRequest("no known trigger"))
        };
        let (rule, gateway) = (rule.to_string(), gateway.to_string());
        match action {
            Some("latch") if healthy.is_none() => Ok(Request::Latch {
                rule,
                trigger: known_trigger()?,
                for_ms: ms(for_ms).ok_or(BadRequest("no for_ms"))?,
                gateway,
            }),
            Some("clear") if trigger.is_none() && for_ms.is_none() => Ok(Request::Clear {
                rule,
                healthy_for_ms: ms(healthy).ok_or(BadRequest("no healthy_for_ms"))?,
                gateway,
            }),
            Some("hold") if for_ms.is_none() && healthy.is_none() => Ok(Request::Hold {
                rule,
                trigger: known_trigger()?,
                gateway,
            }),
            Some("release") if trigger.is_none() && for_ms.is_none() && healthy.is_none() => {
                Ok(Request::Release { rule, gateway })
            }
            Some("latch" | "clear" | "hold" | "release") => {
                Err(BadRequest("fields of another action"))
            }
            _ => Err(BadRequest("no action (latch, clear, hold or release)")),
        }
    }
}

/// What a workload holds, as `GET /grayguard/latch` lists it (the answer to a `POST` lists
/// the same after the request, beside what it did). Readers ignore fields they do not know.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listing {
    /// The live latches.
    #[serde(default)]
    pub latches: Vec<Latched>,
    /// The rules a person holds.
    #[serde(default)]
    pub holds: Vec<Held>,
    /// The release records: rules released within the longest latch's life.
    #[serde(default)]
    pub released: Vec<Released>,
}

/// One gateway's live latch on one rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Latched {
    pub gateway: String,
    pub rule: String,
    pub trigger: Trigger,
    /// Since it was set, and until it lapses, by the workload's clock.
    pub age_ms: u64,
    pub remaining_ms: u64,
}

/// A rule held until a person releases it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Held {
    pub rule: String,
    pub trigger: Trigger,
    /// The gateway whose hold call set it.
    pub gateway: String,
    pub age_ms: u64,
}

/// A rule a person released: its release record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Released {
    pub rule: String,
    /// The gateway where the person released it.
    pub gateway: String,
    pub age_ms: u64,
}

/// Where a listing stands on one rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing<'a> {
    /// Held (by the first matching hold).
    Held(&'a Held),
    /// Released, and not held since.
    Released(&'a Released),
    /// Neither: never heard of, or forgotten (a restarted workload).
    Unknown,
}

impl Listing {
    /// Where `rule` stands: a hold on it (or on `*`) wins over a release record, which a
    /// new hold replaces anyway.
    pub fn standing(&self, rule: &str) -> Standing<'_> {
        let on = |r: &str| r == rule || r == "*";
        if let Some(h) = self.holds.iter().find(|h| on(&h.rule)) {
            return Standing::Held(h);
        }
        match self.released.iter().find(|r| on(&r.rule)) {
            Some(r) => Standing::Released(r),
            None => Standing::Unknown,
        }
    }

    /// Parses a listing (a `GET` answer, or the listing in a `POST` answer).
    pub fn parse(body: &[u8]) -> Result<Listing, serde_json::Error> {
        serde_json::from_slice(body)
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
        let h = Request::Hold {
            rule: "crane-cameras".into(),
            trigger: Trigger::BoxCount,
            gateway: "gw-0".into(),
        };
        assert_eq!(
            h.render(),
            "action=hold&rule=crane-cameras&trigger=box_count&gateway=gw-0"
        );
        assert_eq!(Request::parse(&h.render()), Ok(h));
        let r = Request::Release {
            rule: "crane-cameras".into(),
            gateway: "gw-2".into(),
        };
        assert_eq!(r.render(), "action=release&rule=crane-cameras&gateway=gw-2");
        assert_eq!(Request::parse(&r.render()), Ok(r.clone()));
        assert_eq!(r.rule(), "crane-cameras");
    }

    #[test]
    fn holds_and_releases_take_only_their_own_fields() {
        for bad in [
            "action=hold&rule=r&gateway=g",
            "action=hold&rule=r&trigger=flag&for_ms=1&gateway=g",
            "action=hold&rule=r&trigger=flag&healthy_for_ms=1&gateway=g",
            "action=hold&rule=r&trigger=flag",
            "action=release&rule=r&trigger=flag&gateway=g",
            "action=release&rule=r&for_ms=1&gateway=g",
            "action=release&gateway=g",
            "action=release&rule=r",
        ] {
            assert!(Request::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_listing_says_where_a_rule_stands() {
        let text = r#"{"latches":[{"gateway":"gw-1","rule":"gates","trigger":"latency","age_ms":5,"remaining_ms":9}],
            "holds":[{"rule":"crane-cameras","trigger":"box_count","gateway":"gw-0","age_ms":700}],
            "released":[{"rule":"gates","gateway":"gw-2","age_ms":20}],"newer":1}"#;
        let l = Listing::parse(text.as_bytes()).unwrap();
        assert!(matches!(l.standing("crane-cameras"), Standing::Held(h) if h.gateway == "gw-0"));
        assert!(matches!(l.standing("gates"), Standing::Released(r) if r.age_ms == 20));
        assert_eq!(l.standing("docks"), Standing::Unknown);
        let back = serde_json::to_vec(&l).unwrap();
        assert_eq!(Listing::parse(&back).unwrap(), l);
        // An older workload lists latches only: nothing is held or released there.
        let old = Listing::parse(br#"{"latches":[]}"#).unwrap();
        assert_eq!(old.standing("crane-cameras"), Standing::Unknown);
        assert!(Listing::parse(b"not json").is_err());
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
            "action=hold&rule=*&trigger=flag&gateway=g&gateway=h",
        ] {
            assert!(Request::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(gateway_id("a b&c=d@e"), "a_b_c_d_e");
        assert_eq!(gateway_id(""), "gateway");
        assert_eq!(gateway_id(&"x".repeat(500)).len(), MAX_GATEWAY_LEN);
    }
}
