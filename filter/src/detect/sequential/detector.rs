//! The sequential detector (`breach.detector: "sequential"`, the default): each VM tallies
//! gray replies per unit and stable replies as the control, adds them on its tick to the
//! shared evidence record with one compare-and-swap, and evaluates the plan's anytime-valid
//! tests on every closed unit's evidence as written.

use grayguard_contract::Trigger;

use crate::breaker::{Board, Phase};
use crate::config::{Breach, Config, Control};
use crate::decision::{Routed, Why};
use crate::detect::detector::{Detail, Detector, Fired, Store, Tick};
use crate::detect::probe;
use crate::detect::sequential::evidence::{Tally, UnitEvidence};
use crate::detect::sequential::plan::{self, Finding, Plan};
use crate::detect::window::windows::Layout;
use crate::detect::workers::Workers;
use crate::metrics::Gauge;
use crate::signals::Observation;

/// The sequential detector of one VM.
#[derive(Debug)]
pub struct Sequential {
    breach: Breach,
    plan: Plan,
    /// Per unit: gray observations not yet in the shared record, and the breaker
    /// generation they were seen under (older ones are dropped at the flush).
    gray: Vec<(u32, Tally)>,
    /// Control observations not yet in the record: one per unit (`control: cohort`) or a
    /// single one for every unit (`control: all`).
    control: Vec<Tally>,
    /// Per unit: the findings of the last evaluation this VM made.
    findings: Vec<Vec<Finding>>,
    /// Failure streaks only: no windows.
    workers: Workers,
}

impl Sequential {
    pub fn new(cfg: &Config) -> Sequential {
        let units = cfg.units();
        let plan = Plan::for_breach(&cfg.breach);
        // Without a statistical trigger there is nothing to test: no tallies, no record.
        let tested = !plan.tests.is_empty();
        let controls = match plan.control {
            Control::All => 1,
            Control::Cohort => units,
        };
        let (units, controls) = if tested { (units, controls) } else { (0, 0) };
        Sequential {
            breach: cfg.breach.clone(),
            gray: vec![(0, Tally::default()); units],
            control: vec![Tally::default(); controls],
            findings: vec![Vec::new(); units],
            plan,
            workers: Workers::new(cfg, Layout::new(0, 0)),
        }
    }

    /// No statistical trigger is configured (only the flag and consecutive failures).
    fn idle(&self) -> bool {
        self.plan.tests.is_empty()
    }

    fn has_data(&self) -> bool {
        self.gray.iter().any(|(_, t)| !t.is_empty()) || self.control.iter().any(|t| !t.is_empty())
    }

    /// Adds this VM's observations to the shared evidence record (one compare-and-swap),
    /// then evaluates the closed units on the record as written. Returns the units whose
    /// tests crossed, with the trigger.
    fn flush(&mut self, t: &Tick<'_>) -> Vec<Fired> {
        if !self.has_data() {
            return Vec::new();
        }
        let closed: Vec<Option<u32>> = t
            .board
            .0
            .iter()
            .map(|b| (b.phase(t.now_ns) == Phase::Closed).then_some(b.generation))
            .collect();
        let segment = self.plan.segment_responses;
        let (gray, control, control_kind) = (&self.gray, &self.control, self.plan.control);
        let written = t.store.update_evidence(&mut |rec| {
            let mut next = rec.clone();
            for (unit, generation) in closed.iter().enumerate() {
                let Some(generation) = *generation else {
                    continue;
                };
                let empty = Tally::default();
                let g = gray
                    .get(unit)
                    .filter(|(seen, _)| *seen == generation)
                    .map_or(&empty, |(_, t)| t);
                let c = match control_kind {
                    Control::All => control.first(),
                    Control::Cohort => control.get(unit),
                }
                .unwrap_or(&empty);
                if g.is_empty() && c.is_empty() {
                    continue;
                }
                next.unit_for(unit, generation)?.add(g, c, segment);
            }
            Some(next)
        });
        // On failure (contention, a host error) the observations wait for the next tick.
        let Some(record) = written else {
            return Vec::new();
        };
        for (_, t) in &mut self.gray {
            *t = Tally::default();
        }
        for t in &mut self.control {
            *t = Tally::default();
        }
        let mut fire = Vec::new();
        for (unit, generation) in closed.iter().enumerate() {
            let (Some(generation), Some(u)) = (generation, record.0.get(unit)) else {
                continue;
            };
            if u.generation != *generation {
                continue;
            }
            let findings = plan::evaluate(&self.plan, &self.breach, u);
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

    /// Tallies have no time: a request is stamped with the VM's last reading. (Without a
    /// statistical trigger every request reads the clock, as it always has.)
    fn needs_clock(&self) -> bool {
        self.idle()
    }

    fn observe_gray(&mut self, unit: usize, r: &Routed, obs: &Observation) {
        self.workers.observe_gray(unit, r.at_ns, obs);
        if let (Why::Matched | Why::Alert(_), Some((generation, tally))) =
            (r.decision.why, self.gray.get_mut(unit))
        {
            if *generation != r.generation {
                *generation = r.generation;
                *tally = Tally::default();
            }
            tally.observe(obs);
        }
    }

    fn observe_stable(&mut self, unit: Option<usize>, r: &Routed, obs: &Observation) {
        let slot = match self.plan.control {
            Control::All => Some(0),
            Control::Cohort => unit.filter(|_| r.decision.why == Why::Percent),
        };
        if let Some(t) = slot.and_then(|i| self.control.get_mut(i)) {
            t.observe(obs);
        }
    }

    fn tick(&mut self, t: &mut Tick<'_>) -> Vec<Fired> {
        self.workers.tick(t);
        let mut fire = self.workers.fire(t.board, t.now_ns, |_, _| None);
        fire.extend(self.flush(t));
        fire
    }

    /// Against the control of the epoch that tripped (mean ± 3 sd, widened by the margin),
    /// so one ordinary answer of a healthy version passes.
    fn judge_probe(
        &self,
        store: &dyn Store,
        unit: usize,
        obs: &Observation,
    ) -> Result<(), Trigger> {
        let control = if self.idle() {
            None
        } else {
            store
                .evidence()
                .and_then(|r| r.0.get(unit).map(|u| u.epoch.control))
        };
        probe::judge_probe_against(&self.breach, obs, control.as_ref())
    }

    /// `grayguard_evidence_pct` per unit and trigger. Envoy's gauges are shared by every
    /// VM, so each VM publishes the evidence of the shared record (not its own last
    /// evaluation, which goes stale on a VM that saw no traffic or whose breaker opened
    /// elsewhere): the last writer cannot disagree.
    fn gauges(
        &self,
        store: &dyn Store,
        board: &Board,
        phases: &[Phase],
        out: &mut Vec<(Gauge, u64)>,
    ) {
        if self.idle() {
            return;
        }
        let record = store.evidence().map(|r| r.0);
        // A closed breaker shows its current epoch; an open one the epoch that it ended.
        let current = |u: usize, e: &UnitEvidence| {
            phases.get(u).is_some_and(|p| *p != Phase::Closed)
                || board.0.get(u).is_some_and(|b| b.generation == e.generation)
        };
        for (u, own) in self.findings.iter().enumerate() {
            let shared = record.as_ref().map(|r| {
                r.get(u)
                    .filter(|e| current(u, e))
                    .map(|e| plan::evaluate(&self.plan, &self.breach, e))
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
        store.evidence()?.0.get(unit).copied()
    }
}
