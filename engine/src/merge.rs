//! Three-way merge of a row changed on both sides: base, local and server versions compared
//! field by field.
//!
//! Owns the field-level decision only. A field changed on one side is taken from that side;
//! changed on both sides to the same value it is no conflict; changed on both sides to
//! different values it collides and the strategy decides it. With `merge: rows` the
//! strategy decides for the whole row. Pure: no IO, no clock; the driver carries the outcome
//! out and records it.

use std::collections::BTreeMap;

use schema::Merge;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::conflict::{Conflict, FieldChoice, FieldConflict, Resolution, Resolver};
use crate::model::Row;
use crate::plan::same_value;

/// Where a field of a merged row came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldSource {
    /// Changed locally only.
    Local,
    /// Changed on the server only.
    Remote,
    /// Changed on both sides to the same value.
    Same,
    /// Changed on both sides to different values; the strategy kept the local value.
    CollidedLocal,
    /// Changed on both sides to different values; the strategy kept the server value.
    CollidedRemote,
    /// Changed on both sides to different values; a person decides.
    Collided,
}

impl FieldSource {
    /// Whether the field changed on both sides to different values.
    pub fn collided(self) -> bool {
        matches!(
            self,
            FieldSource::CollidedLocal | FieldSource::CollidedRemote | FieldSource::Collided
        )
    }
}

/// The fields that changed since the base, by name, and where each merged value came from.
pub type FieldSources = BTreeMap<String, FieldSource>;

/// What a merge of an update-versus-update conflict comes to.
#[derive(Debug, Clone, PartialEq)]
pub enum MergeOutcome {
    /// The row to write locally and push over the server version (fields equal to the
    /// server's need no push), with where each changed field came from.
    Merged {
        row: Row,
        sources: FieldSources,
        resolution: Resolution,
    },
    /// A person decides: the fields that changed, the colliding ones (all of them with
    /// `merge: rows`) marked [`FieldSource::Collided`].
    Park { sources: FieldSources },
}

/// How one field compares across the three versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Unchanged,
    Local,
    Remote,
    Same,
    Both,
}

/// Compares one field. A field the base does not know (no snapshot, or a field added to the
/// schema file after the snapshot was taken) counts as unchanged locally while it is empty
/// locally: it was never written here.
fn compare(base: Option<&Value>, local: &Value, remote: &Value) -> Change {
    let local_changed = match base {
        Some(b) => !same_value(local, b),
        None => !local.is_null(),
    };
    let remote_changed = match base {
        Some(b) => !same_value(remote, b),
        None => true,
    };
    match (local_changed, remote_changed) {
        _ if same_value(local, remote) => {
            if local_changed {
                Change::Same
            } else {
                Change::Unchanged
            }
        }
        (false, _) => Change::Remote,
        (true, false) => Change::Local,
        (true, true) => Change::Both,
    }
}

