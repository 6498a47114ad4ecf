//! The latches gateways hold on this workload (the contract's `latch` module says why): a
//! small table, keyed by gateway and rule, whose live entries become `latched:<trigger>@<rule>`
//! items of the breach flag on every reply that is not a half-open probe; and the holds a
//! person placed through a gateway, one per rule, kept until a release and stamped
//! `held:<trigger>@<rule>` on every reply, probes included, with the release records that
//! tell a checking gateway "released" from "forgotten". Pure logic with the clock passed in.

use std::time::{Duration, Instant};

use grayguard_contract::Trigger;
use grayguard_contract::latch::{self as contract, Listing, Request};

/// What a call to the latch endpoint asked for (`latch_requests_total{action}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Latch,
    Clear,
    Hold,
    Release,
    /// `GET`: the live latches, the holds and the release records.
    List,
    /// Refused before its body was read, or a body that is not a latch request.
    Unknown,
}

impl Action {
    pub const ALL: [Action; 6] = [
        Action::Latch,
        Action::Clear,
        Action::Hold,
        Action::Release,
        Action::List,
        Action::Unknown,
    ];

    pub fn of(req: &Request) -> Action {
        match req {
            Request::Latch { .. } => Action::Latch,
            Request::Clear { .. } => Action::Clear,
            Request::Hold { .. } => Action::Hold,
            Request::Release { .. } => Action::Release,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Latch => "latch",
            Action::Clear => "clear",
            Action::Hold => "hold",
            Action::Release => "release",
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
    /// A hold for a new rule while `--latch-max-entries` rules are held: holds are a
    /// person's decisions and are never evicted to make room.
    HoldsFull,
}

impl Refusal {
    pub const ALL: [Refusal; 4] = [
        Refusal::PublicListener,
        Refusal::BadToken,
        Refusal::BadRequest,
        Refusal::HoldsFull,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::PublicListener => "public_listener",
            Refusal::BadToken => "bad_token",
            Refusal::BadRequest => "bad_request",
            Refusal::HoldsFull => "holds_full",
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

/// A person's hold on one rule, as a gateway passed it on.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Hold {
    rule: String,
    trigger: Trigger,
    gateway: String,
    set_at: Instant,
}

/// A rule's release record: a person released its hold, through `gateway`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Release {
    rule: String,
    gateway: String,
    at: Instant,
}

/// What a request did to the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// A latch was set or renewed.
    Latched,
    /// This many latches were cleared (0: none was older than the clearing evidence).
    Cleared(usize),
    /// The rule is held (`false`: it was already; the first hold stands).
    Held(bool),
    /// The rule's hold was released (`false`: it was not held; the release record is
    /// renewed all the same, so a gateway that checks here learns of the release).
    Released(bool),
    /// A hold for a new rule refused: [`Refusal::HoldsFull`].
    HoldsFull,
}

impl Applied {
    /// The word the control endpoint answers with (`applied`).
    pub fn as_str(self) -> &'static str {
        match self {
            Applied::Latched => "latched",
            Applied::Cleared(_) => "cleared",
            Applied::Held(true) => "held",
            Applied::Held(false) => "already_held",
            Applied::Released(true) => "released",
            Applied::Released(false) => "already_released",
            Applied::HoldsFull => "holds_full",
        }
    }
}

/// The latches, holds and release records, bounded in number and in length.
#[derive(Debug, Clone)]
pub struct Latches {
    entries: Vec<Entry>,
    holds: Vec<Hold>,
    releases: Vec<Release>,
    /// Most entries of each kind (`--latch-max-entries`): for latches, the one ending first
    /// makes room; for release records, the oldest; a hold is never dropped, and a hold for
    /// a new rule beyond it is refused.
    max_entries: usize,
    /// Longest latch accepted (`--latch-max-s`), longer requests are cut to it; and how
    /// long a release record is kept.
    max_for: Duration,
}

