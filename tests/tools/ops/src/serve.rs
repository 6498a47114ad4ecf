//! `grayguard-report --serve`: renders a report per request, so the link in an alert shows
//! the incident as it is when the on-call engineer opens it. One request at a time (a
//! report takes a few Prometheus queries); `GET /healthz` answers at once, anything else
//! but `GET /report` (and what the caller's `more` answers: the promotion routes, `routes`, and the kept reports, `keeper`) is a
//! 404, and a bad parameter a 400 that says which.

use jiff::Timestamp;
use tiny_http::{Header, Method, Response, Server};

use crate::answer::Answer;
use crate::report_cli::parse_time;

/// What a request asks for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Request {
    pub rule: Option<String>,
    pub at: Option<Timestamp>,
}

/// The `rule` and `at` of `/report?rule=R&at=T` (other parameters, such as the alert's
/// `instance`, are ignored), or the reason they are unusable.
pub fn parse_query(query: &str) -> Result<Request, String> {
    let mut req = Request::default();
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        match k.as_ref() {
            "rule" if !v.is_empty() => req.rule = Some(v.into_owned()),
            "at" if !v.is_empty() => req.at = Some(parse_time(&v).map_err(|e| format!("at: {e}"))?),
            _ => {}
        }
    }
    Ok(req)
}

/// Serves until the process is stopped; `more` answers the requests it knows (first), leaving
/// the others to this module, and `render` makes the page for a report request.
pub fn run(
    server: &Server,
    mut more: impl FnMut(&mut tiny_http::Request) -> Option<Answer>,
    render: impl Fn(&Request) -> String,
) {
    for mut request in server.incoming_requests() {
        if let Some(answer) = more(&mut request) {
            let mut response = Response::from_data(answer.body).with_status_code(answer.status);
            let headers = [
                ("content-type", Some(answer.content_type)),
                ("location", answer.location.as_deref()),
            ];
            for (name, value) in headers {
                if let Some(h) = value.and_then(|v| Header::from_bytes(name, v).ok()) {
                    response = response.with_header(h);
                }
            }
            let _ = request.respond(response);
            continue;
        }
        let url = request.url().to_string();
        let (path, query) = url.split_once('?').unwrap_or((&url, ""));
        let html = "text/html; charset=utf-8";
        let (status, ctype, body) = match (request.method(), path) {
            (Method::Get, "/report") | (Method::Get, "/") => match parse_query(query) {
                Ok(req) => (200, html, render(&req)),
                Err(e) => (400, "text/plain; charset=utf-8", format!("{e}\n")),
            },
            (Method::Get, "/healthz") => (200, "text/plain; charset=utf-8", "ok\n".to_string()),
            (Method::Get, _) => (
                404,
                "text/plain; charset=utf-8",
                "GET /report?rule=RULE&at=TIME\n".to_string(),
            ),
            _ => (405, "text/plain; charset=utf-8", "only GET\n".to_string()),
        };
        let mut response = Response::from_string(body).with_status_code(status);
        if let Ok(h) = Header::from_bytes("content-type", ctype) {
            response = response.with_header(h);
        }
        // The client may have gone; nothing to do about it.
        let _ = request.respond(response);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_alert_link() {
        let r = parse_query("rule=crane-cameras&instance=127.0.0.1%3A9901&at=1764515085").unwrap();
        assert_eq!(r.rule.as_deref(), Some("crane-cameras"));
        assert_eq!(r.at.map(|t| t.as_second()), Some(1_764_515_085));
        assert_eq!(parse_query("").unwrap(), Request::default());
        assert_eq!(parse_query("rule=&at=").unwrap(), Request::default());
        assert!(parse_query("at=soon").unwrap_err().starts_with("at: "));
    }
}
