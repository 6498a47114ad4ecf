//! A person's decision holds until a person lifts it. A confirmed or a direct shed holds its
//! rule open — no half-open phase, no probes, whatever `shed_for_s` says — on this
//! gateway's board. With the latch, the gray workload holds it too and stamps
//! `held:<trigger>@<rule>` on every reply, half-open probes included, so every other
//! gateway, and this one after a restart (its shared data is gone), holds on its next gray
//! reply. A holding gateway checks with the workload every [`CHECK_EVERY_MS`]
//! (`GET /grayguard/latch` from the tick): the rule's release record there (a person
//! released it at another gateway) releases it here; a workload that knows neither the
//! hold nor a release (restarted, or a pod the hold call never reached) is sent the hold
//! again — the conservative answer, since nothing but a person may lift it. A release sends
//! the rule half-open at once: probes judge gray again.

use grayguard_contract::Trigger;
use grayguard_contract::latch::{self as latching, Listing, Standing};

use crate::breaker::Breaker;
use crate::engine::Engine;
use crate::engine::breaker::Stamp;
use crate::host::{Host, Level};
use crate::incident::{self, Event};
use crate::metrics::Counter;
use crate::shared;
use crate::signals::Reply;

/// How often a holding gateway asks the gray workload whether its holds still stand, ms
/// (one call per gateway process, whichever worker's tick claims it first).
pub const CHECK_EVERY_MS: u64 = 5_000;
/// Most bytes of a check's answer read; a longer answer is not a listing of this build's
/// workload (64 latches, holds and release records each fit many times over).
pub const MAX_LISTING_BYTES: usize = 64 * 1024;
/// Beyond the latch call's own time (the tick that sends it, `breach.latch.timeout_ms`),
/// how long after a release `held:` items for the rule are not obeyed, ms: a reply the
/// workload stamped before it heard of the release is still on its way.
pub const RELEASE_SLACK_MS: u64 = 1_000;
/// Most hold checks one VM awaits an answer to; the oldest is forgotten past this (its
/// answer then changes nothing). Envoy answers every call, at the latest with its timeout.
pub const MAX_CHECKS_AWAITED: usize = 16;

/// Who holds a rule.
#[derive(Debug, Clone, Copy)]
pub(super) enum Holder<'a> {
    /// A person on this gateway's operator listener: who, and from where.
    Person { by: &'a str, from: Option<&'a str> },
    /// The gray workload says a person holds it: the reply's breach flag.
    Workload { flag: Option<&'a str> },
}

/// Who released a rule.
#[derive(Debug, Clone, Copy)]
pub(super) enum Releaser<'a> {
    /// A person on this gateway's operator listener, with the signed link.
    Person { by: &'a str, from: Option<&'a str> },
    /// A person at another gateway, as the gray workload's release record says.
    Workload { via: &'a str },
}

/// A hold check sent and not answered yet: the call's token, and each held unit it asked
/// about with the breaker generation it was held under.
#[derive(Debug, Clone)]
pub(super) struct Check {
    token: u32,
    units: Vec<(usize, u32)>,
}

impl Engine {
    /// Holds `unit` on `hold_on` if `only_if` accepts its breaker: a closed breaker opens on
    /// `trigger`, a shedding one keeps shedding, and neither goes half-open until a person
    /// releases it. One compare-and-swap; the worker that wins records it (a `shed_start`
    /// with `held`, or `held` when the rule was shedding already) and, for a person's hold,
    /// tells the gray workload. `None`: nothing changed (already held, refused by `only_if`,
    /// or the board could not be written); else whether the breaker opened.
    pub(super) fn hold(
        &mut self,
        host: &impl Host,
        unit: usize,
        trigger: Trigger,
        hold_on: Trigger,
        holder: Holder<'_>,
        only_if: impl Fn(&Breaker) -> bool,
    ) -> Option<bool> {
        let now = host.now_ns();
        let shed_ms = self.cfg.breach.shed_for_ms;
        let done = shared::update_board(host, &self.keys.board, self.units, |board| {
            let b = board.0.get(unit)?;
            if !only_if(b) {
                return None;
            }
            let (held, opened) = b.hold(now, trigger, hold_on, shed_ms)?;
            let mut next = board.clone();
            *next.0.get_mut(unit)? = held;
            Some((next, (opened, held, b.since_ns)))
        });
        let (board, (opened, held, closed_since)) = done?;
        self.remember(host, board);
        let (op, flag) = match holder {
            Holder::Person { by, from } => {
                self.queue_hold(unit, Some(hold_on));
                let op = incident::Operator {
                    by: Some(by),
                    from,
                    ..Default::default()
                };
                (op, None)
            }
            Holder::Workload { flag } => (incident::Operator::default(), flag),
        };
        if opened {
            self.pending.count(Counter::Breaches(trigger));
            let at = Stamp {
                at_ns: now,
                other_ns: held.until_ns,
                since_ns: closed_since,
            };
            self.incident_by(host, Event::ShedStart, unit, trigger, flag, at, false, op);
        } else {
            let at = Stamp {
                at_ns: now,
                other_ns: held.since_ns,
                since_ns: now,
            };
            self.incident_by(host, Event::Held, unit, hold_on, flag, at, false, op);
        }
        Some(opened)
    }