impl Latches {
    pub fn new(max_entries: usize, max_for: Duration) -> Latches {
        Latches {
            entries: Vec::new(),
            holds: Vec::new(),
            releases: Vec::new(),
            max_entries: max_entries.max(1),
            max_for,
        }
    }

    /// Applies a request received at `now`.
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
            Request::Hold {
                rule,
                trigger,
                gateway,
            } => {
                if self.holds.iter().any(|h| h.rule == *rule) {
                    return Applied::Held(false);
                }
                if self.holds.len() >= self.max_entries {
                    return Applied::HoldsFull;
                }
                self.releases.retain(|r| r.rule != *rule);
                self.holds.push(Hold {
                    rule: rule.clone(),
                    trigger: *trigger,
                    gateway: gateway.clone(),
                    set_at: now,
                });
                Applied::Held(true)
            }
            Request::Release { rule, gateway } => {
                let before = self.holds.len();
                self.holds.retain(|h| h.rule != *rule);
                self.releases.retain(|r| r.rule != *rule);
                if self.releases.len() >= self.max_entries {
                    self.releases.remove(0);
                }
                self.releases.push(Release {
                    rule: rule.clone(),
                    gateway: gateway.clone(),
                    at: now,
                });
                Applied::Released(self.holds.len() < before)
            }
        }
    }

    /// Drops the lapsed latches and the release records older than the longest latch.
    fn expire(&mut self, now: Instant) {
        self.entries.retain(|e| e.until > now);
        let max_for = self.max_for;
        self.releases
            .retain(|r| now.saturating_duration_since(r.at) < max_for);
    }

    /// The holds as `(trigger, rule)` flag items, one per rule: on every reply, half-open
    /// probes included (a person's decision is not for a probe to judge).
    pub fn held(&self) -> Vec<(Trigger, String)> {
        let mut held: Vec<(Trigger, String)> = self
            .holds
            .iter()
            .map(|h| (h.trigger, h.rule.clone()))
            .collect();
        held.sort();
        held
    }

    /// Rules held.
    pub fn holds(&self) -> usize {
        self.holds.len()
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

    /// The table as `GET /grayguard/latch` lists it (the contract's [`Listing`]).
    pub fn listing(&mut self, now: Instant) -> Listing {
        self.expire(now);
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let age = |t: Instant| ms(now.saturating_duration_since(t));
        Listing {
            latches: self
                .entries
                .iter()
                .map(|e| contract::Latched {
                    gateway: e.gateway.clone(),
                    rule: e.rule.clone(),
                    trigger: e.trigger,
                    age_ms: age(e.set_at),
                    remaining_ms: ms(e.until.saturating_duration_since(now)),
                })
                .collect(),
            holds: self
                .holds
                .iter()
                .map(|h| contract::Held {
                    rule: h.rule.clone(),
                    trigger: h.trigger,
                    gateway: h.gateway.clone(),
                    age_ms: age(h.set_at),
                })
                .collect(),
            released: self
                .releases
                .iter()
                .map(|r| contract::Released {
                    rule: r.rule.clone(),
                    gateway: r.gateway.clone(),
                    age_ms: age(r.at),
                })
                .collect(),
        }
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
        let d = l.listing(t0).latches;
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].gateway, "a");
        assert_eq!(d[0].remaining_ms, 5_000);
    }

    fn hold(gateway: &str, rule: &str, trigger: Trigger) -> Request {
        Request::Hold {
            rule: rule.into(),
            trigger,
            gateway: gateway.into(),
        }
    }

    fn release(gateway: &str, rule: &str) -> Request {
        Request::Release {
            rule: rule.into(),
            gateway: gateway.into(),
        }
    }

    #[test]
    fn a_hold_stays_until_released() {
        let t0 = Instant::now();
        let mut l = Latches::new(8, Duration::from_secs(60));
        assert_eq!(
            l.apply(&hold("gw-0", "cranes", Trigger::BoxCount), t0),
            Applied::Held(true)
        );
        assert_eq!(
            l.apply(&hold("gw-1", "cranes", Trigger::Latch), t0),
            Applied::Held(false),
            "the first hold stands"
        );
        l.apply(&latch("gw-2", "gates", Trigger::Latency, 1_000), t0);
        // Far past any latch: still held.
        let later = t0 + Duration::from_secs(24 * 3600);
        assert_eq!(l.held(), vec![(Trigger::BoxCount, "cranes".into())]);
        assert!(l.items(later).is_empty());
        assert_eq!(l.len(later), 0, "a hold is not a latch");
        // A clear is about latches: it does not lift a hold.
        l.apply(&clear("gw-3", "cranes", 1_000_000), later);
        assert_eq!(l.holds(), 1);
        let listed = l.listing(later);
        assert_eq!(listed.holds[0].gateway, "gw-0");
        assert_eq!(listed.holds[0].age_ms, 24 * 3_600_000);
        assert_eq!(
            l.apply(&release("gw-1", "cranes"), later),
            Applied::Released(true)
        );
        assert!(l.held().is_empty());
        assert_eq!(
            l.apply(&release("gw-2", "cranes"), later),
            Applied::Released(false)
        );
    }

    #[test]
    fn a_release_record_tells_released_from_forgotten_for_as_long_as_a_latch_lives() {
        let t0 = Instant::now();
        let mut l = Latches::new(8, Duration::from_secs(60));
        l.apply(&hold("gw-0", "cranes", Trigger::Latency), t0);
        assert_eq!(
            l.listing(t0).standing("cranes"),
            contract::Standing::Held(&contract::Held {
                rule: "cranes".into(),
                trigger: Trigger::Latency,
                gateway: "gw-0".into(),
                age_ms: 0
            })
        );
        let t1 = t0 + Duration::from_secs(1);
        l.apply(&release("gw-2", "cranes"), t1);
        let listed = l.listing(t1 + Duration::from_secs(59));
        assert!(
            matches!(listed.standing("cranes"), contract::Standing::Released(r) if r.gateway == "gw-2" && r.age_ms == 59_000)
        );
        // A release of a rule never held here still leaves its record.
        l.apply(&release("gw-2", "gates"), t1);
        assert!(matches!(
            l.listing(t1).standing("gates"),
            contract::Standing::Released(_)
        ));
        // Past the longest latch the record is gone: unknown again.
        let gone = t1 + Duration::from_secs(60);
        assert_eq!(
            l.listing(gone).standing("cranes"),
            contract::Standing::Unknown
        );
        // A new hold replaces the record at once.
        l.apply(&release("gw-2", "cranes"), gone);
        l.apply(&hold("gw-0", "cranes", Trigger::Flag), gone);
        assert!(matches!(
            l.listing(gone).standing("cranes"),
            contract::Standing::Held(_)
        ));
        assert!(l.listing(gone).released.iter().all(|r| r.rule != "cranes"));
    }

    #[test]
    fn holds_are_never_evicted_and_records_are_bounded() {
        let t0 = Instant::now();
        let mut l = Latches::new(2, Duration::from_secs(60));
        l.apply(&hold("a", "r1", Trigger::Flag), t0);
        l.apply(&hold("a", "r2", Trigger::Flag), t0);
        assert_eq!(
            l.apply(&hold("a", "r3", Trigger::Flag), t0),
            Applied::HoldsFull
        );
        assert_eq!(l.holds(), 2);
        assert_eq!(
            l.apply(&hold("b", "r1", Trigger::Latency), t0),
            Applied::Held(false),
            "a held rule is held, full or not"
        );
        for (i, rule) in ["r1", "r4", "r5"].into_iter().enumerate() {
            l.apply(&release("a", rule), t0 + Duration::from_millis(i as u64));
        }
        let listed = l.listing(t0 + Duration::from_millis(5));
        let records: Vec<&str> = listed.released.iter().map(|r| r.rule.as_str()).collect();
        assert_eq!(records, ["r4", "r5"], "the oldest record made room");
        assert_eq!(listed.holds.len(), 1);
        assert_eq!(Applied::Released(false).as_str(), "already_released");
    }
}
