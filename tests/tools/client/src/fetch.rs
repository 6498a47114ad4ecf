//! The one HTTP client the tools read the mesh with (Envoy's admin, the sidecars' `/info`
//! and `/metrics`, Prometheus' API): plain GETs with a timeout and a size limit, every
//! failure an error that names the URL (a report renders what it could fetch and lists what
//! it could not; the demo and the soak count a reading that failed as missing).

use std::io::Read;
use std::time::Duration;

/// Largest metrics page the tools read (Envoy's `/stats/prometheus`, a sidecar's
/// `/metrics`), bytes.
pub const MAX_METRICS_BYTES: u64 = 16 * 1024 * 1024;

/// A GET client with fixed limits.
#[derive(Debug, Clone)]
pub struct Client {
    agent: ureq::Agent,
    /// Largest response body read, bytes.
    max_bytes: u64,
}

/// A non-2xx answer or a transport failure, with the URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchError {
    pub url: String,
    /// The HTTP status, when the server answered.
    pub status: Option<u16>,
    pub message: String,
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.status {
            Some(s) => write!(f, "GET {}: HTTP {s}: {}", self.url, self.message),
            None => write!(f, "GET {}: {}", self.url, self.message),
        }
    }
}

impl Client {
    /// `timeout` for a whole request; bodies over `max_bytes` are refused.
    pub fn new(timeout: Duration, max_bytes: u64) -> Client {
        Client {
            agent: ureq::AgentBuilder::new()
                .timeout(timeout)
                .redirects(0)
                .build(),
            max_bytes,
        }
    }

    /// The body of `url` with `query` pairs appended (encoded), as text.
    pub fn get(&self, url: &str, query: &[(&str, &str)]) -> Result<String, FetchError> {
        self.get_with_header(url, query, None).map(|(body, _)| body)
    }

    /// [`Client::get`], and the value of the reply's header `header` when it has one (a
    /// sidecar's `x-served-by`: which pod answered).
    pub fn get_with_header(
        &self,
        url: &str,
        query: &[(&str, &str)],
        header: Option<&str>,
    ) -> Result<(String, Option<String>), FetchError> {
        let err = |status, message: String| FetchError {
            url: url.to_string(),
            status,
            message,
        };
        let mut req = self.agent.get(url);
        for (k, v) in query {
            req = req.query(k, v);
        }
        let resp = match req.call() {
            Ok(r) => r,
            Err(ureq::Error::Status(code, r)) => {
                let body = read_limited(r.into_reader(), 512).unwrap_or_default();
                return Err(err(Some(code), body.trim().to_string()));
            }
            Err(ureq::Error::Transport(t)) => return Err(err(None, t.to_string())),
        };
        let value = header.and_then(|h| resp.header(h)).map(str::to_string);
        let body = read_limited(resp.into_reader(), self.max_bytes).map_err(|e| err(None, e))?;
        Ok((body, value))
    }
}

/// At most `max` bytes of `reader` as text; more is an error.
fn read_limited(reader: impl Read, max: u64) -> Result<String, String> {
    let mut bytes = Vec::new();
    reader
        .take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("reading the body: {e}"))?;
    if bytes.len() as u64 > max {
        return Err(format!("the body is larger than {max} bytes"));
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_over_the_limit_are_refused() {
        assert_eq!(read_limited(&b"abc"[..], 3).unwrap(), "abc");
        let err = read_limited(&b"abcd"[..], 3).unwrap_err();
        assert!(err.contains("larger than 3 bytes"), "{err}");
    }

    #[test]
    fn a_header_of_the_reply_comes_with_its_body() {
        use std::io::Write;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/info", listener.local_addr().unwrap());
        let server = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut request = [0u8; 1024];
            let _ = conn.read(&mut request).unwrap();
            conn.write_all(b"HTTP/1.1 200 OK\r\nx-served-by: v10-gray-0\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}")
                .unwrap();
        });
        let c = Client::new(Duration::from_secs(5), 1024);
        let (body, pod) = c.get_with_header(&url, &[], Some("x-served-by")).unwrap();
        server.join().unwrap();
        assert_eq!(body, "{}");
        assert_eq!(pod.as_deref(), Some("v10-gray-0"));
    }

    #[test]
    fn a_refused_connection_names_the_url() {
        // A port that was free a moment ago: nothing listens there.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let url = format!("http://127.0.0.1:{port}/x");
        let c = Client::new(Duration::from_secs(2), 1024);
        let e = c.get(&url, &[]).unwrap_err();
        assert_eq!(e.status, None);
        assert!(e.to_string().starts_with(&format!("GET {url}: ")), "{e}");
    }
}
