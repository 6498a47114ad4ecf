//! The window detector's triggers: which one fires for a unit's merged window, against
//! the box-count baseline (configured, or learned from stable and held while stable is
//! thin). Nothing fires below `min_samples`.

use grayguard_contract::Trigger;

use crate::config::{BoxCount, Breach};
use crate::detect::window::windows::Stats;

/// The box-count reference: mean and std of stable responses (or the configured one).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Baseline {
    pub mean: f64,
    /// Standard deviation before the `min_std` floor.
    pub std: f64,
    /// Stable samples it was learned from (0 when fixed by configuration).
    pub samples: u32,
    /// Learned earlier and kept because the stable window now holds fewer than
    /// `min_samples` responses.
    pub held: bool,
}

impl Baseline {
    /// The configured baseline, or the one learned from `stable` once it holds
    /// `min_samples` responses.
    pub fn of(t: &BoxCount, stable: &Stats) -> Option<Baseline> {
        if let Some((mean, std)) = t.baseline {
            return Some(Baseline {
                mean,
                std,
                samples: 0,
                held: false,
            });
        }
        if stable.box_n < t.min_samples {
            return None;
        }
        Some(Baseline {
            mean: stable.box_mean()?,
            std: stable.box_std()?,
            samples: stable.box_n,
            held: false,
        })
    }

    /// The baseline after one more evaluation: the configured one, the one learned from
    /// `stable` when it holds `min_samples`, or else the `previous` learned one, held.
    ///
    /// Holding matters because stable traffic can thin out while gray is being judged (the
    /// devices still sending may all be in the gray cohort, or stable replies may be slow):
    /// a baseline that expired with its window would silently switch the trigger off exactly
    /// then. A stale reference errs towards shedding, which sends traffic to stable.
    pub fn next(t: &BoxCount, stable: &Stats, previous: Option<Baseline>) -> Option<Baseline> {
        Baseline::of(t, stable).or_else(|| {
            previous
                .filter(|_| t.baseline.is_none())
                .map(|p| Baseline { held: true, ..p })
        })
    }

    /// Largest allowed distance from the mean: `max_sigma × max(std, min_std)`.
    pub fn band(&self, t: &BoxCount) -> f64 {
        t.max_sigma * self.std.max(t.min_std)
    }

    /// Whether `value` lies outside the band around the mean.
    pub fn outside(&self, t: &BoxCount, value: f64) -> bool {
        (value - self.mean).abs() > self.band(t)
    }
}

