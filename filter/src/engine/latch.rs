//! The mesh-wide latch: a first-hand shed tells the gray workload to flag every reply for
//! the rule (so other gateways shed on their next gray reply), and healthy probes clear
//! it; a person's hold and release go the same way (`crate::engine::hold`). Calls are
//! queued on the request path and sent from the tick; their answers come back here.

use grayguard_contract::Trigger;
use grayguard_contract::latch::{self as latching, Request as LatchRequest};

use crate::engine::Engine;
use crate::host::{Host, Level};
use crate::metrics::Counter;

impl Engine {
    /// Queues a latch (`trigger`: this gateway just shed `unit`) or a clear (`None`: its
    /// probes proved gray healthy for `healthy_for_ms`) for the next tick. A shed that
    /// came from another gateway's latch is not latched again (the latch would feed itself),
    /// and dry run latches nothing.
    pub(super) fn queue_latch(
        &mut self,
        unit: usize,
        trigger: Option<Trigger>,
        healthy_for_ms: u64,
    ) {
        if self.cfg.breach.latch.is_none()
            || self.cfg.breach.dry_run
            || trigger == Some(Trigger::Latch)
        {
            return;
        }
        let rule = self.unit_names.get(unit).cloned().unwrap_or_default();
        let gateway = self.gateway.clone();
        self.latch_outbox.push(match trigger {
            Some(trigger) => LatchRequest::Latch {
                rule,
                trigger,
                for_ms: self.cfg.breach.shed_for_ms,
                gateway,
            },
            None => LatchRequest::Clear {
                rule,
                healthy_for_ms,
                gateway,
            },
        });
    }

    /// Queues a hold (`hold_on`: a person holds `unit`, or the workload forgot the hold) or a
    /// release (`None`: a person released it here) for the next tick. Dry run holds nothing
    /// on the workload.
    pub(super) fn queue_hold(&mut self, unit: usize, hold_on: Option<Trigger>) {
        if self.cfg.breach.latch.is_none() || self.cfg.breach.dry_run {
            return;
        }
        let rule = self.unit_names.get(unit).cloned().unwrap_or_default();
        let gateway = self.gateway.clone();
        self.latch_outbox.push(match hold_on {
            Some(trigger) => LatchRequest::Hold {
                rule,
                trigger,
                gateway,
            },
            None => LatchRequest::Release { rule, gateway },
        });
    }

    /// Sends the queued latch calls, each `calls` times (spread over the gray pods by the
    /// cluster's load balancing).
    pub(super) fn send_latches(&mut self, host: &impl Host) {
        let Some(l) = self.cfg.breach.latch.clone() else {
            return;
        };
        let bearer = l.token.as_ref().map(|t| format!("Bearer {t}"));
        for req in std::mem::take(&mut self.latch_outbox) {
            let body = req.render();
            let mut headers = vec![
                (":method", "POST"),
                (":path", latching::PATH),
                (":authority", l.authority.as_str()),
                ("content-type", "application/x-www-form-urlencoded"),
            ];
            if let Some(b) = &bearer {
                headers.push(("authorization", b.as_str()));
            }
            let mut sent = 0;
            for _ in 0..l.calls {
                self.pending.count(Counter::LatchCalls);
                if host
                    .dispatch(&l.cluster, &headers, body.as_bytes(), l.timeout_ms)
                    .is_ok()
                {
                    sent += 1;
                } else {
                    self.pending.count(Counter::LatchFailures);
                }
            }
            let level = if sent == l.calls {
                Level::Info
            } else {
                Level::Warn
            };
            host.log(
                level,
                &format!(
                    "grayguard: latch call to cluster {}: {sent} of {} sent: {body}",
                    l.cluster, l.calls
                ),
            );
        }
    }

    /// The answer to HTTP call `token` this VM sent (`status` `None`: no answer, a timeout or
    /// reset; `body` read only when [`Engine::awaits_listing`] asked for it): a hold check's
    /// listing, or a latch call's outcome.
    pub fn answered(
        &mut self,
        host: &impl Host,
        token: u32,
        status: Option<u16>,
        body: Option<&[u8]>,
    ) {
        if self.check_answered(host, token, status, body) {
            return;
        }
        if !status.is_some_and(|s| (200..300).contains(&s)) {
            self.pending.count(Counter::LatchFailures);
            host.log(
                Level::Warn,
                &format!(
                    "grayguard: latch call failed: {}",
                    status.map_or("no answer".into(), |s| format!("status {s}"))
                ),
            );
        }
    }
}
