//! The server's shared state: configuration, the clock, metrics, the detector once loaded,
//! readiness flags, the watchdog, the stall watch, the latches and holds gateways set, admission (the
//! bounded queue), the comparison with stable (on a gray sidecar with `--compare-with`), the
//! self-check image memory, the recent throughput, who this pod is and what `/info` reports.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use grayguard_contract::Trigger;
use grayguard_contract::latch::{Listing, Request as LatchRequest};
use hyper::header::HeaderValue;
use tokio::sync::Semaphore;

use super::compare::Comparer;
use crate::clock::Clock;
use crate::config::Config;
use crate::detect::Detector;
use crate::introspect::info::{Host, ModelFacts};
use crate::introspect::metrics::Metrics;
use crate::introspect::selfcheck::ImageMemory;
use crate::introspect::throughput::Throughput;
use crate::signals::latch::{Applied, Latches};
use crate::signals::served_by;
use crate::signals::stall::StallWatch;
use crate::signals::watchdog::{BreachSet, Reason, Watchdog};

/// Shared state of the server.
pub struct App {
    pub cfg: Config,
    /// Where every handler, guard and loop reads the time.
    pub clock: Arc<dyn Clock>,
    pub metrics: Metrics,
    pub(super) model_version: HeaderValue,
    /// `x-served-by`: this pod's identity ([`served_by`]).
    pub(super) served_by: HeaderValue,
    pub(super) detector: OnceLock<Arc<dyn Detector>>,
    /// Warm-up finished.
    pub(super) warmed: AtomicBool,
    /// Last self-check passed.
    pub(super) check_ok: AtomicBool,
    pub(super) draining: AtomicBool,
    pub(super) watchdog: Mutex<Watchdog>,
    stall: Mutex<StallWatch>,
    throughput: Mutex<Throughput>,
    /// Permits = model workers + `--max-queue`: admitted requests never exceed it.
    pub(super) admission: Arc<Semaphore>,
    pub(super) in_flight: AtomicUsize,
    pub images: ImageMemory,
    pub(super) last_success: Mutex<Option<Instant>>,
    latches: Mutex<Latches>,
    /// The paired comparison with stable (`--compare-with`).
    comparer: Option<Comparer>,
    /// When the process started serving (for `/info`).
    pub started_at: SystemTime,
    /// The model's facts, once it is loaded (for `/info`).
    model_facts: OnceLock<ModelFacts>,
    /// The machine, read once at start (for `/info`).
    pub host: Host,
}

