//! The comparison with stable over fake detectors: stable keeps comparison requests out of its
//! serving metrics and watchdog and sheds them first; a gray sidecar compares in the
//! background with a stable served on loopback, stamps each finished agreement on one later
//! reply, and counts every skip and failure by reason. Waits are on conditions (a counter
//! reaching a value), polled.

use std::net::SocketAddr;
use std::time::Instant;

use tokio::net::TcpListener;
use tokio::sync::oneshot;

use super::*;
use crate::http::{Listeners, serve};

const COMPARE: &str = grayguard_contract::headers::COMPARE;
const AGREEMENT: &str = grayguard_contract::headers::AGREEMENT;
/// A fake image the fake detector holds at its `hold` gate.
const HELD: &[u8] = b"\xFF\xD8\xFF\xE0 hold";

/// A `/infer` request for one of the fake detector's images, marked as a comparison or not.
fn infer(body: &[u8], compare: bool) -> Request<Full<Bytes>> {
    let mut r = req("POST", "/infer", Some("image/jpeg"), body);
    if compare {
        r.headers_mut()
            .insert(COMPARE, hyper::header::HeaderValue::from_static("1"));
    }
    r
}

/// A warmed app over a fake detector answering `boxes` boxes, whose images ending in `hold`
/// wait at `hold`.
fn app_holding(extra: &[&str], boxes: usize, hold: Option<Arc<Gate>>) -> Arc<App> {
    let (app, clock) = app(extra, 0, Duration::ZERO);
    let fresh = Arc::new(App::new(
        app.cfg.clone(),
        Metrics::new(false).unwrap(),
        clock.clone(),
    ));
    fresh.set_detector(Arc::new(FakeDetector {
        boxes,
        delay: Duration::from_millis(2),
        clock,
        gate: None,
        hold,
        calls: AtomicUsize::new(0),
        running: AtomicUsize::new(0),
        running_since: Mutex::new(None),
    }));
    fresh.set_warmed();
    fresh
}

/// `app` served on a loopback port until the sender is dropped.
async fn served(app: Arc<App>) -> (SocketAddr, oneshot::Sender<()>) {
    let public = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = public.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let listeners = Listeners {
        public,
        control: None,
    };
    tokio::spawn(serve(app, listeners, async {
        let _ = stopped.await;
    }));
    (addr, stop)
}

/// Sends two held frames to `app`: one in the model, one waiting behind it; returns once one
/// waits.
async fn hold_two(
    app: &Arc<App>,
) -> Vec<tokio::task::JoinHandle<(StatusCode, hyper::HeaderMap, serde_json::Value)>> {
    let held = (0..2)
        .map(|_| {
            let app = Arc::clone(app);
            tokio::spawn(async move { call(&app, infer(HELD, false)).await })
        })
        .collect();
    until("a request waits", || app.waiting() > 0).await;
    held
}

/// Comparison requests `app` served with `status`.
fn comparisons_served(app: &App, status: &str) -> u64 {
    app.metrics
        .compare_requests
        .with_label_values(&[status])
        .get()
}

