//! grayguard sidecar: a YOLO inference server on ONNX Runtime that stamps grayguard's in-band
//! canary signals (`x-inference-latency-ms`, `x-nms-latency-ms`, `x-box-count`,
//! `x-model-version`, `x-canary-breach`) on every `/infer` reply.
//!
//! Layers: HTTP ([`server`]) → [`detector::Detector`] → vision ([`decode`], [`letterbox`],
//! [`layout`], [`nms`]) and the model ([`onnx`], the only user of `ort`).

pub mod config;
pub mod decode;
pub mod detector;
pub mod error;
pub mod gpu;
pub mod latch;
pub mod layout;
pub mod letterbox;
pub mod lifecycle;
pub mod memory;
pub mod meta;
pub mod metrics;
pub mod model_info;
pub mod multipart;
pub mod nms;
pub mod onnx;
pub mod selfcheck;
pub mod server;
pub mod watchdog;

pub use config::{Args, Config};
pub use lifecycle::{run, run_until};
