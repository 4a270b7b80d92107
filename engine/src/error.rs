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
    /// The caller asked for something that cannot be: a collection or field the
    /// configuration does not have, a value that does not fit, a decided conflict.
    #[error("{0}")]
    Usage(UsageError),
    /// The schema file changed a field in a way the local table cannot follow.
    #[error("{0}")]
    SchemaChanged(SchemaChange),
    /// The server's collection does not fit the schema file in a way that would lose rows
    /// (a cursor that cannot see every row); nothing of the collection is synced.
    #[error("{0}")]
    ServerMismatch(ServerMismatch),
}

/// Why a collection cannot be synced safely with the server as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("collection {collection}, field {field}: {message}")]
pub struct ServerMismatch {
    pub collection: String,
    pub field: String,
    pub message: String,
}

/// What a caller asked for that cannot be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum UsageErrorKind {
    /// No collection of that name is configured.
    UnknownCollection,
    /// No field of that name is configured for the collection.
    UnknownField,
    /// A value does not fit its field, or a key is missing or malformed.
    InvalidValue,
    /// No conflict record has that id.
    UnknownConflict,
    /// The conflict record was decided already.
    AlreadyResolved,
    /// The server version chosen does not fit the configuration.
    ServerVersionDoesNotFit,
}

/// A request that cannot be carried out, with what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct UsageError {
    pub kind: UsageErrorKind,
    pub message: String,
}

impl Error {
    /// A usage error of `kind`.
    pub fn usage(kind: UsageErrorKind, message: impl Into<String>) -> Error {
        Error::Usage(UsageError {
            kind,
            message: message.into(),
        })
    }
}

/// A field whose type in the schema file differs from the type its local column was made
/// for. Nothing is changed: the file must go back to the old type, or the field must get a
/// new name (or the table be dropped and pulled again).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "collection {collection}, field {field}: the schema file says {now}, but the local column holds {was}; \
     keep {was}, or sync the field under a new name (a type change is not migrated)"
)]
pub struct SchemaChange {
    pub collection: String,
    pub field: String,
    /// The type the local column was made for.
    pub was: String,
    /// The type the schema file now gives.
    pub now: String,
}

/// What kind of failure an [`Error`] is, for reports and callers that branch on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorKind {
    Unreachable,
    Unavailable,
    Auth,
    Forbidden,
    NotUnique,
    Rejected,
    Protocol,
    StoreBusy,
    StoreChanged,
    InvalidLocalValue,
    Store,
    Usage,
    SchemaChanged,
    ServerMismatch,
}

impl ErrorKind {
    /// Whether retrying later may succeed without anyone changing anything.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            ErrorKind::Unreachable | ErrorKind::Unavailable | ErrorKind::StoreBusy
        )
    }
}

impl Error {
    /// The kind of this failure.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Remote(e) => match e.kind {
                RemoteErrorKind::Unreachable => ErrorKind::Unreachable,
                RemoteErrorKind::Unavailable => ErrorKind::Unavailable,
                RemoteErrorKind::Auth => ErrorKind::Auth,
                RemoteErrorKind::Forbidden => ErrorKind::Forbidden,
                RemoteErrorKind::NotUnique => ErrorKind::NotUnique,
                RemoteErrorKind::Rejected => ErrorKind::Rejected,
                RemoteErrorKind::Protocol => ErrorKind::Protocol,
            },
            Error::Store(e) => match e.kind {
                StoreErrorKind::Busy => ErrorKind::StoreBusy,
                StoreErrorKind::Changed => ErrorKind::StoreChanged,
                StoreErrorKind::InvalidValue => ErrorKind::InvalidLocalValue,
                StoreErrorKind::Other => ErrorKind::Store,
            },
            Error::Usage(_) => ErrorKind::Usage,
            Error::SchemaChanged(_) => ErrorKind::SchemaChanged,
            Error::ServerMismatch(_) => ErrorKind::ServerMismatch,
        }
    }

    /// Whether retrying the whole operation later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Remote(e) => e.kind.is_transient(),
            Error::Store(e) => e.kind == StoreErrorKind::Busy,
            Error::Usage(_) | Error::SchemaChanged(_) | Error::ServerMismatch(_) => false,
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

/// How a local database failure should be handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreErrorKind {
    /// Another connection or process holds the database; retrying later may succeed.
    Busy,
    /// A guarded all-or-nothing write found a row changed since it was read; nothing was
    /// written.
    Changed,
    /// A local value does not fit its configured field.
    InvalidValue,
    /// Anything else the database refused.
    Other,
}

/// A failure of the local database.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct StoreError {
    pub kind: StoreErrorKind,
    pub message: String,
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl StoreError {
    pub fn new(message: impl Into<String>) -> StoreError {
        StoreError::with_kind(StoreErrorKind::Other, message)
    }

    pub fn with_kind(kind: StoreErrorKind, message: impl Into<String>) -> StoreError {
        StoreError {
            kind,
            message: message.into(),
            source: None,
        }
    }
}
