//! The per-request routing decision and its `x-canary-decision` text.

use crate::breach::Trigger;
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
}

/// Where one request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub gray: bool,
    /// Index of the matched rule.
    pub rule: Option<usize>,
    pub why: Why,
}

/// The state of the matched rule's breaker at the time of the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerView {
    pub phase: Phase,
    pub trigger: Option<Trigger>,
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
        Phase::Closed => at(true, Why::Matched),
        Phase::HalfOpen if in_share(probe_bucket(), probe_bp) => at(true, Why::Probe),
        Phase::Open | Phase::HalfOpen if dry_run => at(true, Why::DryRun(trigger)),
        Phase::Open | Phase::HalfOpen => at(false, Why::Shed(trigger)),
    }
}

impl Decision {
    /// The `x-canary-decision` value: `gray; rule=night-cranes`,
    /// `stable; rule=night-cranes; shed=box_count`, `stable; no-rule`,
    /// `gray; rule=r; probe`, `stable; rule=r; percent`, `gray; rule=r; dry-run=box_count`.
    pub fn render(&self, rule_name: &str) -> String {
        let mut out = String::new();
        self.render_into(rule_name, &mut out);
        out
    }

    /// [`Decision::render`] appended to `out` (the request path reuses one buffer).
    pub fn render_into(&self, rule_name: &str, out: &mut String) {
        out.push_str(if self.gray { "gray" } else { "stable" });
        if self.why == Why::NoRule {
            out.push_str("; no-rule");
            return;
        }
        out.push_str("; rule=");
        out.push_str(rule_name);
        match self.why {
            Why::NoRule | Why::Matched => {}
            Why::Percent => out.push_str("; percent"),
            Why::Shed(t) => {
                out.push_str("; shed=");
                out.push_str(t.as_str());
            }
            Why::Probe => out.push_str("; probe"),
            Why::DryRun(t) => {
                out.push_str("; dry-run=");
                out.push_str(t.as_str());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(phase: Phase) -> BreakerView {
        BreakerView {
            phase,
            trigger: Some(Trigger::BoxCount),
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
        for (rule, bucket, phase, probe, dry, want) in cases {
            let d = decide(rule, bucket, || view(phase), || probe, 100, dry);
            assert_eq!(d.render("night-cranes"), want);
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
