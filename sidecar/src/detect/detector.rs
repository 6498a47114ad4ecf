//! The seam between HTTP and the model: a [`Detector`] turns an encoded image into boxes in
//! original-image pixels ([`Detections`]) or says why it could not ([`DetectError`]). The
//! [`Batcher`](super::Batcher) is the real one; handler tests use a fake.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::vision::decode::DecodeError;

/// One detection in original-image pixels, as the `/infer` JSON writes it (and as a gray
/// sidecar reads stable's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BoxOut {
    pub x1: f32,
    pub y1: f32,
    pub x2: f32,
    pub y2: f32,
    pub score: f32,
    pub class_id: usize,
    pub label: Arc<str>,
}

/// Boxes and stage times (ms) of one image.
#[derive(Debug, Clone, PartialEq)]
pub struct Detections {
    pub boxes: Vec<BoxOut>,
    /// Decode + letterbox.
    pub preprocess_ms: f64,
    /// The model run (input binding, run, output copy), shared by every image of its batch.
    pub inference_ms: f64,
    /// Output decode, NMS and rescaling.
    pub nms_ms: f64,
    /// Images in the model run that served this one (1 without batching).
    pub batch_size: usize,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DetectError {
    /// The image could not be decoded (a client error).
    #[error(transparent)]
    Decode(DecodeError),
    /// The model failed (a server error).
    #[error("inference failed: {0}")]
    Inference(String),
}

/// Receives the outcome of one [`Detector::submit`]; called exactly once, on a model worker.
pub type DetectReply = Box<dyn FnOnce(Result<Detections, DetectError>) + Send>;

/// Encoded image in, boxes out. Blocking: callers run it off the async runtime.
pub trait Detector: Send + Sync + 'static {
    fn detect(&self, image: &[u8]) -> Result<Detections, DetectError>;

    /// Starts [`Detector::detect`] without blocking the caller; `reply` gets the outcome.
    /// The default runs `detect` on the async runtime's blocking pool (call it from inside a
    /// runtime); the batcher hands the image straight to a model worker instead.
    fn submit(self: Arc<Self>, image: Bytes, reply: DetectReply) {
        tokio::task::spawn_blocking(move || reply(self.detect(&image)));
    }

    /// Requests a model worker has taken (being decoded, waiting for or in a model run); the
    /// rest of the admitted ones are queued.
    fn busy(&self) -> usize {
        0
    }

    /// When the oldest model run in progress began, by the server's clock (`None`: none is
    /// running): a run that never returns is how a hung model shows.
    fn running_since(&self) -> Option<Instant> {
        None
    }
}
