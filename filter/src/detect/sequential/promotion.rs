//! The promotion verdict: the release owner's hypothesis ("gray adds at most 8 ms and loses
//! no detections") tested on the same replies the detector reads, from the other side —
//! not "is gray worse than its margin?" but "is gray proven within its budget?".
//!
//! Each stated effect is gray's mean minus (or over) its concurrent control's, on values
//! scaled into `[0, 1]`: latencies and box counts clipped at a cap fixed for the epoch
//! (`cap_factor` × the control's running mean when the epoch's first replies are
//! judged), failures as 0/1, agreement as it is. Each side's mean gets an
//! empirical-Bernstein confidence sequence (`super::confseq`) at level `alpha`: each of
//! its two bounds fails, at any time at all, with probability at most `alpha / 2`. An
//! effect's interval is the difference (or ratio) of the two sides'; its upper end can
//! only fall below the truth if gray's upper bound or the control's lower bound fails
//! (probability at most `alpha`), and likewise its lower end. The verdict is
//!
//! - `proven` when every stated effect's whole interval lies inside its budget,
//! - `refuted` when one lies wholly outside,
//! - `pending` otherwise, or before `min_gray_responses`;
//!
//! and it is kept for the epoch once reached. **The guarantee**: whatever the true
//! effects and however long it is watched, a version outside its budget (on the clipped
//! means) is declared `proven` with probability at most `alpha` — to be proven, the
//! interval of an effect it violates would have to miss the truth. For `refuted` and a
//! version within its budget the bound is per effect and adds up over the stated ones: an
//! interval wholly outside a budget the truth is inside misses the truth, which has
//! probability at most `alpha` for a one-sided budget (the latency budgets together, the
//! failure excess), `alpha / 2` for agreement (gray's side alone) and `2 · alpha` for the
//! box-count shift (bounded both ways). Nothing here assumes normality; heavy tails only
//! meet the cap.

use grayguard_contract::promotion::{Effect, Verdict};

use crate::config::Promote;
use crate::detect::sequential::confseq::{Prior, Sums};
use crate::detect::sequential::moments::Moments;
use crate::signals::Observation;

/// Box-count caps are at least this many boxes.
pub const MIN_BOX_CAP: f64 = 10.0;

/// Control replies the running reference must hold before the caps are fixed.
pub const CAP_MIN_CONTROL: f64 = 20.0;

/// The budget a hypothesis states for an effect, if it states one.
fn budget(e: Effect, b: &Promote) -> Option<f64> {
    match e {
        Effect::LatencyIncrease => b.latency_max_increase_ms,
        Effect::LatencyRatio => b.latency_max_ratio,
        Effect::BoxShift => b.box_count_max_shift,
        Effect::ErrorExcess => b.error_max_excess,
        Effect::Agreement => b.agreement_min,
    }
}

/// A signal as the promotion reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Latency = 0,
    Boxes = 1,
    Failures = 2,
    Agreement = 3,
}

/// Signals per side (the control has no agreement).
pub const SIGNALS: usize = 4;

/// The caps latencies and box counts are clipped at in this epoch (0: not fixed yet).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Caps {
    pub latency_ms: f64,
    pub boxes: f64,
}

impl Caps {
    /// The caps for an epoch whose first replies are judged against `control` (the
    /// running latency and box moments): `None` while the control is too thin.
    pub fn fix(b: &Promote, latency: &Moments, boxes: &Moments) -> Option<Caps> {
        let lat = latency
            .mean()
            .filter(|m| latency.n >= CAP_MIN_CONTROL && *m > 0.0)?;
        let bx = boxes
            .mean()
            .filter(|_| boxes.n >= CAP_MIN_CONTROL)
            .unwrap_or(0.0);
        Some(Caps {
            latency_ms: b.cap_factor * lat,
            boxes: (b.cap_factor * bx).max(MIN_BOX_CAP),
        })
    }

    pub fn is_fixed(&self) -> bool {
        self.latency_ms > 0.0
    }

    /// A reply's values scaled into `[0, 1]`, by signal.
    fn scaled(&self, o: &Observation) -> [Option<f64>; SIGNALS] {
        let clip = |x: f64, cap: f64| (x.min(cap) / cap).clamp(0.0, 1.0);
        let fixed = self.is_fixed();
        [
            o.latency_ms
                .filter(|_| fixed)
                .map(|x| clip(x, self.latency_ms)),
            o.boxes.filter(|_| fixed).map(|x| clip(x, self.boxes)),
            Some(f64::from(u8::from(o.failed))),
            o.agreement.map(|a| a.clamp(0.0, 1.0)),
        ]
    }
}

