//! The sequential detector's tests: the one-sided hypotheses the configuration asks for,
//! what each reply scores against its reference, and what the change detectors find on a
//! unit's evidence.
//!
//! Each test asks "has gray changed beyond its margin?" and bets against "it has not"
//! (`super::bet`), scoring every reply so that the score's mean is at most 0 while gray
//! is within its margin:
//!
//! | test | reference `r` | score |
//! |---|---|---|
//! | latency ratio | `max_ratio` × the control's running mean | `x/r − 1` |
//! | latency ceiling | `max_mean_ms` | `x/r − 1` |
//! | box count above | (1 + `max_shift`) × the control's mean (or the baseline's), at least 1 box | `x/r − 1` |
//! | box count below | (1 − `max_shift`) × the control's mean (or the baseline's) | `1 − min(x, 2r)/r` |
//! | failure excess | the control's failure share + `max_excess` | `x/r − 1`, `x` 0 or 1 |
//! | failure ceiling | `error_rate.max` | `x/r − 1` |
//! | agreement | `agreement.min_mean` | `1 − a/r` |
//!
//! Every score is bounded below (by −1, or `1 − 1/r` for agreement), which is all a fair
//! bet needs; the box count below is tested on counts clipped at twice the reference, so
//! that a few huge counts cannot hide vanishing boxes (the tested mean is that of the
//! clipped counts). `arl` is split evenly over the tests (`bet::log_threshold`).

use grayguard_contract::Trigger;

use crate::config::{Breach, Control};
use crate::detect::sequential::bet::{self, Cusum, Stake};
use crate::detect::sequential::evidence::{Tally, UnitEvidence};
use crate::signals::Observation;

/// A reference below this many boxes is raised to it: a gray version answering about one
/// box more per frame than a control that finds nothing is not a flood.
pub const BOX_REFERENCE_FLOOR: f64 = 1.0;

/// "Box count below" is not tested against a reference this small (nothing can vanish).
pub const BOX_BELOW_MIN_REFERENCE: f64 = 0.05;

/// "Box count below" scores counts clipped at this multiple of the reference.
pub const BOX_BELOW_CLIP: f64 = 2.0;

/// One of the one-sided hypotheses a trigger tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Hypothesis {
    /// Gray mean latency above `max_ratio` × the control's.
    LatencyRatio,
    /// Gray mean latency above `max_mean_ms`.
    LatencyCeiling,
    /// Gray mean box count above (1 + `max_shift`) × the control's (or the configured
    /// baseline's while the control is thin).
    BoxesAbove,
    /// Gray mean box count below (1 − `max_shift`) × the control's (or the baseline's).
    BoxesBelow,
    /// Gray failure share above the control's + `max_excess`.
    ErrorExcess,
    /// Gray failure share above `error_rate.max`.
    ErrorCeiling,
    /// Gray's mean agreement with stable below `agreement.min_mean`.
    AgreementBelow,
}

impl Hypothesis {
    pub fn trigger(self) -> Trigger {
        match self {
            Hypothesis::LatencyRatio | Hypothesis::LatencyCeiling => Trigger::Latency,
            Hypothesis::BoxesAbove | Hypothesis::BoxesBelow => Trigger::BoxCount,
            Hypothesis::ErrorExcess | Hypothesis::ErrorCeiling => Trigger::ErrorRate,
            Hypothesis::AgreementBelow => Trigger::Agreement,
        }
    }

    /// The name in the incident record.
    pub fn as_str(self) -> &'static str {
        match self {
            Hypothesis::LatencyRatio => "latency_ratio",
            Hypothesis::LatencyCeiling => "latency_ceiling",
            Hypothesis::BoxesAbove => "box_count_above",
            Hypothesis::BoxesBelow => "box_count_below",
            Hypothesis::ErrorExcess => "error_rate_excess",
            Hypothesis::ErrorCeiling => "error_rate_ceiling",
            Hypothesis::AgreementBelow => "agreement_below",
        }
    }

    /// The signal this hypothesis reads from a reply (a failure is 1, a success 0).
    pub fn value(self, o: &Observation) -> Option<f64> {
        match self {
            Hypothesis::LatencyRatio | Hypothesis::LatencyCeiling => o.latency_ms,
            Hypothesis::BoxesAbove | Hypothesis::BoxesBelow => o.boxes,
            Hypothesis::ErrorExcess | Hypothesis::ErrorCeiling => {
                Some(f64::from(u8::from(o.failed)))
            }
            Hypothesis::AgreementBelow => o.agreement,
        }
    }

    /// The score of value `x` against reference `r`: at most 0 in mean while gray is
    /// within its margin, never below [`Hypothesis::floor`].
    pub fn score(self, x: f64, r: f64) -> f64 {
        match self {
            Hypothesis::BoxesBelow => 1.0 - x.min(BOX_BELOW_CLIP * r) / r,
            Hypothesis::AgreementBelow => 1.0 - x.clamp(0.0, 1.0) / r,
            _ => x / r - 1.0,
        }
    }

    /// The least score against reference `r`.
    pub fn floor(self, r: f64) -> f64 {
        match self {
            Hypothesis::AgreementBelow => (1.0 - 1.0 / r).min(-1e-3),
            _ => -1.0,
        }
    }

    /// Bets on value `x` against reference `r`.
    pub fn bet(self, stake: &mut Stake, x: f64, r: f64) {
        stake.bet(self.score(x, r), self.floor(r), x, r);
    }

    /// Whether the effect is reported as "at least" (gray above its margin) or "at most"
    /// (below).
    pub fn above(self) -> bool {
        !matches!(self, Hypothesis::BoxesBelow | Hypothesis::AgreementBelow)
    }
}

