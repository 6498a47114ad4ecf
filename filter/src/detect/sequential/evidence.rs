//! The sequential detector's evidence: what each unit has seen of gray and of its stable
//! control (a [`Tally`] per side: counts, sums and sums of squares, constant memory per
//! unit), over the epoch and the current segment, and the shared record of every unit's.
//!
//! Each worker tallies its responses locally and on the tick adds them to one record in
//! proxy shared data with a compare-and-swap. The record therefore holds every response any
//! worker saw, added in one total order; a test evaluated after each addition sees a
//! growing prefix of one sequence of batches, which is all an anytime-valid test needs.
//! The tests themselves are [`super::plan`]'s; the bytes `crate::shared::codec`'s.

use crate::detect::sequential::math::{Moments, Rate};
use crate::signals::Observation;

/// What one side (gray, or the control) of one unit saw.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Tally {
    pub latency: Moments,
    pub boxes: Moments,
    pub rate: Rate,
}

impl Tally {
    pub fn observe(&mut self, o: &Observation) {
        self.rate.n += 1.0;
        if o.failed {
            self.rate.failures += 1.0;
        }
        if let Some(ms) = o.latency_ms {
            self.latency.add(ms);
        }
        if let Some(n) = o.boxes {
            self.boxes.add(n);
        }
    }

    pub fn merge(&mut self, o: &Tally) {
        self.latency.merge(&o.latency);
        self.boxes.merge(&o.boxes);
        self.rate.merge(&o.rate);
    }

    pub fn is_empty(&self) -> bool {
        self.rate.n == 0.0 && self.latency.n == 0.0 && self.boxes.n == 0.0
    }
}

/// Gray and control over one stretch of time.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Pair {
    pub gray: Tally,
    pub control: Tally,
}

impl Pair {
    fn merge(&mut self, gray: &Tally, control: &Tally) {
        self.gray.merge(gray);
        self.control.merge(control);
    }
}

/// One unit's evidence in the shared record.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct UnitEvidence {
    /// The breaker generation this epoch belongs to (a close starts a new epoch).
    pub generation: u32,
    /// Since the breaker last closed (or the configuration started).
    pub epoch: Pair,
    /// Since the current segment started.
    pub segment: Pair,
    /// 1-based index of the current segment in this epoch.
    pub segment_index: u32,
}

impl UnitEvidence {
    /// A new epoch for breaker `generation`, in its first segment.
    pub fn fresh(generation: u32) -> UnitEvidence {
        UnitEvidence {
            generation,
            segment_index: 1,
            ..UnitEvidence::default()
        }
    }

    /// Adds one worker's tallies; a segment full of gray responses is closed first.
    pub fn add(&mut self, gray: &Tally, control: &Tally, segment_responses: u32) {
        if self.segment.gray.rate.n >= f64::from(segment_responses) {
            self.segment = Pair::default();
            self.segment_index = self.segment_index.saturating_add(1);
        }
        self.epoch.merge(gray, control);
        self.segment.merge(gray, control);
    }
}

/// Every unit's evidence: the shared record.
#[derive(Debug, Clone, PartialEq)]
pub struct Record(pub Vec<UnitEvidence>);

impl Record {
    pub fn new(units: usize) -> Record {
        Record(vec![UnitEvidence::fresh(0); units])
    }

    /// The unit's evidence for breaker `generation`: started afresh when the stored one
    /// belongs to an earlier epoch.
    pub fn unit_for(&mut self, unit: usize, generation: u32) -> Option<&mut UnitEvidence> {
        let u = self.0.get_mut(unit)?;
        if u.generation != generation {
            *u = UnitEvidence::fresh(generation);
        }
        Some(u)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A reply with this latency and box count, or a failure without them.
    pub(crate) fn obs(lat: f64, boxes: f64, failed: bool) -> Observation {
        Observation {
            failed,
            latency_ms: (!failed).then_some(lat),
            boxes: (!failed).then_some(boxes),
            ..Observation::default()
        }
    }

    #[test]
    fn a_new_generation_starts_a_new_epoch_and_segments_roll_over() {
        let mut r = Record::new(1);
        let mut g = Tally::default();
        for _ in 0..6 {
            g.observe(&obs(10.0, 5.0, false));
        }
        let u = r.unit_for(0, 1).unwrap();
        u.add(&g, &g, 10);
        u.add(&g, &g, 10);
        assert_eq!((u.segment_index, u.segment.gray.rate.n), (1, 12.0));
        u.add(&g, &g, 10);
        assert_eq!((u.segment_index, u.segment.gray.rate.n), (2, 6.0));
        assert_eq!(u.epoch.gray.rate.n, 18.0);
        let again = r.unit_for(0, 2).unwrap();
        assert_eq!((again.generation, again.epoch.gray.rate.n), (2, 0.0));
    }
}
