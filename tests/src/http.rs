//! A small blocking HTTP client for tests: every status, 2xx or not, comes back as a
//! [`Response`]; only transport failures are errors.

use std::time::{Duration, Instant};

use crate::wait::eventually;

/// One HTTP response, with header names lower-cased.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("response is not JSON ({e}): {}", self.text()))
    }
}

/// A transport failure (connection refused, reset, timeout).
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// How long a request may take before the client gives up (a transport error).
pub const TIMEOUT: Duration = Duration::from_secs(30);

fn agent(timeout: Duration) -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout(timeout)
        .redirects(0)
        .build()
}

/// Sends a request with `headers` and an optional body; the client gives up after
/// [`TIMEOUT`].
pub fn request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Result<Response, Error> {
    request_within(method, url, headers, body, TIMEOUT)
}

/// [`request`], the client giving up after `timeout` instead.
pub fn request_within(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
    timeout: Duration,
) -> Result<Response, Error> {
    let mut req = agent(timeout).request(method, url);
    for (k, v) in headers {
        req = req.set(k, v);
    }
    let result = match body {
        Some(b) => req.send_bytes(b),
        None => req.call(),
    };
    let resp = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(ureq::Error::Transport(t)) => return Err(Box::new(t)),
    };
    let status = resp.status();
    let headers = resp
        .headers_names()
        .into_iter()
        .flat_map(|name| {
            resp.all(&name)
                .into_iter()
                .map(|v| (name.to_ascii_lowercase(), v.to_string()))
                .collect::<Vec<_>>()
        })
        .collect();
    let mut body = Vec::new();
    std::io::Read::read_to_end(&mut resp.into_reader(), &mut body)?;
    Ok(Response {
        status,
        headers,
        body,
    })
}

pub fn get(url: &str) -> Result<Response, Error> {
    request("GET", url, &[], None)
}

pub fn get_with(url: &str, headers: &[(&str, &str)]) -> Result<Response, Error> {
    request("GET", url, headers, None)
}

pub fn post(url: &str, headers: &[(&str, &str)], body: &[u8]) -> Result<Response, Error> {
    request("POST", url, headers, Some(body))
}

/// Polls `url` until it answers `status`, failing the test after `timeout`; when it did.
pub fn wait_for_status(url: &str, status: u16, timeout: Duration) -> Instant {
    eventually(&format!("{url} answers {status}"), timeout, || {
        get(url)
            .is_ok_and(|r| r.status == status)
            .then(Instant::now)
    })
}
