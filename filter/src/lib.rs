//! grayguard filter: context-aware gray routing and in-band breach shedding, as a
//! proxy-wasm HTTP filter for Envoy.
//!
//! Everything with a decision in it is plain Rust behind a small host interface
//! ([`host::Host`]) and is tested on the host: the configuration (`config`), routing
//! (`schedule`, `rules`, `decision`), signals (`signals`), the two detectors (`window` +
//! `breach`; `sequential` + `evidence`), the breaker (`breaker`), the shared state
//! (`shared`), metrics (`metrics`), incident records (`incident`), and the per-VM core that
//! ties them together (`engine`). `glue` is the proxy-wasm side: it only moves headers,
//! time, shared data and metrics between Envoy and the core.

pub mod breach;
pub mod breaker;
pub mod config;
pub mod decision;
pub mod engine;
pub mod evidence;
#[cfg(test)]
mod fuzz;
pub mod host;
pub mod incident;
pub mod link;
pub mod rand;
pub mod rules;
pub mod schedule;
pub mod sequential;
pub mod signals;
#[cfg(any(test, feature = "simulate"))]
pub mod simulate;
pub mod window;

pub mod metrics;
pub mod shared;

mod glue;

// The module's entry point: Envoy calls `_initialize`, which installs the root context.
proxy_wasm::main! {{
    proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Info);
    proxy_wasm::set_root_context(|context_id| Box::new(glue::Root::new(context_id)));
}}
