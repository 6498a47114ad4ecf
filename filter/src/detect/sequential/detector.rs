//! The sequential detector (`breach.detector: "sequential"`, the default): each VM bets on
//! its gray replies per unit against the control reference it last read, tallies stable
//! replies as the control, adds both to the shared evidence record on its tick with one
//! compare-and-swap, and evaluates every closed unit's change detectors (and promotion
//! verdict) on the record as written.

use grayguard_contract::Trigger;

use crate::breaker::{Board, Phase};
use crate::config::{Breach, Config, Control, Promote};
use crate::decision::{Routed, Why};
use crate::detect::detector::{Detail, Detector, Fired, Standing, Store, Tick};
use crate::detect::probe;
use crate::detect::sequential::evidence::{Batch, Bets, Record, Tally, UnitEvidence};
use crate::detect::sequential::plan::{self, Finding, Plan};
use crate::detect::sequential::promotion::{Bounds, Caps, Local, Promotion, Stakes};
use crate::detect::window::windows::Layout;
use crate::detect::workers::Workers;
use crate::metrics::Gauge;
use crate::signals::Observation;
use grayguard_contract::promotion::{Bound, Verdict};

/// The sequential detector of one VM.
#[derive(Debug)]
pub struct Sequential {
    breach: Breach,
    plan: Plan,
    units: usize,
    /// Per unit: the promotion hypothesis, if the unit has one.
    promotes: Vec<Option<Promote>>,
    /// Per unit: gray replies not yet in the shared record (bet on, and their promotion
    /// sums), and the breaker generation they were seen under (older ones are dropped at
    /// the flush).
    gray: Vec<(u32, Batch)>,
    /// Per control slot: control replies not yet in the record.
    control: Vec<Tally>,
    /// Per unit: control replies' promotion sums not yet in the record.
    control_promotion: Vec<Local>,
    /// Per unit: each test's reference and the promotion's stakes as of this VM's last read
    /// of the record; replies are bet on against these.
    references: Vec<Vec<Option<f64>>>,
    stakes: Vec<Stakes>,
    /// Per unit: the findings of the last evaluation this VM made.
    findings: Vec<Vec<Finding>>,
    /// Failure streaks only: no windows.
    workers: Workers,
}

impl Sequential {
    pub fn new(cfg: &Config) -> Sequential {
        let plan = Plan::for_breach(&cfg.breach);
        let promotes: Vec<Option<Promote>> = (0..cfg.units())
            .map(|u| cfg.promote_of(u).copied())
            .collect();
        // Without a statistical trigger or a hypothesis there is nothing to weigh: no
        // tallies, no record.
        let units = if plan.tests.is_empty() && promotes.iter().all(Option::is_none) {
            0
        } else {
            cfg.units()
        };
        let tests = plan.tests.len();
        let batch = Batch {
            bets: Bets::new(tests),
            promotion: Local::default(),
        };
        Sequential {
            breach: cfg.breach.clone(),
            units,
            gray: vec![(0, batch); units],
            control: vec![
                Tally::default();
                if units == 0 {
                    0
                } else {
                    plan.control_slots(units)
                }
            ],
            control_promotion: vec![Local::default(); units],
            references: vec![vec![None; tests]; units],
            stakes: vec![Stakes::default(); units],
            findings: vec![Vec::new(); units],
            promotes,
            plan,
            workers: Workers::new(cfg, Layout::new(0, 0)),
        }
    }

    /// Nothing to weigh (only the flag and consecutive failures).
    fn idle(&self) -> bool {
        self.units == 0
    }

    fn has_data(&self) -> bool {
        self.gray
            .iter()
            .any(|(_, b)| !b.bets.is_empty() || !b.promotion.is_empty())
            || self.control.iter().any(|t| !t.is_empty())
    }

    /// The record as stored, if it has this configuration's shape.
    fn record(&self, store: &dyn Store) -> Option<Record> {
        let slots = self.plan.control_slots(self.units);
        store
            .evidence()
            .filter(|r| r.fits(self.units, self.plan.tests.len(), slots))
    }

    fn fresh(&self) -> Record {
        Record::new(
            self.units,
            self.plan.tests.len(),
            self.plan.control_slots(self.units),
        )
    }

