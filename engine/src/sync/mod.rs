//! The sync driver: runs push, pull and reconcile for each collection against the ports.
//!
//! Owns the order of requests and local transactions, one submodule per phase (`push`,
//! `pull`, `reconcile`), plus `conflicts` (carrying out merges and decisions) and `read`
//! (server rows by key). Decisions come from [`crate::plan`], [`crate::decide`],
//! [`crate::merge`], [`crate::cursor`] and [`crate::conflict`]; this module only sequences
//! them and carries them out through [`Remote`] and [`Store`]. It must not speak HTTP or SQL
//! itself. Here: the phases of a cycle, kept independent, the run's report and the token's
//! permissions.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use chrono::Utc;
use futures::StreamExt;
use schema::{CollectionConfig, Config, Deletes};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::field::Empty;
use tracing::{Instrument, Span, info, info_span, warn};

use crate::commit::CommitPolicy;
use crate::conflict::{Conflict, ConflictKind, Resolution, Resolver, resolver_for};
use crate::cursor::{Lane, PageOutcome, page_outcome, page_request, settle};
use crate::decide;
use crate::decode::{RowError, remote_row, remote_row_owned, remote_row_unchecked, version_of};
use crate::error::{Error, ErrorKind, RemoteError, RemoteErrorKind, Result, UsageErrorKind};
use crate::model::{Key, LocalRow, RemoteRow, Row, Stamp, SyncStatus, key_from_json, key_to_json};
use crate::plan::{self, RemoteDelete};

mod check;
mod chunks;
mod conflicts;
mod limit;
mod progress;
mod pull;
mod push;
pub(crate) mod read;
mod reconcile;
mod server_keys;
use crate::ports::{
    Action, Changes, Checkpoint, Close, ConflictRecord, DeletePage, FilteredRows, Guard, LeaseWait,
    Permissions, Remote, RowOp, RunRecord, Store,
};
pub use progress::{Progress, ProgressPhase};
use read::InvalidRow;

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
/// Local write notices kept for a slow listener before it is told it lagged.
const LOCAL_WRITE_BACKLOG: usize = 256;
/// Progress notices kept for a slow listener.
const PROGRESS_BACKLOG: usize = 64;

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
    /// Of those, merged field by field (`merge: fields`).
    #[serde(default)]
    pub merged: u64,
    /// Each of those merges: the row and where each field that changed came from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub merges: Vec<MergeNote>,
    /// Local changes the server rejected for good, and server rows that did not fit.
    pub quarantined: u64,
    pub duration_ms: u64,
    /// Configured fields this token may read but not update, when the push read the token's
    /// permissions: local changes to them are held back, never sent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub read_only_fields: Vec<String>,
    /// Why a phase of this collection failed; the next sync resumes where it stopped.
    pub error: Option<String>,
    /// What kind of failure that was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_kind: Option<ErrorKind>,
    /// The phase that failed (`push`, `push_deletes`, `pull`, `reconcile`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_phase: Option<String>,
    /// Another process held this collection's lease and synced it instead
    /// ([`LeaseWait::Skip`]); this run did nothing with it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub held_elsewhere: bool,
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
            merged: self.merged - before.merged,
            merges: self.merges[before.merges.len()..].to_vec(),
            quarantined: self.quarantined - before.quarantined,
            duration_ms: self.duration_ms - before.duration_ms,
            read_only_fields: self.read_only_fields.clone(),
            error: self.error.clone(),
            error_kind: self.error_kind,
            error_phase: self.error_phase.clone(),
            held_elsewhere: self.held_elsewhere,
        }
    }
}

/// A row merged field by field, as the run history keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MergeNote {
    pub key: Key,
    pub fields: crate::merge::FieldSources,
}

/// How a sync cycle runs beyond the defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncOptions {
    /// Compare every synced local key with the server and remove what it no longer has
    /// (or what left the collection's filter), whatever the activity log says.
    pub reconcile_keys: bool,
    /// What to do with a collection whose lease another process holds: wait for it (the
    /// default), or leave the collection to that process.
    pub lease: LeaseWait,
}

impl Default for SyncOptions {
    fn default() -> SyncOptions {
        SyncOptions {
            reconcile_keys: false,
            lease: LeaseWait::Wait,
        }
    }
}

