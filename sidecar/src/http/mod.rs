//! The HTTP layer (hyper 1): state, routing, body reading, the `/infer` handler, the gray
//! side of the comparison with stable (a client of stable's `/infer`, [`compare`]), the
//! control listener's latch endpoint, connection guards (their phase machine in
//! [`connection`]) and the serve loop. It knows the [`Detector`](crate::detect::Detector)
//! trait, never the model; it feeds the `signals` and `introspect` modules, which never call
//! back.

pub mod app;
pub mod body;
pub mod compare;
pub mod conn;
pub mod connection;
pub mod control;
pub mod infer;
pub mod multipart;
pub mod reply;
pub mod router;
pub mod serve;

pub use app::App;
pub use router::handle;
pub use serve::{Listeners, serve};

#[cfg(test)]
mod tests;