/// One hypothesis as the configuration asks for it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Test {
    pub hypothesis: Hypothesis,
    /// Gray replies scored before this test may shed.
    pub min_samples: f64,
}

/// The configuration's margins, in the units the references need.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Margins {
    max_ratio: f64,
    max_mean_ms: f64,
    max_shift: f64,
    baseline: Option<f64>,
    max_excess: f64,
    max_error: f64,
    min_agreement: f64,
}

/// Every test the configuration asks for, and what they share.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub tests: Vec<Test>,
    pub control: Control,
    /// `ln` of each test's alarm threshold (its share of `arl`, see `super::bet`).
    pub log_threshold: f64,
    /// Control replies the running reference remembers.
    pub memory: f64,
    margins: Margins,
}

impl Plan {
    pub fn for_breach(b: &Breach) -> Plan {
        let mut tests = Vec::new();
        let mut add = |h: Hypothesis, min: u32| {
            tests.push(Test {
                hypothesis: h,
                min_samples: f64::from(min),
            })
        };
        if let Some(t) = &b.latency {
            add(Hypothesis::LatencyRatio, t.min_samples);
            if t.max_mean_ms.is_some() {
                add(Hypothesis::LatencyCeiling, t.min_samples);
            }
        }
        if let Some(t) = &b.box_count {
            add(Hypothesis::BoxesAbove, t.min_samples);
            add(Hypothesis::BoxesBelow, t.min_samples);
        }
        if let Some(t) = &b.error_rate {
            add(Hypothesis::ErrorExcess, t.min_samples);
            if t.max.is_some() {
                add(Hypothesis::ErrorCeiling, t.min_samples);
            }
        }
        if let Some(t) = &b.agreement {
            add(Hypothesis::AgreementBelow, t.min_samples);
        }
        let margins = Margins {
            max_ratio: b.latency.as_ref().map_or(1.0, |t| t.max_ratio),
            max_mean_ms: b
                .latency
                .as_ref()
                .and_then(|t| t.max_mean_ms)
                .unwrap_or(f64::INFINITY),
            max_shift: b.box_count.as_ref().map_or(0.0, |t| t.max_shift),
            baseline: b
                .box_count
                .as_ref()
                .and_then(|t| t.baseline)
                .map(|(mean, _)| mean),
            max_excess: b.error_rate.as_ref().map_or(0.0, |t| t.max_excess),
            max_error: b.error_rate.as_ref().and_then(|t| t.max).unwrap_or(1.0),
            min_agreement: b.agreement.as_ref().map_or(0.0, |t| t.min_mean),
        };
        Plan {
            log_threshold: bet::log_threshold(b.arl, tests.len()),
            tests,
            control: b.control,
            memory: b.control_memory,
            margins,
        }
    }

    /// How many control slots the record keeps: one for all units, or one per unit.
    pub fn control_slots(&self, units: usize) -> usize {
        match self.control {
            Control::All => 1,
            Control::Cohort => units,
        }
    }

    /// The control slot a unit is judged against.
    pub fn slot_of(&self, unit: usize) -> usize {
        match self.control {
            Control::All => 0,
            Control::Cohort => unit,
        }
    }