/// One side's sums, by signal.
pub type Side = [Sums; SIGNALS];

/// What a worker stakes with: the caps and each side's priors as of its last read.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Stakes {
    pub caps: Caps,
    pub gray: [Prior; SIGNALS],
    pub control: [Prior; SIGNALS],
}

/// One worker's unflushed promotion sums of one unit, and the caps they were staked with.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Local {
    pub gray: Side,
    pub control: Side,
    pub caps: Caps,
}

impl Local {
    pub fn observe_gray(&mut self, s: &Stakes, alpha: f64, o: &Observation) {
        self.caps = s.caps;
        add(&mut self.gray, &s.gray, s.caps.scaled(o), alpha);
    }

    pub fn observe_control(&mut self, s: &Stakes, alpha: f64, o: &Observation) {
        self.caps = s.caps;
        let mut v = s.caps.scaled(o);
        v[Signal::Agreement as usize] = None;
        add(&mut self.control, &s.control, v, alpha);
    }

    pub fn is_empty(&self) -> bool {
        self.gray.iter().chain(&self.control).all(|s| s.n == 0.0)
    }
}

fn add(side: &mut Side, priors: &[Prior; SIGNALS], values: [Option<f64>; SIGNALS], alpha: f64) {
    for ((sums, prior), v) in side.iter_mut().zip(priors).zip(values) {
        if let Some(x) = v {
            sums.add(x, prior, alpha);
        }
    }
}

/// One unit's promotion evidence in the shared record (one epoch).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Promotion {
    pub caps: Caps,
    pub gray: Side,
    pub control: Side,
    pub verdict: Verdict,
    /// When the verdict was reached (ms since the epoch), and the gray replies it took.
    pub verdict_ms: f64,
    pub verdict_gray_n: f64,
    /// When the epoch's first replies were added (ms since the epoch).
    pub started_ms: f64,
}

impl Promotion {
    /// Adds one worker's sums. Latency and box sums staked with other caps than this
    /// epoch's (another epoch's, or none yet) are left out: they measure something else.
    pub fn add(&mut self, l: &Local, now_ms: f64) {
        if l.is_empty() {
            return;
        }
        if self.started_ms == 0.0 {
            self.started_ms = now_ms;
        }
        let same_caps = l.caps == self.caps;
        let capped = [Signal::Latency as usize, Signal::Boxes as usize];
        let kept = |sig: usize| same_caps || !capped.contains(&sig);
        for (sig, (a, b)) in self.gray.iter_mut().zip(&l.gray).enumerate() {
            if kept(sig) {
                a.merge(b);
            }
        }
        for (sig, (a, b)) in self.control.iter_mut().zip(&l.control).enumerate() {
            if kept(sig) {
                a.merge(b);
            }
        }
    }

    /// The stakes of the next replies.
    pub fn stakes(&self) -> Stakes {
        Stakes {
            caps: self.caps,
            gray: self.gray.map(|s| s.prior()),
            control: self.control.map(|s| s.prior()),
        }
    }

    /// Gray replies so far (every reply counts a failure or a success).
    pub fn gray_n(&self) -> f64 {
        self.gray[Signal::Failures as usize].n
    }

    /// Evaluates the budget; the verdict, once reached, is kept (`now_ms` stamps it).
    pub fn judge(&mut self, b: &Promote, now_ms: f64) -> Vec<Bounds> {
        let bounds = bounds(b, self);
        if self.verdict == Verdict::Pending && self.gray_n() >= f64::from(b.min_gray_responses) {
            let v = verdict(&bounds);
            if v != Verdict::Pending {
                self.verdict = v;
                self.verdict_ms = now_ms;
                self.verdict_gray_n = self.gray_n();
            }
        }
        bounds
    }
}

/// One effect's interval against its budget, in natural units.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bounds {
    pub effect: Effect,
    pub budget: f64,
    pub estimate: f64,
    pub lower: f64,
    pub upper: f64,
    /// `Some(true)`: wholly inside the budget; `Some(false)`: wholly outside; `None`:
    /// undecided.
    pub inside: Option<bool>,
}

