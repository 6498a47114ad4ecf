//! Routing a request: the first matching rule, its share, its breaker — where the request
//! goes — and the headers that say so, upstream and to the client.

use grayguard_contract::headers::{PROBE, TIME_OF_DAY};

use crate::breaker::Phase;
use crate::config::BUCKETS;
use crate::decision::{self, BreakerView, Routed, Why};
use crate::engine::Engine;
use crate::host::Host;
use crate::metrics::Counter;
use crate::rules;
use crate::schedule;

/// The clock of one request: read from the host at most once, on demand.
struct Clock {
    at: Option<u64>,
}

impl Clock {
    fn now(&mut self, host: &impl Host) -> u64 {
        *self.at.get_or_insert_with(|| host.now_ns())
    }
}

impl Engine {
    /// Decides where a request goes. `header` looks a (lower-case) request header up.
    ///
    /// The clock is read at most once, and only when something needs it: a rule with
    /// hours, the `x-time-of-day` stamp, an open breaker (open or half-open is read off the
    /// clock), a detector that files replies by time. Otherwise the request is stamped with
    /// the time of this VM's last reading (at most one tick old), which is all the failure
    /// streaks need.
    pub fn decide<'h>(
        &mut self,
        host: &impl Host,
        header: impl Fn(&str) -> Option<&'h str>,
    ) -> Routed {
        let mut clock = Clock {
            at: (self.detector.needs_clock() || self.cfg.time_header_upstream)
                .then(|| host.now_ns()),
        };
        let cfg = &self.cfg;
        let mut minute_cache = None;
        let mut minute = |clock: &mut Clock| {
            *minute_cache.get_or_insert_with(|| {
                cfg.trust_time_header
                    .then(|| header(TIME_OF_DAY).and_then(schedule::parse_time_header))
                    .flatten()
                    .unwrap_or_else(|| schedule::minute_of_day(clock.now(host), cfg.utc_offset_min))
            })
        };
        let rule = rules::first_match(&cfg.rules, &header, || minute(&mut clock));
        let matched = rule.and_then(|i| cfg.rules.get(i).map(|r| (i, r)));
        let share_bucket = match matched {
            Some((_, r)) if r.percent_bp < BUCKETS => {
                match r.sticky_header.as_deref().and_then(&header) {
                    Some(id) => rules::sticky_bucket(id.as_bytes()),
                    None => self.draw.bucket(),
                }
            }
            _ => 0,
        };
        let unit = rule.map_or(0, |i| cfg.unit_of(i));
        let (board, keys, units, draw) = (&mut self.board, &self.keys, self.units, &mut self.draw);
        let mut generation = 0;
        let d = decision::decide(
            matched.map(|(i, r)| (i, r.percent_bp)),
            share_bucket,
            || {
                let b = board
                    .current(host, &keys.board, units)
                    .0
                    .get(unit)
                    .copied()
                    .unwrap_or_default();
                generation = b.generation;
                BreakerView {
                    // A closed breaker is closed at any time: no clock needed.
                    phase: if b.tripped {
                        b.phase(clock.now(host))
                    } else {
                        Phase::Closed
                    },
                    trigger: b.trigger,
                    alert: b.alert,
                }
            },
            || draw.bucket(),
            cfg.breach.probe_bp,
            cfg.breach.dry_run,
        );
        let hour = if cfg.time_header_upstream {
            let m = minute(&mut clock);
            [b'0' + (m / 600) as u8, b'0' + ((m / 60) % 10) as u8]
        } else {
            *b"--"
        };
        // Every request of this VM gets a distinct, increasing stamp: the ordering of its
        // successes and failures must survive stale readings (see `Clock`).
        let stamp = clock
            .at
            .unwrap_or(0)
            .max(self.last_now_ns.saturating_add(1));
        self.last_now_ns = stamp;
        self.pending.count(if d.gray {
            Counter::RoutedGray
        } else {
            Counter::RoutedStable
        });
        match d.why {
            Why::Shed(_) => self.pending.count(Counter::ShedRequests),
            Why::Probe => self.pending.count(Counter::ProbeRequests),
            Why::DryRun(_) => self.pending.count(Counter::DryRunRequests),
            Why::NoRule | Why::Matched | Why::Percent | Why::Alert(_) => {}
        }
        Routed {
            decision: d,
            generation,
            at_ns: stamp,
            hour,
        }
    }

    /// The headers a routed request carries upstream, in order: the route (the stable or
    /// gray value), the probe mark on a half-open probe (the gray workload answers it on its
    /// own merits, without any latch), and the hour with `time_header_upstream`.
    pub fn upstream_headers<'a>(
        &'a self,
        r: &'a Routed,
    ) -> impl Iterator<Item = (&'a str, &'a [u8])> + 'a {
        let cfg = &self.cfg;
        let route = if r.decision.gray {
            &cfg.gray
        } else {
            &cfg.stable
        };
        [
            Some((cfg.route_header.as_str(), route.as_bytes())),
            (r.decision.why == Why::Probe).then_some((PROBE, &b"1"[..])),
            cfg.time_header_upstream
                .then_some((TIME_OF_DAY, &r.hour[..])),
        ]
        .into_iter()
        .flatten()
    }

    /// The `x-canary-decision` text for a request (in a buffer the VM reuses); `fallback`:
    /// its reply was stable's answer to Envoy's retry of a failed gray attempt.
    pub fn decision_text(&mut self, r: &Routed, fallback: bool) -> &str {
        let name = r
            .decision
            .rule
            .and_then(|i| self.cfg.rules.get(i))
            .map_or("", |rule| rule.name.as_str());
        self.scratch.clear();
        r.decision
            .header_with(name, fallback)
            .render_into(&mut self.scratch);
        &self.scratch
    }
}
