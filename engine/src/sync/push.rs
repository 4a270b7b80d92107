//! The push phase: pending local creates, updates and deletes sent to the server.
//!
//! Owns the order and batching of push requests and what an answer means for the pushed
//! rows. It must not decide conflicts (see `conflicts`) or speak HTTP or SQL.

use super::chunks::{Chunks, Pushed};
use super::*;

impl<S: Store, R: Remote> Engine<S, R> {
    pub(super) async fn push_writes(
        &self,
        c: &CollectionConfig,
        run: &RunCache,
        report: &mut CollectionReport,
    ) -> Result<()> {
        let total = self.push_total(c).await;
        self.push_in_chunks(c, PushKind::Writes, total, run, report)
            .await
    }

    /// Pushes the pending rows of `kind` a chunk at a time, each chunk settled while the next
    /// goes out (see [`Chunks`]).
    async fn push_in_chunks(
        &self,
        c: &CollectionConfig,
        kind: PushKind,
        total: Option<u64>,
        run: &RunCache,
        report: &mut CollectionReport,
    ) -> Result<()> {
        let mut pending = Pending::new(kind.statuses());
        let mut chunks = Chunks::new(c);
        loop {
            let chunk = async {
                let Some(rows) = pending.next(&self.store, c).await? else {
                    return Ok(None);
                };
                let mut settles = Changes::default();
                let outcome = match kind {
                    PushKind::Writes => {
                        self.push_write_chunk(c, rows, &mut settles, run, report)
                            .await
                    }
                    PushKind::Deletes => {
                        self.push_delete_chunk(c, rows, &mut settles, run, report)
                            .await
                    }
                };
                self.report_progress(&c.name, ProgressPhase::Push, report.pushed, total);
                Ok(Some(Pushed { settles, outcome }))
            };
            if !chunks.step(&self.store, chunk).await? {
                return Ok(());
            }
        }
    }

    /// One chunk of pending creates and updates. What the server acknowledges is added to
    /// `settles`, for the caller to apply.
    async fn push_write_chunk(
        &self,
        c: &CollectionConfig,
        rows: Vec<LocalRow>,
        settles: &mut Changes,
        run: &RunCache,
        report: &mut CollectionReport,
    ) -> Result<()> {
        let rows = self.without_held_back(c, rows).await?;
        let (creates, updates): (Vec<_>, Vec<_>) = rows
            .into_iter()
            .partition(|r| r.status == SyncStatus::Created || r.base.is_none());
        if c.key_type == schema::KeyType::AutoIncrement {
            self.push_server_key_creates(c, creates, run, report)
                .await?;
        } else {
            self.push_creates(c, creates, settles, run, report).await?;
        }
        self.push_updates(c, updates, settles, run, report).await
    }

    /// The changes waiting to be pushed, when progress totals are counted.
    async fn push_total(&self, c: &CollectionConfig) -> Option<u64> {
        if !self.counting() {
            return None;
        }
        let status = self.store.status(c).await.ok()?;
        Some(status.created + status.updated + status.deleted)
    }

    /// Leaves out rows that refer, through a configured relation, to a parent that never
    /// reached the server (rejected, parked, or not pushed): pushing them would only meet a
    /// foreign-key error. They stay pending and go once the parent does. A parent in the
    /// same collection that is pushed in this same chunk does not hold its children back:
    /// `push_creates` orders parents first.
    pub(super) async fn without_held_back(
        &self,
        c: &CollectionConfig,
        rows: Vec<LocalRow>,
    ) -> Result<Vec<LocalRow>> {
        // The parent rows the pushed rows name, per relation to a configured collection.
        let mut parents: Vec<(&str, HashMap<Key, LocalRow>, bool)> = Vec::new();
        for field in &c.fields {
            let Some(parent_c) = field
                .references
                .as_deref()
                .and_then(|p| self.config.collection(p))
            else {
                continue;
            };
            // Many rows name the same few parents: each is read once.
            let wanted: Vec<Key> = rows
                .iter()
                .filter_map(|r| r.data.get(&field.name).and_then(key_from_json))
                .collect::<std::collections::BTreeSet<Key>>()
                .into_iter()
                .collect();
            let found = read::by_key(self.store.rows(parent_c, &wanted).await?);
            parents.push((&field.name, found, parent_c.name == c.name));
        }
        let relations: Vec<decide::Relation<'_>> = parents
            .iter()
            .map(|(field, parents, same_collection)| decide::Relation {
                field,
                parents,
                same_collection: *same_collection,
            })
            .collect();
        let held = decide::held_back(&rows, &relations, &self_references(c));
        for (key, parent_key) in &held {
            warn!(collection = %c.name, %key, %parent_key,
                "held back: its parent has not reached the server");
        }
        let held: HashSet<Key> = held.into_iter().map(|(key, _)| key).collect();
        Ok(rows
            .into_iter()
            .filter(|r| !held.contains(&r.key))
            .collect())
    }

