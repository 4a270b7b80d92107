//! The engine's error type, classified so callers branch on kinds, never on messages.
//!
//! Adapters convert their own failures into [`RemoteError`] and [`StoreError`]; this module
//! must not depend on any transport or database type.

/// Result alias for the engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything a sync can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The remote failed or could not be reached; nothing local was lost.
    #[error("remote: {0}")]
    Remote(#[from] RemoteError),
    /// The local database failed.
    #[error("local store: {0}")]
    Store(#[from] StoreError),
    /// The caller named something the configuration does not have.
    #[error("{0}")]
    Usage(String),
}

impl Error {
    /// Whether retrying the whole operation later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Remote(e) => e.kind.is_transient(),
            Error::Store(_) | Error::Usage(_) => false,
        }
    }
}

/// How a remote failure should be handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RemoteErrorKind {
    /// Connection refused, reset or timed out, after retries.
    Unreachable,
    /// 429, 503 or another 5xx, after retries.
    Unavailable,
    /// Credentials rejected or expired beyond refresh.
    Auth,
    /// 403 FORBIDDEN: not allowed, or (Directus hides the difference) the item does not exist.
    Forbidden,
    /// RECORD_NOT_UNIQUE: a create met an existing primary key.
    NotUnique,
    /// The server refused this particular change for good (validation, payload, field).
    Rejected,
    /// The server answered something this client cannot understand.
    Protocol,
}

impl RemoteErrorKind {
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            RemoteErrorKind::Unreachable | RemoteErrorKind::Unavailable
        )
    }
}

/// A failure talking to the remote, with what the server said about it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}{}", code.as_deref().map(|c| format!(" ({c})")).unwrap_or_default())]
pub struct RemoteError {
    pub kind: RemoteErrorKind,
    /// HTTP status, when the server answered.
    pub status: Option<u16>,
    /// Directus `extensions.code`, when present.
    pub code: Option<String>,
    pub message: String,
}

impl RemoteError {
    pub fn new(kind: RemoteErrorKind, message: impl Into<String>) -> RemoteError {
        RemoteError {
            kind,
            status: None,
            code: None,
            message: message.into(),
        }
    }
}

/// A failure of the local database.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct StoreError {
    pub message: String,
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl StoreError {
    pub fn new(message: impl Into<String>) -> StoreError {
        StoreError {
            message: message.into(),
            source: None,
        }
    }
}
