//! What the sidecar says about itself, to operators and to its own health checks: the
//! Prometheus registry ([`metrics`]), what `/info` reports ([`info`]), memory readings
//! ([`memory`]), the self-check image and verdicts ([`selfcheck`]) and the recent throughput
//! that `/infer` replies report ([`throughput`]).

pub mod info;
pub mod memory;
pub mod metrics;
pub mod selfcheck;
pub mod throughput;
