//! The breaker transitions — trip, a probe's result, confirm mode's alert — each one
//! compare-and-swap on the shared board, so only the worker that wins it counts, latches
//! and logs it; and the incident record that worker logs (a hold's and a release's too,
//! `crate::engine::hold`).

use grayguard_contract::Trigger;
use grayguard_contract::operator::Purpose;

use crate::breaker::{Board, Breaker, Phase, ProbeOutcome};
use crate::engine::Engine;
use crate::host::{Host, Level};
use crate::incident::{self, Event, Incident};
use crate::metrics::Counter;
use crate::shared;
use crate::signals::Reply;

/// Times of an incident record, ns since the epoch.
#[derive(Debug, Clone, Copy)]
pub(super) struct Stamp {
    pub at_ns: u64,
    /// End of the open phase (start records) or start of shedding (end records).
    pub other_ns: u64,
    /// Start of the period whose failures count as consecutive.
    pub since_ns: u64,
}

impl Engine {
    /// Opens `unit`'s breaker now if it is closed. Only the worker whose compare-and-swap
    /// wins logs and counts it.
    pub fn trip(&mut self, host: &impl Host, unit: usize, trigger: Trigger, reason: Option<&str>) {
        let now = host.now_ns();
        let shed_ms = self.cfg.breach.shed_for_ms;
        let done = shared::update_board(host, &self.keys.board, self.units, |board| {
            let b = board.0.get(unit)?;
            if b.phase(now) != Phase::Closed {
                return None;
            }
            let mut next = board.clone();
            let opened = b.trip(now, trigger, shed_ms);
            *next.0.get_mut(unit)? = opened;
            Some((next, (opened.until_ns, b.since_ns)))
        });
        if let Some((board, (until, closed_since))) = done {
            self.remember(host, board);
            self.pending.count(Counter::Breaches(trigger));
            self.queue_latch(unit, Some(trigger), 0);
            let at = Stamp {
                at_ns: now,
                other_ns: until,
                since_ns: closed_since,
            };
            self.incident(host, Event::ShedStart, unit, trigger, reason, at, false);
        }
    }

    /// Applies a half-open probe's `verdict` (sent under breaker `generation`): counted,
    /// closed after enough healthy ones, or open again.
    pub(super) fn probe_result(
        &mut self,
        host: &impl Host,
        unit: usize,
        generation: u32,
        verdict: Result<(), Trigger>,
        reply: &Reply,
    ) {
        let now = host.now_ns();
        let b = &self.cfg.breach;
        let (needed, shed_ms) = (b.probe_successes, b.shed_for_ms);
        let done = shared::update_board(host, &self.keys.board, self.units, |board| {
            let cur = board.0.get(unit)?;
            let (next_b, outcome) = cur.probe(now, generation, verdict, needed, shed_ms)?;
            let mut next = board.clone();
            *next.0.get_mut(unit)? = next_b;
            Some((
                next,
                (
                    outcome,
                    cur.since_ns,
                    next_b.until_ns,
                    cur.trigger,
                    cur.until_ns,
                ),
            ))
        });
        let Some((board, (outcome, opened_at, until, old_trigger, half_open_at))) = done else {
            return;
        };
        self.remember(host, board);
        match outcome {
            ProbeOutcome::Counted => {}
            ProbeOutcome::Closed => {
                let t = old_trigger.unwrap_or(Trigger::Flag);
                // Every probe since the half-open phase began was healthy: latches older
                // than that are stale, fresher ones are another gateway's news and stay.
                let healthy_for_ms = now.saturating_sub(half_open_at) / 1_000_000;
                self.queue_latch(unit, None, healthy_for_ms);
                let at = Stamp {
                    at_ns: now,
                    other_ns: opened_at,
                    since_ns: now,
                };
                self.incident(host, Event::ShedEnd, unit, t, None, at, false);
                // A new epoch: the pods heard from start afresh.
                if let Some(pods) = self.pods.get_mut(unit) {
                    pods.clear();
                }
            }
            ProbeOutcome::Reopened(t) => {
                self.pending.count(Counter::Breaches(t));
                self.queue_latch(unit, Some(t), 0);
                let reason = (t == Trigger::Flag)
                    .then_some(reply.flag_reason.as_deref())
                    .flatten();
                let at = Stamp {
                    at_ns: now,
                    other_ns: until,
                    since_ns: now,
                };
                self.incident(host, Event::ShedStart, unit, t, reason, at, true);
            }
        }
    }

    /// Confirm mode: raises `unit`'s alert instead of shedding (one compare-and-swap; the
    /// winner logs it).
    pub(super) fn raise_alert(&mut self, host: &impl Host, unit: usize, trigger: Trigger) {
        let now = host.now_ns();
        let done = shared::update_board(host, &self.keys.board, self.units, |board| {
            let b = board.0.get(unit)?;
            let raised = b.raise_alert(now, trigger)?;
            let mut next = board.clone();
            *next.0.get_mut(unit)? = raised;
            Some((next, b.since_ns))
        });
        if let Some((board, closed_since)) = done {
            self.remember(host, board);
            self.pending.count(Counter::Alerts);
            let link = self.link(Purpose::Alert, unit, trigger, now, now).query();
            let at = Stamp {
                at_ns: now,
                other_ns: now,
                since_ns: closed_since,
            };
            let op = incident::Operator {
                link: Some(&link),
                ..Default::default()
            };
            self.incident_by(host, Event::AlertStart, unit, trigger, None, at, false, op);
        }
    }

    /// Keeps a board this VM just wrote and moves the change mark for every worker.
    pub(super) fn remember(&mut self, host: &impl Host, board: Board) {
        self.board.wrote(host, board);
    }

    #[allow(clippy::too_many_arguments)]
    fn incident(
        &self,
        host: &impl Host,
        event: Event,
        unit: usize,
        trigger: Trigger,
        flag_reason: Option<&str>,
        at: Stamp,
        probe: bool,
    ) {
        self.incident_by(
            host,
            event,
            unit,
            trigger,
            flag_reason,
            at,
            probe,
            incident::Operator::default(),
        );
    }

    /// Logs the incident record of a transition this VM made (after writing it: whether
    /// the shed holds is read off the board this VM just wrote).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn incident_by(
        &self,
        host: &impl Host,
        event: Event,
        unit: usize,
        trigger: Trigger,
        flag_reason: Option<&str>,
        at: Stamp,
        probe: bool,
        operator: incident::Operator<'_>,
    ) {
        let line = incident::line(
            &self.cfg,
            &Incident {
                event,
                trigger,
                flag_reason,
                unit,
                at_ns: at.at_ns,
                other_ns: at.other_ns,
                detail: self.detector.detail(unit, trigger),
                consecutive: self.detector.consecutive(unit, at.since_ns),
                probe,
                held: self.board.board().0.get(unit).is_some_and(Breaker::held),
                operator,
                gateway: &self.gateway,
                gray_pods: self.pods.get(unit).map_or(&[], Vec::as_slice),
            },
        );
        host.log(Level::Warn, &line);
    }
}
