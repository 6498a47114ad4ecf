//! Handler tests over a fake detector: routing, statuses, headers, admission, breaches. Time
//! is a manual clock the tests move (a fake model run moves it by its delay); nothing sleeps.
//! The comparison with stable has its own file ([`compare`]).
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::header::CONTENT_TYPE;
use hyper::{Request, StatusCode};

use super::{App, handle};
use crate::clock::{Clock, ManualClock};
use crate::config::Args;
use crate::detect::{BoxOut, DetectError, Detections, Detector};
use crate::introspect::metrics::Metrics;
use crate::vision::decode::{DecodeError, sniff};

mod compare;

/// Returns `boxes` boxes for any JPEG/PNG, a decode error otherwise. A model run takes
/// `delay` on the test's clock, and waits at the gate when there is one. Like one model
/// worker, it reports one request busy while any runs (the others are queued), and
/// `running_since` says since when.
struct FakeDetector {
    boxes: usize,
    delay: Duration,
    clock: Arc<ManualClock>,
    gate: Option<Arc<Gate>>,
    /// Holds only the images that end in `hold` until the test opens it.
    hold: Option<Arc<Gate>>,
    calls: AtomicUsize,
    /// Runs in progress, and since when the current one runs.
    running: AtomicUsize,
    running_since: Mutex<Option<Instant>>,
}

/// Counts a run in progress until dropped.
struct Running<'a>(&'a AtomicUsize);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Where the gate stands: how many runs reached it, and whether it is open.
#[derive(Default)]
struct GateState {
    entered: usize,
    open: bool,
}

/// Holds the fake model's runs until the test opens it.
#[derive(Default)]
struct Gate {
    state: Mutex<GateState>,
    changed: Condvar,
}

impl Gate {
    fn pass(&self) {
        let mut state = self.state.lock().unwrap();
        state.entered += 1;
        self.changed.notify_all();
        let _state = self.changed.wait_while(state, |s| !s.open).unwrap();
    }

    fn open(&self) {
        self.state.lock().unwrap().open = true;
        self.changed.notify_all();
    }

    /// Blocks until `n` runs have reached the gate.
    fn wait_entered(&self, n: usize) {
        let state = self.state.lock().unwrap();
        let _state = self.changed.wait_while(state, |s| s.entered < n).unwrap();
    }
}

/// Opens the gate when dropped, so that a failing test ends instead of waiting for held runs.
struct Opener(Arc<Gate>);

impl Drop for Opener {
    fn drop(&mut self) {
        self.0.open();
    }
}

impl Detector for FakeDetector {
    fn detect(&self, image: &[u8]) -> Result<Detections, DetectError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.running.fetch_add(1, Ordering::SeqCst);
        let _running = Running(&self.running);
        if sniff(image).is_none() {
            return Err(DetectError::Decode(DecodeError::Unsupported));
        }
        if image.len() < 8 {
            return Err(DetectError::Decode(DecodeError::Corrupt("short".into())));
        }
        *self.running_since.lock().unwrap() = Some(self.clock.now());
        if let Some(gate) = &self.gate {
            gate.pass();
        }
        if let Some(gate) = &self.hold
            && image.ends_with(b"hold")
        {
            gate.pass();
        }
        self.clock.advance(self.delay);
        *self.running_since.lock().unwrap() = None;
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
            batch_size: 1,
        })
    }

    fn busy(&self) -> usize {
        self.running.load(Ordering::SeqCst).min(1)
    }

    fn running_since(&self) -> Option<Instant> {
        *self.running_since.lock().unwrap()
    }
}

fn app(extra: &[&str], boxes: usize, delay: Duration) -> (Arc<App>, Arc<ManualClock>) {
    gated_app(extra, boxes, delay, None)
}

