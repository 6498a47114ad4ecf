//! What one worker publishes for the others on its tick, and every worker's merged: the
//! gray failure streaks (`consecutive_failures`, both detectors) and, for the window
//! detector, the windows — a ring of buckets per unit and one of stable responses. The
//! bytes are `crate::shared::codec`'s; this is the content.

use super::window::windows::{Layout, Ring, Spans, Stats};

/// Recent gray failures of one unit on one worker, for `consecutive_failures`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Streak {
    /// Time of this worker's last successful gray response, ns since the epoch.
    pub last_success_ns: u64,
    /// Times of the failures after it, ns (at most the threshold, newest kept).
    pub failures_ns: Vec<u64>,
}

impl Streak {
    pub fn success(&mut self, now_ns: u64) {
        self.last_success_ns = self.last_success_ns.max(now_ns);
        self.failures_ns.clear();
    }

    pub fn failure(&mut self, now_ns: u64, keep: usize) {
        if keep == 0 {
            return;
        }
        if self.failures_ns.len() >= keep {
            self.failures_ns.remove(0);
        }
        self.failures_ns.push(now_ns);
    }
}

/// Everything one worker keeps for publishing: a ring per unit, the stable ring, a streak
/// per unit.
#[derive(Debug, Clone)]
pub struct Local {
    pub layout: Layout,
    pub gray: Vec<Ring>,
    pub stable: Ring,
    pub streaks: Vec<Streak>,
}

impl Local {
    pub fn new(layout: Layout, units: usize) -> Local {
        Local {
            layout,
            gray: vec![Ring::new(layout); units],
            stable: Ring::new(layout),
            streaks: vec![Streak::default(); units],
        }
    }

    /// What goes out at `now_ms`: only buckets still in the window and holding anything.
    pub fn snapshot(&self, now_ms: u64) -> Snapshot {
        Snapshot {
            rings: self
                .gray
                .iter()
                .chain(std::iter::once(&self.stable))
                .map(|r| r.live(self.layout, now_ms))
                .collect(),
            streaks: self.streaks.clone(),
        }
    }
}

/// One worker's published snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// Per unit, then the stable ring last: `(bucket index, sums)` of the live buckets.
    pub rings: Vec<Vec<(u64, Stats)>>,
    /// Per unit.
    pub streaks: Vec<Streak>,
}

/// All workers' snapshots merged: per unit, each trigger's window totals, and the streaks.
#[derive(Debug, Clone)]
pub struct Merged {
    /// Per unit: latency fields over the latency window, box fields over the box window,
    /// responses/failures over the error window.
    pub gray: Vec<Stats>,
    /// Stable responses' box counts over the box window (the learned baseline).
    pub stable: Stats,
    /// Per unit: newest success across workers, ns.
    pub last_success_ns: Vec<u64>,
    /// Per unit: every worker's recent failure times, ns.
    pub failures_ns: Vec<Vec<u64>>,
}

impl Merged {
    pub fn new(units: usize) -> Merged {
        Merged {
            gray: vec![Stats::default(); units],
            stable: Stats::default(),
            last_success_ns: vec![0; units],
            failures_ns: vec![Vec::new(); units],
        }
    }

    /// Adds one worker's snapshot (of as many units as this merge; another size adds
    /// nothing). `since_ms[u]` is when unit `u`'s breaker last closed: older buckets are
    /// the incident's, not the new period's.
    pub fn add(
        &mut self,
        snap: &Snapshot,
        layout: Layout,
        spans: Spans,
        now_ms: u64,
        since_ms: &[u64],
    ) {
        let units = self.gray.len();
        if snap.rings.len() != units + 1 || snap.streaks.len() != units {
            return;
        }
        let cur = now_ms / layout.bucket_ms;
        for (u, ring) in snap.rings.iter().enumerate() {
            for &(idx, s) in ring {
                if u == units {
                    if layout.in_window(idx, cur, spans.box_ms, 0) {
                        let b = &mut self.stable;
                        b.box_n = b.box_n.saturating_add(s.box_n);
                        b.box_sum += s.box_sum;
                        b.box_sumsq += s.box_sumsq;
                    }
                    continue;
                }
                let since = since_ms.get(u).copied().unwrap_or(0);
                let Some(t) = self.gray.get_mut(u) else {
                    continue;
                };
                if layout.in_window(idx, cur, spans.latency_ms, since) {
                    t.lat_n = t.lat_n.saturating_add(s.lat_n);
                    t.lat_sum += s.lat_sum;
                }
                if layout.in_window(idx, cur, spans.box_ms, since) {
                    t.box_n = t.box_n.saturating_add(s.box_n);
                    t.box_sum += s.box_sum;
                    t.box_sumsq += s.box_sumsq;
                }
                if layout.in_window(idx, cur, spans.error_ms, since) {
                    t.responses = t.responses.saturating_add(s.responses);
                    t.failures = t.failures.saturating_add(s.failures);
                }
            }
        }
        for (u, st) in snap.streaks.iter().enumerate() {
            if let (Some(ls), Some(fs)) =
                (self.last_success_ns.get_mut(u), self.failures_ns.get_mut(u))
            {
                *ls = (*ls).max(st.last_success_ns);
                fs.extend(&st.failures_ns);
            }
        }
    }

