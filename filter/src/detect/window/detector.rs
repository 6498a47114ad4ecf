//! The window detector (`breach.detector: "window"`): gray replies in sliding windows,
//! merged over the workers on every tick and held against fixed thresholds and the
//! box-count baseline learned from stable.

use grayguard_contract::Trigger;

use crate::breaker::{Board, Phase};
use crate::config::{Breach, Config};
use crate::decision::Routed;
use crate::detect::detector::{Detail, Detector, Fired, Store, Tick};
use crate::detect::probe;
use crate::detect::window::breach::{self, Baseline};
use crate::detect::window::windows::Layout;
use crate::detect::workers::Workers;
use crate::metrics::Gauge;
use crate::signals::Observation;

/// The window detector of one VM.
#[derive(Debug)]
pub struct Window {
    breach: Breach,
    layout: Layout,
    /// The box-count baseline of the last tick.
    baseline: Option<Baseline>,
    workers: Workers,
}

impl Window {
    pub fn new(cfg: &Config) -> Window {
        let layout = Layout::for_config(cfg);
        Window {
            breach: cfg.breach.clone(),
            layout,
            baseline: None,
            workers: Workers::new(cfg, layout),
        }
    }
}

impl Detector for Window {
    /// Stable replies feed the learned box-count baseline.
    fn reads_stable(&self, _r: &Routed) -> bool {
        self.breach.box_count.is_some() && self.layout.slots > 0
    }

    /// Replies are filed into time buckets.
    fn needs_clock(&self) -> bool {
        true
    }

    fn observe_gray(&mut self, unit: usize, r: &Routed, obs: &Observation) {
        self.workers.observe_gray(unit, r.at_ns, obs);
    }

    fn observe_stable(&mut self, _unit: Option<usize>, r: &Routed, obs: &Observation) {
        self.workers.observe_stable(r.at_ns, obs);
    }

    fn tick(&mut self, t: &mut Tick<'_>) -> Vec<Fired> {
        self.workers.tick(t);
        if let (Some(m), Some(box_count)) = (self.workers.merged(), &self.breach.box_count) {
            self.baseline = Baseline::next(box_count, &m.stable, self.baseline);
        }
        // Consecutive failures are the workers' (below, `evaluate` is told of none).
        let (b, baseline) = (&self.breach, self.baseline);
        self.workers.fire(t.board, t.now_ns, |unit, m| {
            m.gray
                .get(unit)
                .and_then(|gray| breach::evaluate(b, gray, baseline, 0))
        })
    }

    fn judge_probe(
        &self,
        _store: &dyn Store,
        _unit: usize,
        obs: &Observation,
    ) -> Result<(), Trigger> {
        probe::judge_probe(&self.breach, obs, self.baseline)
    }

    /// The window detector has no gauges of its own.
    fn gauges(&self, _: &dyn Store, _: &Board, _: &[Phase], _: u64, _: &mut Vec<(Gauge, u64)>) {}

    fn detail(&self, unit: usize, _trigger: Trigger) -> Detail {
        Detail::Window {
            window: self
                .workers
                .merged()
                .and_then(|m| m.gray.get(unit).copied()),
            baseline: self.baseline,
        }
    }

    fn consecutive(&self, unit: usize, since_ns: u64) -> u32 {
        self.workers.consecutive(unit, since_ns)
    }
}
