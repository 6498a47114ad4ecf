//! The latches gateways hold on this workload (the contract's `latch` module says why): a
//! small table, keyed by gateway and rule, whose live entries become `latched:<trigger>@<rule>`
//! items of the breach flag on every reply that is not a half-open probe. Pure logic with
//! the clock passed in.

use std::time::{Duration, Instant};

use grayguard_contract::Trigger;
use grayguard_contract::latch::Request;

/// What a call to the latch endpoint asked for (`latch_requests_total{action}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Latch,
    Clear,
    /// `GET`: the live latches.
    List,
    /// Refused before its body was read, or a body that is not a latch request.
    Unknown,
}

impl Action {
    pub const ALL: [Action; 4] = [Action::Latch, Action::Clear, Action::List, Action::Unknown];

    pub fn of(req: &Request) -> Action {
        match req {
            Request::Latch { .. } => Action::Latch,
            Request::Clear { .. } => Action::Clear,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Latch => "latch",
            Action::Clear => "clear",
            Action::List => "list",
            Action::Unknown => "unknown",
        }
    }
}

/// Why a latch call was refused (`latch_refused_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A latch path on the public listener: latches are pulled on the control listener only.
    PublicListener,
    /// The control listener requires a bearer token and the call had another or none.
    BadToken,
    /// The body is not a latch request (the contract's grammar), or too long.
    BadRequest,
}

impl Refusal {
    pub const ALL: [Refusal; 3] = [
        Refusal::PublicListener,
        Refusal::BadToken,
        Refusal::BadRequest,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::PublicListener => "public_listener",
            Refusal::BadToken => "bad_token",
            Refusal::BadRequest => "bad_request",
        }
    }
}

/// One gateway's latch on one rule.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    gateway: String,
    rule: String,
    trigger: Trigger,
    set_at: Instant,
    until: Instant,
}

/// What a request did to the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// A latch was set or renewed.
    Latched,
    /// This many latches were cleared (0: none was older than the clearing evidence).
    Cleared(usize),
}

/// The latches held, bounded in number and in length.
#[derive(Debug, Clone)]
pub struct Latches {
    entries: Vec<Entry>,
    /// Most entries held (`--latch-max-entries`); the one ending first makes room.
    max_entries: usize,
    /// Longest latch accepted (`--latch-max-s`); longer requests are cut to it.
    max_for: Duration,
}

impl Latches {
    pub fn new(max_entries: usize, max_for: Duration) -> Latches {
        Latches {
            entries: Vec::new(),
            max_entries: max_entries.max(1),
            max_for,
        }
    }

    /// Applies a latch or clear request received at `now`.
    pub fn apply(&mut self, req: &Request, now: Instant) -> Applied {
        self.expire(now);
        match req {
            Request::Latch {
                rule,
                trigger,
                for_ms,
                gateway,
            } => {
                let until = now + Duration::from_millis(*for_ms).min(self.max_for);
                self.entries
                    .retain(|e| !(e.gateway == *gateway && e.rule == *rule));
                if self.entries.len() >= self.max_entries
                    && let Some(first) = self
                        .entries
                        .iter()
                        .enumerate()
                        .min_by_key(|(_, e)| e.until)
                        .map(|(i, _)| i)
                {
                    self.entries.remove(first);
                }
                self.entries.push(Entry {
                    gateway: gateway.clone(),
                    rule: rule.clone(),
                    trigger: *trigger,
                    set_at: now,
                    until,
                });
                Applied::Latched
            }
            Request::Clear {
                rule,
                healthy_for_ms,
                ..
            } => {
                // Only latches set before the clearing gateway's healthy evidence began: a
                // latch set since is fresher news than those probes and stays.
                let evidence_from = now.checked_sub(Duration::from_millis(*healthy_for_ms));
                let before = self.entries.len();
                self.entries.retain(|e| {
                    !(e.rule == *rule && evidence_from.is_none_or(|from| e.set_at <= from))
                });
                Applied::Cleared(before - self.entries.len())
            }
        }
    }

    fn expire(&mut self, now: Instant) {
        self.entries.retain(|e| e.until > now);
    }

    /// The live latches as `(trigger, rule)` flag items, one per rule and trigger.
    pub fn items(&mut self, now: Instant) -> Vec<(Trigger, String)> {
        self.expire(now);
        let mut items: Vec<(Trigger, String)> = self
            .entries
            .iter()
            .map(|e| (e.trigger, e.rule.clone()))
            .collect();
        items.sort();
        items.dedup();
        items
    }

    /// Live latches held (for the gauge).
    pub fn len(&mut self, now: Instant) -> usize {
        self.expire(now);
        self.entries.len()
    }