    /// Each test's reference for the next replies, from the control's running tally:
    /// `None` while there is nothing to judge against (the control thinner than the
    /// test's `min_samples` and no baseline).
    pub fn references(&self, control: &Tally) -> Vec<Option<f64>> {
        let m = &self.margins;
        self.tests
            .iter()
            .map(|t| {
                let enough = |n: f64| n >= t.min_samples.max(1.0);
                let boxes = || {
                    control
                        .boxes
                        .mean()
                        .filter(|_| enough(control.boxes.n))
                        .or(m.baseline)
                };
                match t.hypothesis {
                    Hypothesis::LatencyRatio => control
                        .latency
                        .mean()
                        .filter(|mean| enough(control.latency.n) && *mean > 0.0)
                        .map(|mean| m.max_ratio * mean),
                    Hypothesis::LatencyCeiling => {
                        m.max_mean_ms.is_finite().then_some(m.max_mean_ms)
                    }
                    Hypothesis::BoxesAbove => {
                        boxes().map(|mean| ((1.0 + m.max_shift) * mean).max(BOX_REFERENCE_FLOOR))
                    }
                    Hypothesis::BoxesBelow => boxes()
                        .map(|mean| (1.0 - m.max_shift).max(0.0) * mean)
                        .filter(|r| *r >= BOX_BELOW_MIN_REFERENCE),
                    Hypothesis::ErrorExcess => {
                        if !enough(control.rate.n) {
                            return None;
                        }
                        // Anscombe's share: a clean control is not read as a certain zero.
                        let share = (control.rate.failures + 0.375) / (control.rate.n + 0.75);
                        Some(share + m.max_excess).filter(|q| *q < 1.0)
                    }
                    Hypothesis::ErrorCeiling => Some(m.max_error).filter(|q| *q < 1.0),
                    Hypothesis::AgreementBelow => Some(m.min_agreement),
                }
            })
            .collect()
    }
}

/// The outcome of one test on one unit's evidence.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Finding {
    pub hypothesis: Hypothesis,
    /// `ln` of the leading lane's weighted evidence, and of the threshold it sheds at.
    pub log_e: f64,
    pub threshold: f64,
    /// Gray replies scored by this test in the epoch, and the control's (running) count.
    pub gray_n: f64,
    pub control_n: f64,
    pub min_samples: f64,
    /// The estimated change point: gray replies of the epoch before it, and when it was
    /// seen (ms since the epoch; 0 before any bet).
    pub change_at: f64,
    pub change_ms: f64,
    /// Gray replies since the change point.
    pub since_n: f64,
    /// The effect since the change point, in natural units (a ratio, a relative shift, a
    /// share, a mean), and the bound the same bets prove at the shed threshold: at least
    /// it (gray above its margin) or at most it (below). Beyond the margin exactly when
    /// the test crossed.
    pub estimate: f64,
    pub bound: f64,
}

impl Finding {
    pub fn crossed(&self) -> bool {
        self.log_e >= self.threshold && self.gray_n >= self.min_samples
    }

    /// How close to shedding, 0..: 100 at the threshold.
    pub fn percent(&self) -> f64 {
        (100.0 * self.log_e / self.threshold).max(0.0)
    }
}

/// Evaluates every test of `plan` on a unit's evidence (`control`: the running control it
/// is judged against); returns each finding, the crossed ones included.
pub fn evaluate(plan: &Plan, u: &UnitEvidence, control: &Tally) -> Vec<Finding> {
    plan.tests
        .iter()
        .zip(&u.detectors)
        .map(|(t, d)| finding(plan, t, d, control))
        .collect()
}

/// The first crossed finding in plan order (the trigger that sheds), if any.
pub fn verdict(findings: &[Finding]) -> Option<&Finding> {
    findings.iter().find(|f| f.crossed())
}

