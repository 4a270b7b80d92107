//! Rows changed on both sides: merged, settled by the strategy, parked, or decided by a
//! person.
//!
//! Owns carrying out the decisions of [`crate::merge`] and [`crate::conflict`] and recording
//! them. It must not speak HTTP or SQL.

use super::read::Fetched;
use super::*;
use crate::conflict::{FieldChoice, FieldConflict};
use crate::merge::{MergeOutcome, merge};

impl<S: Store, R: Remote> Engine<S, R> {
    /// The compare-and-set failed (or a create met an existing key): if the server already
    /// holds exactly the local content, an earlier attempt landed; otherwise it is a conflict.
    /// A server row that does not fit is recorded, and the local change waits.
    pub(super) async fn compare_and_settle(
        &self,
        c: &CollectionConfig,
        local: &LocalRow,
        fetched: Option<Fetched>,
        report: &mut CollectionReport,
    ) -> Result<()> {
        let server = fetched.as_ref().map(super::push::server_version);
        let ops = match decide::read_back(local, server) {
            decide::ReadBack::Settle(stamp) => vec![settle_op(local, stamp, None)],
            decide::ReadBack::Forget => vec![remove_op(local)],
            decide::ReadBack::RecordInvalid => {
                let Some(Err(invalid)) = &fetched else {
                    unreachable!("only a version that does not fit is recorded")
                };
                return self.record_invalid(c, &local.key, invalid, report).await;
            }
            decide::ReadBack::Conflict => Vec::new(),
        };
        if !ops.is_empty() {
            report.pushed += 1;
            let changes = Changes {
                ops,
                ..Default::default()
            };
            return self.store.apply(c, changes).await.map(drop);
        }
        let remote = fetched.and_then(Result::ok);
        let deleted_at = match (&remote, &c.deletes) {
            (None, Deletes::Activity) => self.remote.delete_time(&c.name, &local.key).await?,
            _ => None, // unknown: last-write-wins gives the delete to the server
        };
        self.resolve_conflict(c, local, remote, deleted_at, report)
            .await
    }

    pub(super) async fn resolve_conflict(
        &self,
        c: &CollectionConfig,
        local: &LocalRow,
        remote: Option<RemoteRow>,
        remote_deleted_at: Option<Stamp>,
        report: &mut CollectionReport,
    ) -> Result<()> {
        let base = self
            .store
            .bases(c, std::slice::from_ref(&local.key))
            .await?
            .remove(&local.key)
            .map(|b| b.data);
        let skew = self.remote.clock_skew();
        let conflict = Conflict {
            collection: &c.name,
            local,
            remote: remote.as_ref(),
            remote_deleted_at,
            local_changed_at: local.changed_at.map(|t| t + skew),
            base: base.as_ref(),
        };
        let kind = conflict.kind();
        let resolver = self.resolvers[&c.name].as_ref();
        let merged =
            (kind == ConflictKind::UpdateUpdate).then(|| merge(&conflict, resolver, c.merge));
        let resolution = match &merged {
            Some(MergeOutcome::Merged { resolution, .. }) => *resolution,
            Some(MergeOutcome::Park { .. }) => Resolution::Park,
            None => resolver.resolve(&conflict),
        };
        let (local_changed_at, remote_changed_at) =
            (conflict.local_changed_at, conflict.remote_changed_at());
        info!(collection = %c.name, key = %local.key, kind = kind.as_str(), resolution = resolution.as_str(), "conflict");
        report.conflicts += 1;
        let mut record = self.record(c, local, kind, base, remote.as_ref(), None);
        // What the strategy compared, so that every decision can be checked afterwards.
        record.local_changed_at = local_changed_at;
        record.remote_stamp = remote_changed_at.map(Stamp);
        record.resolution = (resolution != Resolution::Park).then_some(resolution);
        record.resolved_at = record.resolution.map(|_| Utc::now());
        let mut changes = Changes::default();
        let mut push_merged = None;
        match (merged, resolution) {
            (Some(MergeOutcome::Park { sources }), _) => {
                record.fields = Some(sources);
                report.parked += 1;
                changes.ops.push(park_op(local));
            }
            (Some(MergeOutcome::Merged { row, sources, .. }), _) => {
                let remote = remote.as_ref().expect("a merge has the server version");
                if c.merge == schema::Merge::Fields {
                    report.merged += 1;
                    report.merges.push(MergeNote {
                        key: local.key.clone(),
                        fields: sources.clone(),
                    });
                }
                record.fields = Some(sources);
                if plan::same_content(&row, &remote.data) {
                    // Nothing local survives the merge: the server version stands.
                    changes.ops.push(take_remote_op(local, Some(remote)));
                } else {
                    // The merged row is written first, pending on the server version it was
                    // merged with, so that what is pushed is exactly what stands locally.
                    changes.ops.push(RowOp::Rebase {
                        key: local.key.clone(),
                        change_key: local.change_key.clone(),
                        status: SyncStatus::Updated,
                        stamp: Some(remote.stamp),
                        data: row.clone(),
                        base: Some(remote.data.clone()),
                    });
                    push_merged = Some(LocalRow {
                        base: Some(remote.stamp),
                        status: SyncStatus::Updated,
                        data: row,
                        ..local.clone()
                    });
                }
            }
            (None, Resolution::Park) => {
                report.parked += 1;
                changes.ops.push(park_op(local));
            }
            (None, Resolution::TakeRemote) => {
                changes.ops.push(take_remote_op(local, remote.as_ref()))
            }
            (None, _) => changes
                .ops
                .push(self.push_over(c, local, remote.as_ref(), report).await?),
        }
        changes.records.push(record);
        self.store.apply(c, changes).await?;
        if let Some(merged) = push_merged {
            self.push_merged(c, &merged, remote.as_ref().expect("merged"), report)
                .await?;
        }
        Ok(())
    }

