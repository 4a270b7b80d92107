//! The crate's error type and its rendering as a Directus error response.
//!
//! Owns: every failure the server can report, with the HTTP status, the `extensions.code` and
//! the extra `extensions` members Directus sends for it. Must not: decide *when* an error
//! happens (that is the job of the store, query and HTTP modules).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

/// A failure, shaped like the Directus error it stands for.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// 403 `FORBIDDEN` without a reason (missing item, invalid key, no permission).
    #[error("You don't have permission to access this.")]
    Forbidden,
    /// 403 `FORBIDDEN` whose message is the reason (unknown collection or field).
    #[error("{reason}")]
    ForbiddenReason { reason: String },
    /// 400 `INVALID_QUERY`.
    #[error("Invalid query. {0}.")]
    InvalidQuery(String),
    /// 400 `INVALID_PAYLOAD`.
    #[error("Invalid payload. {0}.")]
    InvalidPayload(String),
    /// 400 `RECORD_NOT_UNIQUE`: a primary key or unique field value already exists.
    #[error("{}", not_unique_message(collection, field, value))]
    RecordNotUnique {
        collection: String,
        field: String,
        value: Value,
    },
    /// 400 `NOT_NULL_VIOLATION`.
    #[error("Value for field \"{field}\" in collection \"{collection}\" can't be null.")]
    NotNullViolation { collection: String, field: String },
    /// 401 `TOKEN_EXPIRED`.
    #[error("Token expired.")]
    TokenExpired,
    /// 401 `INVALID_CREDENTIALS`.
    #[error("Invalid user credentials.")]
    InvalidCredentials,
    /// 403 `INVALID_TOKEN`.
    #[error("Invalid token.")]
    InvalidToken,
    /// 404 `ROUTE_NOT_FOUND`.
    #[error("Route {path} doesn't exist.")]
    RouteNotFound { path: String },
    /// Direct access only: the item does not exist. Over HTTP Directus answers 403 instead.
    #[error("Item \"{key}\" does not exist in collection \"{collection}\".")]
    ItemNotFound { collection: String, key: String },
    /// 500 `INTERNAL_SERVER_ERROR`: an exception inside Directus, e.g. a date it cannot read.
    #[error("{0}")]
    Internal(String),
    /// A failure injected by a fault rule.
    #[error("{}", .0.message)]
    Injected(Box<InjectedFailure>),
}

/// The response an injected fault answers with.
#[derive(Debug, Clone, PartialEq)]
pub struct InjectedFailure {
    pub status: u16,
    pub code: String,
    pub message: String,
    pub extensions: Map<String, Value>,
    pub retry_after: Option<u32>,
}

/// Directus leaves the value out of the message when it is empty.
fn not_unique_message(collection: &str, field: &str, value: &Value) -> String {
    let shown = match value {
        Value::Null => String::new(),
        Value::String(s) if s.is_empty() => String::new(),
        Value::String(s) => format!("\"{s}\" "),
        Value::Number(n) if n.as_f64() == Some(0.0) => String::new(),
        other => format!("\"{other}\" "),
    };
    format!("Value {shown}for field \"{field}\" in collection \"{collection}\" has to be unique.")
}

impl Error {
    /// 403 for a collection that does not exist, worded like Directus's permission check.
    pub(crate) fn unknown_collection(collection: &str) -> Self {
        Error::ForbiddenReason {
            reason: format!(
                "You don't have permission to access collection \"{collection}\" or it does not exist. Queried in root."
            ),
        }
    }

