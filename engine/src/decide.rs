//! Decisions taken on a server's answer to a push, on the activity log, and on a person's
//! choice.
//!
//! Owns what an answer means for the rows it concerns: a create that failed, a row read back
//! after a compare-and-set matched nothing, a key a delete left standing, the delete of a row
//! whose create was never acknowledged, rows held back because a parent never reached the
//! server, whether the activity log can tell every delete, and what a person's choice does.
//! Pure: data in, decisions out; the driver in [`crate::sync`] does the IO and carries them
//! out. Each decision has a table of golden cases below.

use std::collections::{HashMap, HashSet};

use crate::conflict::FieldChoice;
use crate::error::RemoteErrorKind;
use crate::model::{Key, LocalRow, Row, Stamp, SyncStatus, key_from_json};
use crate::plan::same_content;

/// What a failed create calls for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateFailure {
    /// Out of reach, overloaded, or the credentials refused: the push stops, the rows stay
    /// pending.
    Stop,
    /// A batch refused as a whole, and Directus does not say for which row: one by one.
    OneByOne,
    /// The key exists: an earlier attempt may have landed. Read the row back and compare.
    ReadBack,
    /// Forbidden: the token's permissions tell whether the collection or the row is refused.
    AskPermissions,
    /// The server refuses this row for good: quarantine it.
    Quarantine,
}

/// Decides a create of `rows` rows in one request that failed with `kind`. A forbidden
/// batch found to be about its rows is decided again as rejected.
pub fn create_failure(kind: RemoteErrorKind, rows: usize) -> CreateFailure {
    use RemoteErrorKind as K;
    match kind {
        K::Unreachable | K::Unavailable | K::Auth | K::Protocol => CreateFailure::Stop,
        K::Forbidden => CreateFailure::AskPermissions,
        _ if rows > 1 => CreateFailure::OneByOne,
        K::NotUnique => CreateFailure::ReadBack,
        _ => CreateFailure::Quarantine,
    }
}

/// A server version as read back by key.
#[derive(Debug, Clone, Copy)]
pub struct ServerVersion<'a> {
    /// `None` when even its stamp is unreadable.
    pub stamp: Option<Stamp>,
    pub data: &'a Row,
    /// Whether it fits the configured types.
    pub fits: bool,
}

/// What a row read back after its compare-and-set matched nothing (or after its create met an
/// existing key) means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadBack {
    /// The server holds exactly the local content: an earlier attempt landed. Settle on it.
    Settle(Stamp),
    /// A local delete whose row the server no longer has: done.
    Forget,
    /// The server version does not fit the configuration: record it; the change waits.
    RecordInvalid,
    /// Changed on both sides: merge or let the strategy decide.
    Conflict,
}

pub fn read_back(local: &LocalRow, server: Option<ServerVersion<'_>>) -> ReadBack {
    let deleted = local.status == SyncStatus::Deleted;
    match server {
        Some(v) if !v.fits => ReadBack::RecordInvalid,
        Some(ServerVersion {
            stamp: Some(stamp),
            data,
            ..
        }) if !deleted && same_content(&local.data, data) => ReadBack::Settle(stamp),
        None if deleted => ReadBack::Forget,
        _ => ReadBack::Conflict,
    }
}

/// What a key sent in a delete by query says when read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteOutcome {
    /// Gone: deleted now or earlier. The local row goes.
    Deleted,
    /// Still at the stamp it was deleted against: the server's query limit cut the batch
    /// short. It stays pending for the next sync.
    NotReached,
    /// Does not fit the configuration: recorded; the delete waits.
    RecordInvalid,
    /// Changed on the server since: a local delete against a remote update.
    Conflict,
}

pub fn delete_outcome(base: Option<Stamp>, survivor: Option<ServerVersion<'_>>) -> DeleteOutcome {
    match survivor {
        None => DeleteOutcome::Deleted,
        Some(v) if v.stamp.is_some() && v.stamp == base => DeleteOutcome::NotReached,
        Some(v) if !v.fits => DeleteOutcome::RecordInvalid,
        Some(_) => DeleteOutcome::Conflict,
    }
}