impl Bounds {
    /// How far the interval's worse end is into the budget, percent (proven at or below
    /// 100), and how far its better end is (refuted above 100); both at least 0.
    pub fn percent(&self) -> (f64, f64) {
        let pct = |x: f64| (100.0 * x).max(0.0);
        match self.effect {
            Effect::LatencyIncrease | Effect::ErrorExcess => {
                (pct(self.upper / self.budget), pct(self.lower / self.budget))
            }
            Effect::LatencyRatio => (
                pct((self.upper - 1.0) / (self.budget - 1.0)),
                pct((self.lower - 1.0) / (self.budget - 1.0)),
            ),
            Effect::BoxShift => {
                let worst = (self.upper - 1.0).abs().max((self.lower - 1.0).abs());
                let best = if self.lower > 1.0 {
                    self.lower - 1.0
                } else if self.upper < 1.0 {
                    1.0 - self.upper
                } else {
                    0.0
                };
                (pct(worst / self.budget), pct(best / self.budget))
            }
            // Agreement: the budget is a floor; 100 % is the whole way from 1 down to it.
            Effect::Agreement => (
                pct((1.0 - self.lower) / (1.0 - self.budget).max(1e-9)),
                pct((1.0 - self.upper) / (1.0 - self.budget).max(1e-9)),
            ),
        }
    }
}

/// The interval of each stated effect.
pub fn bounds(b: &Promote, p: &Promotion) -> Vec<Bounds> {
    let alpha = b.alpha;
    let side = |s: &Side, sig: Signal, scale: f64| {
        let sums = &s[sig as usize];
        let (lo, hi) = sums.interval(alpha);
        let mean = if sums.n > 0.0 {
            sums.sum / sums.n
        } else {
            f64::NAN
        };
        (lo * scale, hi * scale, mean * scale, sums.n)
    };
    let mut out = Vec::new();
    for e in Effect::ALL {
        let Some(budget) = budget(e, b) else {
            continue;
        };
        let (sig, scale) = match e {
            Effect::LatencyIncrease | Effect::LatencyRatio => (Signal::Latency, p.caps.latency_ms),
            Effect::BoxShift => (Signal::Boxes, p.caps.boxes),
            Effect::ErrorExcess => (Signal::Failures, 1.0),
            Effect::Agreement => (Signal::Agreement, 1.0),
        };
        let (glo, ghi, gm, gn) = side(&p.gray, sig, scale);
        let (clo, chi, cm, cn) = side(&p.control, sig, scale);
        let measured = gn > 0.0 && (e == Effect::Agreement || cn > 0.0) && scale > 0.0;
        let (estimate, lower, upper) = if !measured {
            (f64::NAN, f64::NEG_INFINITY, f64::INFINITY)
        } else {
            match e {
                Effect::LatencyIncrease | Effect::ErrorExcess => (gm - cm, glo - chi, ghi - clo),
                Effect::LatencyRatio | Effect::BoxShift => {
                    let ratio = |a: f64, c: f64| if c > 0.0 { a / c } else { f64::INFINITY };
                    (ratio(gm, cm), ratio(glo, chi), ratio(ghi, clo))
                }
                Effect::Agreement => (gm, glo, ghi),
            }
        };
        let inside = match e {
            Effect::LatencyIncrease | Effect::ErrorExcess => {
                decide(upper <= budget, lower > budget)
            }
            Effect::LatencyRatio => decide(upper <= budget, lower > budget),
            Effect::BoxShift => decide(
                lower >= 1.0 - budget && upper <= 1.0 + budget,
                lower > 1.0 + budget || upper < 1.0 - budget,
            ),
            Effect::Agreement => decide(lower >= budget, upper < budget),
        };
        out.push(Bounds {
            effect: e,
            budget,
            estimate,
            lower,
            upper,
            inside: if measured { inside } else { None },
        });
    }
    out
}

fn decide(inside: bool, outside: bool) -> Option<bool> {
    if inside {
        Some(true)
    } else if outside {
        Some(false)
    } else {
        None
    }
}

