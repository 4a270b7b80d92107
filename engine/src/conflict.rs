//! Conflicts and the strategies that resolve them.
//!
//! A conflict is a row changed on both sides since its base version. This module owns the
//! decision only: given both versions it says which one stands. It must not do IO; the driver
//! carries the decision out and records it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::model::{LocalRow, RemoteRow, Row, Stamp, SyncStatus};

/// Which sides changed how.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConflictKind {
    /// Updated (or created with the same key) on both sides.
    UpdateUpdate,
    /// Deleted locally, updated on the server.
    LocalDeleteRemoteUpdate,
    /// Updated locally, deleted on the server.
    LocalUpdateRemoteDelete,
    /// The server rejected the local change for good; the row is quarantined.
    Rejected,
    /// A server row did not fit the configured types and was not applied.
    InvalidRemote,
}

impl ConflictKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ConflictKind::UpdateUpdate => "update_update",
            ConflictKind::LocalDeleteRemoteUpdate => "local_delete_remote_update",
            ConflictKind::LocalUpdateRemoteDelete => "local_update_remote_delete",
            ConflictKind::Rejected => "rejected",
            ConflictKind::InvalidRemote => "invalid_remote",
        }
    }

    pub fn parse(text: &str) -> Option<ConflictKind> {
        [
            ConflictKind::UpdateUpdate,
            ConflictKind::LocalDeleteRemoteUpdate,
            ConflictKind::LocalUpdateRemoteDelete,
            ConflictKind::Rejected,
            ConflictKind::InvalidRemote,
        ]
        .into_iter()
        .find(|k| k.as_str() == text)
    }
}

/// Both versions of a row in conflict, as a strategy sees them.
#[derive(Debug, Clone)]
pub struct Conflict<'a> {
    pub collection: &'a str,
    pub local: &'a LocalRow,
    /// `None` when the row was deleted on the server.
    pub remote: Option<&'a RemoteRow>,
    /// When the server deleted the row, if known (from the activity log).
    pub remote_deleted_at: Option<Stamp>,
    /// The local change time translated to the server clock (see [`ClockSkew`]).
    pub local_changed_at: Option<DateTime<Utc>>,
    /// The version both sides started from, when the local store kept it.
    pub base: Option<&'a Row>,
}

impl Conflict<'_> {
    pub fn kind(&self) -> ConflictKind {
        match (self.local.status, self.remote) {
            (SyncStatus::Deleted, _) => ConflictKind::LocalDeleteRemoteUpdate,
            (_, None) => ConflictKind::LocalUpdateRemoteDelete,
            _ => ConflictKind::UpdateUpdate,
        }
    }

    /// When the server side changed: its stamp, or the delete time when known.
    pub fn remote_changed_at(&self) -> Option<DateTime<Utc>> {
        match self.remote {
            Some(remote) => Some(remote.stamp.0),
            None => self.remote_deleted_at.map(|s| s.0),
        }
    }
}

/// What to do with a conflict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resolution {
    /// The local version stands and is pushed over the server's.
    KeepLocal,
    /// The server version stands; the local change is recorded as lost.
    TakeRemote,
    /// Neither: the row is parked for a person.
    Park,
    /// Fields of both versions were merged (see [`crate::merge`]); the record says which
    /// field came from where.
    Merged,
}

impl Resolution {
    pub fn as_str(self) -> &'static str {
        match self {
            Resolution::KeepLocal => "local",
            Resolution::TakeRemote => "remote",
            Resolution::Park => "parked",
            Resolution::Merged => "merged",
        }
    }

    pub fn parse(text: &str) -> Option<Resolution> {
        [
            Resolution::KeepLocal,
            Resolution::TakeRemote,
            Resolution::Park,
            Resolution::Merged,
        ]
        .into_iter()
        .find(|r| r.as_str() == text)
    }
}

/// One field changed on both sides, to different values, since the base.
#[derive(Debug, Clone, Copy)]
pub struct FieldConflict<'a> {
    pub name: &'a str,
    /// The field's value in the base version, when the base is known and has the field.
    pub base: Option<&'a serde_json::Value>,
    pub local: &'a serde_json::Value,
    pub remote: &'a serde_json::Value,
}

/// Which value a colliding field keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldChoice {
    Local,
    Remote,
    /// A person decides: the row is parked.
    Park,
}

