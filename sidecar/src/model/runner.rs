//! What a loaded model is to the pipeline above it: its [`ModelSpec`] (input size, class
//! names, output layout, batch axis) and a [`ModelRunner`] that runs it on an input tensor.
//! ONNX Runtime implements the runner in production ([`super::onnx`]); the detect layer's unit
//! tests use fakes.

use std::sync::Arc;

use crate::vision::layout::OutputLayout;

/// What the pipeline needs to know about the model.
#[derive(Debug, Clone)]
pub struct ModelSpec {
    /// Model input size, pixels.
    pub input_h: u32,
    pub input_w: u32,
    /// Class names by id.
    pub names: Vec<Arc<str>>,
    pub layout: OutputLayout,
    /// Whether the batch axis is dynamic (the model takes several images per run).
    pub dynamic_batch: bool,
}

/// Runs the model. Implementations own their session; one per worker thread.
pub trait ModelRunner: Send + 'static {
    /// Runs on a `[batch, 3, H, W]` tensor, writing the output values into `output` (cleared
    /// first) and returning the output shape.
    fn run(
        &mut self,
        input: &[f32],
        batch: usize,
        output: &mut Vec<f32>,
    ) -> Result<Vec<usize>, String>;
}
