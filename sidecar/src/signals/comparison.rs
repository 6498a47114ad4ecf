//! What can happen to a frame after a successful gray reply: the [`Sampler`] draws whether it
//! is compared with stable (`--compare-percent`; not drawn is not a skip); a drawn frame may
//! be [`Skip`]ped, before anything is sent, to shed the comparison's load; a comparison sent
//! may [`Fail`] and give no agreement. Each reason is a metric label.

/// Why a drawn frame was not compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// Requests were waiting for this sidecar's own model: comparisons yield to them.
    Busy,
    /// `--compare-max-inflight` comparisons were already waiting for stable.
    MaxInflight,
}

impl Skip {
    pub const ALL: [Skip; 2] = [Skip::Busy, Skip::MaxInflight];

    /// The `comparison_skips_total{reason}` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Skip::Busy => "busy",
            Skip::MaxInflight => "max_inflight",
        }
    }
}

/// Why a comparison gave no agreement. None of them is a sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fail {
    /// No connection to stable, or it broke before a reply came.
    Unreachable,
    /// No whole reply within `--compare-timeout-ms`.
    Timeout,
    /// Stable answered, but not 2xx (a full queue, not ready, a wrong path).
    BadStatus,
    /// A 2xx reply whose body was over `--compare-max-reply-bytes` or not stable's boxes.
    BadReply,
}

impl Fail {
    pub const ALL: [Fail; 4] = [
        Fail::Unreachable,
        Fail::Timeout,
        Fail::BadStatus,
        Fail::BadReply,
    ];

    /// The `comparison_failures_total{reason}` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Fail::Unreachable => "unreachable",
            Fail::Timeout => "timeout",
            Fail::BadStatus => "bad_status",
            Fail::BadReply => "bad_reply",
        }
    }
}

/// Draws, reply by reply, whether the frame is compared: independently with probability
/// `percent` / 100, so that no pattern in the traffic (cameras taking turns) decides which
/// frames are.
#[derive(Debug)]
pub struct Sampler {
    /// Parts per million drawn.
    ppm: u32,
    rng: fastrand::Rng,
}

impl Sampler {
    /// `percent` in [0, 100] (clamped), drawn from a randomly seeded generator.
    pub fn new(percent: f64) -> Sampler {
        Sampler::with_rng(percent, fastrand::Rng::new())
    }

    /// The same, from `rng` (tests seed it).
    pub fn with_rng(percent: f64, rng: fastrand::Rng) -> Sampler {
        let ppm = (percent.clamp(0.0, 100.0) * 10_000.0).round() as u32;
        Sampler { ppm, rng }
    }

    /// Whether this frame is compared.
    pub fn draw(&mut self) -> bool {
        match self.ppm {
            0 => false,
            1_000_000 => true,
            ppm => self.rng.u32(0..1_000_000) < ppm,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drawn(percent: f64, seed: u64, n: usize) -> usize {
        let mut s = Sampler::with_rng(percent, fastrand::Rng::with_seed(seed));
        (0..n).filter(|_| s.draw()).count()
    }

    #[test]
    fn none_all_and_a_share_in_between() {
        assert_eq!(drawn(0.0, 1, 10_000), 0);
        assert_eq!(drawn(100.0, 1, 10_000), 10_000);
        // 25 % of 40,000 independent draws: 10,000 ± 87 (one standard deviation); the bounds
        // are six of them, for each of three seeds.
        for seed in [1, 2, 3] {
            let n = drawn(25.0, seed, 40_000);
            assert!((9_480..=10_520).contains(&n), "seed {seed}: {n}");
        }
        // A tiny share is still drawn sometimes, and not often.
        let n = drawn(0.1, 7, 100_000);
        assert!((40..=160).contains(&n), "{n}");
    }

    #[test]
    fn draws_do_not_follow_the_order_of_the_traffic() {
        // Four cameras taking turns at 25 %: each camera's frames are drawn, not always the
        // same camera's (as a counter of every fourth reply would do).
        let mut s = Sampler::with_rng(25.0, fastrand::Rng::with_seed(9));
        let mut per_camera = [0; 4];
        for i in 0..4_000 {
            if s.draw() {
                per_camera[i % 4] += 1;
            }
        }
        assert!(
            per_camera.iter().all(|&n| (150..=350).contains(&n)),
            "{per_camera:?}"
        );
    }

    #[test]
    fn labels() {
        let skips: Vec<_> = Skip::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(skips, ["busy", "max_inflight"]);
        let fails: Vec<_> = Fail::ALL.iter().map(|f| f.as_str()).collect();
        assert_eq!(fails, ["unreachable", "timeout", "bad_status", "bad_reply"]);
    }
}
