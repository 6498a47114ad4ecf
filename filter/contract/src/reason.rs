//! Why gray is in trouble, in the words every part uses.
//!
//! - [`Reason`]: what a sidecar's own watchdog sees; the value of the breach flag
//!   (`x-canary-breach: latency,box_count`) and the `reason` label of its metric.
//! - [`Trigger`]: why a filter's breaker opened; the `shed=` item of `x-canary-decision`,
//!   the `trigger` of the incident record and the suffix of `grayguard_breaches_*`.
//!
//! Both are snake_case so that a reason and the trigger of the same name read the same in
//! headers, logs and metrics.

use std::fmt;

/// A sidecar watchdog reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// Replies slower than the watchdog's limit.
    Latency,
    /// Box counts outside the watchdog's band.
    BoxCount,
    /// Too large a share of failed replies.
    Errors,
    /// Memory close to the limit.
    Memory,
    /// A model run has outlasted the sidecar's stall deadline: the inference thread is
    /// stuck, and the pod fails its liveness probe until the run returns.
    Stalled,
}

impl Reason {
    pub const ALL: [Reason; 5] = [
        Reason::Latency,
        Reason::BoxCount,
        Reason::Errors,
        Reason::Memory,
        Reason::Stalled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Latency => "latency",
            Reason::BoxCount => "box_count",
            Reason::Errors => "errors",
            Reason::Memory => "memory",
            Reason::Stalled => "stalled",
        }
    }

    pub fn parse(text: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.as_str() == text)
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a filter's breaker opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Trigger {
    /// The sidecar's breach flag.
    Flag,
    /// Gray latency: above the ceiling, or slower than stable beyond the margin.
    Latency,
    /// Gray box count: outside the band, or shifted from stable beyond the margin.
    BoxCount,
    /// Gray failures: above the ceiling, or above stable's beyond the margin.
    ErrorRate,
    /// Gray's answers agree with stable's on the same frames less than the margin allows
    /// (the gray sidecar's paired comparison, [`crate::headers::AGREEMENT`]).
    Agreement,
    /// Gray failures in a row.
    ConsecutiveFailures,
    /// Another gateway shed the rule and latched the gray workload, which now says so on
    /// every response (see [`crate::latch`]); or a person holds the rule elsewhere and the
    /// workload says so (`held:`).
    Latch,
    /// A person shed the rule directly on the operator listener (`crate::operator::SHED`).
    Operator,
}

impl Trigger {
    pub const ALL: [Trigger; 8] = [
        Trigger::Flag,
        Trigger::Latency,
        Trigger::BoxCount,
        Trigger::ErrorRate,
        Trigger::Agreement,
        Trigger::ConsecutiveFailures,
        Trigger::Latch,
        Trigger::Operator,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Flag => "flag",
            Trigger::Latency => "latency",
            Trigger::BoxCount => "box_count",
            Trigger::ErrorRate => "error_rate",
            Trigger::Agreement => "agreement",
            Trigger::ConsecutiveFailures => "consecutive_failures",
            Trigger::Latch => "latch",
            Trigger::Operator => "operator",
        }
    }

    pub fn parse(text: &str) -> Option<Trigger> {
        Trigger::ALL.into_iter().find(|t| t.as_str() == text)
    }
}

/// Written and read by its name (`Trigger`'s `as_str`/`parse`), in the records and JSON.
impl serde::Serialize for Trigger {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Trigger {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Trigger, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Trigger::parse(&name)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown trigger {name:?}")))
    }
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Writes a breach flag value: the reasons, comma-separated, in [`Reason::ALL`] order.
pub fn render_flag(reasons: impl IntoIterator<Item = Reason>, out: &mut String) {
    let mut set: Vec<Reason> = reasons.into_iter().collect();
    set.sort();
    set.dedup();
    for (i, r) in set.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(r.as_str());
    }
}

/// The reasons of a breach flag value. Unknown items are skipped (a newer sidecar may name
/// more); the flag still counts as raised, whatever its text.
pub fn parse_flag(text: &str) -> Vec<Reason> {
    text.split(',')
        .filter_map(|item| Reason::parse(item.trim()))
        .collect()
}

/// A breach flag value read in full:
///
/// ```text
/// flag  = item *( "," item )
/// item  = reason                          ; the sidecar's own watchdog
///       / "latched:" trigger "@" rule     ; a gateway latched this workload for `rule`
///       / "held:" trigger "@" rule        ; a person holds `rule` shed until released
/// ```
///
/// `held:` items ride on every reply, half-open probes included: a hold is a person's
/// decision, not evidence about gray, so a probe must not close it either.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Flag {
    pub reasons: Vec<Reason>,
    /// `(trigger, rule)` of every latch the workload holds.
    pub latched: Vec<(Trigger, String)>,
    /// `(trigger, rule)` of every rule a person holds shed (see [`crate::latch`]).
    pub held: Vec<(Trigger, String)>,
    /// Items that are none of these (a newer sidecar's): they still raise the flag.
    pub unknown: usize,
}

/// `(trigger, rule)` of an item `prefix trigger "@" rule`, if it is one.
fn rule_item(item: &str, prefix: &str) -> Option<(Trigger, String)> {
    let (t, rule) = item.strip_prefix(prefix)?.split_once('@')?;
    let t = Trigger::parse(t)?;
    (crate::decision::valid_rule_name(rule) || rule == "*").then(|| (t, rule.to_string()))
}

