//! `POST /infer`: body → admission → the detector → JSON boxes with the signal headers (and,
//! on a gray sidecar that compares, a finished agreement; then the frame may be compared).
//! A comparison request from a gray sidecar is answered the same way but booked apart.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::Bytes;
use hyper::body::Body;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Request, StatusCode};
use serde::Serialize;

use super::app::App;
use super::body::{Payload, payload_kind, read_body};
use super::compare;
use super::multipart;
use super::reply::{Marks, Reply, error_reply, json_reply};
use crate::detect::{BoxOut, DetectError};
use crate::error::{ApiError, ErrorKind};
use crate::signals::meta::{Outcome, ReplyMeta, round_ms};

#[derive(Serialize)]
struct InferReply<'a> {
    model_version: &'a str,
    boxes: &'a [BoxOut],
    preprocess_ms: f64,
    inference_ms: f64,
    nms_ms: f64,
    latency_ms: f64,
    /// Successful replies per second over the last 10 s, this one included.
    fps: f64,
    batch_size: usize,
}

/// Releases the admission slot and the in-flight count however the request ends.
struct Admitted<'a> {
    app: &'a App,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        self.app.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

pub(super) async fn infer<B>(app: &Arc<App>, req: Request<B>, started: Instant) -> Reply
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    // Reset to "body received" by `infer_inner`: the latency is decode to reply.
    let mut since = started;
    let marks = Marks::of(req.headers());
    match infer_inner(app, req, &mut since, marks).await {
        Ok(reply) => reply,
        Err(e) => error_reply(app, e, since, marks),
    }
}

async fn infer_inner<B>(
    app: &Arc<App>,
    req: Request<B>,
    since: &mut Instant,
    marks: Marks,
) -> Result<Reply, ApiError>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let max = app.cfg.max_body_bytes;
    let too_large = || {
        ApiError::new(
            ErrorKind::BodyTooLarge,
            format!("request body is larger than --max-body-bytes ({max} bytes)"),
        )
    };
    let kind = payload_kind(req.headers().get(CONTENT_TYPE));
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    // A body of up to twice the limit is read and thrown away so that the client, still
    // sending, sees the 413 instead of a reset; a larger declared body is refused at once.
    let drain_cap = max.saturating_mul(2);
    if declared.is_some_and(|n| n > drain_cap as u64) {
        return Err(too_large());
    }
    let deadline = tokio::time::Instant::now() + app.cfg.limits.body_read;
    let body = read_body(req.into_body(), max, drain_cap, declared, deadline)
        .await?
        .ok_or_else(too_large)?;
    let kind = kind?;
    *since = app.clock.now();
    let started = *since;
    let image = match kind {
        Payload::Raw => body,
        Payload::Multipart(boundary) => multipart::extract_field(&body, &boundary, "image")?,
    };
    let detector = match (app.detector(), app.warmed.load(Ordering::SeqCst)) {
        (Some(d), true) => d,
        _ => {
            return Err(ApiError::new(
                ErrorKind::NotReady,
                "the model is still loading or warming up",
            ));
        }
    };
    if app.draining.load(Ordering::SeqCst) {
        return Err(ApiError::new(
            ErrorKind::NotReady,
            "the server is shutting down",
        ));
    }
    // A comparison is extra load: it yields to the requests already waiting for the model.
    if marks.compare && app.waiting() > 0 {
        return Err(ApiError::new(
            ErrorKind::QueueFull,
            "comparison shed: requests are waiting for the model",
        ));
    }
    let permit = Arc::clone(&app.admission)
        .try_acquire_owned()
        .map_err(|_| {
            ApiError::new(
                ErrorKind::QueueFull,
                format!(
                    "{} requests are already waiting for the model (--max-queue)",
                    app.cfg.max_queue
                ),
            )
        })?;
    app.in_flight.fetch_add(1, Ordering::SeqCst);
    let admitted = Admitted {
        app,
        _permit: permit,
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    detector.submit(
        image.clone(),
        Box::new(move |r| {
            let _ = tx.send(r);
        }),
    );
    let result = rx.await;
    drop(admitted);
    let det = match result {
        Ok(Ok(d)) => d,
        Ok(Err(DetectError::Decode(e))) => return Err(e.into()),
        Ok(Err(DetectError::Inference(e))) => return Err(ApiError::new(ErrorKind::Inference, e)),
        Err(_) => {
            return Err(ApiError::new(
                ErrorKind::Internal,
                "inference task failed without an answer",
            ));
        }
    };
    app.images.remember(image.clone());
    let now = app.clock.now();
    if let Ok(mut l) = app.last_success.lock() {
        *l = Some(now);
    }
    let latency_ms = round_ms(app.clock.ms_since(started));
    // A comparison stable serves for a gray sidecar stays out of its serving statistics: the
    // watchdog and the throughput.
    let fps = if marks.compare {
        app.throughput_now(now)
    } else {
        app.with_watchdog(|w| w.record_success(now, latency_ms, det.boxes.len()));
        app.record_reply(now)
    };
    let mut meta = ReplyMeta {
        latency_ms,
        outcome: Outcome::Detected {
            box_count: det.boxes.len(),
            inference_ms: det.inference_ms,
            nms_ms: round_ms(det.nms_ms),
            batch_size: det.batch_size,
        },
        breach: app.breaches(now),
        latched: app.latched(now, marks.probe),
        held: app.held(),
        agreement: None,
    };
    let body = serde_json::to_string(&InferReply {
        model_version: &app.cfg.model_version,
        boxes: &det.boxes,
        preprocess_ms: round_ms(det.preprocess_ms),
        inference_ms: round_ms(det.inference_ms),
        nms_ms: meta.nms_ms(),
        latency_ms,
        fps: round_ms(fps),
        batch_size: det.batch_size,
    })
    .map_err(|e| ApiError::new(ErrorKind::Internal, format!("cannot encode the reply: {e}")))?;
    let mut r = json_reply(StatusCode::OK, body);
    if !marks.compare {
        meta.agreement = compare::take_agreement(app);
    }
    meta.stamp(r.headers_mut(), &app.model_version);
    app.metrics.observe_reply(&meta, 200, marks.compare);
    if !marks.compare {
        compare::offer(app, image, &det.boxes);
    }
    Ok(r)
}
