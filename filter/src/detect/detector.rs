//! What every detector does for the engine, and what it may use: the [`Detector`] trait
//! (which replies it reads, what it makes of a gray or a stable one, its tick, a half-open
//! probe's verdict, its gauges and its part of the incident record), the [`Store`] through
//! which it reaches shared data, and the [`Tick`] it runs in.
//!
//! The engine holds one `Box<dyn Detector>` and never asks which one runs. A new kind of
//! evidence lives behind it (a signal in `crate::signals`, a tally and a hypothesis in the
//! sequential detector); a read-only view of a detector's evidence is one more method here
//! with a default, and one line in the engine that forwards it.

use std::fmt;

use grayguard_contract::Trigger;

use crate::breaker::{Board, Phase};
use crate::decision::Routed;
use grayguard_contract::promotion::Verdict;

use crate::detect::sequential::evidence::{Record, UnitEvidence};
use crate::detect::sequential::plan::Finding;
use crate::detect::sequential::promotion::Bounds;
use crate::detect::snapshot::Snapshot;
use crate::detect::window::breach::Baseline;
use crate::detect::window::windows::Stats;
use crate::metrics::Gauge;
use crate::rules::Draw;
use crate::signals::Observation;

/// Shared data as a detector sees it: the evidence record, the worker list and every
/// worker's snapshot, decoded (`crate::shared::HostStore` implements it on a host).
/// Anything missing, unreadable or written by another format reads as absent.
pub trait Store {
    /// The evidence record as stored (of whatever shape: the detector checks it fits).
    fn evidence(&self) -> Option<Record>;
    /// Applies `change` to the evidence record with compare-and-swap, retrying on
    /// conflicts; `change` gets the stored record (`None`: missing or unreadable) and
    /// returns the next one, or `None` when there is nothing to write. Returns the record
    /// as written, or `None` (nothing to write, too much contention, a host error).
    fn update_evidence(
        &self,
        change: &mut dyn FnMut(Option<&Record>) -> Option<Record>,
    ) -> Option<Record>;
    /// The ids of the workers that publish snapshots.
    fn workers(&self) -> Vec<u32>;
    /// Claims a worker id (`wanted` when still free, else one of `draw`'s) and lists it.
    fn claim_worker(&self, wanted: Option<u32>, draw: &mut dyn FnMut() -> u32) -> Option<u32>;
    /// Writes this worker's snapshot; false when the host refused.
    fn publish(&self, worker: u32, snapshot: &Snapshot) -> bool;
    /// A worker's snapshot (of as many units as this configuration has).
    fn snapshot(&self, worker: u32) -> Option<Snapshot>;
}

/// One tick of a detector.
pub struct Tick<'a> {
    pub store: &'a dyn Store,
    /// Now, ns since the epoch.
    pub now_ns: u64,
    /// The breaker board as read at the start of the tick.
    pub board: &'a Board,
    /// The VM's generator, for a worker id.
    pub draw: &'a mut Draw,
    /// Promotion verdicts this VM's write reached during the tick (the engine logs them).
    pub reached: Vec<Standing>,
}

/// Where a unit's promotion verdict stands: its state, each stated effect's interval
/// against its budget, the gray replies weighed, and when the epoch's evidence began and
/// the verdict came (ms since the epoch; 0: not yet).
#[derive(Debug, Clone, PartialEq)]
pub struct Standing {
    pub unit: usize,
    pub verdict: Verdict,
    pub bounds: Vec<Bounds>,
    pub gray_n: f64,
    pub started_ms: f64,
    pub verdict_ms: f64,
    pub verdict_gray_n: f64,
}

/// A trigger that fired on a unit at a tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fired {
    pub unit: usize,
    pub trigger: Trigger,
    /// A statistical finding (latency, box count, error rate, …): in confirm mode it asks
    /// a person. Outright failure (`consecutive_failures`) always sheds.
    pub statistical: bool,
}

/// A detector's view of a unit for the incident record.
#[derive(Debug, Clone)]
pub enum Detail {
    /// The window detector: the unit's merged window (`None` if not known to this worker)
    /// and the box-count baseline.
    Window {
        window: Option<Stats>,
        baseline: Option<Baseline>,
    },
    /// The sequential detector: the trigger's tests as last evaluated.
    Sequential { findings: Vec<Finding> },
}

/// A detector: gray replies against a reference, and the consecutive failures of both.
pub trait Detector: fmt::Debug {
    /// Whether the reply to a request routed to stable is read (gray ones always are): the
    /// control, or the learned baseline.
    fn reads_stable(&self, r: &Routed) -> bool;
    /// Whether every request must carry the clock's time (replies filed by time); otherwise
    /// a request is stamped with the VM's last reading.
    fn needs_clock(&self) -> bool;
    /// Books a gray reply of `unit`.
    fn observe_gray(&mut self, unit: usize, r: &Routed, obs: &Observation);
    /// Books a stable reply; `unit` is its matched rule's, if any.
    fn observe_stable(&mut self, unit: Option<usize>, r: &Routed, obs: &Observation);
    /// The tick: publishes and merges what the workers saw, evaluates every closed unit,
    /// and returns the triggers that fire, in the order to act on them.
    fn tick(&mut self, t: &mut Tick<'_>) -> Vec<Fired>;
    /// The verdict on one half-open probe of `unit`.
    fn judge_probe(&self, store: &dyn Store, unit: usize, obs: &Observation)
    -> Result<(), Trigger>;
    /// Adds the detector's gauges for the tick (`phases`: every unit's at `board`, now).
    fn gauges(
        &self,
        store: &dyn Store,
        board: &Board,
        phases: &[Phase],
        now_ns: u64,
        out: &mut Vec<(Gauge, u64)>,
    );
    /// What the incident record says of `unit` when `trigger` acts on it.
    fn detail(&self, unit: usize, trigger: Trigger) -> Detail;
    /// Gray failures in a row of `unit` across workers since `since_ns`, as of the last
    /// tick.
    fn consecutive(&self, unit: usize, since_ns: u64) -> u32;
    /// The sequential tests of `unit` as this VM last evaluated them.
    fn findings(&self, _unit: usize) -> &[Finding] {
        &[]
    }
    /// The shared evidence of `unit`, as stored now.
    fn evidence(&self, _store: &dyn Store, _unit: usize) -> Option<UnitEvidence> {
        None
    }
    /// Every unit's promotion verdict as it stands at `board` (units without a hypothesis
    /// are left out).
    fn promotions(&self, _store: &dyn Store, _board: &Board, _now_ns: u64) -> Vec<Standing> {
        Vec::new()
    }
}
