//! The sidecar's one source of time. Whatever decides by the clock — reply latencies (and so
//! the watchdog's windows), latch expiry, self-check scheduling, a connection's phases,
//! `/info`'s start time — reads the [`Clock`] the server was built with: [`SystemClock`] in
//! production, a [`ManualClock`] that unit tests move by hand instead of sleeping.
//!
//! Two kinds of time stay outside it on purpose: tokio's timers, which wake tasks waiting on
//! real sockets (the body, header and idle limits fire there, at instants read from this
//! clock), and the model workers' stage times and batch wait, which time real work and real
//! arrivals on their own threads.

use std::time::{Instant, SystemTime};

/// Where the time comes from.
pub trait Clock: Send + Sync + 'static {
    /// Monotonic time, for every interval and deadline.
    fn now(&self) -> Instant;

    /// Wall-clock time, only for what is shown to people.
    fn wall(&self) -> SystemTime;

    /// Milliseconds from `since` to now (0 if `since` is later).
    fn ms_since(&self, since: Instant) -> f64 {
        self.now().saturating_duration_since(since).as_secs_f64() * 1000.0
    }
}

/// The operating system's clocks.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn wall(&self) -> SystemTime {
        SystemTime::now()
    }
}

#[cfg(test)]
pub use manual::ManualClock;

#[cfg(test)]
mod manual {
    use std::sync::Mutex;
    use std::time::{Duration, Instant, SystemTime};

    use super::Clock;

    /// A clock that stands still until [`ManualClock::advance`] moves it.
    #[derive(Debug)]
    pub struct ManualClock {
        start: Instant,
        wall_start: SystemTime,
        elapsed: Mutex<Duration>,
    }

    impl ManualClock {
        /// A clock at the current instant, wall time 2023-11-14T22:13:20Z.
        pub fn new() -> ManualClock {
            ManualClock {
                start: Instant::now(),
                wall_start: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
                elapsed: Mutex::new(Duration::ZERO),
            }
        }

        /// Moves the clock `by` forward.
        pub fn advance(&self, by: Duration) {
            *self.elapsed.lock().unwrap() += by;
        }

        fn elapsed(&self) -> Duration {
            *self.elapsed.lock().unwrap()
        }
    }

    impl Default for ManualClock {
        fn default() -> ManualClock {
            ManualClock::new()
        }
    }

    impl Clock for ManualClock {
        fn now(&self) -> Instant {
            self.start + self.elapsed()
        }

        fn wall(&self) -> SystemTime {
            self.wall_start + self.elapsed()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_manual_clock_stands_still_until_advanced() {
        let c = ManualClock::new();
        let (t0, w0) = (c.now(), c.wall());
        assert_eq!(c.now(), t0);
        c.advance(Duration::from_millis(250));
        assert_eq!(c.now() - t0, Duration::from_millis(250));
        assert_eq!(
            c.wall().duration_since(w0).unwrap(),
            Duration::from_millis(250)
        );
        assert_eq!(c.ms_since(t0), 250.0);
        assert_eq!(c.ms_since(c.now() + Duration::from_secs(1)), 0.0);
    }
}