fn gated_app(
    extra: &[&str],
    boxes: usize,
    delay: Duration,
    gate: Option<Arc<Gate>>,
) -> (Arc<App>, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new());
    let model = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
    let argv = ["x", "--model", model, "--model-version", "v-test"]
        .into_iter()
        .chain(extra.iter().copied());
    let cfg = Args::try_parse_from(argv).unwrap().into_config();
    let app = Arc::new(App::new(cfg, Metrics::new(false).unwrap(), clock.clone()));
    app.set_detector(Arc::new(FakeDetector {
        boxes,
        delay,
        clock: Arc::clone(&clock),
        gate,
        hold: None,
        calls: AtomicUsize::new(0),
        running: AtomicUsize::new(0),
        running_since: Mutex::new(None),
    }));
    app.set_warmed();
    (app, clock)
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
    let (app, _) = app(&[], 3, Duration::ZERO);
    let (status, headers, json) = call(&app, req("POST", "/infer", Some("image/jpeg"), JPEG)).await;
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
    // One reply in the last 10 s.
    assert_eq!(json["fps"], 0.1);
}

#[tokio::test]
async fn fps_counts_the_successful_replies_of_the_last_ten_seconds() {
    // Each fake run takes 250 ms on the test's clock: 4 replies a second.
    let (app, clock) = app(&[], 1, Duration::from_millis(250));
    let mut fps = Vec::new();
    for _ in 0..60 {
        let (_, _, json) = call(&app, req("POST", "/infer", Some("image/jpeg"), JPEG)).await;
        fps.push(json["fps"].as_f64().unwrap());
    }
    assert_eq!(fps[0], 0.1);
    assert_eq!(fps[59], 4.0, "{fps:?}");
    // Failures are not throughput; a pause empties the window.
    let (status, _, _) = call(&app, req("POST", "/infer", Some("image/jpeg"), b"nope")).await;
    assert_eq!(status, 415);
    clock.advance(Duration::from_secs(30));
    let (_, _, json) = call(&app, req("POST", "/infer", Some("image/jpeg"), JPEG)).await;
    assert_eq!(json["fps"], 0.1);
}

