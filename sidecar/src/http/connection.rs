//! What one client connection may cost in time: where a connection is (waiting for a request
//! head, serving a request, idle between requests), which limit applies there, and which
//! [`Cut`] ends it when the limit passes. Pure logic with the time passed in; `conn.rs`
//! drives it from the socket.
//!
//! hyper's own header timer starts whenever hyper waits for a request, so on a keep-alive
//! connection it would also cut the wait between requests at the header limit. The two are
//! different questions — a client that sends its head slowly, and a pooled connection nobody
//! needs right now — and get different limits here: `--header-read-timeout-s` and
//! `--idle-timeout-s`. The body has its own limit, kept by the handler that reads it.

use std::time::{Duration, Instant};

use crate::error::Cut;

/// The two waits a connection may be cut in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Waits {
    /// From the connection's start, or a later request's first byte, to its complete head.
    pub header_read: Duration,
    /// From a reply to the next request's first byte.
    pub idle: Duration,
}

/// Where a connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for a request head, since the connection opened or the head's first byte.
    Head(Instant),
    /// Serving this many requests (the handler bounds its own body read).
    Busy(u32),
    /// Between a reply and the next request's first byte, since the reply.
    Idle(Instant),
}

/// One connection's phase and the limit that applies to it.
#[derive(Debug, Clone)]
pub struct ConnState {
    phase: Phase,
    waits: Waits,
}

impl ConnState {
    /// A connection accepted at `now`: its first request head is due within the header limit
    /// (a client that connects and says nothing is a slow sender, not an idle pool member).
    pub fn new(now: Instant, waits: Waits) -> ConnState {
        ConnState {
            phase: Phase::Head(now),
            waits,
        }
    }

    /// Bytes arrived from the client at `now`.
    pub fn on_bytes(&mut self, now: Instant) {
        if let Phase::Idle(_) = self.phase {
            self.phase = Phase::Head(now);
        }
    }

    /// A complete request head was handed to a handler.
    pub fn on_request(&mut self) {
        self.phase = match self.phase {
            Phase::Busy(n) => Phase::Busy(n.saturating_add(1)),
            Phase::Head(_) | Phase::Idle(_) => Phase::Busy(1),
        };
    }

    /// A handler produced its reply at `now`.
    pub fn on_reply(&mut self, now: Instant) {
        self.phase = match self.phase {
            Phase::Busy(n) if n > 1 => Phase::Busy(n - 1),
            _ => Phase::Idle(now),
        };
    }

    /// When the connection is to be cut if it is still waiting for the client, and why;
    /// `None` while a request is being served.
    pub fn deadline(&self) -> Option<(Instant, Cut)> {
        match self.phase {
            Phase::Head(since) => Some((since + self.waits.header_read, Cut::HeaderTimeout)),
            Phase::Idle(since) => Some((since + self.waits.idle, Cut::IdleTimeout)),
            Phase::Busy(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WAITS: Waits = Waits {
        header_read: Duration::from_secs(10),
        idle: Duration::from_secs(90),
    };

    fn at(t0: Instant, s: u64) -> Instant {
        t0 + Duration::from_secs(s)
    }

    #[test]
    fn a_new_connection_owes_its_first_head_within_the_header_limit() {
        let t0 = Instant::now();
        let c = ConnState::new(t0, WAITS);
        assert_eq!(c.deadline(), Some((at(t0, 10), Cut::HeaderTimeout)));
    }

    #[test]
    fn idle_between_requests_then_a_slow_head() {
        let t0 = Instant::now();
        let mut c = ConnState::new(t0, WAITS);
        c.on_bytes(at(t0, 1));
        // Bytes of a head already under way do not restart its clock.
        assert_eq!(c.deadline(), Some((at(t0, 10), Cut::HeaderTimeout)));
        c.on_request();
        assert_eq!(c.deadline(), None, "serving: the body has its own limit");
        c.on_bytes(at(t0, 50));
        assert_eq!(c.deadline(), None, "body bytes while serving");
        c.on_reply(at(t0, 60));
        assert_eq!(c.deadline(), Some((at(t0, 150), Cut::IdleTimeout)));
        // The next request's first byte switches to the (shorter) header limit from then.
        c.on_bytes(at(t0, 100));
        assert_eq!(c.deadline(), Some((at(t0, 110), Cut::HeaderTimeout)));
        c.on_bytes(at(t0, 105));
        assert_eq!(c.deadline(), Some((at(t0, 110), Cut::HeaderTimeout)));
    }

    #[test]
    fn overlapping_requests_keep_the_connection_busy_until_the_last_reply() {
        let t0 = Instant::now();
        let mut c = ConnState::new(t0, WAITS);
        c.on_request();
        c.on_request();
        c.on_reply(at(t0, 1));
        assert_eq!(c.deadline(), None);
        c.on_reply(at(t0, 2));
        assert_eq!(c.deadline(), Some((at(t0, 92), Cut::IdleTimeout)));
        // A stray reply (none outstanding) leaves it idle.
        c.on_reply(at(t0, 3));
        assert_eq!(c.deadline(), Some((at(t0, 93), Cut::IdleTimeout)));
    }
}
