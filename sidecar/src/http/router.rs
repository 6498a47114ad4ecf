//! Routing of one request on the public listener, and the small endpoints: `/healthz`
//! (liveness: 503 only while stalled), `/ready`, `/metrics`, `/info`. Latch paths are refused here: gateways pull latches on the
//! control listener only (`control.rs`).

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Body;
use hyper::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};

use super::app::App;
use super::body::read_body;
use super::infer::infer;
use super::reply::{Marks, Reply, error_reply, json_reply};
use crate::error::{ApiError, ErrorKind};
use crate::signals::latch::Refusal;
use grayguard_contract::operator::PREFIX;

/// Routes one request.
pub async fn handle<B>(app: Arc<App>, req: Request<B>) -> Result<Reply, Infallible>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let started = app.clock.now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    if path == "/infer" && method == Method::POST {
        return Ok(infer(&app, req, started).await);
    }
    let marks = Marks::of(req.headers());
    // Whatever the route, a body the client is still sending is read (bounded in size and
    // time) and dropped, so it sees the reply instead of a connection reset.
    let _ = read_body(
        req.into_body(),
        0,
        app.cfg.max_body_bytes.saturating_mul(2),
        None,
        tokio::time::Instant::now() + app.cfg.limits.body_read,
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
            marks,
        );
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static(allow));
        r
    };
    let get = method == Method::GET || method == Method::HEAD;
    let reply = match path.as_str() {
        "/infer" => not_allowed("POST"),
        "/healthz" | "/ready" | "/metrics" | "/info" if !get => not_allowed("GET, HEAD"),
        "/healthz" => healthz(&app),
        "/ready" => ready(&app),
        "/metrics" => metrics(&app),
        "/info" => info(&app),
        other if other.starts_with(PREFIX) => {
            app.metrics
                .latch_refused
                .with_label_values(&[Refusal::PublicListener.as_str()])
                .inc();
            log::warn!(
                "refused {method} {other} on the public listener (latches are pulled on the control listener)"
            );
            error_reply(
                &app,
                ApiError::new(
                    ErrorKind::NotFound,
                    format!("no route {other:?} on this listener"),
                ),
                started,
                marks,
            )
        }
        other => error_reply(
            &app,
            ApiError::new(ErrorKind::NotFound, format!("no route {other:?}")),
            started,
            marks,
        ),
    };
    Ok(reply)
}

/// Liveness: 200 while the process can still serve; 503 while a model run is stuck past the
/// stall deadline, so that the kubelet restarts a hung model (and only a hung one: a slow,
/// loading or draining sidecar is alive).
fn healthz(app: &App) -> Reply {
    if app.stalled(app.clock.now()) {
        json_reply(
            StatusCode::SERVICE_UNAVAILABLE,
            r#"{"status":"stalled"}"#.into(),
        )
    } else {
        json_reply(StatusCode::OK, r#"{"status":"ok"}"#.into())
    }
}

fn ready(app: &App) -> Reply {
    app.refresh_gauges();
    let (status, state) = if app.is_ready() {
        (StatusCode::OK, "ready")
    } else if app.draining.load(Ordering::SeqCst) {
        (StatusCode::SERVICE_UNAVAILABLE, "draining")
    } else if app.stalled(app.clock.now()) {
        (StatusCode::SERVICE_UNAVAILABLE, "stalled")
    } else if !app.warmed.load(Ordering::SeqCst) {
        (StatusCode::SERVICE_UNAVAILABLE, "warming-up")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "self-check-failed")
    };
    json_reply(status, serde_json::json!({ "status": state }).to_string())
}

fn info(app: &App) -> Reply {
    let doc =
        crate::introspect::info::report(&app.cfg, app.started_at, app.model_facts(), &app.host);
    json_reply(StatusCode::OK, doc.to_string())
}

fn metrics(app: &App) -> Reply {
    app.refresh_gauges();
    app.breaches(app.clock.now());
    let mut r = Response::new(Full::new(Bytes::from(app.metrics.render())));
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}
