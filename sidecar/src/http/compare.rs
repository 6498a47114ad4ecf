//! The gray side of the paired comparison (`--compare-with`). After a successful reply to a
//! client, a random share of frames (`--compare-percent`) is sent to stable in the
//! background, marked `x-canary-compare: 1`: the image bytes the model decoded, as
//! `application/octet-stream` (a multipart upload's `image` field, not the form around it).
//! The client's reply never waits for it. Stable's boxes against gray's give the frame's
//! agreement ([`FrameAgreement`]), which goes into the metrics and into the queue of values a
//! later reply carries in `x-canary-agreement`, one per reply.
//!
//! Comparisons are shed before requests: a drawn frame is skipped while requests wait for
//! this sidecar's model, or while `--compare-max-inflight` comparisons are out. A comparison
//! that cannot connect, outlasts `--compare-timeout-ms`, gets a non-2xx or an unreadable
//! reply is counted by reason and gives no value.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::Request;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use serde::Deserialize;

use super::app::{App, lock};
use crate::config::CompareConfig;
use crate::detect::BoxOut;
use crate::introspect::metrics::{ClassLabels, Metrics};
use crate::signals::agreement::{Agreement, FrameAgreement, Labelled};
use crate::signals::comparison::{Fail, Sampler, Skip};
use crate::signals::pending::PendingAgreements;

/// How long a connection to stable may sit unused in the pool: below the sidecar's own
/// `--idle-timeout-s` (90 s) and the mesh's (60 s), so that this side closes it first.
const POOL_IDLE: std::time::Duration = std::time::Duration::from_secs(30);

/// The comparison's state on a gray sidecar.
pub struct Comparer {
    cfg: CompareConfig,
    client: Client<HttpConnector, Full<Bytes>>,
    sampler: Mutex<Sampler>,
    /// Comparisons sent and not yet answered.
    in_flight: AtomicUsize,
    pending: Mutex<PendingAgreements>,
    labels: Mutex<ClassLabels>,
    /// Whether the last comparison failed: the log says so once per change.
    failing: AtomicBool,
}

impl Comparer {
    pub fn new(cfg: CompareConfig) -> Comparer {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(cfg.timeout));
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(POOL_IDLE)
            .pool_max_idle_per_host(cfg.max_inflight)
            .build(connector);
        log::info!(
            "comparing {} % of successful replies' frames with stable at {} (timeout {} ms, at most {} out, {} agreements queued)",
            cfg.percent,
            cfg.with,
            cfg.timeout.as_millis(),
            cfg.max_inflight,
            cfg.max_pending
        );
        Comparer {
            sampler: Mutex::new(Sampler::new(cfg.percent)),
            in_flight: AtomicUsize::new(0),
            pending: Mutex::new(PendingAgreements::new(cfg.max_pending)),
            labels: Mutex::new(ClassLabels::new(cfg.max_classes)),
            failing: AtomicBool::new(false),
            client,
            cfg,
        }
    }

    /// Takes a comparison slot unless `--compare-max-inflight` are out.
    fn reserve(&self) -> bool {
        self.in_flight
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < self.cfg.max_inflight).then_some(n + 1)
            })
            .is_ok()
    }

    /// Sends `image` to stable and reads its boxes.
    async fn ask(&self, image: Bytes) -> Result<Vec<BoxOut>, (Fail, String)> {
        let req = Request::post(self.cfg.with.clone())
            .header(
                CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            )
            .header(
                grayguard_contract::headers::COMPARE,
                HeaderValue::from_static("1"),
            )
            .body(Full::new(image))
            .map_err(|e| (Fail::Unreachable, e.to_string()))?;
        let resp = self
            .client
            .request(req)
            .await
            .map_err(|e| (Fail::Unreachable, causes(&e)))?;
        let status = resp.status();
        if !status.is_success() {
            return Err((Fail::BadStatus, format!("stable answered {status}")));
        }
        let body = Limited::new(resp.into_body(), self.cfg.max_reply_bytes)
            .collect()
            .await
            .map_err(|e| (Fail::BadReply, format!("reading the reply: {e}")))?
            .to_bytes();
        let reply: StableReply = serde_json::from_slice(&body)
            .map_err(|e| (Fail::BadReply, format!("not stable's boxes: {e}")))?;
        Ok(reply.boxes)
    }

    /// Logs a failure when it follows a success (or is the first), then only at debug level.
    fn failed(&self, fail: Fail, detail: &str) {
        if self.failing.swap(true, Ordering::SeqCst) {
            log::debug!("comparison failed ({}): {detail}", fail.as_str());
        } else {
            log::warn!(
                "comparisons with stable at {} fail ({}: {detail}); counted in comparison_failures_total, no agreement until one succeeds",
                self.cfg.with,
                fail.as_str()
            );
        }
    }

    fn succeeded(&self) {
        if self.failing.swap(false, Ordering::SeqCst) {
            log::info!("comparisons with stable at {} succeed again", self.cfg.with);
        }
    }
}

