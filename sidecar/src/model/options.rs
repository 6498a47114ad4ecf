//! What loading a model needs to know, and nothing else of the configuration: the file, the
//! device and threads of its sessions, and the input size and output layout when the caller
//! overrides the model's own.

use std::path::PathBuf;

use clap::ValueEnum;
use serde::Serialize;

use crate::vision::layout::OutputLayout;

/// Where the model runs (`--device`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Device {
    Cpu,
    Cuda,
}

impl Device {
    pub fn as_str(self) -> &'static str {
        match self {
            Device::Cpu => "cpu",
            Device::Cuda => "cuda",
        }
    }
}

/// Model input size, pixels (`--imgsz`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct InputSize {
    pub height: u32,
    pub width: u32,
}

/// What [`load`](super::onnx::load) takes.
#[derive(Debug, Clone)]
pub struct ModelOptions {
    pub path: PathBuf,
    /// ONNX Runtime intra-op threads per session.
    pub threads: usize,
    /// Sessions (one per model worker).
    pub workers: usize,
    pub device: Device,
    pub cuda_device: u32,
    pub imgsz: Option<InputSize>,
    pub output_layout: Option<OutputLayout>,
}
