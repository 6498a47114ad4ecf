//! grayguard filter: context-aware gray routing and in-band breach shedding, as a
//! proxy-wasm HTTP filter for Envoy.
//!
//! The decision logic lives in plain modules that never touch the proxy-wasm SDK
//! (`config`, `schedule`, `rules`, `signals`, `window`, `breach`, `breaker`, `decision`,
//! `incident`) and is unit-tested on the host; `root`, `http`, `shared` and `metrics` are
//! the thin glue to the host.

pub mod breach;
pub mod breaker;
pub mod config;
pub mod decision;
pub mod incident;
pub mod rules;
pub mod schedule;
pub mod signals;
pub mod window;
