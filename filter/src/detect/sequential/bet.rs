//! Sequential change detection by betting: the e-detector behind every statistical trigger.
//!
//! Each trigger asks one one-sided question of gray's replies, written as a *score* `s`
//! with a known floor (`s ≥ floor`, `-1 ≤ floor < 0`) whose mean is at most 0 while gray is
//! within its margin: `x / ref − 1` for "gray above the reference", `1 − x / ref` for
//! "gray below it", and so on (`crate::evidence` has the list). A bettor who stakes a
//! fraction of its capital on each reply,
//!
//! ```text
//! e_i(λ) = 1 + λ · s_i,          0 ≤ λ < 1/|floor|,
//! ```
//!
//! never loses everything (`e_i > 0`) and, while the mean of `s` is at most 0, cannot expect
//! to gain (`E[e_i | past] ≤ 1`): the product of these factors is a nonnegative
//! supermartingale whatever the distribution of the replies — heavy tails included, since
//! only the mean and the floor enter. That is the only assumption: no variance, no
//! normality.
//!
//! A change can start at any reply, so the detector runs the bet from every possible start
//! at once, keeping only the best (CUSUM, Page 1954; as an e-detector, Shin, Ramdas and
//! Rinaldo, *E-detectors: a nonparametric framework for sequential change detection*,
//! 2023): `C_t = max(C_{t−1}, 1) · e_t`, restarted whenever the evidence falls back to 1.
//! Memory is constant — one number per bet — and a change after ten thousand healthy
//! replies is met by a bet that restarted just before it, so the delay does not grow with
//! the history. Several stakes `λ` (the [`LANES`], from bold to cautious) run side by side
//! because the best stake depends on the size of the change.
//!
//! **The guarantee.** `C_t ≤ R_t`, the Shiryaev–Roberts statistic of the same bets
//! (`R_t = (R_{t−1} + 1) · e_t`), and `R_t − t` is a supermartingale while nothing has
//! changed. With `H` hypotheses, each lane weighted by `w_k` ([`WEIGHTS`], summing to 1),
//! alarming when some lane's `w_k · C` reaches `H · arl` makes the weighted average of all
//! `R`s reach `arl`, so by optional stopping the expected number of gray replies before a
//! false alarm is at least `arl`, and `P(false alarm within the first N replies) ≤ N / arl`
//! (Ville's inequality applied to the nonnegative supermartingale `R_t + N − t`). Both hold
//! for batches as well as single replies: the factors of one batch multiply into one
//! factor with the same property, and a batch holds at least one reply.

/// Stakes per hypothesis.
pub const LANES: usize = 8;

/// The stakes, as fractions of the largest safe one (`1/|floor|`): bold lanes catch large
/// changes within tens of replies, cautious ones changes near the margin (a failure share
/// going from 1 % to 8 % against a 3 % margin wants about 0.05).
pub const STAKES: [f64; LANES] = [0.99, 0.6, 0.36, 0.2, 0.11, 0.06, 0.032, 0.017];

/// Each lane's share of the alarm budget (they sum to 1): a lane alarms when `w · C`
/// reaches the hypothesis's share of `arl`. The bold lanes get more, because the changes
/// they catch are the ones a few replies matter for (a flood, a latency ×1.6); the
/// cautious lanes' changes take hundreds of replies, where the larger threshold costs a
/// few percent.
pub const WEIGHTS: [f64; LANES] = [0.3, 0.2, 0.12, 0.1, 0.08, 0.08, 0.07, 0.05];

/// Products beyond this (either way) are folded into their logarithm.
const FOLD: f64 = 1e100;

/// One batch of bets on one hypothesis, as a worker places them between two ticks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stake {
    /// Per lane: the product of this batch's factors, times `exp(folded)`.
    product: [f64; LANES],
    folded: [f64; LANES],
    /// Replies scored.
    pub n: f64,
    /// Sum of the raw values and of the references they were scored against (the effect
    /// since a change point is read off them).
    pub sum_x: f64,
    pub sum_ref: f64,
}

impl Default for Stake {
    fn default() -> Stake {
        Stake {
            product: [1.0; LANES],
            folded: [0.0; LANES],
            n: 0.0,
            sum_x: 0.0,
            sum_ref: 0.0,
        }
    }
}

