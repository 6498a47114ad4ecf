//! The sequential detector's evidence: what each unit has seen of gray and of its stable
//! control, the running control reference gray is judged against, one change detector per
//! test, the promotion verdict's sums, and the shared record that merges every worker's
//! share of them.
//!
//! **Per reply** (on the worker that saw it): a gray reply is tallied and, for every test
//! its signals speak to, bet on against the reference the worker last read ([`Bets`],
//! `super::bet`): predictable, so the bet is fair while gray is within its margin. A stable
//! reply is tallied as control. Both feed the promotion's sums (`super::promotion`).
//!
//! **Per tick** (one compare-and-swap per worker): the worker adds its tallies and bets to
//! the shared [`Record`]. The record therefore holds every reply any worker saw, added in
//! one total order; each batch's bets multiply into one factor whose conditional
//! expectation is at most 1 given everything before it in that order (the replies of
//! different batches are independent, and each was scored against a reference that does
//! not depend on it), so the change detectors run on one sequence of batches and keep
//! their guarantee. The control reference is an exponentially weighted tally of the
//! control (`breach.control_memory` replies): concurrent with gray, so that dusk or a new
//! product on the line moves both sides alike, and precise. The bytes are
//! `crate::shared::codec`'s; the tests on the record are `super::plan`'s.

use crate::detect::sequential::bet::{Cusum, Stake};
use crate::detect::sequential::moments::{Moments, Rate};
use crate::detect::sequential::plan::Plan;
use crate::detect::sequential::promotion::{Local, Promotion};
use crate::signals::Observation;

/// Gray values a worker keeps per test while the test has no reference yet (the control
/// still thinner than `min_samples`, at the start of a release): they are bet on as soon
/// as the reference exists, so the first replies of a release count. Beyond this many a
/// value is tallied but not bet on.
pub const WAITING_MAX: usize = 256;

/// What one side (gray, or the control) of one unit saw.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Tally {
    pub latency: Moments,
    pub boxes: Moments,
    pub rate: Rate,
    pub agreement: Moments,
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
        if let Some(a) = o.agreement {
            self.agreement.add(a);
        }
    }

    pub fn merge(&mut self, o: &Tally) {
        self.latency.merge(&o.latency);
        self.boxes.merge(&o.boxes);
        self.rate.merge(&o.rate);
        self.agreement.merge(&o.agreement);
    }

    pub fn is_empty(&self) -> bool {
        self.rate.n == 0.0 && self.latency.n == 0.0 && self.boxes.n == 0.0
    }

    /// Forgets a share of the past as `batch` arrives: each signal decays by
    /// `(1 − 1/memory)` per value the batch brings, then the batch is added.
    pub fn absorb_decayed(&mut self, batch: &Tally, memory: f64) {
        let keep = |n: f64| (1.0 - 1.0 / memory.max(1.0)).powf(n);
        self.latency.scale(keep(batch.latency.n));
        self.boxes.scale(keep(batch.boxes.n));
        self.rate.scale(keep(batch.rate.n));
        self.agreement.scale(keep(batch.agreement.n));
        self.merge(batch);
    }
}

/// Gray and control over one epoch.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Pair {
    pub gray: Tally,
    pub control: Tally,
}

/// One worker's unflushed gray replies of one unit: tallied, and bet on per test.
#[derive(Debug, Clone, PartialEq)]
pub struct Bets {
    pub tally: Tally,
    pub stakes: Vec<Stake>,
    /// Per test: values seen while it had no reference. Scoring a value against a
    /// reference formed later is as fair as against one formed before: the reference comes
    /// from the control's replies alone, which are independent of gray's.
    pub waiting: Vec<Vec<f64>>,
}

impl Bets {
    pub fn new(tests: usize) -> Bets {
        Bets {
            tally: Tally::default(),
            stakes: vec![Stake::default(); tests],
            waiting: vec![Vec::new(); tests],
        }
    }

    /// Books one gray reply, each test against its reference (`None`: kept waiting).
    pub fn observe(&mut self, plan: &Plan, references: &[Option<f64>], o: &Observation) {
        self.tally.observe(o);
        let tests = plan
            .tests
            .iter()
            .zip(&mut self.stakes)
            .zip(&mut self.waiting);
        for (((t, stake), waiting), r) in tests.zip(references) {
            let Some(x) = t.hypothesis.value(o) else {
                continue;
            };
            match r {
                Some(r) => t.hypothesis.bet(stake, x, *r),
                None if waiting.len() < WAITING_MAX => waiting.push(x),
                None => {}
            }
        }
    }

