//! grayguard's soak: the mesh under steady mixed traffic (real photos and a share of bad
//! inputs, from device cohorts) for minutes to hours, while every process's memory and open
//! files and the filter's and the sidecars' counters are sampled; then the targets are
//! checked and a summary and a chart written. The traffic engine, the photos, the cohorts and
//! the chart style are the client library's (`grayguard-client`), as the demo's are.

pub mod bodies;
pub mod chart;
pub mod config;
pub mod procfs;
pub mod sample;
pub mod verdict;
