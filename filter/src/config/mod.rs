//! The plugin configuration: the JSON contract and its validation into a typed [`Config`].
//! Every rejection is a [`ConfigError`] naming the field path (`rules[0].hours.from`) and
//! the reason.
//!
//! - `raw`: the serde shapes (unknown fields and wrong types are rejected);
//! - `validate`: [`parse`], every value judged, the secrets from the environment;
//! - `fields`: checks of single values; `limits`: every accepted range and default;
//! - `types`: the validated [`Config`] the rest of the filter reads;
//! - `error`: [`ConfigError`].

mod error;
mod fields;
mod limits;
mod raw;
mod types;
mod validate;

pub use error::ConfigError;
pub use limits::*;
pub use types::*;
pub use validate::parse;

#[cfg(test)]
mod tests;
