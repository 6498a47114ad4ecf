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

mod http;
mod metrics;
mod root;
mod shared;

// The module's entry point: Envoy calls `_initialize`, which installs the root context.
proxy_wasm::main! {{
    proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Info);
    proxy_wasm::set_root_context(|context_id| Box::new(root::Root::new(context_id)));
}}
