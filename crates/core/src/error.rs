//! The error a stage reports about one piece of bad input.

use serde::{Deserialize, Serialize};

/// A problem with one field of user input: a stable machine-readable `code`, a sentence for humans
/// and the dotted path of the offending field (`properties.plan`, `events[3].timestamp`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    pub code: String,
    pub message: String,
    pub field: String,
}

impl FieldError {
    pub fn new(code: &str, field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.to_owned(),
            message: message.into(),
            field: field.into(),
        }
    }

    /// The same error, with its field path placed below `prefix` (`properties` + `plan`).
    pub fn under(mut self, prefix: &str) -> Self {
        self.field = if self.field.is_empty() {
            prefix.to_owned()
        } else {
            format!("{prefix}.{}", self.field)
        };
        self
    }
}