    /// Releases `unit`'s hold if `only_if` accepts its breaker: half-open at once. One
    /// compare-and-swap; the worker that wins records it (`released`) and, for a person
    /// here, tells the gray workload. `None`: nothing changed.
    pub(super) fn release(
        &mut self,
        host: &impl Host,
        unit: usize,
        releaser: Releaser<'_>,
        only_if: impl Fn(&Breaker) -> bool,
    ) -> Option<()> {
        let now = host.now_ns();
        let done = shared::update_board(host, &self.keys.board, self.units, |board| {
            let b = board.0.get(unit)?;
            if !only_if(b) {
                return None;
            }
            let mut next = board.clone();
            *next.0.get_mut(unit)? = b.release(now)?;
            Some((next, b.hold))
        });
        let (board, on) = done?;
        self.remember(host, board);
        let op = match releaser {
            Releaser::Person { by, from } => {
                self.queue_hold(unit, None);
                incident::Operator {
                    by: Some(by),
                    from,
                    ..Default::default()
                }
            }
            Releaser::Workload { via } => incident::Operator {
                via: Some(via),
                ..Default::default()
            },
        };
        let at = Stamp {
            at_ns: now,
            other_ns: now,
            since_ns: now,
        };
        let on = on.unwrap_or(Trigger::Operator);
        self.incident_by(host, Event::Released, unit, on, None, at, false, op);
        Some(())
    }

    /// A gray reply's `held:` item for `unit`'s rule: a person holds it (at another
    /// gateway, or here before a restart), so this gateway holds it too — learned, so not
    /// sent back to the workload. Whether the reply held the rule (it is then nothing more:
    /// not a probe's verdict, not a latch). Within [`Engine::release_grace_ms`] of a
    /// release the item is the workload's word from before it and is not obeyed. A reply
    /// without a flag costs nothing here, and one for a rule this VM already holds no host
    /// call.
    pub(super) fn obey_hold(&mut self, host: &impl Host, unit: usize, reply: &Reply) -> bool {
        if !reply.obs.flagged {
            return false;
        }
        let flag = grayguard_contract::Flag::parse(reply.flag_reason.as_deref().unwrap_or(""));
        let name = self.unit_names.get(unit).map_or("?", String::as_str);
        let Some(on) = flag.held_for(name) else {
            return false;
        };
        let cached = self.board.board().0.get(unit).copied().unwrap_or_default();
        if cached.held() {
            return true;
        }
        let (now, grace) = (host.now_ns(), self.release_grace_ms());
        if cached.just_released(now, grace) {
            return false;
        }
        let holder = Holder::Workload {
            flag: reply.flag_reason.as_deref(),
        };
        // The stored board decides (another worker may have released it since).
        let fresh = |b: &Breaker| !b.just_released(now, grace);
        self.hold(host, unit, Trigger::Latch, on, holder, fresh);
        true
    }

    /// How long after a release `held:` items are not obeyed: until the release has
    /// surely reached the workload (the tick that sends it, its timeout) and the replies
    /// stamped before it are in ([`RELEASE_SLACK_MS`]).
    fn release_grace_ms(&self) -> u64 {
        let call_ms = self.cfg.breach.latch.as_ref().map_or(0, |l| l.timeout_ms);
        self.cfg.sync_ms + call_ms + RELEASE_SLACK_MS
    }