/// Polls `done` until it holds (at most 20 s).
async fn until(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// A gray sidecar's flags: compare with `stable`, every frame unless `extra` says otherwise.
fn gray_args(stable: SocketAddr, extra: &[&str]) -> Vec<String> {
    let mut args = vec![
        "--compare-with".to_string(),
        format!("http://{stable}/infer"),
    ];
    if !extra.contains(&"--compare-percent") {
        args.extend(["--compare-percent".into(), "100".into()]);
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

fn as_strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

fn failures(app: &App, reason: &str) -> u64 {
    app.metrics
        .comparison_failures
        .with_label_values(&[reason])
        .get()
}

fn skips(app: &App, reason: &str) -> u64 {
    app.metrics
        .comparison_skips
        .with_label_values(&[reason])
        .get()
}

#[tokio::test]
async fn stable_keeps_comparison_requests_out_of_its_serving_metrics_and_watchdog() {
    // A latency budget no run meets, judged from 3 samples: 3 comparisons and 1 request
    // would breach if comparisons counted.
    let (app, _) = app(
        &[
            "--watchdog-latency-budget-ms",
            "0.000001",
            "--watchdog-min-samples",
            "3",
        ],
        2,
        Duration::from_millis(2),
    );
    for _ in 0..3 {
        let (s, headers, json) = call(&app, infer(JPEG, true)).await;
        assert_eq!(s, 200);
        assert_eq!(json["boxes"].as_array().unwrap().len(), 2);
        assert_eq!(h(&headers, "x-box-count"), "2");
        assert!(headers.get(AGREEMENT).is_none());
    }
    let (s, _, json) = call(&app, infer(b"\xFF\xD8\xFF", true)).await;
    assert_eq!(
        (s.as_u16(), json["kind"].as_str()),
        (400, Some("bad_image"))
    );
    let m = &app.metrics;
    assert_eq!(
        (
            comparisons_served(&app, "200"),
            comparisons_served(&app, "400")
        ),
        (3, 1)
    );
    assert_eq!(m.requests.with_label_values(&["200"]).get(), 0);
    assert_eq!(m.errors.with_label_values(&["bad_image"]).get(), 0);
    assert_eq!(m.request_duration.get_sample_count(), 0);
    assert_eq!(m.detections.get_sample_count(), 0);

    let (s, headers, _) = call(&app, infer(JPEG, false)).await;
    assert_eq!(s, 200);
    assert!(headers.get("x-canary-breach").is_none(), "{headers:?}");
    assert_eq!(m.breach_active.with_label_values(&["latency"]).get(), 0);
    assert_eq!(m.requests.with_label_values(&["200"]).get(), 1);
    // Two more ordinary requests reach the 3 samples: the budget was real.
    call(&app, infer(JPEG, false)).await;
    let (_, headers, _) = call(&app, infer(JPEG, false)).await;
    assert_eq!(h(&headers, "x-canary-breach"), "latency");

    // A server-side failure of a comparison is not the watchdog's error either.
    let cold = cold(&app);
    let (s, _, _) = call(&cold, infer(JPEG, true)).await;
    assert_eq!(s, 503);
    assert_eq!(comparisons_served(&cold, "503"), 1);
    assert_eq!(
        cold.metrics.errors.with_label_values(&["not_ready"]).get(),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stable_sheds_a_comparison_while_requests_wait_for_the_model() {
    let gate = Arc::new(Gate::default());
    let opener = Opener(Arc::clone(&gate));
    let app = app_holding(&[], 1, Some(gate));
    let held = hold_two(&app).await;
    let (s, headers, json) = call(&app, infer(JPEG, true)).await;
    assert_eq!(s, 503, "{json}");
    assert_eq!(json["kind"], "queue_full");
    assert_eq!(h(&headers, "retry-after"), "1");
    assert_eq!(comparisons_served(&app, "503"), 1);
    assert_eq!(
        app.metrics.errors.with_label_values(&["queue_full"]).get(),
        0
    );
    drop(opener);
    for r in held {
        assert_eq!(r.await.unwrap().0, 200);
    }
    // Once nothing waits, comparisons are served again.
    assert_eq!(call(&app, infer(JPEG, true)).await.0, 200);
}

#[tokio::test]
async fn gray_compares_in_the_background_and_each_agreement_rides_on_one_reply() {
    // Stable finds 1 box, gray 3 (the same box thrice): 1 matched of 1 + 3, F1 0.5.
    let stable = app_holding(&[], 1, None);
    let (addr, _stop) = served(Arc::clone(&stable)).await;
    let gray = app_holding(&as_strs(&gray_args(addr, &[])), 3, None);
    let m = &gray.metrics;

    let (s, headers, _) = call(&gray, infer(JPEG, false)).await;
    assert_eq!(s, 200);
    assert!(headers.get(AGREEMENT).is_none(), "nothing was compared yet");
    until("the first comparison is in", || m.comparisons.get() == 1).await;
    assert_eq!(m.agreements_pending.get(), 1);
    assert_eq!(comparisons_served(&stable, "200"), 1);
    assert_eq!(stable.metrics.requests.with_label_values(&["200"]).get(), 0);
    assert_eq!(m.agreement.get_sample_sum(), 0.5);
    assert_eq!(m.agreement_extra_share.get_sample_sum(), 2.0 / 3.0);
    assert_eq!(m.agreement_missed_share.get_sample_sum(), 0.0);
    assert_eq!(
        m.matched_stable_boxes.with_label_values(&["Normal"]).get(),
        1
    );

    // A comparison request to this sidecar carries no agreement and is not compared.
    let (s, headers, _) = call(&gray, infer(JPEG, true)).await;
    assert_eq!(s, 200);
    assert!(headers.get(AGREEMENT).is_none());
    assert_eq!(m.comparisons_in_flight.get(), 0);
    assert_eq!(m.agreements_pending.get(), 1);

    // Every reply takes at most one value, and a value is taken once.
    let mut stamped = Vec::new();
    for _ in 0..4 {
        let (s, headers, _) = call(&gray, infer(JPEG, false)).await;
        assert_eq!(s, 200);
        if let Some(v) = headers.get(AGREEMENT) {
            stamped.push(v.to_str().unwrap().to_string());
        }
        until("the comparison is in", || {
            m.comparisons_in_flight.get() == 0
        })
        .await;
    }
    assert_eq!(stamped, ["0.500"; 4]);
    assert_eq!(m.comparisons.get(), 5);
    assert_eq!(m.agreements_pending.get(), 1);
    assert_eq!(m.agreements_dropped.get(), 0);
}

#[tokio::test]
async fn a_full_queue_drops_the_oldest_agreement() {
    // Stable holds both frames until the gate opens, so that two comparisons finish with no
    // reply in between to carry the first.
    let gate = Arc::new(Gate::default());
    let opener = Opener(Arc::clone(&gate));
    let stable = app_holding(&[], 1, Some(gate));
    let (addr, _stop) = served(Arc::clone(&stable)).await;
    let gray = app_holding(
        &as_strs(&gray_args(addr, &["--compare-max-pending", "1"])),
        1,
        None,
    );
    let m = &gray.metrics;
    // Both admitted, the first one in the model.
    let admitted = |n| {
        let stable = Arc::clone(&stable);
        move || {
            stable.in_flight.load(Ordering::SeqCst) == n
                && stable.detector().is_some_and(|d| d.busy() == 1)
        }
    };
    for n in 1..=2 {
        let (s, headers, _) = call(&gray, infer(HELD, false)).await;
        assert_eq!(s, 200);
        assert!(headers.get(AGREEMENT).is_none());
        // Stable sheds a comparison while another waits for its model: the second is sent
        // once the first is in the model.
        until("stable admits the frame", admitted(n)).await;
    }
    assert_eq!(m.comparisons_in_flight.get(), 2);
    drop(opener);
    until("both comparisons", || m.comparisons.get() == 2).await;
    assert_eq!(
        (m.agreements_pending.get(), m.agreements_dropped.get()),
        (1, 1)
    );
    let (_, headers, _) = call(&gray, infer(JPEG, false)).await;
    assert_eq!(h(&headers, AGREEMENT), "1.000");
}

#[tokio::test]
async fn failed_comparisons_are_counted_by_reason_and_give_no_agreement() {
    // Nothing listens: unreachable.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let nowhere = closed.local_addr().unwrap();
    drop(closed);
    let gray = app_holding(&as_strs(&gray_args(nowhere, &[])), 1, None);
    for _ in 0..2 {
        let (s, headers, json) = call(&gray, infer(JPEG, false)).await;
        assert_eq!(
            (s.as_u16(), h(&headers, "x-box-count")),
            (200, "1"),
            "{json}"
        );
        assert!(headers.get(AGREEMENT).is_none());
    }
    until("two unreachable", || failures(&gray, "unreachable") == 2).await;

    // A stable still warming up: 503, bad_status.
    let (plain, clock) = app(&[], 1, Duration::ZERO);
    let cold = Arc::new(App::new(
        plain.cfg.clone(),
        Metrics::new(false).unwrap(),
        clock,
    ));
    let (addr, _stop) = served(cold).await;
    let gray = app_holding(&as_strs(&gray_args(addr, &[])), 1, None);
    call(&gray, infer(JPEG, false)).await;
    until("a bad status", || failures(&gray, "bad_status") == 1).await;

    // A reply over --compare-max-reply-bytes: bad_reply.
    let stable = app_holding(&[], 40, None);
    let (addr, _stop) = served(stable).await;
    let gray = app_holding(
        &as_strs(&gray_args(addr, &["--compare-max-reply-bytes", "1024"])),
        1,
        None,
    );
    call(&gray, infer(JPEG, false)).await;
    until("a bad reply", || failures(&gray, "bad_reply") == 1).await;

    // A stable that holds the frame: timeout; meanwhile the one slot is taken, so the next
    // drawn frame is skipped.
    let gate = Arc::new(Gate::default());
    let _opener = Opener(Arc::clone(&gate));
    let stable = app_holding(&[], 1, Some(gate));
    let (addr, _stop) = served(stable).await;
    let gray = app_holding(
        &as_strs(&gray_args(
            addr,
            &["--compare-timeout-ms", "300", "--compare-max-inflight", "1"],
        )),
        1,
        None,
    );
    call(&gray, infer(HELD, false)).await;
    assert_eq!(gray.metrics.comparisons_in_flight.get(), 1);
    let (s, headers, _) = call(&gray, infer(HELD, false)).await;
    assert_eq!(s, 200);
    assert!(headers.get(AGREEMENT).is_none());
    assert_eq!(skips(&gray, "max_inflight"), 1);
    until("a timeout", || failures(&gray, "timeout") == 1).await;
    until("the slot is free", || {
        gray.metrics.comparisons_in_flight.get() == 0
    })
    .await;
    assert_eq!(gray.metrics.comparisons.get(), 0);
    assert_eq!(gray.metrics.agreements_pending.get(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gray_skips_comparing_while_its_own_requests_wait() {
    let stable = app_holding(&[], 1, None);
    let (addr, _stop) = served(stable).await;
    let gate = Arc::new(Gate::default());
    let opener = Opener(Arc::clone(&gate));
    let gray = app_holding(&as_strs(&gray_args(addr, &[])), 1, Some(gate));
    let held = hold_two(&gray).await;
    let (s, _, _) = call(&gray, infer(JPEG, false)).await;
    assert_eq!(s, 200);
    assert_eq!(skips(&gray, "busy"), 1);
    assert_eq!(gray.metrics.comparisons_in_flight.get(), 0);
    drop(opener);
    for r in held {
        assert_eq!(r.await.unwrap().0, 200);
    }
    // Once nothing waits, the held frames are compared again.
    until("the last frame's comparison", || {
        gray.metrics.comparisons.get() >= 1
    })
    .await;
}

#[tokio::test]
async fn sampled_out_is_not_a_skip() {
    let stable = app_holding(&[], 1, None);
    let (addr, _stop) = served(stable).await;
    let gray = app_holding(
        &as_strs(&gray_args(addr, &["--compare-percent", "0"])),
        1,
        None,
    );
    for _ in 0..5 {
        assert_eq!(call(&gray, infer(JPEG, false)).await.0, 200);
    }
    assert_eq!(gray.metrics.comparisons_in_flight.get(), 0);
    assert_eq!(skips(&gray, "busy") + skips(&gray, "max_inflight"), 0);
}
