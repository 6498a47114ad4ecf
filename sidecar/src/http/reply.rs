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
/// half-open probe) and its metrics; a comparison request's failure stays out of the watchdog
/// and the serving metrics.
pub(super) fn error_reply(app: &App, err: ApiError, started: Instant, marks: Marks) -> Reply {
    let now = app.clock.now();
    if err.kind.is_server_side() && !marks.compare {
        app.with_watchdog(|w| w.record_error(now));
    }
    let meta = ReplyMeta {
        latency_ms: app.clock.ms_since(started),
        outcome: Outcome::Failed(err.kind),
        breach: app.breaches(now),
        latched: app.latched(now, marks.probe),
        held: app.held(),
        agreement: None,
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
    app.metrics
        .observe_reply(&meta, status.as_u16(), marks.compare);
    r
}

/// What a request was marked as, by a gateway or by a gray sidecar (each mark is `1` exactly;
/// the gateways strip both from client requests).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Marks {
    /// A gateway's half-open probe (`x-canary-probe`), answered without the latches so that
    /// it judges the workload on its own merits.
    pub probe: bool,
    /// A gray sidecar's copy of a frame for comparison (`x-canary-compare`), answered as any
    /// other but kept out of the serving metrics and the watchdog (counted in
    /// `compare_requests_total` instead), shed first when requests wait for the model,
    /// never compared itself and never carrying an agreement.
    pub compare: bool,
}

impl Marks {
    pub(super) fn of(headers: &hyper::HeaderMap) -> Marks {
        let set = |name: &str| headers.get(name).is_some_and(|v| v.as_bytes() == b"1");
        Marks {
            probe: set(grayguard_contract::headers::PROBE),
            compare: set(grayguard_contract::headers::COMPARE),
        }
    }
}
