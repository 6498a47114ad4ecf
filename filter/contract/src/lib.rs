//! The contract between grayguard's parts, in one place: the header names the sidecar
//! writes and the filter reads, the breach reasons and triggers, the grammar of the
//! `x-canary-decision` header (rendered by the filter, parsed by the demo and the tests),
//! the latch and operator requests, the promotion verdict's vocabulary, the metric names
//! and stat tags other parts read back, and the records a gateway logs.
//!
//! Its only dependencies are serde and serde_json (for the records), so that the Wasm
//! filter, the sidecar, the demo and the tests can all use it without pulling anything
//! else in.

pub mod decision;
pub mod headers;
pub mod latch;
pub mod metrics;
pub mod operator;
pub mod promotion;
pub mod reason;
pub mod record;
pub mod tags;

pub use decision::{Decision, Note, ParseError, Side};
pub use reason::{Flag, Reason, Trigger};
