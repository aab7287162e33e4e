//! Error types, one enum per domain.

use thiserror::Error;

/// A selector that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SelectorError {
    /// `position` is the 0-based character offset into `selector`.
    #[error("invalid selector \"{selector}\" at position {position}: expected {expected}, found {found}")]
    Syntax {
        selector: String,
        position: usize,
        expected: String,
        found: String,
    },
    /// The Kubernetes string form (`app=web,env in (a,b)`) that does not parse.
    #[error("label selector {selector:?}: {reason}")]
    Kubernetes { selector: String, reason: String },
}

/// A problem found while loading policy (or pod) objects. Loading goes on after
/// any of these: each names the file and, where there is one, the object and field.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LoadError {
    #[error("{file}: cannot read: {message}")]
    Io { file: String, message: String },
    /// The text is not YAML/JSON; `document` is the 0-based document index.
    #[error("{file}: document {document}: {message}")]
    Syntax {
        file: String,
        document: usize,
        message: String,
    },
    /// An object is malformed: `object` is e.g. "NetworkPolicy fme/core" or
    /// "document 2" when unnamed, `field` a path such as `spec.ingress[0].ports[1].port`.
    #[error("{file}: {object}: {field}: {message}")]
    Invalid {
        file: String,
        object: String,
        field: String,
        message: String,
    },
}

impl LoadError {
    pub fn file(&self) -> &str {
        match self {
            LoadError::Io { file, .. }
            | LoadError::Syntax { file, .. }
            | LoadError::Invalid { file, .. } => file,
        }
    }
}

/// A malformed field, before the loader adds the file and object names.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{path}: {message}")]
pub struct FieldError {
    pub path: String,
    pub message: String,
}

impl FieldError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// Failures of `recommend`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RecommendError {
    #[error("cannot render YAML: {0}")]
    Render(String),
}