    pub fn is_empty(&mut self, now: Instant) -> bool {
        self.len(now) == 0
    }

    /// The live latches as JSON objects (for `GET /grayguard/latch`).
    pub fn describe(&mut self, now: Instant) -> Vec<serde_json::Value> {
        self.expire(now);
        self.entries
            .iter()
            .map(|e| {
                serde_json::json!({
                    "gateway": e.gateway,
                    "rule": e.rule,
                    "trigger": e.trigger.as_str(),
                    "age_ms": now.saturating_duration_since(e.set_at).as_millis() as u64,
                    "remaining_ms": e.until.saturating_duration_since(now).as_millis() as u64,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn latch(gateway: &str, rule: &str, trigger: Trigger, for_ms: u64) -> Request {
        Request::Latch {
            rule: rule.into(),
            trigger,
            for_ms,
            gateway: gateway.into(),
        }
    }

    fn clear(gateway: &str, rule: &str, healthy_for_ms: u64) -> Request {
        Request::Clear {
            rule: rule.into(),
            healthy_for_ms,
            gateway: gateway.into(),
        }
    }

    #[test]
    fn latches_hold_for_their_time_one_item_per_rule_and_trigger() {
        let t0 = Instant::now();
        let mut l = Latches::new(8, Duration::from_secs(3600));
        assert_eq!(
            l.apply(&latch("gw-1", "cranes", Trigger::BoxCount, 30_000), t0),
            Applied::Latched
        );
        l.apply(&latch("gw-2", "cranes", Trigger::BoxCount, 10_000), t0);
        l.apply(&latch("gw-2", "gates", Trigger::Latency, 10_000), t0);
        assert_eq!(
            l.items(t0),
            vec![
                (Trigger::Latency, "gates".into()),
                (Trigger::BoxCount, "cranes".into())
            ]
        );
        assert_eq!(l.len(t0), 3);
        // gw-2's latches end; gw-1's still holds cranes.
        let later = t0 + Duration::from_secs(20);
        assert_eq!(l.items(later), vec![(Trigger::BoxCount, "cranes".into())]);
        assert!(l.is_empty(t0 + Duration::from_secs(31)));
    }

    #[test]
    fn a_clear_drops_only_latches_older_than_the_healthy_evidence() {
        let t0 = Instant::now();
        let mut l = Latches::new(8, Duration::from_secs(3600));
        l.apply(&latch("gw-1", "cranes", Trigger::BoxCount, 60_000), t0);
        // gw-3 sees a fresh breach 5 s later.
        let t5 = t0 + Duration::from_secs(5);
        l.apply(&latch("gw-3", "cranes", Trigger::Latency, 60_000), t5);
        // gw-2's probes were healthy for the last 3 s: gw-1's latch is stale, gw-3's is not.
        let t6 = t0 + Duration::from_secs(6);
        assert_eq!(
            l.apply(&clear("gw-2", "cranes", 3_000), t6),
            Applied::Cleared(1)
        );
        assert_eq!(l.items(t6), vec![(Trigger::Latency, "cranes".into())]);
        // A clear for another rule changes nothing.
        assert_eq!(
            l.apply(&clear("gw-2", "gates", 100_000), t6),
            Applied::Cleared(0)
        );
    }

    #[test]
    fn the_table_and_every_latch_are_bounded() {
        let t0 = Instant::now();
        let mut l = Latches::new(2, Duration::from_secs(60));
        l.apply(&latch("a", "r1", Trigger::Flag, 10_000), t0);
        l.apply(&latch("b", "r2", Trigger::Flag, 20_000), t0);
        l.apply(&latch("c", "r3", Trigger::Flag, 30_000), t0);
        assert_eq!(l.len(t0), 2);
        assert!(
            !l.items(t0).iter().any(|(_, r)| r == "r1"),
            "the one ending first made room"
        );
        // A year-long latch is cut to the maximum.
        l.apply(&latch("d", "r4", Trigger::Flag, 365 * 86_400_000), t0);
        assert!(
            !l.items(t0 + Duration::from_secs(61))
                .iter()
                .any(|(_, r)| r == "r4")
        );
        // Renewing a gateway's latch replaces it rather than adding one.
        let mut l = Latches::new(4, Duration::from_secs(60));
        l.apply(&latch("a", "r", Trigger::Flag, 1_000), t0);
        l.apply(&latch("a", "r", Trigger::Latency, 5_000), t0);
        assert_eq!(l.items(t0), vec![(Trigger::Latency, "r".into())]);
        let d = l.describe(t0);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0]["gateway"], "a");
        assert_eq!(d[0]["remaining_ms"], 5_000);
    }
}
