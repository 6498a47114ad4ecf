//! The sequential detector: gray judged against its concurrent stable control, reply by
//! reply, by sequential change detection — and the same evidence read the other way, as
//! the promotion verdict.
//!
//! - `moments`: counts, sums and sums of squares (what merges across workers);
//! - `bet`: the e-detector — fair bets on every reply, a CUSUM per stake, the `arl`
//!   threshold and the effect bound;
//! - `plan`: the tests a configuration asks for, each reply's score, what they find;
//! - `evidence`: the tallies, the running control reference, the bets and the shared
//!   record;
//! - `confseq` and `promotion`: time-uniform intervals for the effects a release owner
//!   states, and the verdict (`pending`, `proven`, `refuted`);
//! - `detector`: the [`crate::detect::Detector`] on top of them.

pub mod bet;
pub mod confseq;
pub mod detector;
pub mod evidence;
pub mod moments;
pub mod plan;
pub mod promotion;
