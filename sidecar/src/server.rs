//! HTTP: routing, body limits, admission (the bounded queue), the `/infer` handler, health,
//! readiness and metrics endpoints, and the accept loop with graceful drain.

use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper::body::Body;
use hyper::header::{ALLOW, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::config::Config;
use crate::detector::{BoxOut, DetectError, Detector};
use crate::error::{ApiError, ErrorKind};
use crate::meta::{Outcome, ReplyMeta, round_ms};
use crate::metrics::Metrics;
use crate::multipart;
use crate::selfcheck::ImageMemory;
use crate::watchdog::{BreachSet, Reason, Watchdog};

/// Shared state of the server.
pub struct App {
    pub cfg: Config,
    pub metrics: Metrics,
    model_version: HeaderValue,
    detector: OnceLock<Arc<dyn Detector>>,
    /// Warm-up finished.
    warmed: AtomicBool,
    /// Last self-check passed.
    check_ok: AtomicBool,
    draining: AtomicBool,
    watchdog: Mutex<Watchdog>,
    /// Permits = model workers + `--max-queue`: admitted requests never exceed it.
    admission: Arc<Semaphore>,
    in_flight: AtomicUsize,
    pub images: ImageMemory,
    last_success: Mutex<Option<Instant>>,
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

type Reply = Response<Full<Bytes>>;

fn json_reply(status: StatusCode, body: String) -> Reply {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// An error reply with the signal headers (box count 0) and its metrics.
fn error_reply(app: &App, err: ApiError, started: Instant) -> Reply {
    let now = Instant::now();
    if err.kind.is_server_side() {
        app.with_watchdog(|w| w.record_error(now));
    }
    let meta = ReplyMeta {
        latency_ms: ms_since(started),
        outcome: Outcome::Failed(err.kind),
        breach: app.breaches(now),
    };
    let status = err.kind.status();
    let mut r = json_reply(status, err.body());
    meta.stamp(r.headers_mut(), &app.model_version);
    if let Some(s) = err.kind.retry_after_s() {
        r.headers_mut().insert(RETRY_AFTER, HeaderValue::from(s));
    }
    match err.kind {
        ErrorKind::MethodNotAllowed => {}
        ErrorKind::Internal | ErrorKind::Inference => log::error!("{err}"),
        _ => log::debug!("{err}"),
    }
    meta.observe(&app.metrics, status.as_u16());
    r
}

fn ms_since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

#[derive(Serialize)]
struct InferReply<'a> {
    model_version: &'a str,
    boxes: &'a [BoxOut],
    preprocess_ms: f64,
    inference_ms: f64,
    nms_ms: f64,
    latency_ms: f64,
}

/// Routes one request.
pub async fn handle<B>(app: Arc<App>, req: Request<B>) -> Result<Reply, Infallible>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    if path == "/infer" && method == Method::POST {
        return Ok(infer(&app, req, started).await);
    }
    // Whatever the route, a body the client is still sending is read (bounded) and dropped, so
    // it sees the reply instead of a connection reset.
    let _ = read_body(
        req.into_body(),
        0,
        app.cfg.max_body_bytes.saturating_mul(2),
        None,
    )
    .await;
    let not_allowed = |allow: &'static str| {
        let mut r = error_reply(
            &app,
            ApiError::new(
                ErrorKind::MethodNotAllowed,
                format!("{method} {path} is not allowed; use {allow}"),
            ),
            started,
        );
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static(allow));
        r
    };
    let get = method == Method::GET || method == Method::HEAD;
    let reply = match path.as_str() {
        "/infer" => not_allowed("POST"),
        "/healthz" | "/ready" | "/metrics" if !get => not_allowed("GET, HEAD"),
        "/healthz" => json_reply(StatusCode::OK, r#"{"status":"ok"}"#.into()),
        "/ready" => ready(&app),
        "/metrics" => metrics(&app),
        other => error_reply(
            &app,
            ApiError::new(ErrorKind::NotFound, format!("no route {other:?}")),
            started,
        ),
    };
    Ok(reply)
}

fn ready(app: &App) -> Reply {
    app.refresh_gauges();
    let (status, state) = if app.is_ready() {
        (StatusCode::OK, "ready")
    } else if app.draining.load(Ordering::SeqCst) {
        (StatusCode::SERVICE_UNAVAILABLE, "draining")
    } else if !app.warmed.load(Ordering::SeqCst) {
        (StatusCode::SERVICE_UNAVAILABLE, "warming-up")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "self-check-failed")
    };
    json_reply(status, serde_json::json!({ "status": state }).to_string())
}

