//! One client connection's guard: the socket wrapped so that the time limits of
//! [`super::connection`] apply while the connection waits for the client (a slow request head,
//! an idle keep-alive connection), and the answer a connection gets when `--max-connections`
//! are already open.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::header::{HeaderMap, HeaderValue, RETRY_AFTER};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Sleep;

use super::app::App;
use super::connection::{ConnState, Waits};
use crate::error::{ApiError, Cut, ErrorKind};
use crate::signals::meta::{Outcome, ReplyMeta, SERVED_BY};

/// The phase of one connection, shared by its socket and its request handlers.
#[derive(Clone)]
pub struct Phase(Arc<Mutex<ConnState>>);

impl Phase {
    /// A connection accepted at `now`.
    pub fn new(waits: Waits, now: Instant) -> Phase {
        Phase(Arc::new(Mutex::new(ConnState::new(now, waits))))
    }

    fn state(&self) -> MutexGuard<'_, ConnState> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A request head was handed to a handler.
    pub fn request(&self) {
        self.state().on_request();
    }

    /// A handler produced its reply at `now`.
    pub fn reply(&self, now: Instant) {
        self.state().on_reply(now);
    }
}

/// A socket whose reads fail with `TimedOut` once the connection has waited for the client
/// longer than its phase allows; hyper then closes the connection.
pub struct Guarded {
    stream: TcpStream,
    phase: Phase,
    app: Arc<App>,
    timer: Pin<Box<Sleep>>,
    /// The deadline the timer is set to.
    armed: Option<Instant>,
    cut: bool,
}

impl Guarded {
    pub fn new(stream: TcpStream, phase: Phase, app: Arc<App>) -> Guarded {
        Guarded {
            stream,
            phase,
            app,
            timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
            armed: None,
            cut: false,
        }
    }

    /// Called when a read would wait: `Ready(err)` once the phase's deadline has passed.
    fn poll_deadline(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let Some((at, cut)) = self.phase.state().deadline() else {
            return Poll::Pending;
        };
        if self.armed != Some(at) {
            self.timer.as_mut().reset(at.into());
            self.armed = Some(at);
        }
        if self.timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        if !self.cut {
            self.cut = true;
            self.app
                .metrics
                .connections_dropped
                .with_label_values(&[cut.as_str()])
                .inc();
            log::debug!("connection cut: {}", cut.as_str());
        }
        Poll::Ready(io::Error::new(io::ErrorKind::TimedOut, cut.as_str()))
    }
}

impl AsyncRead for Guarded {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.phase.state().on_bytes(this.app.clock.now());
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => this.poll_deadline(cx).map(Err),
        }
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// How long a refused connection is kept to drain what the client already sent, so that it
/// reads the 503 instead of a reset. Bounded and short: refusing must stay cheap in a flood.
const REFUSAL_LINGER: Duration = Duration::from_millis(500);

/// The raw HTTP/1.1 reply of a refused connection: 503 with `Retry-After`, the JSON error
/// and, on the public listener, the signal headers.
fn refusal(app: &App, public: bool) -> Vec<u8> {
    let err = ApiError::new(
        ErrorKind::TooManyConnections,
        format!(
            "{} connections are already open (--max-connections)",
            app.cfg.limits.max_connections
        ),
    );
    let body = err.body();
    let mut headers = HeaderMap::new();
    if public {
        let now = app.clock.now();
        let meta = ReplyMeta {
            latency_ms: 0.0,
            outcome: Outcome::Failed(err.kind),
            breach: app.breaches(now),
            // The request was never read: it may have been a probe, but a refusal fails it
            // whatever its flag says.
            latched: app.latched(now, false),
            held: app.held(),
            agreement: None,
        };
        meta.stamp(&mut headers, &app.model_version);
    }
    if let Some(s) = err.kind.retry_after_s() {
        headers.insert(RETRY_AFTER, HeaderValue::from(s));
    }
    headers.insert(SERVED_BY, app.served_by.clone());
    let mut out = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    )
    .into_bytes();
    for (name, value) in &headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body.as_bytes());
    out
}

/// Answers a connection over the cap with 503 and closes it, without reading its request:
/// one write into the fresh socket's empty send buffer, then a short bounded drain.
pub fn refuse(app: &Arc<App>, mut stream: TcpStream, public: bool) {
    app.metrics
        .connections_dropped
        .with_label_values(&[Cut::MaxConnections.as_str()])
        .inc();
    app.metrics
        .errors
        .with_label_values(&[ErrorKind::TooManyConnections.as_str()])
        .inc();
    let reply = refusal(app, public);
    tokio::spawn(async move {
        let _ = stream.try_write(&reply);
        let _ = tokio::time::timeout(REFUSAL_LINGER, async {
            let _ = stream.shutdown().await;
            let mut sink = [0u8; 4096];
            while let Ok(n) = stream.read(&mut sink).await {
                if n == 0 {
                    break;
                }
            }
        })
        .await;
    });
}
