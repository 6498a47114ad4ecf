//! grayguard's soak: the mesh under steady mixed traffic (real photos and a share of bad
//! inputs, from device cohorts) for minutes to hours, while every process's memory and open
//! files and the filter's and the sidecars' counters are sampled; then the targets are
//! checked and a summary and a chart written. The traffic engine, the photos, the cohorts and
//! the chart's font are the demo's (`grayguard-demo`, used as a library).

pub mod bodies;
pub mod chart;
pub mod config;
pub mod procfs;
pub mod sample;
pub mod verdict;
