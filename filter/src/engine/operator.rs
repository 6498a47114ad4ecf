//! Confirm mode's operator: a person follows a signed, expiring link on the operator
//! listener to confirm (shed) or dismiss an alert; every worker advertises the same link.

use grayguard_contract::Trigger;
use grayguard_contract::operator::{CONFIRM, DISMISS, Link};
use grayguard_contract::promotion::PATH as PROMOTION;

use crate::config::Scope;
use crate::engine::breaker::Stamp;
use crate::engine::{Engine, OperatorReply};
use crate::host::Host;
use crate::incident::{self, Event};
use crate::link;
use crate::metrics::Counter;
use crate::shared;
use crate::signals;

impl Engine {
    /// The link advertised now for an alert raised at `since_ns`: renewed every
    /// `link_ttl_s`, each valid for two periods, so the one in a message stays valid at
    /// least `link_ttl_s` after the next replaces it. Every VM computes the same one.
    pub(super) fn link(&self, unit: usize, trigger: Trigger, since_ns: u64, now_ns: u64) -> Link {
        let ttl = self
            .cfg
            .operator
            .as_ref()
            .map_or(3_600, |o| o.link_ttl_s)
            .max(1);
        let since_s = since_ns / 1_000_000_000;
        let period = now_ns.saturating_sub(since_ns) / 1_000_000_000 / ttl;
        let exp = since_s + (period + 2) * ttl;
        let secret = self
            .cfg
            .operator
            .as_ref()
            .map_or(&[][..], |o| o.secret.as_slice());
        let rule = self.unit_names.get(unit).map_or("?", String::as_str);
        link::sign(secret, rule, trigger, exp)
    }

    /// Handles an operator request (`path` under `/grayguard/`, its `query`). `operator_port`
    /// says the request arrived on the operator listener; anywhere else it is refused, as is
    /// a link that does not verify. `by` is the authenticated person (identity header) and
    /// `from` the peer address, for the incident record.
    pub fn operator(
        &mut self,
        host: &impl Host,
        path: &str,
        query: &str,
        operator_port: bool,
        by: Option<&str>,
        from: Option<&str>,
    ) -> OperatorReply {
        let refuse = |e: &mut Engine, status, why: &str| {
            e.pending.count(Counter::OperatorRefused);
            OperatorReply::new(status, "refused", why)
        };
        let Some(op) = self.cfg.operator.clone().filter(|_| operator_port) else {
            return refuse(
                self,
                403,
                "operator requests are served on the operator listener only",
            );
        };
        if path == PROMOTION {
            return self.promotion_reply(host);
        }
        if path != CONFIRM && path != DISMISS {
            return refuse(self, 404, "no such operator request");
        }
        let link = match Link::parse(query) {
            Ok(l) => l,
            Err(e) => return refuse(self, 400, e.0),
        };
        let now = host.now_ns();
        if let Err(r) = link::verify(&op.secret, &link, now / 1_000_000_000) {
            return refuse(self, 403, r.as_str());
        }
        let Some(rule) = self.cfg.rules.iter().position(|r| r.name == link.rule) else {
            // Signed for a rule this configuration does not have (scope `all` links name `*`).
            let all = self.cfg.breach.scope == Scope::All && link.rule == "*";
            if !all {
                return refuse(self, 404, "no such rule");
            }
            return self.act(host, path == CONFIRM, 0, &link, by, from);
        };
        let unit = self.cfg.unit_of(rule);
        self.act(host, path == CONFIRM, unit, &link, by, from)
    }

    /// Confirms (sheds) or dismisses `unit`'s alert on `link.trigger`; idempotent.
    fn act(
        &mut self,
        host: &impl Host,
        confirm: bool,
        unit: usize,
        link: &Link,
        by: Option<&str>,
        from: Option<&str>,
    ) -> OperatorReply {
        let now = host.now_ns();
        let shed_ms = self.cfg.breach.shed_for_ms;
        let trigger = link.trigger;
        let by_clean = signals::flag_reason(by.unwrap_or("anonymous"));
        let outcome = shared::update_board(host, &self.keys.board, self.units, |board| {
            let b = board.0.get(unit)?;
            if b.alert != Some(trigger) {
                return None;
            }
            let next_b = if confirm {
                b.trip(now, trigger, shed_ms)
            } else {
                b.dismiss(now)?
            };
            let mut next = board.clone();
            *next.0.get_mut(unit)? = next_b;
            Some((next, (next_b.until_ns, b.since_ns)))
        });
        let Some((board, (until, closed_since))) = outcome else {
            // Nothing to change: already shed (a second click), or no such alert.
            let b = self
                .board
                .refresh(host, &self.keys.board, self.units)
                .0
                .get(unit)
                .copied();
            return match b {
                Some(b) if confirm && b.tripped => {
                    OperatorReply::new(200, "already_shed", "the rule is already shed")
                }
                _ => OperatorReply::new(
                    409,
                    "no_alert",
                    "the rule has no such alert (dismissed, or already over)",
                ),
            };
        };
        self.remember(host, board);
        let op = incident::Operator {
            by: Some(&by_clean),
            from,
            link: None,
        };
        if confirm {
            self.pending.count(Counter::Confirmations);
            self.pending.count(Counter::Breaches(trigger));
            self.queue_latch(unit, Some(trigger), 0);
            let at = Stamp {
                at_ns: now,
                other_ns: until,
                since_ns: closed_since,
            };
            self.incident_by(host, Event::ShedStart, unit, trigger, None, at, false, op);
            OperatorReply::new(200, "shed", "the rule goes to stable now")
        } else {
            let at = Stamp {
                at_ns: now,
                other_ns: now,
                since_ns: now,
            };
            self.incident_by(
                host,
                Event::AlertDismissed,
                unit,
                trigger,
                None,
                at,
                false,
                op,
            );
            OperatorReply::new(
                200,
                "dismissed",
                "the alert is over; the evidence starts afresh",
            )
        }
    }
}