/// How the read of a collection's deletes from the activity log went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogRead {
    /// The token may not read the log.
    Forbidden,
    /// A page was read; `anchored`: it proves entry `after` or `after + 1` is still there.
    Read { anchored: bool },
}

/// Whether the activity log tells every delete after the cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogTrust {
    Trusted,
    /// Read the collection's deletes after the cursor, then decide again.
    ReadLog,
    /// Read the oldest entry the log still keeps, then decide again.
    AskOldest,
    /// It cannot: compare keys instead, for this reason.
    Untrusted(String),
}

/// Decides, a step at a time, whether the deletes logged after entry `after` can be trusted:
/// the collection's accountability (`None`: its settings are not readable), how the read of
/// the log went (`None`: not read yet), and the oldest entry kept (`None`: not asked yet;
/// `Some(None)`: the log is empty). Each answer asks for the next read or decides.
pub fn activity_log_trust(
    logging: Option<bool>,
    read: Option<LogRead>,
    oldest: Option<Option<i64>>,
    after: i64,
) -> LogTrust {
    match (logging, read, oldest) {
        (Some(false), _, _) => LogTrust::Untrusted("the collection's accountability is off".into()),
        (_, None, _) => LogTrust::ReadLog,
        (_, Some(LogRead::Forbidden), _) => {
            LogTrust::Untrusted("the activity log is not readable with this token".into())
        }
        (_, Some(LogRead::Read { anchored: true }), _) => LogTrust::Trusted,
        // Neither entry `after` nor `after + 1` is left: retention may have removed entries
        // after the cursor, unless the log holds nothing older than them at all.
        (_, _, None) => LogTrust::AskOldest,
        (_, _, Some(Some(oldest))) if oldest > after + 1 => LogTrust::Untrusted(format!(
            "retention removed activity after the stored cursor ({after}); the oldest entry is {oldest}"
        )),
        _ => LogTrust::Trusted,
    }
}

/// The first parent of `row`, through `self_references` (fields relating the collection to
/// itself), that is among `keys`.
pub fn parent_among(row: &LocalRow, self_references: &[&str], keys: &HashSet<Key>) -> Option<Key> {
    self_references
        .iter()
        .filter_map(|f| row.data.get(*f).and_then(key_from_json))
        .find(|k| *k != row.key && keys.contains(k))
}

/// A configured relation of the pushed rows: the field holding the parent's key, and the
/// parent rows found locally under the keys the rows name.
#[derive(Debug, Clone, Copy)]
pub struct Relation<'a> {
    pub field: &'a str,
    pub parents: &'a HashMap<Key, LocalRow>,
    /// The parent collection is the rows' own: a parent pushed in the same chunk goes first.
    pub same_collection: bool,
}

