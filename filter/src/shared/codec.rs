//! The bytes of every record grayguard keeps in proxy shared data: the breaker board, the
//! sequential detector's evidence record, each worker's snapshot and the worker list.
//!
//! Every record starts with a format tag and a version byte. During a roll-out (a new
//! module next to an old one, same configuration) VMs of two builds share these keys; a
//! record of another tag or version, another size, truncated, with trailing bytes or with
//! a value out of range is [`Corrupt`], and read as absent: a board or an evidence record
//! starts afresh, a snapshot is skipped, a worker list is empty. It is never misread.
//! Numbers are little-endian; floats must be finite.

use grayguard_contract::Trigger;

use crate::breaker::{Board, Breaker};
use crate::detect::sequential::bet::{Cusum, LANES, Lane};
use crate::detect::sequential::confseq::Sums;
use crate::detect::sequential::evidence::{Pair, Record, Tally, UnitEvidence};
use crate::detect::sequential::moments::{Moments, Rate};
use crate::detect::sequential::promotion::{Caps, Promotion, SIGNALS};
use crate::detect::snapshot::{Snapshot, Streak};
use crate::detect::window::windows::Stats;
use grayguard_contract::promotion::Verdict;

/// A record that does not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Corrupt;

/// Format tag and version of each record. The tags are letters, so that no record of
/// these formats starts like the untagged ones of earlier builds (board version 2, record
/// and snapshot version 1, a bare list of ids whose length is a multiple of four). Board
/// version 4 added each breaker's hold, its last check and its last release.
pub const BOARD: [u8; 2] = [b'B', 4];
pub const EVIDENCE: [u8; 2] = [b'E', 3];
pub const SNAPSHOT: [u8; 2] = [b'S', 2];
pub const WORKERS: [u8; 2] = [b'L', 1];

/// Bytes of one breaker on the board.
pub const BREAKER_BYTES: usize = 52;
/// Floats of one tally, of one lane of a change detector, of one side of a promotion.
const TALLY_FLOATS: usize = 11;
const LANE_FLOATS: usize = 6;
const SUMS_FLOATS: usize = 6;
/// Bytes of one window bucket in a snapshot.
const BUCKET_BYTES: usize = 8 + 4 * 4 + 3 * 8;

// ------------------------------------------------------------------ the breaker board

/// A trigger's byte on the board (0 is "none").
fn trigger_code(t: Trigger) -> u8 {
    match t {
        Trigger::Flag => 1,
        Trigger::Latency => 2,
        Trigger::BoxCount => 3,
        Trigger::ErrorRate => 4,
        Trigger::Agreement => 7,
        Trigger::ConsecutiveFailures => 5,
        Trigger::Latch => 6,
        Trigger::Operator => 8,
    }
}

fn trigger_from_code(code: u8) -> Option<Trigger> {
    Trigger::ALL.into_iter().find(|t| trigger_code(*t) == code)
}

fn put_trigger(out: &mut Vec<u8>, t: Option<Trigger>) {
    out.push(t.map_or(0, trigger_code));
}

pub fn encode_board(board: &Board) -> Vec<u8> {
    let mut out = header(BOARD, board.0.len(), BREAKER_BYTES);
    for b in &board.0 {
        out.push(u8::from(b.tripped));
        put_trigger(&mut out, b.trigger);
        out.extend_from_slice(&b.since_ns.to_le_bytes());
        out.extend_from_slice(&b.until_ns.to_le_bytes());
        out.extend_from_slice(&b.probes_ok.to_le_bytes());
        out.extend_from_slice(&b.generation.to_le_bytes());
        put_trigger(&mut out, b.alert);
        out.extend_from_slice(&b.alert_since_ns.to_le_bytes());
        put_trigger(&mut out, b.hold);
        out.extend_from_slice(&b.checked_ns.to_le_bytes());
        out.extend_from_slice(&b.released_ns.to_le_bytes());
    }
    out
}

