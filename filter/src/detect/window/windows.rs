//! Time-bucketed sliding windows of response statistics: the sums of one bucket, the
//! bucket width and ring length a configuration needs, and one worker's ring of buckets.
//!
//! Time is cut into buckets of `bucket_ms`; a bucket is identified by its index
//! `now_ms / bucket_ms`. A window of `w` ms covers the last `ceil(w / bucket_ms)` buckets,
//! so it slides in steps of one bucket (a tenth of the shortest window, at most).

use crate::config::Config;

/// Most buckets a ring holds (bounds the snapshot size of one unit).
pub const MAX_SLOTS: u64 = 120;
/// Finest bucket width, in ms.
pub const MIN_BUCKET_MS: u64 = 50;

/// Sums of one bucket (or of a whole window).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Stats {
    /// Responses judged (gray rings) — the error-rate denominator.
    pub responses: u32,
    /// Failed responses: 5xx, reset, or missing signal headers.
    pub failures: u32,
    /// Latency samples and their sum, in ms.
    pub lat_n: u32,
    pub lat_sum: f64,
    /// Box-count samples, their sum and sum of squares.
    pub box_n: u32,
    pub box_sum: f64,
    pub box_sumsq: f64,
}

impl Stats {
    pub fn merge(&mut self, o: &Stats) {
        self.responses = self.responses.saturating_add(o.responses);
        self.failures = self.failures.saturating_add(o.failures);
        self.lat_n = self.lat_n.saturating_add(o.lat_n);
        self.lat_sum += o.lat_sum;
        self.box_n = self.box_n.saturating_add(o.box_n);
        self.box_sum += o.box_sum;
        self.box_sumsq += o.box_sumsq;
    }

    pub fn add_latency(&mut self, ms: f64) {
        self.lat_n = self.lat_n.saturating_add(1);
        self.lat_sum += ms;
    }

    pub fn add_boxes(&mut self, n: f64) {
        self.box_n = self.box_n.saturating_add(1);
        self.box_sum += n;
        self.box_sumsq += n * n;
    }

    /// Mean latency in ms, if any sample.
    pub fn lat_mean(&self) -> Option<f64> {
        (self.lat_n > 0).then(|| self.lat_sum / f64::from(self.lat_n))
    }

    /// Mean box count, if any sample.
    pub fn box_mean(&self) -> Option<f64> {
        (self.box_n > 0).then(|| self.box_sum / f64::from(self.box_n))
    }

    /// Population standard deviation of the box count, if any sample.
    pub fn box_std(&self) -> Option<f64> {
        let mean = self.box_mean()?;
        let var = self.box_sumsq / f64::from(self.box_n) - mean * mean;
        Some(var.max(0.0).sqrt())
    }

    /// Share of failed responses, if any response.
    pub fn error_rate(&self) -> Option<f64> {
        (self.responses > 0).then(|| f64::from(self.failures) / f64::from(self.responses))
    }
}

/// Bucket width and ring length derived from the configured windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub bucket_ms: u64,
    /// Slots per ring (0: no windowed trigger configured).
    pub slots: usize,
}

impl Layout {
    pub fn for_config(cfg: &Config) -> Layout {
        Layout::new(cfg.min_window_ms(), cfg.max_window_ms())
    }

    /// A tenth of the shortest window, but no more than [`MAX_SLOTS`] buckets for the
    /// longest one.
    pub fn new(min_window_ms: u64, max_window_ms: u64) -> Layout {
        if max_window_ms == 0 {
            return Layout {
                bucket_ms: 1_000,
                slots: 0,
            };
        }
        let bucket_ms = (min_window_ms / 10)
            .max(max_window_ms.div_ceil(MAX_SLOTS))
            .max(MIN_BUCKET_MS);
        Layout {
            bucket_ms,
            slots: (max_window_ms.div_ceil(bucket_ms) + 1) as usize,
        }
    }

    /// Buckets a window of `window_ms` spans.
    pub fn span(&self, window_ms: u64) -> u64 {
        window_ms.div_ceil(self.bucket_ms).max(1)
    }

    /// Whether bucket `idx` belongs to a window of `window_ms` ending now (bucket `cur`) and
    /// started no earlier than `since_ms` (the breaker's last close: older samples are the
    /// incident's, not the new period's).
    pub fn in_window(&self, idx: u64, cur: u64, window_ms: u64, since_ms: u64) -> bool {
        window_ms > 0
            && idx <= cur
            && cur - idx < self.span(window_ms)
            && idx.saturating_mul(self.bucket_ms) >= since_ms
    }
}

/// One worker's ring of buckets.
#[derive(Debug, Clone)]
pub struct Ring {
    slots: Vec<(u64, Stats)>,
}

impl Ring {
    pub fn new(layout: Layout) -> Ring {
        Ring {
            slots: vec![(u64::MAX, Stats::default()); layout.slots],
        }
    }

