//! Hang detection: a model run that outlasts the stall deadline means the inference thread is
//! stuck (a deadlocked runtime, a wedged device), and only a restart frees it. While such a
//! run lasts the sidecar is *stalled*: `/healthz` (liveness) and `/ready` answer 503 and every
//! reply carries `x-canary-breach: stalled`; when the run returns, all of it clears by itself.
//!
//! Pure logic with the time passed in: the HTTP layer hands in when the oldest model run in
//! progress began (the detector knows) and stamps what this module says.

use std::time::{Duration, Instant};

/// How the stall deadline is set.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StallConfig {
    /// `--stall-deadline-s`: a fixed deadline; `None` derives it from the warm-up.
    pub deadline: Option<Duration>,
    /// `--stall-factor`: the derived deadline is this many warm-up medians ...
    pub factor: f64,
    /// `--stall-min-s`: ... and never shorter than this.
    pub min: Duration,
}

impl StallConfig {
    /// The deadline: the fixed one, else `factor` × the warm-up median run (`None` without
    /// warm-up runs), at least `min`.
    pub fn deadline_for(&self, warmup_median_ms: Option<f64>) -> Duration {
        if let Some(d) = self.deadline {
            return d;
        }
        let derived = warmup_median_ms
            .filter(|ms| ms.is_finite() && *ms > 0.0)
            .map_or(Duration::ZERO, |ms| {
                Duration::try_from_secs_f64(self.factor * ms / 1000.0).unwrap_or(Duration::MAX)
            });
        derived.max(self.min)
    }
}

/// What one look at the model runs found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Look {
    /// A run has outlasted the deadline and is still going.
    pub stalled: bool,
    /// This look found a stuck run no earlier look had counted (count it once).
    pub new_stall: bool,
    /// The sidecar was stalled at the previous look and is not any more.
    pub recovered: bool,
    /// How long the oldest run in progress has been going.
    pub oldest_run: Option<Duration>,
}

/// The stall state between looks.
#[derive(Debug, Default)]
pub struct StallWatch {
    /// `None` until armed (a derived deadline needs the warm-up first).
    deadline: Option<Duration>,
    /// Start of the stuck run counted last, so that one stuck run counts once.
    counted: Option<Instant>,
    stalled: bool,
}

impl StallWatch {
    /// Starts judging runs against `deadline`.
    pub fn arm(&mut self, deadline: Duration) {
        self.deadline = Some(deadline);
    }

    pub fn deadline(&self) -> Option<Duration> {
        self.deadline
    }

    /// Looks at the runs at `now`; `oldest` is when the oldest run in progress began
    /// (`None`: no run in progress).
    pub fn look(&mut self, now: Instant, oldest: Option<Instant>) -> Look {
        let oldest_run = oldest.map(|t| now.saturating_duration_since(t));
        let stuck = match (self.deadline, oldest_run, oldest) {
            (Some(deadline), Some(age), Some(start)) if age > deadline => Some(start),
            _ => None,
        };
        let new_stall = stuck.is_some() && stuck != self.counted;
        if new_stall {
            self.counted = stuck;
        }
        let recovered = self.stalled && stuck.is_none();
        self.stalled = stuck.is_some();
        Look {
            stalled: self.stalled,
            new_stall,
            recovered,
            oldest_run,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn the_deadline_is_fixed_or_a_multiple_of_the_warm_up_with_a_floor() {
        let derived = StallConfig {
            deadline: None,
            factor: 20.0,
            min: Duration::from_secs(5),
        };
        // A CPU run of 0.4 s: 8 s; a GPU run of 6 ms: the 5 s floor.
        assert_eq!(derived.deadline_for(Some(400.0)), Duration::from_secs(8));
        assert_eq!(derived.deadline_for(Some(6.0)), Duration::from_secs(5));
        // No warm-up runs (or a nonsensical median): the floor.
        assert_eq!(derived.deadline_for(None), Duration::from_secs(5));
        assert_eq!(derived.deadline_for(Some(f64::NAN)), Duration::from_secs(5));
        assert_eq!(derived.deadline_for(Some(f64::MAX)), Duration::MAX);
        let fixed = StallConfig {
            deadline: Some(ms(1500)),
            ..derived
        };
        assert_eq!(fixed.deadline_for(Some(400.0)), ms(1500));
    }

    #[test]
    fn a_run_past_the_deadline_stalls_once_and_recovers_when_it_returns() {
        let t0 = Instant::now();
        let mut w = StallWatch::default();
        // Unarmed (still warming up): nothing is judged.
        assert!(!w.look(t0 + ms(60_000), Some(t0)).stalled);
        w.arm(ms(1000));
        assert_eq!(w.deadline(), Some(ms(1000)));
        let run = t0 + ms(100);
        let quiet = w.look(t0 + ms(1100), Some(run));
        assert_eq!(
            quiet,
            Look {
                stalled: false,
                new_stall: false,
                recovered: false,
                oldest_run: Some(ms(1000)),
            }
        );
        // Past the deadline: stalled, counted once however often it is looked at.
        let first = w.look(t0 + ms(1101), Some(run));
        assert!(first.stalled && first.new_stall && !first.recovered);
        let again = w.look(t0 + ms(9000), Some(run));
        assert!(again.stalled && !again.new_stall);
        // The run returns: recovered once, then quiet.
        let back = w.look(t0 + ms(9001), None);
        assert!(!back.stalled && back.recovered && back.oldest_run.is_none());
        assert!(!w.look(t0 + ms(9002), None).recovered);
        // A later stuck run is a new stall.
        let later = t0 + ms(10_000);
        assert!(!w.look(t0 + ms(10_500), Some(later)).stalled);
        assert!(w.look(t0 + ms(11_001), Some(later)).new_stall);
        // A younger run taking over from a stuck one that returned is judged on its own age.
        let fresh = w.look(t0 + ms(11_002), Some(t0 + ms(11_000)));
        assert!(!fresh.stalled && fresh.recovered);
    }
}
