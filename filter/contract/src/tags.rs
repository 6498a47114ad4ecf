//! How a filter metric carries its labels: Envoy stats have no labels, so the filter
//! writes them into the stat name, Istio's way, as `name=.=value;.;` prefixes —
//! `rule=.=crane-cameras;.;trigger=.=box_count;.;grayguard_evidence_pct` — and Envoy's
//! `stats_tags` (Istio: `extraStatTags`) turn each prefix back into a label, so Prometheus
//! sees `grayguard_evidence_pct{rule="crane-cameras",trigger="box_count"}`.
//!
//! The one definition of the encoding: the filter writes names with [`tagged`], and every
//! Envoy configuration's `stats_tags` must list [`Label::ALL`] with [`Label::regex`] (a
//! test checks the shipped ones).

use std::fmt::Write as _;

/// A label a filter metric may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Label {
    /// The rule (breaker unit) a series is about; `*` for `breach.scope: all`.
    Rule,
    /// A trigger (`crate::Trigger`'s names).
    Trigger,
    /// An alert's signed one-click link, its query string (`crate::operator`).
    Confirm,
    /// A held shed's signed release link, its query string (`crate::operator::RELEASE`).
    Release,
    /// A promotion effect (`crate::promotion::Effect`'s names).
    Effect,
    /// Which end of an effect's interval (`crate::promotion::Bound`'s names).
    Bound,
}

impl Label {
    pub const ALL: [Label; 6] = [
        Label::Rule,
        Label::Trigger,
        Label::Confirm,
        Label::Release,
        Label::Effect,
        Label::Bound,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Label::Rule => "rule",
            Label::Trigger => "trigger",
            Label::Confirm => "confirm",
            Label::Release => "release",
            Label::Effect => "effect",
            Label::Bound => "bound",
        }
    }

    /// The `stats_tags` regex that takes this label out of a stat name (its first capture
    /// group is removed from the name, the second is the value).
    pub fn regex(self) -> String {
        format!(r"({}=\.=(.*?);\.;)", self.as_str())
    }
}

/// `name` with `labels` written in as prefixes, in the order given.
pub fn tagged(labels: &[(Label, &str)], name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 24 * labels.len());
    for (label, value) in labels {
        let _ = write!(out, "{}=.={value};.;", label.as_str());
    }
    out.push_str(name);
    out
}

/// The labels and the bare name of a stat name written by [`tagged`] (as Envoy's
/// `stats_tags` read it); `None` when a prefix is malformed or its label unknown.
pub fn untag(stat: &str) -> Option<(Vec<(Label, String)>, &str)> {
    let mut rest = stat;
    let mut labels = Vec::new();
    while let Some((key, tail)) = rest.split_once("=.=") {
        if key.contains(';') {
            break;
        }
        let label = Label::ALL.into_iter().find(|l| l.as_str() == key)?;
        let (value, after) = tail.split_once(";.;")?;
        labels.push((label, value.to_string()));
        rest = after;
    }
    Some((labels, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_their_labels_and_come_apart_again() {
        let name = tagged(
            &[
                (Label::Rule, "crane-cameras"),
                (Label::Trigger, "box_count"),
            ],
            "grayguard_evidence_pct",
        );
        assert_eq!(
            name,
            "rule=.=crane-cameras;.;trigger=.=box_count;.;grayguard_evidence_pct"
        );
        let (labels, bare) = untag(&name).unwrap();
        assert_eq!(bare, "grayguard_evidence_pct");
        assert_eq!(
            labels,
            [
                (Label::Rule, "crane-cameras".into()),
                (Label::Trigger, "box_count".into())
            ]
        );
        assert_eq!(
            untag("grayguard_routed_gray"),
            Some((vec![], "grayguard_routed_gray"))
        );
        assert_eq!(untag("colour=.=red;.;x"), None);
        assert_eq!(Label::Rule.regex(), r"(rule=\.=(.*?);\.;)");
    }
}