    /// Takes the references and stakes of the next replies from a record just read or
    /// written.
    fn refresh(&mut self, record: &Record) {
        for unit in 0..self.units {
            if let (Some(c), Some(refs)) = (
                record.controls.get(self.plan.slot_of(unit)),
                self.references.get_mut(unit),
            ) {
                *refs = self.plan.references(c);
            }
            if let (Some(u), Some(s)) = (record.units.get(unit), self.stakes.get_mut(unit)) {
                *s = u.promotion.stakes();
            }
        }
    }

    /// The running control `unit` is judged against.
    fn control_of<'r>(&self, record: &'r Record, unit: usize) -> Option<&'r Tally> {
        record.controls.get(self.plan.slot_of(unit))
    }

    /// Adds this VM's replies to the shared evidence record (one compare-and-swap), then
    /// evaluates the closed units on the record as written. Returns the units whose tests
    /// crossed, with the trigger; the verdicts this write reached go to `t.reached`.
    fn flush(&mut self, t: &mut Tick<'_>) -> Vec<Fired> {
        if !self.has_data() {
            // Nothing to add: still take the references every other worker has built.
            if let Some(record) = self.record(t.store) {
                self.refresh(&record);
            }
            return Vec::new();
        }
        let closed: Vec<Option<u32>> = t
            .board
            .0
            .iter()
            .map(|b| (b.phase(t.now_ns) == Phase::Closed).then_some(b.generation))
            .collect();
        let now_ms = (t.now_ns / 1_000_000) as f64;
        let mut outcome = (Vec::new(), Vec::new());
        let written = {
            let me = &*self;
            t.store.update_evidence(&mut |stored| {
                let rec = stored
                    .filter(|r| r.fits(me.units, me.plan.tests.len(), me.control.len()))
                    .cloned()
                    .unwrap_or_else(|| me.fresh());
                let (next, used, reached) = me.add_to(&rec, &closed, now_ms)?;
                outcome = (used, reached);
                Some(next)
            })
        };
        // On failure (contention, a host error) the replies wait for the next tick.
        let Some(record) = written else {
            return Vec::new();
        };
        let (used, reached) = outcome;
        for ((_, b), refs) in self.gray.iter_mut().zip(&used) {
            b.bets.flushed(refs);
            b.promotion = Local::default();
        }
        for t in &mut self.control {
            *t = Tally::default();
        }
        for l in &mut self.control_promotion {
            *l = Local::default();
        }
        self.refresh(&record);
        t.reached.extend(reached);
        let mut fire = Vec::new();
        for (unit, generation) in closed.iter().enumerate() {
            let (Some(generation), Some(u)) = (generation, record.units.get(unit)) else {
                continue;
            };
            if u.generation != *generation {
                continue;
            }
            let control = self.control_of(&record, unit).copied().unwrap_or_default();
            let findings = plan::evaluate(&self.plan, u, &control);
            if let Some(f) = plan::verdict(&findings) {
                fire.push(Fired {
                    unit,
                    trigger: f.hypothesis.trigger(),
                    statistical: true,
                });
            }
            if let Some(slot) = self.findings.get_mut(unit) {
                *slot = findings;
            }
        }
        fire
    }

    /// The record with this VM's batch added: the next record, every unit's references
    /// the waiting values were bet on against, and the verdicts the addition reached.
    #[allow(clippy::type_complexity)]
    fn add_to(
        &self,
        rec: &Record,
        closed: &[Option<u32>],
        now_ms: f64,
    ) -> Option<(Record, Vec<Vec<Option<f64>>>, Vec<Standing>)> {
        let mut next = rec.clone();
        let used: Vec<Vec<Option<f64>>> = (0..self.units)
            .map(|u| {
                self.control_of(rec, u)
                    .map(|c| self.plan.references(c))
                    .unwrap_or_default()
            })
            .collect();
        let mut reached = Vec::new();
        for (unit, generation) in closed.iter().enumerate() {
            let Some(generation) = *generation else {
                continue;
            };
            let (seen, batch) = self.gray.get(unit)?;
            let mine = *seen == generation;
            let control = self
                .control
                .get(self.plan.slot_of(unit))
                .copied()
                .unwrap_or_default();
            let promo_control = self
                .control_promotion
                .get(unit)
                .copied()
                .unwrap_or_default();
            let empty = mine && batch.bets.is_empty() && batch.promotion.is_empty();
            if (!mine || empty) && control.is_empty() {
                continue;
            }
            let running = self.control_of(rec, unit).copied().unwrap_or_default();
            let u = next.unit_for(unit, generation)?;
            if mine {
                let stakes = batch.bets.settle(&self.plan, used.get(unit)?);
                u.add(&batch.bets.tally, &stakes, &control, now_ms);
            } else {
                u.add(&Tally::default(), &[], &control, now_ms);
            }
            if let Some(p) = self.promotes.get(unit).copied().flatten() {
                if mine {
                    u.promotion.add(&batch.promotion, now_ms);
                }
                u.promotion.add(&promo_control, now_ms);
                if !u.promotion.caps.is_fixed()
                    && let Some(caps) = Caps::fix(&p, &running.latency, &running.boxes)
                {
                    u.promotion.caps = caps;
                }
                let before = u.promotion.verdict;
                let bounds = u.promotion.judge(&p, now_ms);
                if before == Verdict::Pending && u.promotion.verdict != Verdict::Pending {
                    reached.push(standing(unit, &u.promotion, bounds));
                }
            }
        }
        for (slot, c) in self.control.iter().enumerate() {
            if let Some(r) = next.controls.get_mut(slot) {
                r.absorb_decayed(c, self.plan.memory);
            }
        }
        Some((next, used, reached))
    }

    /// A unit's promotion as it stands at `board` (an open breaker starts a new epoch:
    /// pending).
    fn promotion_of(
        &self,
        record: Option<&Record>,
        board: &Board,
        now_ns: u64,
        unit: usize,
    ) -> Option<Standing> {
        let p = self.promotes.get(unit).copied().flatten()?;
        let b = board.0.get(unit)?;
        let current = record
            .and_then(|r| r.units.get(unit))
            .filter(|u| b.phase(now_ns) == Phase::Closed && u.generation == b.generation);
        Some(match current {
            Some(u) => {
                let mut promotion = u.promotion;
                let bounds = promotion.judge(&p, promotion.verdict_ms);
                standing(unit, &promotion, bounds)
            }
            None => {
                let mut fresh = Promotion::default();
                let bounds = fresh.judge(&p, 0.0);
                standing(unit, &fresh, bounds)
            }
        })
    }
}

