//! The control listener (`--control-listen`): the latch endpoint the gateways call, and
//! nothing else. `POST /grayguard/latch` applies a latch, a clear, a hold or a release (a
//! form body in the contract's grammar, `grayguard_contract::latch`) and answers with what
//! it did and the table after it; `GET /grayguard/latch` lists the live latches, the holds
//! and the release records (the contract's `Listing`), which is how a holding gateway checks
//! its hold. With `--control-token`, every call must carry `authorization: Bearer <token>`
//! (compared in constant time), else 401. Control traffic stays out of the `/infer` metrics
//! and the watchdog: it says nothing about the model.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use grayguard_contract::latch::{self, Request as LatchRequest};
use hyper::body::Body;
use hyper::header::{ALLOW, AUTHORIZATION, CONTENT_LENGTH, HeaderValue, WWW_AUTHENTICATE};
use hyper::{HeaderMap, Method, Request, StatusCode};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::app::App;
use super::body::read_body;
use super::reply::{Reply, json_reply};
use crate::config::Secret;
use crate::signals::latch::{Action, Applied, Refusal};

/// Longest latch request body, bytes. The grammar's longest request (a 64-byte rule name, a
/// 128-byte gateway id, the longest trigger and a 20-digit duration) is under 300 bytes; this
/// is not an operator's choice, so it is not a flag.
pub const MAX_LATCH_BODY_BYTES: usize = 1024;

/// Whether `headers` carry `authorization: Bearer <token>`. Both sides are hashed first, so
/// the comparison takes the same time whatever the presented token's length or content.
fn authorized(headers: &HeaderMap, token: &Secret) -> bool {
    let Some(presented) = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim())
    else {
        return false;
    };
    let want = Sha256::digest(token.expose().as_bytes());
    let got = Sha256::digest(presented.as_bytes());
    bool::from(want.ct_eq(&got))
}

fn error(status: StatusCode, kind: &str, message: impl std::fmt::Display) -> Reply {
    let body = serde_json::json!({ "error": message.to_string(), "kind": kind });
    json_reply(status, body.to_string())
}

/// The reply to a call on another path or method (`known` false), or without the token.
fn refusal(app: &App, method: &Method, path: &str, known: bool) -> Reply {
    if path != latch::PATH {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no route {path:?} on the control listener"),
        );
    }
    if !known {
        let mut r = error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("{method} {path} is not allowed; use GET or POST"),
        );
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD, POST"));
        return r;
    }
    count(app, Action::Unknown, Some(Refusal::BadToken));
    log::warn!("latch: refused {method} {path} without the control token");
    let mut r = error(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "the control listener requires authorization: Bearer <token>",
    );
    r.headers_mut().insert(
        WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"grayguard-control\""),
    );
    r
}

/// Counts a call and, for a refused one, why.
fn count(app: &App, action: Action, refusal: Option<Refusal>) {
    let result = if refusal.is_some() { "refused" } else { "ok" };
    app.metrics
        .latch_requests
        .with_label_values(&[action.as_str(), result])
        .inc();
    if let Some(r) = refusal {
        app.metrics
            .latch_refused
            .with_label_values(&[r.as_str()])
            .inc();
    }
}

