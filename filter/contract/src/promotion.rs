//! The promotion verdict's vocabulary: the effects a release owner's hypothesis can state,
//! the verdict's states, and the bounds the gateways publish — the names of the
//! `grayguard_promotion_*` metrics' labels, the verdict's log line, the operator's
//! `GET /grayguard/promotion` and the report's promotion page.

use std::fmt;

/// One effect a hypothesis can bound (gray against its concurrent control).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Effect {
    /// Gray mean latency minus the control's, ms (`latency_max_increase_ms`).
    LatencyIncrease,
    /// Gray mean latency over the control's (`latency_max_ratio`).
    LatencyRatio,
    /// Gray mean box count over the control's, both ways (`box_count_max_shift`).
    BoxShift,
    /// Gray failure share minus the control's (`error_max_excess`).
    ErrorExcess,
    /// Gray's mean agreement with stable on the same frames (`agreement_min`).
    Agreement,
}

impl Effect {
    pub const ALL: [Effect; 5] = [
        Effect::LatencyIncrease,
        Effect::LatencyRatio,
        Effect::BoxShift,
        Effect::ErrorExcess,
        Effect::Agreement,
    ];

    /// The `effect` label and the name in the verdict's record.
    pub fn as_str(self) -> &'static str {
        match self {
            Effect::LatencyIncrease => "latency_increase_ms",
            Effect::LatencyRatio => "latency_ratio",
            Effect::BoxShift => "box_count_shift",
            Effect::ErrorExcess => "error_excess",
            Effect::Agreement => "agreement",
        }
    }

    pub fn parse(text: &str) -> Option<Effect> {
        Effect::ALL.into_iter().find(|e| e.as_str() == text)
    }
}

/// Written and read by its name (`Effect`'s `as_str`/`parse`), in the records and JSON.
impl serde::Serialize for Effect {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Effect {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Effect, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Effect::parse(&name)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown effect {name:?}")))
    }
}

impl fmt::Display for Effect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a rule's verdict stands in the current epoch (a shed starts a new one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum Verdict {
    /// Not yet decided.
    #[default]
    Pending,
    /// Every stated effect's interval lies inside its budget.
    Proven,
    /// An effect's interval lies wholly outside its budget.
    Refuted,
}

impl Verdict {
    pub const ALL: [Verdict; 3] = [Verdict::Pending, Verdict::Proven, Verdict::Refuted];

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pending => "pending",
            Verdict::Proven => "proven",
            Verdict::Refuted => "refuted",
        }
    }

    pub fn parse(text: &str) -> Option<Verdict> {
        Verdict::ALL.into_iter().find(|v| v.as_str() == text)
    }

    /// The value of `grayguard_promotion_state`: 0 pending, 1 proven, 2 refuted.
    pub fn gauge(self) -> u64 {
        match self {
            Verdict::Pending => 0,
            Verdict::Proven => 1,
            Verdict::Refuted => 2,
        }
    }

    pub fn from_gauge(v: u64) -> Option<Verdict> {
        Verdict::ALL.into_iter().find(|s| s.gauge() == v)
    }
}

/// Written and read by its name (`Verdict`'s `as_str`/`parse`), in the records and JSON.
impl serde::Serialize for Verdict {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Verdict {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Verdict, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Verdict::parse(&name)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown verdict {name:?}")))
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which end of an effect's interval a `grayguard_promotion_budget_pct` series is (its
/// `bound` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Bound {
    /// The interval's worse end, as a share of the budget: proven when every effect's is
    /// at most 100.
    Upper,
    /// The interval's better end: refuted when an effect's is above 100.
    Lower,
}

impl Bound {
    pub const ALL: [Bound; 2] = [Bound::Upper, Bound::Lower];

    pub fn as_str(self) -> &'static str {
        match self {
            Bound::Upper => "upper",
            Bound::Lower => "lower",
        }
    }
}

/// The operator listener's path for every rule's verdict (`GET`, JSON).
pub const PATH: &str = "/grayguard/promotion";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for e in Effect::ALL {
            assert_eq!(Effect::parse(e.as_str()), Some(e));
        }
        for v in Verdict::ALL {
            assert_eq!(Verdict::parse(v.as_str()), Some(v));
            assert_eq!(Verdict::from_gauge(v.gauge()), Some(v));
        }
        assert_eq!(Effect::parse("latency"), None);
    }
}
