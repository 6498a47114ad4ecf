//! grayguard sidecar: a YOLO inference server on ONNX Runtime that stamps grayguard's in-band
//! canary signals (`x-inference-latency-ms`, `x-nms-latency-ms`, `x-box-count`,
//! `x-model-version`, `x-canary-breach`) on every `/infer` reply.
//!
//! Layers, each knowing only the one below: [`http`] (hyper: routing, bodies, admission,
//! replies, the control listener's latch endpoint, connection guards) → [`detector`] (the
//! [`detector::Detector`] seam, model workers, batching) → [`vision`] (decode, letterbox,
//! output layouts, NMS: pure) and [`model`] (ONNX Runtime, the only user of `ort`). Around
//! them: [`config`], the error table ([`error`]), one reply's metadata ([`meta`]) and
//! [`metrics`], the [`watchdog`], the gateways' [`latch`]es, a [`connection`]'s time limits,
//! what [`info`] reports, [`memory`] readings, [`selfcheck`]s and the process [`lifecycle`].

pub mod clock;
pub mod config;
pub mod detect;
pub mod error;
pub mod http;
pub mod introspect;
pub mod lifecycle;
pub mod model;
pub mod signals;
pub mod vision;

#[cfg(test)]
mod fuzz;

pub use config::{Args, Config};
pub use lifecycle::{StartError, run, run_until};
