//! The in-band signals every `/infer` reply carries for the gateways: the sidecar's own
//! breach detector ([`watchdog`]), hang detection ([`stall`]), the latches gateways hold on
//! this workload ([`latch`]), gray's agreement with stable on compared frames
//! ([`agreement`]: the matching; [`comparison`]: which frames, and why one gave none;
//! [`pending`]: the values waiting for a reply), one reply's metadata, which becomes the
//! signal headers ([`meta`]), and who answered ([`served_by`]). Pure logic with the time
//! passed in; the HTTP layer feeds them and stamps what they report.

pub mod agreement;
pub mod comparison;
pub mod latch;
pub mod meta;
pub mod pending;
pub mod served_by;
pub mod stall;
pub mod watchdog;
