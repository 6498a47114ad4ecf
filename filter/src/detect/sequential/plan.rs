//! The sequential detector's tests: which one-sided hypotheses the configuration asks for,
//! each with its share of `alpha` and its mixture, and what they find on a unit's evidence.
//!
//! Per unit and trigger, several one-sided tests run at once, each with its share of
//! `alpha` (a union bound keeps the total): gray against the control beyond the margin
//! (and, for the box count, in both directions, or against a configured baseline while the
//! control is thin), gray against the absolute ceiling, and for each of those one test
//! over the whole epoch (since the breaker last closed) and one over the current segment
//! of `segment_responses` gray responses, so that a regression starting after a long
//! healthy period is not drowned by it. Segment `j` gets `1/(j(j+1))` of the segment share.
//! The arithmetic is [`super::math`]'s.

use grayguard_contract::Trigger;

use crate::config::{Breach, Control};
use crate::detect::sequential::evidence::{Pair, UnitEvidence};
use crate::detect::sequential::math::{Contrast, cs_width, rho2_for};

/// Share of a test's alpha given to the epoch-long test; the rest is spread over segments.
pub const EPOCH_SHARE: f64 = 0.8;

/// Gray responses after which each trigger's mixture is most sensitive: where a regression
/// of the size the benchmark cases describe becomes detectable (see `make bench-detect`).
pub const DESIGN_LATENCY: f64 = 40.0;
pub const DESIGN_BOX_COUNT: f64 = 100.0;
pub const DESIGN_ERROR_RATE: f64 = 400.0;

/// One of the one-sided hypotheses a trigger tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Hypothesis {
    /// Gray mean latency above `max_ratio` × the control's.
    LatencyRatio,
    /// Gray mean latency above `max_mean_ms`.
    LatencyCeiling,
    /// Gray mean box count above (1 + `max_shift`) × the control's.
    BoxesAbove,
    /// Gray mean box count below (1 − `max_shift`) × the control's.
    BoxesBelow,
    /// Gray mean box count above (1 + `max_shift`) × the configured baseline (control thin).
    BoxesAboveBaseline,
    /// Gray mean box count below (1 − `max_shift`) × the configured baseline (control thin).
    BoxesBelowBaseline,
    /// Gray failure share above the control's + `max_excess`.
    ErrorExcess,
    /// Gray failure share above `error_rate.max`.
    ErrorCeiling,
}

impl Hypothesis {
    pub fn trigger(self) -> Trigger {
        match self {
            Hypothesis::LatencyRatio | Hypothesis::LatencyCeiling => Trigger::Latency,
            Hypothesis::BoxesAbove
            | Hypothesis::BoxesBelow
            | Hypothesis::BoxesAboveBaseline
            | Hypothesis::BoxesBelowBaseline => Trigger::BoxCount,
            Hypothesis::ErrorExcess | Hypothesis::ErrorCeiling => Trigger::ErrorRate,
        }
    }

    /// The name in the incident record.
    pub fn as_str(self) -> &'static str {
        match self {
            Hypothesis::LatencyRatio => "latency_ratio",
            Hypothesis::LatencyCeiling => "latency_ceiling",
            Hypothesis::BoxesAbove => "box_count_above",
            Hypothesis::BoxesBelow => "box_count_below",
            Hypothesis::BoxesAboveBaseline => "box_count_above_baseline",
            Hypothesis::BoxesBelowBaseline => "box_count_below_baseline",
            Hypothesis::ErrorExcess => "error_rate_excess",
            Hypothesis::ErrorCeiling => "error_rate_ceiling",
        }
    }
}

/// One hypothesis with its share of alpha and mixture.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Test {
    pub hypothesis: Hypothesis,
    /// This hypothesis's alpha (epoch and segments together).
    pub alpha: f64,
    pub rho2: f64,
    pub min_samples: f64,
}

/// Every test the configuration asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub tests: Vec<Test>,
    pub segment_responses: u32,
    pub control: Control,
}