    pub(super) async fn push_deletes(
        &self,
        c: &CollectionConfig,
        run: &RunCache,
        report: &mut CollectionReport,
    ) -> Result<()> {
        self.push_in_chunks(c, PushKind::Deletes, None, run, report)
            .await
    }

    /// One chunk of pending deletes; the rows the server deleted are added to `settles`.
    async fn push_delete_chunk(
        &self,
        c: &CollectionConfig,
        rows: Vec<LocalRow>,
        settles: &mut Changes,
        run: &RunCache,
        report: &mut CollectionReport,
    ) -> Result<()> {
        self.allowed(c, Action::Delete, run).await?;
        // Rows the server never acknowledged: whether it holds them is asked first.
        let (unacknowledged, rows): (Vec<_>, Vec<_>) =
            rows.into_iter().partition(|r| r.base.is_none());
        // A temporary key's create may have landed with its answer lost: such a row
        // is taken first, and its delete goes by its server key next time.
        let unacknowledged = self.adopt_landed(c, unacknowledged).await?.1;
        let rows = self
            .unacknowledged_deletes(c, unacknowledged, report)
            .await?
            .into_iter()
            .chain(rows)
            .collect();
        // A delete by query reaches at most QUERY_LIMIT_MAX rows, which the page
        // size must not exceed either.
        let most = MAX_DELETE_ROWS.min(c.page_size.max(1) as usize);
        for batch in plan::batches_by_size(rows, |_| 1, usize::MAX, most) {
            self.push_delete_batch(c, batch, settles, run, report)
                .await?;
        }
        Ok(())
    }