/// `refuted` when an effect is wholly outside, `proven` when all are wholly inside.
pub fn verdict(bounds: &[Bounds]) -> Verdict {
    if bounds.iter().any(|b| b.inside == Some(false)) {
        Verdict::Refuted
    } else if !bounds.is_empty() && bounds.iter().all(|b| b.inside == Some(true)) {
        Verdict::Proven
    } else {
        Verdict::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Rng(u64);
    impl Rng {
        fn unit(&mut self) -> f64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            (((z ^ (z >> 31)) >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        }
        fn normal(&mut self) -> f64 {
            let (u, v) = (self.unit(), self.unit());
            (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
        }
    }

    fn budget() -> Promote {
        Promote {
            latency_max_increase_ms: Some(8.0),
            latency_max_ratio: None,
            box_count_max_shift: None,
            error_max_excess: None,
            agreement_min: None,
            alpha: 0.05,
            min_gray_responses: 200,
            cap_factor: 3.0,
        }
    }

    fn reply(lat: f64) -> Observation {
        Observation {
            latency_ms: Some(lat),
            boxes: Some(5.0),
            ..Observation::default()
        }
    }

    /// Plays gray `+shift` ms over a lognormal control (median 100 ms, σ 0.3), three
    /// control replies per gray one, one batch per four replies; returns the verdict and
    /// the gray replies it took.
    fn release(shift: f64, seed: u64, most: usize) -> (Verdict, f64) {
        let b = budget();
        let mut rng = Rng(seed);
        let mut p = Promotion::default();
        let mut control = (Moments::default(), Moments::default());
        let draw = |r: &mut Rng| 100.0 * (0.3 * r.normal()).exp();
        for _ in 0..most {
            let s = p.stakes();
            let mut l = Local::default();
            l.observe_gray(&s, b.alpha, &reply(draw(&mut rng) + shift));
            for _ in 0..3 {
                let x = draw(&mut rng);
                control.0.add(x);
                control.1.add(5.0);
                l.observe_control(&s, b.alpha, &reply(x));
            }
            if !p.caps.is_fixed() {
                p.caps = Caps::fix(&b, &control.0, &control.1).unwrap_or_default();
            }
            p.add(&l, 1.0);
            p.judge(&b, 1.0);
            if p.verdict != Verdict::Pending {
                break;
            }
        }
        (p.verdict, p.verdict_gray_n)
    }

    #[test]
    fn a_version_well_within_budget_is_proven_and_one_beyond_it_refuted() {
        let (v, n) = release(3.0, 1, 20_000);
        assert_eq!(v, Verdict::Proven, "+3 ms");
        assert!(n < 3_000.0, "{n}");
        let (v, _) = release(14.0, 2, 20_000);
        assert_eq!(v, Verdict::Refuted, "+14 ms");
    }

    /// At the edge of the budget (+8 ms exactly) a proof comes at most `alpha` of the
    /// time, however long it is watched (a large alpha makes the check sharp).
    #[test]
    fn a_version_at_the_budget_is_rarely_proven() {
        let runs = 60;
        let proven = (0..runs)
            .filter(|i| release(8.0, 100 + i, 4_000).0 == Verdict::Proven)
            .count();
        assert!(
            proven as f64 <= 0.05 * runs as f64 + 3.0,
            "{proven} of {runs}"
        );
    }

    #[test]
    fn nothing_is_decided_before_min_gray_responses_or_without_caps() {
        let b = budget();
        let mut p = Promotion::default();
        let mut l = Local::default();
        l.observe_gray(&p.stakes(), b.alpha, &reply(100.0));
        assert_eq!(l.gray[Signal::Latency as usize].n, 0.0, "no cap yet");
        assert_eq!(l.gray[Signal::Failures as usize].n, 1.0);
        p.add(&l, 5.0);
        let bounds = p.judge(&b, 6.0);
        assert_eq!(p.verdict, Verdict::Pending);
        assert_eq!(bounds[0].inside, None);
        assert_eq!(p.started_ms, 5.0);
    }

    #[test]
    fn percentages_say_how_far_into_the_budget() {
        let b = Bounds {
            effect: Effect::LatencyIncrease,
            budget: 8.0,
            estimate: 3.0,
            lower: -1.0,
            upper: 6.0,
            inside: Some(true),
        };
        assert_eq!(b.percent(), (75.0, 0.0));
        let s = Bounds {
            effect: Effect::BoxShift,
            budget: 0.1,
            estimate: 0.9,
            lower: 0.8,
            upper: 0.95,
            inside: Some(false),
        };
        let (worst, best) = s.percent();
        assert!((worst - 200.0).abs() < 1e-9 && (best - 50.0).abs() < 1e-9);
    }
}
