//! grayguard sidecar: a YOLO inference server on ONNX Runtime that stamps grayguard's in-band
//! canary signals (`x-inference-latency-ms`, `x-nms-latency-ms`, `x-box-count`,
//! `x-model-version`, `x-canary-breach`) on every `/infer` reply.
//!
//! Layers, each importing only those below it (never one above, never in a circle):
//!
//! * [`lifecycle`]: the process — start-up, warm-up, the self-check and memory loops, drain.
//! * [`http`]: hyper — routing, bodies, admission, replies, the control listener's latch
//!   endpoint, connection guards.
//! * [`detect`]: the [`Detector`](detect::Detector) seam HTTP calls, the YOLO
//!   [`pipeline`](detect::pipeline) and the [`batcher`](detect::batcher) that queues requests
//!   onto the model workers.
//! * [`introspect`]: what the sidecar says about itself — metrics, `/info`, memory readings,
//!   self-checks.
//! * [`signals`]: the in-band signals — the watchdog, the gateways' latches, one reply's
//!   metadata → signal headers.
//! * [`vision`] (pixels and boxes, pure) and [`model`] (what a model is, ONNX Runtime: the
//!   only user of `ort`), at the bottom.
//!
//! Shared low in the graph: [`config`] (flags → [`Config`]), the error table ([`error`]) and
//! the one source of time ([`clock`]); they import only `signals`, `vision` and `model`.

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
