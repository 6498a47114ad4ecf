//! The decision core of one VM (one per Envoy worker): routing each request, reading each
//! response, the tick that merges every worker's observations and evaluates the triggers,
//! and the breaker transitions (trip, probe, close) with their incident records.
//!
//! Everything here talks to Envoy only through [`Host`], so the same code runs inside the
//! Wasm VM (`crate::glue`) and on the host in tests and the detection simulator
//! ([`crate::host::MemoryHost`]). The glue only moves headers, time and shared data in
//! and out.

use grayguard_contract::headers::TIME_OF_DAY;
use grayguard_contract::latch::{self as latching, Request as LatchRequest};
use grayguard_contract::{Flag, Trigger};

use crate::breach::{self, Baseline};
use crate::breaker::{Board, Breaker, Phase, ProbeOutcome};
use crate::config::{Action, BUCKETS, Config, Control, DetectorKind, Scope};
use crate::decision::{self, BreakerView, Decision, Why};
use crate::evidence::{self, Finding, Plan, Record, Tally, UnitEvidence};
use crate::host::{Host, Level};
use crate::incident::{self, Detail, Event, Incident};
use crate::link;
use crate::metrics::{Counter, Gauge, Pending, gauge_name};
use crate::rules::{self, Draw};
use crate::schedule;
use crate::shared::{self, Keys};
use crate::signals::{self, Observation, Reply};
use crate::window::{Layout, Local, Merged, Spans};

/// This VM's copy of the shared board.
#[derive(Debug, Clone)]
struct BoardCache {
    board: Board,
    cas: Option<u32>,
    /// The board's change mark when it was last read.
    mark: Option<u64>,
}

impl BoardCache {
    fn new(units: usize) -> BoardCache {
        BoardCache {
            board: Board::new(units),
            cas: None,
            mark: None,
        }
    }

    /// The current board for a request: re-read only when the change mark moved (or is
    /// unknown). The mark is taken before the read, so a write that lands in between
    /// moves it again and the next request reads once more.
    fn current(&mut self, host: &impl Host, key: &str, units: usize) -> &Board {
        let mark = host.board_mark();
        if mark.is_none() || mark != self.mark {
            self.refresh(host, key, units);
            self.mark = mark;
        }
        &self.board
    }

    /// The current board: one shared-data read; decoded only when its CAS changed.
    fn refresh(&mut self, host: &impl Host, key: &str, units: usize) -> &Board {
        let (bytes, cas) = host.get_shared(key);
        if cas.is_none() || cas != self.cas {
            self.board = bytes
                .and_then(|b| Board::decode(&b, units).ok())
                .unwrap_or_else(|| Board::new(units));
            self.cas = cas;
        }
        &self.board
    }
}

/// Where one request went, kept by its HTTP context until the response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Routed {
    pub decision: Decision,
    /// The breaker generation of the rule's unit when the request was offered to gray.
    pub generation: u32,
    /// When the request was decided, ns since the epoch: the clock when the decision read
    /// it, else this VM's last reading plus one ns per request since (distinct and
    /// increasing within the VM, at most a tick behind).
    pub at_ns: u64,
    /// The local hour, `HH`, for the `x-time-of-day` upstream stamp (`--` when
    /// `time_header_upstream` is off and the hour was not needed).
    pub hour: [u8; 2],
}

/// The sequential detector's per-VM state.
#[derive(Debug, Clone)]
struct Sequential {
    plan: Plan,
    /// Per unit: gray observations not yet in the shared record, and the breaker
    /// generation they were seen under (older ones are dropped at the flush).
    gray: Vec<(u32, Tally)>,
    /// Control observations not yet in the record: one per unit (`control: cohort`) or a
    /// single one for every unit (`control: all`).
    control: Vec<Tally>,
    /// Per unit: the findings of the last evaluation this VM made.
    findings: Vec<Vec<Finding>>,
}

impl Sequential {
    fn has_data(&self) -> bool {
        self.gray.iter().any(|(_, t)| !t.is_empty()) || self.control.iter().any(|t| !t.is_empty())
    }
}

/// The clock of one request: read from the host at most once, on demand.
struct Clock {
    at: Option<u64>,
}

impl Clock {
    fn now(&mut self, host: &impl Host) -> u64 {
        *self.at.get_or_insert_with(|| host.now_ns())
    }
}

/// Times of an incident record, ns since the epoch.
#[derive(Debug, Clone, Copy)]
struct Stamp {
    at_ns: u64,
    /// End of the open phase (start records) or start of shedding (end records).
    other_ns: u64,
    /// Start of the period whose failures count as consecutive.
    since_ns: u64,
}

/// The answer to an operator request (`/grayguard/...`), sent by the gateway itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorReply {
    pub status: u16,
    /// A one-line JSON body.
    pub body: String,
}

impl OperatorReply {
    fn new(status: u16, result: &str, detail: &str) -> OperatorReply {
        OperatorReply {
            status,
            body: serde_json::json!({ "result": result, "detail": detail }).to_string(),
        }
    }
}

/// One VM's decision core.
#[derive(Debug)]
pub struct Engine {
    cfg: Config,
    keys: Keys,
    units: usize,
    unit_names: Vec<String>,
    layout: Layout,
    spans: Spans,
    /// Window rings (window detector) and failure streaks (both detectors).
    local: Local,
    /// `local` changed since it was last published.
    dirty: bool,
    /// Whether `local` is published at all (a windowed trigger or a streak is on).
    publish: bool,
    worker: Option<u32>,
    board: BoardCache,
    /// All workers' windows and streaks as of the last tick.
    merged: Option<Merged>,
    /// Window detector: the box-count baseline of the last tick.
    baseline: Option<Baseline>,
    seq: Option<Sequential>,
    draw: Draw,
    pending: Pending,
    /// Gauges as last set by this VM, by stat name (a host call only on change).
    gauges: std::collections::HashMap<String, u64>,
    /// Per unit: the alert gauge this VM last raised (its name carries the link), so that
    /// it is set back to 0 when the alert ends or the link is renewed.
    alert_gauges: Vec<Option<String>>,
    /// Reused buffer for the decision header text.
    scratch: String,
    /// The clock's last reading by this VM (ticks and requests that needed it), ns.
    last_now_ns: u64,
    /// This gateway's id in latch calls (Envoy's node id).
    gateway: String,
    /// Latch and clear calls waiting for the tick.
    latch_outbox: Vec<LatchRequest>,
}

impl Engine {
    /// A VM's core for a validated configuration; `config_text` keys the shared data (a
    /// changed configuration starts clean), `seed` varies per VM.
    pub fn new(cfg: Config, config_text: &[u8], seed: u64) -> Engine {
        let units = cfg.units();
        let sequential = cfg.breach.detector == DetectorKind::Sequential;
        let layout = if sequential {
            Layout::new(0, 0)
        } else {
            Layout::for_config(&cfg)
        };
        let publish = layout.slots > 0 || cfg.breach.consecutive_failures.is_some();
        let unit_names = (0..units)
            .map(|u| match cfg.breach.scope {
                Scope::Rule => cfg.rules.get(u).map_or("?".into(), |r| r.name.clone()),
                Scope::All => "*".into(),
            })
            .collect();
        let plan = Plan::for_breach(&cfg.breach);
        // Without a statistical trigger there is nothing to test: no tallies, no record.
        let seq = (sequential && !plan.tests.is_empty()).then(|| {
            let controls = match plan.control {
                Control::All => 1,
                Control::Cohort => units,
            };
            Sequential {
                plan,
                gray: vec![(0, Tally::default()); units],
                control: vec![Tally::default(); controls],
                findings: vec![Vec::new(); units],
            }
        });
        Engine {
            keys: Keys::new(config_text),
            units,
            unit_names,
            layout,
            spans: Spans::for_config(&cfg),
            local: Local::new(layout, units),
            dirty: false,
            publish,
            worker: None,
            board: BoardCache::new(units),
            merged: None,
            baseline: None,
            seq,
            draw: Draw::new(seed),
            pending: Pending::default(),
            gauges: std::collections::HashMap::new(),
            alert_gauges: vec![None; units],
            scratch: String::with_capacity(128),
            last_now_ns: 0,
            gateway: "gateway".into(),
            latch_outbox: Vec::new(),
            cfg,
        }
    }