#[tokio::test]
async fn every_error_has_its_status_json_and_signal_headers() {
    let (app, _) = app(&["--max-body-bytes", "100"], 1, Duration::ZERO);
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

/// An app with `app`'s configuration and clock whose model never loaded.
fn cold(app: &App) -> Arc<App> {
    Arc::new(App::new(
        app.cfg.clone(),
        Metrics::new(false).unwrap(),
        Arc::clone(&app.clock),
    ))
}

#[tokio::test]
async fn not_ready_until_warmed_and_while_draining() {
    let (app, _) = app(&[], 1, Duration::ZERO);
    let cold = cold(&app);
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
    // 1 worker + 1 queued: of 6 concurrent requests at most 2 are admitted, and the model
    // holds those until the test has seen the others refused.
    let gate = Arc::new(Gate::default());
    let opener = Opener(Arc::clone(&gate));
    let (app, _) = gated_app(&["--max-queue", "1"], 1, Duration::ZERO, Some(gate));
    let (tx, mut answers) = tokio::sync::mpsc::unbounded_channel();
    for _ in 0..6 {
        let (app, tx) = (Arc::clone(&app), tx.clone());
        tokio::spawn(async move {
            let _ = tx.send(call(&app, req("POST", "/infer", Some("image/jpeg"), JPEG)).await);
        });
    }
    drop(tx);
    let mut ok = 0;
    let mut full = 0;
    let mut count =
        |(s, headers, json): (StatusCode, hyper::HeaderMap, serde_json::Value)| match s.as_u16() {
            200 => ok += 1,
            503 => {
                assert_eq!(json["kind"], "queue_full");
                assert_eq!(h(&headers, "retry-after"), "1");
                full += 1;
            }
            other => panic!("unexpected {other}"),
        };
    // While the gate is shut only refusals can come back: the admitted requests wait at it.
    for _ in 0..4 {
        let answer = answers.recv().await.expect("a refusal");
        assert_eq!(answer.0, StatusCode::SERVICE_UNAVAILABLE, "{}", answer.2);
        count(answer);
    }
    drop(opener);
    while let Some(answer) = answers.recv().await {
        count(answer);
    }
    assert!((1..=2).contains(&ok), "ok={ok}");
    assert_eq!(ok + full, 6);
    assert_eq!(app.in_flight.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn forced_latency_breach_is_stamped_and_clears() {
    let (app, clock) = app(
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
    clock.advance(Duration::from_millis(400));
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
    let (app, _) = app(
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
    let (app, _) = app(&[], 2, Duration::ZERO);
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

// ---------------------------------------------------------------- stalls

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_stuck_past_the_deadline_fails_liveness_until_it_returns() {
    let gate = Arc::new(Gate::default());
    let opener = Opener(Arc::clone(&gate));
    let (app, clock) = gated_app(
        &["--stall-deadline-s", "5"],
        1,
        Duration::ZERO,
        Some(Arc::clone(&gate)),
    );
    // Start-up arms it after loading the model; these tests have no start-up.
    app.arm_stall(app.cfg.stall.deadline.unwrap());
    let get = |path: &'static str| {
        let app = Arc::clone(&app);
        async move { call(&app, req("GET", path, None, b"")).await }
    };
    assert_eq!(get("/healthz").await.0, 200);
    let held = {
        let app = Arc::clone(&app);
        tokio::spawn(
            async move { call(&app, req("POST", "/infer", Some("image/jpeg"), JPEG)).await },
        )
    };
    let entered = Arc::clone(&gate);
    tokio::task::spawn_blocking(move || entered.wait_entered(1))
        .await
        .unwrap();
    // A run as long as the deadline is slow, not stuck.
    clock.advance(Duration::from_secs(5));
    assert_eq!(get("/healthz").await.0, 200);
    assert_eq!(app.metrics.stalls.get(), 0);
    clock.advance(Duration::from_millis(1));
    let (status, _, json) = get("/healthz").await;
    assert_eq!(
        (status.as_u16(), json["status"].as_str()),
        (503, Some("stalled"))
    );
    let (status, _, json) = get("/ready").await;
    assert_eq!(
        (status.as_u16(), json["status"].as_str()),
        (503, Some("stalled"))
    );
    // Every reply says so in the breach flag, which gateways shed on.
    let (status, headers, _) = get("/nowhere").await;
    assert_eq!(status, 404);
    let flag = grayguard_contract::Flag::parse(h(&headers, "x-canary-breach"));
    assert_eq!(flag.reasons, [grayguard_contract::Reason::Stalled]);
    assert!(flag.first_hand());
    // Counted once however often it is looked at; the gauges say it is now.
    clock.advance(Duration::from_secs(60));
    assert_eq!(get("/healthz").await.0, 503);
    assert_eq!(app.metrics.stalls.get(), 1);
    assert_eq!(app.metrics.stalled.get(), 1);
    assert_eq!(
        app.metrics
            .breach_active
            .with_label_values(&["stalled"])
            .get(),
        1
    );
    assert_eq!(app.metrics.ready.get(), 0);
    // The run returns: the sidecar is live, ready and unflagged again at once.
    drop(opener);
    let (status, headers, _) = held.await.unwrap();
    assert_eq!(status, 200);
    assert!(headers.get("x-canary-breach").is_none());
    assert_eq!(get("/healthz").await.0, 200);
    assert_eq!(get("/ready").await.0, 200);
    assert_eq!(app.metrics.stalled.get(), 0);
    assert_eq!(app.metrics.stalls.get(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unarmed_watch_judges_nothing() {
    // Before the warm-up has set the deadline (a derived one), no run is stuck, however
    // long it has been going.
    let gate = Arc::new(Gate::default());
    let opener = Opener(Arc::clone(&gate));
    let (app, clock) = gated_app(&[], 1, Duration::ZERO, Some(Arc::clone(&gate)));
    assert_eq!(app.stall_deadline(), None);
    let held = {
        let app = Arc::clone(&app);
        tokio::spawn(
            async move { call(&app, req("POST", "/infer", Some("image/jpeg"), JPEG)).await },
        )
    };
    tokio::task::spawn_blocking(move || gate.wait_entered(1))
        .await
        .unwrap();
    clock.advance(Duration::from_secs(3600));
    assert!(!app.stalled(clock.now()));
    assert_eq!(call(&app, req("GET", "/healthz", None, b"")).await.0, 200);
    drop(opener);
    assert_eq!(held.await.unwrap().0, 200);
}

// ---------------------------------------------------------------- the latch

const TOKEN: &str = "grayguard-test-control-token";

fn form(method: &str, body: &str, token: Option<&str>) -> Request<Full<Bytes>> {
    let mut b = Request::builder()
        .method(method)
        .uri(grayguard_contract::latch::PATH)
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(t) = token {
        b = b.header("authorization", t);
    }
    b.body(Full::new(Bytes::from(body.to_string()))).unwrap()
}

async fn control(
    app: &Arc<App>,
    r: Request<Full<Bytes>>,
) -> (StatusCode, hyper::HeaderMap, serde_json::Value) {
    let resp = super::control::handle(Arc::clone(app), r).await.unwrap();
    let (parts, body) = resp.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    (parts.status, parts.headers, json)
}

fn latch_body(rule: &str, trigger: &str, for_ms: u64, gateway: &str) -> String {
    format!("action=latch&rule={rule}&trigger={trigger}&for_ms={for_ms}&gateway={gateway}")
}

fn clear_body(rule: &str, healthy_for_ms: u64, gateway: &str) -> String {
    format!("action=clear&rule={rule}&healthy_for_ms={healthy_for_ms}&gateway={gateway}")
}

fn infer_req(probe: Option<&str>) -> Request<Full<Bytes>> {
    let mut b = Request::builder()
        .method("POST")
        .uri("/infer")
        .header(CONTENT_TYPE, "image/jpeg");
    if let Some(p) = probe {
        b = b.header(grayguard_contract::headers::PROBE, p);
    }
    b.body(Full::new(Bytes::from_static(JPEG))).unwrap()
}

fn counted(app: &App, action: &str, result: &str) -> u64 {
    app.metrics
        .latch_requests
        .with_label_values(&[action, result])
        .get()
}

fn refused(app: &App, reason: &str) -> u64 {
    app.metrics.latch_refused.with_label_values(&[reason]).get()
}

#[tokio::test]
async fn a_latch_flags_every_reply_but_a_probe_until_cleared() {
    let (app, clock) = app(&[], 2, Duration::ZERO);
    let (s, _, json) = control(
        &app,
        form(
            "POST",
            &latch_body("cranes", "box_count", 60_000, "gw-1"),
            None,
        ),
    )
    .await;
    assert_eq!(s, 200, "{json}");
    assert_eq!(json["applied"], "latched");
    assert_eq!(json["latches"][0]["gateway"], "gw-1");
    assert_eq!(app.metrics.latches.get(), 1);
    assert_eq!(counted(&app, "latch", "ok"), 1);

    let (s, headers, _) = call(&app, infer_req(None)).await;
    assert_eq!(s, 200);
    assert_eq!(h(&headers, "x-canary-breach"), "latched:box_count@cranes");
    // A half-open probe is judged on its own merits; any other value is not a probe.
    let (_, headers, _) = call(&app, infer_req(Some("1"))).await;
    assert!(
        headers.get("x-canary-breach").is_none(),
        "probe bypasses the latch"
    );
    let (_, headers, _) = call(&app, infer_req(Some("yes"))).await;
    assert_eq!(h(&headers, "x-canary-breach"), "latched:box_count@cranes");
    // Error replies carry it too (a gateway sheds on any gray response).
    let (s, headers, _) = call(&app, req("GET", "/nope", None, b"")).await;
    assert_eq!(s, 404);
    assert_eq!(h(&headers, "x-canary-breach"), "latched:box_count@cranes");

    // A second gateway latches another rule; GET lists both.
    control(
        &app,
        form(
            "POST",
            &latch_body("gates", "latency", 60_000, "gw-2"),
            None,
        ),
    )
    .await;
    let (s, _, json) = control(&app, form("GET", "", None)).await;
    assert_eq!(s, 200);
    assert_eq!(json["latches"].as_array().unwrap().len(), 2);
    assert_eq!(counted(&app, "list", "ok"), 1);
    let (_, headers, _) = call(&app, infer_req(None)).await;
    assert_eq!(
        h(&headers, "x-canary-breach"),
        "latched:latency@gates,latched:box_count@cranes"
    );

    // A clear whose healthy evidence began after the latch was set drops nothing ...
    let (s, _, json) = control(
        &app,
        form("POST", &clear_body("cranes", 60_000, "gw-3"), None),
    )
    .await;
    assert_eq!(
        (s.as_u16(), json["cleared"].as_u64()),
        (200, Some(0)),
        "{json}"
    );
    // ... one whose evidence is younger than the latch drops it.
    clock.advance(Duration::from_millis(30));
    let (_, _, json) = control(&app, form("POST", &clear_body("cranes", 10, "gw-3"), None)).await;
    assert_eq!(json["applied"], "cleared");
    assert_eq!(json["cleared"], 1);
    assert_eq!(counted(&app, "clear", "ok"), 2);
    let (_, headers, _) = call(&app, infer_req(None)).await;
    assert_eq!(h(&headers, "x-canary-breach"), "latched:latency@gates");
    assert_eq!(app.metrics.latches.get(), 1);
}

#[tokio::test]
async fn latches_expire_and_are_capped_by_the_flags() {
    let (app, clock) = app(
        &["--latch-max-s", "0.15", "--latch-max-entries", "2"],
        1,
        Duration::ZERO,
    );
    for (rule, gw) in [("a", "g1"), ("b", "g2"), ("c", "g3")] {
        let (s, _, _) = control(
            &app,
            form("POST", &latch_body(rule, "flag", 3_600_000, gw), None),
        )
        .await;
        assert_eq!(s, 200);
    }
    let (_, _, json) = control(&app, form("GET", "", None)).await;
    let live = json["latches"].as_array().unwrap();
    assert_eq!(live.len(), 2, "{json}");
    assert!(live.iter().all(|l| l["remaining_ms"].as_u64() <= Some(150)));
    let (_, headers, _) = call(&app, infer_req(None)).await;
    assert!(h(&headers, "x-canary-breach").contains("latched:flag@"));
    // An hour asked, 0.15 s held (--latch-max-s).
    clock.advance(Duration::from_millis(250));
    let (_, headers, _) = call(&app, infer_req(None)).await;
    assert!(headers.get("x-canary-breach").is_none(), "expired");
    app.refresh_gauges();
    assert_eq!(app.metrics.latches.get(), 0);
}

#[tokio::test]
async fn bad_latch_calls_are_refused_and_counted() {
    let (app, _) = app(&[], 1, Duration::ZERO);
    let long = format!(
        "{}&x={}",
        latch_body("r", "flag", 1, "g"),
        "y".repeat(super::control::MAX_LATCH_BODY_BYTES)
    );
    let cases: Vec<(Request<Full<Bytes>>, u16, &str)> = vec![
        (form("POST", "", None), 400, "bad_request"),
        (
            form("POST", "action=pull&rule=r&gateway=g", None),
            400,
            "bad_request",
        ),
        (
            form("POST", &latch_body("a b", "flag", 1, "g"), None),
            400,
            "bad_request",
        ),
        (
            form("POST", &latch_body("r", "boxes", 1, "g"), None),
            400,
            "bad_request",
        ),
        (form("POST", &long, None), 413, "body_too_large"),
    ];
    for (r, status, kind) in cases {
        let (s, _, json) = control(&app, r).await;
        assert_eq!(
            (s.as_u16(), json["kind"].as_str()),
            (status, Some(kind)),
            "{json}"
        );
    }
    let mut bytes = latch_body("r", "flag", 1, "g").into_bytes();
    bytes.push(0xFF);
    let r = Request::builder()
        .method("POST")
        .uri(grayguard_contract::latch::PATH)
        .body(Full::new(Bytes::from(bytes)))
        .unwrap();
    assert_eq!(control(&app, r).await.0, 400, "not UTF-8");
    assert_eq!(refused(&app, "bad_request"), 6);
    assert_eq!(counted(&app, "unknown", "refused"), 6);
    // Other paths and methods on the control listener.
    let other = Request::builder()
        .uri("/infer")
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(control(&app, other).await.0, 404);
    let (s, headers, _) = control(&app, form("DELETE", "", None)).await;
    assert_eq!(s, 405);
    assert_eq!(h(&headers, "allow"), "GET, HEAD, POST");
    assert_eq!(app.metrics.latches.get(), 0, "nothing latched");
}

#[tokio::test]
async fn with_a_token_every_control_call_needs_it() {
    let (app, _) = app(&["--control-token", TOKEN], 1, Duration::ZERO);
    let body = latch_body("cranes", "flag", 60_000, "gw-1");
    let wrong = format!("Bearer {TOKEN}x");
    let basic = format!("Basic {TOKEN}");
    for auth in [
        None,
        Some(wrong.as_str()),
        Some(basic.as_str()),
        Some("Bearer"),
    ] {
        let (s, headers, json) = control(&app, form("POST", &body, auth)).await;
        assert_eq!(
            (s.as_u16(), json["kind"].as_str()),
            (401, Some("unauthorized")),
            "{auth:?}"
        );
        assert!(h(&headers, "www-authenticate").starts_with("Bearer"));
    }
    assert_eq!(control(&app, form("GET", "", None)).await.0, 401);
    assert_eq!(refused(&app, "bad_token"), 5);
    assert_eq!(app.metrics.latches.get(), 0);
    let good = format!("Bearer {TOKEN}");
    assert_eq!(control(&app, form("POST", &body, Some(&good))).await.0, 200);
    let lower = format!("bearer  {TOKEN} ");
    assert_eq!(control(&app, form("GET", "", Some(&lower))).await.0, 200);
    assert_eq!(app.metrics.latches.get(), 1);
}

/// A hold or a release in the contract's grammar.
fn hold_body(req: &grayguard_contract::latch::Request) -> String {
    req.render()
}

/// `GET /grayguard/latch` read with the contract's listing.
async fn listing(app: &Arc<App>, token: Option<&str>) -> grayguard_contract::latch::Listing {
    let (s, _, json) = control(app, form("GET", "", token)).await;
    assert_eq!(s, 200, "{json}");
    serde_json::from_value(json).unwrap()
}

#[tokio::test]
async fn a_hold_flags_every_reply_probes_included_until_a_release_with_the_token() {
    use grayguard_contract::latch::{Request as L, Standing};
    use grayguard_contract::{Flag, Trigger};
    let (app, clock) = app(
        &["--control-token", TOKEN, "--latch-max-s", "60"],
        2,
        Duration::ZERO,
    );
    let good = format!("Bearer {TOKEN}");
    let hold = hold_body(&L::Hold {
        rule: "cranes".into(),
        trigger: Trigger::BoxCount,
        gateway: "gw-0".into(),
    });
    let release = hold_body(&L::Release {
        rule: "cranes".into(),
        gateway: "gw-2".into(),
    });
    // Without the token neither is applied.
    for body in [&hold, &release] {
        assert_eq!(control(&app, form("POST", body, None)).await.0, 401);
    }
    assert_eq!(
        listing(&app, Some(&good)).await.standing("cranes"),
        Standing::Unknown
    );
    let (s, _, json) = control(&app, form("POST", &hold, Some(&good))).await;
    assert_eq!((s.as_u16(), json["applied"].as_str()), (200, Some("held")));
    let (s, _, json) = control(&app, form("POST", &hold, Some(&good))).await;
    assert_eq!(
        (s.as_u16(), json["applied"].as_str()),
        (200, Some("already_held"))
    );
    assert_eq!(counted(&app, "hold", "ok"), 2);
    // Every reply says so, a half-open probe's too, an hour on.
    clock.advance(Duration::from_secs(3600));
    for probe in [None, Some("1")] {
        let (s, headers, _) = call(&app, infer_req(probe)).await;
        assert_eq!(s, 200);
        let flag = Flag::parse(h(&headers, "x-canary-breach"));
        assert_eq!(
            flag.held_for("cranes"),
            Some(Trigger::BoxCount),
            "{probe:?}"
        );
        assert!(!flag.first_hand());
    }
    let listed = listing(&app, Some(&good)).await;
    assert!(matches!(listed.standing("cranes"), Standing::Held(h) if h.gateway == "gw-0"));

    // Released (from another gateway): the flag is quiet, and the release record says so.
    let (s, _, json) = control(&app, form("POST", &release, Some(&good))).await;
    assert_eq!(
        (s.as_u16(), json["applied"].as_str()),
        (200, Some("released"))
    );
    assert_eq!(json["released"][0]["gateway"], "gw-2");
    let (_, headers, _) = call(&app, infer_req(None)).await;
    assert!(headers.get("x-canary-breach").is_none());
    clock.advance(Duration::from_secs(59));
    assert!(matches!(
        listing(&app, Some(&good)).await.standing("cranes"),
        Standing::Released(r) if r.age_ms == 59_000
    ));
    let (_, _, json) = control(&app, form("POST", &release, Some(&good))).await;
    assert_eq!(json["applied"], "already_released");
    assert_eq!(counted(&app, "release", "ok"), 2);
    // The record lives as long as the longest latch (--latch-max-s), then nothing is known.
    clock.advance(Duration::from_secs(61));
    assert_eq!(
        listing(&app, Some(&good)).await.standing("cranes"),
        Standing::Unknown
    );
}

#[tokio::test]
async fn holds_beyond_the_table_are_refused_not_evicted() {
    use grayguard_contract::Trigger;
    use grayguard_contract::latch::Request as L;
    let (app, _) = app(&["--latch-max-entries", "1"], 1, Duration::ZERO);
    let hold = |rule: &str| {
        hold_body(&L::Hold {
            rule: rule.into(),
            trigger: Trigger::Latency,
            gateway: "gw-0".into(),
        })
    };
    assert_eq!(control(&app, form("POST", &hold("a"), None)).await.0, 200);
    let (s, _, json) = control(&app, form("POST", &hold("b"), None)).await;
    assert_eq!(
        (s.as_u16(), json["applied"].as_str()),
        (503, Some("holds_full"))
    );
    assert_eq!(refused(&app, "holds_full"), 1);
    assert_eq!(counted(&app, "hold", "refused"), 1);
    let (_, headers, _) = call(&app, infer_req(None)).await;
    assert_eq!(h(&headers, "x-canary-breach"), "held:latency@a");
}

#[tokio::test]
async fn the_public_listener_refuses_latch_paths() {
    let (app, _) = app(&[], 1, Duration::ZERO);
    let body = latch_body("cranes", "flag", 60_000, "intruder");
    for path in [grayguard_contract::latch::PATH, "/grayguard/anything"] {
        let r = Request::builder()
            .method("POST")
            .uri(path)
            .body(Full::new(Bytes::from(body.clone())))
            .unwrap();
        let (s, headers, json) = call(&app, r).await;
        assert_eq!(
            (s.as_u16(), json["kind"].as_str()),
            (404, Some("not_found"))
        );
        assert_eq!(h(&headers, "x-box-count"), "0");
    }
    assert_eq!(refused(&app, "public_listener"), 2);
    let (_, headers, _) = call(&app, infer_req(None)).await;
    assert!(headers.get("x-canary-breach").is_none(), "nothing latched");
}

// ---------------------------------------------------------------- bodies, /info

/// A body that sends one chunk and then nothing, ever.
struct Trickle(bool);

impl hyper::body::Body for Trickle {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        if self.0 {
            std::task::Poll::Pending
        } else {
            self.0 = true;
            std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(Bytes::from_static(
                b"\xFF\xD8\xFF",
            )))))
        }
    }
}

#[tokio::test]
async fn a_body_that_stops_arriving_gets_408_and_closes_the_connection() {
    let (app, _) = app(&["--body-read-timeout-s", "0.2"], 1, Duration::ZERO);
    for path in ["/infer", "/healthz"] {
        let r = Request::builder()
            .method("POST")
            .uri(path)
            .header(CONTENT_TYPE, "image/jpeg")
            .body(Trickle(false))
            .unwrap();
        let resp = handle(Arc::clone(&app), r).await.unwrap();
        if path == "/infer" {
            assert_eq!(resp.status(), 408);
            assert_eq!(h(resp.headers(), "connection"), "close");
            let bytes = resp.into_body().collect().await.unwrap().to_bytes();
            let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(json["kind"], "body_timeout");
        } else {
            // Elsewhere the body is only drained: the route answers once the wait is over.
            assert_eq!(resp.status(), 405);
        }
    }
    assert_eq!(
        app.metrics
            .errors
            .with_label_values(&["body_timeout"])
            .get(),
        1
    );
}

#[tokio::test]
async fn info_reports_flags_and_host_before_the_model_is_known() {
    let (app, _) = app(&["--control-token", TOKEN], 1, Duration::ZERO);
    let (s, _, json) = call(&app, req("GET", "/info", None, b"")).await;
    assert_eq!(s, 200);
    assert_eq!(json["model"]["version"], "v-test");
    assert_eq!(json["model"]["sha256"], serde_json::Value::Null);
    assert_eq!(json["flags"]["control-token"], "<redacted>");
    assert_eq!(json["flags"]["max-queue"], 16);
    assert!(!json.to_string().contains(TOKEN));
    assert!(
        json["host"]["hostname"]
            .as_str()
            .is_some_and(|n| !n.is_empty())
    );
    assert_eq!(call(&app, req("POST", "/info", None, b"")).await.0, 405);
}