fn metrics(app: &App) -> Reply {
    app.refresh_gauges();
    app.breaches(Instant::now());
    let mut r = Response::new(Full::new(Bytes::from(app.metrics.render())));
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}

/// Which kind of body the Content-Type announces.
enum Payload {
    Raw,
    Multipart(String),
}

fn payload_kind(content_type: Option<&HeaderValue>) -> Result<Payload, ApiError> {
    let Some(ct) = content_type else {
        return Ok(Payload::Raw); // sniffed from the bytes
    };
    let ct = ct
        .to_str()
        .map_err(|_| ApiError::new(ErrorKind::UnsupportedMediaType, "Content-Type is not ASCII"))?;
    let media = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match media.as_str() {
        "image/jpeg" | "image/jpg" | "image/png" | "application/octet-stream" => Ok(Payload::Raw),
        "multipart/form-data" => multipart::boundary(ct)
            .map(|b| Payload::Multipart(b.to_string()))
            .ok_or_else(|| ApiError::from(multipart::MultipartError::NoBoundary)),
        _ => Err(ApiError::new(
            ErrorKind::UnsupportedMediaType,
            format!(
                "Content-Type {media:?} is not supported; send image/jpeg, image/png, application/octet-stream or multipart/form-data with a field \"image\""
            ),
        )),
    }
}

/// Reads at most `max` bytes of `body`; `Ok(None)` when it is longer (the excess is drained up
/// to `drain_cap` bytes in all).
async fn read_body<B>(
    mut body: B,
    max: usize,
    drain_cap: usize,
    declared: Option<u64>,
) -> Result<Option<Bytes>, ApiError>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut buf = BytesMut::with_capacity(declared.map_or(0, |n| n.min(max as u64) as usize));
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            ApiError::new(
                ErrorKind::BadImage,
                format!("cannot read the request body: {}", e.into()),
            )
        })?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        total = total.saturating_add(data.len());
        if total > max {
            buf = BytesMut::new();
            if total > drain_cap {
                break;
            }
        } else if buf.is_empty() && data.len() == total && declared == Some(total as u64) {
            // The whole body in one frame: keep it without copying.
            return Ok(Some(data));
        } else {
            buf.extend_from_slice(&data);
        }
    }
    Ok((total <= max).then(|| buf.freeze()))
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

async fn infer<B>(app: &Arc<App>, req: Request<B>, started: Instant) -> Reply
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    // Reset to "body received" by `infer_inner`: the latency is decode to reply.
    let mut clock = started;
    match infer_inner(app, req, &mut clock).await {
        Ok(reply) => reply,
        Err(e) => error_reply(app, e, clock),
    }
}

async fn infer_inner<B>(
    app: &Arc<App>,
    req: Request<B>,
    clock: &mut Instant,
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
    let body = read_body(req.into_body(), max, drain_cap, declared)
        .await?
        .ok_or_else(too_large)?;
    let kind = kind?;
    *clock = Instant::now();
    let started = *clock;
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
    app.images.remember(image);
    let now = Instant::now();
    if let Ok(mut l) = app.last_success.lock() {
        *l = Some(now);
    }
    let latency_ms = round_ms(ms_since(started));
    app.with_watchdog(|w| w.record_success(now, latency_ms, det.boxes.len()));
    let meta = ReplyMeta {
        latency_ms,
        outcome: Outcome::Detected {
            box_count: det.boxes.len(),
            inference_ms: det.inference_ms,
            nms_ms: round_ms(det.nms_ms),
        },
        breach: app.breaches(now),
    };
    let body = serde_json::to_string(&InferReply {
        model_version: &app.cfg.model_version,
        boxes: &det.boxes,
        preprocess_ms: round_ms(det.preprocess_ms),
        inference_ms: round_ms(det.inference_ms),
        nms_ms: meta.nms_ms(),
        latency_ms,
    })
    .map_err(|e| ApiError::new(ErrorKind::Internal, format!("cannot encode the reply: {e}")))?;
    let mut r = json_reply(StatusCode::OK, body);
    meta.stamp(r.headers_mut(), &app.model_version);
    meta.observe(&app.metrics, 200);
    Ok(r)
}

