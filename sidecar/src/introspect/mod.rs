//! What the sidecar says about itself, to operators and to its own health checks: the
//! Prometheus registry ([`metrics`]), what `/info` reports ([`info`]), memory readings
//! ([`memory`]) and the self-check image and verdicts ([`selfcheck`]).

pub mod info;
pub mod memory;
pub mod metrics;
pub mod selfcheck;
