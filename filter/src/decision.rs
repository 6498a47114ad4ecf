//! The per-request routing decision and where one request went; the decision's
//! `x-canary-decision` text is the contract's.

use grayguard_contract::Trigger;
use grayguard_contract::decision::{self as contract, Note, Side};

use crate::breaker::Phase;
use crate::rules::in_share;

/// Why a request went where it went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// No rule matched.
    NoRule,
    /// Matched, inside the share, breaker closed.
    Matched,
    /// Matched but outside the rule's share.
    Percent,
    /// Matched, but the unit is shedding.
    Shed(Trigger),
    /// Matched, half-open, picked as a probe.
    Probe,
    /// Matched and the unit would be shedding, but `dry_run` is on.
    DryRun(Trigger),
    /// Matched; confirm mode raised an alert and waits for a person.
    Alert(Trigger),
}

/// Where one request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub gray: bool,
    /// Index of the matched rule.
    pub rule: Option<usize>,
    pub why: Why,
}

/// Where one request went, kept by its HTTP context until the response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Routed {
    pub decision: Decision,
    /// The breaker generation of the rule's unit when the request was offered to gray.
    pub generation: u32,
    /// When the request was decided, ns since the epoch: the clock when the decision read
    /// it, else this VM's last reading plus one ns per request since (distinct and
    /// increasing within the VM, at most a tick behind).
    pub at_ns: u64,
    /// The local hour, `HH`, for the `x-time-of-day` upstream stamp (`--` when
    /// `time_header_upstream` is off and the hour was not needed).
    pub hour: [u8; 2],
}

/// The state of the matched rule's breaker at the time of the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerView {
    pub phase: Phase,
    pub trigger: Option<Trigger>,
    /// Confirm mode's alert on a closed breaker.
    pub alert: Option<Trigger>,
}

/// Decides for a request that matched `rule` (or none). `share_bucket` is the request's
/// sticky or drawn bucket (0..10,000); `probe_bucket` a fresh draw for probing.
pub fn decide(
    rule: Option<(usize, u32)>,
    share_bucket: u32,
    breaker: impl FnOnce() -> BreakerView,
    probe_bucket: impl FnOnce() -> u32,
    probe_bp: u32,
    dry_run: bool,
) -> Decision {
    let Some((idx, percent_bp)) = rule else {
        return Decision {
            gray: false,
            rule: None,
            why: Why::NoRule,
        };
    };
    let at = |gray, why| Decision {
        gray,
        rule: Some(idx),
        why,
    };
    if !in_share(share_bucket, percent_bp) {
        return at(false, Why::Percent);
    }
    let view = breaker();
    let trigger = view.trigger.unwrap_or(Trigger::Flag);
    match view.phase {
        Phase::Closed => at(true, view.alert.map_or(Why::Matched, Why::Alert)),
        Phase::HalfOpen if in_share(probe_bucket(), probe_bp) => at(true, Why::Probe),
        Phase::Open | Phase::HalfOpen if dry_run => at(true, Why::DryRun(trigger)),
        Phase::Open | Phase::HalfOpen => at(false, Why::Shed(trigger)),
    }
}

