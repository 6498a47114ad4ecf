//! The HTTP layer (hyper 1): state, routing, body reading, the `/infer` handler and the serve
//! loop. It knows the [`Detector`](crate::detector::Detector) trait, never the model.

pub mod app;
pub mod body;
pub mod infer;
pub mod multipart;
pub mod reply;
pub mod router;
pub mod serve;

pub use app::App;
pub use router::handle;
pub use serve::serve;

#[cfg(test)]
mod tests;
