//! grayguard's incident replay: steady image traffic from device cohorts through the front
//! Envoy (the client library's traffic engine), a live per-second account of where it went
//! and why, and, at the end, a timeline chart and a summary of how fast the gray version was
//! shed.

pub mod chart;
pub mod config;
pub mod summary;
