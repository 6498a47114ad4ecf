//! `grayguard-alert-sink`'s HTTP side: the endpoints Alertmanager's webhook, Slack and WeChat
//! Work integrations call (WeChat's token call answered with a fixed local token), the
//! messages received as JSON (`GET /messages`, for tests) and as a page a person can click
//! through (`GET /`). Messages are kept in memory, the newest `max_messages`, and each is
//! logged as one line.

use std::collections::VecDeque;
use std::io::Write;

use jiff::Timestamp;
use maud::{DOCTYPE, html};
use serde_json::{Value, json};
use tiny_http::{Header, Method, Response, Server};

use crate::body;
use crate::sink::{self, Message};

/// Limits of the sink.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Messages kept (the oldest are dropped).
    pub max_messages: usize,
    /// Largest request body, bytes (larger: 413).
    pub max_body_bytes: u64,
}

/// The token the WeChat `gettoken` call gets: the sink is not WeChat and checks no secret.
pub const WECHAT_TOKEN: &str = "grayguard-alert-sink";

/// Decodes one kind of notification.
type Decoder = fn(&[u8], Timestamp) -> Result<Message, String>;

/// Serves until the process is stopped, logging each message to `log`.
pub fn run(server: &Server, limits: Limits, mut log: impl Write) {
    let mut kept: VecDeque<Message> = VecDeque::new();
    for mut request in server.incoming_requests() {
        let url = request.url().to_string();
        let path = url.split('?').next().unwrap_or_default().to_string();
        let method = request.method().clone();
        let decode: Option<Decoder> = match (&method, path.as_str()) {
            (Method::Post, "/webhook") => Some(sink::from_webhook),
            (Method::Post, "/slack") => Some(sink::from_slack),
            (Method::Post, "/wechat/message/send") => Some(sink::from_wechat),
            _ => None,
        };
        let (status, ctype, body) = if let Some(decode) = decode {
            match body::read(&mut request, limits.max_body_bytes) {
                Err((status, e)) => {
                    let _ = writeln!(log, "{} refused {path}: {e}", Timestamp::now());
                    (status, "text/plain", format!("{e}\n"))
                }
                Ok(bytes) => match decode(&bytes, Timestamp::now()) {
                    Ok(m) => {
                        let _ = writeln!(log, "{}", m.log_line());
                        kept.push_back(m);
                        while kept.len() > limits.max_messages {
                            kept.pop_front();
                        }
                        match path.as_str() {
                            "/wechat/message/send" => (
                                200,
                                "application/json",
                                json!({"errcode": 0, "errmsg": "ok"}).to_string(),
                            ),
                            _ => (200, "text/plain", "ok\n".to_string()),
                        }
                    }
                    Err(e) => {
                        let _ = writeln!(log, "{} unreadable {path}: {e}", Timestamp::now());
                        (400, "text/plain", format!("{e}\n"))
                    }
                },
            }
        } else {
            match (&method, path.as_str()) {
                (Method::Get, "/wechat/gettoken") => (
                    200,
                    "application/json",
                    json!({"errcode": 0, "errmsg": "ok", "access_token": WECHAT_TOKEN, "expires_in": 7200}).to_string(),
                ),
                (Method::Get, "/messages") => (
                    200,
                    "application/json",
                    Value::Array(kept.iter().map(Message::to_json).collect()).to_string(),
                ),
                (Method::Get, "/") => (200, "text/html; charset=utf-8", page(&kept)),
                _ => (404, "text/plain", "POST /webhook, /slack, /wechat/message/send; GET /messages, /\n".to_string()),
            }
        };
        let mut response = Response::from_string(body).with_status_code(status);
        if let Ok(h) = Header::from_bytes("content-type", ctype) {
            response = response.with_header(h);
        }
        let _ = request.respond(response);
    }
}

/// The messages, newest first, as a person would see them.
fn page(kept: &VecDeque<Message>) -> String {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { "grayguard alert sink" }
                style { "body{font-family:sans-serif;max-width:900px;margin:20px auto;color:#222}
                    .m{border:1px solid #ddd;border-radius:6px;padding:10px 14px;margin:12px 0}
                    .firing{border-left:5px solid #d93025}.resolved{border-left:5px solid #188038}
                    pre{white-space:pre-wrap;font-size:13px}.meta{color:#666;font-size:12px}" }
            }
            body {
                h1 { "What a person received" }
                p.meta { (kept.len()) " message(s); newest first. Alertmanager delivers here for the local mesh." }
                @for m in kept.iter().rev() {
                    div class={ "m " (m.status) } {
                        div.meta { (m.received_at) " · " (m.channel.as_str()) }
                        h3 { (m.title) }
                        pre { (m.text) }
                        @for l in &m.links { a href=(l.url) { (l.label) } " " }
                    }
                }
            }
        }
    }
    .into_string()
}
