//! grayguard filter: context-aware gray routing and in-band breach shedding, as a
//! proxy-wasm HTTP filter for Envoy.
//!
//! Everything with a decision in it is plain Rust behind a small host interface
//! ([`host::Host`]) and is tested on the host. Where to find what:
//!
//! - [`config`]: the JSON configuration — `raw` serde shapes, `validate`, the typed
//!   `Config`, `limits`;
//! - routing: [`schedule`] (time of day), [`rules`] (first match, shares, draws),
//!   [`decision`] (where a request goes, its `x-canary-decision`);
//! - [`signals`]: what a reply says (status, latency, box count, flag);
//! - [`detect`]: the two detectors behind one trait — `sequential` (moments, bet, plan,
//!   evidence, confseq, promotion) and `window` (windows, breach) — what the workers share
//!   (`workers`, `snapshot`), a probe's verdict (`probe`);
//! - [`breaker`]: one unit's shed state machine and the board of all units;
//! - [`shared`]: proxy shared data — keys, the codecs of every record, compare-and-swap,
//!   the board, the worker list, the detectors' store;
//! - [`engine`]: one VM's core, in rooms — `request`, `route`, `reply`, `tick`,
//!   `breaker`, `latch`, `operator`, `hold`, `promotion`;
//! - [`incident`] (the JSON line), [`metrics`] (names, pending counters), [`link`]
//!   (the signed links: an alert's confirmation, a hold's release), [`rand`] (the one
//!   generator);
//! - [`host`]: the host interface and [`host::MemoryHost`], Envoy in memory;
//! - `simulate` (feature `simulate`): synthetic releases for `make bench-detect`,
//!   `make bench-promote` and the sequential detector's statistical tests;
//! - `glue`: the proxy-wasm side — host calls only: it looks values up, writes what the
//!   core returns, and calls the core.

pub mod breaker;
pub mod config;
pub mod decision;
pub mod detect;
pub mod engine;
#[cfg(test)]
mod fuzz;
pub mod host;
pub mod incident;
pub mod link;
pub mod metrics;
pub mod rand;
pub mod rules;
pub mod schedule;
pub mod shared;
pub mod signals;
#[cfg(any(test, feature = "simulate"))]
pub mod simulate;

mod glue;

// The module's entry point: Envoy calls `_initialize`, which installs the root context.
proxy_wasm::main! {{
    proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Info);
    proxy_wasm::set_root_context(|context_id| Box::new(glue::Root::new(context_id)));
}}