    /// The stakes to add to the record: the bets placed, and the waiting values of every
    /// test that now has a reference.
    pub fn settle(&self, plan: &Plan, references: &[Option<f64>]) -> Vec<Stake> {
        let mut stakes = self.stakes.clone();
        let tests = plan.tests.iter().zip(&mut stakes).zip(&self.waiting);
        for (((t, stake), waiting), r) in tests.zip(references) {
            if let Some(r) = r {
                for x in waiting {
                    t.hypothesis.bet(stake, *x, *r);
                }
            }
        }
        stakes
    }

    pub fn is_empty(&self) -> bool {
        self.tally.is_empty() && self.waiting.iter().all(Vec::is_empty)
    }

    /// After a flush that settled with `references`: empty, but for the values of tests
    /// that still have no reference.
    pub fn flushed(&mut self, references: &[Option<f64>]) {
        self.tally = Tally::default();
        self.stakes.iter_mut().for_each(|s| *s = Stake::default());
        for (waiting, r) in self.waiting.iter_mut().zip(references) {
            if r.is_some() {
                waiting.clear();
            }
        }
    }

    /// Forgets everything (a new epoch).
    pub fn clear(&mut self) {
        self.tally = Tally::default();
        self.stakes.iter_mut().for_each(|s| *s = Stake::default());
        self.waiting.iter_mut().for_each(Vec::clear);
    }
}

/// One worker's unflushed share of a unit: its gray bets and the promotion's sums.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub bets: Bets,
    pub promotion: Local,
}

/// One unit's evidence in the shared record.
#[derive(Debug, Clone, PartialEq)]
pub struct UnitEvidence {
    /// The breaker generation this epoch belongs to (a close starts a new epoch).
    pub generation: u32,
    /// Since the breaker last closed (or the configuration started).
    pub epoch: Pair,
    /// One change detector per test of the plan, in plan order.
    pub detectors: Vec<Cusum>,
    /// The promotion verdict's evidence for this epoch.
    pub promotion: Promotion,
}

impl UnitEvidence {
    pub fn fresh(generation: u32, tests: usize) -> UnitEvidence {
        UnitEvidence {
            generation,
            epoch: Pair::default(),
            detectors: vec![Cusum::default(); tests],
            promotion: Promotion::default(),
        }
    }

    /// Adds one worker's batch: its gray replies with their bets (`stakes`, from
    /// [`Bets::settle`]) and the control seen beside them.
    pub fn add(&mut self, gray: &Tally, stakes: &[Stake], control: &Tally, now_ms: f64) {
        let before = self.epoch.gray.rate.n;
        self.epoch.gray.merge(gray);
        self.epoch.control.merge(control);
        for (d, s) in self.detectors.iter_mut().zip(stakes) {
            d.absorb(s, now_ms, before);
        }
    }
}

/// Every unit's evidence and the control references: the shared record.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub units: Vec<UnitEvidence>,
    /// The running control tallies (`Plan::control_slots`), never reset by a unit's epoch.
    pub controls: Vec<Tally>,
}

impl Record {
    pub fn new(units: usize, tests: usize, slots: usize) -> Record {
        Record {
            units: vec![UnitEvidence::fresh(0, tests); units],
            controls: vec![Tally::default(); slots],
        }
    }

    /// Whether the record has the shape a configuration expects (a record of another
    /// shape is read as absent).
    pub fn fits(&self, units: usize, tests: usize, slots: usize) -> bool {
        self.units.len() == units
            && self.controls.len() == slots
            && self.units.iter().all(|u| u.detectors.len() == tests)
    }

