//! The operator's requests to a gateway: paths, the one-click link a person follows to
//! confirm (or dismiss) a shed that confirm mode asks for, the link that releases a held
//! shed, and the direct shed.
//!
//! ```text
//! link    = path "?" query
//! path    = "/grayguard/confirm" / "/grayguard/dismiss"   ; an alert's link
//!         / "/grayguard/release"                         ; a hold's link
//! query   = "rule=" name "&trigger=" trigger "&exp=" unix-seconds "&sig=" 64HEXDIG
//!
//! shed    = "POST /grayguard/shed?rule=" name             ; no signature: see SHED
//! ```
//!
//! `sig` is HMAC-SHA256, keyed with the filter's `operator.secret`, over [`Link::message`]
//! in lower-case hex: `rule=NAME&trigger=T&exp=S` for an alert's link (confirm and dismiss
//! answer the same alert), `action=release&rule=NAME&trigger=T&exp=S` for a hold's. The
//! action is in the signed text, so no signature verifies for another purpose than its own:
//! an alert's link cannot release, a release link cannot confirm. Every path under
//! [`PREFIX`] is the operator's: a gateway refuses it on its public listener.

use crate::reason::Trigger;

/// Every operator path starts with this.
pub const PREFIX: &str = "/grayguard/";
/// Sheds the rule as its trigger would have.
pub const CONFIRM: &str = "/grayguard/confirm";
/// Ends the alert without shedding (the evidence starts afresh).
pub const DISMISS: &str = "/grayguard/dismiss";
/// Lifts a hold: the rule goes half-open, and probes judge gray again.
pub const RELEASE: &str = "/grayguard/release";
/// A person sheds a rule directly and holds it (`POST`, query `rule=NAME`). Unsigned: it
/// moves traffic to stable only, the direction that costs no client anything, so the
/// operator listener's own protection (reachable from private addresses only, behind the
/// authenticating proxy that sets the identity header) is enough; lifting a hold, which
/// sends traffic back to gray, takes a signed link. `POST`, so that no link preview or
/// crawler that fetches a pasted URL sheds a rule.
pub const SHED: &str = "/grayguard/shed";
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

/// What a signed link lets a person do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Answer an alert: confirm (shed and hold) or dismiss it.
    Alert,
    /// Release a hold.
    Release,
}

impl Purpose {
    /// The purpose of a link followed on `path`, if the path takes a signed link.
    pub fn of_path(path: &str) -> Option<Purpose> {
        match path {
            CONFIRM | DISMISS => Some(Purpose::Alert),
            RELEASE => Some(Purpose::Release),
            _ => None,
        }
    }
}

/// A query that is not a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLink(pub &'static str);

impl Link {
    /// The signed text: `rule=NAME&trigger=T&exp=S` for an alert, the same after
    /// `action=release&` for a hold.
    pub fn message(purpose: Purpose, rule: &str, trigger: Trigger, exp: u64) -> String {
        let action = match purpose {
            Purpose::Alert => "",
            Purpose::Release => "action=release&",
        };
        format!("{action}rule={rule}&trigger={}&exp={exp}", trigger.as_str())
    }

    /// The query string (the `confirm` label of the alert gauge, the `release` label of the
    /// held gauge): the same for every purpose; the path says which.
    pub fn query(&self) -> String {
        format!(
            "rule={}&trigger={}&exp={}&sig={}",
            self.rule,
            self.trigger.as_str(),
            self.exp,
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

/// The rule a direct shed names: its query, exactly `rule=NAME`.
pub fn shed_rule(query: &str) -> Result<&str, BadLink> {
    let rule = query
        .strip_prefix("rule=")
        .ok_or(BadLink("no rule (the query is rule=NAME)"))?;
    if rule.contains('&') {
        return Err(BadLink("an unknown parameter"));
    }
    if !(crate::decision::valid_rule_name(rule) || rule == "*") {
        return Err(BadLink("a bad rule name"));
    }
    Ok(rule)
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

    #[test]
    fn each_purpose_signs_its_own_text() {
        let alert = Link::message(Purpose::Alert, "r", Trigger::Latency, 9);
        let release = Link::message(Purpose::Release, "r", Trigger::Latency, 9);
        assert_eq!(alert, "rule=r&trigger=latency&exp=9");
        assert_eq!(release, "action=release&rule=r&trigger=latency&exp=9");
        assert_eq!(Purpose::of_path(CONFIRM), Some(Purpose::Alert));
        assert_eq!(Purpose::of_path(DISMISS), Some(Purpose::Alert));
        assert_eq!(Purpose::of_path(RELEASE), Some(Purpose::Release));
        assert_eq!(Purpose::of_path(SHED), None);
    }

    #[test]
    fn a_direct_shed_names_one_rule() {
        assert_eq!(shed_rule("rule=crane-cameras"), Ok("crane-cameras"));
        assert_eq!(shed_rule("rule=*"), Ok("*"));
        for bad in ["", "rule=", "rule=a b", "rule=a&by=me", "name=a"] {
            assert!(shed_rule(bad).is_err(), "{bad:?}");
        }
    }
}
