//! Waiting on a condition instead of sleeping: [`eventually`] polls a check until it holds
//! or a timeout passes, then fails the test naming what it waited for and the last thing the
//! check saw. A check returns `bool`, `Option<T>` or `Result<T, E>` (an `Err` says what it
//! saw instead); [`Wait`] sets the polling interval, or gives the timeout back as a value
//! for a caller that must clean up before it fails.
//!
//! ```
//! use std::time::Duration;
//! use grayguard_e2e::wait::eventually;
//!
//! // Stands in for a gauge read from a running process.
//! let mut reads = 0;
//! let mut gauge = || {
//!     reads += 1;
//!     if reads < 3 { 0.0 } else { 1.0 }
//! };
//! let open = eventually("the breaker opens", Duration::from_secs(5), || {
//!     let v = gauge();
//!     if v == 1.0 { Ok(v) } else { Err(format!("gauge {v}")) }
//! });
//! assert_eq!(open, 1.0);
//! ```

use std::fmt;
use std::time::{Duration, Instant};

/// The interval between two polls unless [`Wait::every`] sets another.
pub const DEFAULT_EVERY: Duration = Duration::from_millis(50);

/// What a poll returns: done with a value, or not yet with what it saw.
pub trait Check {
    type Value;
    fn into_result(self) -> Result<Self::Value, String>;
}

impl Check for bool {
    type Value = ();
    fn into_result(self) -> Result<(), String> {
        if self { Ok(()) } else { Err("false".into()) }
    }
}

impl<T> Check for Option<T> {
    type Value = T;
    fn into_result(self) -> Result<T, String> {
        self.ok_or_else(|| "nothing yet".into())
    }
}

impl<T, E: fmt::Display> Check for Result<T, E> {
    type Value = T;
    fn into_result(self) -> Result<T, String> {
        self.map_err(|e| e.to_string())
    }
}

/// A wait that ran out: what it waited for, for how long, and the last observation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimedOut {
    pub what: String,
    pub timeout: Duration,
    pub polls: u32,
    pub last: String,
}

impl fmt::Display for TimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: not within {:?} ({} polls); last seen: {}",
            self.what, self.timeout, self.polls, self.last
        )
    }
}

impl std::error::Error for TimedOut {}

/// A wait for one condition.
#[derive(Debug, Clone)]
pub struct Wait {
    what: String,
    timeout: Duration,
    every: Duration,
}

impl Wait {
    /// Waits up to `timeout` for `what`, polling every [`DEFAULT_EVERY`].
    pub fn new(what: impl Into<String>, timeout: Duration) -> Wait {
        Wait {
            what: what.into(),
            timeout,
            every: DEFAULT_EVERY,
        }
    }

    /// Polls every `every` instead (zero: one poll right after another, for checks that
    /// are themselves a request and its reply).
    pub fn every(mut self, every: Duration) -> Wait {
        self.every = every;
        self
    }

    /// Polls `check` until it holds (its value), or returns how it timed out. The check runs
    /// at least once, and once more at the deadline.
    pub fn poll<C: Check>(&self, mut check: impl FnMut() -> C) -> Result<C::Value, TimedOut> {
        let deadline = Instant::now() + self.timeout;
        let mut polls = 0;
        loop {
            polls += 1;
            let last = match check().into_result() {
                Ok(v) => return Ok(v),
                Err(seen) => seen,
            };
            let now = Instant::now();
            if now >= deadline {
                return Err(TimedOut {
                    what: self.what.clone(),
                    timeout: self.timeout,
                    polls,
                    last,
                });
            }
            std::thread::sleep(self.every.min(deadline - now));
        }
    }

    /// Polls `check` until it holds and returns its value; fails the test when the timeout
    /// passes first.
    pub fn until<C: Check>(&self, check: impl FnMut() -> C) -> C::Value {
        self.poll(check).unwrap_or_else(|t| panic!("{t}"))
    }
}

/// Polls `check` every [`DEFAULT_EVERY`] until it holds and returns its value; fails the test
/// naming `what` and the last observation when `timeout` passes first.
pub fn eventually<C: Check>(what: &str, timeout: Duration, check: impl FnMut() -> C) -> C::Value {
    Wait::new(what, timeout).until(check)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_the_value_once_the_check_holds() {
        let mut n = 0;
        let v = eventually("the third poll", Duration::from_secs(5), || {
            n += 1;
            (n >= 3).then_some(n * 10)
        });
        assert_eq!((v, n), (30, 3));
        eventually("true at once", Duration::ZERO, || true);
    }

    #[test]
    fn a_timeout_names_the_wait_and_the_last_observation() {
        let mut n = 0u32;
        let t = Wait::new("the gauge reaches 1", Duration::from_millis(60))
            .every(Duration::from_millis(10))
            .poll(|| {
                n += 1;
                Err::<(), _>(format!("gauge {n}"))
            })
            .unwrap_err();
        assert_eq!(t.what, "the gauge reaches 1");
        assert!(t.polls >= 2 && t.polls == n, "{t}");
        assert_eq!(t.last, format!("gauge {n}"));
        let text = t.to_string();
        assert!(
            text.starts_with("the gauge reaches 1: not within 60ms"),
            "{text}"
        );
        assert!(text.ends_with(&format!("last seen: gauge {n}")), "{text}");
    }

    #[test]
    #[should_panic(expected = "the port listens: not within")]
    fn until_fails_the_test() {
        Wait::new("the port listens", Duration::from_millis(20)).until(|| false);
    }

    #[test]
    fn bool_and_option_say_what_they_saw() {
        assert_eq!(false.into_result(), Err("false".to_string()));
        assert_eq!(None::<u8>.into_result(), Err("nothing yet".to_string()));
        assert_eq!(Err::<u8, _>("503").into_result(), Err("503".to_string()));
    }
}