/// A lock that survives a panic elsewhere: the guarded values stay consistent between calls.
pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl App {
    pub fn new(cfg: Config, metrics: Metrics, clock: Arc<dyn Clock>) -> App {
        let model_version = HeaderValue::from_str(&cfg.model_version)
            .unwrap_or(HeaderValue::from_static("unknown"));
        let permits = cfg.workers + cfg.max_queue;
        let host = Host::read();
        let pod = std::env::var("POD_NAME").ok();
        let hostname = std::env::var("HOSTNAME").ok();
        let identity = served_by::identity([
            pod.as_deref(),
            hostname.as_deref(),
            Some(host.hostname.as_str()),
        ]);
        App {
            latches: Mutex::new(Latches::new(cfg.latch_max_entries, cfg.latch_max)),
            comparer: cfg.compare.clone().map(Comparer::new),
            started_at: clock.wall(),
            model_facts: OnceLock::new(),
            host,
            served_by: HeaderValue::from_str(&identity)
                .unwrap_or(HeaderValue::from_static(served_by::UNKNOWN)),
            watchdog: Mutex::new(Watchdog::new(cfg.watchdog.clone())),
            stall: Mutex::new(StallWatch::default()),
            throughput: Mutex::new(Throughput::default()),
            admission: Arc::new(Semaphore::new(permits)),
            cfg,
            clock,
            metrics,
            model_version,
            detector: OnceLock::new(),
            warmed: AtomicBool::new(false),
            check_ok: AtomicBool::new(true),
            draining: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            images: ImageMemory::new(),
            last_success: Mutex::new(None),
        }
    }

    /// Installs the model (once).
    pub fn set_detector(&self, detector: Arc<dyn Detector>) {
        let _ = self.detector.set(detector);
    }

    pub fn detector(&self) -> Option<Arc<dyn Detector>> {
        self.detector.get().cloned()
    }

    pub fn set_warmed(&self) {
        self.warmed.store(true, Ordering::SeqCst);
        self.refresh_gauges();
    }

    pub fn set_check_ok(&self, ok: bool) {
        self.check_ok.store(ok, Ordering::SeqCst);
        self.refresh_gauges();
    }

    pub fn check_ok(&self) -> bool {
        self.check_ok.load(Ordering::SeqCst)
    }

    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
        self.refresh_gauges();
    }

    pub fn is_ready(&self) -> bool {
        self.warmed.load(Ordering::SeqCst)
            && self.check_ok.load(Ordering::SeqCst)
            && !self.draining.load(Ordering::SeqCst)
            && !self.stalled(self.clock.now())
    }

    /// Starts judging model runs against the stall deadline (once it is known).
    pub fn arm_stall(&self, deadline: Duration) {
        lock(&self.stall).arm(deadline);
        self.metrics
            .stall_deadline_seconds
            .set(deadline.as_secs_f64());
    }

    /// The stall deadline, once armed.
    pub fn stall_deadline(&self) -> Option<Duration> {
        lock(&self.stall).deadline()
    }

    /// Whether a model run has outlasted the stall deadline at `now`; counts and logs a new
    /// stall, logs the recovery, and mirrors the state into `stalled`.
    pub fn stalled(&self, now: Instant) -> bool {
        let oldest = self.detector().and_then(|d| d.running_since());
        let mut watch = lock(&self.stall);
        let look = watch.look(now, oldest);
        let deadline = watch.deadline().unwrap_or_default();
        drop(watch);
        if look.new_stall {
            self.metrics.stalls.inc();
            log::error!(
                "model run stuck for {:.1} s, past the stall deadline of {:.1} s: stalled \
                 (/healthz and /ready 503, replies flagged `stalled`) until it returns",
                look.oldest_run.unwrap_or_default().as_secs_f64(),
                deadline.as_secs_f64()
            );
        }
        if look.recovered {
            log::warn!("the stuck model run returned: no longer stalled");
        }
        self.metrics.stalled.set(i64::from(look.stalled));
        look.stalled
    }

    /// Records a successful `/infer` reply at `now`; the replies per second over the last
    /// [`WINDOW`](crate::introspect::throughput::WINDOW), this one included.
    pub fn record_reply(&self, now: Instant) -> f64 {
        lock(&self.throughput).record(now)
    }

    /// The replies per second over the last window, without recording one.
    pub fn throughput_now(&self, now: Instant) -> f64 {
        lock(&self.throughput).fps(now)
    }

    pub fn last_success(&self) -> Option<Instant> {
        self.last_success.lock().ok().and_then(|l| *l)
    }

    pub fn with_watchdog<T>(&self, f: impl FnOnce(&mut Watchdog) -> T) -> T {
        f(&mut lock(&self.watchdog))
    }

    /// Records what the loaded model is (once).
    pub fn set_model_facts(&self, facts: ModelFacts) {
        let _ = self.model_facts.set(facts);
    }

    pub fn model_facts(&self) -> Option<&ModelFacts> {
        self.model_facts.get()
    }

    /// Applies a gateway's latch or clear request and updates the gauge.
    pub fn apply_latch(&self, req: &LatchRequest, now: Instant) -> Applied {
        let mut latches = lock(&self.latches);
        let applied = latches.apply(req, now);
        self.metrics.latches.set(latches.len(now) as i64);
        applied
    }

    /// The live latches, the holds and the release records (the contract's listing).
    pub fn latch_listing(&self, now: Instant) -> Listing {
        lock(&self.latches).listing(now)
    }

    /// The latch items of a reply's flag: the live latches, or none for a half-open probe,
    /// which is judged on its own merits.
    pub fn latched(&self, now: Instant, probe: bool) -> Vec<(Trigger, String)> {
        if probe {
            return Vec::new();
        }
        let mut latches = lock(&self.latches);
        let items = latches.items(now);
        self.metrics.latches.set(latches.len(now) as i64);
        items
    }

    /// The hold items of a reply's flag, on every reply: a probe does not judge a person's
    /// decision.
    pub fn held(&self) -> Vec<(Trigger, String)> {
        lock(&self.latches).held()
    }

    /// Evaluates the watchdog and the stall watch and mirrors the result into
    /// `breach_active`.
    pub fn breaches(&self, now: Instant) -> BreachSet {
        let mut set = self.with_watchdog(|w| w.evaluate(now));
        if self.stalled(now) {
            set.insert(Reason::Stalled);
        }
        for r in Reason::ALL {
            self.metrics
                .breach_active
                .with_label_values(&[r.as_str()])
                .set(i64::from(set.contains(r)));
        }
        set
    }

    /// The comparison with stable, on a gray sidecar with `--compare-with`.
    pub(super) fn comparer(&self) -> Option<&Comparer> {
        self.comparer.as_ref()
    }

    /// Admitted requests no model worker has taken yet.
    pub(super) fn waiting(&self) -> usize {
        let busy = self.detector().map_or(0, |d| d.busy());
        self.in_flight.load(Ordering::SeqCst).saturating_sub(busy)
    }

    /// Gauges that describe the present moment.
    pub fn refresh_gauges(&self) {
        let in_flight = self.in_flight.load(Ordering::SeqCst);
        self.metrics.in_flight.set(in_flight as i64);
        self.metrics.queue_depth.set(self.waiting() as i64);
        self.metrics.ready.set(i64::from(self.is_ready()));
        let live = lock(&self.latches).len(self.clock.now());
        self.metrics.latches.set(live as i64);
    }
}
