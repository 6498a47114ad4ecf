//! The operator's requests to a gateway: paths, and the one-click link a person follows to
//! confirm (or dismiss) a shed that confirm mode asks for.
//!
//! ```text
//! link    = path "?" query
//! path    = "/grayguard/confirm" / "/grayguard/dismiss"
//! query   = "rule=" name "&trigger=" trigger "&exp=" unix-seconds "&sig=" 64HEXDIG
//! ```
//!
//! `sig` is HMAC-SHA256, keyed with the filter's `operator.secret`, over [`Link::message`]
//! (`rule=NAME&trigger=T&exp=S`), in lower-case hex. Every path under [`PREFIX`] is the
//! operator's: a gateway refuses it on its public listener.

use crate::reason::Trigger;

/// Every operator path starts with this.
pub const PREFIX: &str = "/grayguard/";
/// Sheds the rule as its trigger would have.
pub const CONFIRM: &str = "/grayguard/confirm";
/// Ends the alert without shedding (the evidence starts afresh).
pub const DISMISS: &str = "/grayguard/dismiss";
/// The conventional Wasm VM environment variable holding the links' secret
/// (`operator.secret_env` in the shipped configurations).
pub const SECRET_ENV: &str = "GRAYGUARD_OPERATOR_SECRET";

/// A one-click link's parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub rule: String,
    pub trigger: Trigger,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
    /// Lower-case hex HMAC-SHA256 of [`Link::message`].
    pub sig: String,
}

/// A query that is not a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLink(pub &'static str);

impl Link {
    /// The signed text: `rule=NAME&trigger=T&exp=S`.
    pub fn message(rule: &str, trigger: Trigger, exp: u64) -> String {
        format!("rule={rule}&trigger={}&exp={exp}", trigger.as_str())
    }

    /// The query string (the `confirm` label of the alert gauge).
    pub fn query(&self) -> String {
        format!(
            "{}&sig={}",
            Link::message(&self.rule, self.trigger, self.exp),
            self.sig
        )
    }

    /// Parses a query string; parameters in any order, each exactly once.
    pub fn parse(query: &str) -> Result<Link, BadLink> {
        let (mut rule, mut trigger, mut exp, mut sig) = (None, None, None, None);
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair
                .split_once('=')
                .ok_or(BadLink("a parameter without a value"))?;
            let slot = match k {
                "rule" => &mut rule,
                "trigger" => &mut trigger,
                "exp" => &mut exp,
                "sig" => &mut sig,
                _ => return Err(BadLink("an unknown parameter")),
            };
            if slot.replace(v).is_some() {
                return Err(BadLink("a parameter given twice"));
            }
        }
        let rule = rule.ok_or(BadLink("no rule"))?;
        if !crate::decision::valid_rule_name(rule) {
            return Err(BadLink("a bad rule name"));
        }
        let trigger = trigger
            .and_then(Trigger::parse)
            .ok_or(BadLink("no known trigger"))?;
        let exp = exp
            .and_then(|e| e.parse::<u64>().ok())
            .ok_or(BadLink("no expiry"))?;
        let sig = sig.ok_or(BadLink("no signature"))?;
        if sig.len() != 64
            || !sig
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(BadLink("a malformed signature"));
        }
        Ok(Link {
            rule: rule.to_string(),
            trigger,
            exp,
            sig: sig.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_round_trip_and_bad_ones_are_refused() {
        let l = Link {
            rule: "crane-cameras".into(),
            trigger: Trigger::BoxCount,
            exp: 1_800_000_000,
            sig: "ab".repeat(32),
        };
        let q = l.query();
        assert!(q.starts_with("rule=crane-cameras&trigger=box_count&exp=1800000000&sig="));
        assert_eq!(Link::parse(&q), Ok(l.clone()));
        let shuffled = format!(
            "sig={}&exp=1800000000&trigger=box_count&rule=crane-cameras",
            l.sig
        );
        assert_eq!(Link::parse(&shuffled), Ok(l));
        for bad in [
            "",
            "rule=a&trigger=flag&exp=1",
            "rule=a b&trigger=flag&exp=1&sig=00",
            &format!("rule=a&trigger=boxes&exp=1&sig={}", "0".repeat(64)),
            &format!("rule=a&trigger=flag&exp=soon&sig={}", "0".repeat(64)),
            &format!("rule=a&trigger=flag&exp=1&sig={}", "G".repeat(64)),
            &format!("rule=a&rule=b&trigger=flag&exp=1&sig={}", "0".repeat(64)),
            &format!("rule=a&trigger=flag&exp=1&sig={}&by=me", "0".repeat(64)),
        ] {
            assert!(Link::parse(bad).is_err(), "{bad:?}");
        }
    }
}
