//! The traffic mix: device cohorts (`x-device-type` plus a pool of sticky `x-device-id`s),
//! each with a weight, picked in a smooth weighted round robin so the mix holds in every
//! second, not only on average.

use std::fmt;

/// Most devices one cohort may have (each becomes a distinct sticky key).
pub const MAX_DEVICES: u32 = 10_000;
/// Largest weight of one cohort.
pub const MAX_WEIGHT: u32 = 1_000;

/// One cohort: `TYPE[:DEVICES[:WEIGHT]]`, e.g. `crane-camera:4:1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cohort {
    /// Value of `x-device-type`.
    pub device_type: String,
    /// Number of distinct `x-device-id`s, sent in turn.
    pub devices: u32,
    /// Relative share of the traffic.
    pub weight: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CohortError(String);

impl fmt::Display for CohortError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "--cohort: {}", self.0)
    }
}

impl std::error::Error for CohortError {}

impl Cohort {
    pub fn parse(spec: &str) -> Result<Cohort, CohortError> {
        let mut parts = spec.split(':');
        let device_type = parts.next().unwrap_or_default().trim();
        let valid_type = !device_type.is_empty()
            && device_type
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !valid_type {
            return Err(CohortError(format!(
                "{spec:?}: the device type must be non-empty letters, digits, `-`, `_` or `.`"
            )));
        }
        let number = |what: &str, max: u32, default: u32, part: Option<&str>| match part {
            None => Ok(default),
            Some(p) => match p.trim().parse::<u32>() {
                Ok(n) if (1..=max).contains(&n) => Ok(n),
                _ => Err(CohortError(format!(
                    "{spec:?}: {what} must be an integer in 1..={max}, got {p:?}"
                ))),
            },
        };
        let devices = number("DEVICES", MAX_DEVICES, 4, parts.next())?;
        let weight = number("WEIGHT", MAX_WEIGHT, 1, parts.next())?;
        if parts.next().is_some() {
            return Err(CohortError(format!(
                "{spec:?}: expected TYPE[:DEVICES[:WEIGHT]]"
            )));
        }
        Ok(Cohort {
            device_type: device_type.to_string(),
            devices,
            weight,
        })
    }

    /// The sticky id of device `n` of this cohort.
    pub fn device_id(&self, n: u32) -> String {
        format!("{}-{:03}", self.device_type, n % self.devices)
    }
}

/// Picks cohorts in proportion to their weights (smooth weighted round robin) and rotates
/// through each cohort's devices.
#[derive(Debug, Clone)]
pub struct Mix {
    cohorts: Vec<Cohort>,
    current: Vec<i64>,
    next_device: Vec<u32>,
}

impl Mix {
    /// The mix of the `--cohort` flags, in order (at least one).
    pub fn parse(specs: &[String]) -> Result<Mix, CohortError> {
        let cohorts = specs
            .iter()
            .map(|c| Cohort::parse(c))
            .collect::<Result<Vec<_>, _>>()?;
        Mix::new(cohorts).ok_or_else(|| CohortError("give at least one cohort".into()))
    }

    /// `cohorts` must not be empty.
    pub fn new(cohorts: Vec<Cohort>) -> Option<Mix> {
        if cohorts.is_empty() {
            return None;
        }
        let n = cohorts.len();
        Some(Mix {
            cohorts,
            current: vec![0; n],
            next_device: vec![0; n],
        })
    }

    pub fn cohorts(&self) -> &[Cohort] {
        &self.cohorts
    }

    /// The next request's cohort index and device id.
    pub fn next_device(&mut self) -> (usize, String) {
        let total: i64 = self.cohorts.iter().map(|c| i64::from(c.weight)).sum();
        for (cur, c) in self.current.iter_mut().zip(&self.cohorts) {
            *cur += i64::from(c.weight);
        }
        let (best, _) = self
            .current
            .iter()
            .enumerate()
            .max_by_key(|&(i, &w)| (w, std::cmp::Reverse(i)))
            .unwrap_or((0, &0));
        self.current[best] -= total;
        let n = self.next_device[best];
        self.next_device[best] = (n + 1) % self.cohorts[best].devices;
        (best, self.cohorts[best].device_id(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_specs_with_defaults() {
        assert_eq!(
            Cohort::parse("crane-camera").unwrap(),
            Cohort {
                device_type: "crane-camera".into(),
                devices: 4,
                weight: 1
            }
        );
        let c = Cohort::parse("gate_cam.v2:12:3").unwrap();
        assert_eq!((c.devices, c.weight), (12, 3));
        assert_eq!(c.device_id(13), "gate_cam.v2-001");
    }

    #[test]
    fn rejects_bad_specs_naming_the_part() {
        for bad in [
            "",
            ":3",
            "a b",
            "cam:0",
            "cam:x",
            "cam:2:0",
            "cam:2:1:9",
            "cam:99999",
        ] {
            let e = Cohort::parse(bad).unwrap_err().to_string();
            assert!(e.starts_with("--cohort:"), "{bad}: {e}");
        }
        assert!(
            Cohort::parse("cam:2:0")
                .unwrap_err()
                .to_string()
                .contains("WEIGHT")
        );
    }

    #[test]
    fn round_robin_keeps_the_weights_in_every_window() {
        let mut mix = Mix::new(vec![
            Cohort::parse("a:2:1").unwrap(),
            Cohort::parse("b:3:3").unwrap(),
        ])
        .unwrap();
        let picks: Vec<(usize, String)> = (0..8).map(|_| mix.next_device()).collect();
        // Every 4 consecutive picks hold exactly one `a`.
        for w in picks.chunks(4) {
            assert_eq!(w.iter().filter(|(i, _)| *i == 0).count(), 1, "{picks:?}");
        }
        let a_ids: Vec<&str> = picks
            .iter()
            .filter(|(i, _)| *i == 0)
            .map(|(_, d)| d.as_str())
            .collect();
        assert_eq!(a_ids, vec!["a-000", "a-001"]);
        let b_ids: Vec<&str> = picks
            .iter()
            .filter(|(i, _)| *i == 1)
            .map(|(_, d)| d.as_str())
            .take(4)
            .collect();
        assert_eq!(b_ids, vec!["b-000", "b-001", "b-002", "b-000"]);
    }

    #[test]
    fn empty_mix_is_refused() {
        assert!(Mix::new(vec![]).is_none());
        assert_eq!(
            Mix::parse(&[]).unwrap_err().to_string(),
            "--cohort: give at least one cohort"
        );
    }

    #[test]
    fn parses_the_flags_in_order_and_names_the_bad_one() {
        let specs = ["a:2:1".to_string(), "b".to_string()];
        let mix = Mix::parse(&specs).unwrap();
        let types: Vec<&str> = mix
            .cohorts()
            .iter()
            .map(|c| c.device_type.as_str())
            .collect();
        assert_eq!(types, ["a", "b"]);
        let e = Mix::parse(&["a".to_string(), "b c".to_string()]).unwrap_err();
        assert!(e.to_string().contains("\"b c\""), "{e}");
    }
}