/// Merges the local and server versions of `conflict` (an update on both sides, or a create
/// that met an existing row) against its base, asking `resolver` for the colliding fields.
pub fn merge(conflict: &Conflict<'_>, resolver: &dyn Resolver, mode: Merge) -> MergeOutcome {
    let remote = conflict
        .remote
        .expect("a merge needs the server version")
        .data
        .clone();
    let local = &conflict.local.data;
    let null = Value::Null;
    let mut fields: Vec<&String> = remote.keys().collect();
    fields.extend(local.keys().filter(|f| !remote.contains_key(*f)));
    let mut changes: Vec<(&String, Change)> = Vec::new();
    for field in fields {
        let base = conflict.base.and_then(|b| b.get(field));
        let l = local.get(field).unwrap_or(&null);
        let r = remote.get(field).unwrap_or(&null);
        let change = compare(base, l, r);
        if change != Change::Unchanged {
            changes.push((field, change));
        }
    }
    if mode == Merge::Rows {
        return merge_rows(conflict, resolver, &remote, &changes);
    }
    let mut row = remote.clone();
    let mut sources = FieldSources::new();
    let mut parked = false;
    for (field, change) in changes {
        let l = local.get(field).unwrap_or(&null);
        let source = match change {
            Change::Unchanged => continue,
            Change::Remote => FieldSource::Remote,
            Change::Same => FieldSource::Same,
            Change::Local => FieldSource::Local,
            Change::Both => {
                let field_conflict = FieldConflict {
                    name: field,
                    base: conflict.base.and_then(|b| b.get(field)),
                    local: l,
                    remote: remote.get(field).unwrap_or(&null),
                };
                match resolver.resolve_field(conflict, &field_conflict) {
                    FieldChoice::Local => FieldSource::CollidedLocal,
                    FieldChoice::Remote => FieldSource::CollidedRemote,
                    FieldChoice::Park => {
                        parked = true;
                        FieldSource::Collided
                    }
                }
            }
        };
        if matches!(source, FieldSource::Local | FieldSource::CollidedLocal) {
            row.insert(field.clone(), l.clone());
        }
        sources.insert(field.clone(), source);
    }
    if parked {
        return MergeOutcome::Park { sources };
    }
    // A merge that keeps one side whole is recorded as that side winning.
    let resolution = if same_row(&row, &remote) {
        Resolution::TakeRemote
    } else if same_row(&row, local) {
        Resolution::KeepLocal
    } else {
        Resolution::Merged
    };
    MergeOutcome::Merged {
        row,
        sources,
        resolution,
    }
}

fn same_row(a: &Row, b: &Row) -> bool {
    let null = Value::Null;
    a.keys()
        .chain(b.keys())
        .all(|f| same_value(a.get(f).unwrap_or(&null), b.get(f).unwrap_or(&null)))
}