/// A board of exactly `units` breakers.
pub fn decode_board(bytes: &[u8], units: usize) -> Result<Board, Corrupt> {
    let mut r = Reader::open(bytes, BOARD, units)?;
    let mut v = Vec::with_capacity(units);
    for _ in 0..units {
        let tripped = match r.u8()? {
            0 => false,
            1 => true,
            _ => return Err(Corrupt),
        };
        let trigger = r.trigger()?;
        let (since_ns, until_ns, probes_ok, generation) = (r.u64()?, r.u64()?, r.u32()?, r.u32()?);
        let (alert, alert_since_ns) = (r.trigger()?, r.u64()?);
        let (hold, checked_ns, released_ns) = (r.trigger()?, r.u64()?, r.u64()?);
        if hold.is_some() && !tripped {
            // Only a shedding breaker is held.
            return Err(Corrupt);
        }
        v.push(Breaker {
            tripped,
            trigger,
            since_ns,
            until_ns,
            probes_ok,
            generation,
            alert,
            alert_since_ns,
            hold,
            checked_ns,
            released_ns,
        });
    }
    r.finish(Board(v))
}

// ------------------------------------------------------------------ the evidence record

/// The evidence record: units, tests per unit and control slots; per unit its generation,
/// the epoch's two tallies, one change detector per test (scored count, then every lane)
/// and the promotion (caps, both sides' sums, the verdict and its times); then the running
/// control tallies. Its shape is in the header: the detector checks that it fits.
pub fn encode_record(record: &Record) -> Vec<u8> {
    let tests = record.units.first().map_or(0, |u| u.detectors.len());
    let unit_floats =
        2 * TALLY_FLOATS + tests * (1 + LANES * LANE_FLOATS) + 2 + 2 * SIGNALS * SUMS_FLOATS + 4;
    let mut out = header(EVIDENCE, record.units.len(), 4 + 8 * unit_floats);
    put_u16(&mut out, tests);
    put_u16(&mut out, record.controls.len());
    let put = |out: &mut Vec<u8>, v: f64| out.extend_from_slice(&v.to_le_bytes());
    for u in &record.units {
        out.extend_from_slice(&u.generation.to_le_bytes());
        for t in [&u.epoch.gray, &u.epoch.control] {
            for v in tally_fields(t) {
                put(&mut out, v);
            }
        }
        for d in &u.detectors {
            put(&mut out, d.scored);
            for l in &d.lanes {
                for v in [
                    l.log_c,
                    l.run_start,
                    l.since_ms,
                    l.run_n,
                    l.run_sum_x,
                    l.run_sum_ref,
                ] {
                    put(&mut out, v);
                }
            }
        }
        let p = &u.promotion;
        put(&mut out, p.caps.latency_ms);
        put(&mut out, p.caps.boxes);
        for s in p.gray.iter().chain(&p.control) {
            for v in [s.n, s.sum, s.sumsq, s.stakes, s.staked, s.penalty] {
                put(&mut out, v);
            }
        }
        put(&mut out, p.verdict.gauge() as f64);
        put(&mut out, p.verdict_ms);
        put(&mut out, p.verdict_gray_n);
        put(&mut out, p.started_ms);
    }
    for c in &record.controls {
        for v in tally_fields(c) {
            put(&mut out, v);
        }
    }
    out
}

/// An evidence record of any shape (the detector checks that it fits its configuration).
pub fn decode_record(bytes: &[u8]) -> Result<Record, Corrupt> {
    let mut r = Reader(bytes);
    if r.take::<2>()? != EVIDENCE {
        return Err(Corrupt);
    }
    let units = usize::from(r.u16()?);
    let tests = usize::from(r.u16()?);
    let slots = usize::from(r.u16()?);
    let mut v = Vec::with_capacity(units.min(r.0.len() / 8));
    for _ in 0..units {
        let generation = r.u32()?;
        let gray = r.tally(true)?;
        let control = r.tally(true)?;
        let mut detectors = Vec::with_capacity(tests.min(r.0.len() / 8));
        for _ in 0..tests {
            let scored = r.count()?;
            let mut lanes = [Lane::default(); LANES];
            for l in &mut lanes {
                *l = Lane {
                    log_c: r.f64()?,
                    run_start: r.count()?,
                    since_ms: r.f64()?,
                    run_n: r.count()?,
                    run_sum_x: r.f64()?,
                    run_sum_ref: r.f64()?,
                };
            }
            detectors.push(Cusum { lanes, scored });
        }
        let caps = Caps {
            latency_ms: r.non_negative()?,
            boxes: r.non_negative()?,
        };
        let mut sides = [[Sums::default(); SIGNALS]; 2];
        for side in &mut sides {
            for s in side.iter_mut() {
                *s = Sums {
                    n: r.count()?,
                    sum: r.f64()?,
                    sumsq: r.f64()?,
                    stakes: r.non_negative()?,
                    staked: r.f64()?,
                    penalty: r.non_negative()?,
                };
            }
        }
        let verdict = Verdict::from_gauge(r.count()? as u64).ok_or(Corrupt)?;
        let [gray_sums, control_sums] = sides;
        v.push(UnitEvidence {
            generation,
            epoch: Pair { gray, control },
            detectors,
            promotion: Promotion {
                caps,
                gray: gray_sums,
                control: control_sums,
                verdict,
                verdict_ms: r.f64()?,
                verdict_gray_n: r.count()?,
                started_ms: r.f64()?,
            },
        });
    }
    let mut controls = Vec::with_capacity(slots.min(r.0.len() / 8));
    for _ in 0..slots {
        controls.push(r.tally(false)?);
    }
    r.finish(Record { units: v, controls })
}

