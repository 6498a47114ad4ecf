//! The two detectors behind one interface, and what they share.
//!
//! - [`detector`]: the [`Detector`] trait the engine drives, the [`Store`] of shared data
//!   it reads and writes through, the [`Tick`] it runs in, what it finds ([`Fired`],
//!   the incident [`Detail`]).
//! - [`sequential`]: anytime-valid tests of gray against the stable control (the default):
//!   `math` (the mixture arithmetic), `evidence` (tallies and the shared record), `plan`
//!   (the tests, their alpha and findings), `detector`.
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

pub use detector::{Detail, Detector, Fired, Store, Tick};

use crate::config::{Config, DetectorKind};

/// The detector a configuration asks for.
pub fn for_config(cfg: &Config) -> Box<dyn Detector> {
    match cfg.breach.detector {
        DetectorKind::Sequential => Box::new(sequential::detector::Sequential::new(cfg)),
        DetectorKind::Window => Box::new(window::detector::Window::new(cfg)),
    }
}