/// The strategy decides for the whole row; the sources still say which fields changed where.
fn merge_rows(
    conflict: &Conflict<'_>,
    resolver: &dyn Resolver,
    remote: &Row,
    changes: &[(&String, Change)],
) -> MergeOutcome {
    let resolution = resolver.resolve(conflict);
    let keep_local = match resolution {
        Resolution::Park => {
            let sources = changes
                .iter()
                .map(|(field, change)| {
                    let source = match change {
                        Change::Same => FieldSource::Same,
                        _ => FieldSource::Collided,
                    };
                    ((*field).clone(), source)
                })
                .collect();
            return MergeOutcome::Park { sources };
        }
        Resolution::KeepLocal => true,
        Resolution::TakeRemote | Resolution::Merged => false,
    };
    let row = if keep_local {
        let mut row = remote.clone();
        row.extend(conflict.local.data.clone());
        row
    } else {
        remote.clone()
    };
    let sources = changes
        .iter()
        .map(|(field, change)| {
            let source = match (change, keep_local) {
                (Change::Same, _) => FieldSource::Same,
                (Change::Local, true) => FieldSource::Local,
                (Change::Remote, false) => FieldSource::Remote,
                (_, true) => FieldSource::CollidedLocal,
                (_, false) => FieldSource::CollidedRemote,
            };
            ((*field).clone(), source)
        })
        .collect();
    MergeOutcome::Merged {
        row,
        sources,
        resolution,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conflict::{FirstWriteWins, LastWriteWins, Manual};
    use crate::model::{LocalRow, RemoteRow, Stamp, SyncStatus};
    use chrono::{TimeZone, Utc};
    use serde_json::json;

    fn row(v: Value) -> Row {
        v.as_object().cloned().unwrap()
    }

    fn at(s: i64) -> chrono::DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + s, 0).unwrap()
    }

    struct Case {
        name: &'static str,
        base: Option<Value>,
        local: Value,
        remote: Value,
        /// Local change at 20 s; the server changed at this second.
        remote_at: i64,
        resolver: &'static dyn Resolver,
        mode: Merge,
        expect: Expect,
    }

    enum Expect {
        Merged(Value, &'static [(&'static str, FieldSource)]),
        Park(&'static [&'static str]),
    }

    fn run(case: &Case) -> MergeOutcome {
        let local = LocalRow {
            key: "k".into(),
            status: SyncStatus::Updated,
            rev: 1,
            base: Some(Stamp(at(0))),
            change_key: Some("c".into()),
            changed_at: Some(at(20)),
            error: None,
            data: row(case.local.clone()),
        };
        let remote = RemoteRow {
            key: "k".into(),
            stamp: Stamp(at(case.remote_at)),
            data: row(case.remote.clone()),
        };
        let base = case.base.clone().map(row);
        let conflict = Conflict {
            collection: "c",
            local: &local,
            remote: Some(&remote),
            remote_deleted_at: None,
            local_changed_at: local.changed_at,
            base: base.as_ref(),
        };
        merge(&conflict, case.resolver, case.mode)
    }

    use FieldSource::*;

    #[test]
    fn merge_table() {
        let base = json!({"title": "t", "views": 1, "body": "b"});
        let cases = [
            Case {
                name: "different fields merge under every strategy (lww)",
                base: Some(base.clone()),
                local: json!({"title": "mine", "views": 1, "body": "b"}),
                remote: json!({"title": "t", "views": 3, "body": "b"}),
                remote_at: 30,
                resolver: &LastWriteWins,
                mode: Merge::Fields,
                expect: Expect::Merged(
                    json!({"title": "mine", "views": 3, "body": "b"}),
                    &[("title", Local), ("views", Remote)],
                ),
            },
            Case {
                name: "different fields merge under first_write_wins",
                base: Some(base.clone()),
                local: json!({"title": "mine", "views": 1, "body": "b"}),
                remote: json!({"title": "t", "views": 3, "body": "b"}),
                remote_at: 30,
                resolver: &FirstWriteWins,
                mode: Merge::Fields,
                expect: Expect::Merged(
                    json!({"title": "mine", "views": 3, "body": "b"}),
                    &[("title", Local), ("views", Remote)],
                ),
            },
            Case {
                name: "different fields merge under manual without a person",
                base: Some(base.clone()),
                local: json!({"title": "mine", "views": 1, "body": "b"}),
                remote: json!({"title": "t", "views": 3, "body": "b"}),
                remote_at: 30,
                resolver: &Manual,
                mode: Merge::Fields,
                expect: Expect::Merged(
                    json!({"title": "mine", "views": 3, "body": "b"}),
                    &[("title", Local), ("views", Remote)],
                ),
            },
            Case {
                name: "the same change on both sides is no conflict",
                base: Some(base.clone()),
                local: json!({"title": "same", "views": 1, "body": "b"}),
                remote: json!({"title": "same", "views": 1, "body": "b"}),
                remote_at: 30,
                resolver: &Manual,
                mode: Merge::Fields,
                expect: Expect::Merged(
                    json!({"title": "same", "views": 1, "body": "b"}),
                    &[("title", Same)],
                ),
            },
            Case {
                name: "lww: a collision goes to the later change (local)",
                base: Some(base.clone()),
                local: json!({"title": "mine", "views": 1, "body": "mine"}),
                remote: json!({"title": "theirs", "views": 3, "body": "b"}),
                remote_at: 10,
                resolver: &LastWriteWins,
                mode: Merge::Fields,
                expect: Expect::Merged(
                    json!({"title": "mine", "views": 3, "body": "mine"}),
                    &[("body", Local), ("title", CollidedLocal), ("views", Remote)],
                ),
            },
            Case {
                name: "lww: a collision goes to the later change (server)",
                base: Some(base.clone()),
                local: json!({"title": "mine", "views": 1, "body": "mine"}),
                remote: json!({"title": "theirs", "views": 3, "body": "b"}),
                remote_at: 30,
                resolver: &LastWriteWins,
                mode: Merge::Fields,
                expect: Expect::Merged(
                    json!({"title": "theirs", "views": 3, "body": "mine"}),
                    &[
                        ("body", Local),
                        ("title", CollidedRemote),
                        ("views", Remote),
                    ],
                ),
            },
            Case {
                name: "fww: a collision keeps the server value, the rest merges",
                base: Some(base.clone()),
                local: json!({"title": "mine", "views": 1, "body": "mine"}),
                remote: json!({"title": "theirs", "views": 1, "body": "b"}),
                remote_at: 10,
                resolver: &FirstWriteWins,
                mode: Merge::Fields,
                expect: Expect::Merged(
                    json!({"title": "theirs", "views": 1, "body": "mine"}),
                    &[("body", Local), ("title", CollidedRemote)],
                ),
            },
            Case {
                name: "manual: a collision parks the row naming the field",
                base: Some(base.clone()),
                local: json!({"title": "mine", "views": 1, "body": "mine"}),
                remote: json!({"title": "theirs", "views": 3, "body": "b"}),
                remote_at: 10,
                resolver: &Manual,
                mode: Merge::Fields,
                expect: Expect::Park(&["title"]),
            },
            Case {
                name: "a field the base does not know and local never wrote comes from the server",
                base: Some(json!({"title": "t"})),
                local: json!({"title": "mine", "views": null}),
                remote: json!({"title": "t", "views": 3}),
                remote_at: 30,
                resolver: &FirstWriteWins,
                mode: Merge::Fields,
                expect: Expect::Merged(
                    json!({"title": "mine", "views": 3}),
                    &[("title", Local), ("views", Remote)],
                ),
            },
            Case {
                name: "without a base every differing field collides",
                base: None,
                local: json!({"title": "mine", "views": 1}),
                remote: json!({"title": "theirs", "views": 1}),
                remote_at: 30,
                resolver: &FirstWriteWins,
                mode: Merge::Fields,
                expect: Expect::Merged(
                    json!({"title": "theirs", "views": 1}),
                    &[("title", CollidedRemote), ("views", Same)],
                ),
            },
            Case {
                name: "rows: the strategy takes the whole server row",
                base: Some(base.clone()),
                local: json!({"title": "mine", "views": 1, "body": "b"}),
                remote: json!({"title": "t", "views": 3, "body": "b"}),
                remote_at: 30,
                resolver: &FirstWriteWins,
                mode: Merge::Rows,
                expect: Expect::Merged(
                    json!({"title": "t", "views": 3, "body": "b"}),
                    &[("title", CollidedRemote), ("views", Remote)],
                ),
            },
            Case {
                name: "rows: lww keeps the whole later local row",
                base: Some(base.clone()),
                local: json!({"title": "mine", "views": 1, "body": "b"}),
                remote: json!({"title": "t", "views": 3, "body": "b"}),
                remote_at: 10,
                resolver: &LastWriteWins,
                mode: Merge::Rows,
                expect: Expect::Merged(
                    json!({"title": "mine", "views": 1, "body": "b"}),
                    &[("title", Local), ("views", CollidedLocal)],
                ),
            },
            Case {
                name: "rows: manual parks whatever changed",
                base: Some(base.clone()),
                local: json!({"title": "mine", "views": 1, "body": "b"}),
                remote: json!({"title": "t", "views": 3, "body": "b"}),
                remote_at: 10,
                resolver: &Manual,
                mode: Merge::Rows,
                expect: Expect::Park(&["title", "views"]),
            },
        ];
        for case in &cases {
            let outcome = run(case);
            match (&case.expect, outcome) {
                (
                    Expect::Merged(want, want_sources),
                    MergeOutcome::Merged {
                        row: got,
                        sources,
                        resolution,
                    },
                ) => {
                    let whole = |side: &Value| Value::Object(got.clone()) == *side;
                    let expected = if whole(&case.remote) {
                        Resolution::TakeRemote
                    } else if whole(&case.local) {
                        Resolution::KeepLocal
                    } else {
                        Resolution::Merged
                    };
                    assert_eq!(resolution, expected, "{}", case.name);
                    assert_eq!(Value::Object(got), *want, "{}", case.name);
                    let want_sources: FieldSources = want_sources
                        .iter()
                        .map(|(f, s)| ((*f).to_owned(), *s))
                        .collect();
                    assert_eq!(sources, want_sources, "{}", case.name);
                }
                (Expect::Park(want), MergeOutcome::Park { sources }) => {
                    let collided: Vec<&str> = sources
                        .iter()
                        .filter(|(_, s)| **s == Collided)
                        .map(|(f, _)| f.as_str())
                        .collect();
                    assert_eq!(collided, *want, "{}", case.name);
                }
                (_, other) => panic!("{}: unexpected {other:?}", case.name),
            }
        }
    }
}
