//! Harness for grayguard's end-to-end tests: where the real binaries live, how to start
//! them on free loopback ports and make sure they die with the test (Envoy — the harness's
//! bootstrap or the shipped configuration —, the sidecars, Prometheus, Alertmanager with the
//! alert sink and the report server, a container registry, `make run`'s script on its fixed
//! ports), how to look at a page with headless Chromium, how to read, unpack and run the OCI
//! images, a small HTTP client that returns every status (4xx/5xx included) as data rather
//! than as an error, background traffic for fault injection, and waits on conditions
//! ([`wait::eventually`]) instead of fixed sleeps. Metrics are read with the tools' one
//! Prometheus text reader (`grayguard_client::exposition`).
//!
//! Test code may panic freely: a failed expectation is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod alerting;
pub mod browser;
pub mod container;
pub mod envoy;
pub mod http;
pub mod load;
pub mod local_mesh;
pub mod mesh;
pub mod oci;
pub mod paths;
pub mod process;
pub mod prometheus;
pub mod registry;
pub mod shipped;
pub mod sidecar;
pub mod upstream;
pub mod wait;
