//! What happened, second by second: every request outcome and every breaker reading from
//! Envoy's admin, folded into one bucket per second of the run (the demo's live view and
//! chart).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::breaker::Breaker;
use crate::decision::{DecisionExt, Route};
use crate::sample::Sample;

/// Running mean and standard deviation of box counts.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct BoxStats {
    pub n: u32,
    sum: f64,
    sum_sq: f64,
}

impl BoxStats {
    pub fn add(&mut self, boxes: u32) {
        let x = f64::from(boxes);
        self.n += 1;
        self.sum += x;
        self.sum_sq += x * x;
    }

    pub fn mean(&self) -> Option<f64> {
        (self.n > 0).then(|| self.sum / f64::from(self.n))
    }

    /// Population standard deviation.
    pub fn std(&self) -> Option<f64> {
        let mean = self.mean()?;
        Some(
            (self.sum_sq / f64::from(self.n) - mean * mean)
                .max(0.0)
                .sqrt(),
        )
    }
}

/// Everything that completed within one second of the run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Second {
    pub replies: u32,
    pub errors: u32,
    /// Count per decision label (`gray rule`, `stable shed=box_count`, `(none)`, ...).
    pub decisions: BTreeMap<String, u32>,
    pub served_gray: u32,
    pub served_stable: u32,
    /// Per cohort (by index in the mix): (served by gray, served at all).
    pub cohorts: Vec<(u32, u32)>,
    pub gray_boxes: BoxStats,
    pub stable_boxes: BoxStats,
    /// The last breaker reading taken within this second.
    pub breaker: Option<Breaker>,
}

impl Second {
    /// Share of the replies of this second that gray served, in percent.
    pub fn gray_share_percent(&self) -> Option<f64> {
        let served = self.served_gray + self.served_stable;
        (served > 0).then(|| 100.0 * f64::from(self.served_gray) / f64::from(served))
    }

    /// Share of cohort `i`'s replies of this second that gray served, in percent.
    pub fn cohort_gray_percent(&self, i: usize) -> Option<f64> {
        let &(gray, served) = self.cohorts.get(i)?;
        (served > 0).then(|| 100.0 * f64::from(gray) / f64::from(served))
    }

