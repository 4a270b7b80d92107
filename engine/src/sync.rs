//! The sync driver: runs push, pull and reconcile for each collection against the ports.
//!
//! Owns the order of requests and local transactions. Decisions come from [`crate::plan`],
//! [`crate::cursor`] and [`crate::conflict`]; this module only sequences them and carries
//! them out through [`Remote`] and [`Store`]. It must not speak HTTP or SQL itself.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use chrono::Utc;
use futures::StreamExt;
use schema::{CollectionConfig, Config, Deletes};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tracing::field::Empty;
use tracing::{Instrument, Span, info, info_span, warn};

use crate::conflict::{Conflict, ConflictKind, Resolution, Resolver, resolver_for};
use crate::cursor::{PageOutcome, page_outcome, page_request, settle};
use crate::decode::{RowError, remote_row, remote_row_unchecked};
use crate::error::{Error, RemoteErrorKind, Result};
use crate::model::{Key, LocalRow, RemoteRow, Row, Stamp, SyncStatus, key_from_json, key_to_json};
use crate::plan::{self, RemoteDelete};
use crate::ports::{
    Changes, Close, ConflictRecord, DeletePage, Guard, ListQuery, Remote, RowOp, RunRecord, Store,
};

/// Largest request body sent, under Directus's default 1 MB `MAX_PAYLOAD_SIZE`.
const MAX_BODY_BYTES: usize = 900_000;
/// Rows per create request at most.
const MAX_CREATE_ROWS: usize = 500;
/// Keys per delete request at most (the filter grows with each key).
const MAX_DELETE_ROWS: usize = 200;
/// Pending rows read from the store at once.
const PENDING_CHUNK: usize = 1_000;
/// Updates sharing one compare-and-set request at most (the filter grows with each key).
const MAX_GROUP_ROWS: usize = 200;
/// Compare-and-set updates in flight at once.
const UPDATE_CONCURRENCY: usize = 8;

/// What one collection's part of a sync did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CollectionReport {
    pub collection: String,
    /// Local changes the server acknowledged (creates, updates, deletes).
    pub pushed: u64,
    /// Server rows written locally.
    pub pulled: u64,
    /// Local rows removed because the server deleted them.
    pub deleted: u64,
    /// Conflicts met, however they were resolved.
    pub conflicts: u64,
    /// Of those, parked for a person.
    pub parked: u64,
    /// Local changes the server rejected for good, and server rows that did not fit.
    pub quarantined: u64,
    pub duration_ms: u64,
    /// Why this collection's sync stopped early; the next sync resumes where it stopped.
    pub error: Option<String>,
    /// Whether that error is transient (unreachable, unavailable).
    #[serde(skip)]
    pub transient: bool,
}

impl CollectionReport {
    /// The counts added since `before`, an earlier copy of this report.
    fn since(&self, before: &CollectionReport) -> CollectionReport {
        CollectionReport {
            collection: self.collection.clone(),
            pushed: self.pushed - before.pushed,
            pulled: self.pulled - before.pulled,
            deleted: self.deleted - before.deleted,
            conflicts: self.conflicts - before.conflicts,
            parked: self.parked - before.parked,
            quarantined: self.quarantined - before.quarantined,
            duration_ms: self.duration_ms - before.duration_ms,
            error: self.error.clone(),
            transient: self.transient,
        }
    }
}

/// How a sync cycle runs beyond the defaults.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncOptions {
    /// Compare every synced local key with the server and remove what it no longer has
    /// (or what left the collection's filter), whatever the activity log says.
    pub reconcile_keys: bool,
}

/// What a sync did, per collection.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SyncReport {
    pub collections: Vec<CollectionReport>,
    /// Conflicts and rejected changes waiting for a person after this sync, all collections.
    pub waiting: u64,
    pub duration_ms: u64,
}

impl SyncReport {
    /// Whether any collection stopped with an error.
    pub fn failed(&self) -> bool {
        self.collections.iter().any(|c| c.error.is_some())
    }
}

/// A person's decision on a recorded conflict.
#[derive(Debug, Clone, PartialEq)]
pub enum Choice {
    Local,
    Remote,
    /// Replace the row's content with this, then push it.
    With(Row),
}

/// The engine: a configuration, a local store and a remote.
#[derive(Debug)]
pub struct Engine<S, R> {
    config: Config,
    store: S,
    remote: R,
    resolvers: HashMap<String, Box<dyn Resolver>>,
}

impl<S: Store, R: Remote> Engine<S, R> {
    /// Prepares the store (engine tables, collection tables) and returns the engine.
    pub async fn open(config: Config, store: S, remote: R) -> Result<Self> {
        let cycle = relation_cycle(&config);
        if !cycle.is_empty() {
            warn!(collections = %cycle.join(", "), "relation cycle: these collections are pushed in file order");
        }
        store.prepare(&config).await?;
        let resolvers = config
            .collections
            .iter()
            .map(|c| (c.name.clone(), resolver_for(c.conflict)))
            .collect();
        Ok(Engine {
            config,
            store,
            remote,
            resolvers,
        })
    }

