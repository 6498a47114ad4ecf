//! Building replies: JSON bodies, and error replies with their signal headers and metrics.

use std::time::Instant;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONNECTION, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use hyper::{Response, StatusCode};

use super::app::App;
use crate::error::{ApiError, ErrorKind};
use crate::signals::meta::{Outcome, ReplyMeta};

pub type Reply = Response<Full<Bytes>>;

pub(super) fn json_reply(status: StatusCode, body: String) -> Reply {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// An error reply with the signal headers (box count 0; the latches unless the request is a
/// half-open `probe`) and its metrics.
pub(super) fn error_reply(app: &App, err: ApiError, started: Instant, probe: bool) -> Reply {
    let now = app.clock.now();
    if err.kind.is_server_side() {
        app.with_watchdog(|w| w.record_error(now));
    }
    let meta = ReplyMeta {
        latency_ms: app.clock.ms_since(started),
        outcome: Outcome::Failed(err.kind),
        breach: app.breaches(now),
        latched: app.latched(now, probe),
    };
    let status = err.kind.status();
    let mut r = json_reply(status, err.body());
    meta.stamp(r.headers_mut(), &app.model_version);
    if let Some(s) = err.kind.retry_after_s() {
        r.headers_mut().insert(RETRY_AFTER, HeaderValue::from(s));
    }
    if err.kind == ErrorKind::BodyTimeout {
        // The rest of the body may still be on its way: the connection cannot be reused.
        r.headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    match err.kind {
        ErrorKind::MethodNotAllowed => {}
        ErrorKind::Internal | ErrorKind::Inference => log::error!("{err}"),
        _ => log::debug!("{err}"),
    }
    app.metrics.observe(&meta, status.as_u16());
    r
}

/// Whether a request is a gateway's half-open probe (`x-canary-probe: 1`), answered without
/// the latches so that it judges the workload on its own merits.
pub(super) fn is_probe(headers: &hyper::HeaderMap) -> bool {
    headers
        .get(grayguard_contract::headers::PROBE)
        .is_some_and(|v| v.as_bytes() == b"1")
}