    /// Creates rows in batches, parents first, adding their settles to `settles`. A batch the
    /// server refuses is retried one by one, to find the row it refuses.
    pub(super) async fn push_creates(
        &self,
        c: &CollectionConfig,
        rows: Vec<LocalRow>,
        settles: &mut Changes,
        run: &RunCache,
        report: &mut CollectionReport,
    ) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let permissions = self.allowed(c, Action::Create, run).await?;
        let self_references = self_references(c);
        // Directus inserts a batch row by row: a parent must come before its children.
        let mut payloads: Vec<(LocalRow, Value)> = Vec::new();
        for r in plan::parents_first(rows, &self_references) {
            if let Some(body) = create_body(c, &r, permissions.as_ref()) {
                payloads.push((r, body));
            }
        }
        let size = |(_, body): &(LocalRow, Value)| body.to_string().len();
        // Rows rejected here, and rows held back because a parent of theirs was.
        let mut unplaced: HashSet<Key> = HashSet::new();
        for batch in plan::batches_by_size(payloads, size, MAX_BODY_BYTES, MAX_CREATE_ROWS) {
            let (locals, bodies): (Vec<LocalRow>, Vec<Value>) = batch.into_iter().unzip();
            let idem = batch_key(&locals);
            match self
                .remote
                .create(&c.name, bodies, &read_fields(c), &idem)
                .await
            {
                Ok(created) => {
                    settles.ops.extend(settle_pushed(c, &locals, &created)?);
                    report.pushed += locals.len() as u64;
                }
                Err(Error::Remote(e)) => match decide::create_failure(e.kind, locals.len()) {
                    decide::CreateFailure::Stop => return Err(Error::Remote(e)),
                    _ => {
                        self.create_failed_batch(c, locals, e, run, &mut unplaced, report)
                            .await?
                    }
                },
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// A create request refused for good. One bad row fails a whole batch and Directus does
    /// not say which: the rows go one by one, children of a row that did not reach the
    /// server held back. A refusal that is the collection's stops the push first.
    async fn create_failed_batch(
        &self,
        c: &CollectionConfig,
        locals: Vec<LocalRow>,
        error: RemoteError,
        run: &RunCache,
        unplaced: &mut HashSet<Key>,
        report: &mut CollectionReport,
    ) -> Result<()> {
        if locals.len() == 1 {
            let local = &locals[0];
            if !self
                .create_failed(c, local, Error::Remote(error), run, report)
                .await?
            {
                unplaced.insert(local.key.clone());
            }
            return Ok(());
        }
        if decide::create_failure(error.kind, locals.len()) == decide::CreateFailure::AskPermissions
        {
            self.refusal(c, Action::Create, &[], error.clone(), run)
                .await?;
        }
        tracing::debug!(%error, "batch create failed, retrying one by one");
        let self_references = self_references(c);
        for local in locals {
            if let Some(parent) = decide::parent_among(&local, &self_references, unplaced) {
                warn!(collection = %c.name, key = %local.key, parent_key = %parent,
                    "held back: its parent has not reached the server");
                unplaced.insert(local.key);
                continue;
            }
            if !self.push_one_create(c, &local, run, report).await? {
                unplaced.insert(local.key);
            }
        }
        Ok(())
    }

    /// Creates one row; returns whether it reached the server (`false`: quarantined).
    async fn push_one_create(
        &self,
        c: &CollectionConfig,
        local: &LocalRow,
        run: &RunCache,
        report: &mut CollectionReport,
    ) -> Result<bool> {
        let permissions = self.permissions(run).await?;
        let Some(body) = create_body(c, local, permissions.as_ref()) else {
            return Ok(false);
        };
        let idem = local.change_key.clone().unwrap_or_default();
        match self
            .remote
            .create(&c.name, vec![body], &read_fields(c), &idem)
            .await
        {
            Ok(created) => {
                report.pushed += 1;
                let changes = Changes {
                    ops: settle_pushed(c, std::slice::from_ref(local), &created)?,
                    ..Default::default()
                };
                self.store.apply(c, changes).await?;
                Ok(true)
            }
            Err(e) => self.create_failed(c, local, e, run, report).await,
        }
    }

    /// A single create failed: an earlier attempt may have landed (RECORD_NOT_UNIQUE), or
    /// the server refuses the row for good (quarantine, returns `false`), or the failure is
    /// transient or the collection's (the token may not create).
    async fn create_failed(
        &self,
        c: &CollectionConfig,
        local: &LocalRow,
        error: Error,
        run: &RunCache,
        report: &mut CollectionReport,
    ) -> Result<bool> {
        let Error::Remote(e) = error else {
            return Err(error);
        };
        let e = match decide::create_failure(e.kind, 1) {
            decide::CreateFailure::AskPermissions => {
                // The collection's refusal stops here; the row's is decided as rejected.
                let e = self.refusal(c, Action::Create, &[], e, run).await?;
                RemoteError {
                    kind: RemoteErrorKind::Rejected,
                    ..e
                }
            }
            _ => e,
        };
        match decide::create_failure(e.kind, 1) {
            decide::CreateFailure::ReadBack => match self.fetch_remote(c, &local.key).await? {
                Some(fetched) => {
                    self.compare_and_settle(c, local, Some(fetched), report)
                        .await?;
                    Ok(true)
                }
                None => Err(Error::Remote(e)),
            },
            decide::CreateFailure::Quarantine => {
                self.quarantine(c, local, e.to_string(), report).await?;
                Ok(false)
            }
            _ => Err(Error::Remote(e)),
        }
    }

    /// Pushes updates: each sends the fields that differ from its base version, compared and
    /// set on the base stamp. Updates that change the same fields alike share one request.
    /// The settles of what the server acknowledged are added to `settles`.
    pub(super) async fn push_updates(
        &self,
        c: &CollectionConfig,
        rows: Vec<LocalRow>,
        settles: &mut Changes,
        run: &RunCache,
        report: &mut CollectionReport,
    ) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let permissions = self.allowed(c, Action::Update, run).await?;
        if let Some(p) = &permissions {
            report.read_only_fields = c
                .fields
                .iter()
                .filter(|f| !p.covers(&c.name, Action::Update, &f.name))
                .map(|f| f.name.clone())
                .collect();
        }
        let keys: Vec<Key> = rows.iter().map(|r| r.key.clone()).collect();
        let mut bases = self.store.bases(c, &keys).await?;
        // A snapshot of another version than the row's base cannot tell what changed; the
        // server's version at that stamp can, while the server still holds it.
        let stale: Vec<Key> = rows
            .iter()
            .filter(|r| bases.get(&r.key).map(|b| b.stamp) != Some(r.base))
            .map(|r| r.key.clone())
            .collect();
        let mut current = if stale.is_empty() {
            HashMap::new()
        } else {
            self.fetch_remotes(c, &stale).await?
        };
        let mut moved = Vec::new();
        let mut planned = Vec::new();
        for local in rows {
            let base = match bases.remove(&local.key) {
                Some(b) if b.stamp == local.base => b.data,
                _ => match current.remove(&local.key) {
                    Some(Ok(r)) if Some(r.stamp) == local.base => r.data,
                    Some(Err(r)) if r.stamp == local.base => r.data,
                    other => {
                        moved.push((local, other));
                        continue;
                    }
                },
            };
            let patch = plan::update_patch(&writable(c, &local.data), &base);
            if patch.is_empty() {
                // Written back to what the server holds: nothing to send.
                let stamp = local.base.expect("updates have a base");
                settles.ops.push(settle_op(&local, stamp, None));
                continue;
            }
            let denied = denied_fields(c, Action::Update, permissions.as_ref(), &patch, false);
            if !denied.is_empty() {
                warn!(collection = %c.name, key = %local.key, fields = %denied.join(", "),
                    "held back: the token may not update these fields");
                continue;
            }
            planned.push((local, patch));
        }
        let (groups, mut singles) = plan::group_updates(planned, MAX_GROUP_ROWS);
        let mut outcomes: Vec<(LocalRow, Result<Option<Value>>)> = Vec::new();
        let mut first_error = None;
        for group in groups {
            let fields: Vec<&str> = group.patch.keys().map(String::as_str).collect();
            match self.compare_and_set_group(c, &group).await {
                Ok(updated) => {
                    let mut by_key = rows_by_key(c, updated);
                    outcomes.extend(group.rows.into_iter().map(|local| {
                        let answer = by_key.remove(&local.key);
                        (local, Ok(answer))
                    }))
                }
                // One by one, the server tells which of the rows it refuses.
                Err(Error::Remote(e)) if is_permanent(e.kind) => {
                    self.refusal(c, Action::Update, &fields, e, run).await?;
                    let patch = group.patch;
                    singles.extend(group.rows.into_iter().map(|r| (r, patch.clone())));
                }
                // The rows stay pending for the next sync.
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        let one_by_one: Vec<_> = futures::stream::iter(singles)
            .map(|(local, patch)| async move {
                let base = local.base.expect("updates have a base");
                let result = self.compare_and_set(c, &local, base, patch.clone()).await;
                (local, patch, result)
            })
            .buffer_unordered(UPDATE_CONCURRENCY)
            .collect()
            .await;
        for (local, patch, result) in one_by_one {
            let result = match result {
                Err(Error::Remote(e)) if is_permanent(e.kind) => {
                    let fields: Vec<&str> = patch.keys().map(String::as_str).collect();
                    match self.refusal(c, Action::Update, &fields, e, run).await {
                        Ok(e) => Err(Error::Remote(e)),
                        Err(e) => {
                            first_error.get_or_insert(e);
                            continue;
                        }
                    }
                }
                other => other,
            };
            outcomes.push((local, result));
        }
        // What the server acknowledged is settled even when handling the rest fails: the
        // caller applies `settles` before it returns the error.
        let mut rest = Vec::new();
        let mut acknowledged = Vec::new();
        let mut answers = Vec::new();
        for (local, result) in outcomes {
            match result {
                Ok(Some(answer)) => {
                    acknowledged.push(local);
                    answers.push(answer);
                }
                other => rest.push((local, other)),
            }
        }
        report.pushed += acknowledged.len() as u64;
        settles
            .ops
            .extend(settle_pushed(c, &acknowledged, &answers)?);
        for (local, result) in rest {
            match result {
                Ok(_) => {
                    let fetched = self.fetch_remote(c, &local.key).await?;
                    self.compare_and_settle(c, &local, fetched, report).await?;
                }
                Err(Error::Remote(e)) if is_permanent(e.kind) => {
                    self.quarantine(c, &local, e.to_string(), report).await?;
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        for (local, fetched) in moved {
            self.compare_and_settle(c, &local, fetched, report).await?;
        }
        first_error.map_or(Ok(()), Err)
    }

    /// One PATCH by query for rows that change the same fields alike, each row compared on
    /// its key and base stamp; returns the rows the server updated.
    async fn compare_and_set_group(
        &self,
        c: &CollectionConfig,
        group: &plan::UpdateGroup,
    ) -> Result<Vec<Value>> {
        let rows: Vec<(Key, Stamp)> = group
            .rows
            .iter()
            .map(|local| {
                let base = local.base.expect("grouped updates have a base");
                (local.key.clone(), base)
            })
            .collect();
        self.remote
            .update_if_unchanged(
                c,
                &rows,
                on_the_wire(c, &group.patch),
                &read_fields(c),
                &batch_key(&group.rows),
            )
            .await
    }

    /// PATCH by query on key and base stamp; the updated row, or `None` when the server row
    /// moved on.
    pub(super) async fn compare_and_set(
        &self,
        c: &CollectionConfig,
        local: &LocalRow,
        base: Stamp,
        patch: Row,
    ) -> Result<Option<Value>> {
        let idem = local.change_key.clone().unwrap_or_default();
        let updated = self
            .remote
            .update_if_unchanged(
                c,
                &[(local.key.clone(), base)],
                on_the_wire(c, &patch),
                &read_fields(c),
                &idem,
            )
            .await?;
        Ok(rows_by_key(c, updated).remove(&local.key))
    }

    /// Deletes of rows the server never acknowledged (created, then deleted before a push
    /// was answered): an earlier create may have landed, so the server is asked. What it
    /// does not hold is forgotten; what it holds goes on to be deleted on its stamp, or is a
    /// conflict (see [`decide::unacknowledged_delete`]). Returns the rows to delete.
    async fn unacknowledged_deletes(
        &self,
        c: &CollectionConfig,
        rows: Vec<LocalRow>,
        report: &mut CollectionReport,
    ) -> Result<Vec<LocalRow>> {
        if rows.is_empty() {
            return Ok(rows);
        }
        let keys: Vec<Key> = rows.iter().map(|r| r.key.clone()).collect();
        let mut server = self.fetch_remotes(c, &keys).await?;
        let mut forget = Changes::default();
        let mut to_delete = Vec::new();
        for local in rows {
            let fetched = server.remove(&local.key);
            let remote = match &fetched {
                Some(Ok(r)) => Some((r.stamp, &r.data)),
                Some(Err(r)) => r.stamp.map(|s| (s, &r.data)),
                None => None,
            };
            match decide::unacknowledged_delete(&local, remote) {
                decide::UnacknowledgedDelete::Forget => forget.ops.push(remove_op(&local)),
                decide::UnacknowledgedDelete::Delete(stamp) => to_delete.push(LocalRow {
                    base: Some(stamp),
                    ..local
                }),
                decide::UnacknowledgedDelete::Conflict => match fetched {
                    Some(Ok(remote)) => {
                        self.resolve_conflict(c, &local, Some(remote), None, report)
                            .await?
                    }
                    Some(Err(invalid)) => {
                        self.record_invalid(c, &local.key, &invalid, report).await?
                    }
                    None => {}
                },
            }
        }
        report.pushed += self.store.apply(c, forget).await? as u64;
        Ok(to_delete)
    }

    /// Deletes `rows` on their base stamps, adding the rows the server deleted to `settles`.
    async fn push_delete_batch(
        &self,
        c: &CollectionConfig,
        rows: Vec<LocalRow>,
        settles: &mut Changes,
        run: &RunCache,
        report: &mut CollectionReport,
    ) -> Result<()> {
        let compared: Vec<(Key, Option<Stamp>)> = rows
            .iter()
            .map(|r| {
                let base = r.base.expect("deletes pushed have a base");
                (r.key.clone(), Some(base))
            })
            .collect();
        let idem = batch_key(&rows);
        let deleted = self.remote.delete_if_unchanged(c, &compared, &idem).await;
        match deleted {
            Ok(()) => {}
            Err(Error::Remote(e)) if is_permanent(e.kind) => {
                let e = self.refusal(c, Action::Delete, &[], e, run).await?;
                if rows.len() == 1 {
                    return self.quarantine(c, &rows[0], e.to_string(), report).await;
                }
                for row in rows {
                    Box::pin(self.push_delete_batch(c, vec![row], settles, run, report)).await?;
                }
                return Ok(());
            }
            Err(e) => return Err(e),
        }
        // A delete by query says nothing about what it matched: read back what survived.
        let keys: Vec<Key> = rows.iter().map(|r| r.key.clone()).collect();
        let survivors = self.fetch_remotes(c, &keys).await?;
        let mut conflicted = Vec::new();
        for local in &rows {
            let survivor = survivors.get(&local.key);
            match decide::delete_outcome(local.base, survivor.map(server_version)) {
                decide::DeleteOutcome::Deleted => {
                    report.pushed += 1;
                    settles.ops.push(remove_op(local));
                }
                decide::DeleteOutcome::NotReached => {
                    warn!(collection = %c.name, key = %local.key, "delete not applied by the server; retried at the next sync");
                }
                decide::DeleteOutcome::RecordInvalid | decide::DeleteOutcome::Conflict => {
                    let fetched = survivor.expect("a survivor").clone();
                    conflicted.push((local, fetched));
                }
            }
        }
        for (local, fetched) in conflicted {
            match fetched {
                Ok(remote) => {
                    self.resolve_conflict(c, local, Some(remote), None, report)
                        .await?
                }
                Err(invalid) => self.record_invalid(c, &local.key, &invalid, report).await?,
            }
        }
        Ok(())
    }

    pub(super) async fn quarantine(
        &self,
        c: &CollectionConfig,
        local: &LocalRow,
        error: String,
        report: &mut CollectionReport,
    ) -> Result<()> {
        warn!(collection = %c.name, key = %local.key, %error, "change rejected, quarantined");
        report.quarantined += 1;
        let record = self.record(
            c,
            local,
            ConflictKind::Rejected,
            None,
            None,
            Some(error.clone()),
        );
        let changes = Changes {
            ops: vec![RowOp::Quarantine {
                key: local.key.clone(),
                change_key: local.change_key.clone(),
                error,
            }],
            records: vec![record],
            ..Default::default()
        };
        self.store.apply(c, changes).await?;
        Ok(())
    }
}

/// The fields of `data` that the token may not write with `action`; empty when the server
/// cannot say. For a create, empty values of such fields are simply left out of the body.
fn denied_fields(
    c: &CollectionConfig,
    action: Action,
    permissions: Option<&Permissions>,
    data: &Row,
    create: bool,
) -> Vec<String> {
    let Some(p) = permissions else {
        return Vec::new();
    };
    data.iter()
        .filter(|(_, value)| !(create && value.is_null()))
        .filter(|(field, _)| !p.covers(&c.name, action, field))
        .map(|(field, _)| field.clone())
        .collect()
}

/// What a create of `local` sends besides a key: its writable fields that hold a value. An
/// empty field is left out, so that the server's default applies (a stock `status` is
/// `NOT NULL DEFAULT 'draft'`); the answer brings it back. `None` (logged) when it holds a
/// value in a field the token may not create: the row is held back, pending.
pub(super) fn create_fields(
    c: &CollectionConfig,
    local: &LocalRow,
    permissions: Option<&Permissions>,
) -> Option<Row> {
    let mut data = writable(c, &local.data);
    let denied = denied_fields(c, Action::Create, permissions, &data, true);
    if !denied.is_empty() {
        warn!(collection = %c.name, key = %local.key, fields = %denied.join(", "),
            "held back: the token may not create these fields");
        return None;
    }
    data.retain(|_, value| !value.is_null());
    Some(on_the_wire(c, &data))
}

/// A create's body with the row's key (keys chosen here), or `None` when it is held back.
fn create_body(
    c: &CollectionConfig,
    local: &LocalRow,
    permissions: Option<&Permissions>,
) -> Option<Value> {
    create_fields(c, local, permissions).map(|data| wire_row(c, &local.key, &data))
}

/// The rows of a write's answer by key.
fn rows_by_key(c: &CollectionConfig, rows: Vec<Value>) -> HashMap<Key, Value> {
    rows.into_iter()
        .filter_map(|raw| Some((key_from_json(raw.get(&c.primary_key)?)?, raw)))
        .collect()
}

/// Settles pushed rows on the server's answer: each on the stamp the server gave it, taking
/// the server's content where it differs from the local one (values the server filled in,
/// fields added to the schema file since the row was last pulled).
pub(super) fn settle_pushed(
    c: &CollectionConfig,
    locals: &[LocalRow],
    answer: &[Value],
) -> Result<Vec<RowOp>> {
    let by_key: HashMap<Key, read::Fetched> = answer
        .iter()
        .filter_map(|raw| read::fetched(c, raw))
        .collect();
    locals
        .iter()
        .map(|local| match by_key.get(&local.key) {
            Some(Ok(server)) => {
                let differs = !plan::same_content(&local.data, &server.data);
                Ok(settle_op(
                    local,
                    server.stamp,
                    differs.then(|| server.data.clone()),
                ))
            }
            // The answer does not fit: the stamp settles the push, the pull records the row.
            Some(Err(InvalidRow {
                stamp: Some(stamp), ..
            })) => Ok(settle_op(local, *stamp, None)),
            _ => Err(protocol(format!(
                "the write of {}/{} was answered without it",
                c.name, local.key
            ))),
        })
        .collect()
}

/// A server row read by key, as the decisions see it.
pub(super) fn server_version(fetched: &read::Fetched) -> decide::ServerVersion<'_> {
    match fetched {
        Ok(r) => decide::ServerVersion {
            stamp: Some(r.stamp),
            data: &r.data,
            fits: true,
        },
        Err(r) => decide::ServerVersion {
            stamp: r.stamp,
            data: &r.data,
            fits: false,
        },
    }
}

/// The two kinds of pending change a push phase sends.
#[derive(Debug, Clone, Copy)]
enum PushKind {
    /// Creates and updates, parents first.
    Writes,
    /// Deletes, children first.
    Deletes,
}

impl PushKind {
    fn statuses(self) -> &'static [SyncStatus] {
        match self {
            PushKind::Writes => &[SyncStatus::Created, SyncStatus::Updated],
            PushKind::Deletes => &[SyncStatus::Deleted],
        }
    }
}

/// Pending rows of some statuses, read a chunk at a time in key order.
struct Pending<'a> {
    statuses: &'a [SyncStatus],
    after: Option<Key>,
    done: bool,
}

impl<'a> Pending<'a> {
    fn new(statuses: &'a [SyncStatus]) -> Pending<'a> {
        Pending {
            statuses,
            after: None,
            done: false,
        }
    }

    /// The next non-empty chunk, or `None` past the last pending row.
    async fn next<S: Store>(
        &mut self,
        store: &S,
        c: &CollectionConfig,
    ) -> Result<Option<Vec<LocalRow>>> {
        while !self.done {
            let rows = store.pending(c, self.after.as_ref(), PENDING_CHUNK).await?;
            self.done = rows.len() < PENDING_CHUNK;
            let Some(last) = rows.last() else {
                return Ok(None);
            };
            self.after = Some(last.key.clone());
            let rows: Vec<LocalRow> = rows
                .into_iter()
                .filter(|r| self.statuses.contains(&r.status))
                .collect();
            if !rows.is_empty() {
                return Ok(Some(rows));
            }
        }
        Ok(None)
    }
}