    /// The bucket of `now_ms`, reset if it last held an older bucket.
    pub fn bucket(&mut self, layout: Layout, now_ms: u64) -> Option<&mut Stats> {
        let idx = now_ms / layout.bucket_ms;
        let len = self.slots.len() as u64;
        if len == 0 {
            return None;
        }
        let slot = self.slots.get_mut((idx % len) as usize)?;
        if slot.0 != idx {
            *slot = (idx, Stats::default());
        }
        Some(&mut slot.1)
    }

    /// Buckets still inside the longest window at `now_ms` that hold anything, in slot
    /// order: what a snapshot publishes.
    pub fn live(&self, layout: Layout, now_ms: u64) -> Vec<(u64, Stats)> {
        let cur = now_ms / layout.bucket_ms;
        let len = self.slots.len() as u64;
        self.slots
            .iter()
            .filter(|(idx, s)| *idx <= cur && cur - *idx < len && *s != Stats::default())
            .copied()
            .collect()
    }
}

/// Window lengths of the three windowed triggers, ms (0: trigger off).
#[derive(Debug, Clone, Copy, Default)]
pub struct Spans {
    pub latency_ms: u64,
    pub box_ms: u64,
    pub error_ms: u64,
}

impl Spans {
    pub fn for_config(cfg: &Config) -> Spans {
        let b = &cfg.breach;
        Spans {
            latency_ms: b.latency.as_ref().map_or(0, |t| t.window_ms),
            box_ms: b.box_count.as_ref().map_or(0, |t| t.window_ms),
            error_ms: b.error_rate.as_ref().map_or(0, |t| t.window_ms),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: Layout = Layout {
        bucket_ms: 100,
        slots: 11,
    };

    #[test]
    fn layouts() {
        assert_eq!(Layout::new(0, 0).slots, 0);
        assert_eq!(
            Layout::new(2_000, 2_000),
            Layout {
                bucket_ms: 200,
                slots: 11
            }
        );
        assert_eq!(
            Layout::new(60_000, 120_000),
            Layout {
                bucket_ms: 6_000,
                slots: 21
            }
        );
        // A long window next to a short one: capped at MAX_SLOTS buckets.
        let l = Layout::new(1_000, 86_400_000);
        assert_eq!(l.bucket_ms, 720_000);
        assert!(l.slots as u64 <= MAX_SLOTS + 1);
        assert_eq!(Layout::new(100, 100).bucket_ms, MIN_BUCKET_MS);
    }

    #[test]
    fn window_membership() {
        let cases = [
            (50, 50, 1_000, 0, true),
            (41, 50, 1_000, 0, true),
            (40, 50, 1_000, 0, false),
            (51, 50, 1_000, 0, false),
            (46, 50, 500, 0, true),
            (45, 50, 500, 0, false),
            (45, 50, 1_000, 4_500, true),
            (44, 50, 1_000, 4_500, false),
            (50, 50, 0, 0, false),
        ];
        for (idx, cur, w, since, want) in cases {
            assert_eq!(
                L.in_window(idx, cur, w, since),
                want,
                "{idx} {cur} {w} {since}"
            );
        }
    }

    #[test]
    fn stats_means_and_std() {
        let mut s = Stats::default();
        assert_eq!(s.lat_mean(), None);
        assert_eq!(s.box_std(), None);
        assert_eq!(s.error_rate(), None);
        for v in [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0] {
            s.add_boxes(v);
            s.add_latency(v * 10.0);
        }
        assert_eq!(s.box_mean(), Some(5.0));
        assert_eq!(s.box_std(), Some(2.0));
        assert_eq!(s.lat_mean(), Some(50.0));
        let mut same = Stats::default();
        for _ in 0..100 {
            same.add_boxes(3.0);
        }
        assert_eq!(same.box_std(), Some(0.0));
    }

    #[test]
    fn ring_reuses_slots_for_new_buckets() {
        let mut r = Ring::new(L);
        r.bucket(L, 0).unwrap().add_latency(5.0);
        // 1_100 ms later the same slot holds a new bucket.
        let s = r.bucket(L, 1_100).unwrap();
        assert_eq!(s.lat_n, 0);
        assert!(Ring::new(Layout::new(0, 0)).bucket(L, 0).is_none());
    }

    #[test]
    fn only_live_buckets_that_hold_something_are_published() {
        let mut r = Ring::new(L);
        r.bucket(L, 0).unwrap().add_latency(5.0);
        let _ = r.bucket(L, 500);
        r.bucket(L, 1_000).unwrap().add_latency(6.0);
        // At 1_150 ms bucket 0 is 11 buckets old, bucket 5 holds nothing.
        let live = r.live(L, 1_150);
        assert_eq!(live.len(), 1);
        assert_eq!((live[0].0, live[0].1.lat_n), (10, 1));
    }
}