fn tally_fields(t: &Tally) -> [f64; TALLY_FLOATS] {
    [
        t.latency.n,
        t.latency.sum,
        t.latency.sumsq,
        t.boxes.n,
        t.boxes.sum,
        t.boxes.sumsq,
        t.rate.n,
        t.rate.failures,
        t.agreement.n,
        t.agreement.sum,
        t.agreement.sumsq,
    ]
}

// ------------------------------------------------------------------ a worker's snapshot

/// A snapshot: per unit and then stable, the live buckets; then per unit the streak.
pub fn encode_snapshot(s: &Snapshot) -> Vec<u8> {
    let mut out = header(SNAPSHOT, s.streaks.len(), BUCKET_BYTES);
    for ring in &s.rings {
        put_u16(&mut out, ring.len());
        for (idx, s) in ring {
            out.extend_from_slice(&idx.to_le_bytes());
            out.extend_from_slice(&s.responses.to_le_bytes());
            out.extend_from_slice(&s.failures.to_le_bytes());
            out.extend_from_slice(&s.lat_n.to_le_bytes());
            out.extend_from_slice(&s.lat_sum.to_le_bytes());
            out.extend_from_slice(&s.box_n.to_le_bytes());
            out.extend_from_slice(&s.box_sum.to_le_bytes());
            out.extend_from_slice(&s.box_sumsq.to_le_bytes());
        }
    }
    for st in &s.streaks {
        out.extend_from_slice(&st.last_success_ns.to_le_bytes());
        put_u16(&mut out, st.failures_ns.len());
        for t in &st.failures_ns {
            out.extend_from_slice(&t.to_le_bytes());
        }
    }
    out
}

/// A snapshot of exactly `units` units.
pub fn decode_snapshot(bytes: &[u8], units: usize) -> Result<Snapshot, Corrupt> {
    let mut r = Reader::open(bytes, SNAPSHOT, units)?;
    let mut rings = Vec::with_capacity(units + 1);
    for _ in 0..=units {
        let n = r.u16()?;
        let mut ring = Vec::with_capacity(r.room(n, BUCKET_BYTES));
        for _ in 0..n {
            let idx = r.u64()?;
            ring.push((
                idx,
                Stats {
                    responses: r.u32()?,
                    failures: r.u32()?,
                    lat_n: r.u32()?,
                    lat_sum: r.f64()?,
                    box_n: r.u32()?,
                    box_sum: r.f64()?,
                    box_sumsq: r.f64()?,
                },
            ));
        }
        rings.push(ring);
    }
    let mut streaks = Vec::with_capacity(units);
    for _ in 0..units {
        let last_success_ns = r.u64()?;
        let n = r.u16()?;
        let mut failures_ns = Vec::with_capacity(r.room(n, 8));
        for _ in 0..n {
            failures_ns.push(r.u64()?);
        }
        streaks.push(Streak {
            last_success_ns,
            failures_ns,
        });
    }
    r.finish(Snapshot { rings, streaks })
}

// ------------------------------------------------------------------ the worker list

