//! What the workers share of recent gray replies, for both detectors: each worker keeps
//! its failure streaks (and, for the window detector, its windows), claims a worker id,
//! publishes its snapshot on the tick when it changed, and merges every worker's; the
//! `consecutive_failures` trigger reads the merged streaks.

use grayguard_contract::Trigger;

use crate::breaker::{Board, Phase};
use crate::config::Config;
use crate::detect::detector::{Fired, Tick};
use crate::detect::snapshot::{Local, Merged};
use crate::detect::window::windows::{Layout, Spans};
use crate::signals::Observation;

/// One VM's part in the workers' shared view.
#[derive(Debug)]
pub struct Workers {
    units: usize,
    layout: Layout,
    spans: Spans,
    /// Window rings (window detector) and failure streaks (both detectors).
    local: Local,
    /// `local` changed since it was last published.
    dirty: bool,
    /// Whether `local` is published at all (a windowed trigger or a streak is on).
    publish: bool,
    worker: Option<u32>,
    /// All workers' windows and streaks as of the last tick.
    merged: Option<Merged>,
    consecutive_failures: Option<u32>,
    /// Stable box counts are kept (the window detector's learned baseline).
    stable_boxes: bool,
}

impl Workers {
    /// Windows of `layout` (no slots: streaks only).
    pub fn new(cfg: &Config, layout: Layout) -> Workers {
        let units = cfg.units();
        let b = &cfg.breach;
        Workers {
            units,
            layout,
            spans: Spans::for_config(cfg),
            local: Local::new(layout, units),
            dirty: false,
            publish: layout.slots > 0 || b.consecutive_failures.is_some(),
            worker: None,
            merged: None,
            consecutive_failures: b.consecutive_failures,
            stable_boxes: b.box_count.is_some(),
        }
    }

    /// A gray reply of `unit` to a request stamped `at_ns`: its window bucket and streak.
    pub fn observe_gray(&mut self, unit: usize, at_ns: u64, obs: &Observation) {
        if let Some(ring) = self.local.gray.get_mut(unit)
            && let Some(bucket) = ring.bucket(self.layout, at_ns / 1_000_000)
        {
            bucket.responses += 1;
            bucket.failures += u32::from(obs.failed);
            if let Some(ms) = obs.latency_ms {
                bucket.add_latency(ms);
            }
            if let Some(n) = obs.boxes {
                bucket.add_boxes(n);
            }
            self.dirty = true;
        }
        if let (Some(streak), Some(keep)) =
            (self.local.streaks.get_mut(unit), self.consecutive_failures)
        {
            if obs.failed {
                streak.failure(at_ns, keep as usize);
            } else {
                streak.success(at_ns);
            }
            self.dirty = true;
        }
    }

    /// A stable reply: its box count in the stable window.
    pub fn observe_stable(&mut self, at_ns: u64, obs: &Observation) {
        if self.stable_boxes
            && let Some(n) = obs.boxes
            && let Some(bucket) = self.local.stable.bucket(self.layout, at_ns / 1_000_000)
        {
            bucket.add_boxes(n);
            self.dirty = true;
        }
    }

    /// Publishes this worker's snapshot and merges every worker's (when anything is
    /// published at all).
    pub fn tick(&mut self, t: &mut Tick<'_>) {
        if self.publish {
            let workers = self.publish_local(t);
            self.merge(t, &workers);
        }
    }

    /// Claims a worker id when needed and publishes `local` when it changed; returns the
    /// worker list.
    fn publish_local(&mut self, t: &mut Tick<'_>) -> Vec<u32> {
        let mut workers = t.store.workers();
        // Checked on every tick, not only once: the list's first write cannot be guarded by
        // a CAS, so a VM's entry can be lost, and a VM missing from the list would go
        // unseen by every evaluator for good.
        if !self.worker.is_some_and(|id| workers.contains(&id)) {
            let draw = &mut *t.draw;
            let mut next = || (draw.next_u64() >> 32) as u32;
            if let Some(id) = t.store.claim_worker(self.worker, &mut next) {
                self.worker = Some(id);
                self.dirty = true;
                workers = t.store.workers();
            }
        }
        if let (true, Some(id)) = (self.dirty, self.worker)
            && t.store
                .publish(id, &self.local.snapshot(t.now_ns / 1_000_000))
        {
            self.dirty = false;
        }
        workers
    }

    /// Merges every worker's snapshot; a unit's windows start at its breaker's last close.
    fn merge(&mut self, t: &Tick<'_>, workers: &[u32]) {
        let since_ms: Vec<u64> = t
            .board
            .0
            .iter()
            .map(|b| {
                if b.tripped {
                    u64::MAX
                } else {
                    b.since_ns / 1_000_000
                }
            })
            .collect();
        let mut merged = Merged::new(self.units);
        let now_ms = t.now_ns / 1_000_000;
        for &id in workers {
            // A snapshot that does not decode (another filter build) is skipped.
            if let Some(snap) = t.store.snapshot(id) {
                merged.add(&snap, self.layout, self.spans, now_ms, &since_ms);
            }
        }
        self.merged = Some(merged);
    }

    /// Every worker's windows and streaks as of the last tick.
    pub fn merged(&self) -> Option<&Merged> {
        self.merged.as_ref()
    }

    /// Gray failures in a row of `unit` across workers since `since_ns`.
    pub fn consecutive(&self, unit: usize, since_ns: u64) -> u32 {
        self.merged
            .as_ref()
            .map_or(0, |m| m.consecutive(unit, since_ns))
    }

    /// What fires on each unit closed at `now_ns`, in unit order: its consecutive failures,
    /// else the statistical trigger `judge` finds in the merged view.
    pub fn fire(
        &self,
        board: &Board,
        now_ns: u64,
        mut judge: impl FnMut(usize, &Merged) -> Option<Trigger>,
    ) -> Vec<Fired> {
        let mut fire = Vec::new();
        for (unit, b) in board.0.iter().enumerate() {
            if b.phase(now_ns) != Phase::Closed {
                continue;
            }
            let consecutive = self.consecutive(unit, b.since_ns);
            if self.consecutive_failures.is_some_and(|n| consecutive >= n) {
                fire.push(Fired {
                    unit,
                    trigger: Trigger::ConsecutiveFailures,
                    statistical: false,
                });
                continue;
            }
            if let Some(m) = &self.merged
                && let Some(trigger) = judge(unit, m)
            {
                fire.push(Fired {
                    unit,
                    trigger,
                    statistical: true,
                });
            }
        }
        fire
    }
}
