//! The model backend: ONNX Runtime sessions ([`onnx`], the only user of `ort`), the metadata
//! Ultralytics writes into its exports ([`model_info`]) and GPU memory readings ([`gpu`]).

pub mod gpu;
pub mod model_info;
pub mod onnx;