/// The rows to hold back, each with the parent key that holds it: a row whose parent never
/// reached the server (rejected, parked, or not yet pushed) would only meet a foreign-key
/// error. Within the collection, through `self_references`, a row whose parent is held back
/// waits with it.
pub fn held_back(
    rows: &[LocalRow],
    relations: &[Relation<'_>],
    self_references: &[&str],
) -> Vec<(Key, Key)> {
    let in_chunk: HashSet<&Key> = rows.iter().map(|r| &r.key).collect();
    let parent_key = |r: &LocalRow, field: &str| r.data.get(field).and_then(key_from_json);
    let mut held: Vec<(Key, Key)> = Vec::new();
    let mut held_keys: HashSet<Key> = HashSet::new();
    for relation in relations {
        for r in rows {
            let Some(parent) = parent_key(r, relation.field) else {
                continue;
            };
            let unplaced = relation.parents.get(&parent).is_some_and(|p| {
                p.base.is_none()
                    && p.status != SyncStatus::Synced
                    && !(relation.same_collection && in_chunk.contains(&p.key))
            });
            if unplaced && held_keys.insert(r.key.clone()) {
                held.push((r.key.clone(), parent));
            }
        }
    }
    // Within the collection, a row whose parent is held back waits with it.
    loop {
        let next = rows
            .iter()
            .filter(|r| !held_keys.contains(&r.key))
            .find_map(|r| Some((r.key.clone(), parent_among(r, self_references, &held_keys)?)));
        match next {
            Some((key, parent)) => {
                held_keys.insert(key.clone());
                held.push((key, parent));
            }
            None => return held,
        }
    }
}

/// What to do with the local delete of a row the server never acknowledged (created, then
/// deleted before a push was answered).
#[derive(Debug, Clone, PartialEq)]
pub enum UnacknowledgedDelete {
    /// The server does not hold the key: nothing to delete, the local tombstone goes.
    Forget,
    /// The server holds this row's content: an earlier create landed. Delete it, compared on
    /// this stamp.
    Delete(Stamp),
    /// The server holds other content under the key: changed since the create landed, or,
    /// with keys that are not uuids, another client's row. Never deleted by key alone: the
    /// strategy decides, as for a delete against an update.
    Conflict,
}

/// Decides an unacknowledged delete from the server's version of the key, if any.
pub fn unacknowledged_delete(
    local: &LocalRow,
    remote: Option<(Stamp, &Row)>,
) -> UnacknowledgedDelete {
    match remote {
        None => UnacknowledgedDelete::Forget,
        Some((stamp, data)) if same_content(&local.data, data) => {
            UnacknowledgedDelete::Delete(stamp)
        }
        Some(_) => UnacknowledgedDelete::Conflict,
    }
}

/// Which version a person chose for a recorded conflict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chosen {
    Local,
    Remote,
    /// Content the person supplied.
    Given,
}

/// Which content a row left pending by a person's decision carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Content {
    Local,
    Given,
}

/// What a person's decision does to the local row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PersonDecision {
    /// The server version stands (its absence, when the server deleted the row).
    TakeRemote,
    /// The content stays pending with `status` on the current server version (none: the
    /// server does not hold the row), and the next sync pushes it.
    Pending {
        status: SyncStatus,
        content: Content,
    },
    /// A local delete of a row the server no longer holds: done, the tombstone goes.
    Forget,
    /// Nothing local to keep (a server row that did not fit, never written here): closing
    /// the record is all.
    Close,
    /// A row parked by a field merge: merged again against the current server version, each
    /// colliding field going to the chosen side; the fields changed on one side only keep
    /// their merge.
    Merge(FieldChoice),
}

