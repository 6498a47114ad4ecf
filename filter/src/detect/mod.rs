//! The two detectors behind one interface, and what they share.
//!
//! - [`detector`]: the [`Detector`] trait the engine drives, the [`Store`] of shared data
//!   it reads and writes through, the [`Tick`] it runs in, what it finds ([`Fired`],
//!   the incident [`Detail`]).
//! - [`sequential`]: gray against its concurrent stable control by sequential change
//!   detection (the default), and the promotion verdict on the same evidence: `moments`,
//!   `bet` (the e-detector), `plan` (the tests, scores and findings), `evidence` (tallies,
//!   bets and the shared record), `confseq` and `promotion` (the verdict), `detector`.
//! - [`window`]: fixed thresholds on sliding windows: `windows` (buckets and rings),
//!   `breach` (triggers and the learned baseline), `detector`.
//! - [`workers`] and [`snapshot`]: what the workers share of recent replies (failure
//!   streaks, windows) and the `consecutive_failures` trigger, for both.
//! - [`probe`]: one half-open probe's verdict, for both.

pub mod detector;
pub mod probe;
pub mod sequential;
pub mod snapshot;
pub mod window;
pub mod workers;

pub use detector::{Detail, Detector, Fired, Standing, Store, Tick};

use crate::config::{Config, DetectorKind};

/// The detector a configuration asks for.
pub fn for_config(cfg: &Config) -> Box<dyn Detector> {
    match cfg.breach.detector {
        DetectorKind::Sequential => Box::new(sequential::detector::Sequential::new(cfg)),
        DetectorKind::Window => Box::new(window::detector::Window::new(cfg)),
    }
}