/// What a sync did, per collection.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SyncReport {
    pub collections: Vec<CollectionReport>,
    /// Conflicts and rejected changes waiting for a person after this sync, all collections
    /// (`None` when they could not be counted).
    pub waiting: Option<u64>,
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
    /// The store's replica id, part of every create's idempotency key.
    replica: String,
    /// The collection of each write through [`Collection`](crate::Collection), for a
    /// [`Syncer`](crate::service::Syncer) to push it at once.
    local_writes: tokio::sync::broadcast::Sender<String>,
    /// How far pushes and pulls have come, for whoever listens.
    progress: tokio::sync::broadcast::Sender<Progress>,
    /// Whether pulls count their rows first, for [`Progress::total`].
    count_totals: std::sync::atomic::AtomicBool,
    /// When a pull's local transaction commits.
    commits: CommitPolicy,
    /// The server's limit on rows per request, once a page was refused for it (0: none known).
    query_limit: std::sync::atomic::AtomicU32,
}

impl<S: Store, R: Remote> Engine<S, R> {
    /// Prepares the store (engine tables, collection tables) and returns the engine.
    pub async fn open(config: Config, store: S, remote: R) -> Result<Self> {
        let cycle = relation_cycle(&config);
        if !cycle.is_empty() {
            warn!(collections = %cycle.join(", "), "relation cycle: these collections are pushed in file order");
        }
        store.prepare(&config).await?;
        let replica = store.replica_id().await?;
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
            replica,
            local_writes: tokio::sync::broadcast::channel(LOCAL_WRITE_BACKLOG).0,
            progress: tokio::sync::broadcast::channel(PROGRESS_BACKLOG).0,
            count_totals: Default::default(),
            commits: CommitPolicy::default(),
            query_limit: Default::default(),
        })
    }

    /// Sets when a pull's local transaction commits (by default after a second or 50,000
    /// rows, and at the end of the pull).
    pub fn with_commit_policy(mut self, commits: CommitPolicy) -> Self {
        self.commits = commits;
        self
    }

    /// Progress of pushes and pulls from now on. A receiver that falls behind skips notices;
    /// the next one says where things stand.
    pub fn progress(&self) -> tokio::sync::broadcast::Receiver<Progress> {
        self.progress.subscribe()
    }

    /// Whether [`Progress`] notices carry totals. Counting costs each pull one request.
    pub fn count_totals(&self, count: bool) {
        self.count_totals
            .store(count, std::sync::atomic::Ordering::Relaxed);
    }

    fn counting(&self) -> bool {
        self.progress.receiver_count() > 0
            && self.count_totals.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn report_progress(
        &self,
        collection: &str,
        phase: ProgressPhase,
        done: u64,
        total: Option<u64>,
    ) {
        if self.progress.receiver_count() > 0 {
            let _ = self.progress.send(Progress {
                collection: collection.to_owned(),
                phase,
                done,
                total,
            });
        }
    }

    /// The collection of each write made through [`Collection`](crate::Collection) from now
    /// on. A receiver that falls behind learns it (`Lagged`) and should treat every
    /// collection as written.
    pub fn local_writes(&self) -> tokio::sync::broadcast::Receiver<String> {
        self.local_writes.subscribe()
    }

    pub(crate) fn wrote(&self, collection: &str) {
        // Nobody listening is fine: a sync finds the change anyway.
        let _ = self.local_writes.send(collection.to_owned());
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

    /// How many conflicts and rejected changes wait for a person, all collections.
    pub async fn waiting(&self) -> Result<u64> {
        self.store.waiting().await
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
        out.extend(self.store.removed(&self.config).await?);
        Ok(out)
    }

    /// The server key a temporary key of `collection` became (keys the server assigns), while
    /// the key map keeps it (30 days); `None` before the server has created the row.
    pub async fn server_key(&self, collection: &str, temporary: &Key) -> Result<Option<Key>> {
        self.collection_config(collection)?;
        self.store.server_key(collection, temporary).await
    }

    /// The latest finished sync run, if any.
    pub async fn last_run(&self) -> Result<Option<RunRecord>> {
        self.store.last_run().await
    }

    pub fn collection_config(&self, name: &str) -> Result<&CollectionConfig> {
        self.config.collection(name).ok_or_else(|| {
            Error::usage(
                UsageErrorKind::UnknownCollection,
                format!("no collection named {name:?} is configured"),
            )
        })
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
        // Leases in push order, so that two processes waiting for each other's never meet
        // in opposite orders. Held until the run is recorded.
        let mut leases = Vec::new();
        let mut held_elsewhere = Vec::new();
        for c in order
            .into_iter()
            .filter(|c| only.is_none_or(|name| c.name == name))
        {
            match self.store.lease(&c.name, options.lease).await? {
                Some(lease) => leases.push((c, lease)),
                None => held_elsewhere.push(CollectionReport {
                    collection: c.name.clone(),
                    held_elsewhere: true,
                    ..Default::default()
                }),
            }
        }
        let selected: Vec<&CollectionConfig> = leases.iter().map(|(c, _)| *c).collect();
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
        let run = RunCache::default();
        async {
            // Parents before children for creates and updates, children before parents
            // for deletes, then pull and reconcile each collection.
            for (c, report) in selected.iter().zip(reports.iter_mut()) {
                self.run_phase(c, report, Phase::Check, &run).await;
                self.run_phase(c, report, Phase::PushWrites, &run).await;
            }
            for (c, report) in selected.iter().zip(reports.iter_mut()).rev() {
                self.run_phase(c, report, Phase::PushDeletes, &run).await;
            }
            for (c, report) in selected.iter().zip(reports.iter_mut()) {
                self.run_phase(c, report, Phase::Pull, &run).await;
                let phase = Phase::Reconcile {
                    keys: options.reconcile_keys,
                };
                self.run_phase(c, report, phase, &run).await;
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
        // The work is committed: failing to count or record it must not lose its report.
        let waiting = match self.store.waiting().await {
            Ok(n) => Some(n),
            Err(e) => {
                warn!(error = %e, "counting the conflicts that wait failed");
                None
            }
        };
        reports.extend(held_elsewhere);
        let report = SyncReport {
            collections: reports,
            waiting,
            duration_ms: started.elapsed().as_millis() as u64,
        };
        let recorded = self
            .store
            .record_run(&RunRecord {
                started_at,
                finished_at: Utc::now(),
                ok: !report.failed(),
                summary: serde_json::to_value(&report).unwrap_or(Value::Null),
            })
            .await;
        if let Err(e) = recorded {
            warn!(error = %e, "recording the run failed");
        }
        drop(leases);
        Ok(report)
    }

    async fn run_phase(
        &self,
        c: &CollectionConfig,
        report: &mut CollectionReport,
        phase: Phase,
        run: &RunCache,
    ) {
        // A failed phase does not stop the others: the pull never overwrites a pending row,
        // and a delete is applied to synced rows only. Only a server out of reach, or
        // credentials it refuses, stop the collection: every further request would fail too.
        // So does a cursor that cannot see every row: nothing is synced until it can.
        if report.error_kind.is_some_and(|k| {
            k.is_transient() || matches!(k, ErrorKind::Auth | ErrorKind::ServerMismatch)
        }) {
            return;
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
        let result = loop {
            // Pages and batches sized to the server's limit, once it refused one for that.
            let c = &self.fitted(c);
            let result = async {
                match phase {
                    Phase::Check => self.check_server(c).await,
                    Phase::PushWrites => self.push_writes(c, run, report).await,
                    Phase::PushDeletes => self.push_deletes(c, run, report).await,
                    Phase::Pull => self.pull(c, report).await,
                    Phase::Reconcile { keys } => self.reconcile(c, keys, run, report).await,
                }
            }
            .instrument(span.clone())
            .await;
            match result {
                Err(Error::Remote(e)) if self.learned_query_limit(c, &e).await => continue,
                result => break result,
            }
        };
        report.duration_ms += phase_started.elapsed().as_millis() as u64;
        record_counts(&span, &[report.since(&before)]);
        let _entered = span.enter();
        match result {
            Ok(()) => info!("phase done"),
            Err(e) => {
                warn!(error = %e, "phase failed");
                // The first failure is the one reported; later phases may fail of it.
                if report.error.is_none() {
                    report.error_kind = Some(e.kind());
                    report.error_phase = Some(phase.name().to_owned());
                    report.error = Some(e.to_string());
                }
            }
        }
    }
}

impl<S: Store, R: Remote> Engine<S, R> {
    /// What the token may do, read once per sync when first needed; `None` when the server
    /// cannot say.
    async fn permissions(&self, run: &RunCache) -> Result<Option<Permissions>> {
        let mut cached = run.permissions.lock().await;
        if let Some(permissions) = &*cached {
            return Ok(permissions.clone());
        }
        let permissions = match self.remote.permissions().await {
            Ok(p) => p,
            Err(Error::Remote(e)) if e.kind == RemoteErrorKind::Forbidden => None,
            Err(e) => return Err(e),
        };
        *cached = Some(permissions.clone());
        Ok(permissions)
    }

    /// What the token may do, when it may `action` items of `c` at all (or the server cannot
    /// say); otherwise the failure of the collection's push: every change stays pending until
    /// it may.
    async fn allowed(
        &self,
        c: &CollectionConfig,
        action: Action,
        run: &RunCache,
    ) -> Result<Option<Permissions>> {
        match self.permissions(run).await? {
            Some(p) if !p.allows(&c.name, action) => Err(not_allowed(c, action, &[], None)),
            permissions => Ok(permissions),
        }
    }

    /// A write the server refused for good. Directus answers 403 FORBIDDEN both for a missing
    /// permission and for an item the token may not see: when the token lacks `action` on
    /// the collection or one of `fields` (or the server cannot say what it may do), the
    /// refusal is the collection's, returned as the error that stops its push with every
    /// change pending. Otherwise it is the row's (`Ok`), to quarantine.
    async fn refusal(
        &self,
        c: &CollectionConfig,
        action: Action,
        fields: &[&str],
        e: RemoteError,
        run: &RunCache,
    ) -> Result<RemoteError> {
        if e.kind != RemoteErrorKind::Forbidden {
            return Ok(e);
        }
        match self.permissions(run).await? {
            Some(p) if p.allows(&c.name, action) => {
                let denied: Vec<&str> = fields
                    .iter()
                    .copied()
                    .filter(|f| !p.covers(&c.name, action, f))
                    .collect();
                if denied.is_empty() {
                    Ok(e)
                } else {
                    Err(not_allowed(c, action, &denied, Some(&e)))
                }
            }
            _ => Err(not_allowed(c, action, fields, Some(&e))),
        }
    }
}

/// The collection-level failure of a token that may not `action` (these `fields`).
fn not_allowed(
    c: &CollectionConfig,
    action: Action,
    fields: &[&str],
    e: Option<&RemoteError>,
) -> Error {
    let what = if fields.is_empty() {
        format!("{} items of {}", action.as_str(), c.name)
    } else {
        format!(
            "{} field(s) {} of {}",
            action.as_str(),
            fields.join(", "),
            c.name
        )
    };
    Error::Remote(RemoteError {
        kind: RemoteErrorKind::Forbidden,
        status: e.and_then(|e| e.status),
        code: e.and_then(|e| e.code.clone()),
        message: format!("the token may not {what}; the changes stay pending until it may"),
    })
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    Check,
    PushWrites,
    PushDeletes,
    Pull,
    Reconcile { keys: bool },
}

/// What a sync reads from the server once and shares between its collections.
#[derive(Debug, Default)]
struct RunCache {
    /// The accountability settings of the collections, read when first needed.
    activity_logging: futures::lock::Mutex<Option<HashMap<String, bool>>>,
    /// The newest activity id old enough to have committed, read when first needed.
    settled_activity: futures::lock::Mutex<Option<Option<i64>>>,
    /// What the token may do, read when a push first needs it.
    permissions: futures::lock::Mutex<Option<Option<Permissions>>>,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Check => "check",
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

fn protocol(message: String) -> Error {
    Error::Remote(crate::error::RemoteError::new(
        RemoteErrorKind::Protocol,
        message,
    ))
}

fn ident_fields(c: &CollectionConfig) -> Vec<String> {
    std::iter::once(c.primary_key.as_str())
        .chain(c.version_fields())
        .map(str::to_owned)
        .collect()
}

fn archive_of(c: &CollectionConfig) -> Option<(&str, &Value)> {
    match &c.deletes {
        Deletes::Archive { field, value } => Some((field.as_str(), value)),
        _ => None,
    }
}

/// A row as sent to Directus: key plus synced fields the server does not fill itself.
fn wire_row(c: &CollectionConfig, key: &Key, data: &Row) -> Value {
    let mut body = on_the_wire(c, &writable(c, data));
    body.insert(c.primary_key.clone(), key_to_json(key, c.key_type));
    Value::Object(body)
}

/// `data` in the form Directus reads exactly (see [`crate::decode::to_wire`]).
fn on_the_wire(c: &CollectionConfig, data: &Row) -> Row {
    data.iter()
        .map(|(name, value)| {
            let value = match c.field(name) {
                Some(f) => crate::decode::to_wire(f.kind, value),
                None => value.clone(),
            };
            (name.clone(), value)
        })
        .collect()
}

/// The fields of `data` a push may write: read-only fields are filled by the server.
fn writable(c: &CollectionConfig, data: &Row) -> Row {
    let mut out = data.clone();
    for field in c.fields.iter().filter(|f| c.is_read_only(f)) {
        out.remove(&field.name);
    }
    out
}

/// One idempotency key for a batch: the first change's key and the batch length.
fn batch_key(rows: &[LocalRow]) -> String {
    let first = rows
        .first()
        .and_then(|r| r.change_key.as_deref())
        .unwrap_or("none");
    format!("{first}+{}", rows.len())
}

/// Fields read from the server: key, cursor, synced fields and the archive field.
fn read_fields(c: &CollectionConfig) -> Vec<String> {
    let mut fields = ident_fields(c);
    let archive = archive_of(c).map(|(field, _)| field);
    let extra = archive.into_iter().chain(c.idempotency_field.as_deref());
    for field in c.fields.iter().map(|f| f.name.as_str()).chain(extra) {
        if !fields.iter().any(|f| f == field) {
            fields.push(field.to_owned());
        }
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
