//! The sequential detector: what each unit has seen of gray and of its stable control,
//! the shared evidence record that merges every worker's observations, and the tests that
//! decide from it (the arithmetic is in [`crate::sequential`]).
//!
//! Each worker tallies its responses locally (counts, sums and sums of squares: constant
//! memory per unit) and on the tick adds them to one record in proxy shared data with a
//! compare-and-swap. The record therefore holds every response any worker saw, added in
//! one total order; a test evaluated after each addition sees a growing prefix of one
//! sequence of batches, which is all an anytime-valid test needs.
//!
//! Per unit and trigger, several one-sided tests run at once, each with its share of
//! `alpha` (a union bound keeps the total): gray against the control beyond the margin
//! (and, for the box count, in both directions, or against a configured baseline while the
//! control is thin), gray against the absolute ceiling, and for each of those one test
//! over the whole epoch (since the breaker last closed) and one over the current segment
//! of `segment_responses` gray responses, so that a regression starting after a long
//! healthy period is not drowned by it. Segment `j` gets `1/(j(j+1))` of the segment share.

use grayguard_contract::Trigger;

use crate::config::{Breach, Control};
use crate::sequential::{Contrast, Moments, Rate, cs_width, rho2_for};
use crate::signals::Observation;
use crate::window::{Corrupt, Reader};

/// Share of a test's alpha given to the epoch-long test; the rest is spread over segments.
pub const EPOCH_SHARE: f64 = 0.8;

/// Gray responses after which each trigger's mixture is most sensitive: where a regression
/// of the size the benchmark cases describe becomes detectable (see `make bench-detect`).
pub const DESIGN_LATENCY: f64 = 40.0;
pub const DESIGN_BOX_COUNT: f64 = 100.0;
pub const DESIGN_ERROR_RATE: f64 = 400.0;

/// What one side (gray, or the control) of one unit saw.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Tally {
    pub latency: Moments,
    pub boxes: Moments,
    pub rate: Rate,
}

impl Tally {
    pub fn observe(&mut self, o: &Observation) {
        self.rate.n += 1.0;
        if o.failed {
            self.rate.failures += 1.0;
        }
        if let Some(ms) = o.latency_ms {
            self.latency.add(ms);
        }
        if let Some(n) = o.boxes {
            self.boxes.add(n);
        }
    }

    pub fn merge(&mut self, o: &Tally) {
        self.latency.merge(&o.latency);
        self.boxes.merge(&o.boxes);
        self.rate.merge(&o.rate);
    }

    pub fn is_empty(&self) -> bool {
        self.rate.n == 0.0 && self.latency.n == 0.0 && self.boxes.n == 0.0
    }
}

/// Gray and control over one stretch of time.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Pair {
    pub gray: Tally,
    pub control: Tally,
}

impl Pair {
    fn merge(&mut self, gray: &Tally, control: &Tally) {
        self.gray.merge(gray);
        self.control.merge(control);
    }
}

/// One unit's evidence in the shared record.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct UnitEvidence {
    /// The breaker generation this epoch belongs to (a close starts a new epoch).
    pub generation: u32,
    /// Since the breaker last closed (or the configuration started).
    pub epoch: Pair,
    /// Since the current segment started.
    pub segment: Pair,
    /// 1-based index of the current segment in this epoch.
    pub segment_index: u32,
}

impl UnitEvidence {
    fn fresh(generation: u32) -> UnitEvidence {
        UnitEvidence {
            generation,
            segment_index: 1,
            ..UnitEvidence::default()
        }
    }

    /// Adds one worker's tallies; a segment full of gray responses is closed first.
    pub fn add(&mut self, gray: &Tally, control: &Tally, segment_responses: u32) {
        if self.segment.gray.rate.n >= f64::from(segment_responses) {
            self.segment = Pair::default();
            self.segment_index = self.segment_index.saturating_add(1);
        }
        self.epoch.merge(gray, control);
        self.segment.merge(gray, control);
    }
}

/// Every unit's evidence: the shared record.
#[derive(Debug, Clone, PartialEq)]
pub struct Record(pub Vec<UnitEvidence>);

const RECORD_VERSION: u8 = 1;

impl Record {
    pub fn new(units: usize) -> Record {
        Record(vec![UnitEvidence::fresh(0); units])
    }