    /// The tick's hold check: when a held unit's last check is [`CHECK_EVERY_MS`] old, this
    /// worker claims the check for every unit due (one compare-and-swap, which moves no
    /// request's view of the board) and asks the gray workload for its listing. Without
    /// the latch a hold is this gateway's alone and there is no one to ask.
    pub(super) fn check_holds(&mut self, host: &impl Host) {
        let Some(l) = self.cfg.breach.latch.clone() else {
            return;
        };
        let now = host.now_ns();
        let due = |b: &Breaker| b.check_due(now, CHECK_EVERY_MS);
        if !self.board.board().0.iter().any(due) {
            return;
        }
        let claimed = shared::update_board(host, &self.keys.board, self.units, |board| {
            let mut next = board.clone();
            let mut asked = Vec::new();
            for (u, b) in next.0.iter_mut().enumerate() {
                if due(b) {
                    b.checked_ns = now;
                    asked.push((u, b.generation));
                }
            }
            (!asked.is_empty()).then_some((next, asked))
        });
        // Not `remember`ed: the claim changes nothing a request reads, so the change mark
        // stays and no request re-reads the board for it; the next tick reads it afresh.
        let Some((_, units)) = claimed else {
            return;
        };
        let bearer = l.token.as_ref().map(|t| format!("Bearer {t}"));
        let mut headers = vec![
            (":method", "GET"),
            (":path", latching::PATH),
            (":authority", l.authority.as_str()),
        ];
        if let Some(b) = &bearer {
            headers.push(("authorization", b.as_str()));
        }
        self.pending.count(Counter::LatchCalls);
        match host.dispatch(&l.cluster, &headers, b"", l.timeout_ms) {
            Ok(token) => {
                if self.checks.len() >= MAX_CHECKS_AWAITED {
                    self.checks.remove(0);
                }
                self.checks.push(Check { token, units });
            }
            Err(_) => {
                self.pending.count(Counter::LatchFailures);
                host.log(
                    Level::Warn,
                    &format!(
                        "grayguard: hold check to cluster {} not sent; the holds stay",
                        l.cluster
                    ),
                );
            }
        }
    }

    /// Whether call `token` is a hold check, whose answer's body the core reads.
    pub fn awaits_listing(&self, token: u32) -> bool {
        self.checks.iter().any(|c| c.token == token)
    }

    /// The answer to a hold check, if `token` is one (`false`: it is not). A check that
    /// failed, or whose answer is not a listing, changes nothing: the holds stay.
    pub(super) fn check_answered(
        &mut self,
        host: &impl Host,
        token: u32,
        status: Option<u16>,
        body: Option<&[u8]>,
    ) -> bool {
        let Some(i) = self.checks.iter().position(|c| c.token == token) else {
            return false;
        };
        let check = self.checks.remove(i);
        let listing = status
            .filter(|s| (200..300).contains(s))
            .and(body)
            .and_then(|b| Listing::parse(b).ok());
        match listing {
            Some(listing) => self.checked(host, &check.units, &listing),
            None => {
                self.pending.count(Counter::LatchFailures);
                host.log(
                    Level::Warn,
                    &format!(
                        "grayguard: hold check failed ({}); the holds stay",
                        status.map_or("no answer".into(), |s| format!("status {s}"))
                    ),
                );
            }
        }
        true
    }

    /// Applies a listing to the units a check asked about, each still held under the same
    /// generation (a unit released or held anew since the check was sent is left alone):
    /// held there, nothing to do; released there, released here; unknown there, sent again.
    fn checked(&mut self, host: &impl Host, asked: &[(usize, u32)], listing: &Listing) {
        let board = self
            .board
            .refresh(host, &self.keys.board, self.units)
            .clone();
        for &(unit, generation) in asked {
            let Some(b) = board.0.get(unit).filter(|b| b.held()) else {
                continue;
            };
            if b.generation != generation {
                continue;
            }
            let rule = self.unit_names.get(unit).cloned().unwrap_or_default();
            match listing.standing(&rule) {
                Standing::Held(_) => {}
                Standing::Released(r) => {
                    let via = r.gateway.clone();
                    let same = |b: &Breaker| b.held() && b.generation == generation;
                    self.release(host, unit, Releaser::Workload { via: &via }, same);
                }
                Standing::Unknown => {
                    host.log(
                        Level::Warn,
                        &format!(
                            "grayguard: the gray workload knows no hold or release of rule \
                             {rule} (restarted, or a pod the hold never reached): holding on \
                             and sending the hold again"
                        ),
                    );
                    self.queue_hold(unit, b.hold);
                }
            }
        }
    }

    /// The breaker of `unit` as stored now.
    pub(super) fn board_now(&mut self, host: &impl Host, unit: usize) -> Option<Breaker> {
        self.board
            .refresh(host, &self.keys.board, self.units)
            .0
            .get(unit)
            .copied()
    }

    /// Whether `unit` is held now.
    pub(super) fn held_now(&mut self, host: &impl Host, unit: usize) -> bool {
        self.board_now(host, unit).is_some_and(|b| b.held())
    }
}
