//! The shed state machine of one unit (a rule, or every rule with `scope: all`):
//! closed → open (for `shed_for_s`) → half-open (probes) → closed, or open again; and a
//! person's hold: open, whatever the clock says, until a person releases it → half-open at
//! once.
//!
//! Open → half-open needs no write: it is read off the clock (`now ≥ until`). Every other
//! transition is a new [`Breaker`] value that the engine writes with a compare-and-swap.

use grayguard_contract::Trigger;

/// Where a breaker stands at a given instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Closed,
    Open,
    HalfOpen,
}

impl Phase {
    /// The value of the `grayguard_breaker_state` gauge.
    pub fn gauge(self) -> u64 {
        match self {
            Phase::Closed => 0,
            Phase::Open => 1,
            Phase::HalfOpen => 2,
        }
    }

    /// Badness order for "the worst over rules": open > half-open > closed.
    pub fn severity(self) -> u8 {
        match self {
            Phase::Closed => 0,
            Phase::HalfOpen => 1,
            Phase::Open => 2,
        }
    }
}

/// One unit's breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Breaker {
    /// Shedding (open or half-open).
    pub tripped: bool,
    /// What tripped it (kept after closing, for the end-of-incident record).
    pub trigger: Option<Trigger>,
    /// When it last tripped (tripped) or closed (not tripped), ns since the epoch.
    pub since_ns: u64,
    /// End of the open phase, ns; probing starts then.
    pub until_ns: u64,
    /// Healthy probes counted in this half-open phase.
    pub probes_ok: u32,
    /// Bumped on every transition; a probe answered under an older generation is ignored.
    pub generation: u32,
    /// Confirm mode: the statistical trigger that fired and asks a person (closed only).
    pub alert: Option<Trigger>,
    /// When the alert was raised, ns since the epoch.
    pub alert_since_ns: u64,
    /// A person's hold, and what it is on (the confirmed trigger, `operator` for a direct
    /// shed, the workload's item for a hold learned from it): open until released, no
    /// half-open phase, no probes. Only while tripped.
    pub hold: Option<Trigger>,
    /// Held: when a worker last checked with the gray workload that the hold still stands
    /// (or began holding), ns since the epoch.
    pub checked_ns: u64,
    /// When a hold was last released, ns since the epoch (kept through later transitions):
    /// a reply the workload stamped `held:` before it heard of the release must not hold
    /// the rule again.
    pub released_ns: u64,
}

/// What a probe result did to the breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// Healthy; counted, not yet enough to close.
    Counted,
    /// Healthy and the last one needed: closed.
    Closed,
    /// Bad: open again for another `shed_for`.
    Reopened(Trigger),
}

impl Breaker {
    pub fn phase(&self, now_ns: u64) -> Phase {
        match (self.tripped, self.hold.is_some(), now_ns >= self.until_ns) {
            (false, _, _) => Phase::Closed,
            (true, true, _) | (true, false, false) => Phase::Open,
            (true, false, true) => Phase::HalfOpen,
        }
    }

    /// Whether a person's hold keeps it open.
    pub fn held(&self) -> bool {
        self.tripped && self.hold.is_some()
    }

    /// Holds the breaker open until a person releases it, on `hold_on`. A closed breaker
    /// trips on `trigger` (an alert is answered by it); an open or half-open one keeps its
    /// trigger and start, and a probe in flight no longer counts. `None`: already held.
    /// The flag says whether it opened (was closed).
    pub fn hold(
        &self,
        now_ns: u64,
        trigger: Trigger,
        hold_on: Trigger,
        shed_for_ms: u64,
    ) -> Option<(Breaker, bool)> {
        if self.held() {
            return None;
        }
        let opened = !self.tripped;
        let base = if opened {
            self.trip(now_ns, trigger, shed_for_ms)
        } else {
            Breaker {
                probes_ok: 0,
                generation: self.generation.wrapping_add(1),
                ..*self
            }
        };
        Some((
            Breaker {
                hold: Some(hold_on),
                checked_ns: now_ns,
                ..base
            },
            opened,
        ))
    }

    /// Lifts a hold: half-open from `now_ns` on, probes counted afresh. `None`: not held.
    pub fn release(&self, now_ns: u64) -> Option<Breaker> {
        self.held().then_some(Breaker {
            until_ns: now_ns,
            probes_ok: 0,
            generation: self.generation.wrapping_add(1),
            hold: None,
            checked_ns: 0,
            released_ns: now_ns,
            ..*self
        })
    }

    /// Whether a hold was released less than `grace_ms` before `now_ns`.
    pub fn just_released(&self, now_ns: u64, grace_ms: u64) -> bool {
        self.released_ns > 0
            && now_ns
                < self
                    .released_ns
                    .saturating_add(grace_ms.saturating_mul(1_000_000))
    }