fn standing(unit: usize, p: &Promotion, bounds: Vec<Bounds>) -> Standing {
    Standing {
        unit,
        verdict: p.verdict,
        bounds,
        gray_n: p.gray_n(),
        started_ms: p.started_ms,
        verdict_ms: p.verdict_ms,
        verdict_gray_n: p.verdict_gray_n,
    }
}

impl Detector for Sequential {
    /// Stable replies are the control: all of them, or those of the rule's own requests
    /// outside its share (`control: cohort`).
    fn reads_stable(&self, r: &Routed) -> bool {
        !self.idle()
            && match self.plan.control {
                Control::All => true,
                Control::Cohort => r.decision.why == Why::Percent,
            }
    }

    /// Tallies have no time: a request is stamped with the VM's last reading. (Without
    /// anything to weigh every request reads the clock, as it always has.)
    fn needs_clock(&self) -> bool {
        self.idle()
    }

    fn observe_gray(&mut self, unit: usize, r: &Routed, obs: &Observation) {
        self.workers.observe_gray(unit, r.at_ns, obs);
        if !matches!(r.decision.why, Why::Matched | Why::Alert(_)) {
            return;
        }
        let (Some((generation, batch)), Some(refs)) =
            (self.gray.get_mut(unit), self.references.get(unit))
        else {
            return;
        };
        if *generation != r.generation {
            *generation = r.generation;
            batch.bets.clear();
            batch.promotion = Local::default();
        }
        batch.bets.observe(&self.plan, refs, obs);
        if let (Some(Some(p)), Some(s)) = (self.promotes.get(unit), self.stakes.get(unit)) {
            batch.promotion.observe_gray(s, p.alpha, obs);
        }
    }

    fn observe_stable(&mut self, unit: Option<usize>, r: &Routed, obs: &Observation) {
        let slot = match self.plan.control {
            Control::All => Some(0),
            Control::Cohort => unit.filter(|_| r.decision.why == Why::Percent),
        };
        let Some(slot) = slot else {
            return;
        };
        if let Some(t) = self.control.get_mut(slot) {
            t.observe(obs);
        }
        // Each unit judged against this control weighs it in its promotion.
        for u in 0..self.units {
            if self.plan.slot_of(u) != slot {
                continue;
            }
            if let (Some(Some(p)), Some(s), Some(l)) = (
                self.promotes.get(u),
                self.stakes.get(u),
                self.control_promotion.get_mut(u),
            ) {
                l.observe_control(s, p.alpha, obs);
            }
        }
    }

