//! Anytime-valid sequential tests: the arithmetic behind the sequential detector.
//!
//! Every statistical trigger reduces to one question about a difference of means `D`
//! ("gray minus what is acceptable", positive when gray is worse than the margin allows),
//! estimated by `d` with estimated variance `v` from cumulative sums. Under the null
//! hypothesis `D ≤ 0`, the standardised statistic `z = d / √v` after `t` gray responses
//! behaves like a normalised random walk, and the half-normal mixture over a drift `θ ≥ 0`
//!
//! ```text
//! M_t = ∫₀^∞ exp(θ·S_t − θ²·I_t/2) · 2·φ(θ; 0, τ²) dθ
//!     = 2/√(1+g) · Φ(z·√(g/(1+g))) · exp(z²·g / (2(1+g))),     g = τ²·I_t = ρ²·t
//! ```
//!
//! is a nonnegative supermartingale with `M_0 = 1` (Robbins' normal mixture, made one-sided).
//! By Ville's inequality `P(∃t: M_t ≥ 1/α) ≤ α`: a test that rejects the first time
//! `M_t ≥ 1/α` is wrong with probability at most `α`, however long and however often it is
//! looked at. With the variance estimated from the data (a plug-in) the guarantee is the
//! asymptotic one of Waudby-Smith, Arnold, Wu, Wang and Ramdas, "Time-uniform central limit
//! theory and asymptotic confidence sequences" (Annals of Statistics, 2024); `min_samples`
//! and the variance floors keep the small-sample regime out, and the simulator
//! (`make bench-detect`) and the unit tests check the error rate where asymptotics could
//! fail (small counts, heavy tails).
//!
//! `ρ` (the mixture's spread in units of one observation's standard deviation) only moves
//! where the test is most sensitive: a test tuned for `t*` samples has
//! `ρ² = (2·ln(1/α) + ln(1 + 2·ln(1/α))) / t*`.

use std::f64::consts::{LN_2, PI};

/// `ln Φ(x)` for the standard normal CDF, accurate in both tails.
pub fn ln_phi(x: f64) -> f64 {
    if x.is_nan() {
        return f64::NAN;
    }
    if x < -30.0 {
        // Mills-ratio expansion: Φ(x) = φ(x)/|x| · (1 − 1/x² + 3/x⁴ − …).
        let x2 = x * x;
        return -x2 / 2.0 - (-x).ln() - 0.5 * (2.0 * PI).ln()
            + (1.0 - 1.0 / x2 + 3.0 / (x2 * x2)).ln();
    }
    (0.5 * libm::erfc(-x / std::f64::consts::SQRT_2)).ln()
}

/// `ρ²` for a mixture most sensitive after about `t_star` observations at level `alpha`.
pub fn rho2_for(t_star: f64, alpha: f64) -> f64 {
    let l = 2.0 * (1.0 / alpha).ln();
    (l + (1.0 + l).ln()) / t_star.max(1.0)
}

/// `ln M_t` of the one-sided normal mixture for the standardised statistic `z` after `t`
/// observations (see the module docs). 0 before the first observation; never NaN.
pub fn log_e_value(z: f64, t: f64, rho2: f64) -> f64 {
    let g = rho2 * t;
    if !(g > 0.0 && g.is_finite()) || z.is_nan() {
        return 0.0;
    }
    if z == f64::INFINITY {
        return f64::INFINITY;
    }
    if z == f64::NEG_INFINITY {
        return f64::NEG_INFINITY;
    }
    let k = g / (1.0 + g);
    LN_2 - 0.5 * (1.0 + g).ln() + ln_phi(z * k.sqrt()) + z * z * k / 2.0
}

/// Half-width, in units of `√v`, of the two-sided normal-mixture confidence sequence at level
/// `alpha` after `t` observations: `|d − D| ≤ width · √v` holds at every `t` at once with
/// probability at least `1 − alpha` (asymptotically, as above).
pub fn cs_width(t: f64, rho2: f64, alpha: f64) -> f64 {
    let g = rho2 * t;
    if !(g > 0.0 && g.is_finite()) {
        return f64::INFINITY;
    }
    ((1.0 + g) / g * (2.0 * (1.0 / alpha).ln() + (1.0 + g).ln())).sqrt()
}

/// Count, sum and sum of squares of one signal: all a test needs, and what merges exactly
/// across workers (adding two tallies is observing both streams).
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

    pub fn mean(&self) -> Option<f64> {
        (self.n > 0.0).then(|| self.sum / self.n)
    }

    /// Unbiased sample variance (0 below two samples).
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

    pub fn share(&self) -> Option<f64> {
        (self.n > 0.0).then(|| self.failures / self.n)
    }
}

/// A difference `d` (positive: gray worse than the margin allows) with its estimated
/// variance `v` after `t` gray observations.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Contrast {
    pub d: f64,
    pub v: f64,
    pub t: f64,
}

