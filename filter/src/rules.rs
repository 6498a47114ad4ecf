//! Rule matching (first match wins) and the sticky / per-request share of gray traffic.

use crate::config::{BUCKETS, Rule};
use crate::rand::{Rng, mix64};

/// The index of the first rule whose headers and hours match, if any. `header(name)` looks
/// a (lower-case) request header up; `minute()` gives the local minute of the day, asked
/// only when a rule with hours is reached (so a configuration without hours never reads
/// the clock for it).
pub fn first_match<'a>(
    rules: &[Rule],
    header: impl Fn(&str) -> Option<&'a str>,
    mut minute: impl FnMut() -> u16,
) -> Option<usize> {
    rules.iter().position(|r| {
        r.headers
            .iter()
            .all(|(name, m)| header(name).is_some_and(|v| m.matches(v)))
            && r.hours.is_none_or(|w| w.contains(minute()))
    })
}

/// 64-bit FNV-1a, finished with a splitmix64 mix so that similar ids (`cam-0001`,
/// `cam-0002`) spread evenly over the buckets. Stable across builds, platforms and Envoy
/// restarts (unlike std's randomly seeded hasher).
pub fn sticky_hash(value: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in value {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix64(h)
}

/// The bucket (0..10,000) of a sticky key: the same key always lands in the same bucket.
pub fn sticky_bucket(value: &[u8]) -> u32 {
    (sticky_hash(value) % u64::from(BUCKETS)) as u32
}

/// Whether a request in `bucket` is inside a share of `share_bp` basis points. Buckets are
/// compared, not re-drawn, so raising the share only ever adds devices.
pub fn in_share(bucket: u32, share_bp: u32) -> bool {
    bucket < share_bp
}

/// A VM's per-request draws (a share without a sticky key, a probe) and worker ids, from
/// the filter's one generator; not for secrets.
#[derive(Debug, Clone)]
pub struct Draw(Rng);

impl Draw {
    /// Seeds from anything that differs between VMs and starts (e.g. clock ns ^ context id),
    /// mixed first so that nearby seeds start far apart.
    pub fn new(seed: u64) -> Draw {
        Draw(Rng::new(mix64(seed)))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// A bucket in 0..10,000.
    pub fn bucket(&mut self) -> u32 {
        ((self.next_u64() >> 32) % u64::from(BUCKETS)) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Matcher, parse};

    fn lookup<'a>(hs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<&'a str> {
        move |name| hs.iter().find(|(k, _)| *k == name).map(|(_, v)| *v)
    }

    #[test]
    fn first_match_order_headers_and_hours() {
        let cfg = parse(
            br#"{"stable":"s","gray":"g","rules":[
              {"name":"night-cranes","headers":{"x-device-type":{"exact":"crane-camera"}},
               "hours":{"from":"22:00","to":"02:00"}},
              {"name":"cranes","headers":{"x-device-type":{"prefix":"crane-"}}},
              {"name":"gates","headers":{"x-device-type":{"regex":"gate-[0-9]+"},
                                         "x-site":{"exact":"north"}}},
              {"name":"catch-all"}
            ]}"#,
        )
        .unwrap();
        type Case<'a> = (&'a [(&'a str, &'a str)], u16, Option<&'a str>);
        let cases: [Case; 9] = [
            (
                &[("x-device-type", "crane-camera")],
                23 * 60,
                Some("night-cranes"),
            ),
            (
                &[("x-device-type", "crane-camera")],
                60,
                Some("night-cranes"),
            ),
            (
                &[("x-device-type", "crane-camera")],
                12 * 60,
                Some("cranes"),
            ),
            (&[("x-device-type", "crane-lidar")], 23 * 60, Some("cranes")),
            (
                &[("x-device-type", "gate-12"), ("x-site", "north")],
                0,
                Some("gates"),
            ),
            (
                &[("x-device-type", "gate-12"), ("x-site", "south")],
                0,
                Some("catch-all"),
            ),
            (
                &[("x-device-type", "gate-12x"), ("x-site", "north")],
                0,
                Some("catch-all"),
            ),
            (&[("x-site", "north")], 0, Some("catch-all")),
            (&[], 0, Some("catch-all")),
        ];
        for (hs, minute, want) in cases {
            let got =
                first_match(&cfg.rules, lookup(hs), || minute).map(|i| cfg.rules[i].name.as_str());
            assert_eq!(got, want, "{hs:?} at {minute}");
        }
        let only_cranes = &cfg.rules[..2];
        assert_eq!(
            first_match(only_cranes, lookup(&[("x-device-type", "forklift")]), || 0),
            None
        );
        assert!(matches!(cfg.rules[1].headers[0].1, Matcher::Prefix(_)));
    }

    /// A device's bucket must never change between releases (devices would switch sides).
    const PINNED: u32 = 7550;

    #[test]
    fn sticky_is_stable_and_within_two_points_over_10000_ids() {
        assert_eq!(sticky_bucket(b"cam-0001"), sticky_bucket(b"cam-0001"));
        // A fixed value: the hash must never change between releases (devices would move).
        assert_eq!(sticky_bucket(b"crane-7"), PINNED);
        assert_eq!(sticky_bucket(b""), sticky_bucket(b""));
        for percent in [1u32, 5, 10, 25, 50, 75, 90, 99] {
            let share = percent * 100;
            let n = 10_000;
            let inside = (0..n)
                .filter(|i| in_share(sticky_bucket(format!("cam-{i:05}").as_bytes()), share))
                .count();
            let got = inside as f64 * 100.0 / n as f64;
            assert!(
                (got - f64::from(percent)).abs() <= 2.0,
                "{percent}% asked, {got:.2}% got"
            );
        }
        // Raising the share keeps everyone who was already in.
        let ids: Vec<u32> = (0..1000)
            .map(|i| sticky_bucket(format!("d{i}").as_bytes()))
            .collect();
        for &b in &ids {
            if in_share(b, 1000) {
                assert!(in_share(b, 2000));
            }
        }
        assert!(!in_share(0, 0));
        assert!(in_share(9_999, 10_000));
    }

    #[test]
    fn draw_covers_the_range_evenly() {
        let mut d = Draw::new(42);
        let n = 100_000;
        let mut low = 0;
        for _ in 0..n {
            let b = d.bucket();
            assert!(b < BUCKETS);
            if b < 1_000 {
                low += 1;
            }
        }
        let share = f64::from(low) / f64::from(n);
        assert!((share - 0.1).abs() < 0.01, "{share}");
        let mut a = Draw::new(1);
        let mut b = Draw::new(2);
        assert_ne!(
            (0..4).map(|_| a.bucket()).collect::<Vec<_>>(),
            (0..4).map(|_| b.bucket()).collect::<Vec<_>>()
        );
    }
}
