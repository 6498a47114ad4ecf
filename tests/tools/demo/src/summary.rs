//! The incident in numbers: when gray first answered, when the proxy started shedding it,
//! what reached gray afterwards, and what the clients saw.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use grayguard_client::breaker::Breaker;
use grayguard_client::decision::{DecisionExt, Route};
use grayguard_client::sample::Sample;
use grayguard_client::timeline::BoxStats;

/// What the run showed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    pub requests: usize,
    pub ok: usize,
    /// Client-visible failures by kind (`HTTP 503`, `transport`).
    pub errors: BTreeMap<String, usize>,
    pub decisions: BTreeMap<String, usize>,
    /// When the first reply served by gray arrived.
    pub first_gray_reply: Option<Duration>,
    /// When the first reply carrying the sidecar's own breach flag arrived.
    pub first_breach_flag: Option<Duration>,
    /// The trigger: when the first request that the proxy shed was sent (the breaker was
    /// open by then).
    pub shed_at: Option<Duration>,
    /// Why the proxy shed the first time (`box_count`, `flag`, `latency`, ...).
    pub shed_reason: Option<String>,
    /// When the admin poll first saw the breaker not closed.
    pub breaker_open_seen: Option<Duration>,
    /// When the admin poll saw it closed again after that, if it did.
    pub breaker_closed_again: Option<Duration>,
    /// Replies served by gray, not marked as probes, to requests sent between the trigger
    /// and the breaker closing again (target: zero).
    pub gray_after_trigger: usize,
    /// Half-open probes that went to gray after the trigger.
    pub probes_after_trigger: usize,
    /// Requests answered by stable because the breaker was open.
    pub shed_requests: usize,
    /// Box counts of gray replies before the trigger, and of all stable replies.
    pub gray_boxes_before: BoxStats,
    pub stable_boxes: BoxStats,
    /// Each gateway's view, by gateway index (one entry per gateway that carried a request).
    pub gateways: Vec<GatewayShed>,
}

/// How one gateway followed the first trip anywhere in the mesh.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GatewayShed {
    pub requests: usize,
    /// When the first request this gateway shed was sent.
    pub first_shed: Option<Duration>,
    /// Non-probe gray replies to requests it took between the first trip anywhere and its
    /// own first shed: what the mesh-wide latch leaves through.
    pub gray_before_own_shed: usize,
}

/// Gray replies a gateway may still serve after another gateway tripped, before the latch
/// reaches it: the one request its next response check or tick can let through.
pub const LATCH_GRAY_ALLOWANCE: usize = 1;

