//! A person on the operator listener: confirming or dismissing an alert through its signed
//! link, shedding a rule directly, or releasing a hold through its signed link. A confirmed
//! or direct shed holds (`crate::engine::hold`); every worker advertises the same links.

use grayguard_contract::Trigger;
use grayguard_contract::operator::{self, DISMISS, Link, Purpose, RELEASE, SHED};
use grayguard_contract::promotion::PATH as PROMOTION;

use crate::config::Scope;
use crate::engine::breaker::Stamp;
use crate::engine::hold::{Holder, Releaser};
use crate::engine::{Engine, OperatorReply};
use crate::host::Host;
use crate::incident::{self, Event};
use crate::link;
use crate::metrics::Counter;
use crate::shared;
use crate::signals;

/// An operator request as it arrived (`path` under `/grayguard/`, its `query`).
#[derive(Debug, Clone, Copy)]
pub struct OperatorCall<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    /// It arrived on the operator listener; anywhere else it is refused.
    pub on_operator: bool,
    /// The authenticated person (`operator.identity_header`), for the incident record.
    pub by: Option<&'a str>,
    /// The peer address, for the incident record.
    pub from: Option<&'a str>,
}

impl<'a> OperatorCall<'a> {
    /// A `GET` of `path?query` on the operator listener by nobody in particular.
    pub fn get(path: &'a str, query: &'a str) -> OperatorCall<'a> {
        OperatorCall {
            method: "GET",
            path,
            query,
            on_operator: true,
            by: None,
            from: None,
        }
    }
}

impl Engine {
    /// The link advertised now for an alert or a hold that began at `since_ns`: renewed
    /// every `link_ttl_s`, each valid for two periods, so the one in a message stays valid
    /// at least `link_ttl_s` after the next replaces it. Every VM computes the same one.
    pub(super) fn link(
        &self,
        purpose: Purpose,
        unit: usize,
        trigger: Trigger,
        since_ns: u64,
        now_ns: u64,
    ) -> Link {
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
        link::sign(secret, purpose, rule, trigger, exp)
    }

    /// Handles an operator request. Refused anywhere but on the operator listener, as is a
    /// link that does not verify for its path's purpose.
    pub fn operator(&mut self, host: &impl Host, call: &OperatorCall<'_>) -> OperatorReply {
        let Some(op) = self.cfg.operator.clone().filter(|_| call.on_operator) else {
            return self.refuse(
                403,
                "operator requests are served on the operator listener only",
            );
        };
        if call.path == PROMOTION {
            return self.promotion_reply(host);
        }
        if call.path == SHED {
            return self.shed_directly(host, call);
        }
        let Some(purpose) = Purpose::of_path(call.path) else {
            return self.refuse(404, "no such operator request");
        };
        let link = match Link::parse(call.query) {
            Ok(l) => l,
            Err(e) => return self.refuse(400, e.0),
        };
        let now = host.now_ns();
        if let Err(r) = link::verify(&op.secret, purpose, &link, now / 1_000_000_000) {
            return self.refuse(403, r.as_str());
        }
        let Some(unit) = self.unit_named(&link.rule) else {
            return self.refuse(404, "no such rule");
        };
        match call.path {
            RELEASE => self.release_by_link(host, unit, &link, call),
            DISMISS => self.dismiss(host, unit, &link, call),
            _ => self.confirm(host, unit, &link, call),
        }
    }

    fn refuse(&mut self, status: u16, why: &str) -> OperatorReply {
        self.pending.count(Counter::OperatorRefused);
        OperatorReply::new(status, "refused", why)
    }

    /// The unit of the rule a link or a direct shed names (`*` with `scope: all`).
    fn unit_named(&self, rule: &str) -> Option<usize> {
        match self.cfg.rules.iter().position(|r| r.name == rule) {
            Some(i) => Some(self.cfg.unit_of(i)),
            None => (self.cfg.breach.scope == Scope::All && rule == "*").then_some(0),
        }
    }

    /// The person behind a call, as the record names them: the identity header made safe,
    /// or `anonymous`.
    fn person(call: &OperatorCall<'_>) -> String {
        signals::flag_reason(call.by.unwrap_or("anonymous"))
    }

