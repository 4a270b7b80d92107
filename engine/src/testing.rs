//! Rows and stamps for the unit tests of the planning modules.

use chrono::{TimeZone, Utc};

use crate::model::{LocalRow, Row, Stamp, SyncStatus};

/// The stamp `s` seconds after a fixed instant.
pub(crate) fn stamp(s: i64) -> Stamp {
    Stamp(Utc.timestamp_opt(1_700_000_000 + s, 0).unwrap())
}

/// A row `k` with `status`, based on `stamp(base)`, with no fields.
pub(crate) fn local(status: SyncStatus, base: i64) -> LocalRow {
    LocalRow {
        key: "k".into(),
        status,
        rev: 0,
        base: Some(stamp(base)),
        change_key: Some("c1".into()),
        changed_at: None,
        error: None,
        data: Row::new(),
    }
}

/// An updated row `key` holding `data`.
pub(crate) fn edited(key: &str, data: serde_json::Value) -> LocalRow {
    LocalRow {
        key: key.into(),
        data: row(data),
        ..local(SyncStatus::Updated, 1)
    }
}

/// A JSON object literal as a [`Row`].
pub(crate) fn row(v: serde_json::Value) -> Row {
    v.as_object().cloned().unwrap_or_default()
}