impl Summary {
    /// Folds every sample of a run and every breaker reading (in time order) into numbers.
    pub fn compute(samples: &[Sample], breaker: &[(Duration, Breaker)]) -> Summary {
        let mut s = Summary {
            requests: samples.len(),
            ..Summary::default()
        };
        let mut by_sent: Vec<&Sample> = samples.iter().collect();
        by_sent.sort_by_key(|x| x.sent);

        s.breaker_open_seen = breaker
            .iter()
            .find(|(_, b)| *b != Breaker::Closed)
            .map(|(t, _)| *t);
        s.breaker_closed_again = s.breaker_open_seen.and_then(|open| {
            breaker
                .iter()
                .find(|(t, b)| *t > open && *b == Breaker::Closed)
                .map(|(t, _)| *t)
        });
        let first_shed = by_sent.iter().find_map(|x| {
            let reason = x.reply()?.decision()?.shed()?.as_str().to_string();
            Some((x.sent, reason))
        });
        s.shed_at = first_shed.as_ref().map(|(t, _)| *t);
        s.shed_reason = first_shed.map(|(_, r)| r);
        let until = s.breaker_closed_again.unwrap_or(Duration::MAX);

        let n_gateways = by_sent.iter().map(|x| x.gateway + 1).max().unwrap_or(0);
        s.gateways = vec![GatewayShed::default(); n_gateways];
        for x in &by_sent {
            let g = &mut s.gateways[x.gateway];
            g.requests += 1;
            if g.first_shed.is_none()
                && x.reply()
                    .and_then(|r| r.decision())
                    .is_some_and(|d| d.shed().is_some())
            {
                g.first_shed = Some(x.sent);
            }
        }

        for x in &by_sent {
            if let Some(kind) = x.error_kind() {
                *s.errors.entry(kind).or_default() += 1;
            }
            let Some(r) = x.reply() else { continue };
            let label = r
                .decision()
                .map_or("(no decision)".to_string(), |d| d.label());
            *s.decisions.entry(label).or_default() += 1;
            if !r.ok() {
                continue;
            }
            s.ok += 1;
            let probe = r.decision().is_some_and(|d| d.probe());
            if r.decision().is_some_and(|d| d.shed().is_some()) {
                s.shed_requests += 1;
            }
            if r.breach.is_some() {
                s.first_breach_flag = Some(s.first_breach_flag.map_or(x.done, |t| t.min(x.done)));
            }
            // After this gateway's own trip nothing but probes may reach gray; between the
            // first trip anywhere and its own, the latch allowance applies.
            let own = s.gateways[x.gateway].first_shed;
            let after_trigger = own.is_some_and(|t| x.sent >= t && x.sent < until);
            let latch_window =
                s.shed_at.is_some_and(|t| x.sent >= t) && own.is_none_or(|o| x.sent < o);
            match r.route() {
                Some(Route::Gray) => {
                    s.first_gray_reply = Some(s.first_gray_reply.map_or(x.done, |t| t.min(x.done)));
                    if latch_window && !probe {
                        s.gateways[x.gateway].gray_before_own_shed += 1;
                    }
                    if after_trigger {
                        if probe {
                            s.probes_after_trigger += 1;
                        } else {
                            s.gray_after_trigger += 1;
                        }
                    } else if let Some(b) =
                        r.box_count.filter(|_| s.shed_at.is_none_or(|t| x.sent < t))
                    {
                        s.gray_boxes_before.add(b);
                    }
                }
                Some(Route::Stable) => {
                    if let Some(b) = r.box_count {
                        s.stable_boxes.add(b);
                    }
                }
                None => {}
            }
        }
        s
    }

    /// Time from the first gray reply to the trigger.
    pub fn gray_to_shed(&self) -> Option<Duration> {
        Some(self.shed_at?.saturating_sub(self.first_gray_reply?))
    }

    pub fn client_errors(&self) -> usize {
        self.errors.values().sum()
    }

    /// What the demo promises, as failed checks (empty: all held).
    pub fn failed_checks(&self) -> Vec<String> {
        let mut failed = Vec::new();
        if self.first_gray_reply.is_none() {
            failed.push("no request reached gray: does a rule match a cohort of the mix?".into());
        }
        if self.shed_at.is_none() {
            failed.push("the gray version was never shed".into());
        }
        if self.gray_after_trigger > 0 {
            failed.push(format!(
                "{} non-probe request(s) reached gray after the trigger",
                self.gray_after_trigger
            ));
        }
        if self.client_errors() > 0 {
            failed.push(format!("clients saw {} error(s)", self.client_errors()));
        }
        if self.gateways.len() > 1 && self.shed_at.is_some() {
            for (i, g) in self.gateways.iter().enumerate() {
                if g.first_shed.is_none() {
                    failed.push(format!("gateway {i} never shed the gray version"));
                } else if g.gray_before_own_shed > LATCH_GRAY_ALLOWANCE {
                    failed.push(format!(
                        "gateway {i} sent {} request(s) to gray after the first trip, before \
                         it shed (allowance {LATCH_GRAY_ALLOWANCE})",
                        g.gray_before_own_shed
                    ));
                }
            }
        }
        failed
    }

