//! The report server's promotion routes, answered before the incident report's (`serve`):
//!
//! | request | answer |
//! | --- | --- |
//! | `GET /promotion?rule=R` | the promotion report of rule R (`promotion`, `promotion_html`) |
//! | `POST /flagger/confirm-promotion[?rule=R]` | 200 when R is proven on every gateway, else 409 (`webhook`) |
//! | `POST /flagger/rollback[?rule=R]` | 200 when R is refuted at a gateway, else 409 |
//!
//! The webhooks also answer `GET` with `?rule=`, for a person with curl.

use std::io::Read;

use jiff::Timestamp;
use tiny_http::Method;

use grayguard_client::fetch::Client;
use grayguard_client::prometheus::Prometheus;

use crate::answer::Answer;
use crate::promotion::{self, Options};
use crate::promotion_html;
use crate::report::Sources;
use crate::webhook::{self, Hook, MAX_BODY_BYTES};

/// What a route asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// The promotion page of a rule.
    Page(String),
    /// A Flagger webhook.
    Hook(Hook),
    /// A promotion route asked wrongly: the status and why.
    Refused(u16, String),
}

/// The route of a request, or `None` for one of `serve`'s.
pub fn route(method: &Method, path: &str, query: &str) -> Option<Route> {
    if let Some(hook) = Hook::at(path) {
        return Some(match method {
            Method::Post | Method::Get => Route::Hook(hook),
            _ => Route::Refused(405, format!("POST {path}\n")),
        });
    }
    if path != "/promotion" {
        return None;
    }
    if *method != Method::Get {
        return Some(Route::Refused(405, "only GET\n".into()));
    }
    let rule = form_urlencoded::parse(query.as_bytes())
        .find(|(k, v)| k == "rule" && !v.is_empty())
        .map(|(_, v)| v.into_owned());
    Some(match rule {
        Some(r) => Route::Page(r),
        None => Route::Refused(400, "GET /promotion?rule=RULE\n".into()),
    })
}

/// What the promotion routes read.
#[derive(Debug, Clone)]
pub struct Promotion {
    pub client: Client,
    pub sources: Sources,
    pub operators: Vec<String>,
    pub settings: Settings,
}

/// The page settings from the flags.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub lookback: jiff::SignedDuration,
    pub max_points: u32,
    pub min_step_s: u32,
    pub max_log_bytes: u64,
}

/// The options of the page for `rule` at `now`.
pub fn options(s: &Settings, rule: String, now: Timestamp) -> Options {
    Options {
        rule,
        now,
        lookback: s.lookback,
        max_points: s.max_points,
        min_step_s: s.min_step_s,
        max_log_bytes: s.max_log_bytes,
    }
}

impl Promotion {
    /// Answers `request` if it is a promotion route.
    pub fn answer(&self, request: &mut tiny_http::Request) -> Option<Answer> {
        let url = request.url().to_string();
        let (path, query) = url.split_once('?').unwrap_or((&url, ""));
        match route(request.method(), path, query)? {
            Route::Refused(status, why) => Some(Answer::text(status, why)),
            Route::Page(rule) => {
                let opts = options(&self.settings, rule, Timestamp::now());
                let r = promotion::gather(&self.client, &self.sources, &self.operators, &opts);
                eprintln!(
                    "grayguard-report: promotion report: {}",
                    promotion_html::summary(&r)
                );
                Some(Answer::html(promotion_html::render(&r)))
            }
            Route::Hook(hook) => {
                let mut body = Vec::new();
                let read = request
                    .as_reader()
                    .take(MAX_BODY_BYTES + 1)
                    .read_to_end(&mut body);
                let answer = match (read, body.len() as u64 > MAX_BODY_BYTES) {
                    (Err(e), _) => webhook::bad_request(hook, &format!("reading the body: {e}")),
                    (_, true) => webhook::bad_request(hook, "the body is too large"),
                    _ => self.hook(hook, query, &body),
                };
                eprintln!(
                    "grayguard-report: {} {}: {} {}",
                    hook.as_str(),
                    answer.body["rule"].as_str().unwrap_or("?"),
                    answer.status,
                    answer.body["answer"].as_str().unwrap_or("")
                );
                Some(Answer {
                    content_type: "application/json",
                    ..Answer::text(answer.status, format!("{}\n", answer.body))
                })
            }
        }
    }

    fn hook(&self, hook: Hook, query: &str, body: &[u8]) -> webhook::Answer {
        let payload = match webhook::parse_payload(body) {
            Ok(p) => p,
            Err(e) => return webhook::bad_request(hook, &e),
        };
        let Some(rule) = webhook::rule_of(query, &payload) else {
            return webhook::bad_request(
                hook,
                "no rule: give ?rule= or the webhook's metadata.rule",
            );
        };
        let prom = Prometheus::new(&self.sources.prometheus, self.client.clone());
        let states = promotion::read_fleet(&prom, &rule, Timestamp::now());
        webhook::answer(
            hook,
            &rule,
            &payload,
            states.as_deref().map_err(String::as_str),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_the_promotion_page_and_the_webhooks() {
        assert_eq!(
            route(&Method::Get, "/promotion", "rule=crane-cameras&at=17"),
            Some(Route::Page("crane-cameras".into()))
        );
        assert!(matches!(
            route(&Method::Get, "/promotion", ""),
            Some(Route::Refused(400, _))
        ));
        assert!(matches!(
            route(&Method::Post, "/promotion", "rule=a"),
            Some(Route::Refused(405, _))
        ));
        assert_eq!(
            route(&Method::Post, "/flagger/confirm-promotion", ""),
            Some(Route::Hook(Hook::ConfirmPromotion))
        );
        assert_eq!(
            route(&Method::Get, "/flagger/rollback", "rule=a"),
            Some(Route::Hook(Hook::Rollback))
        );
        assert!(matches!(
            route(&Method::Delete, "/flagger/rollback", ""),
            Some(Route::Refused(405, _))
        ));
        // The incident report's routes are serve's.
        assert_eq!(route(&Method::Get, "/report", "rule=a"), None);
        assert_eq!(route(&Method::Get, "/healthz", ""), None);
    }
}