/// Smallest per-observation standard deviation assumed, relative to the larger mean: keeps
/// a perfectly constant signal (a scripted upstream, a saturated counter) from producing
/// infinite evidence out of one tiny difference.
pub const REL_SD_FLOOR: f64 = 0.01;

/// Anscombe's share `(f + 3/8)/(n + 3/4)`, whose arcsine has variance `1/(4n + 3)`.
fn anscombe(r: &Rate) -> Option<f64> {
    (r.n > 0.0).then(|| (r.failures + 0.375) / (r.n + 0.75))
}

fn asin_sqrt(p: f64) -> f64 {
    p.clamp(0.0, 1.0).sqrt().asin()
}

fn floored(var: f64, scale: f64) -> f64 {
    var.max((REL_SD_FLOOR * scale).powi(2))
        .max(f64::MIN_POSITIVE)
}

impl Contrast {
    /// Gray mean above a fixed ceiling: `d = x̄_g − ceiling`.
    pub fn above(gray: &Moments, ceiling: f64) -> Option<Contrast> {
        let mg = gray.mean()?;
        let var = floored(gray.var(), mg.abs().max(ceiling.abs()));
        Some(Contrast {
            d: mg - ceiling,
            v: var / gray.n,
            t: gray.n,
        })
    }

    /// Gray mean above `factor` times the control's: `d = x̄_g − factor·x̄_c`.
    pub fn ratio_above(gray: &Moments, control: &Moments, factor: f64) -> Option<Contrast> {
        let (mg, mc) = (gray.mean()?, control.mean()?);
        let scale = mg.abs().max(mc.abs());
        Some(Contrast {
            d: mg - factor * mc,
            v: floored(gray.var(), scale) / gray.n
                + factor * factor * floored(control.var(), scale) / control.n,
            t: gray.n,
        })
    }

    /// Gray mean below `factor` times the control's: `d = factor·x̄_c − x̄_g`.
    pub fn ratio_below(gray: &Moments, control: &Moments, factor: f64) -> Option<Contrast> {
        let c = Contrast::ratio_above(gray, control, factor)?;
        Some(Contrast { d: -c.d, ..c })
    }

    /// Gray mean below a fixed reference times `factor` (no control: a configured baseline).
    pub fn below(gray: &Moments, floor: f64) -> Option<Contrast> {
        let c = Contrast::above(gray, floor)?;
        Some(Contrast { d: -c.d, ..c })
    }

    /// Gray failure share above the control's plus `excess`, on the arcsine scale: the
    /// binomial share is strongly skewed at the small failure rates that matter (its upper
    /// tail is far heavier than a normal one), and `asin(√p)` both stabilises its variance
    /// (`1/(4n)` whatever `p`) and removes most of that skew. Shares get Anscombe's
    /// `(f + 3/8)/(n + 3/4)` so that a clean start is not read as a certain zero.
    pub fn rate_excess(gray: &Rate, control: &Rate, excess: f64) -> Option<Contrast> {
        gray.share()?;
        let pc = anscombe(control)?;
        let q = (pc + excess).min(1.0);
        // d(asin √x)/dx at q carries the control's uncertainty onto the arcsine scale.
        let slope2 = 1.0 / (4.0 * (q * (1.0 - q)).max(1e-9));
        Some(Contrast {
            d: asin_sqrt(anscombe(gray)?) - asin_sqrt(q),
            v: 1.0 / (4.0 * gray.n + 3.0) + slope2 * pc * (1.0 - pc) / control.n,
            t: gray.n,
        })
    }

    /// Gray failure share above a fixed ceiling, on the arcsine scale.
    pub fn rate_above(gray: &Rate, ceiling: f64) -> Option<Contrast> {
        gray.share()?;
        Some(Contrast {
            d: asin_sqrt(anscombe(gray)?) - asin_sqrt(ceiling),
            v: 1.0 / (4.0 * gray.n + 3.0),
            t: gray.n,
        })
    }

    /// The standardised statistic.
    pub fn z(&self) -> f64 {
        if self.v > 0.0 {
            self.d / self.v.sqrt()
        } else if self.d > 0.0 {
            f64::INFINITY
        } else {
            0.0
        }
    }