/// The part of stable's `/infer` reply a comparison reads.
#[derive(Deserialize)]
struct StableReply {
    boxes: Vec<BoxOut>,
}

/// Boxes as the matching sees them: class name and corners.
fn labelled(boxes: &[BoxOut]) -> Vec<Labelled<'_>> {
    boxes
        .iter()
        .map(|b| Labelled {
            class: &b.label,
            x1: b.x1,
            y1: b.y1,
            x2: b.x2,
            y2: b.y2,
        })
        .collect()
}

/// An error and its causes, `a: b: c` (the client's own message names only the stage).
fn causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The oldest finished agreement, for the reply being built (`None` without `--compare-with`
/// or when none is waiting). Each value is taken once.
pub(super) fn take_agreement(app: &App) -> Option<Agreement> {
    let cmp = app.comparer()?;
    let mut pending = lock(&cmp.pending);
    let value = pending.take();
    app.metrics.agreements_pending.set(pending.len() as i64);
    value
}

/// After a successful reply to a client: draws whether the frame is compared and, unless the
/// comparison must be shed, sends it to stable in the background with gray's `boxes`.
pub(super) fn offer(app: &Arc<App>, image: Bytes, boxes: &[BoxOut]) {
    let Some(cmp) = app.comparer() else {
        return;
    };
    if !lock(&cmp.sampler).draw() {
        return;
    }
    let skip = if app.waiting() > 0 {
        Some(Skip::Busy)
    } else if !cmp.reserve() {
        Some(Skip::MaxInflight)
    } else {
        None
    };
    if let Some(skip) = skip {
        app.metrics
            .comparison_skips
            .with_label_values(&[skip.as_str()])
            .inc();
        return;
    }
    let slot = Slot::new(Arc::clone(app));
    tokio::spawn(compare(slot, image, boxes.to_vec()));
}

/// One comparison slot, given back however the comparison ends.
struct Slot {
    app: Arc<App>,
}

impl Slot {
    fn new(app: Arc<App>) -> Slot {
        set_in_flight(&app);
        Slot { app }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(cmp) = self.app.comparer() {
            cmp.in_flight.fetch_sub(1, Ordering::SeqCst);
        }
        set_in_flight(&self.app);
    }
}

fn set_in_flight(app: &App) {
    if let Some(cmp) = app.comparer() {
        let n = cmp.in_flight.load(Ordering::SeqCst);
        app.metrics.comparisons_in_flight.set(n as i64);
    }
}

async fn compare(slot: Slot, image: Bytes, gray: Vec<BoxOut>) {
    let app = &slot.app;
    let Some(cmp) = app.comparer() else {
        return;
    };
    let answer = match tokio::time::timeout(cmp.cfg.timeout, cmp.ask(image)).await {
        Ok(answer) => answer,
        Err(_) => Err((
            Fail::Timeout,
            format!("no whole reply within {} ms", cmp.cfg.timeout.as_millis()),
        )),
    };
    let stable = match answer {
        Ok(stable) => stable,
        Err((fail, detail)) => {
            app.metrics
                .comparison_failures
                .with_label_values(&[fail.as_str()])
                .inc();
            cmp.failed(fail, &detail);
            return;
        }
    };
    cmp.succeeded();
    let frame = FrameAgreement::between(&labelled(&stable), &labelled(&gray));
    record(&app.metrics, cmp, &frame);
}

/// Books a finished comparison: its metrics, and its value for a later reply.
fn record(metrics: &Metrics, cmp: &Comparer, frame: &FrameAgreement) {
    metrics.observe_agreement(frame, &mut lock(&cmp.labels));
    let mut pending = lock(&cmp.pending);
    if pending.push(frame.value()) {
        metrics.agreements_dropped.inc();
    }
    metrics.agreements_pending.set(pending.len() as i64);
}