impl Flag {
    pub fn parse(text: &str) -> Flag {
        let mut f = Flag::default();
        for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            if let Some(r) = Reason::parse(item) {
                f.reasons.push(r);
            } else if let Some(l) = rule_item(item, LATCHED_PREFIX) {
                f.latched.push(l);
            } else if let Some(h) = rule_item(item, HELD_PREFIX) {
                f.held.push(h);
            } else {
                f.unknown += 1;
            }
        }
        if text.trim().is_empty() {
            // An empty flag header is still a raised flag.
            f.unknown = 1;
        }
        f
    }

    /// Whether the workload's own watchdog (or something this version cannot read) raised
    /// it, as opposed to latches and holds only.
    pub fn first_hand(&self) -> bool {
        !self.reasons.is_empty() || self.unknown > 0
    }

    /// The flag value: reasons first, then latches, then holds.
    pub fn render(&self) -> String {
        let mut out = String::new();
        render_flag(self.reasons.iter().copied(), &mut out);
        let items = self
            .latched
            .iter()
            .map(|i| (LATCHED_PREFIX, i))
            .chain(self.held.iter().map(|i| (HELD_PREFIX, i)));
        for (prefix, (t, rule)) in items {
            if !out.is_empty() {
                out.push(',');
            }
            out.push_str(prefix);
            out.push_str(t.as_str());
            out.push('@');
            out.push_str(rule);
        }
        out
    }

    /// The trigger of the hold on `rule` (or on every rule, `*`), if the flag carries one.
    pub fn held_for(&self, rule: &str) -> Option<Trigger> {
        self.held
            .iter()
            .find(|(_, r)| r == rule || r == "*")
            .map(|(t, _)| *t)
    }
}

/// The prefix of a latch item in a breach flag.
pub const LATCHED_PREFIX: &str = "latched:";
/// The prefix of a hold item in a breach flag.
pub const HELD_PREFIX: &str = "held:";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for r in Reason::ALL {
            assert_eq!(Reason::parse(r.as_str()), Some(r));
        }
        for t in Trigger::ALL {
            assert_eq!(Trigger::parse(t.as_str()), Some(t));
            assert_eq!(t.to_string(), t.as_str());
        }
        assert_eq!(Reason::parse("box-count"), None);
        assert_eq!(Trigger::parse(""), None);
    }

    #[test]
    fn full_flags_with_latches() {
        let f = Flag::parse("latency, latched:box_count@crane-cameras,latched:flag@*, future");
        assert_eq!(f.reasons, vec![Reason::Latency]);
        assert_eq!(
            f.latched,
            vec![
                (Trigger::BoxCount, "crane-cameras".into()),
                (Trigger::Flag, "*".into())
            ]
        );
        assert_eq!(f.unknown, 1);
        assert!(f.first_hand());
        let only = Flag::parse("latched:latency@gates");
        assert!(!only.first_hand());
        assert_eq!(Flag::parse(&only.render()), only);
        assert_eq!(
            Flag {
                reasons: vec![Reason::Memory],
                latched: vec![(Trigger::ErrorRate, "r".into())],
                held: vec![(Trigger::Operator, "s".into())],
                unknown: 0
            }
            .render(),
            "memory,latched:error_rate@r,held:operator@s"
        );
        // Malformed latches are unknown items, hence first-hand.
        assert!(Flag::parse("latched:boxes@r").first_hand());
        assert!(Flag::parse("latched:latency@a b").first_hand());
        assert!(Flag::parse("").first_hand());
    }

    #[test]
    fn holds_are_items_of_their_own() {
        let f = Flag::parse("held:box_count@crane-cameras,latched:flag@gates");
        assert!(!f.first_hand(), "a hold is not the workload's own trouble");
        assert_eq!(f.held, vec![(Trigger::BoxCount, "crane-cameras".into())]);
        assert_eq!(f.latched, vec![(Trigger::Flag, "gates".into())]);
        assert_eq!(f.held_for("crane-cameras"), Some(Trigger::BoxCount));
        assert_eq!(f.held_for("gates"), None, "a latch is not a hold");
        assert_eq!(Flag::parse(&f.render()), f);
        assert_eq!(
            Flag::parse("held:operator@*").held_for("anything"),
            Some(Trigger::Operator)
        );
        // Malformed holds are unknown items, hence first-hand.
        assert!(Flag::parse("held:box_count").first_hand());
        assert!(Flag::parse("held:nonsense@r").first_hand());
    }

    #[test]
    fn flags() {
        let mut s = String::new();
        render_flag([Reason::Memory, Reason::Latency, Reason::Memory], &mut s);
        assert_eq!(s, "latency,memory");
        assert_eq!(
            parse_flag("latency, memory"),
            vec![Reason::Latency, Reason::Memory]
        );
        assert_eq!(parse_flag("future,errors"), vec![Reason::Errors]);
        assert_eq!(
            parse_flag("stalled,memory"),
            vec![Reason::Stalled, Reason::Memory]
        );
        let mut s = String::new();
        render_flag([Reason::Stalled, Reason::Latency], &mut s);
        assert_eq!(s, "latency,stalled");
        assert!(Flag::parse("stalled").first_hand());
        assert!(parse_flag("").is_empty());
    }
}
