//! What grayguard's tools share as clients of the mesh (`grayguard-report` and
//! `grayguard-alert-sink`, `grayguard-demo`, `grayguard-soak`; the end-to-end tests read
//! metrics with it too). Everything here reads or drives the mesh from outside, through what
//! an operator has anyway; nothing is in the request path.
//!
//! - Reading: [`exposition`] (the one Prometheus text reader), [`fetch`] (GETs with limits),
//!   [`prometheus`] (range and instant queries), [`breaker`] (the filter's breaker gauge).
//! - Drawing: [`chart`] (the font, the palette and the axis helpers every chart uses).
//! - Driving: [`cohort`] (device cohorts and their mix), [`photos`] (the photos sent),
//!   [`traffic`] (steady traffic through the front Envoys) with what it records:
//!   [`reply`], [`decision`], [`sample`], [`timeline`]; [`flags`] (what the flag checks
//!   share).

pub mod breaker;
pub mod chart;
pub mod cohort;
pub mod decision;
pub mod exposition;
pub mod fetch;
pub mod flags;
pub mod photos;
pub mod prometheus;
pub mod reply;
pub mod sample;
pub mod timeline;
pub mod traffic;
