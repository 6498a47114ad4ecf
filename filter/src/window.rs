//! Time-bucketed sliding windows of response statistics, one ring per breaker unit plus
//! one for the stable baseline, kept by each worker, published as a compact binary
//! snapshot and merged across workers by the evaluator.
//!
//! Time is cut into buckets of `bucket_ms`; a bucket is identified by its index
//! `now_ms / bucket_ms`. A window of `w` ms covers the last `ceil(w / bucket_ms)` buckets,
//! so it slides in steps of one bucket (a tenth of the shortest window, at most).

use crate::config::Config;

/// Most buckets a ring holds (bounds the snapshot size of one unit).
pub const MAX_SLOTS: u64 = 120;
/// Finest bucket width, in ms.
pub const MIN_BUCKET_MS: u64 = 50;
/// Snapshot format version.
const VERSION: u8 = 1;

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

    /// Buckets still inside the longest window at `now_ms`, oldest first.
    fn live(&self, layout: Layout, now_ms: u64) -> impl Iterator<Item = &(u64, Stats)> {
        let cur = now_ms / layout.bucket_ms;
        let len = self.slots.len() as u64;
        self.slots
            .iter()
            .filter(move |(idx, _)| *idx <= cur && cur - *idx < len)
    }
}

/// Recent gray failures of one unit on one worker, for `consecutive_failures`.
#[derive(Debug, Clone, Default)]
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