fn finding(plan: &Plan, t: &Test, d: &Cusum, control: &Tally) -> Finding {
    let h = t.hypothesis;
    let m = &plan.margins;
    let (_, lane) = d.leader();
    let (mean_x, mean_ref) = if lane.run_n > 0.0 {
        (lane.run_sum_x / lane.run_n, lane.run_sum_ref / lane.run_n)
    } else {
        (f64::NAN, f64::NAN)
    };
    let delta = bet::effect_bound(d, h.floor(mean_ref), plan.log_threshold);
    // E[score] ≥ δ since the change point, read back in the hypothesis's own units.
    let (estimate, bound) = match h {
        Hypothesis::LatencyRatio => {
            let control = mean_ref / m.max_ratio;
            (mean_x / control, m.max_ratio * (1.0 + delta))
        }
        Hypothesis::LatencyCeiling | Hypothesis::ErrorCeiling => (mean_x, mean_ref * (1.0 + delta)),
        Hypothesis::BoxesAbove => {
            let control = mean_ref / (1.0 + m.max_shift);
            (
                mean_x / control - 1.0,
                (1.0 + m.max_shift) * (1.0 + delta) - 1.0,
            )
        }
        Hypothesis::BoxesBelow => {
            let control = mean_ref / (1.0 - m.max_shift).max(1e-9);
            (
                mean_x / control - 1.0,
                (1.0 - m.max_shift) * (1.0 - delta) - 1.0,
            )
        }
        Hypothesis::ErrorExcess => {
            let control = mean_ref - m.max_excess;
            (mean_x - control, mean_ref * (1.0 + delta) - control)
        }
        Hypothesis::AgreementBelow => (mean_x, mean_ref * (1.0 - delta)),
    };
    let control_n = match h {
        Hypothesis::LatencyRatio => control.latency.n,
        Hypothesis::BoxesAbove | Hypothesis::BoxesBelow => control.boxes.n,
        Hypothesis::ErrorExcess => control.rate.n,
        _ => 0.0,
    };
    Finding {
        hypothesis: h,
        log_e: d.log_evidence(),
        threshold: plan.log_threshold,
        gray_n: d.scored,
        control_n,
        min_samples: t.min_samples,
        change_at: lane.run_start,
        change_ms: lane.since_ms,
        since_n: lane.run_n,
        estimate,
        bound,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;
    use crate::detect::sequential::evidence::tests::{control, obs};
    use crate::detect::sequential::evidence::{Bets, Record};

    fn breach(extra: &str) -> Breach {
        parse(
            format!(
                r#"{{"stable":"s","gray":"g","rules":[],"breach":{{
              "latency":{{"header":"l","max_mean_ms":1000,"min_samples":10}},
              "box_count":{{"header":"b","min_samples":10}},
              "error_rate":{{"max":0.5,"min_samples":10}}{extra}}}}}"#
            )
            .as_bytes(),
        )
        .unwrap()
        .breach
    }

    /// Plays `n` batches of one gray and one control reply through a fresh record, the
    /// references refreshed after each batch as a worker does.
    fn play(
        b: &Breach,
        n: usize,
        gray: impl Fn(usize) -> Observation,
        control: impl Fn(usize) -> Observation,
    ) -> (Plan, Record, Option<(Hypothesis, usize)>) {
        let plan = Plan::for_breach(b);
        let mut rec = Record::new(1, plan.tests.len(), 1);
        let mut refs = plan.references(&rec.controls[0]);
        let mut first = None;
        for i in 0..n {
            let mut bets = Bets::new(plan.tests.len());
            bets.observe(&plan, &refs, &gray(i));
            let mut c = Tally::default();
            c.observe(&control(i));
            let stakes = bets.settle(&plan, &refs);
            rec.unit_for(0, 0)
                .unwrap()
                .add(&bets.tally, &stakes, &c, i as f64);
            rec.controls[0].absorb_decayed(&c, plan.memory);
            refs = plan.references(&rec.controls[0]);
            if first.is_none()
                && let Some(f) = verdict(&evaluate(&plan, &rec.units[0], &rec.controls[0]))
            {
                first = Some((f.hypothesis, i));
            }
        }
        (plan, rec, first)
    }

    #[test]
    fn the_plan_asks_for_each_configured_hypothesis_and_splits_arl_over_them() {
        let b = breach(r#","agreement":{"min_mean":0.8}"#);
        let plan = Plan::for_breach(&b);
        let names: Vec<_> = plan.tests.iter().map(|t| t.hypothesis.as_str()).collect();
        assert_eq!(
            names,
            [
                "latency_ratio",
                "latency_ceiling",
                "box_count_above",
                "box_count_below",
                "error_rate_excess",
                "error_rate_ceiling",
                "agreement_below"
            ]
        );
        assert!((plan.log_threshold - (b.arl * 7.0).ln()).abs() < 1e-12);
    }

    #[test]
    fn scores_stay_above_their_floor() {
        let cases = [
            (Hypothesis::LatencyRatio, 0.0, 120.0),
            (Hypothesis::BoxesBelow, 1e6, 3.75),
            (Hypothesis::ErrorExcess, 0.0, 0.03),
            (Hypothesis::AgreementBelow, 1.0, 0.7),
        ];
        for (h, x, r) in cases {
            assert!(h.score(x, r) >= h.floor(r) - 1e-12, "{h:?}");
        }
        assert_eq!(Hypothesis::AgreementBelow.score(0.0, 0.7), 1.0);
    }

    /// Deterministic streams: clear regressions cross, a healthy stream never does.
    #[test]
    fn each_trigger_crosses_on_a_clear_regression_only() {
        let b = breach("");
        let first = |g: fn(usize) -> Observation| play(&b, 600, g, control).2;
        assert_eq!(first(control), None);
        let slow = first(|i| obs(200.0 + (i % 7) as f64, 5.0 + (i % 5) as f64 - 2.0, false));
        assert_eq!(slow.map(|s| s.0), Some(Hypothesis::LatencyRatio));
        let flood = first(|i| obs(100.0, 20.0 + (i % 5) as f64, false));
        assert_eq!(flood.map(|s| s.0), Some(Hypothesis::BoxesAbove));
        // Bet on from the eleventh reply on (these batches keep no waiting values).
        assert!(flood.is_some_and(|s| s.1 < 30), "{flood:?}");
        let vanishing = first(|i| obs(100.0, ((i % 5) as f64 - 2.0).max(0.0), false));
        assert_eq!(vanishing.map(|s| s.0), Some(Hypothesis::BoxesBelow));
        let failing = first(|i| obs(100.0, 5.0, i % 3 == 0));
        assert_eq!(failing.map(|s| s.0), Some(Hypothesis::ErrorExcess));
    }

    #[test]
    fn disagreement_with_stable_crosses_and_agreement_does_not() {
        let b = breach(r#","agreement":{"min_mean":0.7,"min_samples":10}"#);
        let with = |a: f64| {
            move |i: usize| Observation {
                agreement: Some(if i.is_multiple_of(2) { a } else { 1.0 }),
                ..control(i)
            }
        };
        assert_eq!(play(&b, 2_000, with(0.9), control).2, None);
        let swapped = play(&b, 600, with(0.0), control).2;
        assert_eq!(swapped.map(|s| s.0), Some(Hypothesis::AgreementBelow));
    }

    /// A change after a long healthy run is caught about as fast as one from the start:
    /// the detector restarts, it does not average the healthy past in.
    #[test]
    fn a_change_after_a_long_healthy_run_is_not_diluted() {
        let b = breach("");
        let slow = |i: usize| obs(180.0 + (i % 7) as f64, 5.0 + (i % 5) as f64 - 2.0, false);
        let (_, _, at_start) = play(&b, 400, slow, control);
        let onset = 4_321;
        let (plan, rec, late) = play(
            &b,
            onset + 400,
            |i| if i < onset { control(i) } else { slow(i) },
            control,
        );
        let (start, late) = (at_start.unwrap().1, late.unwrap().1 - onset);
        assert!(
            late <= start + 2,
            "from the start {start}, after {onset}: {late}"
        );
        // The change point is found, and the effect since it is the regression's.
        let f = evaluate(&plan, &rec.units[0], &rec.controls[0])[0];
        assert!((f.change_at - onset as f64).abs() <= 2.0, "{f:?}");
        assert!(f.estimate > 1.7 && f.bound > 1.25, "{f:?}");
    }

    #[test]
    fn a_crossed_finding_bounds_the_effect_beyond_the_margin() {
        let b = breach("");
        for gray in [
            (|i: usize| obs(150.0 + (i % 11) as f64, 5.0, false)) as fn(usize) -> Observation,
            |_| obs(100.0, 12.0, false),
            |i| obs(100.0, (i % 2) as f64, false),
            |i| obs(100.0, 5.0, i % 4 == 0),
        ] {
            let (plan, rec, first) = play(&b, 400, gray, control);
            assert!(first.is_some());
            for f in evaluate(&plan, &rec.units[0], &rec.controls[0]) {
                let margin = match f.hypothesis {
                    Hypothesis::LatencyRatio => 1.25,
                    Hypothesis::BoxesAbove => 0.25,
                    Hypothesis::BoxesBelow => -0.25,
                    _ => continue,
                };
                let beyond = if f.hypothesis.above() {
                    f.bound > margin
                } else {
                    f.bound < margin
                };
                assert_eq!(f.crossed(), beyond, "{f:?}");
            }
        }
    }

    #[test]
    fn the_baseline_stands_in_only_while_the_control_is_thin() {
        let b = parse(
            br#"{"stable":"s","gray":"g","rules":[],"breach":{
              "box_count":{"header":"b","min_samples":10,"baseline":{"mean":5,"std":2}}}}"#,
        )
        .unwrap()
        .breach;
        let plan = Plan::for_breach(&b);
        assert_eq!(plan.references(&Tally::default()), [Some(6.25), Some(3.75)]);
        let mut c = Tally::default();
        for _ in 0..20 {
            c.observe(&obs(1.0, 2.0, false));
        }
        assert_eq!(plan.references(&c), [Some(2.5), Some(1.5)]);
    }
}
