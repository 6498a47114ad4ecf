//! Judging one half-open probe on its own, for both detectors: what sinks any probe (the
//! flag, or a failure when a failure trigger is on), then each detector's band — the
//! window detector's baseline, the sequential detector's running control.

use grayguard_contract::Trigger;

use crate::config::Breach;
use crate::detect::sequential::evidence::Tally;
use crate::detect::window::breach::Baseline;
use crate::signals::Observation;

/// What sinks a probe whatever the detector: the flag, or a failure when a failure trigger
/// is on.
fn judge_outright(b: &Breach, o: &Observation) -> Result<(), Trigger> {
    if o.flagged {
        return Err(Trigger::Flag);
    }
    if o.failed {
        if b.error_rate.is_some() {
            return Err(Trigger::ErrorRate);
        }
        if b.consecutive_failures.is_some() {
            return Err(Trigger::ConsecutiveFailures);
        }
    }
    Ok(())
}

/// Judges one half-open probe on its own: the flag, a failure (when a failure trigger is
/// on), a latency above the mean threshold, or a box count outside the baseline band.
pub fn judge_probe(b: &Breach, o: &Observation, baseline: Option<Baseline>) -> Result<(), Trigger> {
    judge_outright(b, o)?;
    if let (Some(t), Some(ms)) = (&b.latency, o.latency_ms)
        && t.max_mean_ms.is_some_and(|max| ms > max)
    {
        return Err(Trigger::Latency);
    }
    if let (Some(t), Some(n), Some(base)) = (&b.box_count, o.boxes, baseline)
        && base.outside(t, n)
    {
        return Err(Trigger::BoxCount);
    }
    Ok(())
}

/// Judges one half-open probe of the sequential detector on its own: the flag, a failure
/// (when a failure trigger is on), a latency above the ceiling or beyond the control's
/// mean × `max_ratio` + 3 sd, or a box count outside the control's mean × (1 ± `max_shift`)
/// ∓ 3 sd. `control` is the running control the unit is judged against (none: only the
/// flag, failures and the ceiling judge). Agreement is not judged on a probe.
pub fn judge_probe_against(
    b: &Breach,
    o: &Observation,
    control: Option<&Tally>,
) -> Result<(), Trigger> {
    judge_outright(b, o)?;
    if let (Some(t), Some(ms)) = (&b.latency, o.latency_ms) {
        let ceiling = t.max_mean_ms.unwrap_or(f64::INFINITY);
        let band = control
            .and_then(|c| Some(c.latency.mean()? * t.max_ratio + 3.0 * c.latency.var().sqrt()))
            .unwrap_or(f64::INFINITY);
        if ms > ceiling || ms > band {
            return Err(Trigger::Latency);
        }
    }
    if let (Some(t), Some(n), Some(c)) = (&b.box_count, o.boxes, control)
        && let Some(mean) = c.boxes.mean()
    {
        let sd3 = 3.0 * c.boxes.var().sqrt();
        let lo = mean * (1.0 - t.max_shift).max(0.0) - sd3;
        let hi = mean * (1.0 + t.max_shift) + sd3;
        if n < lo || n > hi {
            return Err(Trigger::BoxCount);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;
    use crate::detect::window::breach::tests::breach;

    #[test]
    fn probes_are_judged_alone() {
        let b = breach();
        let base = Some(Baseline {
            mean: 5.0,
            std: 1.0,
            samples: 50,
            held: false,
        });
        let ok = Observation {
            latency_ms: Some(20.0),
            boxes: Some(6.0),
            ..Default::default()
        };
        let cases = [
            (ok, Ok(())),
            (
                Observation {
                    flagged: true,
                    ..ok
                },
                Err(Trigger::Flag),
            ),
            (Observation { failed: true, ..ok }, Err(Trigger::ErrorRate)),
            (
                Observation {
                    latency_ms: Some(101.0),
                    ..ok
                },
                Err(Trigger::Latency),
            ),
            (
                Observation {
                    boxes: Some(9.0),
                    ..ok
                },
                Err(Trigger::BoxCount),
            ),
            (
                Observation {
                    boxes: Some(8.0),
                    ..ok
                },
                Ok(()),
            ),
        ];
        for (o, want) in cases {
            assert_eq!(judge_probe(&b, &o, base), want, "{o:?}");
        }
        assert_eq!(
            judge_probe(
                &b,
                &Observation {
                    boxes: Some(90.0),
                    ..ok
                },
                None
            ),
            Ok(())
        );
        let only_flag = parse(br#"{"stable":"s","gray":"g","rules":[]}"#)
            .unwrap()
            .breach;
        assert_eq!(
            judge_probe(&only_flag, &Observation { failed: true, ..ok }, None),
            Ok(())
        );
    }

    #[test]
    fn sequential_probes_are_judged_against_the_control() {
        let b = breach();
        let mut control = Tally::default();
        for (lat, boxes) in [(40.0, 4.0), (50.0, 5.0), (60.0, 6.0)] {
            control.observe(&Observation {
                latency_ms: Some(lat),
                boxes: Some(boxes),
                ..Default::default()
            });
        }
        let probe = |lat: f64, boxes: f64| Observation {
            latency_ms: Some(lat),
            boxes: Some(boxes),
            ..Default::default()
        };
        // Latency: above the ceiling (100 ms) or above 1.25 × 50 + 3 × 10 = 92.5 ms.
        assert_eq!(
            judge_probe_against(&b, &probe(90.0, 5.0), Some(&control)),
            Ok(())
        );
        assert_eq!(
            judge_probe_against(&b, &probe(95.0, 5.0), Some(&control)),
            Err(Trigger::Latency)
        );
        // Boxes: within 5 × (1 ± 0.25) ∓ 3 × 1, i.e. [0.75, 9.25].
        assert_eq!(
            judge_probe_against(&b, &probe(50.0, 9.0), Some(&control)),
            Ok(())
        );
        assert_eq!(
            judge_probe_against(&b, &probe(50.0, 10.0), Some(&control)),
            Err(Trigger::BoxCount)
        );
        // Without a control only the flag, failures and the ceiling judge.
        assert_eq!(judge_probe_against(&b, &probe(95.0, 90.0), None), Ok(()));
        assert_eq!(
            judge_probe_against(&b, &probe(101.0, 5.0), None),
            Err(Trigger::Latency)
        );
        let failed = Observation {
            failed: true,
            ..Default::default()
        };
        assert_eq!(
            judge_probe_against(&b, &failed, None),
            Err(Trigger::ErrorRate)
        );
    }
}
