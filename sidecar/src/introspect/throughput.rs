//! The sidecar's recent throughput, as the `/infer` reply's `fps`: successful `/infer`
//! replies in the last [`WINDOW`], divided by the window's length. Pure logic with the time
//! passed in.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How far back `fps` looks: long enough to smooth a batch's burst of replies, short enough
/// to show a slowdown within seconds.
pub const WINDOW: Duration = Duration::from_secs(10);

/// Most reply times kept (10 s at 10,000 replies per second); beyond it the oldest go first,
/// so memory stays bounded and `fps` saturates at that rate.
const MAX_REPLIES: usize = 100_000;

/// When the recent successful replies went out.
#[derive(Debug, Default)]
pub struct Throughput {
    replies: VecDeque<Instant>,
}

impl Throughput {
    /// Records a successful reply at `now` and returns the replies per second over the
    /// window ending now, this one included.
    pub fn record(&mut self, now: Instant) -> f64 {
        if self.replies.len() == MAX_REPLIES {
            self.replies.pop_front();
        }
        self.replies.push_back(now);
        self.fps(now)
    }

    /// Replies per second over the window ending at `now`.
    pub fn fps(&mut self, now: Instant) -> f64 {
        while let Some(&t) = self.replies.front() {
            if now.saturating_duration_since(t) < WINDOW {
                break;
            }
            self.replies.pop_front();
        }
        self.replies.len() as f64 / WINDOW.as_secs_f64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_per_second_over_the_last_ten_seconds() {
        let t0 = Instant::now();
        let mut t = Throughput::default();
        assert_eq!(t.fps(t0), 0.0);
        // 5 replies a second for 20 s: 50 in every 10 s window.
        let mut last = 0.0;
        for i in 0..100u64 {
            last = t.record(t0 + Duration::from_millis(200 * i));
        }
        assert_eq!(last, 5.0);
        // Traffic stops: the window empties as it slides on.
        let end = t0 + Duration::from_millis(200 * 99);
        assert_eq!(t.fps(end + Duration::from_secs(5)), 2.5);
        assert_eq!(t.fps(end + WINDOW), 0.0);
        // A lone reply after the pause counts for itself only.
        assert_eq!(t.record(end + Duration::from_secs(60)), 0.1);
    }
}