    /// 403 for fields that do not exist, worded like Directus's path validation.
    pub(crate) fn unknown_fields(collection: &str, fields: &[String]) -> Self {
        let list = fields
            .iter()
            .map(|f| format!("\"{f}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let reason = if fields.len() == 1 {
            format!(
                "You don't have permission to access field {list} in collection \"{collection}\" or it does not exist. Queried in root."
            )
        } else {
            format!(
                "You don't have permission to access fields {list} in collection \"{collection}\" or they do not exist. Queried in root."
            )
        };
        Error::ForbiddenReason { reason }
    }

    /// The HTTP status Directus answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            Error::Forbidden
            | Error::ForbiddenReason { .. }
            | Error::InvalidToken
            | Error::ItemNotFound { .. } => StatusCode::FORBIDDEN,
            Error::InvalidQuery(_)
            | Error::InvalidPayload(_)
            | Error::RecordNotUnique { .. }
            | Error::NotNullViolation { .. } => StatusCode::BAD_REQUEST,
            Error::TokenExpired | Error::InvalidCredentials => StatusCode::UNAUTHORIZED,
            Error::RouteNotFound { .. } => StatusCode::NOT_FOUND,
            Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Error::Injected(f) => {
                StatusCode::from_u16(f.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            }
        }
    }

    /// The `extensions.code` Directus sends.
    pub fn code(&self) -> &str {
        match self {
            Error::Forbidden | Error::ForbiddenReason { .. } | Error::ItemNotFound { .. } => {
                "FORBIDDEN"
            }
            Error::InvalidQuery(_) => "INVALID_QUERY",
            Error::InvalidPayload(_) => "INVALID_PAYLOAD",
            Error::RecordNotUnique { .. } => "RECORD_NOT_UNIQUE",
            Error::NotNullViolation { .. } => "NOT_NULL_VIOLATION",
            Error::TokenExpired => "TOKEN_EXPIRED",
            Error::InvalidCredentials => "INVALID_CREDENTIALS",
            Error::InvalidToken => "INVALID_TOKEN",
            Error::RouteNotFound { .. } => "ROUTE_NOT_FOUND",
            Error::Internal(_) => "INTERNAL_SERVER_ERROR",
            Error::Injected(f) => &f.code,
        }
    }

    /// The `extensions` object: the code first, then the members Directus adds for this error.
    pub fn extensions(&self) -> Map<String, Value> {
        let mut ext = Map::new();
        ext.insert("code".into(), json!(self.code()));
        match self {
            Error::ForbiddenReason { reason } => {
                ext.insert("reason".into(), json!(reason));
            }
            Error::InvalidQuery(reason) | Error::InvalidPayload(reason) => {
                ext.insert("reason".into(), json!(reason));
            }
            Error::RecordNotUnique {
                collection,
                field,
                value,
            } => {
                ext.insert("collection".into(), json!(collection));
                ext.insert("field".into(), json!(field));
                ext.insert("value".into(), value.clone());
            }
            Error::NotNullViolation { collection, field } => {
                ext.insert("collection".into(), json!(collection));
                ext.insert("field".into(), json!(field));
            }
            Error::RouteNotFound { path } => {
                ext.insert("path".into(), json!(path));
            }
            Error::Injected(f) => ext.extend(f.extensions.clone()),
            _ => {}
        }
        ext
    }

    /// The full `{"errors":[...]}` body.
    pub fn body(&self) -> Value {
        json!({ "errors": [ { "message": self.to_string(), "extensions": self.extensions() } ] })
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let mut response = (self.status(), axum::Json(self.body())).into_response();
        if let Error::Injected(f) = &self
            && let Some(secs) = f.retry_after
        {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_unique_message_matches_directus() {
        let e = Error::RecordNotUnique {
            collection: "notes".into(),
            field: "id".into(),
            value: json!("abc"),
        };
        assert_eq!(
            e.to_string(),
            "Value \"abc\" for field \"id\" in collection \"notes\" has to be unique."
        );
        assert_eq!(e.extensions()["field"], json!("id"));
    }

    #[test]
    fn query_error_carries_reason() {
        let e = Error::InvalidQuery("Bad".into());
        assert_eq!(e.to_string(), "Invalid query. Bad.");
        assert_eq!(e.body()["errors"][0]["extensions"]["reason"], json!("Bad"));
    }
}
