//! Decisions about single rows: what a pulled row or a logged delete does locally, how
//! pending rows are grouped into requests. Pure: data in, decisions out.

use serde_json::Value;

use std::collections::HashMap;

use crate::model::{Key, LocalRow, RemoteRow, Row, Stamp, SyncStatus};
use crate::ports::{Guard, RowOp};

/// What a pulled server row means for the local row with the same key.
pub fn pull_row(local: Option<&LocalRow>, remote: RemoteRow, archived: bool) -> Option<RowOp> {
    match local {
        None if archived => None,
        None => Some(RowOp::Pull(remote)),
        Some(l) if l.status == SyncStatus::Synced => {
            if l.base.is_some_and(|base| base >= remote.stamp) {
                None // already applied, or an older version re-read in the overlap window
            } else if archived {
                Some(RowOp::Remove {
                    key: remote.key,
                    guard: Guard::IfSynced,
                })
            } else {
                Some(RowOp::Pull(remote))
            }
        }
        // A pending or parked row is never overwritten here: the next push compares it
        // against the server version and the configured strategy decides.
        Some(_) => None,
    }
}

/// What a delete found in the activity log means for a local row.
#[derive(Debug, Clone, PartialEq)]
pub enum RemoteDelete {
    /// Nothing to do: absent, already re-created after the delete, or parked.
    Ignore,
    /// Remove the synced row.
    Remove(RowOp),
    /// Both sides deleted: drop the local tombstone.
    Purge(RowOp),
    /// The row has a pending local change: a conflict.
    Conflict,
}

pub fn remote_delete(local: Option<&LocalRow>, deleted_at: Option<Stamp>) -> RemoteDelete {
    let Some(l) = local else {
        return RemoteDelete::Ignore;
    };
    // A row written after the logged delete was re-created since: the delete is history.
    if let (Some(base), Some(at)) = (l.base, deleted_at)
        && base > at
    {
        return RemoteDelete::Ignore;
    }
    let remove = |guard| RowOp::Remove {
        key: l.key.clone(),
        guard,
    };
    match l.status {
        SyncStatus::Synced => RemoteDelete::Remove(remove(Guard::IfSynced)),
        SyncStatus::Deleted => {
            RemoteDelete::Purge(remove(Guard::IfUnchanged(l.change_key.clone())))
        }
        SyncStatus::Created | SyncStatus::Updated => RemoteDelete::Conflict,
        SyncStatus::Conflict => RemoteDelete::Ignore,
    }
}

/// Whether a server row carries the archive value that marks it deleted.
pub fn is_archived(raw: &Value, archive: Option<(&str, &Value)>) -> bool {
    archive.is_some_and(|(field, value)| raw.get(field) == Some(value))
}

/// Whether the server content equals the local content on every synced field, so that a
/// failed compare-and-set can be recognised as this client's own earlier write.
pub fn same_content(local: &Row, remote: &Row) -> bool {
    remote
        .iter()
        .all(|(field, value)| same_value(local.get(field).unwrap_or(&Value::Null), value))
}

/// Whether two field values are equal, whatever the spelling of numbers and timestamps.
pub fn same_value(a: &Value, b: &Value) -> bool {
    a == b || same_number(a, b) || same_instant(a, b)
}

fn same_number(a: &Value, b: &Value) -> bool {
    matches!((a.as_f64(), b.as_f64()), (Some(x), Some(y)) if x == y)
}

