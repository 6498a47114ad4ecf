//! grayguard's end-to-end tests, one binary: each module is one part or path of the system
//! driven through real processes (Envoy with the filter, the sidecar with ONNX Runtime and
//! the model, Prometheus, Alertmanager, the operator tools, `run.sh`) on free loopback ports,
//! with the harness of `tests/src` (`grayguard_e2e`). Run them one at a time
//! (`--test-threads=1`: they share the machine's cores and some of them its fixed ports):
//!
//! ```text
//! cargo test -p grayguard-e2e --test e2e -- --test-threads=1
//! cargo test -p grayguard-e2e --test e2e sidecar_api:: -- --test-threads=1
//! ```
//!
//! Test code may panic freely: a failed expectation is a failed test.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod canonical_hours;
mod faults;
mod filter_agreement;
mod filter_config;
mod filter_confirm;
mod filter_fail_open;
mod filter_routing;
mod filter_sequential;
mod filter_shedding;
mod gray_fallback;
mod held;
mod images;
mod local_mesh_signals;
mod local_mesh_supervision;
mod mesh_config;
mod mesh_e2e;
mod mesh_fallback_patch;
mod mesh_latch;
mod on_call;
mod progressive_delivery;
mod promotion;
mod promotion_config;
mod sidecar_api;
mod sidecar_batching;
mod sidecar_compare;
mod sidecar_fidelity;
mod sidecar_hostile;
mod sidecar_latch;
mod sidecar_load;
mod sidecar_stall;
mod sidecar_startup;
mod sidecar_watchdog;
mod simulated;
mod soak_short;