    /// One line for the live view.
    pub fn describe(&self, index: usize) -> String {
        let decisions = if self.decisions.is_empty() {
            "-".to_string()
        } else {
            self.decisions
                .iter()
                .map(|(k, v)| format!("{v} {k}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let boxes = |s: &BoxStats| s.mean().map_or("-".to_string(), |m| format!("{m:.1}"));
        format!(
            "t={index:>3}s  replies {:>2} errors {}  | {decisions} | boxes gray {} stable {} | breaker {}",
            self.replies,
            self.errors,
            boxes(&self.gray_boxes),
            boxes(&self.stable_boxes),
            self.breaker.map_or("?", Breaker::as_str),
        )
    }
}

/// Per-second buckets, growing as the run goes.
#[derive(Debug, Clone, Default)]
pub struct Timeline {
    seconds: Vec<Second>,
}

impl Timeline {
    pub fn seconds(&self) -> &[Second] {
        &self.seconds
    }

    fn bucket(&mut self, at: Duration) -> &mut Second {
        let i = usize::try_from(at.as_secs()).unwrap_or(usize::MAX - 1);
        if self.seconds.len() <= i {
            self.seconds.resize_with(i + 1, Second::default);
        }
        &mut self.seconds[i]
    }

    /// Files a sample under the second in which it completed.
    pub fn record(&mut self, sample: &Sample) {
        let s = self.bucket(sample.done);
        if sample.is_error() {
            s.errors += 1;
        }
        let Some(reply) = sample.reply() else {
            *s.decisions.entry("(no reply)".to_string()).or_default() += 1;
            return;
        };
        s.replies += 1;
        let label = match &reply.decision {
            Some(Ok(d)) => d.label(),
            Some(Err(_)) => "(malformed decision)".to_string(),
            None => "(no decision)".to_string(),
        };
        *s.decisions.entry(label).or_default() += 1;
        if !reply.ok() {
            return;
        }
        if s.cohorts.len() <= sample.cohort {
            s.cohorts.resize(sample.cohort + 1, (0, 0));
        }
        let cohort = &mut s.cohorts[sample.cohort];
        match reply.route() {
            Some(Route::Gray) => {
                cohort.0 += 1;
                cohort.1 += 1;
                s.served_gray += 1;
                if let Some(b) = reply.box_count {
                    s.gray_boxes.add(b);
                }
            }
            Some(Route::Stable) => {
                cohort.1 += 1;
                s.served_stable += 1;
                if let Some(b) = reply.box_count {
                    s.stable_boxes.add(b);
                }
            }
            None => {}
        }
    }

    /// Files a breaker reading taken at `at`.
    pub fn record_breaker(&mut self, at: Duration, state: Breaker) {
        self.bucket(at).breaker = Some(state);
    }

    /// Makes sure the timeline covers `[0, at]` (seconds without traffic stay empty).
    pub fn extend_to(&mut self, at: Duration) {
        self.bucket(at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::Outcome;
    use crate::sample::tests::sample;

    #[test]
    fn box_stats_mean_and_std() {
        let mut s = BoxStats::default();
        assert_eq!(s.mean(), None);
        for b in [2, 4, 4, 4, 5, 5, 7, 9] {
            s.add(b);
        }
        assert_eq!(s.mean(), Some(5.0));
        assert_eq!(s.std(), Some(2.0));
    }

    #[test]
    fn buckets_by_completion_second_and_splits_routes() {
        let mut t = Timeline::default();
        t.record(&sample(100, 400, "gray; rule=r", 40));
        t.record(&sample(200, 900, "stable; no-rule", 3));
        t.record(&sample(900, 1_100, "stable; rule=r; shed=box_count", 5));
        t.record(&Sample {
            sent: Duration::from_millis(1_000),
            done: Duration::from_millis(1_500),
            cohort: 1,
            image: 0,
            gateway: 0,
            outcome: Outcome::Transport("connection refused".into()),
        });
        t.record_breaker(Duration::from_millis(1_200), Breaker::Open);
        t.extend_to(Duration::from_millis(3_100));

        let s = t.seconds();
        assert_eq!(s.len(), 4);
        assert_eq!(
            (s[0].replies, s[0].served_gray, s[0].served_stable),
            (2, 1, 1)
        );
        assert_eq!(s[0].gray_boxes.mean(), Some(40.0));
        assert_eq!(s[0].stable_boxes.mean(), Some(3.0));
        assert_eq!(s[0].gray_share_percent(), Some(50.0));
        assert_eq!(s[0].cohort_gray_percent(0), Some(50.0));
        assert_eq!(s[1].cohort_gray_percent(0), Some(0.0));
        assert_eq!(s[1].cohort_gray_percent(1), None);
        assert_eq!(s[1].decisions.get("stable shed=box_count"), Some(&1));
        assert_eq!(s[1].decisions.get("(no reply)"), Some(&1));
        assert_eq!((s[1].replies, s[1].errors), (1, 1));
        assert_eq!(s[1].breaker, Some(Breaker::Open));
        assert_eq!(s[3], Second::default());
        assert_eq!(s[3].gray_share_percent(), None);
        let line = s[1].describe(1);
        assert!(line.contains("1 stable shed=box_count"), "{line}");
        assert!(line.contains("breaker OPEN"), "{line}");
    }

    #[test]
    fn error_replies_count_but_add_no_boxes() {
        let mut t = Timeline::default();
        let mut s = sample(0, 10, "gray; rule=r", 99);
        if let Outcome::Reply(r) = &mut s.outcome {
            r.status = 503;
        }
        assert_eq!(s.error_kind().as_deref(), Some("HTTP 503"));
        t.record(&s);
        let sec = &t.seconds()[0];
        assert_eq!((sec.errors, sec.served_gray, sec.gray_boxes.n), (1, 0, 0));
    }
}
