//! Proxy shared data: one value per key, visible to every worker's VM of one Envoy
//! process, read and written with compare-and-swap through [`crate::host::Host`].
//!
//! - `keys`: the keys of one configuration;
//! - `codec`: the bytes of every record (tagged and versioned);
//! - `cas`: the compare-and-swap loop;
//! - `board`: the breaker board and this VM's copy of it;
//! - `workers`: the worker list;
//! - `store`: the detectors' view of the rest (`crate::detect::Store`).

pub mod board;
pub mod cas;
pub mod codec;
pub mod keys;
pub mod store;
pub mod workers;

pub use board::{BoardCache, ensure_board, update_board};
pub use keys::Keys;
pub use store::HostStore;
