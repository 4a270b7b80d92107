//! Plain data the engine plans with: rows, keys, server stamps, sync states.
//!
//! Owns the vocabulary shared by the planner, the ports and the adapters. It must not know
//! how rows are stored or fetched: no SQL, no HTTP here.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

/// The synced fields of one row, by field name (primary key and cursor excluded).
pub type Row = serde_json::Map<String, serde_json::Value>;

/// A primary key in its text form (uuid and string keys as they are, integers in decimal).
pub type Key = String;

/// The server's version stamp of a row: the value of the collection's cursor field.
///
/// Kept as the instant it denotes; [`Stamp::to_wire`] renders it the way Directus does
/// (UTC, milliseconds, `Z`), which is also what compare-and-set requests send back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Stamp(pub DateTime<Utc>);

impl Stamp {
    /// Parses an RFC 3339 timestamp as Directus returns it.
    pub fn parse(text: &str) -> Option<Stamp> {
        DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|t| Stamp(t.with_timezone(&Utc)))
    }

    /// The Directus wire form: `2026-11-22T10:00:00.123Z`.
    pub fn to_wire(self) -> String {
        self.0.to_rfc3339_opts(SecondsFormat::Millis, true)
    }
}

impl std::fmt::Display for Stamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_wire())
    }
}

/// The `_sync_status` column: the public contract with applications that write plain SQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncStatus {
    /// Equal to the server version in the cursor column; written by the engine.
    Synced,
    /// Created locally, not yet acknowledged by the server.
    Created,
    /// Changed locally since its base version.
    Updated,
    /// Deleted locally; the engine pushes the delete, then removes the row.
    Deleted,
    /// Parked for a person; neither pushed nor overwritten until resolved.
    Conflict,
}

impl SyncStatus {
    pub const ALL: [SyncStatus; 5] = [
        SyncStatus::Synced,
        SyncStatus::Created,
        SyncStatus::Updated,
        SyncStatus::Deleted,
        SyncStatus::Conflict,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SyncStatus::Synced => "synced",
            SyncStatus::Created => "created",
            SyncStatus::Updated => "updated",
            SyncStatus::Deleted => "deleted",
            SyncStatus::Conflict => "conflict",
        }
    }

    pub fn parse(text: &str) -> Option<SyncStatus> {
        SyncStatus::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Whether the row carries a local change that still has to reach the server.
    pub fn is_pending(self) -> bool {
        matches!(
            self,
            SyncStatus::Created | SyncStatus::Updated | SyncStatus::Deleted
        )
    }
}

/// A local row with its sync bookkeeping.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalRow {
    pub key: Key,
    pub status: SyncStatus,
    /// Bumped on every write, by the engine or by the table's triggers.
    pub rev: i64,
    /// The server stamp this row derives from (`None`: never seen by the server).
    pub base: Option<Stamp>,
    /// Identity of the pending change, regenerated on every application write; sent as
    /// the `Idempotency-Key` and used to tell whether the row changed while it was pushed.
    pub change_key: Option<String>,
    /// When the application last changed the row (local clock).
    pub changed_at: Option<DateTime<Utc>>,
    /// Set when the server rejected the pending change for good (quarantined).
    pub error: Option<String>,
    pub data: Row,
}

/// A row as the server returned it.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteRow {
    pub key: Key,
    pub stamp: Stamp,
    pub data: Row,
}

/// The JSON form of a key for Directus: integers as numbers, everything else as strings.
pub fn key_to_json(key: &str, key_type: schema::KeyType) -> serde_json::Value {
    match key_type {
        schema::KeyType::Integer | schema::KeyType::AutoIncrement => key
            .parse::<i64>()
            .map(serde_json::Value::from)
            .unwrap_or_else(|_| serde_json::Value::from(key)),
        _ => serde_json::Value::from(key),
    }
}

/// The text form of a key found in a JSON document, if it is a string or an integer.
pub fn key_from_json(value: &serde_json::Value) -> Option<Key> {
    match value {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) if n.is_i64() || n.is_u64() => Some(n.to_string()),
        _ => None,
    }
}