    /// The text summary written at the end of a run.
    pub fn render(&self) -> String {
        let secs = |d: Option<Duration>| {
            d.map_or("never".to_string(), |d| format!("{:.2} s", d.as_secs_f64()))
        };
        let boxes = |b: &BoxStats| match (b.mean(), b.std()) {
            (Some(m), Some(sd)) => format!("mean {m:.1}, std {sd:.1} over {} replies", b.n),
            _ => "no replies".to_string(),
        };
        let mut out = String::new();
        let _ = writeln!(out, "grayguard incident replay: summary");
        let _ = writeln!(
            out,
            "requests sent                  {} ({} answered 2xx)",
            self.requests, self.ok
        );
        let _ = writeln!(
            out,
            "first gray reply at            {}",
            secs(self.first_gray_reply)
        );
        let reason = self
            .shed_reason
            .as_ref()
            .map_or(String::new(), |r| format!(" (shed={r})"));
        let _ = writeln!(
            out,
            "gray shed (trigger) at         {}{reason}",
            secs(self.shed_at)
        );
        let _ = writeln!(
            out,
            "first gray reply -> shed       {}",
            secs(self.gray_to_shed())
        );
        let _ = writeln!(
            out,
            "breaker seen open (admin) at   {}",
            secs(self.breaker_open_seen)
        );
        if self.first_breach_flag.is_some() {
            let _ = writeln!(
                out,
                "sidecar breach flag first at   {}",
                secs(self.first_breach_flag)
            );
        }
        if self.breaker_closed_again.is_some() {
            let _ = writeln!(
                out,
                "breaker closed again at        {}",
                secs(self.breaker_closed_again)
            );
        }
        let _ = writeln!(
            out,
            "gray box count before shed     {}",
            boxes(&self.gray_boxes_before)
        );
        let _ = writeln!(
            out,
            "stable box count               {}",
            boxes(&self.stable_boxes)
        );
        let _ = writeln!(out, "requests shed to stable        {}", self.shed_requests);
        let _ = writeln!(
            out,
            "reached gray after trigger     {} (target 0; half-open probes: {})",
            self.gray_after_trigger, self.probes_after_trigger
        );
        let _ = writeln!(
            out,
            "errors seen by clients         {} (target 0)",
            self.client_errors()
        );
        for (kind, n) in &self.errors {
            let _ = writeln!(out, "  {kind:<28} {n}");
        }
        let _ = writeln!(out, "decisions");
        for (label, n) in &self.decisions {
            let _ = writeln!(out, "  {label:<28} {n}");
        }
        if self.gateways.len() > 1 {
            let _ = writeln!(
                out,
                "gateways (shed after the first trip; gray before own shed, allowance {LATCH_GRAY_ALLOWANCE})"
            );
            for (i, g) in self.gateways.iter().enumerate() {
                let lag = match (g.first_shed, self.shed_at) {
                    (Some(own), Some(first)) => {
                        format!("+{:.2} s", own.saturating_sub(first).as_secs_f64())
                    }
                    _ => "never".to_string(),
                };
                let _ = writeln!(
                    out,
                    "  gateway {i:<20} shed {lag:<10} gray {} of {} requests",
                    g.gray_before_own_shed, g.requests
                );
            }
        }
        out
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use grayguard_client::decision;
    use grayguard_client::sample::Outcome;

    /// A 200 reply `decision` sent to the side that served it, sent and answered at these
    /// milliseconds of the run.
    pub(crate) fn sample(sent_ms: u64, done_ms: u64, decision: &str, boxes: u32) -> Sample {
        let ms = Duration::from_millis;
        Sample::served(
            ms(sent_ms),
            ms(done_ms),
            decision::parse(decision).unwrap(),
            boxes,
        )
    }

    fn incident() -> (Vec<Sample>, Vec<(Duration, Breaker)>) {
        let samples = vec![
            sample(0, 300, "stable; no-rule", 3),
            sample(100, 500, "gray; rule=r", 60),
            sample(600, 900, "gray; rule=r", 70),
            // Sent before the trigger, answered after: not "after the trigger".
            sample(1_000, 1_700, "gray; rule=r", 80),
            sample(1_200, 1_400, "stable; rule=r; shed=box_count", 4),
            sample(1_500, 1_800, "stable; no-rule", 5),
            sample(3_000, 3_300, "gray; rule=r; probe", 65),
            sample(3_500, 3_800, "stable; rule=r; shed=box_count", 4),
        ];
        let breaker = vec![
            (Duration::from_millis(1_000), Breaker::Closed),
            (Duration::from_millis(2_000), Breaker::Open),
            (Duration::from_millis(3_000), Breaker::HalfOpen),
            (Duration::from_millis(4_000), Breaker::Open),
        ];
        (samples, breaker)
    }

    #[test]
    fn computes_the_incident_timeline() {
        let (samples, breaker) = incident();
        let s = Summary::compute(&samples, &breaker);
        assert_eq!((s.requests, s.ok), (8, 8));
        assert_eq!(s.first_gray_reply, Some(Duration::from_millis(500)));
        assert_eq!(s.shed_at, Some(Duration::from_millis(1_200)));
        assert_eq!(s.shed_reason.as_deref(), Some("box_count"));
        assert_eq!(s.gray_to_shed(), Some(Duration::from_millis(700)));
        assert_eq!(s.breaker_open_seen, Some(Duration::from_millis(2_000)));
        assert_eq!(s.breaker_closed_again, None);
        assert_eq!((s.gray_after_trigger, s.probes_after_trigger), (0, 1));
        assert_eq!(s.shed_requests, 2);
        assert_eq!(s.gray_boxes_before.n, 3);
        assert_eq!(s.gray_boxes_before.mean(), Some(70.0));
        assert_eq!(s.stable_boxes.n, 4);
        assert_eq!(s.decisions.get("stable shed=box_count"), Some(&2));
        assert!(s.failed_checks().is_empty(), "{:?}", s.failed_checks());
        let text = s.render();
        assert!(
            text.contains("first gray reply -> shed       0.70 s"),
            "{text}"
        );
        assert!(text.contains("errors seen by clients         0"), "{text}");
    }

    #[test]
    fn a_leak_to_gray_and_client_errors_fail_the_checks() {
        let (mut samples, breaker) = incident();
        samples.push(sample(2_500, 2_900, "gray; rule=r", 90));
        samples.push(Sample {
            sent: Duration::from_millis(2_600),
            done: Duration::from_millis(2_700),
            cohort: 0,
            image: 0,
            gateway: 0,
            outcome: Outcome::Transport("reset".into()),
        });
        let s = Summary::compute(&samples, &breaker);
        assert_eq!(s.gray_after_trigger, 1);
        assert_eq!(s.errors.get("transport"), Some(&1));
        let failed = s.failed_checks();
        assert_eq!(failed.len(), 2, "{failed:?}");
        assert!(s.render().contains("transport"));
    }

    #[test]
    fn gray_after_the_breaker_closed_again_is_legitimate() {
        let (mut samples, mut breaker) = incident();
        breaker.push((Duration::from_millis(5_000), Breaker::Closed));
        samples.push(sample(5_100, 5_400, "gray; rule=r", 12));
        let s = Summary::compute(&samples, &breaker);
        assert_eq!(s.breaker_closed_again, Some(Duration::from_millis(5_000)));
        assert_eq!(s.gray_after_trigger, 0);
    }

    fn via(gateway: usize, mut x: Sample) -> Sample {
        x.gateway = gateway;
        x
    }

    #[test]
    fn each_gateway_is_held_to_the_latch_allowance() {
        let samples = vec![
            via(0, sample(0, 300, "gray; rule=r", 60)),
            via(1, sample(100, 400, "gray; rule=r", 60)),
            via(0, sample(1_000, 1_100, "stable; rule=r; shed=box_count", 4)),
            // Gateway 1 has not heard yet: one gray reply is the allowance.
            via(1, sample(1_050, 1_300, "gray; rule=r", 70)),
            via(1, sample(1_200, 1_300, "stable; rule=r; shed=latch", 4)),
            via(1, sample(1_400, 1_600, "stable; rule=r; shed=latch", 4)),
        ];
        let s = Summary::compute(&samples, &[]);
        assert_eq!(s.gateways.len(), 2);
        assert_eq!(s.gateways[1].first_shed, Some(Duration::from_millis(1_200)));
        assert_eq!(s.gateways[1].gray_before_own_shed, 1);
        assert_eq!(s.gateways[0].gray_before_own_shed, 0);
        assert_eq!(s.gray_after_trigger, 0);
        assert!(s.failed_checks().is_empty(), "{:?}", s.failed_checks());
        assert!(s.render().contains("shed +0.20 s"), "{}", s.render());

        let mut leaky = samples.clone();
        leaky.push(via(1, sample(1_100, 1_350, "gray; rule=r", 70)));
        leaky.push(via(2, sample(1_500, 1_700, "gray; rule=r", 70)));
        let failed = Summary::compute(&leaky, &[]).failed_checks();
        assert_eq!(failed.len(), 2, "{failed:?}");
        assert!(failed[0].contains("gateway 1 sent 2"), "{failed:?}");
        assert!(failed[1].contains("gateway 2 never shed"), "{failed:?}");
    }

    #[test]
    fn no_gray_and_no_shed_are_reported() {
        let samples = vec![sample(0, 100, "stable; no-rule", 1)];
        let s = Summary::compute(&samples, &[]);
        assert_eq!(s.gray_to_shed(), None);
        assert_eq!(s.failed_checks().len(), 2);
        assert!(s.render().contains("never"));
    }
}
