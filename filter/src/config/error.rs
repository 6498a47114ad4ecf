//! Why a configuration was refused: the field path and the reason, on one line.

use std::fmt;

/// A rejected configuration: which field, and why.
#[derive(Debug, Clone, PartialEq)]
pub enum ConfigError {
    /// The text is not JSON, a field has the wrong type, is unknown, or is missing.
    Json { path: String, message: String },
    /// A field is well-formed JSON but its value is not acceptable.
    Invalid { field: String, reason: String },
}

impl ConfigError {
    /// The field path the error is about (`.` for the whole document).
    pub fn field(&self) -> &str {
        match self {
            ConfigError::Json { path, .. } => path,
            ConfigError::Invalid { field, .. } => field,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Json { path, message } => {
                write!(f, "invalid grayguard config: field `{path}`: {message}")
            }
            ConfigError::Invalid { field, reason } => {
                write!(f, "invalid grayguard config: field `{field}`: {reason}")
            }
        }
    }
}

impl std::error::Error for ConfigError {}

/// A value that is not acceptable, at `field`.
pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}