    /// The unit's evidence for breaker `generation`: started afresh when the stored one
    /// belongs to an earlier epoch.
    pub fn unit_for(&mut self, unit: usize, generation: u32) -> Option<&mut UnitEvidence> {
        let u = self.units.get_mut(unit)?;
        if u.generation != generation {
            *u = UnitEvidence::fresh(generation, u.detectors.len());
        }
        Some(u)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::parse;

    /// A reply with this latency and box count, or a failure without them.
    pub(crate) fn obs(lat: f64, boxes: f64, failed: bool) -> Observation {
        Observation {
            failed,
            latency_ms: (!failed).then_some(lat),
            boxes: (!failed).then_some(boxes),
            ..Observation::default()
        }
    }

    /// The i-th reply of a steady stable control: 100–106 ms, 3–7 boxes, one failure in a
    /// hundred.
    pub(crate) fn control(i: usize) -> Observation {
        obs(
            100.0 + (i % 7) as f64,
            5.0 + (i % 5) as f64 - 2.0,
            i.is_multiple_of(100),
        )
    }

    fn plan() -> Plan {
        let b = parse(
            br#"{"stable":"s","gray":"g","rules":[],"breach":{
              "latency":{"header":"l","max_mean_ms":1000,"min_samples":10},
              "box_count":{"header":"b","min_samples":10},
              "error_rate":{"max":0.5,"min_samples":10}}}"#,
        )
        .unwrap()
        .breach;
        Plan::for_breach(&b)
    }

    #[test]
    fn a_new_generation_starts_a_new_epoch_but_keeps_the_control_reference() {
        let plan = plan();
        let tests = plan.tests.len();
        let mut rec = Record::new(1, tests, 1);
        let mut c = Tally::default();
        c.observe(&control(1));
        let mut bets = Bets::new(tests);
        bets.observe(&plan, &vec![Some(1.0); tests], &obs(100.0, 5.0, false));
        let stakes = bets.settle(&plan, &vec![Some(1.0); tests]);
        rec.unit_for(0, 1)
            .unwrap()
            .add(&bets.tally, &stakes, &c, 5.0);
        rec.controls[0].absorb_decayed(&c, plan.memory);
        let kept = rec.controls[0];
        assert_eq!(rec.units[0].epoch.gray.rate.n, 1.0);
        let again = rec.unit_for(0, 2).unwrap();
        assert_eq!((again.generation, again.epoch.gray.rate.n), (2, 0.0));
        assert!(again.detectors.iter().all(|d| d.scored == 0.0));
        assert_eq!(rec.controls[0], kept);
        assert!(rec.fits(1, tests, 1) && !rec.fits(1, tests + 1, 1));
    }

    #[test]
    fn values_wait_for_their_reference_and_are_then_bet_on() {
        let plan = plan();
        let none = vec![None; plan.tests.len()];
        let mut bets = Bets::new(plan.tests.len());
        for _ in 0..(WAITING_MAX + 10) {
            bets.observe(&plan, &none, &obs(300.0, 20.0, false));
        }
        assert_eq!(bets.tally.rate.n, (WAITING_MAX + 10) as f64);
        assert!(bets.waiting.iter().all(|w| w.len() == WAITING_MAX));
        let mut c = Tally::default();
        for i in 0..50 {
            c.observe(&control(i));
        }
        let refs = plan.references(&c);
        let stakes = bets.settle(&plan, &refs);
        assert!(stakes.iter().all(|s| s.n == WAITING_MAX as f64));
        assert!(
            stakes[0].log_e(0) > 50.0,
            "a clear regression, bet on at last"
        );
        bets.flushed(&refs);
        assert!(bets.is_empty());
        // A test still without a reference keeps its values for the next flush.
        let mut some = refs.clone();
        some[0] = None;
        bets.observe(&plan, &none, &obs(300.0, 20.0, false));
        bets.flushed(&some);
        assert_eq!(bets.waiting[0].len(), 1);
        assert!(bets.waiting[1..].iter().all(Vec::is_empty));
    }

    #[test]
    fn the_control_reference_follows_the_control_over_its_memory() {
        let mut c = Tally::default();
        let mut batch = Tally::default();
        batch.observe(&obs(100.0, 5.0, false));
        for _ in 0..5_000 {
            c.absorb_decayed(&batch, 1_000.0);
        }
        let mut later = Tally::default();
        later.observe(&obs(200.0, 5.0, false));
        for _ in 0..1_000 {
            c.absorb_decayed(&later, 1_000.0);
        }
        let mean = c.latency.mean().unwrap();
        assert!(mean > 160.0 && mean < 170.0, "{mean}");
        assert!((c.latency.n - 1_000.0).abs() < 10.0);
    }
}