/// A conflict strategy. Deciding is not IO, so the trait is synchronous and object safe.
pub trait Resolver: Send + Sync + std::fmt::Debug {
    /// Decides for the whole row: deletes against updates, and every update with
    /// `merge: rows`.
    fn resolve(&self, conflict: &Conflict<'_>) -> Resolution;

    /// Decides one field changed on both sides to different values (`merge: fields`, the
    /// default). Fields changed on one side only never reach a strategy. By default the
    /// row's decision applies to each colliding field.
    fn resolve_field(&self, conflict: &Conflict<'_>, field: &FieldConflict<'_>) -> FieldChoice {
        let _ = field;
        match self.resolve(conflict) {
            Resolution::KeepLocal => FieldChoice::Local,
            Resolution::Park => FieldChoice::Park,
            Resolution::TakeRemote | Resolution::Merged => FieldChoice::Remote,
        }
    }
}

/// The later change wins: the local change time against the server stamp (or delete time).
/// Ties, and server deletes of unknown time, go to the server. Per field, the times are the
/// rows' (a row's last change on each side), as neither side keeps a time per field.
#[derive(Debug, Clone, Copy, Default)]
pub struct LastWriteWins;

impl Resolver for LastWriteWins {
    fn resolve(&self, conflict: &Conflict<'_>) -> Resolution {
        match (conflict.local_changed_at, conflict.remote_changed_at()) {
            (Some(local), Some(remote)) if local > remote => Resolution::KeepLocal,
            _ => Resolution::TakeRemote,
        }
    }
}

/// Whatever reached the server first stays. A conflict means the server already holds a
/// change the local one did not see, so the server version stands, deletes included.
#[derive(Debug, Clone, Copy, Default)]
pub struct FirstWriteWins;

impl Resolver for FirstWriteWins {
    fn resolve(&self, _conflict: &Conflict<'_>) -> Resolution {
        Resolution::TakeRemote
    }
}

/// Every conflict is parked with base, local and remote versions until a person decides.
#[derive(Debug, Clone, Copy, Default)]
pub struct Manual;

impl Resolver for Manual {
    fn resolve(&self, _conflict: &Conflict<'_>) -> Resolution {
        Resolution::Park
    }
}

/// The resolver configured for a strategy.
pub fn resolver_for(strategy: schema::Strategy) -> Box<dyn Resolver> {
    match strategy {
        schema::Strategy::LastWriteWins => Box::new(LastWriteWins),
        schema::Strategy::FirstWriteWins => Box::new(FirstWriteWins),
        schema::Strategy::Manual => Box::new(Manual),
    }
}

/// The offset of the server clock from the local clock, estimated from response `Date`
/// headers (one-second resolution), so that last-write-wins compares times on one clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClockSkew(pub chrono::Duration);

impl ClockSkew {
    /// `server_date` was read from a response received at `local_now`. The header is
    /// truncated to the second, so half a second is added to centre the estimate.
    /// Estimates under a second are within the header's resolution and count as no skew.
    pub fn estimate(server_date: DateTime<Utc>, local_now: DateTime<Utc>) -> ClockSkew {
        let skew = server_date + chrono::Duration::milliseconds(500) - local_now;
        if skew.abs() < chrono::Duration::seconds(1) {
            ClockSkew::default()
        } else {
            ClockSkew(skew)
        }
    }

    /// A local time expressed on the server clock.
    pub fn to_server(self, local: DateTime<Utc>) -> DateTime<Utc> {
        local + self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + s, 0).unwrap()
    }

    fn local(status: SyncStatus) -> LocalRow {
        LocalRow {
            key: "k".into(),
            status,
            rev: 1,
            base: Some(Stamp(at(0))),
            change_key: Some("c".into()),
            changed_at: Some(at(10)),
            error: None,
            data: Row::new(),
        }
    }

    fn remote(s: i64) -> RemoteRow {
        RemoteRow {
            key: "k".into(),
            stamp: Stamp(at(s)),
            data: Row::new(),
        }
    }

    fn conflict<'a>(local: &'a LocalRow, remote: Option<&'a RemoteRow>) -> Conflict<'a> {
        Conflict {
            collection: "c",
            local,
            remote,
            remote_deleted_at: None,
            local_changed_at: local.changed_at,
            base: None,
        }
    }

    #[test]
    fn last_write_wins_takes_the_later_side_and_gives_ties_to_the_server() {
        let l = local(SyncStatus::Updated);
        assert_eq!(
            LastWriteWins.resolve(&conflict(&l, Some(&remote(5)))),
            Resolution::KeepLocal
        );
        assert_eq!(
            LastWriteWins.resolve(&conflict(&l, Some(&remote(10)))),
            Resolution::TakeRemote
        );
        assert_eq!(
            LastWriteWins.resolve(&conflict(&l, Some(&remote(20)))),
            Resolution::TakeRemote
        );
    }

    #[test]
    fn last_write_wins_against_a_delete_uses_the_delete_time() {
        let l = local(SyncStatus::Updated);
        let mut c = conflict(&l, None);
        assert_eq!(
            LastWriteWins.resolve(&c),
            Resolution::TakeRemote,
            "unknown delete time"
        );
        c.remote_deleted_at = Some(Stamp(at(5)));
        assert_eq!(LastWriteWins.resolve(&c), Resolution::KeepLocal);
        assert_eq!(c.kind(), ConflictKind::LocalUpdateRemoteDelete);
    }

    #[test]
    fn first_write_wins_and_manual() {
        let l = local(SyncStatus::Deleted);
        let r = remote(1);
        let c = conflict(&l, Some(&r));
        assert_eq!(c.kind(), ConflictKind::LocalDeleteRemoteUpdate);
        assert_eq!(FirstWriteWins.resolve(&c), Resolution::TakeRemote);
        assert_eq!(Manual.resolve(&c), Resolution::Park);
    }

    #[test]
    fn skew_moves_local_times_onto_the_server_clock() {
        let skew = ClockSkew::estimate(at(100), at(40));
        assert_eq!(
            skew.to_server(at(0)),
            at(60) + chrono::Duration::milliseconds(500)
        );
        let within_resolution =
            ClockSkew::estimate(at(100), at(100) + chrono::Duration::milliseconds(900));
        assert_eq!(within_resolution, ClockSkew::default());
    }
}