/// Everything one worker publishes: a ring per unit, the stable ring, a streak per unit.
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

    /// The compact snapshot other workers merge (only buckets still in the window).
    pub fn encode(&self, now_ms: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        out.push(VERSION);
        put_u16(&mut out, self.gray.len() as u16);
        for ring in self.gray.iter().chain(std::iter::once(&self.stable)) {
            let live: Vec<_> = ring
                .live(self.layout, now_ms)
                .filter(|(_, s)| *s != Stats::default())
                .collect();
            put_u16(&mut out, live.len() as u16);
            for (idx, s) in live {
                put_u64(&mut out, *idx);
                put_u32(&mut out, s.responses);
                put_u32(&mut out, s.failures);
                put_u32(&mut out, s.lat_n);
                put_f64(&mut out, s.lat_sum);
                put_u32(&mut out, s.box_n);
                put_f64(&mut out, s.box_sum);
                put_f64(&mut out, s.box_sumsq);
            }
        }
        for st in &self.streaks {
            put_u64(&mut out, st.last_success_ns);
            put_u16(&mut out, st.failures_ns.len() as u16);
            for t in &st.failures_ns {
                put_u64(&mut out, *t);
            }
        }
        out
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

/// All workers' snapshots merged: per unit, each trigger's window totals.
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

/// A snapshot that does not decode (another filter version, or truncated).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Corrupt;

impl Merged {
    pub fn new(units: usize) -> Merged {
        Merged {
            gray: vec![Stats::default(); units],
            stable: Stats::default(),
            last_success_ns: vec![0; units],
            failures_ns: vec![Vec::new(); units],
        }
    }

    /// Adds one worker's snapshot. `since_ms[u]` is when unit `u`'s breaker last closed.
    /// A snapshot that fails to decode adds nothing.
    pub fn add(
        &mut self,
        bytes: &[u8],
        layout: Layout,
        spans: Spans,
        now_ms: u64,
        since_ms: &[u64],
    ) -> Result<(), Corrupt> {
        let mut part = Merged::new(self.gray.len());
        part.decode(bytes, layout, spans, now_ms, since_ms)?;
        for (t, p) in self.gray.iter_mut().zip(&part.gray) {
            t.merge(p);
        }
        self.stable.merge(&part.stable);
        for (t, p) in self.last_success_ns.iter_mut().zip(&part.last_success_ns) {
            *t = (*t).max(*p);
        }
        for (t, p) in self.failures_ns.iter_mut().zip(part.failures_ns) {
            t.extend(p);
        }
        Ok(())
    }

    fn decode(
        &mut self,
        bytes: &[u8],
        layout: Layout,
        spans: Spans,
        now_ms: u64,
        since_ms: &[u64],
    ) -> Result<(), Corrupt> {
        let mut r = Reader(bytes);
        if r.u8()? != VERSION {
            return Err(Corrupt);
        }
        let units = usize::from(r.u16()?);
        if units != self.gray.len() {
            return Err(Corrupt);
        }
        let cur = now_ms / layout.bucket_ms;
        for u in 0..=units {
            let n = r.u16()?;
            for _ in 0..n {
                let idx = r.u64()?;
                let s = Stats {
                    responses: r.u32()?,
                    failures: r.u32()?,
                    lat_n: r.u32()?,
                    lat_sum: r.f64()?,
                    box_n: r.u32()?,
                    box_sum: r.f64()?,
                    box_sumsq: r.f64()?,
                };
                if u == units {
                    if layout.in_window(idx, cur, spans.box_ms, 0) {
                        self.stable.box_n = self.stable.box_n.saturating_add(s.box_n);
                        self.stable.box_sum += s.box_sum;
                        self.stable.box_sumsq += s.box_sumsq;
                    }
                    continue;
                }
                let since = since_ms.get(u).copied().unwrap_or(0);
                let Some(t) = self.gray.get_mut(u) else {
                    return Err(Corrupt);
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
        for u in 0..units {
            let last = r.u64()?;
            let n = r.u16()?;
            let mut fails = Vec::with_capacity(usize::from(n));
            for _ in 0..n {
                fails.push(r.u64()?);
            }
            if let (Some(ls), Some(fs)) =
                (self.last_success_ns.get_mut(u), self.failures_ns.get_mut(u))
            {
                *ls = (*ls).max(last);
                fs.extend(fails);
            }
        }
        Ok(())
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

fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_le_bytes());
}
fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}
fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}
fn put_f64(out: &mut Vec<u8>, v: f64) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// A bounds-checked little-endian reader.
pub(crate) struct Reader<'a>(pub(crate) &'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], Corrupt> {
        let (head, rest) = self.0.split_at_checked(N).ok_or(Corrupt)?;
        self.0 = rest;
        head.try_into().map_err(|_| Corrupt)
    }
    pub(crate) fn u8(&mut self) -> Result<u8, Corrupt> {
        Ok(self.take::<1>()?[0])
    }
    pub(crate) fn u16(&mut self) -> Result<u16, Corrupt> {
        Ok(u16::from_le_bytes(self.take()?))
    }
    pub(crate) fn u32(&mut self) -> Result<u32, Corrupt> {
        Ok(u32::from_le_bytes(self.take()?))
    }
    pub(crate) fn u64(&mut self) -> Result<u64, Corrupt> {
        Ok(u64::from_le_bytes(self.take()?))
    }
    pub(crate) fn f64(&mut self) -> Result<f64, Corrupt> {
        let v = f64::from_le_bytes(self.take()?);
        if v.is_finite() { Ok(v) } else { Err(Corrupt) }
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
        m.add(&a.encode(now), L, SPANS, now, &[0, 0]).unwrap();
        m.add(&b.encode(now), L, SPANS, now, &[0, 0]).unwrap();
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
        m.add(&a.encode(now), L, SPANS, now, &[4_950, 0]).unwrap();
        assert_eq!(m.gray[0].lat_n, 1);
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

    #[test]
    fn corrupt_snapshots_are_rejected() {
        let mut a = Local::new(L, 1);
        a.gray[0].bucket(L, 100).unwrap().add_latency(1.0);
        let bytes = a.encode(100);
        let mut m = Merged::new(1);
        for cut in 0..bytes.len() {
            assert_eq!(
                m.add(&bytes[..cut], L, SPANS, 100, &[0]),
                Err(Corrupt),
                "cut {cut}"
            );
        }
        assert_eq!(
            Merged::new(2).add(&bytes, L, SPANS, 100, &[0, 0]),
            Err(Corrupt)
        );
        let mut bad = bytes.clone();
        bad[0] = 99;
        assert_eq!(m.add(&bad, L, SPANS, 100, &[0]), Err(Corrupt));
        // NaN smuggled into a sum.
        let mut nan = bytes.clone();
        let at = 1 + 2 + 2 + 8 + 4 + 4 + 4;
        nan[at..at + 8].copy_from_slice(&f64::NAN.to_le_bytes());
        assert_eq!(Merged::new(1).add(&nan, L, SPANS, 100, &[0]), Err(Corrupt));
        assert_eq!(m.gray[0], Stats::default(), "nothing half-added");
        assert_eq!(m.add(&bytes, L, SPANS, 100, &[0]), Ok(()));
        assert_eq!(m.gray[0].lat_n, 1);
    }
}
