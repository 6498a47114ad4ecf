//! The model backend, the bottom layer beside `vision`: what a model is to the pipeline
//! ([`runner`]: its spec and the runner seam), what loading one takes ([`options`]), ONNX
//! Runtime sessions ([`onnx`], the only user of `ort`), the metadata Ultralytics writes into
//! its exports ([`model_info`]) and GPU memory readings ([`gpu`]). It imports nothing above
//! it: `config`, `detect`, `http` and the rest hand it what it needs.

pub mod gpu;
pub mod model_info;
pub mod onnx;
pub mod options;
pub mod runner;