/// Accepts connections until `shutdown` resolves, then stops accepting, lets in-flight
/// requests finish (at most `--drain-timeout-s`) and returns.
pub async fn serve(app: Arc<App>, listener: TcpListener, shutdown: impl Future<Output = ()>) {
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    // Slow-header clients are cut off instead of holding a connection forever.
    http.timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        .keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = match accepted {
                    Ok(s) => s,
                    Err(e) => {
                        // EMFILE and friends: back off rather than spin.
                        log::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let app = Arc::clone(&app);
                let service = service_fn(move |req| handle(Arc::clone(&app), req));
                let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        log::debug!("connection: {e}");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    app.set_draining();
    let in_flight = app.in_flight.load(Ordering::SeqCst);
    log::info!("shutting down: draining {in_flight} in-flight request(s)");
    match tokio::time::timeout(app.cfg.drain_timeout, graceful.shutdown()).await {
        Ok(()) => log::info!("drained; bye"),
        Err(_) => log::warn!(
            "drain timeout ({:?}) reached with {} request(s) in flight",
            app.cfg.drain_timeout,
            app.in_flight.load(Ordering::SeqCst)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Args;
    use crate::detector::Detections;
    use clap::Parser;
    use std::sync::atomic::AtomicUsize;

    /// Returns `boxes` boxes for any JPEG/PNG, a decode error otherwise; optionally slow.
    struct FakeDetector {
        boxes: usize,
        delay: Duration,
        calls: AtomicUsize,
    }

    impl Detector for FakeDetector {
        fn detect(&self, image: &[u8]) -> Result<Detections, DetectError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if crate::decode::sniff(image).is_none() {
                return Err(DetectError::Decode(crate::decode::DecodeError::Unsupported));
            }
            if image.len() < 8 {
                return Err(DetectError::Decode(crate::decode::DecodeError::Corrupt(
                    "short".into(),
                )));
            }
            std::thread::sleep(self.delay);
            let b = BoxOut {
                x1: 1.0,
                y1: 2.0,
                x2: 3.0,
                y2: 4.0,
                score: 0.9,
                class_id: 0,
                label: Arc::from("Normal"),
            };
            Ok(Detections {
                boxes: vec![b; self.boxes],
                preprocess_ms: 1.0,
                inference_ms: 10.0,
                nms_ms: 0.1,
            })
        }
    }

    fn app(extra: &[&str], boxes: usize, delay: Duration) -> Arc<App> {
        let model = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
        let argv = ["x", "--model", model, "--model-version", "v-test"]
            .into_iter()
            .chain(extra.iter().copied());
        let cfg = Args::try_parse_from(argv).unwrap().validate().unwrap();
        let app = Arc::new(App::new(cfg, Metrics::new(false).unwrap()));
        app.set_detector(Arc::new(FakeDetector {
            boxes,
            delay,
            calls: AtomicUsize::new(0),
        }));
        app.set_warmed();
        app
    }

    const JPEG: &[u8] = b"\xFF\xD8\xFF\xE0fake-jpeg-body";

    fn req(method: &str, path: &str, ct: Option<&str>, body: &[u8]) -> Request<Full<Bytes>> {
        let mut b = Request::builder().method(method).uri(path);
        if let Some(ct) = ct {
            b = b.header(CONTENT_TYPE, ct);
        }
        b.body(Full::new(Bytes::copy_from_slice(body))).unwrap()
    }

    async fn call(
        app: &Arc<App>,
        r: Request<Full<Bytes>>,
    ) -> (StatusCode, hyper::HeaderMap, serde_json::Value) {
        let resp = handle(Arc::clone(app), r).await.unwrap();
        let (parts, body) = resp.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        (parts.status, parts.headers, json)
    }

    fn h<'a>(headers: &'a hyper::HeaderMap, name: &str) -> &'a str {
        headers.get(name).map(|v| v.to_str().unwrap()).unwrap_or("")
    }

    #[tokio::test]
    async fn success_headers_match_the_json() {
        let app = app(&[], 3, Duration::ZERO);
        let (status, headers, json) =
            call(&app, req("POST", "/infer", Some("image/jpeg"), JPEG)).await;
        assert_eq!(status, 200);
        assert_eq!(json["boxes"].as_array().unwrap().len(), 3);
        assert_eq!(h(&headers, "x-box-count"), "3");
        assert_eq!(h(&headers, "x-model-version"), "v-test");
        assert_eq!(json["model_version"], "v-test");
        let lat: f64 = h(&headers, "x-inference-latency-ms").parse().unwrap();
        assert_eq!(lat, json["latency_ms"].as_f64().unwrap());
        let nms: f64 = h(&headers, "x-nms-latency-ms").parse().unwrap();
        assert_eq!(nms, json["nms_ms"].as_f64().unwrap());
        assert_eq!(json["inference_ms"], 10.0);
        assert!(headers.get("x-canary-breach").is_none());
        assert_eq!(app.metrics.requests.with_label_values(&["200"]).get(), 1);
        assert_eq!(app.metrics.last_box_count.get(), 3);
    }

    #[tokio::test]
    async fn every_error_has_its_status_json_and_signal_headers() {
        let app = app(&["--max-body-bytes", "100"], 1, Duration::ZERO);
        let multipart_ok = b"--B\r\nContent-Disposition: form-data; name=\"image\"\r\n\r\n\xFF\xD8\xFF\xE0abcdefgh\r\n--B--\r\n";
        let cases: Vec<(Request<Full<Bytes>>, u16, &str)> = vec![
            (
                req("POST", "/infer", Some("image/jpeg"), b"GIF89a-----"),
                415,
                "unsupported_media_type",
            ),
            (
                req("POST", "/infer", Some("text/plain"), JPEG),
                415,
                "unsupported_media_type",
            ),
            (
                req("POST", "/infer", Some("image/jpeg"), b"\xFF\xD8\xFF"),
                400,
                "bad_image",
            ),
            (
                req("POST", "/infer", Some("image/png"), &[0xFF; 200]),
                413,
                "body_too_large",
            ),
            (
                req("POST", "/infer", Some("multipart/form-data"), JPEG),
                400,
                "bad_image",
            ),
            (
                req(
                    "POST",
                    "/infer",
                    Some("multipart/form-data; boundary=B"),
                    b"--B\r\n\r\n",
                ),
                400,
                "bad_image",
            ),
            (req("GET", "/infer", None, b""), 405, "method_not_allowed"),
            (
                req("POST", "/metrics", None, b""),
                405,
                "method_not_allowed",
            ),
            (req("GET", "/nope", None, b""), 404, "not_found"),
        ];
        for (r, status, kind) in cases {
            let what = format!("{} {}", r.method(), r.uri());
            let (s, headers, json) = call(&app, r).await;
            assert_eq!(s.as_u16(), status, "{what}: {json}");
            assert_eq!(json["kind"], kind, "{what}");
            assert!(
                json["error"].as_str().is_some_and(|e| !e.is_empty()),
                "{what}"
            );
            assert_eq!(h(&headers, "x-box-count"), "0", "{what}");
            assert_eq!(h(&headers, "x-model-version"), "v-test", "{what}");
            assert!(
                h(&headers, "x-inference-latency-ms").parse::<f64>().is_ok(),
                "{what}"
            );
        }
        // The multipart form with a proper image field works.
        let (s, _, _) = call(
            &app,
            req(
                "POST",
                "/infer",
                Some("multipart/form-data; boundary=B"),
                multipart_ok,
            ),
        )
        .await;
        assert_eq!(s, 200);
        assert_eq!(
            app.metrics
                .errors
                .with_label_values(&["unsupported_media_type"])
                .get(),
            2
        );
        assert_eq!(app.metrics.requests.with_label_values(&["404"]).get(), 1);
    }

    #[tokio::test]
    async fn not_ready_until_warmed_and_while_draining() {
        let app = app(&[], 1, Duration::ZERO);
        let cold = Arc::new(App::new(app.cfg.clone(), Metrics::new(false).unwrap()));
        let (s, headers, json) = call(&cold, req("POST", "/infer", Some("image/jpeg"), JPEG)).await;
        assert_eq!(
            (s.as_u16(), json["kind"].as_str()),
            (503, Some("not_ready"))
        );
        assert_eq!(h(&headers, "retry-after"), "1");
        assert_eq!(call(&cold, req("GET", "/ready", None, b"")).await.0, 503);
        assert_eq!(call(&cold, req("GET", "/healthz", None, b"")).await.0, 200);
        assert_eq!(call(&app, req("GET", "/ready", None, b"")).await.0, 200);
        app.set_check_ok(false);
        let (s, _, json) = call(&app, req("GET", "/ready", None, b"")).await;
        assert_eq!(
            (s.as_u16(), json["status"].as_str()),
            (503, Some("self-check-failed"))
        );
        app.set_check_ok(true);
        app.set_draining();
        assert_eq!(call(&app, req("GET", "/ready", None, b"")).await.0, 503);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn queue_full_is_503_with_retry_after() {
        // 1 worker + 1 queued: of 6 concurrent requests at most 2 are admitted.
        let app = app(&["--max-queue", "1"], 1, Duration::from_millis(300));
        let tasks: Vec<_> = (0..6)
            .map(|_| {
                let app = Arc::clone(&app);
                tokio::spawn(async move {
                    call(&app, req("POST", "/infer", Some("image/jpeg"), JPEG)).await
                })
            })
            .collect();
        let mut ok = 0;
        let mut full = 0;
        for t in tasks {
            let (s, headers, json) = t.await.unwrap();
            match s.as_u16() {
                200 => ok += 1,
                503 => {
                    assert_eq!(json["kind"], "queue_full");
                    assert_eq!(h(&headers, "retry-after"), "1");
                    full += 1;
                }
                other => panic!("unexpected {other}"),
            }
        }
        assert!((1..=2).contains(&ok), "ok={ok}");
        assert_eq!(ok + full, 6);
        assert_eq!(app.in_flight.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn forced_latency_breach_is_stamped_and_clears() {
        let app = app(
            &[
                "--watchdog-latency-budget-ms",
                "0.000001",
                "--watchdog-min-samples",
                "2",
                "--watchdog-window-s",
                "0.3",
            ],
            1,
            Duration::from_millis(2),
        );
        let (_, headers, _) = call(&app, req("POST", "/infer", Some("image/jpeg"), JPEG)).await;
        assert!(
            headers.get("x-canary-breach").is_none(),
            "one sample < min_samples"
        );
        let (_, headers, _) = call(&app, req("POST", "/infer", Some("image/jpeg"), JPEG)).await;
        assert_eq!(h(&headers, "x-canary-breach"), "latency");
        assert_eq!(
            app.metrics
                .breach_active
                .with_label_values(&["latency"])
                .get(),
            1
        );
        // Error replies carry the flag too.
        let (_, headers, _) = call(&app, req("GET", "/nope", None, b"")).await;
        assert_eq!(h(&headers, "x-canary-breach"), "latency");
        tokio::time::sleep(Duration::from_millis(400)).await;
        let (_, headers, _) = call(&app, req("GET", "/nope", None, b"")).await;
        assert!(headers.get("x-canary-breach").is_none(), "window expired");
        assert_eq!(
            app.metrics
                .breach_active
                .with_label_values(&["latency"])
                .get(),
            0
        );
    }

    #[tokio::test]
    async fn box_count_breach_from_the_baseline() {
        let app = app(
            &[
                "--watchdog-box-mean",
                "2",
                "--watchdog-box-std",
                "1",
                "--watchdog-min-samples",
                "3",
            ],
            40,
            Duration::ZERO,
        );
        let mut last = String::new();
        for _ in 0..3 {
            let (_, headers, _) = call(&app, req("POST", "/infer", Some("image/jpeg"), JPEG)).await;
            last = h(&headers, "x-canary-breach").to_string();
        }
        assert_eq!(last, "box_count");
    }

    #[tokio::test]
    async fn metrics_endpoint_is_prometheus_text() {
        let app = app(&[], 2, Duration::ZERO);
        call(
            &app,
            req(
                "POST",
                "/infer",
                Some("image/png"),
                b"\x89PNG\r\n\x1a\nxxxxxxxx",
            ),
        )
        .await;
        let resp = handle(Arc::clone(&app), req("GET", "/metrics", None, b""))
            .await
            .unwrap();
        assert!(h(resp.headers(), "content-type").starts_with("text/plain"));
        let text = String::from_utf8(
            resp.into_body()
                .collect()
                .await
                .unwrap()
                .to_bytes()
                .to_vec(),
        )
        .unwrap();
        assert!(
            text.contains("grayguard_sidecar_requests_total{status=\"200\"} 1"),
            "{text}"
        );
        assert!(text.contains("grayguard_sidecar_ready 1"));
        assert!(text.contains("grayguard_sidecar_detections_per_image_count 1"));
    }
}
