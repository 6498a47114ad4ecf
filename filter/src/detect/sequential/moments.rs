//! Counts, sums and sums of squares of the signals: what each side of a comparison saw, in
//! a form that merges exactly across workers (adding two tallies is observing both
//! streams) and decays for a running reference.

/// Count, sum and sum of squares of one signal.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Moments {
    pub n: f64,
    pub sum: f64,
    pub sumsq: f64,
}

impl Moments {
    pub fn add(&mut self, x: f64) {
        self.n += 1.0;
        self.sum += x;
        self.sumsq += x * x;
    }

    pub fn merge(&mut self, o: &Moments) {
        self.n += o.n;
        self.sum += o.sum;
        self.sumsq += o.sumsq;
    }

    /// Every part multiplied by `k` (an exponentially weighted tally forgets this way).
    pub fn scale(&mut self, k: f64) {
        self.n *= k;
        self.sum *= k;
        self.sumsq *= k;
    }

    pub fn mean(&self) -> Option<f64> {
        (self.n > 0.0).then(|| self.sum / self.n)
    }

    /// Sample variance (0 below two samples).
    pub fn var(&self) -> f64 {
        if self.n < 2.0 {
            return 0.0;
        }
        let m = self.sum / self.n;
        ((self.sumsq - self.n * m * m) / (self.n - 1.0)).max(0.0)
    }
}

/// Failures among responses: a Bernoulli tally.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Rate {
    pub n: f64,
    pub failures: f64,
}

impl Rate {
    pub fn merge(&mut self, o: &Rate) {
        self.n += o.n;
        self.failures += o.failures;
    }

    pub fn scale(&mut self, k: f64) {
        self.n *= k;
        self.failures *= k;
    }

    pub fn share(&self) -> Option<f64> {
        (self.n > 0.0).then(|| self.failures / self.n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moments_merge_like_one_stream_and_scale_keeps_the_mean() {
        let (mut a, mut b, mut all) = (Moments::default(), Moments::default(), Moments::default());
        for x in [1.0, 2.0, 4.0] {
            a.add(x);
            all.add(x);
        }
        for x in [8.0, 16.0] {
            b.add(x);
            all.add(x);
        }
        a.merge(&b);
        assert_eq!(a, all);
        let mean = all.mean();
        all.scale(0.5);
        assert_eq!(all.mean(), mean);
        assert_eq!(Moments::default().mean(), None);
        assert_eq!(
            Rate {
                n: 4.0,
                failures: 1.0
            }
            .share(),
            Some(0.25)
        );
    }
}