    /// Held, and its last check with the workload is `every_ms` old or older.
    pub fn check_due(&self, now_ns: u64, every_ms: u64) -> bool {
        self.held()
            && now_ns
                >= self
                    .checked_ns
                    .saturating_add(every_ms.saturating_mul(1_000_000))
    }

    /// Opens for `shed_for_ms` from `now_ns` (an alert, if any, is answered by it).
    pub fn trip(&self, now_ns: u64, trigger: Trigger, shed_for_ms: u64) -> Breaker {
        Breaker {
            tripped: true,
            trigger: Some(trigger),
            since_ns: now_ns,
            until_ns: now_ns.saturating_add(shed_for_ms.saturating_mul(1_000_000)),
            probes_ok: 0,
            generation: self.generation.wrapping_add(1),
            alert: None,
            alert_since_ns: 0,
            hold: None,
            checked_ns: 0,
            released_ns: self.released_ns,
        }
    }

    /// Confirm mode: raises an alert on a closed breaker with no alert yet (`None`: nothing
    /// to do). Traffic keeps flowing; evidence keeps accumulating in the same epoch.
    pub fn raise_alert(&self, now_ns: u64, trigger: Trigger) -> Option<Breaker> {
        (!self.tripped && self.alert.is_none()).then_some(Breaker {
            alert: Some(trigger),
            alert_since_ns: now_ns,
            ..*self
        })
    }

    /// Ends an alert without shedding: a new epoch starts, so the evidence that raised it
    /// does not raise it again at once.
    pub fn dismiss(&self, now_ns: u64) -> Option<Breaker> {
        self.alert.is_some().then_some(Breaker {
            since_ns: now_ns,
            generation: self.generation.wrapping_add(1),
            alert: None,
            alert_since_ns: 0,
            ..*self
        })
    }

    /// Applies a probe result from a probe sent under `generation`. `None`: nothing to
    /// change (stale probe, or not half-open any more).
    pub fn probe(
        &self,
        now_ns: u64,
        generation: u32,
        result: Result<(), Trigger>,
        needed: u32,
        shed_for_ms: u64,
    ) -> Option<(Breaker, ProbeOutcome)> {
        if generation != self.generation || self.phase(now_ns) != Phase::HalfOpen {
            return None;
        }
        Some(match result {
            Err(t) => (self.trip(now_ns, t, shed_for_ms), ProbeOutcome::Reopened(t)),
            Ok(()) if self.probes_ok.saturating_add(1) >= needed => (
                Breaker {
                    tripped: false,
                    trigger: self.trigger,
                    since_ns: now_ns,
                    until_ns: 0,
                    probes_ok: 0,
                    generation: self.generation.wrapping_add(1),
                    alert: None,
                    alert_since_ns: 0,
                    hold: None,
                    checked_ns: 0,
                    released_ns: self.released_ns,
                },
                ProbeOutcome::Closed,
            ),
            Ok(()) => (
                Breaker {
                    probes_ok: self.probes_ok + 1,
                    ..*self
                },
                ProbeOutcome::Counted,
            ),
        })
    }
}

/// Every unit's breaker: the shared board (its bytes: `crate::shared::codec`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Board(pub Vec<Breaker>);