    /// Replaces the strategy of one collection with a custom resolver.
    pub fn set_resolver(&mut self, collection: &str, resolver: Box<dyn Resolver>) -> Result<()> {
        self.collection_config(collection)?;
        self.resolvers.insert(collection.to_owned(), resolver);
        Ok(())
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    pub fn remote(&self) -> &R {
        &self.remote
    }

    /// Conflicts and rejected changes; only those waiting for a person when `open_only`.
    pub async fn conflicts(&self, open_only: bool) -> Result<Vec<ConflictRecord>> {
        self.store.conflicts(open_only).await
    }

    /// One recorded conflict.
    pub async fn conflict(&self, id: i64) -> Result<Option<ConflictRecord>> {
        self.store.conflict(id).await
    }

    /// Pending changes, parked rows and checkpoint of every collection.
    pub async fn status(&self) -> Result<Vec<crate::ports::CollectionStatus>> {
        let mut out = Vec::with_capacity(self.config.collections.len());
        for c in &self.config.collections {
            out.push(self.store.status(c).await?);
        }
        Ok(out)
    }

    /// The latest finished sync run, if any.
    pub async fn last_run(&self) -> Result<Option<RunRecord>> {
        self.store.last_run().await
    }

    pub fn collection_config(&self, name: &str) -> Result<&CollectionConfig> {
        self.config
            .collection(name)
            .ok_or_else(|| Error::Usage(format!("no collection named {name:?} is configured")))
    }

    /// Runs one sync cycle over every collection, or only `only`.
    pub async fn sync(&self, only: Option<&str>) -> Result<SyncReport> {
        self.sync_with(only, SyncOptions::default()).await
    }

    /// Runs one sync cycle with `options`.
    pub async fn sync_with(&self, only: Option<&str>, options: SyncOptions) -> Result<SyncReport> {
        if let Some(name) = only {
            self.collection_config(name)?;
        }
        let started = Instant::now();
        let started_at = Utc::now();
        let order = push_order(&self.config);
        let selected: Vec<&CollectionConfig> = order
            .into_iter()
            .filter(|c| only.is_none_or(|name| c.name == name))
            .collect();
        let mut reports: Vec<CollectionReport> = selected
            .iter()
            .map(|c| CollectionReport {
                collection: c.name.clone(),
                ..Default::default()
            })
            .collect();
        let span = info_span!(
            "sync",
            collections = selected.len(),
            pushed = Empty,
            pulled = Empty,
            deleted = Empty,
            conflicts = Empty,
            quarantined = Empty,
        );
        async {
            // Parents before children for creates and updates, children before parents
            // for deletes, then pull and reconcile each collection.
            for (c, report) in selected.iter().zip(reports.iter_mut()) {
                self.run_phase(c, report, Phase::PushWrites).await;
            }
            for (c, report) in selected.iter().zip(reports.iter_mut()).rev() {
                self.run_phase(c, report, Phase::PushDeletes).await;
            }
            let run = RunCache::default();
            for (c, report) in selected.iter().zip(reports.iter_mut()) {
                self.run_phase(c, report, Phase::Pull).await;
                let phase = Phase::Reconcile {
                    keys: options.reconcile_keys,
                    run: &run,
                };
                self.run_phase(c, report, phase).await;
            }
        }
        .instrument(span.clone())
        .await;
        record_counts(&span, &reports);
        span.in_scope(|| {
            info!(
                duration_ms = started.elapsed().as_millis() as u64,
                "sync done"
            )
        });
        let waiting = self.store.conflicts(true).await?.len() as u64;
        let report = SyncReport {
            collections: reports,
            waiting,
            duration_ms: started.elapsed().as_millis() as u64,
        };
        self.store
            .record_run(&RunRecord {
                started_at,
                finished_at: Utc::now(),
                ok: !report.failed(),
                summary: serde_json::to_value(&report).unwrap_or(Value::Null),
            })
            .await?;
        Ok(report)
    }

    async fn run_phase(
        &self,
        c: &CollectionConfig,
        report: &mut CollectionReport,
        phase: Phase<'_>,
    ) {
        if report.error.is_some() {
            return; // a failed collection resumes at the next sync
        }
        let phase_started = Instant::now();
        let span = info_span!(
            "phase",
            collection = %c.name,
            phase = phase.name(),
            pushed = Empty,
            pulled = Empty,
            deleted = Empty,
            conflicts = Empty,
            quarantined = Empty,
        );
        let before = report.clone();
        let result = async {
            match phase {
                Phase::PushWrites => self.push_writes(c, report).await,
                Phase::PushDeletes => self.push_deletes(c, report).await,
                Phase::Pull => self.pull(c, report).await,
                Phase::Reconcile { keys, run } => self.reconcile(c, keys, run, report).await,
            }
        }
        .instrument(span.clone())
        .await;
        report.duration_ms += phase_started.elapsed().as_millis() as u64;
        record_counts(&span, &[report.since(&before)]);
        let _entered = span.enter();
        match result {
            Ok(()) => info!("phase done"),
            Err(e) => {
                warn!(error = %e, "phase failed");
                report.transient = e.is_transient();
                report.error = Some(e.to_string());
            }
        }
    }

    // ----- push -----

    async fn push_writes(&self, c: &CollectionConfig, report: &mut CollectionReport) -> Result<()> {
        let statuses = [SyncStatus::Created, SyncStatus::Updated];
        self.for_pending(
            c,
            &statuses,
            async |rows: Vec<LocalRow>, report: &mut CollectionReport| {
                let rows = self.without_held_back(c, rows).await?;
                let (creates, updates): (Vec<_>, Vec<_>) = rows
                    .into_iter()
                    .partition(|r| r.status == SyncStatus::Created || r.base.is_none());
                self.push_creates(c, creates, report).await?;
                self.push_updates(c, updates, report).await
            },
            report,
        )
        .await
    }

    /// Leaves out rows that refer, through a configured relation, to a parent that never
    /// reached the server (rejected, parked, or not pushed): pushing them would only meet a
    /// foreign-key error. They stay pending and go once the parent does. A parent in the
    /// same collection that is pushed in this same chunk does not hold its children back:
    /// `push_creates` orders parents first.
    async fn without_held_back(
        &self,
        c: &CollectionConfig,
        rows: Vec<LocalRow>,
    ) -> Result<Vec<LocalRow>> {
        let mut held: HashSet<Key> = HashSet::new();
        for field in &c.fields {
            let Some(parent) = field.references.as_deref() else {
                continue;
            };
            let Some(parent_c) = self.config.collection(parent) else {
                continue;
            };
            let in_chunk: HashSet<&Key> = if parent_c.name == c.name {
                rows.iter().map(|r| &r.key).collect()
            } else {
                HashSet::new()
            };
            let wanted: Vec<Key> = rows
                .iter()
                .filter_map(|r| {
                    r.data
                        .get(&field.name)
                        .and_then(crate::model::key_from_json)
                })
                .collect();
            let unplaced: HashSet<Key> = self
                .store
                .rows(parent_c, &wanted)
                .await?
                .into_iter()
                .filter(|p| p.base.is_none() && p.status != SyncStatus::Synced)
                .filter(|p| !in_chunk.contains(&p.key))
                .map(|p| p.key)
                .collect();
            for r in &rows {
                let parent_key = r
                    .data
                    .get(&field.name)
                    .and_then(crate::model::key_from_json);
                if let Some(k) = parent_key.filter(|k| unplaced.contains(k)) {
                    warn!(collection = %c.name, key = %r.key, parent = %parent, parent_key = %k,
                        "held back: its parent has not reached the server");
                    held.insert(r.key.clone());
                }
            }
        }
        // Within the collection, a row whose parent is held back waits with it.
        let self_references = self_references(c);
        while let Some(key) = rows
            .iter()
            .filter(|r| !held.contains(&r.key))
            .find(|r| unplaced_parent(r, &self_references, &held).is_some())
            .map(|r| r.key.clone())
        {
            held.insert(key);
        }
        Ok(rows
            .into_iter()
            .filter(|r| !held.contains(&r.key))
            .collect())
    }

    async fn push_deletes(
        &self,
        c: &CollectionConfig,
        report: &mut CollectionReport,
    ) -> Result<()> {
        self.for_pending(
            c,
            &[SyncStatus::Deleted],
            async |rows: Vec<LocalRow>, report: &mut CollectionReport| {
                // A delete by query reaches at most QUERY_LIMIT_MAX rows, which the page
                // size must not exceed either.
                let most = MAX_DELETE_ROWS.min(c.page_size.max(1) as usize);
                for batch in plan::batches_by_size(rows, |_| 1, usize::MAX, most) {
                    self.push_delete_batch(c, batch, report).await?;
                }
                Ok(())
            },
            report,
        )
        .await
    }

    /// Feeds pending rows of the given statuses to `push`, a chunk at a time, in key order.
    async fn for_pending(
        &self,
        c: &CollectionConfig,
        statuses: &[SyncStatus],
        push: impl AsyncFn(Vec<LocalRow>, &mut CollectionReport) -> Result<()>,
        report: &mut CollectionReport,
    ) -> Result<()> {
        let mut after: Option<Key> = None;
        loop {
            let rows = self.store.pending(c, after.as_ref(), PENDING_CHUNK).await?;
            let Some(last) = rows.last() else {
                return Ok(());
            };
            after = Some(last.key.clone());
            let full = rows.len() == PENDING_CHUNK;
            let rows: Vec<LocalRow> = rows
                .into_iter()
                .filter(|r| statuses.contains(&r.status))
                .collect();
            if !rows.is_empty() {
                push(rows, report).await?;
            }
            if !full {
                return Ok(());
            }
        }
    }

    async fn push_creates(
        &self,
        c: &CollectionConfig,
        rows: Vec<LocalRow>,
        report: &mut CollectionReport,
    ) -> Result<()> {
        let self_references = self_references(c);
        // Directus inserts a batch row by row: a parent must come before its children.
        let payloads: Vec<(LocalRow, Value)> = plan::parents_first(rows, &self_references)
            .into_iter()
            .map(|r| {
                let body = wire_row(c, &r.key, &r.data);
                (r, body)
            })
            .collect();
        let size = |(_, body): &(LocalRow, Value)| body.to_string().len();
        // Rows rejected here, and rows held back because a parent of theirs was.
        let mut unplaced: HashSet<Key> = HashSet::new();
        for batch in plan::batches_by_size(payloads, size, MAX_BODY_BYTES, MAX_CREATE_ROWS) {
            let (locals, bodies): (Vec<LocalRow>, Vec<Value>) = batch.into_iter().unzip();
            let idem = batch_key(&locals);
            match self
                .remote
                .create(&c.name, bodies, &ident_fields(c), &idem)
                .await
            {
                Ok(created) => {
                    let mut changes = Changes::default();
                    let stamps = stamps_by_key(c, &created);
                    for local in &locals {
                        let stamp = created_stamp(c, &stamps, &local.key)?;
                        changes.ops.push(settle_op(local, stamp, None));
                    }
                    report.pushed += locals.len() as u64;
                    self.store.apply(c, changes).await?;
                }
                Err(Error::Remote(e)) if e.kind.is_transient() => return Err(Error::Remote(e)),
                Err(e) if locals.len() > 1 => {
                    // One bad row fails the whole batch and Directus does not say which:
                    // retry one by one to find it.
                    tracing::debug!(error = %e, "batch create failed, retrying one by one");
                    for local in locals {
                        if let Some(parent) = unplaced_parent(&local, &self_references, &unplaced) {
                            warn!(collection = %c.name, key = %local.key, parent_key = %parent,
                                "held back: its parent has not reached the server");
                            unplaced.insert(local.key);
                            continue;
                        }
                        if !self.push_one_create(c, &local, report).await? {
                            unplaced.insert(local.key);
                        }
                    }
                }
                Err(e) => {
                    if !self.create_failed(c, &locals[0], e, report).await? {
                        unplaced.insert(locals[0].key.clone());
                    }
                }
            }
        }
        Ok(())
    }

    /// Creates one row; returns whether it reached the server (`false`: quarantined).
    async fn push_one_create(
        &self,
        c: &CollectionConfig,
        local: &LocalRow,
        report: &mut CollectionReport,
    ) -> Result<bool> {
        let body = wire_row(c, &local.key, &local.data);
        let idem = local.change_key.clone().unwrap_or_default();
        match self
            .remote
            .create(&c.name, vec![body], &ident_fields(c), &idem)
            .await
        {
            Ok(created) => {
                let stamp = created_stamp(c, &stamps_by_key(c, &created), &local.key)?;
                report.pushed += 1;
                let changes = Changes {
                    ops: vec![settle_op(local, stamp, None)],
                    ..Default::default()
                };
                self.store.apply(c, changes).await?;
                Ok(true)
            }
            Err(e) => self.create_failed(c, local, e, report).await,
        }
    }

    /// A single create failed: an earlier attempt may have landed (RECORD_NOT_UNIQUE), or
    /// the server refuses the row for good (quarantine, returns `false`), or the failure is
    /// transient.
    async fn create_failed(
        &self,
        c: &CollectionConfig,
        local: &LocalRow,
        error: Error,
        report: &mut CollectionReport,
    ) -> Result<bool> {
        match &error {
            Error::Remote(e) if e.kind == RemoteErrorKind::NotUnique => {
                match self.fetch_remote(c, &local.key).await? {
                    Some(remote) => {
                        self.compare_and_settle(c, local, Some(remote), report)
                            .await?;
                        Ok(true)
                    }
                    None => Err(error),
                }
            }
            Error::Remote(e) if is_permanent(e.kind) => {
                self.quarantine(c, local, e.to_string(), report).await?;
                Ok(false)
            }
            _ => Err(error),
        }
    }

    async fn push_updates(
        &self,
        c: &CollectionConfig,
        rows: Vec<LocalRow>,
        report: &mut CollectionReport,
    ) -> Result<()> {
        let keys: Vec<Key> = rows.iter().map(|r| r.key.clone()).collect();
        let bases = self.store.bases(c, &keys).await?;
        let (groups, mut singles) = plan::group_updates(rows, &bases, MAX_GROUP_ROWS);
        let mut outcomes: Vec<(LocalRow, Result<Option<Stamp>>)> = Vec::new();
        let mut first_error = None;
        for group in groups {
            match self.compare_and_set_group(c, &group).await {
                Ok(stamps) => outcomes.extend(group.rows.into_iter().map(|local| {
                    let stamp = stamps.get(&local.key).copied();
                    (local, Ok(stamp))
                })),
                // One by one, the server tells which of the rows it refuses.
                Err(Error::Remote(e)) if is_permanent(e.kind) => singles.extend(group.rows),
                // The rows stay pending for the next sync.
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        let one_by_one: Vec<_> = futures::stream::iter(singles)
            .map(|local| async move {
                let base = local.base.expect("updates have a base");
                let result = self.compare_and_set(c, &local, base).await;
                (local, result)
            })
            .buffer_unordered(UPDATE_CONCURRENCY)
            .collect()
            .await;
        outcomes.extend(one_by_one);
        // What the server acknowledged is settled first, so that a failure while handling
        // the rest cannot leave an applied write looking pending.
        let mut changes = Changes::default();
        let mut rest = Vec::new();
        for (local, result) in outcomes {
            match result {
                Ok(Some(stamp)) => {
                    report.pushed += 1;
                    changes.ops.push(settle_op(&local, stamp, None));
                }
                other => rest.push((local, other)),
            }
        }
        self.store.apply(c, changes).await?;
        for (local, result) in rest {
            match result {
                Ok(_) => {
                    let remote = self.fetch_remote(c, &local.key).await?;
                    self.compare_and_settle(c, &local, remote, report).await?;
                }
                Err(Error::Remote(e)) if is_permanent(e.kind) => {
                    self.quarantine(c, &local, e.to_string(), report).await?;
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// One PATCH by query for rows that change the same fields alike, each row compared on
    /// its key and base stamp; returns the new stamps of the rows the server updated.
    async fn compare_and_set_group(
        &self,
        c: &CollectionConfig,
        group: &plan::UpdateGroup,
    ) -> Result<HashMap<Key, Stamp>> {
        let each: Vec<Value> = group
            .rows
            .iter()
            .map(|local| {
                let base = local.base.expect("grouped updates have a base");
                json!({ "_and": [
                    { &c.primary_key: { "_eq": key_to_json(&local.key, c.key_type) } },
                    { &c.cursor: { "_eq": base.to_wire() } },
                ]})
            })
            .collect();
        let updated = self
            .remote
            .update_where(
                &c.name,
                json!({ "_or": each }),
                Value::Object(group.patch.clone()),
                &ident_fields(c),
                &batch_key(&group.rows),
            )
            .await?;
        Ok(stamps_by_key(c, &updated))
    }

    /// PATCH by query on key and base stamp; `None` when the server row moved on.
    async fn compare_and_set(
        &self,
        c: &CollectionConfig,
        local: &LocalRow,
        base: Stamp,
    ) -> Result<Option<Stamp>> {
        let filter = json!({ "_and": [
            { &c.primary_key: { "_eq": key_to_json(&local.key, c.key_type) } },
            { &c.cursor: { "_eq": base.to_wire() } },
        ]});
        let idem = local.change_key.clone().unwrap_or_default();
        let updated = self
            .remote
            .update_where(
                &c.name,
                filter,
                Value::Object(local.data.clone()),
                &ident_fields(c),
                &idem,
            )
            .await?;
        Ok(stamps_by_key(c, &updated).get(&local.key).copied())
    }

    /// The compare-and-set failed (or a create met an existing key): if the server already
    /// holds exactly the local content, an earlier attempt landed; otherwise it is a conflict.
    async fn compare_and_settle(
        &self,
        c: &CollectionConfig,
        local: &LocalRow,
        remote: Option<RemoteRow>,
        report: &mut CollectionReport,
    ) -> Result<()> {
        if let Some(r) = &remote
            && local.status != SyncStatus::Deleted
            && plan::same_content(&local.data, &r.data)
        {
            report.pushed += 1;
            let changes = Changes {
                ops: vec![settle_op(local, r.stamp, None)],
                ..Default::default()
            };
            self.store.apply(c, changes).await?;
            return Ok(());
        }
        if remote.is_none() && local.status == SyncStatus::Deleted {
            report.pushed += 1;
            let changes = Changes {
                ops: vec![remove_op(local)],
                ..Default::default()
            };
            self.store.apply(c, changes).await?;
            return Ok(());
        }
        let deleted_at = match (&remote, &c.deletes) {
            (None, Deletes::Activity) => self.remote.delete_time(&c.name, &local.key).await?,
            _ => None, // unknown: last-write-wins gives the delete to the server
        };
        self.resolve_conflict(c, local, remote, deleted_at, report)
            .await
    }

    async fn push_delete_batch(
        &self,
        c: &CollectionConfig,
        rows: Vec<LocalRow>,
        report: &mut CollectionReport,
    ) -> Result<()> {
        let conditions: Vec<Value> = rows
            .iter()
            .map(|r| {
                let key = json!({ &c.primary_key: { "_eq": key_to_json(&r.key, c.key_type) } });
                match r.base {
                    Some(base) => {
                        json!({ "_and": [key, { &c.cursor: { "_eq": base.to_wire() } }] })
                    }
                    None => key,
                }
            })
            .collect();
        let idem = batch_key(&rows);
        let deleted = self
            .remote
            .delete_where(&c.name, json!({ "_or": conditions }), &idem)
            .await;
        match deleted {
            Ok(()) => {}
            Err(Error::Remote(e)) if is_permanent(e.kind) && rows.len() > 1 => {
                for row in rows {
                    Box::pin(self.push_delete_batch(c, vec![row], report)).await?;
                }
                return Ok(());
            }
            Err(Error::Remote(e)) if is_permanent(e.kind) => {
                return self.quarantine(c, &rows[0], e.to_string(), report).await;
            }
            Err(e) => return Err(e),
        }
        // A delete by query says nothing about what it matched: read back what survived.
        let keys: Vec<Key> = rows.iter().map(|r| r.key.clone()).collect();
        let survivors = self.fetch_remotes(c, &keys, remote_row).await?;
        let mut changes = Changes::default();
        let mut conflicted = Vec::new();
        for local in &rows {
            match survivors.get(&local.key) {
                None => {
                    report.pushed += 1;
                    changes.ops.push(remove_op(local));
                }
                // Untouched at the base it was deleted against: the server's query limit cut
                // the batch short. It stays pending for the next sync.
                Some(remote) if local.base == Some(remote.stamp) => {
                    warn!(collection = %c.name, key = %local.key, "delete not applied by the server; retried at the next sync");
                }
                Some(remote) => conflicted.push((local, remote.clone())),
            }
        }
        self.store.apply(c, changes).await?;
        for (local, remote) in conflicted {
            self.resolve_conflict(c, local, Some(remote), None, report)
                .await?;
        }
        Ok(())
    }

    async fn quarantine(
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

    // ----- conflicts -----

    async fn resolve_conflict(
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
        let resolution = self.resolvers[&c.name].resolve(&conflict);
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
        let mut changes = Changes {
            records: vec![record],
            ..Default::default()
        };
        match resolution {
            Resolution::Park => {
                report.parked += 1;
                changes.ops.push(RowOp::Mark {
                    key: local.key.clone(),
                    change_key: local.change_key.clone(),
                    status: SyncStatus::Conflict,
                    base: None,
                });
            }
            Resolution::TakeRemote => changes.ops.push(take_remote_op(local, remote.as_ref())),
            Resolution::KeepLocal => changes
                .ops
                .push(self.push_over(c, local, remote.as_ref(), report).await?),
        }
        self.store.apply(c, changes).await?;
        Ok(())
    }

    /// Pushes the local version over the server's after the strategy chose it.
    async fn push_over(
        &self,
        c: &CollectionConfig,
        local: &LocalRow,
        remote: Option<&RemoteRow>,
        report: &mut CollectionReport,
    ) -> Result<RowOp> {
        let idem = local.change_key.clone().unwrap_or_default();
        let key_filter = json!({ &c.primary_key: { "_eq": key_to_json(&local.key, c.key_type) } });
        match (local.status, remote) {
            (SyncStatus::Deleted, _) => {
                self.remote.delete_where(&c.name, key_filter, &idem).await?;
                report.pushed += 1;
                Ok(remove_op(local))
            }
            (_, Some(r)) => match self.compare_and_set(c, local, r.stamp).await? {
                Some(stamp) => {
                    report.pushed += 1;
                    Ok(settle_op(local, stamp, None))
                }
                // The server moved again: keep the change pending on the newest base we
                // know; the next sync compares again.
                None => Ok(RowOp::Mark {
                    key: local.key.clone(),
                    change_key: local.change_key.clone(),
                    status: local.status,
                    base: Some(Some(r.stamp)),
                }),
            },
            (_, None) => {
                let body = wire_row(c, &local.key, &local.data);
                let created = self
                    .remote
                    .create(&c.name, vec![body], &ident_fields(c), &idem)
                    .await?;
                let stamp = created_stamp(c, &stamps_by_key(c, &created), &local.key)?;
                report.pushed += 1;
                Ok(settle_op(local, stamp, None))
            }
        }
    }

    fn record(
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
            created_at: Utc::now(),
            resolved_at: None,
        }
    }

    /// Applies a person's decision on conflict `id`: the row is settled locally against the
    /// current server version, and what must still reach the server goes at the next sync.
    pub async fn resolve(&self, id: i64, choice: Choice) -> Result<ConflictRecord> {
        let record = self
            .store
            .conflict(id)
            .await?
            .ok_or_else(|| Error::Usage(format!("no conflict with id {id}")))?;
        if record.resolution.is_some() {
            return Err(Error::Usage(format!("conflict {id} is already resolved")));
        }
        let c = self.collection_config(&record.collection)?.clone();
        if let Choice::With(data) = &choice {
            crate::handle::check_fields(&c, data)?;
        }
        let mut local = self
            .store
            .rows(&c, std::slice::from_ref(&record.key))
            .await?
            .pop();
        if let (Choice::With(data), None) = (&choice, &local) {
            // No local row (a server row that did not fit): the given content becomes one.
            let key = record.key.clone();
            let insert = crate::ports::LocalWrite::Insert {
                key: key.clone(),
                data: data.clone(),
            };
            self.store.write(&c, insert).await?;
            local = self.store.rows(&c, &[key]).await?.pop();
        }
        // The server row may be one that does not fit; only its stamp matters then.
        let remote = self
            .fetch_remotes(&c, std::slice::from_ref(&record.key), remote_row_unchecked)
            .await?
            .remove(&record.key);
        if let (Choice::Remote, Some(r)) = (&choice, &remote)
            && let Err(e) = crate::handle::check_fields(&c, &r.data)
        {
            return Err(Error::Usage(format!(
                "conflict {id}: the server version does not fit ({e}); resolve it with a version that does"
            )));
        }
        let mut changes = Changes::default();
        let resolution = match (&choice, &local) {
            (Choice::Remote, _) => {
                match (&local, &remote) {
                    (Some(l), _) => changes.ops.push(take_remote_op(l, remote.as_ref())),
                    (None, Some(r)) => changes.ops.push(RowOp::Pull(r.clone())),
                    (None, None) => {}
                }
                Resolution::TakeRemote
            }
            (Choice::Local, Some(l)) | (Choice::With(_), Some(l)) => {
                let mut l = l.clone();
                if let Choice::With(data) = &choice {
                    self.store
                        .write(
                            &c,
                            crate::ports::LocalWrite::Update {
                                key: l.key.clone(),
                                data: data.clone(),
                            },
                        )
                        .await?;
                    l = self
                        .store
                        .rows(&c, std::slice::from_ref(&l.key))
                        .await?
                        .pop()
                        .unwrap_or(l);
                }
                let status = match (record.kind, &remote) {
                    // A local delete whose row the server no longer has is done.
                    (_, None) if l.status == SyncStatus::Deleted => None,
                    // Deleted locally, also if that happened while the row waited.
                    (ConflictKind::LocalDeleteRemoteUpdate, _) => Some(SyncStatus::Deleted),
                    _ if l.status == SyncStatus::Deleted => Some(SyncStatus::Deleted),
                    (_, None) => Some(SyncStatus::Created),
                    (ConflictKind::Rejected, _) if l.status.is_pending() => Some(l.status),
                    _ => Some(SyncStatus::Updated),
                };
                changes.ops.push(match status {
                    Some(status) => RowOp::Mark {
                        key: l.key.clone(),
                        change_key: l.change_key.clone(),
                        status,
                        base: Some(remote.as_ref().map(|r| r.stamp)),
                    },
                    None => remove_op(&l),
                });
                Resolution::KeepLocal
            }
            // Nothing local to keep (a server row that did not fit): closing it is all.
            (_, None) => Resolution::KeepLocal,
        };
        // The row may have been written while it waited: record what was really decided on.
        let decided = self
            .store
            .rows(&c, std::slice::from_ref(&record.key))
            .await?
            .pop()
            .map(|l| (l.status != SyncStatus::Deleted).then_some(l.data))
            .filter(|now| record.local.is_some() && *now != record.local);
        changes.closes.push(Close {
            id,
            resolution,
            local: decided,
        });
        self.store.apply(&c, changes).await?;
        Ok(self.store.conflict(id).await?.unwrap_or(record))
    }

    // ----- pull -----

    async fn pull(&self, c: &CollectionConfig, report: &mut CollectionReport) -> Result<()> {
        let mut checkpoint = self.store.checkpoint(&c.name).await?;
        if matches!(c.deletes, Deletes::Activity) && checkpoint.delete_cursor.is_none() {
            // Deletes before the first pull are already reflected in what it reads.
            checkpoint.delete_cursor =
                Some(self.remote.latest_activity(&c.name).await?.unwrap_or(0));
        }
        let archive = archive_of(c);
        let fields = read_fields(c);
        let overlap = chrono::Duration::seconds(i64::from(c.overlap_seconds));
        let mut settled: Option<Stamp> = None;
        let mut position = checkpoint.pull.clone();
        let query = |request: &crate::cursor::PageRequest| ListQuery {
            filter: request.filter.clone(),
            sort: vec![c.cursor.clone(), c.primary_key.clone()],
            fields: fields.clone(),
            limit: i64::from(request.limit),
            offset: request.offset,
        };
        // The next page, fetched while the previous one was applied.
        let mut prefetched = None;
        loop {
            let request = page_request(&position, &c.cursor, c.page_size, c.filter.as_ref());
            let page = match prefetched.take() {
                Some(page) => page,
                None => self.remote.list(&c.name, &query(&request)).await?,
            };
            let server_now = page
                .server_date
                .unwrap_or_else(|| Utc::now() + self.remote.clock_skew());
            settled.get_or_insert(Stamp(server_now - overlap));
            let (rows, invalid, archived) = decode_page(c, &page.rows, archive);
            let (rows, next, done) = match page_outcome(&position, &request, rows, page.rows.len())
            {
                PageOutcome::Advance { rows, next, done } => (rows, next, done),
                PageOutcome::AnchorLost { restart } => {
                    info!(collection = %c.name, "rows moved during the pull; re-reading the stamp group");
                    position = restart;
                    continue;
                }
            };
            let keys: Vec<Key> = rows.iter().map(|r| r.key.clone()).collect();
            let locals: HashMap<Key, LocalRow> = self
                .store
                .rows(c, &keys)
                .await?
                .into_iter()
                .map(|l| (l.key.clone(), l))
                .collect();
            let mut changes = Changes::default();
            for row in rows {
                if let Some(error) = invalid.get(&row.key) {
                    report.quarantined += 1;
                    warn!(%error, "server row does not fit the configuration; not applied");
                    changes.records.push(invalid_record(c, &row, error));
                    continue;
                }
                let is_archived = archived.contains(&row.key);
                match plan::pull_row(locals.get(&row.key), row, is_archived) {
                    Some(op @ RowOp::Pull(_)) => {
                        report.pulled += 1;
                        changes.ops.push(op);
                    }
                    Some(op) => {
                        report.deleted += 1;
                        changes.ops.push(op);
                    }
                    None => {}
                }
            }
            position = if done {
                settle(&next, settled.expect("set on the first page"))
            } else {
                next
            };
            checkpoint.pull = position.clone();
            changes.checkpoint = Some(checkpoint.clone());
            if done {
                return self.store.apply(c, changes).await.map(drop);
            }
            // Fetching and applying overlap: the next request depends only on the position.
            let next = query(&page_request(
                &position,
                &c.cursor,
                c.page_size,
                c.filter.as_ref(),
            ));
            let (applied, page) = futures::join!(
                self.store.apply(c, changes),
                self.remote.list(&c.name, &next)
            );
            applied?;
            prefetched = Some(page?);
        }
    }

    // ----- reconcile -----

    async fn reconcile(
        &self,
        c: &CollectionConfig,
        keys: bool,
        run: &RunCache,
        report: &mut CollectionReport,
    ) -> Result<()> {
        match c.deletes {
            Deletes::None => return Ok(()), // remote deletes are not synced
            // Archived rows arrive through the pull; hard deletes only through the keys.
            Deletes::Archive { .. } if keys => return self.reconcile_keys(c, report).await,
            Deletes::Archive { .. } => return Ok(()),
            Deletes::Activity => {}
        }
        let mut checkpoint = self.store.checkpoint(&c.name).await?;
        let after = checkpoint.delete_cursor.unwrap_or(0);
        // Read before the deletes, so that the read below covers every entry up to it.
        let settled = self.settled_activity(run).await?;
        let first = match self.first_delete_page(c, after, run).await? {
            Ok(page) => page,
            Err(reason) => {
                warn!(collection = %c.name, %reason, "the activity log cannot be trusted; comparing keys");
                // Read from here on: deletes logged while the keys are compared are seen next time.
                let latest = self.remote.latest_activity(&c.name).await.ok().flatten();
                let oldest = self.remote.oldest_activity().await.ok().flatten();
                let restart = latest.unwrap_or(0).max(oldest.map_or(0, |o| o - 1));
                self.reconcile_keys(c, report).await?;
                checkpoint.delete_cursor = Some(restart);
                let changes = Changes {
                    checkpoint: Some(checkpoint),
                    ..Default::default()
                };
                return self.store.apply(c, changes).await.map(drop);
            }
        };
        if keys {
            self.reconcile_keys(c, report).await?;
        }
        let mut page = first;
        loop {
            if !page.full {
                // Every delete up to the settled entry has been read: the cursor moves past
                // the other collections' entries too, so the next read starts there.
                let covered = settled.filter(|s| Some(*s) > checkpoint.delete_cursor);
                if page.deletes.is_empty() && covered.is_none() {
                    return Ok(());
                }
                checkpoint.delete_cursor = checkpoint.delete_cursor.max(covered);
            }
            checkpoint.delete_cursor = page.last_id.max(checkpoint.delete_cursor);
            let keys: Vec<Key> = page.deletes.iter().map(|d| d.key.clone()).collect();
            let locals: HashMap<Key, LocalRow> = self
                .store
                .rows(c, &keys)
                .await?
                .into_iter()
                .map(|l| (l.key.clone(), l))
                .collect();
            let mut changes = Changes::default();
            let mut conflicted = Vec::new();
            for delete in &page.deletes {
                let local = locals.get(&delete.key);
                match plan::remote_delete(local, delete.at) {
                    RemoteDelete::Ignore => {}
                    RemoteDelete::Remove(op) => {
                        report.deleted += 1;
                        changes.ops.push(op);
                    }
                    RemoteDelete::Purge(op) => changes.ops.push(op),
                    RemoteDelete::Conflict => {
                        conflicted.push((local.expect("conflicts have a local row"), delete.at))
                    }
                }
            }
            for (local, at) in conflicted {
                // The row may have come back since the logged delete: ask the server.
                let remote = self.fetch_remote(c, &local.key).await?;
                if remote.is_some() {
                    continue; // the push compares against it at the next sync
                }
                self.resolve_conflict(c, local, None, at, report).await?;
            }
            changes.checkpoint = Some(checkpoint.clone());
            self.store.apply(c, changes).await?;
            if !page.full {
                return Ok(());
            }
            let after = checkpoint.delete_cursor.unwrap_or(0);
            page = self
                .remote
                .deletes_after(&c.name, after, c.page_size)
                .await?;
        }
    }

    /// The first page of deletes after `after`, or why the activity log cannot tell every
    /// delete since then: the collection is not logged, the log is not readable, or
    /// retention removed entries after the cursor.
    async fn first_delete_page(
        &self,
        c: &CollectionConfig,
        after: i64,
        run: &RunCache,
    ) -> Result<Result<DeletePage, String>> {
        if self.activity_logging(&c.name, run).await? == Some(false) {
            return Ok(Err("the collection's accountability is off".into()));
        }
        let page = match self.remote.deletes_after(&c.name, after, c.page_size).await {
            Ok(page) => page,
            Err(Error::Remote(e)) if e.kind == RemoteErrorKind::Forbidden => {
                return Ok(Err(
                    "the activity log is not readable with this token".into()
                ));
            }
            Err(e) => return Err(e),
        };
        if page.anchored {
            return Ok(Ok(page));
        }
        // Neither entry `after` nor `after + 1` is left: retention may have removed entries
        // after the cursor, unless the log holds nothing older than them at all.
        Ok(match self.remote.oldest_activity().await? {
            Some(oldest) if oldest > after + 1 => Err(format!(
                "retention removed activity after the stored cursor ({after}); the oldest entry is {oldest}"
            )),
            _ => Ok(page),
        })
    }

    /// The newest activity id logged more than the longest overlap window ago, read once per
    /// run; `None` when there is none or the log is not readable. Entries commit within that
    /// window (the same bound the pull's overlap relies on), so none with a smaller id can
    /// still appear.
    async fn settled_activity(&self, run: &RunCache) -> Result<Option<i64>> {
        let mut cached = run.settled_activity.lock().await;
        if let Some(settled) = *cached {
            return Ok(settled);
        }
        let window = self
            .config
            .collections
            .iter()
            .map(|c| c.overlap_seconds)
            .max()
            .unwrap_or(0);
        let at = Utc::now() + self.remote.clock_skew() - chrono::Duration::seconds(window.into());
        let settled = match self.remote.settled_activity(at).await {
            Ok(settled) => settled,
            Err(Error::Remote(e)) if e.kind == RemoteErrorKind::Forbidden => None,
            Err(e) => return Err(e),
        };
        *cached = Some(settled);
        Ok(settled)
    }

    /// Whether the server logs the activity of `c`, read once per run for all collections;
    /// `None` when the token may not read its settings (the log itself is then the evidence).
    async fn activity_logging(&self, collection: &str, run: &RunCache) -> Result<Option<bool>> {
        let mut cached = run.activity_logging.lock().await;
        if cached.is_none() {
            *cached = Some(match self.remote.activity_logging().await {
                Ok(logging) => logging,
                Err(Error::Remote(e)) if e.kind == RemoteErrorKind::Forbidden => HashMap::new(),
                Err(e) => return Err(e),
            });
        }
        Ok(cached.as_ref().and_then(|m| m.get(collection).copied()))
    }

    /// Removes local synced rows whose keys the server no longer has, or no longer shows
    /// through the collection's filter, or has archived. Page by page of local keys, each
    /// checked with one `_in` query: no offsets to shift while the server changes.
    async fn reconcile_keys(
        &self,
        c: &CollectionConfig,
        report: &mut CollectionReport,
    ) -> Result<()> {
        let page = c.page_size.max(1) as usize;
        let mut after: Option<Key> = None;
        loop {
            let keys: Vec<Key> = self
                .store
                .synced(c, after.as_ref(), page)
                .await?
                .into_iter()
                .map(|(key, _)| key)
                .collect();
            let Some(last) = keys.last() else {
                return Ok(());
            };
            after = Some(last.clone());
            let present = self.present_keys(c, &keys).await?;
            let gone: Vec<RowOp> = keys
                .iter()
                .filter(|k| !present.contains(*k))
                .map(|k| RowOp::Remove {
                    key: k.clone(),
                    guard: Guard::IfSynced,
                })
                .collect();
            if !gone.is_empty() {
                info!(collection = %c.name, removed = gone.len(), "rows the server no longer has");
            }
            let changes = Changes {
                ops: gone,
                ..Default::default()
            };
            report.deleted += self.store.apply(c, changes).await? as u64;
            if keys.len() < page {
                return Ok(());
            }
        }
    }

    /// Which of `keys` the server shows, through the collection's filter, unarchived.
    async fn present_keys(&self, c: &CollectionConfig, keys: &[Key]) -> Result<HashSet<Key>> {
        let wire_keys: Vec<Value> = keys.iter().map(|k| key_to_json(k, c.key_type)).collect();
        let by_key = json!({ &c.primary_key: { "_in": wire_keys } });
        let (rows, _) = self.key_stamps(c, by_key, keys.len(), 0).await?;
        Ok(rows.into_iter().map(|(key, _)| key).collect())
    }

    /// Keys and stamps of the server rows matching `condition` and the collection's filter,
    /// in key order, archived rows left out; also how many rows the server returned.
    pub(crate) async fn key_stamps(
        &self,
        c: &CollectionConfig,
        condition: Value,
        limit: usize,
        offset: u64,
    ) -> Result<(Vec<(Key, Option<Stamp>)>, usize)> {
        let archive = archive_of(c);
        let filter = match &c.filter {
            Some(own) => json!({ "_and": [condition, own] }),
            None => condition,
        };
        let mut fields = ident_fields(c);
        fields.extend(archive.map(|(field, _)| field.to_owned()));
        let query = ListQuery {
            filter,
            sort: vec![c.primary_key.clone()],
            fields,
            limit: limit as i64,
            offset,
        };
        let page = self.remote.list(&c.name, &query).await?;
        let rows = page
            .rows
            .iter()
            .filter(|raw| !plan::is_archived(raw, archive))
            .filter_map(|raw| {
                let key = raw
                    .get(&c.primary_key)
                    .and_then(crate::model::key_from_json)?;
                let stamp = raw[&c.cursor].as_str().and_then(Stamp::parse);
                Some((key, stamp))
            })
            .collect();
        Ok((rows, page.rows.len()))
    }

    // ----- reading the server -----

    /// The current server version of one row; `None` when it is gone (or archived).
    async fn fetch_remote(&self, c: &CollectionConfig, key: &Key) -> Result<Option<RemoteRow>> {
        Ok(self
            .fetch_remotes(c, std::slice::from_ref(key), remote_row)
            .await?
            .remove(key))
    }

    pub(crate) async fn fetch_remotes(
        &self,
        c: &CollectionConfig,
        keys: &[Key],
        decode: fn(&CollectionConfig, &Value) -> Result<RemoteRow, RowError>,
    ) -> Result<HashMap<Key, RemoteRow>> {
        let archive = archive_of(c);
        let mut out = HashMap::new();
        // Chunks of at most a page: the page size is what the server is known to allow.
        for chunk in keys.chunks(c.page_size.max(1) as usize) {
            let wire_keys: Vec<Value> = chunk.iter().map(|k| key_to_json(k, c.key_type)).collect();
            let query = ListQuery {
                filter: json!({ &c.primary_key: { "_in": wire_keys } }),
                sort: vec![c.primary_key.clone()],
                fields: read_fields(c),
                // Never -1: Directus caps that at QUERY_LIMIT_MAX without a word, and a
                // missing row would read as deleted. A limit above the cap is refused instead.
                limit: chunk.len() as i64,
                offset: 0,
            };
            let page = self.remote.list(&c.name, &query).await?;
            for raw in &page.rows {
                if plan::is_archived(raw, archive) {
                    continue;
                }
                let row = decode(c, raw).map_err(|e| protocol(e.to_string()))?;
                out.insert(row.key.clone(), row);
            }
        }
        Ok(out)
    }
}

#[derive(Debug, Clone, Copy)]
enum Phase<'r> {
    PushWrites,
    PushDeletes,
    Pull,
    Reconcile { keys: bool, run: &'r RunCache },
}

/// What a sync reads from the server once and shares between its collections.
#[derive(Debug, Default)]
struct RunCache {
    /// The accountability settings of the collections, read when first needed.
    activity_logging: futures::lock::Mutex<Option<HashMap<String, bool>>>,
    /// The newest activity id old enough to have committed, read when first needed.
    settled_activity: futures::lock::Mutex<Option<Option<i64>>>,
}

impl Phase<'_> {
    fn name(self) -> &'static str {
        match self {
            Phase::PushWrites => "push",
            Phase::PushDeletes => "push_deletes",
            Phase::Pull => "pull",
            Phase::Reconcile { .. } => "reconcile",
        }
    }
}

/// Records the summed counts of `reports` on a span declared with those fields.
fn record_counts(span: &Span, reports: &[CollectionReport]) {
    let sum = |count: fn(&CollectionReport) -> u64| reports.iter().map(count).sum::<u64>();
    span.record("pushed", sum(|r| r.pushed));
    span.record("pulled", sum(|r| r.pulled));
    span.record("deleted", sum(|r| r.deleted));
    span.record("conflicts", sum(|r| r.conflicts));
    span.record("quarantined", sum(|r| r.quarantined));
}

/// Collections with parents (referenced collections) first; cycles keep file order.
pub fn push_order(config: &Config) -> Vec<&CollectionConfig> {
    order_by_relations(config).0
}

/// The collections caught in a relation cycle between collections (a collection relating to
/// itself is not a cycle here): they cannot all go parents first, so they keep file order.
pub fn relation_cycle(config: &Config) -> Vec<String> {
    order_by_relations(config).1
}

fn order_by_relations(config: &Config) -> (Vec<&CollectionConfig>, Vec<String>) {
    let mut placed: Vec<&CollectionConfig> = Vec::new();
    let mut rest: Vec<&CollectionConfig> = config.collections.iter().collect();
    let mut cycle = Vec::new();
    while !rest.is_empty() {
        let ready = rest.iter().position(|c| {
            c.fields
                .iter()
                .filter_map(|f| f.references.as_deref())
                .all(|parent| {
                    parent == c.name
                        || placed.iter().any(|p| p.name == parent)
                        || config.collection(parent).is_none()
                })
        });
        if ready.is_none() && cycle.is_empty() {
            cycle = rest.iter().map(|c| c.name.clone()).collect();
        }
        let next = rest.remove(ready.unwrap_or(0));
        placed.push(next);
    }
    (placed, cycle)
}

fn is_permanent(kind: RemoteErrorKind) -> bool {
    matches!(kind, RemoteErrorKind::Rejected | RemoteErrorKind::Forbidden)
}

/// Fields that relate a collection to itself.
fn self_references(c: &CollectionConfig) -> Vec<&str> {
    c.fields
        .iter()
        .filter(|f| f.references.as_deref() == Some(c.name.as_str()))
        .map(|f| f.name.as_str())
        .collect()
}

/// The first parent of `row`, through `self_references`, that is among `unplaced`.
fn unplaced_parent(
    row: &LocalRow,
    self_references: &[&str],
    unplaced: &HashSet<Key>,
) -> Option<Key> {
    self_references
        .iter()
        .filter_map(|f| row.data.get(*f).and_then(crate::model::key_from_json))
        .find(|k| *k != row.key && unplaced.contains(k))
}

fn protocol(message: String) -> Error {
    Error::Remote(crate::error::RemoteError::new(
        RemoteErrorKind::Protocol,
        message,
    ))
}

fn ident_fields(c: &CollectionConfig) -> Vec<String> {
    vec![c.primary_key.clone(), c.cursor.clone()]
}

fn archive_of(c: &CollectionConfig) -> Option<(&str, &Value)> {
    match &c.deletes {
        Deletes::Archive { field, value } => Some((field.as_str(), value)),
        _ => None,
    }
}

/// A row as sent to Directus: key plus synced fields.
fn wire_row(c: &CollectionConfig, key: &Key, data: &Row) -> Value {
    let mut body = data.clone();
    body.insert(c.primary_key.clone(), key_to_json(key, c.key_type));
    Value::Object(body)
}

/// One idempotency key for a batch: the first change's key and the batch length.
fn batch_key(rows: &[LocalRow]) -> String {
    let first = rows
        .first()
        .and_then(|r| r.change_key.as_deref())
        .unwrap_or("none");
    format!("{first}+{}", rows.len())
}

fn stamps_by_key(c: &CollectionConfig, rows: &[Value]) -> HashMap<Key, Stamp> {
    rows.iter()
        .filter_map(|raw| {
            let key = key_from_json(raw.get(&c.primary_key)?)?;
            let stamp = Stamp::parse(raw.get(&c.cursor)?.as_str()?)?;
            Some((key, stamp))
        })
        .collect()
}

/// The stamp the server gave a row it just created.
fn created_stamp(c: &CollectionConfig, stamps: &HashMap<Key, Stamp>, key: &Key) -> Result<Stamp> {
    stamps
        .get(key)
        .copied()
        .ok_or_else(|| protocol(format!("create of {}/{key} answered without it", c.name)))
}

/// Fields read from the server: key, cursor, synced fields and the archive field.
fn read_fields(c: &CollectionConfig) -> Vec<String> {
    let mut fields = ident_fields(c);
    fields.extend(c.fields.iter().map(|f| f.name.clone()));
    if let Some((field, _)) = archive_of(c)
        && !fields.iter().any(|f| f == field)
    {
        fields.push(field.to_owned());
    }
    fields
}

fn settle_op(local: &LocalRow, stamp: Stamp, data: Option<Row>) -> RowOp {
    RowOp::Settle {
        key: local.key.clone(),
        change_key: local.change_key.clone(),
        stamp,
        data,
    }
}

fn remove_op(local: &LocalRow) -> RowOp {
    RowOp::Remove {
        key: local.key.clone(),
        guard: Guard::IfUnchanged(local.change_key.clone()),
    }
}

fn take_remote_op(local: &LocalRow, remote: Option<&RemoteRow>) -> RowOp {
    match remote {
        Some(r) => settle_op(local, r.stamp, Some(r.data.clone())),
        None => remove_op(local),
    }
}

/// Decodes a page: rows for the cursor (with their data when valid), the errors of rows
/// that did not fit, and the keys of archived rows.
fn decode_page(
    c: &CollectionConfig,
    raw_rows: &[Value],
    archive: Option<(&str, &Value)>,
) -> (
    Vec<RemoteRow>,
    HashMap<Key, RowError>,
    std::collections::HashSet<Key>,
) {
    let mut rows = Vec::with_capacity(raw_rows.len());
    let mut invalid = HashMap::new();
    let mut archived = std::collections::HashSet::new();
    for raw in raw_rows {
        match remote_row(c, raw) {
            Ok(row) => {
                if plan::is_archived(raw, archive) {
                    archived.insert(row.key.clone());
                }
                rows.push(row);
            }
            Err(error) => {
                // Keep the row's place in the cursor order when its key and stamp are readable.
                let ident = error.key.clone().zip(
                    raw.get(&c.cursor)
                        .and_then(Value::as_str)
                        .and_then(Stamp::parse),
                );
                if let Some((key, stamp)) = ident {
                    rows.push(RemoteRow {
                        key: key.clone(),
                        stamp,
                        data: Row::new(),
                    });
                    invalid.insert(key, error);
                } else {
                    warn!(%error, "server row without a readable key or stamp skipped");
                }
            }
        }
    }
    (rows, invalid, archived)
}

fn invalid_record(c: &CollectionConfig, row: &RemoteRow, error: &RowError) -> ConflictRecord {
    ConflictRecord {
        id: 0,
        collection: c.name.clone(),
        key: row.key.clone(),
        kind: ConflictKind::InvalidRemote,
        strategy: c.conflict.as_str().to_owned(),
        resolution: None,
        base: None,
        local: None,
        remote: None,
        remote_stamp: Some(row.stamp),
        local_changed_at: None,
        message: Some(error.to_string()),
        created_at: Utc::now(),
        resolved_at: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use schema::FieldType;

    fn config(collections: Vec<CollectionConfig>) -> Config {
        Config::new("http://127.0.0.1:9", "t", "sqlite::memory:", collections)
    }

    fn names(order: Vec<&CollectionConfig>) -> Vec<&str> {
        order.into_iter().map(|c| c.name.as_str()).collect()
    }

    #[test]
    fn parents_are_pushed_before_children_whatever_the_file_order() {
        let config = config(vec![
            CollectionConfig::new("books").with_relation("author", FieldType::Uuid, "authors"),
            CollectionConfig::new("authors").with_relation("mentor", FieldType::Uuid, "authors"),
        ]);
        assert_eq!(names(push_order(&config)), ["authors", "books"]);
        assert!(
            relation_cycle(&config).is_empty(),
            "a self-relation is no cycle"
        );
    }

    #[test]
    fn a_relation_cycle_is_named_and_keeps_file_order() {
        let config = config(vec![
            CollectionConfig::new("tags"),
            CollectionConfig::new("a").with_relation("b_id", FieldType::Uuid, "b"),
            CollectionConfig::new("b").with_relation("a_id", FieldType::Uuid, "a"),
        ]);
        assert_eq!(names(push_order(&config)), ["tags", "a", "b"]);
        assert_eq!(relation_cycle(&config), ["a", "b"]);
    }
}
