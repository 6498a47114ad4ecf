//! Settling a reply: which replies are read, their signals read in one go, then booked —
//! the signal counters, the detector, and the breach flag (a hold it carries first) or a
//! half-open probe's verdict; a gray request stable answered (a fallback) is counted as one
//! gray failure; the gray pods that answered are remembered for the incident record.

use grayguard_contract::headers::SERVED_BY;
use grayguard_contract::{Flag, Trigger};

use crate::decision::{Routed, Why};
use crate::engine::Engine;
use crate::host::Host;
use crate::metrics::Counter;
use crate::signals::{self, Observation, Reply};

/// Gray pods remembered per unit and epoch for the incident record.
pub const MAX_PODS: usize = 16;
/// Longest pod name kept, in characters.
pub const MAX_POD_NAME: usize = 253;

impl Engine {
    /// Whether the response of this request is read at all (gray responses feed the
    /// detector; stable ones only as the detector's reference).
    pub fn reads_response(&self, r: &Routed) -> bool {
        r.decision.gray || self.detector.reads_stable(r)
    }

    /// Reads a response's status and signal headers (`header` looks one up, as bytes;
    /// `gray`: the request went to gray). Malformed signals are ignored and counted, never
    /// trusted.
    pub fn read<'h>(
        &mut self,
        gray: bool,
        status: Option<u16>,
        header: impl Fn(&str) -> Option<&'h [u8]>,
    ) -> Reply {
        let (reply, malformed) = signals::read(&self.cfg, gray, status, header);
        self.pending
            .add(Counter::MalformedSignals, u64::from(malformed));
        reply
    }

    /// A response's headers arrived (`header` looks one up, `:status` included): read and
    /// booked, when this request's responses are read. Returns whether it was a fallback
    /// (gray's attempt failed and stable answered), which the decision header says.
    pub fn on_response<'h>(
        &mut self,
        host: &impl Host,
        r: &Routed,
        header: impl Fn(&str) -> Option<&'h [u8]>,
    ) -> bool {
        if !self.reads_response(r) {
            return false;
        }
        let status = header(":status").and_then(signals::status);
        let reply = self.read(r.decision.gray, status, &header);
        // The pod that answered, when it was gray (a fallback's is stable's).
        if r.decision.gray
            && !reply.fallback
            && let Some(unit) = r.decision.rule.map(|rule| self.cfg.unit_of(rule))
            && let Some(pod) = header(SERVED_BY)
        {
            self.heard_from(unit, pod);
        }
        self.settle(host, r, &reply);
        reply.fallback
    }

    /// Remembers a gray pod `unit`'s replies came from (the first [`MAX_PODS`] of the
    /// epoch), for the incident record. A name costs an allocation only the first time.
    fn heard_from(&mut self, unit: usize, pod: &[u8]) {
        let Some(pods) = self.pods.get_mut(unit) else {
            return;
        };
        if pods.len() >= MAX_PODS || pods.iter().any(|p| p.as_bytes() == pod) {
            return;
        }
        let name = signals::flag_reason(&String::from_utf8_lossy(pod));
        pods.push(name.chars().take(MAX_POD_NAME).collect());
    }

    /// A request ended without response headers (a reset): booked as a failure, when this
    /// request's responses are read.
    pub fn on_reset(&mut self, host: &impl Host, r: &Routed) {
        if self.reads_response(r) {
            self.settle(host, r, &Reply::reset());
        }
    }

    /// Books one response (or a reset: `Reply` with `failed`): the detector, then the
    /// probe verdict or the flag.
    pub fn settle(&mut self, host: &impl Host, r: &Routed, reply: &Reply) {
        let obs = &reply.obs;
        let d = r.decision;
        self.count_signals(d.gray, obs);
        if !d.gray {
            let unit = d.rule.map(|rule| self.cfg.unit_of(rule));
            self.detector.observe_stable(unit, r, obs);
            return;
        }
        let Some(rule) = d.rule else {
            return;
        };
        let unit = self.cfg.unit_of(rule);
        if obs.failed {
            self.pending.count(Counter::GrayFailures);
        }
        if reply.fallback
            && let Some(n) = self.fallbacks.get_mut(unit)
        {
            *n += 1;
        }
        self.detector.observe_gray(unit, r, obs);
        // A person holds the rule (the workload says so): nothing else of the flag matters.
        if self.obey_hold(host, unit, reply) {
            return;
        }
        let flag = self.flag_trigger(unit, reply);
        match d.why {
            Why::Probe => {
                let obs = Observation {
                    flagged: flag.is_some(),
                    ..reply.obs
                };
                let store = self.store(host);
                // A flag is the workload's own trouble, or another gateway's latch for
                // this rule.
                let verdict =
                    self.detector
                        .judge_probe(&store, unit, &obs)
                        .map_err(|t| match (t, flag) {
                            (Trigger::Flag, Some(f)) => f,
                            (t, _) => t,
                        });
                self.probe_result(host, unit, r.generation, verdict, reply);
            }
            _ => {
                if let Some(t) = flag {
                    self.trip(host, unit, t, reply.flag_reason.as_deref());
                }
            }
        }
    }

    /// What a response's breach flag means for `unit`: the workload's own trouble
    /// (`Flag`), a latch another gateway set for this unit's rule (`Latch`), or nothing (no
    /// flag, or only latches for other rules).
    fn flag_trigger(&self, unit: usize, reply: &Reply) -> Option<Trigger> {
        if !reply.obs.flagged {
            return None;
        }
        let flag = Flag::parse(reply.flag_reason.as_deref().unwrap_or(""));
        if flag.first_hand() {
            return Some(Trigger::Flag);
        }
        let name = self.unit_names.get(unit).map_or("?", String::as_str);
        flag.latched
            .iter()
            .any(|(_, rule)| rule == name || rule == "*")
            .then_some(Trigger::Latch)
    }

    fn count_signals(&mut self, gray: bool, obs: &Observation) {
        let (resp, lat, lat_n, boxes, box_n) = if gray {
            (
                Counter::GrayResponses,
                Counter::GrayLatencyUs,
                Counter::GrayLatencySamples,
                Counter::GrayBoxes,
                Counter::GrayBoxSamples,
            )
        } else {
            (
                Counter::StableResponses,
                Counter::StableLatencyUs,
                Counter::StableLatencySamples,
                Counter::StableBoxes,
                Counter::StableBoxSamples,
            )
        };
        let p = &mut self.pending;
        p.count(resp);
        if let Some(ms) = obs.latency_ms {
            p.add(lat, (ms * 1000.0).round() as u64);
            p.count(lat_n);
        }
        if let Some(n) = obs.boxes {
            p.add(boxes, n as u64);
            p.count(box_n);
        }
        // Only gray compares its frames with stable; the header has thousandths.
        if gray && let Some(a) = obs.agreement {
            p.add(Counter::GrayAgreementMilli, (a * 1000.0).round() as u64);
            p.count(Counter::GrayAgreementSamples);
        }
    }
}
