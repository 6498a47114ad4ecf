//! The root context of each VM (one per Envoy worker, plus the main thread): configuration,
//! the tick that publishes this VM's windows and evaluates the triggers over all VMs, and
//! the per-VM state the HTTP contexts share.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use log::{error, info, warn};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType};

use crate::breach::{self, Baseline, Observation, Trigger};
use crate::breaker::{Board, Phase, ProbeOutcome};
use crate::config::{self, Config};
use crate::incident::{self, Event, Incident};
use crate::metrics::{Counter, Gauge, Metrics};
use crate::rules::Draw;
use crate::shared::{self, Keys};
use crate::window::{Layout, Local, Merged, Spans};

/// Most bytes of plugin configuration read.
pub const MAX_CONFIG_BYTES: usize = 1 << 20;

/// Nanoseconds since the epoch by the proxy clock (0 if the host cannot tell).
pub fn now_ns() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as u64)
}

/// This VM's copy of the shared board.
#[derive(Debug, Clone)]
pub struct BoardCache {
    pub board: Board,
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
    pub fn current(&mut self, key: &str, units: usize, mark: Option<u64>) -> &Board {
        if mark.is_none() || mark != self.mark {
            self.refresh(key, units);
            self.mark = mark;
        }
        &self.board
    }

    /// The current board: one shared-data read; decoded only when its CAS changed.
    pub fn refresh(&mut self, key: &str, units: usize) -> &Board {
        let (bytes, cas) = shared::get(key);
        if cas.is_none() || cas != self.cas {
            self.board = bytes
                .and_then(|b| Board::decode(&b, units).ok())
                .unwrap_or_else(|| Board::new(units));
            self.cas = cas;
        }
        &self.board
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

/// State shared by the root context and the HTTP contexts of one VM.
pub struct State {
    pub cfg: Config,
    pub keys: Keys,
    pub units: usize,
    pub layout: Layout,
    pub spans: Spans,
    pub local: Local,
    /// Local windows changed since the last publication.
    pub dirty: bool,
    /// Whether any windowed or streak trigger is on (otherwise nothing is published).
    pub windowed: bool,
    pub worker: Option<u32>,
    /// Last board read, by CAS: requests only decode when it changed.
    pub board: BoardCache,
    /// Merged windows and baseline of the last evaluation (for probes and incidents).
    pub merged: Option<Merged>,
    pub baseline: Option<Baseline>,
    pub draw: Draw,
    pub metrics: Metrics,
    /// Reused buffer for the decision header text.
    pub scratch: String,
}

impl State {
    fn new(cfg: Config, text: &[u8], seed: u64) -> State {
        let units = cfg.units();
        let layout = Layout::for_config(&cfg);
        let b = &cfg.breach;
        let windowed = layout.slots > 0 || b.consecutive_failures.is_some();
        State {
            keys: Keys::new(text),
            units,
            layout,
            spans: Spans::for_config(&cfg),
            local: Local::new(layout, units),
            dirty: false,
            windowed,
            worker: None,
            board: BoardCache::new(units),
            merged: None,
            baseline: None,
            draw: Draw::new(seed),
            metrics: Metrics::define(),
            scratch: String::with_capacity(128),
            cfg,
        }
    }

    pub fn refresh_board(&mut self) -> &Board {
        self.board.refresh(&self.keys.board, self.units)
    }

    /// Keeps a board this VM just wrote and moves the change mark for every worker.
    fn remember(&mut self, board: Board) {
        self.board = BoardCache {
            board,
            cas: None,
            mark: None,
        };
        self.metrics.board_written();
    }

    /// Opens `unit`'s breaker now if it is closed (the in-band flag, or a trigger found by
    /// the evaluator). Only the worker whose compare-and-swap wins logs and counts it.
    pub fn trip(&mut self, unit: usize, trigger: Trigger, flag_reason: Option<&str>) {
        let now = now_ns();
        let shed_ms = self.cfg.breach.shed_for_ms;
        let done = shared::update_board(&self.keys.board, self.units, |board| {
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
            self.remember(board);
            self.metrics.count(Counter::breach(trigger));
            let at = Stamp {
                at_ns: now,
                other_ns: until,
                since_ns: closed_since,
            };
            self.incident(Event::ShedStart, unit, trigger, flag_reason, at, false);
        }
    }

    /// Applies a half-open probe's result.
    pub fn probe_result(
        &mut self,
        unit: usize,
        generation: u32,
        o: &Observation,
        flag_reason: Option<&str>,
    ) {
        let now = now_ns();
        let result = breach::judge_probe(&self.cfg.breach, o, self.baseline);
        let b = &self.cfg.breach;
        let (needed, shed_ms) = (b.probe_successes, b.shed_for_ms);
        let done = shared::update_board(&self.keys.board, self.units, |board| {
            let cur = board.0.get(unit)?;
            let (next_b, outcome) = cur.probe(now, generation, result, needed, shed_ms)?;
            let mut next = board.clone();
            *next.0.get_mut(unit)? = next_b;
            Some((next, (outcome, cur.since_ns, next_b.until_ns, cur.trigger)))
        });
        let Some((board, (outcome, opened_at, until, old_trigger))) = done else {
            return;
        };
        self.remember(board);
        match outcome {
            ProbeOutcome::Counted => {}
            ProbeOutcome::Closed => {
                let t = old_trigger.unwrap_or(Trigger::Flag);
                let at = Stamp {
                    at_ns: now,
                    other_ns: opened_at,
                    since_ns: now,
                };
                self.incident(Event::ShedEnd, unit, t, None, at, false);
            }
            ProbeOutcome::Reopened(t) => {
                self.metrics.count(Counter::breach(t));
                let reason = if t == Trigger::Flag {
                    flag_reason
                } else {
                    None
                };
                let at = Stamp {
                    at_ns: now,
                    other_ns: until,
                    since_ns: now,
                };
                self.incident(Event::ShedStart, unit, t, reason, at, true);
            }
        }
    }

    fn incident(
        &self,
        event: Event,
        unit: usize,
        trigger: Trigger,
        flag_reason: Option<&str>,
        at: Stamp,
        probe: bool,
    ) {
        let merged = self.merged.as_ref();
        let Stamp {
            at_ns,
            other_ns,
            since_ns,
        } = at;
        let line = incident::line(
            &self.cfg,
            &Incident {
                event,
                trigger,
                flag_reason,
                unit,
                at_ns,
                other_ns,
                window: merged.and_then(|m| m.gray.get(unit).copied()),
                baseline: self.baseline,
                consecutive: merged.map_or(0, |m| m.consecutive(unit, since_ns)),
                probe,
            },
        );
        warn!("{line}");
    }

    /// The tick: flush counters, publish this VM's windows, evaluate every closed unit over
    /// all VMs' windows, and set the gauges.
    fn tick(&mut self) {
        let now = now_ns();
        let now_ms = now / 1_000_000;
        if self.windowed {
            let mut workers = shared::workers(&self.keys.workers);
            // Checked on every tick, not only once: the list's first write cannot be
            // guarded by a CAS, so a VM's entry can be lost, and a VM missing from the list
            // would go unseen by every evaluator for good.
            if !self.worker.is_some_and(|id| workers.contains(&id)) {
                let draw = &mut self.draw;
                let next = || (draw.next_u64() >> 32) as u32;
                if let Some(id) = shared::claim_worker(&self.keys.workers, self.worker, next) {
                    self.worker = Some(id);
                    // Publish under the (possibly new) id at once.
                    self.dirty = true;
                    workers = shared::workers(&self.keys.workers);
                }
            }
            if let (true, Some(id)) = (self.dirty, self.worker) {
                if shared::put(&self.keys.worker(id), &self.local.encode(now_ms)) {
                    self.dirty = false;
                }
            }
            self.evaluate(now, &workers);
        }
        let board = self.refresh_board().clone();
        let phases = board.0.iter().map(|b| b.phase(now));
        let worst = phases
            .clone()
            .max_by_key(|p| p.severity())
            .unwrap_or(Phase::Closed);
        let open = phases.filter(|p| *p != Phase::Closed).count();
        self.metrics.set(Gauge::BreakerState, worst.gauge());
        self.metrics.set(Gauge::BreakersOpen, open as u64);
        self.metrics.flush();
    }

    /// Merges the windows of the VMs in `workers` and trips every closed unit in breach.
    fn evaluate(&mut self, now: u64, workers: &[u32]) {
        let now_ms = now / 1_000_000;
        let board = self.refresh_board().clone();
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
            if let Some(bytes) = shared::get(&self.keys.worker(id)).0 {
                // A snapshot that does not decode (an older filter build) is skipped.
                let _ = merged.add(&bytes, self.layout, self.spans, now_ms, &since_ms);
            }
        }
        self.baseline = self
            .cfg
            .breach
            .box_count
            .as_ref()
            .and_then(|t| Baseline::next(t, &merged.stable, self.baseline));
        let mut fire = Vec::new();
        for (unit, b) in board.0.iter().enumerate() {
            if b.phase(now) != Phase::Closed {
                continue;
            }
            let Some(gray) = merged.gray.get(unit) else {
                continue;
            };
            let consecutive = merged.consecutive(unit, b.since_ns);
            if let Some(t) = breach::evaluate(&self.cfg.breach, gray, self.baseline, consecutive) {
                fire.push((unit, t));
            }
        }
        self.merged = Some(merged);
        for (unit, t) in fire {
            self.trip(unit, t, None);
        }
    }
}

/// The root context.
pub struct Root {
    context_id: u32,
    state: Option<Rc<RefCell<State>>>,
}

impl Root {
    pub fn new(context_id: u32) -> Root {
        Root {
            context_id,
            state: None,
        }
    }
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let text = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, MAX_CONFIG_BYTES)
            .ok()
            .flatten()
            .unwrap_or_default();
        let cfg = match config::parse(&text) {
            Ok(cfg) => cfg,
            Err(e) => {
                error!("{e}");
                return false;
            }
        };
        let seed = now_ns() ^ (u64::from(self.context_id) << 32);
        let rules = cfg.rules.len();
        let sync = Duration::from_millis(cfg.sync_ms);
        let state = State::new(cfg, &text, seed);
        shared::ensure_board(&state.keys.board, state.units);
        info!(
            "grayguard configured: {rules} rule(s), {} breaker unit(s), sync every {} ms",
            state.units, state.cfg.sync_ms
        );
        self.state = Some(Rc::new(RefCell::new(state)));
        let _ = hostcalls::set_tick_period(sync);
        true
    }

    fn on_tick(&mut self) {
        if let Some(s) = &self.state {
            if let Ok(mut s) = s.try_borrow_mut() {
                s.tick();
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(crate::http::Http::new(self.state.clone())))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
