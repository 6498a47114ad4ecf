//! The tick, every `sync_ms`: the detector's tick (what every worker saw, merged and
//! evaluated), each trigger that fires acted on (shed, or in confirm mode an alert), the
//! holds checked with the gray workload when due, the gauges set from the shared board and
//! evidence, the latch calls sent and the counters handed over.

use std::collections::HashMap;

use grayguard_contract::operator::Purpose;

use crate::breaker::Phase;
use crate::config::{Action, Scope};
use crate::detect::Tick;
use crate::engine::Engine;
use crate::host::Host;
use crate::metrics::{Gauge, fallbacks_name, gauge_name};
use crate::shared::HostStore;

impl Engine {
    /// The tick: the detector publishes and merges this VM's observations and evaluates
    /// every closed unit; what fires trips (or alerts), then the hold check, the gauges,
    /// the latch calls and the counters.
    pub fn tick(&mut self, host: &impl Host) {
        let now = host.now_ns();
        self.last_now_ns = self.last_now_ns.max(now);
        let board = self
            .board
            .refresh(host, &self.keys.board, self.units)
            .clone();
        let store = HostStore::new(host, &self.keys, self.units);
        let mut tick = Tick {
            store: &store,
            now_ns: now,
            board: &board,
            draw: &mut self.draw,
            reached: Vec::new(),
        };
        let fire = self.detector.tick(&mut tick);
        for s in std::mem::take(&mut tick.reached) {
            self.log_verdict(host, &s);
        }
        for f in fire {
            if f.statistical && self.action_of(f.unit) == Action::Confirm {
                self.raise_alert(host, f.unit, f.trigger);
            } else {
                self.trip(host, f.unit, f.trigger, None);
            }
        }
        self.check_holds(host);
        self.set_gauges(host, now);
        self.send_latches(host);
        for (c, n) in self.pending.drain() {
            host.add_counter(c, n);
        }
        for (u, n) in self.fallbacks.iter_mut().enumerate() {
            if *n > 0 {
                let name = self.unit_names.get(u).map_or("?", String::as_str);
                host.add_named_counter(&fallbacks_name(name), std::mem::take(n));
            }
        }
    }

    /// What a statistical trigger does for `unit`: its rule's action (`scope: rule`) or
    /// `breach.action` (`scope: all`).
    fn action_of(&self, unit: usize) -> Action {
        match self.cfg.breach.scope {
            Scope::Rule => self
                .cfg
                .rules
                .get(unit)
                .map_or(self.cfg.breach.action, |r| r.action),
            Scope::All => self.cfg.breach.action,
        }
    }

    /// The breaker gauges, the detector's, confirm mode's alert gauges and the holds'; a
    /// host call only for a gauge whose value changed.
    fn set_gauges(&mut self, host: &impl Host, now: u64) {
        let board = self.board.board().clone();
        let phases: Vec<Phase> = board.0.iter().map(|b| b.phase(now)).collect();
        let worst = phases
            .iter()
            .copied()
            .max_by_key(|p| p.severity())
            .unwrap_or(Phase::Closed);
        let open = phases.iter().filter(|p| **p != Phase::Closed).count();
        let mut set = vec![
            (Gauge::BreakerState, worst.gauge()),
            (Gauge::BreakersOpen, open as u64),
        ];
        for (u, p) in phases.iter().enumerate() {
            set.push((Gauge::UnitState(u), p.gauge()));
        }
        self.detector
            .gauges(&self.store(host), &board, &phases, now, &mut set);
        for (u, b) in board.0.iter().enumerate() {
            let operator = self.cfg.operator.is_some();
            let alert = match b.alert {
                Some(t) if operator && !b.tripped => Some(gauge_name(
                    Gauge::Alert(u, t),
                    &self.unit_names,
                    &self
                        .link(Purpose::Alert, u, t, b.alert_since_ns, now)
                        .query(),
                )),
                _ => None,
            };
            let held = match b.hold {
                Some(t) if operator && b.held() => Some(gauge_name(
                    Gauge::Held(u, t),
                    &self.unit_names,
                    &self.link(Purpose::Release, u, t, b.since_ns, now).query(),
                )),
                _ => None,
            };
            if let Some(slot) = self.alert_gauges.get_mut(u) {
                swap_link_gauge(host, &mut self.gauges, slot, alert);
            }
            if let Some(slot) = self.held_gauges.get_mut(u) {
                swap_link_gauge(host, &mut self.gauges, slot, held);
            }
        }
        for (g, v) in set {
            let name = gauge_name(g, &self.unit_names, "");
            if self.gauges.get(&name) != Some(&v) {
                host.set_gauge(&name, v);
                self.gauges.insert(name, v);
            }
        }
    }
}

/// Raises the gauge `name` (whose name carries a link) in `slot` instead of the one there:
/// when an alert or a hold ended, or its link was renewed, the old series goes to 0.
fn swap_link_gauge(
    host: &impl Host,
    gauges: &mut HashMap<String, u64>,
    slot: &mut Option<String>,
    name: Option<String>,
) {
    if *slot == name {
        return;
    }
    if let Some(old) = slot.take() {
        host.set_gauge(&old, 0);
        gauges.insert(old, 0);
    }
    if let Some(new) = &name {
        host.set_gauge(new, 1);
        gauges.insert(new.clone(), 1);
    }
    *slot = name;
}