impl Board {
    pub fn new(units: usize) -> Board {
        Board(vec![Breaker::default(); units])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn open_then_half_open_by_the_clock() {
        let b = Breaker::default();
        assert_eq!(b.phase(0), Phase::Closed);
        let open = b.trip(10 * S, Trigger::Latency, 5_000);
        assert_eq!(open.phase(10 * S), Phase::Open);
        assert_eq!(open.phase(15 * S - 1), Phase::Open);
        assert_eq!(open.phase(15 * S), Phase::HalfOpen);
        assert_eq!(open.generation, 1);
        assert_eq!(open.trigger, Some(Trigger::Latency));
    }

    #[test]
    fn half_open_recovery_needs_enough_healthy_probes() {
        let open = Breaker::default().trip(0, Trigger::BoxCount, 1_000);
        let g = open.generation;
        // While open, probe results are ignored.
        assert_eq!(open.probe(S / 2, g, Ok(()), 2, 1_000), None);
        let (one, o) = open.probe(S, g, Ok(()), 2, 1_000).unwrap();
        assert_eq!(o, ProbeOutcome::Counted);
        assert_eq!(one.phase(S), Phase::HalfOpen);
        assert_eq!(one.generation, g, "counting is not a transition");
        let (closed, o) = one.probe(2 * S, g, Ok(()), 2, 1_000).unwrap();
        assert_eq!(o, ProbeOutcome::Closed);
        assert_eq!(closed.phase(2 * S), Phase::Closed);
        assert_eq!(closed.since_ns, 2 * S);
        assert_eq!(closed.trigger, Some(Trigger::BoxCount));
        // A late probe from the old generation changes nothing.
        assert_eq!(closed.probe(3 * S, g, Err(Trigger::Flag), 2, 1_000), None);
    }

    #[test]
    fn a_bad_probe_reopens() {
        let open = Breaker::default().trip(0, Trigger::Flag, 1_000);
        let (one, _) = open.probe(S, open.generation, Ok(()), 3, 1_000).unwrap();
        let (again, o) = one
            .probe(S + 1, open.generation, Err(Trigger::Latency), 3, 1_000)
            .unwrap();
        assert_eq!(o, ProbeOutcome::Reopened(Trigger::Latency));
        assert_eq!(again.phase(S + 2), Phase::Open);
        assert_eq!(again.phase(2 * S + 1), Phase::HalfOpen);
        assert_eq!(again.probes_ok, 0);
        assert_eq!(again.trigger, Some(Trigger::Latency));
        assert_ne!(again.generation, open.generation);
    }

    #[test]
    fn alerts_are_raised_once_then_confirmed_or_dismissed() {
        let b = Breaker::default();
        let a = b.raise_alert(S, Trigger::BoxCount).unwrap();
        assert_eq!(
            (a.phase(S), a.alert, a.generation),
            (Phase::Closed, Some(Trigger::BoxCount), 0)
        );
        assert_eq!(
            a.raise_alert(2 * S, Trigger::Latency),
            None,
            "one alert at a time"
        );
        // Confirmed: the shed answers the alert.
        let shed = a.trip(3 * S, Trigger::BoxCount, 1_000);
        assert_eq!((shed.alert, shed.phase(3 * S)), (None, Phase::Open));
        assert_eq!(shed.raise_alert(3 * S, Trigger::Latency), None);
        // Dismissed: a new epoch, no alert, still closed.
        let d = a.dismiss(4 * S).unwrap();
        assert_eq!(
            (d.alert, d.phase(4 * S), d.generation, d.since_ns),
            (None, Phase::Closed, 1, 4 * S)
        );
        assert_eq!(d.dismiss(5 * S), None);
    }

    #[test]
    fn a_hold_stays_open_past_any_shed_until_released() {
        let b = Breaker::default()
            .raise_alert(S, Trigger::BoxCount)
            .unwrap();
        let (held, opened) = b
            .hold(2 * S, Trigger::BoxCount, Trigger::BoxCount, 1_000)
            .unwrap();
        assert!(opened && held.held());
        assert_eq!((held.alert, held.hold), (None, Some(Trigger::BoxCount)));
        assert_eq!(held.phase(2 * S), Phase::Open);
        assert_eq!(
            held.phase(1_000 * S),
            Phase::Open,
            "no half-open while held"
        );
        assert_eq!(
            held.probe(1_000 * S, held.generation, Ok(()), 1, 1_000),
            None
        );
        assert_eq!(held.hold(3 * S, Trigger::Flag, Trigger::Flag, 1_000), None);
        // Checks fall due every period from the hold's start.
        assert!(!held.check_due(2 * S + 4_999_999_999, 5_000));
        assert!(held.check_due(7 * S, 5_000));
        // Released: half-open at once, under a new generation.
        let free = held.release(1_000 * S).unwrap();
        assert_eq!(free.phase(1_000 * S), Phase::HalfOpen);
        assert_eq!(
            (free.hold, free.trigger, free.since_ns),
            (None, Some(Trigger::BoxCount), 2 * S)
        );
        assert_ne!(free.generation, held.generation);
        assert!(!free.check_due(2_000 * S, 5_000));
        assert_eq!(free.release(1_001 * S), None, "released once");
        assert!(free.just_released(1_001 * S, 2_000));
        assert!(!free.just_released(1_002 * S, 2_000));
        let (closed, o) = free
            .probe(1_000 * S, free.generation, Ok(()), 1, 1_000)
            .unwrap();
        assert_eq!(closed.released_ns, 1_000 * S, "kept through the close");
        assert_eq!(
            (o, closed.phase(1_000 * S)),
            (ProbeOutcome::Closed, Phase::Closed)
        );
    }

    #[test]
    fn holding_a_shedding_breaker_keeps_its_trigger_and_start() {
        let open = Breaker::default().trip(S, Trigger::Latency, 1_000);
        let (held, opened) = open
            .hold(2 * S, Trigger::Operator, Trigger::Operator, 1_000)
            .unwrap();
        assert!(!opened);
        assert_eq!(
            (held.trigger, held.since_ns, held.hold),
            (Some(Trigger::Latency), S, Some(Trigger::Operator))
        );
        assert_ne!(
            held.generation, open.generation,
            "a probe in flight is stale"
        );
        assert_eq!(held.phase(100 * S), Phase::Open);
        // A trip or a closing probe leaves no hold behind.
        assert_eq!(held.trip(3 * S, Trigger::Flag, 1).hold, None);
    }

    #[test]
    fn gauges() {
        assert_eq!(
            [Phase::Closed, Phase::Open, Phase::HalfOpen].map(Phase::gauge),
            [0, 1, 2]
        );
        assert!(Phase::Open.severity() > Phase::HalfOpen.severity());
    }
}
