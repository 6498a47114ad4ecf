//! The filter's one deterministic generator, splitmix64 (Steele, Lea and Flood, "Fast
//! splittable pseudorandom number generators", OOPSLA 2014): the per-request draws of a
//! share and a probe (`rules::Draw`), the worker ids, the simulator's synthetic streams
//! (`simulate`) and the statistical unit tests all draw from it. Not for secrets.

/// splitmix64's finaliser: a bijective mix of 64 bits (also the sticky hash's last step).
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A splitmix64 stream: the same seed gives the same numbers on every platform and build.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix64(self.0)
    }

    /// Uniform in (0, 1).
    pub fn unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let (u, v) = (self.unit(), self.unit());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }

    /// Binomial(`n`, `p`), by `n` Bernoulli draws.
    pub fn binomial(&mut self, n: u32, p: f64) -> f64 {
        (0..n).filter(|_| self.unit() < p).count() as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The published splitmix64 sequence for seed 0: streams (and with them the simulator's
    /// figures and the pinned sticky buckets) must never change between builds.
    #[test]
    fn the_stream_is_splitmix64() {
        let mut r = Rng::new(0);
        assert_eq!(r.next_u64(), 0xe220_a839_7b1d_cdaf);
        assert_eq!(r.next_u64(), 0x6e78_9e6a_a1b9_65f4);
        assert_eq!(r.next_u64(), 0x06c4_5d18_8009_454f);
    }

    #[test]
    fn units_stay_inside_the_open_interval_and_normals_are_centred() {
        let mut r = Rng::new(7);
        let n = 20_000;
        let mut sum = 0.0;
        for _ in 0..n {
            let u = r.unit();
            assert!(u > 0.0 && u < 1.0);
            sum += r.normal();
        }
        assert!((sum / f64::from(n)).abs() < 0.05);
        let b = r.binomial(25, 0.2);
        assert!((0.0..=25.0).contains(&b) && b.fract() == 0.0);
    }
}