impl Stake {
    /// Bets on one reply: `score` against `reference`, with the score's `floor`.
    pub fn bet(&mut self, score: f64, floor: f64, x: f64, reference: f64) {
        let max = 1.0 / floor.abs().max(1e-9);
        for (lane, fraction) in STAKES.iter().enumerate() {
            let e = (1.0 + fraction * max * score).max(f64::MIN_POSITIVE);
            let p = self.product[lane] * e;
            if !(1.0 / FOLD..=FOLD).contains(&p) {
                self.folded[lane] += p.ln();
                self.product[lane] = 1.0;
            } else {
                self.product[lane] = p;
            }
        }
        self.n += 1.0;
        self.sum_x += x;
        self.sum_ref += reference;
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0.0
    }

    /// `ln` of the batch's factor in `lane`.
    pub fn log_e(&self, lane: usize) -> f64 {
        match (self.product.get(lane), self.folded.get(lane)) {
            (Some(p), Some(f)) => p.ln() + f,
            _ => 0.0,
        }
    }
}

/// One lane's CUSUM in the shared record: its evidence since the current run started, and
/// what the run saw (the change point and the effect since then).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Lane {
    /// `ln C`: at or below 0 the next batch starts a new run.
    pub log_c: f64,
    /// Gray replies of the epoch before the run started: the estimated change point.
    pub run_start: f64,
    /// When the batch that started the run was added, ms since the epoch.
    pub since_ms: f64,
    pub run_n: f64,
    pub run_sum_x: f64,
    pub run_sum_ref: f64,
}

/// One hypothesis's detector in the shared record: a CUSUM per lane, and how many of the
/// hypothesis's replies it has scored in this epoch.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Cusum {
    pub lanes: [Lane; LANES],
    pub scored: f64,
}

impl Cusum {
    /// Adds one worker's batch, added to the record at `now_ms` after `gray_before` gray
    /// replies of the epoch.
    pub fn absorb(&mut self, s: &Stake, now_ms: f64, gray_before: f64) {
        if s.is_empty() {
            return;
        }
        for (i, lane) in self.lanes.iter_mut().enumerate() {
            let log_e = s.log_e(i);
            if lane.log_c <= 0.0 {
                *lane = Lane {
                    log_c: log_e,
                    run_start: gray_before,
                    since_ms: now_ms,
                    run_n: s.n,
                    run_sum_x: s.sum_x,
                    run_sum_ref: s.sum_ref,
                };
            } else {
                lane.log_c += log_e;
                lane.run_n += s.n;
                lane.run_sum_x += s.sum_x;
                lane.run_sum_ref += s.sum_ref;
            }
        }
        self.scored += s.n;
    }

    /// The lane with the most weighted evidence (`ln(w · C)`).
    pub fn leader(&self) -> (usize, &Lane) {
        let weighted = |i: usize, l: &Lane| l.log_c + WEIGHTS[i].ln();
        self.lanes
            .iter()
            .enumerate()
            .fold((0, &self.lanes[0]), |best, (i, l)| {
                if weighted(i, l) > weighted(best.0, best.1) {
                    (i, l)
                } else {
                    best
                }
            })
    }

    /// `ln` of the largest weighted evidence over lanes, `ln(w · C)` (never below 0).
    pub fn log_evidence(&self) -> f64 {
        let (i, lane) = self.leader();
        (lane.log_c + WEIGHTS[i].ln()).max(0.0)
    }
}

/// `ln` of the alarm threshold of one hypothesis among `hypotheses` for the weighted
/// evidence: `H · arl`.
pub fn log_threshold(arl: f64, hypotheses: usize) -> f64 {
    arl.max(1.0).ln() + (hypotheses.max(1) as f64).ln()
}

