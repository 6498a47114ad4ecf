//! Detection, between the HTTP layer and the model: the [`Detector`] seam HTTP calls
//! ([`detector`]), the YOLO [`pipeline`] one image takes (decode → letterbox → model run →
//! output decode → NMS → original coordinates) and the [`batcher`] that queues concurrent
//! requests onto the model workers and runs them through the pipeline in batches. It uses
//! `vision` and `model`, never `http`.

pub mod batcher;
pub mod detector;
pub mod pipeline;

#[cfg(test)]
mod fake;

pub use batcher::{BatchConfig, Batcher};
pub use detector::{BoxOut, DetectError, DetectReply, Detections, Detector};
pub use pipeline::{Pipeline, PipelineConfig};