fn same_instant(a: &Value, b: &Value) -> bool {
    match (
        a.as_str().and_then(Stamp::parse),
        b.as_str().and_then(Stamp::parse),
    ) {
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

/// Orders rows so that a row referring to another of the same rows through one of
/// `self_references` (fields relating the collection to itself) comes after it. Otherwise the
/// order is kept; rows in a reference cycle keep their order too.
pub fn parents_first(rows: Vec<LocalRow>, self_references: &[&str]) -> Vec<LocalRow> {
    if self_references.is_empty() {
        return rows;
    }
    let position: HashMap<Key, usize> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| (r.key.clone(), i))
        .collect();
    let parents_of = |r: &LocalRow| -> Vec<usize> {
        self_references
            .iter()
            .filter_map(|f| r.data.get(*f).and_then(crate::model::key_from_json))
            .filter_map(|k| position.get(&k).copied())
            .collect()
    };
    let parents: Vec<Vec<usize>> = rows.iter().map(parents_of).collect();
    let mut placed = vec![false; rows.len()];
    let mut order = Vec::with_capacity(rows.len());
    // Each pass places every row whose parents are placed (or itself); a pass that places
    // nothing means a cycle, whose rows then go in their original order.
    while order.len() < rows.len() {
        let before = order.len();
        for i in 0..rows.len() {
            if !placed[i] && parents[i].iter().all(|&p| placed[p] || p == i) {
                placed[i] = true;
                order.push(i);
            }
        }
        if order.len() == before {
            let rest: Vec<usize> = (0..rows.len()).filter(|&i| !placed[i]).collect();
            for i in rest {
                placed[i] = true;
                order.push(i);
            }
        }
    }
    let mut slots: Vec<Option<LocalRow>> = rows.into_iter().map(Some).collect();
    order.into_iter().filter_map(|i| slots[i].take()).collect()
}

/// Splits items into consecutive batches whose serialized size stays under `max_bytes`
/// and whose length stays under `max_rows` (a single oversized item gets a batch of its own).
pub fn batches_by_size<T>(
    items: Vec<T>,
    size_of: impl Fn(&T) -> usize,
    max_bytes: usize,
    max_rows: usize,
) -> Vec<Vec<T>> {
    let mut out: Vec<Vec<T>> = Vec::new();
    let mut current = Vec::new();
    let mut bytes = 0;
    for item in items {
        let size = size_of(&item) + 1;
        if !current.is_empty() && (bytes + size > max_bytes || current.len() >= max_rows) {
            out.push(std::mem::take(&mut current));
            bytes = 0;
        }
        bytes += size;
        current.push(item);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// What an update sends: the fields of `data` that differ from `base`, the server version
/// the change started from. A field the base does not know (added to the schema file after
/// the base was taken) counts as changed only once it holds a value: until then it was
/// never written here, and the server's value stands.
pub fn update_patch(data: &Row, base: &Row) -> Row {
    data.iter()
        .filter(|(field, value)| match base.get(*field) {
            Some(b) => !same_value(value, b),
            None => !value.is_null(),
        })
        .map(|(field, value)| (field.clone(), value.clone()))
        .collect()
}

/// Updates that change the same fields to the same values, so that one compare-and-set
/// request over all their keys and base stamps can carry them.
#[derive(Debug, Clone, PartialEq)]
pub struct UpdateGroup {
    pub patch: Row,
    pub rows: Vec<LocalRow>,
}

/// Groups updates, each with its patch, by patch: at most `max_rows` per group. A patch no
/// other row shares goes one by one (the second list).
pub fn group_updates(
    rows: Vec<(LocalRow, Row)>,
    max_rows: usize,
) -> (Vec<UpdateGroup>, Vec<(LocalRow, Row)>) {
    let mut by_patch: Vec<UpdateGroup> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for (row, patch) in rows {
        let at = *index
            .entry(Value::Object(patch.clone()).to_string())
            .or_insert_with(|| {
                by_patch.push(UpdateGroup {
                    patch,
                    rows: Vec::new(),
                });
                by_patch.len() - 1
            });
        by_patch[at].rows.push(row);
    }
    let mut groups = Vec::new();
    let mut singles = Vec::new();
    for group in by_patch {
        if group.rows.len() < 2 {
            singles.extend(group.rows.into_iter().map(|r| (r, group.patch.clone())));
            continue;
        }
        for chunk in group.rows.chunks(max_rows.max(1)) {
            groups.push(UpdateGroup {
                patch: group.patch.clone(),
                rows: chunk.to_vec(),
            });
        }
    }
    (groups, singles)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{edited, local, row, stamp};
    use serde_json::json;

    fn remote(s: i64) -> RemoteRow {
        RemoteRow {
            key: "k".into(),
            stamp: stamp(s),
            data: Row::new(),
        }
    }

    #[test]
    fn pulling_the_same_version_twice_changes_nothing() {
        assert_eq!(
            pull_row(Some(&local(SyncStatus::Synced, 5)), remote(5), false),
            None
        );
        assert_eq!(
            pull_row(Some(&local(SyncStatus::Synced, 6)), remote(5), false),
            None
        );
        assert!(matches!(
            pull_row(Some(&local(SyncStatus::Synced, 4)), remote(5), false),
            Some(RowOp::Pull(_))
        ));
    }

    #[test]
    fn pending_rows_are_never_overwritten_by_a_pull() {
        for status in [
            SyncStatus::Created,
            SyncStatus::Updated,
            SyncStatus::Deleted,
            SyncStatus::Conflict,
        ] {
            assert_eq!(pull_row(Some(&local(status, 1)), remote(9), false), None);
        }
    }

    #[test]
    fn archived_rows_leave_the_local_table() {
        assert_eq!(pull_row(None, remote(5), true), None);
        assert!(matches!(
            pull_row(Some(&local(SyncStatus::Synced, 1)), remote(5), true),
            Some(RowOp::Remove {
                guard: Guard::IfSynced,
                ..
            })
        ));
        assert!(is_archived(
            &json!({"status": "archived"}),
            Some(("status", &json!("archived")))
        ));
    }

    #[test]
    fn remote_deletes_by_local_state() {
        assert_eq!(remote_delete(None, None), RemoteDelete::Ignore);
        assert!(matches!(
            remote_delete(Some(&local(SyncStatus::Synced, 1)), Some(stamp(2))),
            RemoteDelete::Remove(_)
        ));
        assert_eq!(
            remote_delete(Some(&local(SyncStatus::Synced, 3)), Some(stamp(2))),
            RemoteDelete::Ignore
        );
        assert_eq!(
            remote_delete(Some(&local(SyncStatus::Updated, 1)), Some(stamp(2))),
            RemoteDelete::Conflict
        );
        assert!(matches!(
            remote_delete(Some(&local(SyncStatus::Deleted, 1)), None),
            RemoteDelete::Purge(_)
        ));
    }

    #[test]
    fn content_comparison_tolerates_number_and_timestamp_spelling() {
        let mine = json!({"n": 1, "t": "2026-01-01T00:00:00Z"});
        let theirs = json!({"n": 1.0, "t": "2026-01-01T00:00:00.000Z"});
        assert!(same_content(
            mine.as_object().unwrap(),
            theirs.as_object().unwrap()
        ));
        let other = json!({"n": 2, "t": "2026-01-01T00:00:00.000Z"});
        assert!(!same_content(
            mine.as_object().unwrap(),
            other.as_object().unwrap()
        ));
    }

    #[test]
    fn batches_respect_bytes_and_rows() {
        let b = batches_by_size(vec![10, 10, 10, 50, 1], |n| *n, 25, 10);
        assert_eq!(b, vec![vec![10, 10], vec![10], vec![50], vec![1]]);
        let b = batches_by_size(vec![1; 5], |n| *n, 1000, 2);
        assert_eq!(b.len(), 3);
    }
    #[test]
    fn rows_referring_to_each_other_go_parents_first() {
        let row = |key: &str, parent: Option<&str>| LocalRow {
            key: key.into(),
            data: serde_json::json!({ "parent": parent })
                .as_object()
                .cloned()
                .unwrap(),
            ..local(SyncStatus::Created, 0)
        };
        // c -> b -> a, listed children first; d refers to a row not in the set.
        let rows = vec![
            row("c", Some("b")),
            row("b", Some("a")),
            row("d", Some("zz")),
            row("a", None),
        ];
        let keys = |rows: Vec<LocalRow>| rows.into_iter().map(|r| r.key).collect::<Vec<_>>();
        assert_eq!(
            keys(parents_first(rows.clone(), &["parent"])),
            ["d", "a", "b", "c"]
        );
        assert_eq!(keys(parents_first(rows, &[])), ["c", "b", "d", "a"]);
        // A cycle keeps its order.
        let cycle = vec![row("x", Some("y")), row("y", Some("x"))];
        assert_eq!(keys(parents_first(cycle, &["parent"])), ["x", "y"]);
    }

    #[test]
    fn an_update_sends_what_differs_from_its_base() {
        let base = row(json!({"title": "t", "views": 1, "n": 2}));
        let cases = [
            (
                json!({"title": "u", "views": 1, "n": 2}),
                json!({"title": "u"}),
            ),
            (json!({"title": "t", "views": 1, "n": 2.0}), json!({})),
            // A field the base does not know: sent once it holds a value, not before.
            (
                json!({"title": "t", "views": 1, "n": 2, "new": null}),
                json!({}),
            ),
            (
                json!({"title": "t", "views": 1, "n": 2, "new": 5}),
                json!({"new": 5}),
            ),
        ];
        for (data, patch) in cases {
            assert_eq!(
                update_patch(&row(data.clone()), &base),
                row(patch),
                "{data}"
            );
        }
    }

    #[test]
    fn updates_changing_the_same_fields_alike_share_a_request() {
        let views = row(json!({"views": 2}));
        let rows = vec![
            (edited("a", json!({})), views.clone()),
            (edited("b", json!({})), views.clone()),
            (edited("c", json!({})), views.clone()),
            (
                edited("d", json!({})),
                row(json!({"title": "u", "views": 2})),
            ),
        ];
        let (groups, singles) = group_updates(rows, 2);
        let keys = |rows: &[LocalRow]| rows.iter().map(|r| r.key.to_string()).collect::<Vec<_>>();
        assert_eq!(groups.len(), 2, "{groups:?}");
        assert!(groups.iter().all(|g| g.patch == views));
        assert_eq!(keys(&groups[0].rows), ["a", "b"]);
        assert_eq!(keys(&groups[1].rows), ["c"]);
        assert_eq!(singles.len(), 1);
        assert_eq!(singles[0].0.key, "d");
    }
}