    /// The unit's evidence for breaker `generation`: started afresh when the stored one
    /// belongs to an earlier epoch.
    pub fn unit_for(&mut self, unit: usize, generation: u32) -> Option<&mut UnitEvidence> {
        let u = self.0.get_mut(unit)?;
        if u.generation != generation {
            *u = UnitEvidence::fresh(generation);
        }
        Some(u)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(3 + self.0.len() * 264);
        out.push(RECORD_VERSION);
        out.extend_from_slice(&(self.0.len() as u16).to_le_bytes());
        for u in &self.0 {
            out.extend_from_slice(&u.generation.to_le_bytes());
            out.extend_from_slice(&u.segment_index.to_le_bytes());
            for pair in [&u.epoch, &u.segment] {
                for t in [&pair.gray, &pair.control] {
                    for v in tally_fields(t) {
                        out.extend_from_slice(&v.to_le_bytes());
                    }
                }
            }
        }
        out
    }

    /// Decodes a record of exactly `units` units.
    pub fn decode(bytes: &[u8], units: usize) -> Result<Record, Corrupt> {
        let mut r = Reader(bytes);
        if r.u8()? != RECORD_VERSION || usize::from(r.u16()?) != units {
            return Err(Corrupt);
        }
        let mut v = Vec::with_capacity(units);
        for _ in 0..units {
            let generation = r.u32()?;
            let segment_index = r.u32()?;
            let mut pairs = [Pair::default(); 2];
            for pair in &mut pairs {
                for t in [&mut pair.gray, &mut pair.control] {
                    let mut f = [0.0; 8];
                    for x in &mut f {
                        *x = r.f64()?;
                    }
                    *t = tally_from(f).ok_or(Corrupt)?;
                }
            }
            v.push(UnitEvidence {
                generation,
                epoch: pairs[0],
                segment: pairs[1],
                segment_index,
            });
        }
        if !r.0.is_empty() {
            return Err(Corrupt);
        }
        Ok(Record(v))
    }
}

fn tally_fields(t: &Tally) -> [f64; 8] {
    [
        t.latency.n,
        t.latency.sum,
        t.latency.sumsq,
        t.boxes.n,
        t.boxes.sum,
        t.boxes.sumsq,
        t.rate.n,
        t.rate.failures,
    ]
}

/// A tally from its fields; counts must be whole, non-negative and consistent.
fn tally_from(f: [f64; 8]) -> Option<Tally> {
    let count = |x: f64| x >= 0.0 && x.fract() == 0.0;
    let ok = count(f[0]) && count(f[3]) && count(f[6]) && count(f[7]) && f[7] <= f[6];
    ok.then_some(Tally {
        latency: Moments {
            n: f[0],
            sum: f[1],
            sumsq: f[2],
        },
        boxes: Moments {
            n: f[3],
            sum: f[4],
            sumsq: f[5],
        },
        rate: Rate {
            n: f[6],
            failures: f[7],
        },
    })
}

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

    fn obs(lat: f64, boxes: f64, failed: bool) -> Observation {
        Observation {
            failed,
            latency_ms: (!failed).then_some(lat),
            boxes: (!failed).then_some(boxes),
            ..Observation::default()
        }
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

    #[test]
    fn record_round_trips_and_rejects_corruption() {
        let mut r = Record::new(2);
        let mut g = Tally::default();
        g.observe(&obs(12.5, 3.0, false));
        g.observe(&obs(0.0, 0.0, true));
        r.unit_for(1, 4).unwrap().add(&g, &Tally::default(), 1000);
        let bytes = r.encode();
        assert_eq!(Record::decode(&bytes, 2), Ok(r.clone()));
        assert_eq!(Record::decode(&bytes, 3), Err(Corrupt));
        for cut in 0..bytes.len() {
            assert_eq!(Record::decode(&bytes[..cut], 2), Err(Corrupt));
        }
        // A failure count above the responses is not a tally.
        let mut bad = r.clone();
        bad.0[0].epoch.gray.rate = Rate {
            n: 1.0,
            failures: 2.0,
        };
        assert_eq!(Record::decode(&bad.encode(), 2), Err(Corrupt));
    }

    #[test]
    fn a_new_generation_starts_a_new_epoch_and_segments_roll_over() {
        let mut r = Record::new(1);
        let mut g = Tally::default();
        for _ in 0..6 {
            g.observe(&obs(10.0, 5.0, false));
        }
        let u = r.unit_for(0, 1).unwrap();
        u.add(&g, &g, 10);
        u.add(&g, &g, 10);
        assert_eq!((u.segment_index, u.segment.gray.rate.n), (1, 12.0));
        u.add(&g, &g, 10);
        assert_eq!((u.segment_index, u.segment.gray.rate.n), (2, 6.0));
        assert_eq!(u.epoch.gray.rate.n, 18.0);
        let again = r.unit_for(0, 2).unwrap();
        assert_eq!((again.generation, again.epoch.gray.rate.n), (2, 0.0));
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