impl Plan {
    /// Alpha split evenly over the enabled statistical triggers, then over each trigger's
    /// hypotheses.
    pub fn for_breach(b: &Breach) -> Plan {
        let mut groups: Vec<(Vec<Hypothesis>, f64, u32)> = Vec::new();
        if let Some(t) = &b.latency {
            let mut h = vec![Hypothesis::LatencyRatio];
            if t.max_mean_ms.is_some() {
                h.push(Hypothesis::LatencyCeiling);
            }
            groups.push((h, DESIGN_LATENCY, t.min_samples));
        }
        if let Some(t) = &b.box_count {
            let mut h = vec![Hypothesis::BoxesAbove, Hypothesis::BoxesBelow];
            if t.baseline.is_some() {
                h.extend([
                    Hypothesis::BoxesAboveBaseline,
                    Hypothesis::BoxesBelowBaseline,
                ]);
            }
            groups.push((h, DESIGN_BOX_COUNT, t.min_samples));
        }
        if let Some(t) = &b.error_rate {
            let mut h = vec![Hypothesis::ErrorExcess];
            if t.max.is_some() {
                h.push(Hypothesis::ErrorCeiling);
            }
            groups.push((h, DESIGN_ERROR_RATE, t.min_samples));
        }
        let per_trigger = b.alpha / groups.len().max(1) as f64;
        let mut tests = Vec::new();
        for (hyps, design, min) in groups {
            let alpha = per_trigger / hyps.len() as f64;
            for hypothesis in hyps {
                tests.push(Test {
                    hypothesis,
                    alpha,
                    rho2: rho2_for(design, alpha * EPOCH_SHARE),
                    min_samples: f64::from(min),
                });
            }
        }
        Plan {
            tests,
            segment_responses: b.segment_responses,
            control: b.control,
        }
    }
}

/// Whether a span is the whole epoch or the current segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Span {
    Epoch,
    Segment(u32),
}

/// The outcome of one test on one span.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Finding {
    pub hypothesis: Hypothesis,
    pub span: Span,
    /// `ln M_t`, the log e-value.
    pub log_e: f64,
    /// `ln(1/alpha_span)`: shed at or above it.
    pub threshold: f64,
    pub gray_n: f64,
    pub control_n: f64,
    /// The effect in natural units (a ratio, a relative shift, a share or a mean) with an
    /// anytime-valid confidence interval at the test's level.
    pub estimate: f64,
    pub interval: (f64, f64),
}

impl Finding {
    pub fn crossed(&self) -> bool {
        self.log_e >= self.threshold
    }

    /// How close to shedding, 0..: 100 at the threshold.
    pub fn percent(&self) -> f64 {
        (100.0 * self.log_e / self.threshold).max(0.0)
    }
}

/// The configuration's margins, in the units the tests need.
#[derive(Debug, Clone, Copy)]
struct Margins {
    max_ratio: f64,
    max_mean_ms: f64,
    max_shift: f64,
    baseline: f64,
    max_excess: f64,
    max_error: f64,
}

impl Margins {
    fn of(b: &Breach) -> Margins {
        Margins {
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
                .map_or(0.0, |(mean, _)| mean),
            max_excess: b.error_rate.as_ref().map_or(0.0, |t| t.max_excess),
            max_error: b.error_rate.as_ref().and_then(|t| t.max).unwrap_or(1.0),
        }
    }
}

/// Evaluates every test of `plan` on a unit's evidence; returns each finding (for gauges
/// and the incident record), the crossed ones included.
pub fn evaluate(plan: &Plan, b: &Breach, u: &UnitEvidence) -> Vec<Finding> {
    let m = Margins::of(b);
    let mut out = Vec::with_capacity(plan.tests.len() * 2);
    for t in &plan.tests {
        let seg_alpha = t.alpha * (1.0 - EPOCH_SHARE)
            / (f64::from(u.segment_index) * (f64::from(u.segment_index) + 1.0));
        let spans = [
            (Span::Epoch, &u.epoch, t.alpha * EPOCH_SHARE),
            (Span::Segment(u.segment_index), &u.segment, seg_alpha),
        ];
        for (span, pair, alpha) in spans {
            if let Some(f) = finding(t, &m, pair, span, alpha) {
                out.push(f);
            }
        }
    }
    out
}

/// The first crossed finding in plan order (the trigger that sheds), if any.
pub fn verdict(findings: &[Finding]) -> Option<&Finding> {
    findings.iter().find(|f| f.crossed())
}