/// Decides what a person's choice on a record of `kind` does, given the local row, the
/// server version's stamp (`None`: the server does not hold the row), and `merge_fields`:
/// whether the collection merges fields and the server version fits, so that an update
/// against an update is merged again rather than decided whole.
pub fn person_decision(
    kind: crate::conflict::ConflictKind,
    chosen: Chosen,
    local: Option<&LocalRow>,
    remote: Option<Stamp>,
    merge_fields: bool,
) -> PersonDecision {
    use crate::conflict::ConflictKind as K;
    let on_server = remote.is_some();
    match (chosen, local) {
        (Chosen::Local | Chosen::Remote, Some(l))
            if kind == K::UpdateUpdate
                && merge_fields
                && on_server
                && l.status != SyncStatus::Deleted =>
        {
            PersonDecision::Merge(match chosen {
                Chosen::Local => FieldChoice::Local,
                _ => FieldChoice::Remote,
            })
        }
        (Chosen::Remote, _) => PersonDecision::TakeRemote,
        // Given content replaces whatever was pending, a local delete included.
        (Chosen::Given, _) => PersonDecision::Pending {
            status: if on_server {
                SyncStatus::Updated
            } else {
                SyncStatus::Created
            },
            content: Content::Given,
        },
        (Chosen::Local, None) => PersonDecision::Close,
        (Chosen::Local, Some(l)) => {
            let deleted = kind == K::LocalDeleteRemoteUpdate || l.status == SyncStatus::Deleted;
            let status = match () {
                _ if deleted && !on_server => return PersonDecision::Forget,
                _ if deleted => SyncStatus::Deleted,
                _ if !on_server => SyncStatus::Created,
                _ if kind == K::Rejected && l.status.is_pending() => l.status,
                _ => SyncStatus::Updated,
            };
            PersonDecision::Pending {
                status,
                content: Content::Local,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{edited, local, row, stamp};
    use serde_json::json;

    #[test]
    fn a_failed_create_by_kind_and_batch() {
        use CreateFailure as F;
        use RemoteErrorKind as K;
        let cases = [
            (K::Unreachable, 5, F::Stop),
            (K::Unavailable, 1, F::Stop),
            (K::Auth, 5, F::Stop),
            (K::Protocol, 1, F::Stop),
            (K::Forbidden, 5, F::AskPermissions),
            (K::Forbidden, 1, F::AskPermissions),
            (K::NotUnique, 5, F::OneByOne),
            (K::NotUnique, 1, F::ReadBack),
            (K::Rejected, 5, F::OneByOne),
            (K::Rejected, 1, F::Quarantine),
        ];
        for (kind, rows, want) in cases {
            assert_eq!(create_failure(kind, rows), want, "{kind:?} x{rows}");
        }
    }

    #[test]
    fn a_row_read_back_after_a_refused_write() {
        let mine = row(json!({"title": "mine"}));
        let theirs = row(json!({"title": "theirs"}));
        let at = |data, fits| ServerVersion {
            stamp: Some(stamp(5)),
            data,
            fits,
        };
        let updated = LocalRow {
            data: mine.clone(),
            ..local(SyncStatus::Updated, 1)
        };
        let deleted = LocalRow {
            data: mine.clone(),
            ..local(SyncStatus::Deleted, 1)
        };
        let cases = [
            (&updated, Some(at(&mine, true)), ReadBack::Settle(stamp(5))),
            (&updated, Some(at(&theirs, true)), ReadBack::Conflict),
            (&updated, Some(at(&mine, false)), ReadBack::RecordInvalid),
            (&updated, None, ReadBack::Conflict),
            (&deleted, None, ReadBack::Forget),
            (&deleted, Some(at(&mine, true)), ReadBack::Conflict),
        ];
        for (l, server, want) in cases {
            assert_eq!(
                read_back(l, server),
                want,
                "{:?} {:?}",
                l.status,
                server.map(|s| s.data)
            );
        }
    }

    #[test]
    fn a_key_left_standing_by_a_delete() {
        let data = Row::new();
        let at = |s: Option<i64>, fits| ServerVersion {
            stamp: s.map(stamp),
            data: &data,
            fits,
        };
        let base = Some(stamp(1));
        let cases = [
            (None, DeleteOutcome::Deleted),
            (Some(at(Some(1), true)), DeleteOutcome::NotReached),
            (Some(at(Some(1), false)), DeleteOutcome::NotReached),
            (Some(at(Some(2), true)), DeleteOutcome::Conflict),
            (Some(at(Some(2), false)), DeleteOutcome::RecordInvalid),
            (Some(at(None, false)), DeleteOutcome::RecordInvalid),
        ];
        for (survivor, want) in cases {
            assert_eq!(
                delete_outcome(base, survivor),
                want,
                "{:?}",
                survivor.map(|s| (s.stamp, s.fits))
            );
        }
    }

    #[test]
    fn when_the_activity_log_tells_every_delete() {
        use LogRead::*;
        use LogTrust::*;
        let read = |anchored| Some(Read { anchored });
        type Check = fn(&LogTrust) -> bool;
        type Case = (Option<bool>, Option<LogRead>, Option<Option<i64>>, Check);
        let cases: [Case; 11] = [
            (Some(false), None, None, |t| matches!(t, Untrusted(_))),
            (Some(false), read(true), None, |t| matches!(t, Untrusted(_))),
            (Some(true), None, None, |t| *t == ReadLog),
            (None, None, None, |t| *t == ReadLog),
            (None, Some(Forbidden), None, |t| matches!(t, Untrusted(_))),
            (Some(true), read(true), None, |t| *t == Trusted),
            (None, read(true), None, |t| *t == Trusted),
            (Some(true), read(false), None, |t| *t == AskOldest),
            (Some(true), read(false), Some(Some(12)), |t| {
                matches!(t, Untrusted(_))
            }),
            (Some(true), read(false), Some(Some(11)), |t| *t == Trusted),
            (Some(true), read(false), Some(None), |t| *t == Trusted),
        ];
        for (logging, how, oldest, want) in cases {
            let got = activity_log_trust(logging, how, oldest, 10);
            assert!(want(&got), "{logging:?} {how:?} {oldest:?}: {got:?}");
        }
    }

    #[test]
    fn rows_whose_parent_never_reached_the_server_are_held_back() {
        let parent = |key: &str, status, base: Option<i64>| LocalRow {
            key: key.into(),
            base: base.map(stamp),
            ..local(status, 0)
        };
        // Parents in another collection: pushed (p1), never pushed (p2), rejected or parked
        // after a create (p3), synced (p4).
        let parents: HashMap<Key, LocalRow> = [
            parent("p1", SyncStatus::Updated, Some(1)),
            parent("p2", SyncStatus::Created, None),
            parent("p3", SyncStatus::Conflict, None),
            parent("p4", SyncStatus::Synced, Some(1)),
        ]
        .into_iter()
        .map(|p| (p.key.clone(), p))
        .collect();
        let rows = vec![
            edited("a", json!({"author": "p1"})),
            edited("b", json!({"author": "p2"})),
            edited("c", json!({"author": "p3"})),
            edited("d", json!({"author": "p4"})),
            edited("e", json!({"author": null})),
            // Within the collection: f's parent b is held, g's parent f with it.
            edited("f", json!({"parent": "b"})),
            edited("g", json!({"parent": "f"})),
            // h's parent is created in this same chunk: it goes first, nothing waits.
            edited("h", json!({"parent": "i"})),
            LocalRow {
                base: None,
                status: SyncStatus::Created,
                ..edited("i", json!({}))
            },
        ];
        let own: HashMap<Key, LocalRow> = rows.iter().map(|r| (r.key.clone(), r.clone())).collect();
        let relations = [
            Relation {
                field: "author",
                parents: &parents,
                same_collection: false,
            },
            Relation {
                field: "parent",
                parents: &own,
                same_collection: true,
            },
        ];
        let held = held_back(&rows, &relations, &["parent"]);
        assert_eq!(
            held,
            [
                ("b".to_owned(), "p2".to_owned()),
                ("c".to_owned(), "p3".to_owned()),
                ("f".to_owned(), "b".to_owned()),
                ("g".to_owned(), "f".to_owned()),
            ]
        );
    }

    #[test]
    fn an_unacknowledged_delete_never_goes_by_key_alone() {
        let mine = LocalRow {
            base: None,
            ..edited("k", json!({"title": "mine"}))
        };
        let cases = [
            (None, UnacknowledgedDelete::Forget),
            (
                Some(row(json!({"title": "mine"}))),
                UnacknowledgedDelete::Delete(stamp(3)),
            ),
            (
                Some(row(json!({"title": "someone else's"}))),
                UnacknowledgedDelete::Conflict,
            ),
        ];
        for (remote, want) in cases {
            let got = unacknowledged_delete(&mine, remote.as_ref().map(|r| (stamp(3), r)));
            assert_eq!(got, want, "{remote:?}");
        }
    }

    #[test]
    fn a_persons_decision_by_kind_choice_and_server_version() {
        use crate::conflict::ConflictKind as K;
        use PersonDecision as D;
        let parked = local(SyncStatus::Conflict, 1);
        let deleted = local(SyncStatus::Deleted, 1);
        let pending = |status| D::Pending {
            status,
            content: Content::Local,
        };
        let given = |status| D::Pending {
            status,
            content: Content::Given,
        };
        let at = Some(stamp(5));
        let cases = [
            (
                K::UpdateUpdate,
                Chosen::Remote,
                Some(&parked),
                at,
                D::TakeRemote,
            ),
            (
                K::UpdateUpdate,
                Chosen::Local,
                Some(&parked),
                at,
                pending(SyncStatus::Updated),
            ),
            (
                K::UpdateUpdate,
                Chosen::Given,
                Some(&parked),
                at,
                given(SyncStatus::Updated),
            ),
            (
                K::LocalUpdateRemoteDelete,
                Chosen::Local,
                Some(&parked),
                None,
                pending(SyncStatus::Created),
            ),
            (
                K::LocalDeleteRemoteUpdate,
                Chosen::Local,
                Some(&parked),
                at,
                pending(SyncStatus::Deleted),
            ),
            (
                K::LocalDeleteRemoteUpdate,
                Chosen::Local,
                Some(&parked),
                None,
                D::Forget,
            ),
            // Content given on a local delete replaces the delete.
            (
                K::LocalDeleteRemoteUpdate,
                Chosen::Given,
                Some(&parked),
                at,
                given(SyncStatus::Updated),
            ),
            (
                K::LocalDeleteRemoteUpdate,
                Chosen::Given,
                Some(&parked),
                None,
                given(SyncStatus::Created),
            ),
            (
                K::Rejected,
                Chosen::Local,
                Some(&deleted),
                at,
                pending(SyncStatus::Deleted),
            ),
            (
                K::Rejected,
                Chosen::Local,
                Some(&local(SyncStatus::Created, 1)),
                at,
                pending(SyncStatus::Created),
            ),
            (K::InvalidRemote, Chosen::Local, None, at, D::Close),
            (
                K::InvalidRemote,
                Chosen::Given,
                None,
                at,
                given(SyncStatus::Updated),
            ),
        ];
        for (kind, chosen, l, remote, want) in cases {
            assert_eq!(
                person_decision(kind, chosen, l, remote, false),
                want,
                "{kind:?} {chosen:?} {:?} {remote:?}",
                l.map(|l| l.status)
            );
        }
    }

    #[test]
    fn a_persons_decision_on_a_parked_field_merge_merges_again() {
        use crate::conflict::ConflictKind as K;
        use PersonDecision as D;
        let parked = local(SyncStatus::Conflict, 1);
        let deleted = local(SyncStatus::Deleted, 1);
        let at = Some(stamp(5));
        let pending = |status| D::Pending {
            status,
            content: Content::Local,
        };
        let cases = [
            (
                K::UpdateUpdate,
                Chosen::Local,
                &parked,
                at,
                D::Merge(FieldChoice::Local),
            ),
            (
                K::UpdateUpdate,
                Chosen::Remote,
                &parked,
                at,
                D::Merge(FieldChoice::Remote),
            ),
            // Given content replaces the row whole; a row gone or deleted is no merge.
            (
                K::UpdateUpdate,
                Chosen::Given,
                &parked,
                at,
                D::Pending {
                    status: SyncStatus::Updated,
                    content: Content::Given,
                },
            ),
            (
                K::UpdateUpdate,
                Chosen::Local,
                &parked,
                None,
                pending(SyncStatus::Created),
            ),
            (
                K::UpdateUpdate,
                Chosen::Local,
                &deleted,
                at,
                pending(SyncStatus::Deleted),
            ),
            (
                K::LocalDeleteRemoteUpdate,
                Chosen::Local,
                &parked,
                at,
                pending(SyncStatus::Deleted),
            ),
            (
                K::LocalDeleteRemoteUpdate,
                Chosen::Remote,
                &parked,
                at,
                D::TakeRemote,
            ),
        ];
        for (kind, chosen, l, remote, want) in cases {
            assert_eq!(
                person_decision(kind, chosen, Some(l), remote, true),
                want,
                "{kind:?} {chosen:?} {:?} {remote:?}",
                l.status
            );
        }
    }
}