    /// Gray failures in a row for `unit`, across workers: failures after both the newest
    /// success anywhere and the breaker's last close (`since_ns`).
    pub fn consecutive(&self, unit: usize, since_ns: u64) -> u32 {
        let after = self
            .last_success_ns
            .get(unit)
            .copied()
            .unwrap_or(0)
            .max(since_ns);
        self.failures_ns
            .get(unit)
            .map_or(0, |f| f.iter().filter(|&&t| t > after).count() as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: Layout = Layout {
        bucket_ms: 100,
        slots: 11,
    };
    const SPANS: Spans = Spans {
        latency_ms: 1_000,
        box_ms: 1_000,
        error_ms: 500,
    };

    #[test]
    fn snapshots_merge_across_workers_within_windows() {
        let mut a = Local::new(L, 2);
        let mut b = Local::new(L, 2);
        // Worker a: old bucket (outside every window) and recent ones.
        a.gray[0].bucket(L, 3_000).unwrap().add_latency(1_000.0);
        for t in [4_600, 4_700, 5_000] {
            let s = a.gray[0].bucket(L, t).unwrap();
            s.add_latency(10.0);
            s.add_boxes(2.0);
            s.responses += 1;
        }
        let s = b.gray[0].bucket(L, 5_050).unwrap();
        s.add_latency(40.0);
        s.responses += 1;
        s.failures += 1;
        b.gray[1].bucket(L, 5_000).unwrap().add_boxes(9.0);
        b.stable.bucket(L, 4_900).unwrap().add_boxes(3.0);
        a.stable.bucket(L, 4_100).unwrap().add_boxes(5.0);
        a.streaks[1].failure(100, 3);
        b.streaks[1].success(150);
        b.streaks[1].failure(200, 3);
        b.streaks[1].failure(300, 3);

        let now = 5_099;
        let mut m = Merged::new(2);
        m.add(&a.snapshot(now), L, SPANS, now, &[0, 0]);
        m.add(&b.snapshot(now), L, SPANS, now, &[0, 0]);
        assert_eq!(m.gray[0].lat_n, 4);
        assert_eq!(m.gray[0].lat_mean(), Some(17.5));
        assert_eq!(m.gray[0].box_n, 3);
        // Error window is 500 ms: bucket 46 (4_600) and later.
        assert_eq!((m.gray[0].responses, m.gray[0].failures), (4, 1));
        assert_eq!(m.gray[1].box_mean(), Some(9.0));
        assert_eq!(m.stable.box_n, 2);
        assert_eq!(m.stable.box_mean(), Some(4.0));
        assert_eq!(m.consecutive(1, 0), 2);
        assert_eq!(m.consecutive(1, 250), 1);
        assert_eq!(m.consecutive(0, 0), 0);

        // Since the breaker closed at 4_950 only buckets 50.. count.
        let mut m = Merged::new(2);
        m.add(&a.snapshot(now), L, SPANS, now, &[4_950, 0]);
        assert_eq!(m.gray[0].lat_n, 1);
    }

    #[test]
    fn a_snapshot_of_another_size_adds_nothing() {
        let mut a = Local::new(L, 1);
        a.gray[0].bucket(L, 100).unwrap().add_latency(1.0);
        a.streaks[0].failure(100, 3);
        let mut m = Merged::new(2);
        m.add(&a.snapshot(100), L, SPANS, 100, &[0, 0]);
        assert_eq!(m.gray, vec![Stats::default(); 2]);
        assert_eq!(m.consecutive(0, 0), 0);
    }

    #[test]
    fn streak_keeps_the_newest() {
        let mut s = Streak::default();
        for t in 1..=5 {
            s.failure(t, 3);
        }
        assert_eq!(s.failures_ns, vec![3, 4, 5]);
        s.success(6);
        assert!(s.failures_ns.is_empty());
        s.failure(7, 0);
        assert!(s.failures_ns.is_empty());
    }
}