/// Routes one request on the control listener.
pub async fn handle<B>(app: Arc<App>, req: Request<B>) -> Result<Reply, Infallible>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let known = path == latch::PATH && matches!(method, Method::GET | Method::HEAD | Method::POST);
    let allowed = app
        .cfg
        .control_token
        .as_ref()
        .is_none_or(|token| authorized(req.headers(), token));
    if !known || !allowed {
        // A small body still on its way is read first, so that the caller sees the reply
        // rather than a reset; a larger one is not this endpoint's business.
        let deadline = tokio::time::Instant::now() + app.cfg.limits.body_read;
        let _ = read_body(req.into_body(), 0, MAX_LATCH_BODY_BYTES, None, deadline).await;
        return Ok(refusal(&app, &method, &path, known));
    }
    if method != Method::POST {
        count(&app, Action::List, None);
        let listing = app.latch_listing(app.clock.now());
        return Ok(json_reply(
            StatusCode::OK,
            serde_json::to_string(&listing).unwrap_or_default(),
        ));
    }
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let deadline = tokio::time::Instant::now() + app.cfg.limits.body_read;
    let body = if declared.is_some_and(|n| n > MAX_LATCH_BODY_BYTES as u64) {
        Ok(None)
    } else {
        read_body(
            req.into_body(),
            MAX_LATCH_BODY_BYTES,
            MAX_LATCH_BODY_BYTES,
            declared,
            deadline,
        )
        .await
    };
    let parsed = match body {
        Err(e) => Err((e.kind.status(), e.kind.as_str(), e.message)),
        Ok(None) => Err((
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("a latch request is at most {MAX_LATCH_BODY_BYTES} bytes"),
        )),
        Ok(Some(bytes)) => std::str::from_utf8(&bytes)
            .map_err(|_| "the body is not UTF-8")
            .and_then(|text| LatchRequest::parse(text).map_err(|e| e.0))
            .map_err(|why| {
                (
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    format!("not a latch request: {why}"),
                )
            }),
    };
    let request = match parsed {
        Ok(r) => r,
        Err((status, kind, message)) => {
            count(&app, Action::Unknown, Some(Refusal::BadRequest));
            log::warn!("latch: refused a call: {message}");
            return Ok(error(status, kind, message));
        }
    };
    let now = app.clock.now();
    let applied = app.apply_latch(&request, now);
    let action = Action::of(&request);
    log_applied(&app, &request, applied);
    let status = if applied == Applied::HoldsFull {
        count(&app, action, Some(Refusal::HoldsFull));
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        count(&app, action, None);
        StatusCode::OK
    };
    // What it did, then the table after it (the contract's listing, flattened).
    let mut body = serde_json::to_value(app.latch_listing(now)).unwrap_or_default();
    if let Some(fields) = body.as_object_mut() {
        fields.insert("applied".into(), applied.as_str().into());
        let cleared = match applied {
            Applied::Cleared(n) => n,
            _ => 0,
        };
        fields.insert("cleared".into(), cleared.into());
    }
    Ok(json_reply(status, body.to_string()))
}

/// One line per request, naming the gateway, the rule and what changed.
fn log_applied(app: &App, req: &LatchRequest, applied: Applied) {
    match (req, applied) {
        (LatchRequest::Hold { rule, gateway, .. }, Applied::HoldsFull) => log::warn!(
            "latch: refused a hold of rule {rule} from gateway {gateway}: --latch-max-entries rules are held already"
        ),
        (
            LatchRequest::Hold {
                rule,
                trigger,
                gateway,
            },
            _,
        ) => log::info!(
            "latch: gateway {gateway} holds rule {rule} on {trigger} until a person releases it ({})",
            applied.as_str()
        ),
        (LatchRequest::Release { rule, gateway }, _) => log::info!(
            "latch: gateway {gateway} released rule {rule} ({}); its release record stays {} s",
            applied.as_str(),
            app.cfg.latch_max.as_secs()
        ),
        (
            LatchRequest::Latch {
                rule,
                trigger,
                for_ms,
                gateway,
            },
            _,
        ) => {
            let max_ms = app.cfg.latch_max.as_millis();
            let cut = if u128::from(*for_ms) > max_ms {
                format!(" (cut to {max_ms} ms by --latch-max-s)")
            } else {
                String::new()
            };
            log::info!(
                "latch: gateway {gateway} latched rule {rule} on {trigger} for {for_ms} ms{cut}"
            );
        }
        (
            LatchRequest::Clear {
                rule,
                healthy_for_ms,
                gateway,
            },
            Applied::Cleared(n),
        ) => log::info!(
            "latch: gateway {gateway} cleared rule {rule}: {n} latch(es) set before its {healthy_for_ms} ms of healthy probes"
        ),
        (LatchRequest::Clear { .. }, _) => {}
    }
}