    /// Pushes a merged row over the server version it was merged with. When the server moved
    /// again meanwhile, the row stays pending and the next sync merges again.
    async fn push_merged(
        &self,
        c: &CollectionConfig,
        merged: &LocalRow,
        remote: &RemoteRow,
        report: &mut CollectionReport,
    ) -> Result<()> {
        let patch = plan::update_patch(&writable(c, &merged.data), &remote.data);
        let Some(answer) = self.compare_and_set(c, merged, remote.stamp, patch).await? else {
            return Ok(());
        };
        report.pushed += 1;
        let changes = Changes {
            ops: super::push::settle_pushed(c, std::slice::from_ref(merged), &[answer])?,
            ..Default::default()
        };
        self.store.apply(c, changes).await.map(drop)
    }

    /// Pushes a local delete, or re-creates a row the server deleted, after the strategy
    /// chose the local side.
    async fn push_over(
        &self,
        c: &CollectionConfig,
        local: &LocalRow,
        remote: Option<&RemoteRow>,
        report: &mut CollectionReport,
    ) -> Result<RowOp> {
        let idem = local.change_key.clone().unwrap_or_default();
        match (local.status, remote) {
            (SyncStatus::Deleted, remote) => {
                // Compared on the version the strategy saw: a newer one is decided again.
                let compared = [(local.key.clone(), remote.map(|r| r.stamp))];
                self.remote.delete_if_unchanged(c, &compared, &idem).await?;
                report.pushed += 1;
                Ok(remove_op(local))
            }
            (_, Some(r)) => unreachable!(
                "updates against updates are merged, not pushed over {}",
                r.stamp
            ),
            (_, None) => {
                let body = wire_row(c, &local.key, &local.data);
                let created = self
                    .remote
                    .create(&c.name, vec![body], &read_fields(c), &idem)
                    .await?;
                report.pushed += 1;
                let mut ops = super::push::settle_pushed(c, std::slice::from_ref(local), &created)?;
                Ok(ops.remove(0))
            }
        }
    }

    pub(super) fn record(
        &self,
        c: &CollectionConfig,
        local: &LocalRow,
        kind: ConflictKind,
        base: Option<Row>,
        remote: Option<&RemoteRow>,
        message: Option<String>,
    ) -> ConflictRecord {
        ConflictRecord {
            id: 0,
            collection: c.name.clone(),
            key: local.key.clone(),
            kind,
            strategy: c.conflict.as_str().to_owned(),
            resolution: None,
            base,
            local: (local.status != SyncStatus::Deleted).then(|| local.data.clone()),
            remote: remote.map(|r| r.data.clone()),
            remote_stamp: remote.map(|r| r.stamp),
            local_changed_at: None,
            message,
            fields: None,
            created_at: Utc::now(),
            resolved_at: None,
        }
    }