    /// This gateway's id in latch calls (the glue passes Envoy's node id).
    pub fn set_gateway(&mut self, id: &str) {
        self.gateway = latching::gateway_id(id);
    }

    /// The id this gateway's latch calls carry.
    pub fn gateway(&self) -> &str {
        &self.gateway
    }

    /// Re-seeds the per-request draws (the glue seeds from the clock and context id).
    pub fn reseed(&mut self, seed: u64) {
        self.draw = Draw::new(seed);
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    pub fn units(&self) -> usize {
        self.units
    }

    /// The name of each unit, as metrics and incidents label it (a rule, or `*`).
    pub fn unit_names(&self) -> &[String] {
        &self.unit_names
    }

    /// Creates the shared board if it is missing (called once per VM at configuration).
    pub fn start(&mut self, host: &impl Host) {
        self.last_now_ns = host.now_ns();
        shared::ensure_board(host, &self.keys.board, self.units);
    }

    /// Counts a client header the glue removed.
    pub fn stripped(&mut self) {
        self.pending.count(Counter::SpoofedHeadersStripped);
    }

    /// Decides where a request goes. `header` looks a (lower-case) request header up.
    ///
    /// The clock is read at most once, and only when something needs it: a rule with
    /// hours, the `x-time-of-day` stamp, an open breaker (open or half-open is read off the
    /// clock), the window detector's buckets. Otherwise the request is stamped with the
    /// time of this VM's last reading (at most one tick old), which is all the sequential
    /// detector's failure streaks need.
    pub fn decide<'h>(
        &mut self,
        host: &impl Host,
        header: impl Fn(&str) -> Option<&'h str>,
    ) -> Routed {
        let mut clock = Clock {
            at: (self.seq.is_none() || self.cfg.time_header_upstream).then(|| host.now_ns()),
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

    /// The `x-canary-decision` text for a request (in a buffer the VM reuses).
    pub fn decision_text(&mut self, r: &Routed) -> &str {
        let name = r
            .decision
            .rule
            .and_then(|i| self.cfg.rules.get(i))
            .map_or("", |rule| rule.name.as_str());
        self.scratch.clear();
        r.decision.header(name).render_into(&mut self.scratch);
        &self.scratch
    }

    /// Whether the response of this request is read at all (gray responses feed the
    /// detector; stable ones are the control and the box-count baseline).
    pub fn reads_response(&self, r: &Routed) -> bool {
        if r.decision.gray {
            return true;
        }
        match &self.seq {
            Some(seq) => match seq.plan.control {
                Control::All => true,
                Control::Cohort => r.decision.why == Why::Percent,
            },
            None => self.cfg.breach.box_count.is_some() && self.layout.slots > 0,
        }
    }

    /// Reads a response's status and signal headers (`header` looks one up, as bytes).
    /// Malformed signals are ignored and counted, never trusted.
    pub fn read<'h>(
        &mut self,
        status: Option<u16>,
        header: impl Fn(&str) -> Option<&'h [u8]>,
    ) -> Reply {
        let (reply, malformed) = signals::read(&self.cfg.breach, status, header);
        self.pending
            .add(Counter::MalformedSignals, u64::from(malformed));
        reply
    }

    /// Books one response (or a reset: `Reply` with `failed`): windows, streaks, evidence,
    /// then the probe verdict or the flag.
    pub fn settle(&mut self, host: &impl Host, r: &Routed, reply: &Reply) {
        let obs = &reply.obs;
        let d = r.decision;
        self.count_signals(d.gray, obs);
        if !d.gray {
            self.observe_control(r, obs);
            return;
        }
        let Some(rule) = d.rule else {
            return;
        };
        let unit = self.cfg.unit_of(rule);
        if obs.failed {
            self.pending.count(Counter::GrayFailures);
        }
        if let Some(ring) = self.local.gray.get_mut(unit)
            && let Some(bucket) = ring.bucket(self.layout, r.at_ns / 1_000_000)
        {
            bucket.responses += 1;
            bucket.failures += u32::from(obs.failed);
            if let Some(ms) = obs.latency_ms {
                bucket.add_latency(ms);
            }
            if let Some(n) = obs.boxes {
                bucket.add_boxes(n);
            }
            self.dirty = true;
        }
        if let (Some(streak), Some(keep)) = (
            self.local.streaks.get_mut(unit),
            self.cfg.breach.consecutive_failures,
        ) {
            if obs.failed {
                streak.failure(r.at_ns, keep as usize);
            } else {
                streak.success(r.at_ns);
            }
            self.dirty = true;
        }
        if let (Some(seq), Why::Matched | Why::Alert(_)) = (&mut self.seq, d.why)
            && let Some((generation, tally)) = seq.gray.get_mut(unit)
        {
            if *generation != r.generation {
                *generation = r.generation;
                *tally = Tally::default();
            }
            tally.observe(obs);
        }
        let flag = self.flag_trigger(unit, reply);
        match d.why {
            Why::Probe => self.probe_result(host, unit, r.generation, reply, flag),
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
    }

    /// A stable response: the window detector's learned baseline, the sequential control.
    fn observe_control(&mut self, r: &Routed, obs: &Observation) {
        if self.cfg.breach.box_count.is_some()
            && let Some(n) = obs.boxes
            && let Some(bucket) = self.local.stable.bucket(self.layout, r.at_ns / 1_000_000)
        {
            bucket.add_boxes(n);
            self.dirty = true;
        }
        let Some(seq) = &mut self.seq else {
            return;
        };
        let slot = match seq.plan.control {
            Control::All => Some(0),
            Control::Cohort => match (r.decision.why, r.decision.rule) {
                (Why::Percent, Some(rule)) => Some(self.cfg.unit_of(rule)),
                _ => None,
            },
        };
        if let Some(t) = slot.and_then(|i| seq.control.get_mut(i)) {
            t.observe(obs);
        }
    }

    /// Opens `unit`'s breaker now if it is closed. Only the worker whose compare-and-swap
    /// wins logs and counts it.
    pub fn trip(&mut self, host: &impl Host, unit: usize, trigger: Trigger, reason: Option<&str>) {
        let now = host.now_ns();
        let shed_ms = self.cfg.breach.shed_for_ms;
        let done = shared::update_board(host, &self.keys.board, self.units, |board| {
            let b = board.0.get(unit)?;
            if b.phase(now) != Phase::Closed {
                return None;
            }
            let mut next = board.clone();
            let opened = b.trip(now, trigger, shed_ms);
            *next.0.get_mut(unit)? = opened;
            Some((next, (opened.until_ns, b.since_ns)))
        });
        if let Some((board, (until, closed_since))) = done {
            self.remember(host, board);
            self.pending.count(Counter::Breaches(trigger));
            self.queue_latch(unit, Some(trigger), 0);
            let at = Stamp {
                at_ns: now,
                other_ns: until,
                since_ns: closed_since,
            };
            self.incident(host, Event::ShedStart, unit, trigger, reason, at, false);
        }
    }

    /// Queues a latch (`trigger`: this gateway just shed `unit`) or a clear (`None`: its
    /// probes proved gray healthy for `healthy_for_ms`) for the next tick. A shed that
    /// came from another gateway's latch is not latched again (the latch would feed itself),
    /// and dry run latches nothing.
    fn queue_latch(&mut self, unit: usize, trigger: Option<Trigger>, healthy_for_ms: u64) {
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

    /// Sends the queued latch calls, each `calls` times (spread over the gray pods by the
    /// cluster's load balancing).
    fn send_latches(&mut self, host: &impl Host) {
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

    /// The answer to an HTTP call this VM sent (`None`: no answer, a timeout or reset).
    pub fn answered(&mut self, host: &impl Host, status: Option<u16>) {
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

    /// Applies a half-open probe's result.
    fn probe_result(
        &mut self,
        host: &impl Host,
        unit: usize,
        generation: u32,
        reply: &Reply,
        flag: Option<Trigger>,
    ) {
        let now = host.now_ns();
        let obs = Observation {
            flagged: flag.is_some(),
            ..reply.obs
        };
        // A flag is the workload's own trouble, or another gateway's latch for this rule.
        let verdict = self.judge_probe(host, unit, &obs).map_err(|t| {
            if t == Trigger::Flag {
                flag.unwrap_or(t)
            } else {
                t
            }
        });
        let b = &self.cfg.breach;
        let (needed, shed_ms) = (b.probe_successes, b.shed_for_ms);
        let done = shared::update_board(host, &self.keys.board, self.units, |board| {
            let cur = board.0.get(unit)?;
            let (next_b, outcome) = cur.probe(now, generation, verdict, needed, shed_ms)?;
            let mut next = board.clone();
            *next.0.get_mut(unit)? = next_b;
            Some((
                next,
                (
                    outcome,
                    cur.since_ns,
                    next_b.until_ns,
                    cur.trigger,
                    cur.until_ns,
                ),
            ))
        });
        let Some((board, (outcome, opened_at, until, old_trigger, half_open_at))) = done else {
            return;
        };
        self.remember(host, board);
        match outcome {
            ProbeOutcome::Counted => {}
            ProbeOutcome::Closed => {
                let t = old_trigger.unwrap_or(Trigger::Flag);
                // Every probe since the half-open phase began was healthy: latches older
                // than that are stale, fresher ones are another gateway's news and stay.
                let healthy_for_ms = now.saturating_sub(half_open_at) / 1_000_000;
                self.queue_latch(unit, None, healthy_for_ms);
                let at = Stamp {
                    at_ns: now,
                    other_ns: opened_at,
                    since_ns: now,
                };
                self.incident(host, Event::ShedEnd, unit, t, None, at, false);
            }
            ProbeOutcome::Reopened(t) => {
                self.pending.count(Counter::Breaches(t));
                self.queue_latch(unit, Some(t), 0);
                let reason = (t == Trigger::Flag)
                    .then_some(reply.flag_reason.as_deref())
                    .flatten();
                let at = Stamp {
                    at_ns: now,
                    other_ns: until,
                    since_ns: now,
                };
                self.incident(host, Event::ShedStart, unit, t, reason, at, true);
            }
        }
    }

    /// Judges one probe on its own. The window detector compares it with its baseline
    /// band; the sequential one with the control of the epoch that tripped (mean ± 3 sd,
    /// widened by the margin), so one ordinary answer of a healthy version passes.
    fn judge_probe(&self, host: &impl Host, unit: usize, o: &Observation) -> Result<(), Trigger> {
        let b = &self.cfg.breach;
        if self.seq.is_none() {
            return breach::judge_probe(b, o, self.baseline);
        }
        let control = host
            .get_shared(&self.keys.evidence)
            .0
            .and_then(|bytes| Record::decode(&bytes, self.units).ok())
            .and_then(|r| r.0.get(unit).map(|u| u.epoch.control));
        breach::judge_probe_against(b, o, control.as_ref())
    }

    /// Keeps a board this VM just wrote and moves the change mark for every worker.
    fn remember(&mut self, host: &impl Host, board: Board) {
        self.board = BoardCache {
            board,
            cas: None,
            mark: None,
        };
        host.bump_board_mark();
    }

    #[allow(clippy::too_many_arguments)]
    fn incident(
        &self,
        host: &impl Host,
        event: Event,
        unit: usize,
        trigger: Trigger,
        flag_reason: Option<&str>,
        at: Stamp,
        probe: bool,
    ) {
        self.incident_by(
            host,
            event,
            unit,
            trigger,
            flag_reason,
            at,
            probe,
            incident::Operator::default(),
        );
    }

    #[allow(clippy::too_many_arguments)]
    fn incident_by(
        &self,
        host: &impl Host,
        event: Event,
        unit: usize,
        trigger: Trigger,
        flag_reason: Option<&str>,
        at: Stamp,
        probe: bool,
        operator: incident::Operator<'_>,
    ) {
        let merged = self.merged.as_ref();
        let consecutive = merged.map_or(0, |m| m.consecutive(unit, at.since_ns));
        let detail = match self.cfg.breach.detector {
            DetectorKind::Window => Detail::Window {
                window: merged.and_then(|m| m.gray.get(unit).copied()),
                baseline: self.baseline,
            },
            DetectorKind::Sequential => Detail::Sequential {
                findings: self
                    .findings(unit)
                    .iter()
                    .filter(|f| f.hypothesis.trigger() == trigger)
                    .copied()
                    .collect(),
            },
        };
        let line = incident::line(
            &self.cfg,
            &Incident {
                event,
                trigger,
                flag_reason,
                unit,
                at_ns: at.at_ns,
                other_ns: at.other_ns,
                detail,
                consecutive,
                probe,
                operator,
            },
        );
        host.log(Level::Warn, &line);
    }

    /// The tick: publish this VM's windows and streaks, merge every VM's, add this VM's
    /// evidence to the shared record, evaluate every closed unit, trip, set the gauges and
    /// hand the counters over.
    pub fn tick(&mut self, host: &impl Host) {
        let now = host.now_ns();
        self.last_now_ns = self.last_now_ns.max(now);
        let board = self
            .board
            .refresh(host, &self.keys.board, self.units)
            .clone();
        if self.publish {
            let workers = self.publish_local(host, now);
            self.merge(host, now, &workers, &board);
        }
        let mut fire: Vec<(usize, Trigger)> = Vec::new();
        for (unit, b) in board.0.iter().enumerate() {
            if b.phase(now) != Phase::Closed {
                continue;
            }
            let consecutive = self
                .merged
                .as_ref()
                .map_or(0, |m| m.consecutive(unit, b.since_ns));
            if self
                .cfg
                .breach
                .consecutive_failures
                .is_some_and(|n| consecutive >= n)
            {
                fire.push((unit, Trigger::ConsecutiveFailures));
                continue;
            }
            if self.seq.is_none()
                && let Some(gray) = self.merged.as_ref().and_then(|m| m.gray.get(unit))
                && let Some(t) = breach::evaluate(&self.cfg.breach, gray, self.baseline, 0)
            {
                fire.push((unit, t));
            }
        }
        fire.extend(self.flush_evidence(host, now, &board));
        for (unit, t) in fire {
            let statistical =
                matches!(t, Trigger::Latency | Trigger::BoxCount | Trigger::ErrorRate);
            if statistical && self.action_of(unit) == Action::Confirm {
                self.raise_alert(host, unit, t);
            } else {
                self.trip(host, unit, t, None);
            }
        }
        self.set_gauges(host, now);
        self.send_latches(host);
        for (c, n) in self.pending.drain() {
            host.add_counter(c, n);
        }
    }

    /// Claims a worker id when needed and publishes `local` when it changed; returns the
    /// worker list.
    fn publish_local(&mut self, host: &impl Host, now: u64) -> Vec<u32> {
        let mut workers = shared::workers(host, &self.keys.workers);
        // Checked on every tick, not only once: the list's first write cannot be guarded by
        // a CAS, so a VM's entry can be lost, and a VM missing from the list would go
        // unseen by every evaluator for good.
        if !self.worker.is_some_and(|id| workers.contains(&id)) {
            let draw = &mut self.draw;
            let next = || (draw.next_u64() >> 32) as u32;
            if let Some(id) = shared::claim_worker(host, &self.keys.workers, self.worker, next) {
                self.worker = Some(id);
                self.dirty = true;
                workers = shared::workers(host, &self.keys.workers);
            }
        }
        if let (true, Some(id)) = (self.dirty, self.worker)
            && host
                .set_shared(
                    &self.keys.worker(id),
                    &self.local.encode(now / 1_000_000),
                    None,
                )
                .is_ok()
        {
            self.dirty = false;
        }
        workers
    }

    /// Merges every VM's windows and streaks (and, for the window detector, moves the
    /// learned baseline on).
    fn merge(&mut self, host: &impl Host, now: u64, workers: &[u32], board: &Board) {
        let since_ms: Vec<u64> = board
            .0
            .iter()
            .map(|b| {
                if b.tripped {
                    u64::MAX
                } else {
                    b.since_ns / 1_000_000
                }
            })
            .collect();
        let mut merged = Merged::new(self.units);
        for &id in workers {
            if let Some(bytes) = host.get_shared(&self.keys.worker(id)).0 {
                // A snapshot that does not decode (an older filter build) is skipped.
                let _ = merged.add(&bytes, self.layout, self.spans, now / 1_000_000, &since_ms);
            }
        }
        if self.seq.is_none() {
            self.baseline = self
                .cfg
                .breach
                .box_count
                .as_ref()
                .and_then(|t| Baseline::next(t, &merged.stable, self.baseline));
        }
        self.merged = Some(merged);
    }

    /// Adds this VM's observations to the shared evidence record (one compare-and-swap),
    /// then evaluates the closed units on the record as written. Returns the units whose
    /// tests crossed, with the trigger.
    fn flush_evidence(
        &mut self,
        host: &impl Host,
        now: u64,
        board: &Board,
    ) -> Vec<(usize, Trigger)> {
        let units = self.units;
        let Some(seq) = &mut self.seq else {
            return Vec::new();
        };
        if !seq.has_data() {
            return Vec::new();
        }
        let closed: Vec<Option<u32>> = board
            .0
            .iter()
            .map(|b: &Breaker| (b.phase(now) == Phase::Closed).then_some(b.generation))
            .collect();
        let segment = seq.plan.segment_responses;
        let (gray, control, control_kind) = (&seq.gray, &seq.control, seq.plan.control);
        let written = shared::update(
            host,
            &self.keys.evidence,
            |bytes| {
                bytes
                    .and_then(|b| Record::decode(&b, units).ok())
                    .unwrap_or_else(|| Record::new(units))
            },
            Record::encode,
            |rec| {
                let mut next = rec.clone();
                for (unit, generation) in closed.iter().enumerate() {
                    let Some(generation) = *generation else {
                        continue;
                    };
                    let empty = Tally::default();
                    let g = gray
                        .get(unit)
                        .filter(|(seen, _)| *seen == generation)
                        .map_or(&empty, |(_, t)| t);
                    let c = match control_kind {
                        Control::All => control.first(),
                        Control::Cohort => control.get(unit),
                    }
                    .unwrap_or(&empty);
                    if g.is_empty() && c.is_empty() {
                        continue;
                    }
                    next.unit_for(unit, generation)?.add(g, c, segment);
                }
                Some((next, ()))
            },
        );
        // On failure (contention, a host error) the observations wait for the next tick.
        let Some((record, ())) = written else {
            return Vec::new();
        };
        for (_, t) in &mut seq.gray {
            *t = Tally::default();
        }
        for t in &mut seq.control {
            *t = Tally::default();
        }
        let mut fire = Vec::new();
        for (unit, generation) in closed.iter().enumerate() {
            let (Some(generation), Some(u)) = (generation, record.0.get(unit)) else {
                continue;
            };
            if u.generation != *generation {
                continue;
            }
            let findings = evidence::evaluate(&seq.plan, &self.cfg.breach, u);
            if let Some(f) = evidence::verdict(&findings) {
                fire.push((unit, f.hypothesis.trigger()));
            }
            if let Some(slot) = seq.findings.get_mut(unit) {
                *slot = findings;
            }
        }
        fire
    }

    /// The evidence of a unit as this VM last evaluated it.
    pub fn findings(&self, unit: usize) -> &[Finding] {
        self.seq
            .as_ref()
            .and_then(|s| s.findings.get(unit))
            .map_or(&[], Vec::as_slice)
    }

    /// The shared evidence of a unit, as stored now.
    pub fn evidence(&self, host: &impl Host, unit: usize) -> Option<UnitEvidence> {
        let bytes = host.get_shared(&self.keys.evidence).0?;
        Record::decode(&bytes, self.units)
            .ok()?
            .0
            .get(unit)
            .copied()
    }

    fn set_gauges(&mut self, host: &impl Host, now: u64) {
        let board = self.board.board.clone();
        let phases: Vec<Phase> = board.0.iter().map(|b| b.phase(now)).collect();
        let worst = phases
            .iter()
            .copied()
            .max_by_key(|p| p.severity())
            .unwrap_or(Phase::Closed);
        let open = phases.iter().filter(|p| **p != Phase::Closed).count();
        let mut set = vec![
            (Gauge::BreakerState, worst.gauge()),
            (Gauge::BreakersOpen, open as u64),
        ];
        for (u, p) in phases.iter().enumerate() {
            set.push((Gauge::UnitState(u), p.gauge()));
        }
        if let Some(seq) = &self.seq {
            // Envoy's gauges are shared by every VM, so each VM publishes the evidence of the
            // shared record (not its own last evaluation, which goes stale on a VM that saw
            // no traffic or whose breaker opened elsewhere): the last writer cannot disagree.
            let record = host
                .get_shared(&self.keys.evidence)
                .0
                .and_then(|b| Record::decode(&b, self.units).ok())
                .map(|r| r.0);
            // A closed breaker shows its current epoch; an open one the epoch that it ended.
            let current = |u: usize, e: &UnitEvidence| {
                phases.get(u).is_some_and(|p| *p != Phase::Closed)
                    || board.0.get(u).is_some_and(|b| b.generation == e.generation)
            };
            for (u, own) in seq.findings.iter().enumerate() {
                let shared = record.as_ref().map(|r| {
                    r.get(u)
                        .filter(|e| current(u, e))
                        .map(|e| evidence::evaluate(&seq.plan, &self.cfg.breach, e))
                        .unwrap_or_default()
                });
                let findings = shared.as_deref().unwrap_or(own);
                for t in seq.plan.tests.iter().map(|t| t.hypothesis.trigger()) {
                    let pct = findings
                        .iter()
                        .filter(|f| f.hypothesis.trigger() == t)
                        .map(Finding::percent)
                        .fold(0.0, f64::max);
                    set.push((Gauge::Evidence(u, t), pct.round() as u64));
                }
            }
        }
        for (u, b) in board.0.iter().enumerate() {
            let name = match (b.alert, &self.cfg.operator) {
                (Some(t), Some(_)) if !b.tripped => Some(gauge_name(
                    Gauge::Alert(u, t),
                    &self.unit_names,
                    &self.link(u, t, b.alert_since_ns, now).query(),
                )),
                _ => None,
            };
            if let Some(slot) = self.alert_gauges.get_mut(u)
                && *slot != name
            {
                // The alert ended, or its link was renewed: the old series goes to 0.
                if let Some(old) = slot.take() {
                    host.set_gauge(&old, 0);
                    self.gauges.insert(old, 0);
                }
                if let Some(new) = &name {
                    host.set_gauge(new, 1);
                    self.gauges.insert(new.clone(), 1);
                }
                *slot = name;
            }
        }
        for (g, v) in set {
            let name = gauge_name(g, &self.unit_names, "");
            if self.gauges.get(&name) != Some(&v) {
                host.set_gauge(&name, v);
                self.gauges.insert(name, v);
            }
        }
    }

    /// What a statistical trigger does for `unit`: its rule's action (`scope: rule`) or
    /// `breach.action` (`scope: all`).
    fn action_of(&self, unit: usize) -> Action {
        match self.cfg.breach.scope {
            Scope::Rule => self
                .cfg
                .rules
                .get(unit)
                .map_or(self.cfg.breach.action, |r| r.action),
            Scope::All => self.cfg.breach.action,
        }
    }

    /// The link advertised now for an alert raised at `since_ns`: renewed every
    /// `link_ttl_s`, each valid for two periods, so the one in a message stays valid at
    /// least `link_ttl_s` after the next replaces it. Every VM computes the same one.
    fn link(
        &self,
        unit: usize,
        trigger: Trigger,
        since_ns: u64,
        now_ns: u64,
    ) -> grayguard_contract::operator::Link {
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

    /// Confirm mode: raises `unit`'s alert instead of shedding (one compare-and-swap; the
    /// winner logs it).
    fn raise_alert(&mut self, host: &impl Host, unit: usize, trigger: Trigger) {
        let now = host.now_ns();
        let done = shared::update_board(host, &self.keys.board, self.units, |board| {
            let b = board.0.get(unit)?;
            let raised = b.raise_alert(now, trigger)?;
            let mut next = board.clone();
            *next.0.get_mut(unit)? = raised;
            Some((next, b.since_ns))
        });
        if let Some((board, closed_since)) = done {
            self.remember(host, board);
            self.pending.count(Counter::Alerts);
            let link = self.link(unit, trigger, now, now).query();
            let at = Stamp {
                at_ns: now,
                other_ns: now,
                since_ns: closed_since,
            };
            let op = incident::Operator {
                link: Some(&link),
                ..Default::default()
            };
            self.incident_by(host, Event::AlertStart, unit, trigger, None, at, false, op);
        }
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
        use grayguard_contract::operator::{CONFIRM, DISMISS, Link};
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
        link: &grayguard_contract::operator::Link,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;
    use crate::evidence::Hypothesis;
    use crate::host::{Faults, MemoryHost};
    use crate::metrics::Gauge;

    const T0: u64 = 1_700_000_000_000_000_000;

    fn engine(host: &MemoryHost, json: &str, seed: u64) -> Engine {
        let cfg = parse(json.as_bytes()).unwrap();
        let mut e = Engine::new(cfg, json.as_bytes(), seed);
        e.start(host);
        e
    }

    fn ask(e: &mut Engine, h: &MemoryHost, kind: &str) -> Routed {
        e.decide(h, |name| (name == "x-device-type").then_some(kind))
    }

    /// A response with the given latency and box count (and optional flag).
    fn answer(
        e: &mut Engine,
        h: &MemoryHost,
        r: &Routed,
        lat: f64,
        boxes: u32,
        flag: Option<&str>,
    ) {
        let (lat, boxes) = (format!("{lat}"), boxes.to_string());
        let reply = e.read(Some(200), |name| match name {
            "x-inference-latency-ms" => Some(lat.as_bytes()),
            "x-box-count" => Some(boxes.as_bytes()),
            "x-canary-breach" => flag.map(str::as_bytes),
            _ => None,
        });
        e.settle(h, r, &reply);
    }

    fn fail(e: &mut Engine, h: &MemoryHost, r: &Routed) {
        let reply = e.read(Some(503), |_| None);
        e.settle(h, r, &reply);
    }

    fn text(e: &mut Engine, r: &Routed) -> String {
        e.decision_text(r).to_string()
    }

    fn incidents(h: &MemoryHost) -> Vec<serde_json::Value> {
        h.logs()
            .iter()
            .filter(|(_, l)| l.contains("\"incident\""))
            .map(|(_, l)| serde_json::from_str(l).unwrap())
            .collect()
    }

    const SEQ: &str = r#"{"stable":"v9","gray":"v10","sync_ms":100,
      "rules":[{"name":"cranes","headers":{"x-device-type":{"exact":"crane"}}}],
      "breach":{"latency":{"header":"x-inference-latency-ms","min_samples":10},
                "box_count":{"header":"x-box-count","min_samples":10},
                "error_rate":{"min_samples":10},
                "consecutive_failures":4,
                "shed_for_s":10,"probe_percent":100,"probe_successes":2}}"#;

    /// Gray and stable traffic interleaved over two VMs, the tick every 100 ms.
    fn traffic(
        vms: &mut [Engine],
        h: &MemoryHost,
        steps: usize,
        gray_boxes: impl Fn(usize) -> u32,
    ) {
        for i in 0..steps {
            let n = vms.len();
            let e = &mut vms[i % n];
            let r = ask(e, h, "crane");
            let boxes = if r.decision.gray { gray_boxes(i) } else { 5 };
            answer(
                e,
                h,
                &r,
                100.0 + (i % 7) as f64,
                boxes + (i % 3) as u32,
                None,
            );
            let s = ask(e, h, "dock");
            answer(e, h, &s, 100.0 + (i % 5) as f64, 4 + (i % 3) as u32, None);
            if i % 5 == 4 {
                h.advance_ms(100);
                for e in vms.iter_mut() {
                    e.tick(h);
                }
            }
        }
    }

    #[test]
    fn routes_by_rule_and_renders_the_decision() {
        let h = MemoryHost::new(T0);
        let mut e = engine(&h, SEQ, 1);
        let g = ask(&mut e, &h, "crane");
        assert!(g.decision.gray);
        assert_eq!(text(&mut e, &g), "gray; rule=cranes");
        let s = ask(&mut e, &h, "dock");
        assert_eq!(text(&mut e, &s), "stable; no-rule");
        e.tick(&h);
        assert_eq!(h.counter(Counter::RoutedGray), 1);
        assert_eq!(h.counter(Counter::RoutedStable), 1);
    }

    #[test]
    fn the_flag_sheds_the_very_next_request_on_every_vm() {
        let h = MemoryHost::new(T0);
        let mut a = engine(&h, SEQ, 1);
        let mut b = engine(&h, SEQ, 2);
        let r = ask(&mut a, &h, "crane");
        answer(&mut a, &h, &r, 10.0, 3, Some("box_count"));
        let next = ask(&mut b, &h, "crane");
        assert_eq!(text(&mut b, &next), "stable; rule=cranes; shed=flag");
        let i = incidents(&h);
        assert_eq!(i.len(), 1);
        assert_eq!(
            (i[0]["trigger"].as_str(), i[0]["flag_reason"].as_str()),
            (Some("flag"), Some("box_count"))
        );
    }

    #[test]
    fn a_flood_is_shed_by_the_sequential_detector_across_two_vms() {
        let h = MemoryHost::new(T0);
        let mut vms = vec![engine(&h, SEQ, 1), engine(&h, SEQ, 2)];
        traffic(&mut vms, &h, 200, |_| 5);
        assert!(incidents(&h).is_empty(), "healthy gray is not shed");
        // Both VMs' observations are in the one shared record, none twice.
        let ev = vms[0].evidence(&h, 0).unwrap();
        assert_eq!(ev.epoch.gray.rate.n, 200.0);
        assert_eq!(ev.epoch.control.rate.n, 200.0);
        traffic(&mut vms, &h, 100, |_| 20);
        let i = incidents(&h);
        assert_eq!(i.len(), 1, "{i:?}");
        assert_eq!(i[0]["trigger"], "box_count");
        assert_eq!(i[0]["detector"], "sequential");
        let crossed: Vec<_> = i[0]["evidence"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["crossed"] == true)
            .collect();
        assert!(!crossed.is_empty());
        // The flood came after 200 healthy responses: the segment test caught it.
        assert!(crossed.iter().any(|f| f["test"] == "box_count_above"));
        let shed = ask(&mut vms[1], &h, "crane");
        assert_eq!(
            text(&mut vms[1], &shed),
            "stable; rule=cranes; shed=box_count"
        );
        // The gauges say so, whichever VM writes them last: Envoy shares one gauge among
        // all VMs, and a VM that saw none of the traffic must not overwrite the evidence.
        let mut idle = engine(&h, SEQ, 3);
        let names = idle.unit_names().to_vec();
        let gauge = |g| h.gauge(&gauge_name(g, &names, ""));
        for last in 0..3 {
            vms[0].tick(&h);
            vms[1].tick(&h);
            idle.tick(&h);
            if last < 2 {
                vms[last].tick(&h);
            }
            assert_eq!(gauge(Gauge::BreakerState), Some(1));
            let pct = gauge(Gauge::Evidence(0, Trigger::BoxCount)).unwrap();
            assert!(pct >= 100, "last writer {last}: {pct}");
        }
    }

    #[test]
    fn half_open_probes_close_and_a_new_epoch_starts() {
        let h = MemoryHost::new(T0);
        let mut vms = vec![engine(&h, SEQ, 1)];
        traffic(&mut vms, &h, 100, |_| 20);
        assert_eq!(incidents(&h).len(), 1);
        let e = &mut vms[0];
        h.advance_ms(10_000);
        e.tick(&h);
        for _ in 0..2 {
            let p = ask(e, &h, "crane");
            assert_eq!(text(e, &p), "gray; rule=cranes; probe");
            answer(e, &h, &p, 100.0, 5, None);
        }
        let back = ask(e, &h, "crane");
        assert_eq!(text(e, &back), "gray; rule=cranes");
        let i = incidents(&h);
        assert_eq!(i.last().unwrap()["event"], "shed_end");
        // The evidence gauge starts the new epoch from nothing.
        e.tick(&h);
        let g = gauge_name(Gauge::Evidence(0, Trigger::BoxCount), e.unit_names(), "");
        assert_eq!(h.gauge(&g), Some(0));
        // The incident's observations do not count against the new epoch.
        traffic(&mut vms, &h, 10, |_| 5);
        let ev = vms[0].evidence(&h, 0).unwrap();
        assert!(ev.epoch.gray.rate.n <= 10.0, "{ev:?}");
    }

    #[test]
    fn a_bad_probe_reopens() {
        let h = MemoryHost::new(T0);
        let mut vms = vec![engine(&h, SEQ, 1)];
        traffic(&mut vms, &h, 100, |_| 20);
        let e = &mut vms[0];
        h.advance_ms(10_000);
        let p = ask(e, &h, "crane");
        answer(e, &h, &p, 100.0, 60, None);
        let i = incidents(&h);
        assert_eq!(i.len(), 2);
        assert_eq!(
            (i[1]["trigger"].as_str(), i[1]["after_probe"].as_bool()),
            (Some("box_count"), Some(true))
        );
        let again = ask(e, &h, "crane");
        assert_eq!(text(e, &again), "stable; rule=cranes; shed=box_count");
    }

    #[test]
    fn consecutive_failures_shed_across_vms() {
        let h = MemoryHost::new(T0);
        let mut vms = [engine(&h, SEQ, 1), engine(&h, SEQ, 2)];
        for i in 0..4 {
            let e = &mut vms[i % 2];
            let r = ask(e, &h, "crane");
            fail(e, &h, &r);
            h.advance_ms(1);
        }
        h.advance_ms(100);
        for e in &mut vms {
            e.tick(&h);
        }
        h.advance_ms(100);
        vms[0].tick(&h);
        let i = incidents(&h);
        assert_eq!(i.len(), 1, "{i:?}");
        assert_eq!(i[0]["trigger"], "consecutive_failures");
    }

    #[test]
    fn a_streak_after_a_success_within_one_tick_still_counts() {
        let h = MemoryHost::new(T0);
        let mut e = engine(&h, SEQ, 1);
        let ok = ask(&mut e, &h, "crane");
        answer(&mut e, &h, &ok, 100.0, 5, None);
        for _ in 0..4 {
            let r = ask(&mut e, &h, "crane");
            fail(&mut e, &h, &r);
        }
        e.tick(&h);
        assert_eq!(incidents(&h)[0]["trigger"], "consecutive_failures");
    }

    const SECRET: &str = "a-secret-of-at-least-16-bytes";

    fn confirm_config() -> String {
        SEQ.replace(
            "\"shed_for_s\":10",
            "\"shed_for_s\":10,\"action\":\"confirm\"",
        )
        .replace(
            "\"sync_ms\":100,",
            &format!("\"sync_ms\":100,\"operator\":{{\"port\":10100,\"secret\":\"{SECRET}\",\"identity_header\":\"x-user\"}},"),
        )
    }

    /// The alert gauge's link (its `confirm` label).
    fn alert_link(h: &MemoryHost) -> String {
        let gauges = h.gauges();
        let (name, _) = gauges
            .iter()
            .find(|(n, v)| n.ends_with("grayguard_alert") && **v == 1)
            .expect("an alert gauge at 1");
        let start = name.find("confirm=.=").unwrap() + "confirm=.=".len();
        name[start..name[start..].find(";.;").unwrap() + start].to_string()
    }

    #[test]
    fn confirm_mode_alerts_instead_of_shedding_until_a_person_confirms() {
        let h = MemoryHost::new(T0);
        let mut vms = vec![
            engine(&h, &confirm_config(), 1),
            engine(&h, &confirm_config(), 2),
        ];
        traffic(&mut vms, &h, 100, |_| 20);
        let i = incidents(&h);
        assert_eq!(
            (i.len(), i[0]["event"].as_str()),
            (1, Some("alert_start")),
            "{i:?}"
        );
        let link = alert_link(&h);
        assert_eq!(i[0]["confirm"].as_str(), Some(link.as_str()));
        // Gray keeps serving, and says so.
        let r = ask(&mut vms[0], &h, "crane");
        assert_eq!(text(&mut vms[0], &r), "gray; rule=cranes; alert=box_count");
        // The public listener refuses the link; a forged one is refused on the operator's.
        let refused = vms[1].operator(&h, "/grayguard/confirm", &link, false, None, None);
        assert_eq!(refused.status, 403);
        let forged = link.replace("trigger=box_count", "trigger=latency");
        assert_eq!(
            vms[1]
                .operator(&h, "/grayguard/confirm", &forged, true, None, None)
                .status,
            403
        );
        // Confirmed: shed at once, with the person in the record; a second click changes nothing.
        let ok = vms[1].operator(
            &h,
            "/grayguard/confirm",
            &link,
            true,
            Some("ana@ops"),
            Some("10.0.0.7:5123"),
        );
        assert_eq!(
            (ok.status, ok.body.contains("\"shed\"")),
            (200, true),
            "{ok:?}"
        );
        let again = vms[0].operator(&h, "/grayguard/confirm", &link, true, Some("ana@ops"), None);
        assert_eq!(
            (again.status, again.body.contains("already_shed")),
            (200, true)
        );
        let shed = ask(&mut vms[0], &h, "crane");
        assert_eq!(
            text(&mut vms[0], &shed),
            "stable; rule=cranes; shed=box_count"
        );
        let i = incidents(&h);
        assert_eq!(i.len(), 2, "{i:?}");
        assert_eq!(
            (i[1]["event"].as_str(), i[1]["confirmed_by"].as_str()),
            (Some("shed_start"), Some("ana@ops"))
        );
        assert_eq!(i[1]["operator_from"], "10.0.0.7:5123");
        for e in &mut vms {
            e.tick(&h);
        }
        assert_eq!(h.counter(Counter::Confirmations), 1);
        assert_eq!(h.counter(Counter::OperatorRefused), 2);
        assert!(
            !h.gauges()
                .iter()
                .any(|(n, v)| n.ends_with("grayguard_alert") && *v == 1)
        );
    }

    #[test]
    fn confirm_mode_leaves_outright_failure_to_no_one_and_can_be_dismissed() {
        let h = MemoryHost::new(T0);
        let mut e = engine(&h, &confirm_config(), 1);
        // The flag still sheds at once.
        let r = ask(&mut e, &h, "crane");
        answer(&mut e, &h, &r, 10.0, 3, Some("latency"));
        assert_eq!(incidents(&h)[0]["event"], "shed_start");
        // A dismissed alert ends without a shed and the evidence starts afresh.
        let h = MemoryHost::new(T0);
        let mut vms = vec![engine(&h, &confirm_config(), 1)];
        traffic(&mut vms, &h, 100, |_| 20);
        let link = alert_link(&h);
        let d = vms[0].operator(&h, "/grayguard/dismiss", &link, true, None, None);
        assert_eq!(d.status, 200, "{d:?}");
        assert_eq!(
            vms[0]
                .operator(&h, "/grayguard/confirm", &link, true, None, None)
                .status,
            409
        );
        let i = incidents(&h);
        assert_eq!(
            (i[1]["event"].as_str(), i[1]["dismissed_by"].as_str()),
            (Some("alert_dismissed"), Some("anonymous"))
        );
        let r = ask(&mut vms[0], &h, "crane");
        assert_eq!(text(&mut vms[0], &r), "gray; rule=cranes");
        // An expired link no longer works.
        traffic(&mut vms, &h, 100, |_| 20);
        let link = alert_link(&h);
        h.advance_ms(3 * 3_600_000);
        let late = vms[0].operator(&h, "/grayguard/confirm", &link, true, None, None);
        assert_eq!(
            (late.status, late.body.contains("expired")),
            (403, true),
            "{late:?}"
        );
    }

    #[test]
    fn confirm_mode_needs_an_operator_listener() {
        let no_operator = SEQ.replace(
            "\"shed_for_s\":10",
            "\"shed_for_s\":10,\"action\":\"confirm\"",
        );
        let err = parse(no_operator.as_bytes()).unwrap_err();
        assert_eq!(err.field(), "rules[0].action");
        let h = MemoryHost::new(T0);
        let mut e = engine(&h, SEQ, 1);
        let r = e.operator(&h, "/grayguard/confirm", "rule=cranes", true, None, None);
        assert_eq!(r.status, 403);
    }

    fn latch_config() -> String {
        SEQ.replace(
            "\"shed_for_s\":10",
            "\"shed_for_s\":10,\"latch\":{\"cluster\":\"gray-control\",\"calls\":2,\"timeout_ms\":300}",
        )
    }

    #[test]
    fn a_first_hand_shed_latches_the_gray_workload_on_the_next_tick() {
        let h = MemoryHost::new(T0);
        let mut e = engine(&h, &latch_config(), 1);
        e.set_gateway("gw 1");
        let r = ask(&mut e, &h, "crane");
        answer(&mut e, &h, &r, 10.0, 3, Some("box_count"));
        assert!(
            h.calls().is_empty(),
            "sent from the tick, not the request path"
        );
        e.tick(&h);
        let calls = h.calls();
        assert_eq!(calls.len(), 2, "{calls:?}");
        let c = &calls[0];
        assert_eq!((c.cluster.as_str(), c.timeout_ms), ("gray-control", 300));
        assert!(
            c.headers
                .contains(&(":path".into(), "/grayguard/latch".into()))
        );
        assert!(c.headers.contains(&(":method".into(), "POST".into())));
        assert_eq!(
            c.body,
            "action=latch&rule=cranes&trigger=flag&for_ms=10000&gateway=gw_1"
        );
        assert_eq!(h.counter(Counter::LatchCalls), 2);
        // An answer that is not 2xx, or none, counts as a failure.
        e.answered(&h, Some(200));
        e.answered(&h, Some(503));
        e.answered(&h, None);
        e.tick(&h);
        assert_eq!(h.counter(Counter::LatchFailures), 2);
    }

    #[test]
    fn another_gateways_latch_sheds_this_rule_and_is_not_passed_on() {
        let h = MemoryHost::new(T0);
        let mut e = engine(&h, &latch_config(), 1);
        // A latch for another rule is none of this rule's business.
        let r = ask(&mut e, &h, "crane");
        answer(&mut e, &h, &r, 10.0, 3, Some("latched:box_count@gates"));
        assert!(incidents(&h).is_empty());
        let r = ask(&mut e, &h, "crane");
        answer(&mut e, &h, &r, 10.0, 3, Some("latched:box_count@cranes"));
        let i = incidents(&h);
        assert_eq!(
            (i[0]["trigger"].as_str(), i[0]["flag_reason"].as_str()),
            (Some("latch"), Some("latched:box_count@cranes"))
        );
        let next = ask(&mut e, &h, "crane");
        assert_eq!(text(&mut e, &next), "stable; rule=cranes; shed=latch");
        e.tick(&h);
        assert!(h.calls().is_empty(), "a latch is not latched again");
        // The workload's own reason beside a latch is first-hand.
        let h = MemoryHost::new(T0);
        let mut e = engine(&h, &latch_config(), 1);
        let r = ask(&mut e, &h, "crane");
        answer(
            &mut e,
            &h,
            &r,
            10.0,
            3,
            Some("memory,latched:box_count@gates"),
        );
        e.tick(&h);
        assert_eq!(incidents(&h)[0]["trigger"], "flag");
        assert_eq!(h.calls().len(), 2);
    }

    #[test]
    fn healthy_probes_clear_only_latches_older_than_their_evidence() {
        let h = MemoryHost::new(T0);
        let mut e = engine(&h, &latch_config(), 1);
        let r = ask(&mut e, &h, "crane");
        answer(&mut e, &h, &r, 10.0, 3, Some("box_count"));
        e.tick(&h);
        h.advance_ms(10_000);
        let p = ask(&mut e, &h, "crane");
        assert_eq!(p.decision.why, Why::Probe);
        answer(&mut e, &h, &p, 100.0, 5, None);
        h.advance_ms(1_500);
        let p = ask(&mut e, &h, "crane");
        answer(&mut e, &h, &p, 100.0, 5, None);
        e.tick(&h);
        let calls = h.calls();
        let clear = calls.last().unwrap();
        assert_eq!(
            clear.body,
            "action=clear&rule=cranes&healthy_for_ms=1500&gateway=gateway"
        );
        // A probe that meets another gateway's latch (an old workload without probe
        // support) re-opens as a latch, not as this gateway's own finding.
        let h = MemoryHost::new(T0);
        let mut e = engine(&h, &latch_config(), 1);
        let r = ask(&mut e, &h, "crane");
        answer(&mut e, &h, &r, 10.0, 3, Some("box_count"));
        e.tick(&h);
        h.advance_ms(10_000);
        let p = ask(&mut e, &h, "crane");
        answer(&mut e, &h, &p, 100.0, 5, Some("latched:box_count@cranes"));
        e.tick(&h);
        let i = incidents(&h);
        assert_eq!(
            (i[1]["trigger"].as_str(), i[1]["after_probe"].as_bool()),
            (Some("latch"), Some(true))
        );
        assert_eq!(
            h.calls().len(),
            2,
            "only the first, first-hand shed latched"
        );
    }

    #[test]
    fn dry_run_and_failed_dispatches_latch_nothing_silently() {
        let h = MemoryHost::new(T0);
        let dry = latch_config().replace("\"shed_for_s\":10", "\"shed_for_s\":10,\"dry_run\":true");
        let mut e = engine(&h, &dry, 1);
        let r = ask(&mut e, &h, "crane");
        answer(&mut e, &h, &r, 10.0, 3, Some("box_count"));
        e.tick(&h);
        assert!(h.calls().is_empty());
        let h = MemoryHost::new(T0);
        h.set_faults(Faults {
            dispatch_fails: true,
            ..Faults::default()
        });
        let mut e = engine(&h, &latch_config(), 1);
        let r = ask(&mut e, &h, "crane");
        answer(&mut e, &h, &r, 10.0, 3, Some("box_count"));
        e.tick(&h);
        assert_eq!(h.counter(Counter::LatchFailures), 2);
        assert!(
            h.logs()
                .iter()
                .any(|(l, m)| *l == Level::Warn && m.contains("0 of 2 sent"))
        );
    }

    #[test]
    fn dry_run_evaluates_and_never_sheds() {
        let h = MemoryHost::new(T0);
        let dry = SEQ.replace("\"shed_for_s\":10", "\"shed_for_s\":10,\"dry_run\":true");
        let mut vms = vec![engine(&h, &dry, 1)];
        traffic(&mut vms, &h, 100, |_| 20);
        assert_eq!(incidents(&h)[0]["dry_run"], true);
        let r = ask(&mut vms[0], &h, "crane");
        assert_eq!(
            text(&mut vms[0], &r),
            "gray; rule=cranes; dry-run=box_count"
        );
    }

    #[test]
    fn the_window_detector_still_works() {
        let h = MemoryHost::new(T0);
        let win = r#"{"stable":"v9","gray":"v10",
          "rules":[{"name":"cranes","headers":{"x-device-type":{"exact":"crane"}}}],
          "breach":{"detector":"window",
                    "box_count":{"header":"x-box-count","max_sigma":3,"window_s":5,"min_samples":6}}}"#;
        let mut vms = vec![engine(&h, win, 1)];
        traffic(&mut vms, &h, 40, |_| 5);
        assert!(incidents(&h).is_empty());
        traffic(&mut vms, &h, 40, |_| 30);
        let i = incidents(&h);
        assert_eq!(
            (i[0]["trigger"].as_str(), i[0]["detector"].as_str()),
            (Some("box_count"), Some("window"))
        );
    }

    #[test]
    fn cohort_control_uses_only_the_rules_own_stable_share() {
        let h = MemoryHost::new(T0);
        let cohort = SEQ
            .replace(
                r#""exact":"crane"}}}"#,
                r#""exact":"crane"}},"percent":50}"#,
            )
            .replace(
                r#""error_rate":{"min_samples":10},"#,
                r#""error_rate":{"min_samples":10},"control":"cohort","#,
            );
        let mut e = engine(&h, &cohort, 3);
        for i in 0..60 {
            let r = ask(&mut e, &h, "crane");
            answer(&mut e, &h, &r, 100.0, 5, None);
            // Other stable traffic with very different boxes must not count.
            let s = ask(&mut e, &h, "dock");
            answer(&mut e, &h, &s, 100.0, 50, None);
            if i % 5 == 4 {
                h.advance_ms(100);
                e.tick(&h);
            }
        }
        let ev = e.evidence(&h, 0).unwrap();
        assert_eq!(ev.epoch.gray.rate.n + ev.epoch.control.rate.n, 60.0);
        assert!(ev.epoch.control.boxes.mean().is_some_and(|m| m == 5.0));
        assert!(incidents(&h).is_empty());
    }

    #[test]
    fn host_failures_lose_no_observation_and_panic_nowhere() {
        let h = MemoryHost::new(T0);
        let mut vms = vec![engine(&h, SEQ, 1)];
        // Writes fail for a while: the observations wait in the VM.
        h.set_faults(Faults {
            writes_fail: true,
            ..Faults::default()
        });
        traffic(&mut vms, &h, 50, |_| 5);
        assert_eq!(vms[0].evidence(&h, 0), None);
        // Heavy contention, then recovery: everything lands once.
        h.set_faults(Faults {
            cas_conflicts: 40,
            ..Faults::default()
        });
        traffic(&mut vms, &h, 50, |_| 5);
        h.set_faults(Faults::default());
        h.advance_ms(100);
        vms[0].tick(&h);
        let ev = vms[0].evidence(&h, 0).unwrap();
        assert_eq!(ev.epoch.gray.rate.n, 100.0);
        // Reads fail: requests still route (to gray, as the board reads closed).
        h.set_faults(Faults {
            reads_fail: true,
            ..Faults::default()
        });
        let r = ask(&mut vms[0], &h, "crane");
        assert!(r.decision.gray);
        vms[0].tick(&h);
        h.set_faults(Faults::default());
        // A corrupt record or board is replaced, not trusted.
        h.set_shared(&vms[0].keys.evidence, b"garbage", None)
            .unwrap();
        h.set_shared(&vms[0].keys.board, b"garbage", None).unwrap();
        traffic(&mut vms, &h, 10, |_| 5);
        assert!(vms[0].evidence(&h, 0).is_some());
    }

    #[test]
    fn a_clock_going_backwards_neither_panics_nor_sheds() {
        let h = MemoryHost::new(T0);
        let mut vms = vec![engine(&h, SEQ, 1)];
        traffic(&mut vms, &h, 50, |_| 5);
        h.set_now(T0 - 3_600_000_000_000);
        traffic(&mut vms, &h, 50, |_| 5);
        h.set_now(0);
        traffic(&mut vms, &h, 10, |_| 5);
        assert!(incidents(&h).is_empty());
        // A breaker opened in the "future" half-opens once the clock passes it again.
        let r = ask(&mut vms[0], &h, "crane");
        answer(&mut vms[0], &h, &r, 1.0, 1, Some("latency"));
        h.set_now(T0);
        let p = ask(&mut vms[0], &h, "crane");
        assert_eq!(text(&mut vms[0], &p), "gray; rule=cranes; probe");
    }

    #[test]
    fn malformed_signals_are_counted_not_used() {
        let h = MemoryHost::new(T0);
        let mut e = engine(&h, SEQ, 1);
        let r = ask(&mut e, &h, "crane");
        let reply = e.read(Some(200), |name| match name {
            "x-inference-latency-ms" => Some(&b"NaN"[..]),
            "x-box-count" => Some(&b"\xff\xfe"[..]),
            _ => None,
        });
        assert_eq!(
            (reply.obs.latency_ms, reply.obs.boxes, reply.obs.failed),
            (None, None, false)
        );
        e.settle(&h, &r, &reply);
        e.tick(&h);
        assert_eq!(h.counter(Counter::MalformedSignals), 2);
    }

    #[test]
    fn a_failed_reply_is_a_failure_not_a_sample() {
        let h = MemoryHost::new(T0);
        let mut e = engine(&h, SEQ, 1);
        // What a sidecar with a full queue stamps on its 503.
        let reply = e.read(Some(503), |name| match name {
            "x-inference-latency-ms" => Some(&b"0.412"[..]),
            "x-box-count" => Some(&b"0"[..]),
            _ => None,
        });
        assert_eq!(
            (reply.obs.latency_ms, reply.obs.boxes, reply.obs.failed),
            (None, None, true)
        );
    }

    #[test]
    fn an_overloaded_control_does_not_shed_a_healthy_gray() {
        let h = MemoryHost::new(T0);
        let mut e = engine(&h, SEQ, 1);
        for i in 0..400 {
            let g = ask(&mut e, &h, "crane");
            assert_eq!(text(&mut e, &g), "gray; rule=cranes", "request {i}");
            answer(
                &mut e,
                &h,
                &g,
                100.0 + (i % 7) as f64,
                5 + (i % 3) as u32,
                None,
            );
            // Stable refuses two requests in three at once, as its full queue does.
            let s = ask(&mut e, &h, "dock");
            if i % 3 == 0 {
                let k = i / 3;
                answer(
                    &mut e,
                    &h,
                    &s,
                    100.0 + (k % 7) as f64,
                    5 + (k % 3) as u32,
                    None,
                );
            } else {
                let refusal = e.read(Some(503), |name| match name {
                    "x-inference-latency-ms" => Some(&b"0.4"[..]),
                    "x-box-count" => Some(&b"0"[..]),
                    _ => None,
                });
                e.settle(&h, &s, &refusal);
            }
            if i % 5 == 4 {
                h.advance_ms(100);
                e.tick(&h);
            }
        }
        assert!(incidents(&h).is_empty(), "{:?}", incidents(&h));
    }

    #[test]
    fn findings_name_the_tests_of_the_plan() {
        let h = MemoryHost::new(T0);
        let mut vms = vec![engine(&h, SEQ, 1)];
        traffic(&mut vms, &h, 100, |_| 5);
        let f = vms[0].findings(0);
        assert!(f.iter().any(|f| f.hypothesis == Hypothesis::LatencyRatio));
        assert!(f.iter().all(|f| !f.crossed()));
    }
}