/// The statistical trigger that fires for a unit, if any, checked in a fixed order:
/// consecutive failures, error rate, latency, box count.
pub fn evaluate(
    b: &Breach,
    gray: &Stats,
    baseline: Option<Baseline>,
    consecutive: u32,
) -> Option<Trigger> {
    if b.consecutive_failures.is_some_and(|n| consecutive >= n) {
        return Some(Trigger::ConsecutiveFailures);
    }
    if let Some(t) = &b.error_rate
        && let (Some(max), true) = (t.max, gray.responses >= t.min_samples)
        && gray.error_rate().is_some_and(|r| r > max)
    {
        return Some(Trigger::ErrorRate);
    }
    if let Some(t) = &b.latency
        && let (Some(max), true) = (t.max_mean_ms, gray.lat_n >= t.min_samples)
        && gray.lat_mean().is_some_and(|m| m > max)
    {
        return Some(Trigger::Latency);
    }
    if let (Some(t), Some(base)) = (&b.box_count, baseline)
        && gray.box_n >= t.min_samples
        && gray.box_mean().is_some_and(|m| base.outside(t, m))
    {
        return Some(Trigger::BoxCount);
    }
    None
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::parse;

    /// Every trigger on, with the window detector's thresholds (also judges probes).
    pub(crate) fn breach() -> Breach {
        parse(
            br#"{"stable":"s","gray":"g","rules":[],"breach":{
              "latency":{"header":"l","max_mean_ms":100,"window_s":10,"min_samples":10},
              "box_count":{"header":"b","max_sigma":3,"window_s":10,"min_samples":10},
              "error_rate":{"max":0.2,"window_s":10,"min_samples":10},
              "consecutive_failures":3}}"#,
        )
        .unwrap()
        .breach
    }

    fn gray(n: u32, lat_mean: f64, box_mean: f64, failures: u32) -> Stats {
        let mut s = Stats::default();
        for _ in 0..n {
            s.add_latency(lat_mean);
            s.add_boxes(box_mean);
        }
        s.responses = n;
        s.failures = failures;
        s
    }

    fn stable(values: &[f64]) -> Stats {
        let mut s = Stats::default();
        for &v in values {
            s.add_boxes(v);
        }
        s
    }

    #[test]
    fn each_trigger_just_below_and_above() {
        let b = breach();
        let base = Some(Baseline {
            mean: 5.0,
            std: 1.0,
            samples: 50,
            held: false,
        });
        let cases = [
            ("healthy", gray(20, 50.0, 5.0, 0), 0, None),
            ("latency at threshold", gray(20, 100.0, 5.0, 0), 0, None),
            (
                "latency just above",
                gray(20, 100.5, 5.0, 0),
                0,
                Some(Trigger::Latency),
            ),
            ("latency above, 9 samples", gray(9, 500.0, 5.0, 0), 0, None),
            (
                "latency above, 10 samples",
                gray(10, 500.0, 5.0, 0),
                0,
                Some(Trigger::Latency),
            ),
            ("boxes at +3σ", gray(20, 50.0, 8.0, 0), 0, None),
            (
                "boxes just above +3σ",
                gray(20, 50.0, 8.1, 0),
                0,
                Some(Trigger::BoxCount),
            ),
            (
                "boxes just below -3σ",
                gray(20, 50.0, 1.9, 0),
                0,
                Some(Trigger::BoxCount),
            ),
            ("boxes off, 9 samples", gray(9, 50.0, 40.0, 0), 0, None),
            ("error rate at max", gray(20, 50.0, 5.0, 4), 0, None),
            (
                "error rate above max",
                gray(20, 50.0, 5.0, 5),
                0,
                Some(Trigger::ErrorRate),
            ),
            ("errors, 9 samples", gray(9, 50.0, 5.0, 9), 0, None),
            ("2 in a row", gray(0, 0.0, 0.0, 0), 2, None),
            (
                "3 in a row",
                gray(0, 0.0, 0.0, 0),
                3,
                Some(Trigger::ConsecutiveFailures),
            ),
        ];
        for (name, g, consecutive, want) in cases {
            assert_eq!(evaluate(&b, &g, base, consecutive), want, "{name}");
        }
        // Without a baseline the box-count trigger cannot fire.
        assert_eq!(evaluate(&b, &gray(20, 50.0, 80.0, 0), None, 0), None);
    }

    #[test]
    fn absent_triggers_are_off() {
        let b = parse(br#"{"stable":"s","gray":"g","rules":[]}"#)
            .unwrap()
            .breach;
        let base = Some(Baseline {
            mean: 0.0,
            std: 0.0,
            samples: 10,
            held: false,
        });
        assert_eq!(evaluate(&b, &gray(1000, 1e6, 1e6, 1000), base, 1000), None);
    }

    #[test]
    fn learned_baseline_needs_min_samples_and_has_a_std_floor() {
        let b = breach();
        let t = b.box_count.as_ref().unwrap();
        assert_eq!(Baseline::of(t, &stable(&[4.0; 9])), None);
        let base = Baseline::of(t, &stable(&[4.0; 10])).unwrap();
        assert_eq!((base.mean, base.std, base.samples), (4.0, 0.0, 10));
        // All-identical stable answers: std 0, but the floor (1 box) keeps a band of ±3.
        assert_eq!(base.band(t), 3.0);
        assert_eq!(evaluate(&b, &gray(20, 1.0, 6.0, 0), Some(base), 0), None);
        assert_eq!(
            evaluate(&b, &gray(20, 1.0, 7.5, 0), Some(base), 0),
            Some(Trigger::BoxCount)
        );
        // A real spread widens the band.
        let wide = Baseline::of(
            t,
            &stable(&[0.0, 10.0, 0.0, 10.0, 0.0, 10.0, 0.0, 10.0, 0.0, 10.0]),
        )
        .unwrap();
        assert_eq!((wide.mean, wide.std), (5.0, 5.0));
        assert_eq!(evaluate(&b, &gray(20, 1.0, 19.0, 0), Some(wide), 0), None);
        assert_eq!(
            evaluate(&b, &gray(20, 1.0, 20.5, 0), Some(wide), 0),
            Some(Trigger::BoxCount)
        );
        // A fixed baseline needs no stable samples.
        let fixed = parse(
            br#"{"stable":"s","gray":"g","rules":[],"breach":{"box_count":{"header":"b",
                "max_sigma":2,"window_s":1,"min_samples":5,"baseline":{"mean":10,"std":2}}}}"#,
        )
        .unwrap()
        .breach;
        let ft = fixed.box_count.as_ref().unwrap();
        let fb = Baseline::of(ft, &Stats::default()).unwrap();
        assert_eq!((fb.mean, fb.std, fb.samples), (10.0, 2.0, 0));
        assert_eq!(evaluate(&fixed, &gray(5, 1.0, 14.0, 0), Some(fb), 0), None);
        assert_eq!(
            evaluate(&fixed, &gray(5, 1.0, 14.5, 0), Some(fb), 0),
            Some(Trigger::BoxCount)
        );
    }

    #[test]
    fn a_learned_baseline_is_held_while_stable_traffic_is_thin() {
        let b = breach();
        let t = b.box_count.as_ref().unwrap();
        assert_eq!(Baseline::next(t, &stable(&[4.0; 9]), None), None);
        let learned = Baseline::next(t, &stable(&[4.0; 10]), None).unwrap();
        assert!(!learned.held);
        // The stable window empties (no stable traffic any more): the baseline stays and
        // a flood of gray boxes still fires.
        let held = Baseline::next(t, &Stats::default(), Some(learned)).unwrap();
        assert_eq!((held.mean, held.samples, held.held), (4.0, 10, true));
        let held = Baseline::next(t, &stable(&[1.0; 3]), Some(held)).unwrap();
        assert_eq!((held.mean, held.held), (4.0, true));
        assert_eq!(
            evaluate(&b, &gray(20, 1.0, 30.0, 0), Some(held), 0),
            Some(Trigger::BoxCount)
        );
        // A full window again replaces it.
        let fresh = Baseline::next(t, &stable(&[7.0; 12]), Some(held)).unwrap();
        assert_eq!((fresh.mean, fresh.samples, fresh.held), (7.0, 12, false));
    }
}