/// The smallest mean score since the change point that the leading lane's evidence still
/// rules out at `log_threshold` (for the weighted evidence): positive exactly when the
/// lane has crossed. It follows
/// from the same bets: against "mean score ≤ δ" the lane's factors are each at least
/// `1 − λδ/(1 − λ)` times what they were against 0 (because `1 + λs ≥ 1 − λ`), so its run
/// would still cross for every `δ` below the value returned.
pub fn effect_bound(c: &Cusum, floor: f64, log_threshold: f64) -> f64 {
    let (i, lane) = c.leader();
    let lambda = STAKES[i] / floor.abs().max(1e-9);
    // The leading lane crosses when `ln C ≥ threshold − ln w`.
    let over = lane.log_c + WEIGHTS[i].ln() - log_threshold;
    if lane.run_n <= 0.0 || lambda <= 0.0 || lambda >= 1.0 {
        return if over >= 0.0 { 0.0 } else { f64::NEG_INFINITY };
    }
    let per_reply = over / lane.run_n;
    (1.0 - lambda) / lambda * (1.0 - (-per_reply).exp())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// splitmix64, for the tests' streams.
    struct Rng(u64);
    impl Rng {
        fn unit(&mut self) -> f64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            (((z ^ (z >> 31)) >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        }
    }

    fn run(c: &mut Cusum, scores: impl Iterator<Item = f64>, batch: usize) {
        let mut s = Stake::default();
        for (i, x) in scores.enumerate() {
            s.bet(x, -1.0, x + 1.0, 1.0);
            if (i + 1) % batch == 0 {
                c.absorb(&s, i as f64, c.scored);
                s = Stake::default();
            }
        }
        c.absorb(&s, 0.0, c.scored);
    }

    #[test]
    fn the_lane_weights_spend_the_budget_once() {
        let total: f64 = WEIGHTS.iter().sum();
        assert!(total <= 1.0 + 1e-12, "{total}");
        assert!(STAKES.iter().all(|s| *s > 0.0 && *s < 1.0));
    }

    #[test]
    fn batches_and_single_replies_give_the_same_evidence_within_a_run() {
        let scores: Vec<f64> = (0..50)
            .map(|i| 0.3 + 0.1 * ((i % 5) as f64 - 2.0))
            .collect();
        let (mut one, mut five) = (Cusum::default(), Cusum::default());
        run(&mut one, scores.iter().copied(), 1);
        run(&mut five, scores.iter().copied(), 5);
        for l in 0..LANES {
            assert!((one.lanes[l].log_c - five.lanes[l].log_c).abs() < 1e-9);
        }
        assert_eq!(one.scored, 50.0);
    }

    #[test]
    fn a_run_restarts_after_the_evidence_falls_back_and_marks_the_change() {
        let mut c = Cusum::default();
        // 300 replies below the margin, then 100 above it.
        run(
            &mut c,
            (0..300).map(|_| -0.2).chain((0..100).map(|_| 0.5)),
            1,
        );
        let (_, lane) = c.leader();
        assert_eq!(lane.run_start, 300.0);
        assert_eq!(lane.run_n, 100.0);
        assert!(c.log_evidence() > 20.0);
    }

    #[test]
    fn products_fold_into_logarithms_without_overflow() {
        let mut s = Stake::default();
        for _ in 0..10_000 {
            s.bet(50.0, -1.0, 51.0, 1.0);
        }
        let want = 10_000.0 * (1.0 + STAKES[0] * 50.0f64).ln();
        assert!((s.log_e(0) - want).abs() < 1e-6 * want, "{}", s.log_e(0));
        let mut d = Stake::default();
        for _ in 0..10_000 {
            d.bet(-1.0, -1.0, 0.0, 1.0);
        }
        assert!(d.log_e(0).is_finite() && d.log_e(0) < -10_000.0);
    }

    /// The guarantee in action: uniform scores with mean 0 (the worst case the null allows),
    /// watched reply by reply, cross `arl = 2,000` at most `N / arl` of the time within `N`.
    #[test]
    fn false_alarms_within_n_replies_stay_below_n_over_arl() {
        let arl = 2_000.0;
        let t = log_threshold(arl, 1);
        let (runs, n) = (400, 500);
        let mut rng = Rng(3);
        let mut alarms = 0;
        for _ in 0..runs {
            let mut c = Cusum::default();
            for _ in 0..n {
                let mut s = Stake::default();
                let x = 2.0 * rng.unit() - 1.0;
                s.bet(x, -1.0, x + 1.0, 1.0);
                c.absorb(&s, 0.0, c.scored);
                if c.log_evidence() >= t {
                    alarms += 1;
                    break;
                }
            }
        }
        let share = f64::from(alarms) / f64::from(runs);
        assert!(share <= n as f64 / arl, "{share}");
    }

    #[test]
    fn the_effect_bound_is_positive_exactly_when_crossed() {
        let t = log_threshold(1e6, 4);
        let mut c = Cusum::default();
        run(&mut c, (0..40).map(|_| 0.4), 1);
        let crossed = c.log_evidence() >= t;
        let b = effect_bound(&c, -1.0, t);
        assert_eq!(crossed, b > 0.0, "crossed {crossed}, bound {b}");
        run(&mut c, (0..200).map(|_| 0.4), 1);
        let b = effect_bound(&c, -1.0, t);
        assert!(b > 0.0 && b < 0.4, "{b}");
    }
}
