//! Finished agreements waiting for a gray reply to carry them (`x-canary-agreement`): one per
//! reply, oldest first, each at most once, so that the gateways read independent samples. The
//! queue is bounded (`--compare-max-pending`): when it is full the oldest value is dropped
//! (and counted by the caller), since a fresher comparison says more about gray now.

use std::collections::VecDeque;

use super::agreement::Agreement;

#[derive(Debug)]
pub struct PendingAgreements {
    max: usize,
    values: VecDeque<Agreement>,
}

impl PendingAgreements {
    /// A queue of at most `max` values (at least 1).
    pub fn new(max: usize) -> PendingAgreements {
        let max = max.max(1);
        PendingAgreements {
            max,
            values: VecDeque::with_capacity(max.min(1024)),
        }
    }

    /// Queues `value`; returns whether the oldest one was dropped to make room.
    pub fn push(&mut self, value: Agreement) -> bool {
        let dropped = self.values.len() >= self.max;
        if dropped {
            self.values.pop_front();
        }
        self.values.push_back(value);
        dropped
    }

    /// The oldest value, removed: it rides on one reply only.
    pub fn take(&mut self) -> Option<Agreement> {
        self.values.pop_front()
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signals::agreement::FrameAgreement;

    /// The agreement `matched` of 10 + 10 boxes gives: `matched` / 10.
    fn value(matched: usize) -> Agreement {
        FrameAgreement {
            stable_boxes: 10,
            gray_boxes: 10,
            matched,
            ..FrameAgreement::default()
        }
        .value()
    }

    #[test]
    fn each_value_is_taken_once_oldest_first() {
        let mut q = PendingAgreements::new(8);
        assert_eq!(q.take(), None);
        for m in [3, 7, 10] {
            assert!(!q.push(value(m)));
        }
        assert_eq!(q.len(), 3);
        let taken: Vec<_> = std::iter::from_fn(|| q.take())
            .map(Agreement::render)
            .collect();
        assert_eq!(taken, ["0.300", "0.700", "1.000"]);
        assert!(q.is_empty());
        assert_eq!(q.take(), None);
    }

    #[test]
    fn a_full_queue_drops_the_oldest() {
        let mut q = PendingAgreements::new(2);
        assert!(!q.push(value(1)));
        assert!(!q.push(value(2)));
        assert!(q.push(value(3)));
        assert!(q.push(value(4)));
        assert_eq!(q.len(), 2);
        assert_eq!(q.take(), Some(value(3)));
        assert_eq!(q.take(), Some(value(4)));
        assert_eq!(q.take(), None);
        // A zero bound still holds the latest value.
        let mut q = PendingAgreements::new(0);
        q.push(value(5));
        assert!(q.push(value(6)));
        assert_eq!((q.take(), q.take()), (Some(value(6)), None));
    }
}
