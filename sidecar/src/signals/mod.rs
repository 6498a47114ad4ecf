//! The in-band signals every `/infer` reply carries for the gateways: the sidecar's own
//! breach detector ([`watchdog`]), the latches gateways hold on this workload ([`latch`]) and
//! one reply's metadata, which becomes the signal headers ([`meta`]). Pure logic with the
//! time passed in; the HTTP layer feeds them and stamps what they report.

pub mod latch;
pub mod meta;
pub mod watchdog;