fn finding(t: &Test, m: &Margins, p: &Pair, span: Span, alpha: f64) -> Option<Finding> {
    let (g, c) = (&p.gray, &p.control);
    let enough = |x: f64| x >= t.min_samples;
    let w = |n: f64| cs_width(n, t.rho2, alpha);
    // (contrast, estimate, its standard error's scale, control samples)
    let (contrast, estimate, half): (Contrast, f64, f64) = match t.hypothesis {
        Hypothesis::LatencyRatio | Hypothesis::BoxesAbove | Hypothesis::BoxesBelow => {
            let (gm, cm) = match t.hypothesis {
                Hypothesis::LatencyRatio => (&g.latency, &c.latency),
                _ => (&g.boxes, &c.boxes),
            };
            if !(enough(gm.n) && enough(cm.n)) {
                return None;
            }
            let (factor, below) = match t.hypothesis {
                Hypothesis::LatencyRatio => (m.max_ratio, false),
                Hypothesis::BoxesAbove => (1.0 + m.max_shift, false),
                _ => ((1.0 - m.max_shift).max(0.0), true),
            };
            let contrast = if below {
                Contrast::ratio_below(gm, cm, factor)?
            } else {
                Contrast::ratio_above(gm, cm, factor)?
            };
            let (mg, mc) = (gm.mean()?, cm.mean()?);
            // The ratio and its delta-method spread (the estimate's scale, not the test's).
            let ratio = if mc > 0.0 { mg / mc } else { f64::INFINITY };
            let spread = Contrast::ratio_above(gm, cm, ratio.min(1e9))?.v.sqrt() / mc.max(1e-12);
            let estimate = match t.hypothesis {
                Hypothesis::LatencyRatio => ratio,
                _ => ratio - 1.0,
            };
            (contrast, estimate, w(gm.n) * spread)
        }
        Hypothesis::BoxesAboveBaseline | Hypothesis::BoxesBelowBaseline => {
            // Only while the control is too thin to compare with.
            if !enough(g.boxes.n) || enough(c.boxes.n) || m.baseline <= 0.0 {
                return None;
            }
            let contrast = if t.hypothesis == Hypothesis::BoxesAboveBaseline {
                Contrast::above(&g.boxes, (1.0 + m.max_shift) * m.baseline)?
            } else {
                Contrast::below(&g.boxes, (1.0 - m.max_shift).max(0.0) * m.baseline)?
            };
            let mg = g.boxes.mean()?;
            let spread = (g.boxes.var() / g.boxes.n).sqrt() / m.baseline;
            (contrast, mg / m.baseline - 1.0, w(g.boxes.n) * spread)
        }
        Hypothesis::LatencyCeiling => {
            if !enough(g.latency.n) {
                return None;
            }
            let contrast = Contrast::above(&g.latency, m.max_mean_ms)?;
            let mg = g.latency.mean()?;
            let half = w(g.latency.n) * (g.latency.var() / g.latency.n).sqrt();
            (contrast, mg, half)
        }
        Hypothesis::ErrorExcess => {
            if !(enough(g.rate.n) && enough(c.rate.n)) {
                return None;
            }
            let contrast = Contrast::rate_excess(&g.rate, &c.rate, m.max_excess)?;
            let (pg, pc) = (g.rate.share()?, c.rate.share()?);
            let v = pg * (1.0 - pg) / g.rate.n + pc * (1.0 - pc) / c.rate.n;
            (contrast, pg - pc, w(g.rate.n) * v.sqrt())
        }
        Hypothesis::ErrorCeiling => {
            if !enough(g.rate.n) {
                return None;
            }
            let contrast = Contrast::rate_above(&g.rate, m.max_error)?;
            let pg = g.rate.share()?;
            let half = w(g.rate.n) * (pg * (1.0 - pg) / g.rate.n).sqrt();
            (contrast, pg, half)
        }
    };
    let control_n = match t.hypothesis {
        Hypothesis::LatencyRatio => c.latency.n,
        Hypothesis::BoxesAbove | Hypothesis::BoxesBelow => c.boxes.n,
        Hypothesis::ErrorExcess => c.rate.n,
        _ => 0.0,
    };
    Some(Finding {
        hypothesis: t.hypothesis,
        span,
        log_e: contrast.log_e(t.rho2),
        threshold: (1.0 / alpha).ln(),
        gray_n: contrast.t,
        control_n,
        estimate,
        interval: (estimate - half, estimate + half),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;
    use crate::detect::sequential::evidence::Tally;
    use crate::detect::sequential::evidence::tests::obs;
    use crate::signals::Observation;

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

    #[test]
    fn alpha_is_split_over_triggers_then_hypotheses() {
        let b = breach("");
        let plan = Plan::for_breach(&b);
        let total: f64 = plan.tests.iter().map(|t| t.alpha).sum();
        assert!((total - b.alpha).abs() < 1e-12);
        let lat: Vec<_> = plan
            .tests
            .iter()
            .filter(|t| t.hypothesis.trigger() == Trigger::Latency)
            .collect();
        assert_eq!(lat.len(), 2);
        assert!((lat[0].alpha - b.alpha / 6.0).abs() < 1e-12);
        let with_baseline = parse(
            br#"{"stable":"s","gray":"g","rules":[],"breach":{"alpha":0.02,
              "box_count":{"header":"b","baseline":{"mean":5,"std":2}}}}"#,
        )
        .unwrap()
        .breach;
        let p = Plan::for_breach(&with_baseline);
        assert_eq!(p.tests.len(), 4);
        assert!(p.tests.iter().all(|t| (t.alpha - 0.005).abs() < 1e-12));
    }

    /// Deterministic streams: clear regressions cross, equal streams do not.
    #[test]
    fn each_trigger_crosses_on_a_clear_regression_only() {
        let b = breach("");
        let plan = Plan::for_breach(&b);
        let run = |gray: fn(usize) -> Observation| {
            let mut u = UnitEvidence::fresh(0);
            for i in 0..400 {
                let mut g = Tally::default();
                let mut c = Tally::default();
                g.observe(&gray(i));
                c.observe(&obs(
                    100.0 + (i % 7) as f64,
                    5.0 + (i % 5) as f64 - 2.0,
                    i % 100 == 0,
                ));
                u.add(&g, &c, 1000);
                if let Some(f) = verdict(&evaluate(&plan, &b, &u)) {
                    return Some((f.hypothesis, i));
                }
            }
            None
        };
        let healthy = run(|i| {
            obs(
                100.0 + (i % 7) as f64,
                5.0 + (i % 5) as f64 - 2.0,
                i % 100 == 50,
            )
        });
        assert_eq!(healthy, None);
        let slow = run(|i| obs(200.0 + (i % 7) as f64, 5.0 + (i % 5) as f64 - 2.0, false));
        assert_eq!(slow.map(|s| s.0), Some(Hypothesis::LatencyRatio));
        let flood = run(|i| obs(100.0, 20.0 + (i % 5) as f64, false));
        assert_eq!(flood.map(|s| s.0), Some(Hypothesis::BoxesAbove));
        assert!(flood.is_some_and(|s| s.1 < 20), "{flood:?}");
        let vanishing = run(|i| obs(100.0, ((i % 5) as f64 - 2.0).max(0.0), false));
        assert_eq!(vanishing.map(|s| s.0), Some(Hypothesis::BoxesBelow));
        let failing = run(|i| obs(100.0, 5.0, i % 3 == 0));
        assert_eq!(failing.map(|s| s.0), Some(Hypothesis::ErrorExcess));
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
        let mut u = UnitEvidence::fresh(0);
        let mut g = Tally::default();
        for _ in 0..30 {
            g.observe(&obs(1.0, 20.0, false));
        }
        u.add(&g, &Tally::default(), 1000);
        let f = evaluate(&plan, &b, &u);
        let v = verdict(&f).map(|f| f.hypothesis);
        assert_eq!(v, Some(Hypothesis::BoxesAboveBaseline));
        // With a control that saw the same flood, the baseline steps aside.
        let mut u = UnitEvidence::fresh(0);
        u.add(&g, &g, 1000);
        assert_eq!(verdict(&evaluate(&plan, &b, &u)), None);
    }

    #[test]
    fn findings_report_the_effect_with_an_interval() {
        let b = breach("");
        let plan = Plan::for_breach(&b);
        let mut u = UnitEvidence::fresh(0);
        let mut g = Tally::default();
        let mut c = Tally::default();
        for i in 0..200 {
            g.observe(&obs(150.0 + (i % 11) as f64, 5.0, false));
            c.observe(&obs(100.0 + (i % 11) as f64, 5.0, false));
        }
        u.add(&g, &c, 1000);
        let f = evaluate(&plan, &b, &u);
        let ratio = f
            .iter()
            .find(|f| f.hypothesis == Hypothesis::LatencyRatio && f.span == Span::Epoch)
            .unwrap();
        let want = g.latency.mean().unwrap() / c.latency.mean().unwrap();
        assert!((ratio.estimate - want).abs() < 1e-9);
        assert!(ratio.interval.0 < ratio.estimate && ratio.estimate < ratio.interval.1);
        assert!(ratio.interval.0 > 1.25, "{ratio:?}");
        assert!(ratio.crossed() && ratio.percent() >= 100.0);
        // Segment tests run on the same data with a smaller alpha: higher thresholds.
        let seg = f
            .iter()
            .find(|f| f.hypothesis == Hypothesis::LatencyRatio && f.span == Span::Segment(1))
            .unwrap();
        assert!(seg.threshold > ratio.threshold);
    }
}
