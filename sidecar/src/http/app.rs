//! The server's shared state: configuration, metrics, the detector once loaded, readiness
//! flags, the watchdog, admission (the bounded queue) and the self-check image memory.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use hyper::header::HeaderValue;
use tokio::sync::Semaphore;

use crate::config::Config;
use crate::detector::Detector;
use crate::metrics::Metrics;
use crate::selfcheck::ImageMemory;
use crate::watchdog::{BreachSet, Reason, Watchdog};

/// Shared state of the server.
pub struct App {
    pub cfg: Config,
    pub metrics: Metrics,
    pub(super) model_version: HeaderValue,
    pub(super) detector: OnceLock<Arc<dyn Detector>>,
    /// Warm-up finished.
    pub(super) warmed: AtomicBool,
    /// Last self-check passed.
    pub(super) check_ok: AtomicBool,
    pub(super) draining: AtomicBool,
    pub(super) watchdog: Mutex<Watchdog>,
    /// Permits = model workers + `--max-queue`: admitted requests never exceed it.
    pub(super) admission: Arc<Semaphore>,
    pub(super) in_flight: AtomicUsize,
    pub images: ImageMemory,
    pub(super) last_success: Mutex<Option<Instant>>,
}

impl App {
    pub fn new(cfg: Config, metrics: Metrics) -> App {
        let model_version = HeaderValue::from_str(&cfg.model_version)
            .unwrap_or(HeaderValue::from_static("unknown"));
        let permits = cfg.workers + cfg.max_queue;
        App {
            watchdog: Mutex::new(Watchdog::new(cfg.watchdog.clone())),
            admission: Arc::new(Semaphore::new(permits)),
            cfg,
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
    }

    pub fn last_success(&self) -> Option<Instant> {
        self.last_success.lock().ok().and_then(|l| *l)
    }

    pub fn with_watchdog<T>(&self, f: impl FnOnce(&mut Watchdog) -> T) -> T {
        let mut guard = match self.watchdog.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut guard)
    }

    /// Evaluates the watchdog and mirrors the result into `breach_active`.
    pub fn breaches(&self, now: Instant) -> BreachSet {
        let set = self.with_watchdog(|w| w.evaluate(now));
        for r in Reason::ALL {
            self.metrics
                .breach_active
                .with_label_values(&[r.as_str()])
                .set(i64::from(set.contains(r)));
        }
        set
    }

    /// Gauges that describe the present moment.
    pub fn refresh_gauges(&self) {
        let in_flight = self.in_flight.load(Ordering::SeqCst);
        let busy = self.detector().map_or(0, |d| d.busy());
        self.metrics.in_flight.set(in_flight as i64);
        self.metrics
            .queue_depth
            .set(in_flight.saturating_sub(busy) as i64);
        self.metrics.ready.set(i64::from(self.is_ready()));
    }
}