    /// Applies a person's decision on conflict `id`, in one local transaction: the row is
    /// settled against the current server version, and what must still reach the server
    /// goes at the next sync.
    pub async fn resolve(&self, id: i64, choice: Choice) -> Result<ConflictRecord> {
        let record = self.store.conflict(id).await?.ok_or_else(|| {
            Error::usage(
                UsageErrorKind::UnknownConflict,
                format!("no conflict with id {id}"),
            )
        })?;
        if record.resolution.is_some() {
            return Err(Error::usage(
                UsageErrorKind::AlreadyResolved,
                format!("conflict {id} is already resolved"),
            ));
        }
        let c = self.collection_config(&record.collection)?.clone();
        if let Choice::With(data) = &choice {
            crate::handle::check_fields(&c, data)?;
        }
        let local = self
            .store
            .rows(&c, std::slice::from_ref(&record.key))
            .await?
            .pop();
        // The server row may be one that does not fit; its content is then only a base.
        let remote = self
            .fetch_remotes(&c, std::slice::from_ref(&record.key))
            .await?
            .remove(&record.key);
        let (remote_stamp, remote_data) = match &remote {
            Some(Ok(r)) => (Some(r.stamp), Some(r.data.clone())),
            Some(Err(r)) => (r.stamp, Some(r.data.clone())),
            None => (None, None),
        };
        if let (Choice::Remote, Some(Err(invalid))) = (&choice, &remote) {
            return Err(Error::usage(
                UsageErrorKind::ServerVersionDoesNotFit,
                format!(
                    "conflict {id}: the server version does not fit ({}); resolve it with a version that does",
                    invalid.error
                ),
            ));
        }
        let chosen = match &choice {
            Choice::Local => decide::Chosen::Local,
            Choice::Remote => decide::Chosen::Remote,
            Choice::With(_) => decide::Chosen::Given,
        };
        let merge_fields = c.merge == schema::Merge::Fields && matches!(remote, Some(Ok(_)));
        let decision = decide::person_decision(
            record.kind,
            chosen,
            local.as_ref(),
            remote_stamp,
            merge_fields,
        );
        let mut changes = Changes::default();
        let resolution = match decision {
            decide::PersonDecision::Merge(side) => {
                let (Some(l), Some(Ok(r))) = (&local, &remote) else {
                    unreachable!("a merge has both versions")
                };
                changes.ops.push(self.merge_decided(&c, l, r, side).await?);
                match side {
                    FieldChoice::Local => Resolution::KeepLocal,
                    _ => Resolution::TakeRemote,
                }
            }
            decide::PersonDecision::TakeRemote => {
                match (&local, &remote) {
                    (Some(l), Some(Ok(r))) => changes.ops.push(take_remote_op(l, Some(r))),
                    (Some(l), None) => changes.ops.push(remove_op(l)),
                    (None, Some(Ok(r))) => changes.ops.push(RowOp::Pull(r.clone())),
                    _ => {}
                }
                Resolution::TakeRemote
            }
            decide::PersonDecision::Close => Resolution::KeepLocal,
            decide::PersonDecision::Forget => {
                if let Some(l) = &local {
                    changes.ops.push(remove_op(l));
                }
                Resolution::KeepLocal
            }
            decide::PersonDecision::Pending { status, content } => {
                let data = match content {
                    decide::Content::Local => {
                        local.as_ref().map(|l| l.data.clone()).unwrap_or_default()
                    }
                    decide::Content::Given => match &choice {
                        Choice::With(data) => data.clone(),
                        _ => unreachable!("given content comes with a choice"),
                    },
                };
                changes.ops.push(RowOp::Rebase {
                    key: record.key.clone(),
                    change_key: local.as_ref().and_then(|l| l.change_key.clone()),
                    status,
                    stamp: remote_stamp,
                    data,
                    base: remote_data,
                });
                Resolution::KeepLocal
            }
        };
        // The row may have been written while it waited: record what was really decided on.
        let decided = match (&choice, &local) {
            (Choice::With(data), _) => Some(Some(data.clone())),
            (_, Some(l)) => Some((l.status != SyncStatus::Deleted).then(|| l.data.clone())),
            (_, None) => None,
        }
        .filter(|now| record.local.is_some() && *now != record.local);
        changes.closes.push(Close {
            id,
            resolution,
            local: decided,
        });
        // All or nothing: a row written while the decision was taken is refused whole.
        changes.atomic = true;
        self.store.apply(&c, changes).await?;
        Ok(self.store.conflict(id).await?.unwrap_or(record))
    }

    /// A parked merge merged again against the current server version, every collision
    /// going to `side`: the operation that writes it (rebased and pending, or the server
    /// version when nothing local survives).
    async fn merge_decided(
        &self,
        c: &CollectionConfig,
        local: &LocalRow,
        remote: &RemoteRow,
        side: FieldChoice,
    ) -> Result<RowOp> {
        let base = self
            .store
            .bases(c, std::slice::from_ref(&local.key))
            .await?
            .remove(&local.key)
            .map(|b| b.data);
        let conflict = Conflict {
            collection: &c.name,
            local,
            remote: Some(remote),
            remote_deleted_at: None,
            local_changed_at: local.changed_at,
            base: base.as_ref(),
        };
        let MergeOutcome::Merged { row, .. } = merge(&conflict, &Decided(side), c.merge) else {
            unreachable!("a decided merge parks nothing")
        };
        Ok(if plan::same_content(&row, &remote.data) {
            take_remote_op(local, Some(remote))
        } else {
            RowOp::Rebase {
                key: local.key.clone(),
                change_key: local.change_key.clone(),
                status: SyncStatus::Updated,
                stamp: Some(remote.stamp),
                data: row,
                base: Some(remote.data.clone()),
            }
        })
    }
}

fn park_op(local: &LocalRow) -> RowOp {
    RowOp::Mark {
        key: local.key.clone(),
        change_key: local.change_key.clone(),
        status: SyncStatus::Conflict,
        base: None,
    }
}

/// A person's choice for every colliding field of a parked merge.
#[derive(Debug)]
struct Decided(FieldChoice);

impl Resolver for Decided {
    fn resolve(&self, _: &Conflict<'_>) -> Resolution {
        match self.0 {
            FieldChoice::Local => Resolution::KeepLocal,
            FieldChoice::Remote => Resolution::TakeRemote,
            FieldChoice::Park => Resolution::Park,
        }
    }

    fn resolve_field(&self, _: &Conflict<'_>, _: &FieldConflict<'_>) -> FieldChoice {
        self.0
    }
}