impl Decision {
    /// The `x-canary-decision` header for this decision (grammar: `grayguard_contract::decision`).
    pub fn header<'a>(&self, rule_name: &'a str) -> contract::Decision<'a> {
        self.header_with(rule_name, false)
    }

    /// The header, saying `fallback` when gray's attempt failed and stable answered it.
    pub fn header_with<'a>(&self, rule_name: &'a str, fallback: bool) -> contract::Decision<'a> {
        let side = if self.gray { Side::Gray } else { Side::Stable };
        if self.rule.is_none() {
            return contract::Decision::no_rule(side);
        }
        if fallback && self.gray {
            return contract::Decision::rule(side, rule_name, Some(Note::Fallback));
        }
        let note = match self.why {
            Why::NoRule | Why::Matched => None,
            Why::Percent => Some(Note::Percent),
            Why::Shed(t) => Some(Note::Shed(t)),
            Why::Probe => Some(Note::Probe),
            Why::DryRun(t) => Some(Note::DryRun(t)),
            Why::Alert(t) => Some(Note::Alert(t)),
        };
        contract::Decision::rule(side, rule_name, note)
    }

    /// The header text: `gray; rule=night-cranes`, `stable; rule=night-cranes; shed=box_count`,
    /// `stable; no-rule`, `gray; rule=r; probe`, `stable; rule=r; percent`,
    /// `gray; rule=r; dry-run=box_count`.
    pub fn render(&self, rule_name: &str) -> String {
        self.header(rule_name).render()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(phase: Phase) -> BreakerView {
        BreakerView {
            phase,
            trigger: Some(Trigger::BoxCount),
            alert: None,
        }
    }

    #[test]
    fn decisions_and_their_text() {
        use Phase::*;
        // (rule, bucket, phase, probe draw, dry run) → text
        let cases = [
            (None, 0, Closed, 0, false, "stable; no-rule"),
            (
                Some((0, 10_000)),
                9_999,
                Closed,
                0,
                false,
                "gray; rule=night-cranes",
            ),
            (
                Some((0, 5_000)),
                5_000,
                Closed,
                0,
                false,
                "stable; rule=night-cranes; percent",
            ),
            (
                Some((0, 5_000)),
                4_999,
                Open,
                0,
                false,
                "stable; rule=night-cranes; shed=box_count",
            ),
            (
                Some((0, 10_000)),
                0,
                HalfOpen,
                99,
                false,
                "gray; rule=night-cranes; probe",
            ),
            (
                Some((0, 10_000)),
                0,
                HalfOpen,
                100,
                false,
                "stable; rule=night-cranes; shed=box_count",
            ),
            (
                Some((0, 10_000)),
                0,
                Open,
                0,
                true,
                "gray; rule=night-cranes; dry-run=box_count",
            ),
            (
                Some((0, 10_000)),
                0,
                HalfOpen,
                5_000,
                true,
                "gray; rule=night-cranes; dry-run=box_count",
            ),
            (
                Some((0, 10_000)),
                0,
                HalfOpen,
                0,
                true,
                "gray; rule=night-cranes; probe",
            ),
            (
                Some((0, 0)),
                0,
                Closed,
                0,
                true,
                "stable; rule=night-cranes; percent",
            ),
        ];
        let alerting = decide(
            Some((0, 10_000)),
            0,
            || BreakerView {
                alert: Some(Trigger::Latency),
                ..view(Closed)
            },
            || 0,
            100,
            false,
        );
        assert_eq!(
            alerting.render("night-cranes"),
            "gray; rule=night-cranes; alert=latency"
        );
        for (rule, bucket, phase, probe, dry, want) in cases {
            let d = decide(rule, bucket, || view(phase), || probe, 100, dry);
            assert_eq!(d.render("night-cranes"), want);
            assert_eq!(
                contract::Decision::parse(want),
                Ok(d.header("night-cranes"))
            );
            assert_eq!(d.gray, want.starts_with("gray"));
        }
    }

    #[test]
    fn the_breaker_is_read_only_for_requests_offered_to_gray() {
        let d = decide(None, 0, || panic!("read"), || panic!("drawn"), 100, false);
        assert_eq!(d.why, Why::NoRule);
        let d = decide(
            Some((3, 0)),
            0,
            || panic!("read"),
            || panic!("drawn"),
            100,
            false,
        );
        assert_eq!((d.rule, d.why), (Some(3), Why::Percent));
        let d = decide(
            Some((3, 10_000)),
            0,
            || view(Phase::Open),
            || panic!("drawn"),
            100,
            false,
        );
        assert_eq!(d.why, Why::Shed(Trigger::BoxCount));
    }
}