    fn tick(&mut self, t: &mut Tick<'_>) -> Vec<Fired> {
        self.workers.tick(t);
        let mut fire = self.workers.fire(t.board, t.now_ns, |_, _| None);
        fire.extend(self.flush(t));
        fire
    }

    /// Against the running control (its mean ± 3 sd, widened by the margin), so one
    /// ordinary answer of a healthy version passes.
    fn judge_probe(
        &self,
        store: &dyn Store,
        unit: usize,
        obs: &Observation,
    ) -> Result<(), Trigger> {
        let control = self
            .record(store)
            .and_then(|r| self.control_of(&r, unit).copied());
        probe::judge_probe_against(&self.breach, obs, control.as_ref())
    }

    /// `grayguard_evidence_pct` per unit and trigger, and the promotion's state and
    /// bounds. Envoy's gauges are shared by every VM, so each VM publishes what the shared
    /// record says (not its own last evaluation, which goes stale on a VM that saw no
    /// traffic or whose breaker opened elsewhere): the last writer cannot disagree.
    fn gauges(
        &self,
        store: &dyn Store,
        board: &Board,
        phases: &[Phase],
        now_ns: u64,
        out: &mut Vec<(Gauge, u64)>,
    ) {
        if self.idle() {
            return;
        }
        let record = self.record(store);
        // A closed breaker shows its current epoch; an open one the epoch that it ended.
        let current = |u: usize, e: &UnitEvidence| {
            phases.get(u).is_some_and(|p| *p != Phase::Closed)
                || board.0.get(u).is_some_and(|b| b.generation == e.generation)
        };
        for (u, own) in self.findings.iter().enumerate() {
            let shared = record.as_ref().map(|r| {
                let control = self.control_of(r, u).copied().unwrap_or_default();
                r.units
                    .get(u)
                    .filter(|e| current(u, e))
                    .map(|e| plan::evaluate(&self.plan, e, &control))
                    .unwrap_or_default()
            });
            let findings = shared.as_deref().unwrap_or(own);
            for t in self.plan.tests.iter().map(|t| t.hypothesis.trigger()) {
                let pct = findings
                    .iter()
                    .filter(|f| f.hypothesis.trigger() == t)
                    .map(Finding::percent)
                    .fold(0.0, f64::max);
                out.push((Gauge::Evidence(u, t), pct.round() as u64));
            }
            if let Some(s) = self.promotion_of(record.as_ref(), board, now_ns, u) {
                out.push((Gauge::PromotionState(u), s.verdict.gauge()));
                for b in &s.bounds {
                    let (upper, lower) = b.percent();
                    let pct = |x: f64| {
                        if x.is_finite() {
                            x.round() as u64
                        } else {
                            u64::MAX >> 12
                        }
                    };
                    out.push((Gauge::PromotionBound(u, b.effect, Bound::Upper), pct(upper)));
                    out.push((Gauge::PromotionBound(u, b.effect, Bound::Lower), pct(lower)));
                }
            }
        }
    }

    /// The trigger's tests as this VM last evaluated them.
    fn detail(&self, unit: usize, trigger: Trigger) -> Detail {
        Detail::Sequential {
            findings: self
                .findings(unit)
                .iter()
                .filter(|f| f.hypothesis.trigger() == trigger)
                .copied()
                .collect(),
        }
    }

    fn consecutive(&self, unit: usize, since_ns: u64) -> u32 {
        self.workers.consecutive(unit, since_ns)
    }

    fn findings(&self, unit: usize) -> &[Finding] {
        self.findings.get(unit).map_or(&[], Vec::as_slice)
    }

    fn evidence(&self, store: &dyn Store, unit: usize) -> Option<UnitEvidence> {
        self.record(store)?.units.get(unit).cloned()
    }

    fn promotions(&self, store: &dyn Store, board: &Board, now_ns: u64) -> Vec<Standing> {
        let record = self.record(store);
        (0..self.units)
            .filter_map(|u| self.promotion_of(record.as_ref(), board, now_ns, u))
            .collect()
    }
}
