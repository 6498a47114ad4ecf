//! The sequential detector: anytime-valid tests of gray against the stable control.
//!
//! - `math`: the one-sided normal mixture, its e-values and confidence sequences;
//! - `evidence`: what each side of a unit saw (tallies) and the shared record;
//! - `plan`: the tests a configuration asks for, their alpha and what they find;
//! - `detector`: the [`crate::detect::Detector`] on top of them.

pub mod detector;
pub mod evidence;
pub mod math;
pub mod plan;