    /// Confirms `unit`'s alert on `link.trigger`: the rule sheds as the trigger would have,
    /// and holds until a person releases it. Idempotent. The link answers its alert only: a
    /// rule that another trigger shed since (which answered the alert) is not held by it —
    /// a direct shed holds it.
    fn confirm(
        &mut self,
        host: &impl Host,
        unit: usize,
        link: &Link,
        call: &OperatorCall<'_>,
    ) -> OperatorReply {
        let by = Engine::person(call);
        let t = link.trigger;
        let holder = Holder::Person {
            by: &by,
            from: call.from,
        };
        if self
            .hold(host, unit, t, t, holder, |b| b.alert == Some(t))
            .is_some()
        {
            self.pending.count(Counter::Confirmations);
            return answer_held();
        }
        match self.board_now(host, unit) {
            Some(b) if b.held() => answer_already_held(),
            Some(b) if b.tripped => OperatorReply::new(
                200,
                "already_shed",
                "the rule is shedding already, not held (POST /grayguard/shed holds it)",
            ),
            _ => OperatorReply::new(
                409,
                "no_alert",
                "the rule has no such alert (dismissed, or already over)",
            ),
        }
    }

    /// A direct shed (`POST /grayguard/shed?rule=NAME`): the rule goes to stable now and
    /// holds, whatever its breaker was doing. Idempotent.
    fn shed_directly(&mut self, host: &impl Host, call: &OperatorCall<'_>) -> OperatorReply {
        if call.method != "POST" {
            return self.refuse(405, "a direct shed is a POST");
        }
        let rule = match operator::shed_rule(call.query) {
            Ok(r) => r,
            Err(e) => return self.refuse(400, e.0),
        };
        let Some(unit) = self.unit_named(rule) else {
            return self.refuse(404, "no such rule");
        };
        let by = Engine::person(call);
        let holder = Holder::Person {
            by: &by,
            from: call.from,
        };
        let on = Trigger::Operator;
        if self.hold(host, unit, on, on, holder, |_| true).is_some() {
            return answer_held();
        }
        if self.held_now(host, unit) {
            return answer_already_held();
        }
        OperatorReply::new(
            503,
            "not_held",
            "the breaker board could not be written; try again",
        )
    }

    /// Releases `unit`'s hold on `link.trigger` with its signed link. Idempotent.
    fn release_by_link(
        &mut self,
        host: &impl Host,
        unit: usize,
        link: &Link,
        call: &OperatorCall<'_>,
    ) -> OperatorReply {
        let by = Engine::person(call);
        let releaser = Releaser::Person {
            by: &by,
            from: call.from,
        };
        let t = link.trigger;
        if self
            .release(host, unit, releaser, |b| b.hold == Some(t))
            .is_some()
        {
            return OperatorReply::new(
                200,
                "released",
                "the rule is half-open: probes judge gray again",
            );
        }
        match self
            .board_now(host, unit)
            .and_then(|b| b.hold.filter(|_| b.held()))
        {
            Some(other) if other != t => OperatorReply::new(
                409,
                "held_on_another_trigger",
                "the rule is held on another trigger: use that hold's link",
            ),
            Some(_) => OperatorReply::new(
                503,
                "not_released",
                "the breaker board could not be written; try again",
            ),
            None => OperatorReply::new(200, "already_released", "the rule is not held"),
        }
    }

    /// Ends `unit`'s alert on `link.trigger` without a shed; a new epoch starts.
    fn dismiss(
        &mut self,
        host: &impl Host,
        unit: usize,
        link: &Link,
        call: &OperatorCall<'_>,
    ) -> OperatorReply {
        let now = host.now_ns();
        let trigger = link.trigger;
        let done = shared::update_board(host, &self.keys.board, self.units, |board| {
            let b = board.0.get(unit)?;
            if b.alert != Some(trigger) {
                return None;
            }
            let mut next = board.clone();
            *next.0.get_mut(unit)? = b.dismiss(now)?;
            Some((next, ()))
        });
        let Some((board, ())) = done else {
            return OperatorReply::new(
                409,
                "no_alert",
                "the rule has no such alert (dismissed, or already over)",
            );
        };
        self.remember(host, board);
        let by = Engine::person(call);
        let op = incident::Operator {
            by: Some(&by),
            from: call.from,
            ..Default::default()
        };
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

/// The answer to a person whose hold was made now.
fn answer_held() -> OperatorReply {
    OperatorReply::new(
        200,
        "held",
        "the rule goes to stable now and stays there until a person releases it",
    )
}

/// The answer to a person asking for a hold that stands already.
fn answer_already_held() -> OperatorReply {
    OperatorReply::new(200, "already_held", "the rule is already held")
}