/// A worker list: its count (four bytes, so that the record's length is never a multiple
/// of four like an earlier build's bare list of ids), then the ids.
pub fn encode_workers(ids: &[u32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(6 + 4 * ids.len());
    out.extend_from_slice(&WORKERS);
    out.extend_from_slice(&u32::try_from(ids.len()).unwrap_or(u32::MAX).to_le_bytes());
    for id in ids {
        out.extend_from_slice(&id.to_le_bytes());
    }
    out
}

/// A worker list (of any length: it is not tied to the configuration's units).
pub fn decode_workers(bytes: &[u8]) -> Result<Vec<u32>, Corrupt> {
    let mut r = Reader(bytes);
    let n = if r.take::<2>()? == WORKERS {
        r.u32()?
    } else {
        return Err(Corrupt);
    };
    if r.0.len() % 4 != 0 || r.0.len() / 4 != n as usize {
        return Err(Corrupt);
    }
    let mut ids = Vec::with_capacity(n as usize);
    for _ in 0..n {
        ids.push(r.u32()?);
    }
    r.finish(ids)
}

// ------------------------------------------------------------------ framing

/// A record's tag, version and unit count, with room for `units` of `unit_bytes`.
fn header(tag: [u8; 2], units: usize, unit_bytes: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + units * unit_bytes);
    out.extend_from_slice(&tag);
    put_u16(&mut out, units);
    out
}

fn put_u16(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&u16::try_from(n).unwrap_or(u16::MAX).to_le_bytes());
}

/// A bounds-checked little-endian reader.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    /// A record of `tag` holding exactly `units` units.
    fn open(bytes: &'a [u8], tag: [u8; 2], units: usize) -> Result<Reader<'a>, Corrupt> {
        let mut r = Reader(bytes);
        if r.take::<2>()? != tag || usize::from(r.u16()?) != units {
            return Err(Corrupt);
        }
        Ok(r)
    }

    /// Room for `n` items of `size` bytes, but never more than the bytes left could hold.
    fn room(&self, n: u16, size: usize) -> usize {
        usize::from(n).min(self.0.len() / size)
    }

    /// `value`, if every byte was read.
    fn finish<T>(self, value: T) -> Result<T, Corrupt> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(Corrupt)
        }
    }

    fn take<const N: usize>(&mut self) -> Result<[u8; N], Corrupt> {
        let (head, rest) = self.0.split_at_checked(N).ok_or(Corrupt)?;
        self.0 = rest;
        head.try_into().map_err(|_| Corrupt)
    }
    fn u8(&mut self) -> Result<u8, Corrupt> {
        Ok(self.take::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16, Corrupt> {
        Ok(u16::from_le_bytes(self.take()?))
    }
    fn u32(&mut self) -> Result<u32, Corrupt> {
        Ok(u32::from_le_bytes(self.take()?))
    }
    fn u64(&mut self) -> Result<u64, Corrupt> {
        Ok(u64::from_le_bytes(self.take()?))
    }
    fn f64(&mut self) -> Result<f64, Corrupt> {
        let v = f64::from_le_bytes(self.take()?);
        if v.is_finite() { Ok(v) } else { Err(Corrupt) }
    }
    /// A whole, non-negative count (kept as a float).
    fn count(&mut self) -> Result<f64, Corrupt> {
        let v = self.f64()?;
        if v >= 0.0 && v.fract() == 0.0 {
            Ok(v)
        } else {
            Err(Corrupt)
        }
    }
    fn non_negative(&mut self) -> Result<f64, Corrupt> {
        let v = self.f64()?;
        if v >= 0.0 { Ok(v) } else { Err(Corrupt) }
    }
    /// A tally: counts non-negative (whole unless it is a decayed running tally), failures
    /// at most the replies.
    fn tally(&mut self, whole: bool) -> Result<Tally, Corrupt> {
        let mut f = [0.0; TALLY_FLOATS];
        for x in &mut f {
            *x = self.f64()?;
        }
        let count = |x: f64| x >= 0.0 && (!whole || x.fract() == 0.0);
        let ok =
            count(f[0]) && count(f[3]) && count(f[6]) && count(f[7]) && count(f[8]) && f[7] <= f[6];
        if !ok {
            return Err(Corrupt);
        }
        let m = |i: usize| Moments {
            n: f[i],
            sum: f[i + 1],
            sumsq: f[i + 2],
        };
        Ok(Tally {
            latency: m(0),
            boxes: m(3),
            rate: Rate {
                n: f[6],
                failures: f[7],
            },
            agreement: m(8),
        })
    }
    /// A trigger's byte (0: none).
    fn trigger(&mut self) -> Result<Option<Trigger>, Corrupt> {
        match self.u8()? {
            0 => Ok(None),
            c => trigger_from_code(c).map(Some).ok_or(Corrupt),
        }
    }
}

#[cfg(test)]
mod tests;
