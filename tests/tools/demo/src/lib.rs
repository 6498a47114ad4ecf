//! grayguard's incident replay: steady image traffic from device cohorts through the front
//! Envoy, a live per-second account of where it went and why, and, at the end, a timeline
//! chart and a summary of how fast the gray version was shed.

pub mod chart;
pub mod cohort;
pub mod config;
pub mod decision;
pub mod images;
/// Prometheus text reading, shared with the end-to-end tests.
pub use grayguard_e2e::prom;
pub mod reply;
pub mod summary;
pub mod timeline;
pub mod traffic;