    /// `ln M_t` against `D ≤ 0` with mixture spread `rho2`.
    pub fn log_e(&self, rho2: f64) -> f64 {
        log_e_value(self.z(), self.t, rho2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rand::Rng;

    #[test]
    fn ln_phi_matches_known_values_in_both_tails() {
        let cases = [
            (0.0, 0.5f64.ln()),
            (1.959_963_985, 0.975f64.ln()),
            (-1.959_963_985, 0.025f64.ln()),
            (-10.0, -53.231_285_5),
            (-40.0, -804.608_442),
            (8.0, -6.22e-16),
        ];
        for (x, want) in cases {
            let got = ln_phi(x);
            assert!(
                (got - want).abs() <= 1e-6 * want.abs().max(1e-9),
                "ln Φ({x}) = {got}, want {want}"
            );
        }
        // Continuous across the switch to the expansion.
        assert!((ln_phi(-30.0 - 1e-9) - ln_phi(-30.0 + 1e-9)).abs() < 1e-6);
    }

    #[test]
    fn e_value_is_one_at_the_start_and_grows_with_the_evidence() {
        let rho2 = rho2_for(100.0, 0.01);
        assert_eq!(log_e_value(3.0, 0.0, rho2), 0.0);
        assert!(log_e_value(0.0, 100.0, rho2) < 0.0, "no evidence: below 1");
        let weak = log_e_value(2.0, 100.0, rho2);
        let strong = log_e_value(5.0, 100.0, rho2);
        assert!(strong > weak && strong > (100.0f64).ln());
        assert!(log_e_value(-50.0, 100.0, rho2).is_finite());
        assert!(log_e_value(-50.0, 100.0, rho2) < 0.0);
        assert_eq!(log_e_value(f64::NAN, 10.0, rho2), 0.0);
    }

    /// Ville's inequality in action: Gaussian random walks with zero drift, watched after
    /// every step for 2,000 steps, cross `1/α` in at most about `α` of the runs.
    #[test]
    fn continuous_monitoring_keeps_the_error_rate() {
        let alpha = 0.05;
        let rho2 = rho2_for(200.0, alpha);
        let mut rng = Rng::new(7);
        let runs = 2_000;
        let mut crossed = 0;
        for _ in 0..runs {
            let mut m = Moments::default();
            for _ in 0..2_000 {
                m.add(rng.normal());
                let c = Contrast::above(&m, 0.0).unwrap_or(Contrast {
                    d: 0.0,
                    v: 1.0,
                    t: 0.0,
                });
                if m.n >= 10.0 && c.log_e(rho2) >= (1.0 / alpha).ln() {
                    crossed += 1;
                    break;
                }
            }
        }
        let share = f64::from(crossed) / f64::from(runs);
        assert!(share <= alpha, "false alarms {share} > {alpha}");
    }

    #[test]
    fn confidence_sequence_narrows_like_a_slowly_inflated_clt() {
        let rho2 = rho2_for(100.0, 0.01);
        let w100 = cs_width(100.0, rho2, 0.01);
        let w10k = cs_width(10_000.0, rho2, 0.01);
        assert!(w100 > 2.576 && w100 < 5.0, "{w100}");
        assert!(w10k > w100 * 0.9, "grows like √log t: {w10k}");
        assert_eq!(cs_width(0.0, rho2, 0.01), f64::INFINITY);
    }

    #[test]
    fn contrasts() {
        let mut g = Moments::default();
        let mut c = Moments::default();
        for x in [10.0, 12.0, 14.0] {
            g.add(x);
            c.add(x / 2.0);
        }
        let r = Contrast::ratio_above(&g, &c, 1.25).unwrap();
        assert!((r.d - (12.0 - 1.25 * 6.0)).abs() < 1e-12);
        assert!((r.v - (4.0 / 3.0 + 1.25f64.powi(2) * 1.0 / 3.0)).abs() < 1e-12);
        assert_eq!(
            Contrast::ratio_below(&g, &c, 0.75).unwrap().d,
            0.75 * 6.0 - 12.0
        );
        assert_eq!(Contrast::above(&g, 11.0).unwrap().d, 1.0);
        assert_eq!(Contrast::above(&Moments::default(), 1.0), None);
        // Constant values: the floor keeps the variance positive.
        let mut k = Moments::default();
        for _ in 0..5 {
            k.add(100.0);
        }
        let a = Contrast::above(&k, 99.0).unwrap();
        assert!(a.v > 0.0 && a.z().is_finite());
        // Rates, on the arcsine scale: a clean start has positive variance, one failure
        // in ten is no evidence, a failure share well above the margin is.
        let clean = Rate {
            n: 10.0,
            failures: 0.0,
        };
        let one = Rate {
            n: 10.0,
            failures: 1.0,
        };
        let ctl = Rate {
            n: 100.0,
            failures: 1.0,
        };
        let c = Contrast::rate_excess(&clean, &ctl, 0.02).unwrap();
        assert!(c.v > 0.0 && c.z() < 1.0);
        let e = Contrast::rate_excess(&one, &ctl, 0.02).unwrap();
        assert!(
            e.d > 0.0 && e.z() < 2.0,
            "one failure in ten: z = {}",
            e.z()
        );
        let many = Rate {
            n: 400.0,
            failures: 40.0,
        };
        assert!(Contrast::rate_excess(&many, &ctl, 0.02).unwrap().z() > 3.0);
        assert!(Contrast::rate_above(&one, 0.05).unwrap().d > 0.0);
        assert!(Contrast::rate_above(&clean, 0.05).unwrap().d < 0.0);
    }
}
