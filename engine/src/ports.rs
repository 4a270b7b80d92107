//! The two seams where the engine meets the world: the remote and the local store.
//!
//! Owns the contracts adapters implement, in plain data. Nothing here knows HTTP, SQL or
//! Directus's filter dialect: requests say which rows they mean (keys, stamps, pages) and the
//! adapters crate, which provides the Directus client and the SQL store, says it in its terms.

use std::collections::HashMap;
use std::future::Future;

use chrono::{DateTime, Utc};
use schema::{CollectionConfig, Config};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::conflict::{ConflictKind, Resolution};
use crate::cursor::{Lane, PageRequest, PullPosition};
use crate::error::Result;
use crate::merge::FieldSources;
use crate::model::{Key, LocalRow, RemoteRow, Row, Stamp, SyncStatus};

/// Which rows passing a collection's own `filter` a read returns, in key order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilteredRows<'a> {
    /// Those among these keys.
    Among(&'a [Key]),
    /// All of them, `limit` rows from `offset` on.
    Page { offset: u64, limit: usize },
}

/// One page of raw rows and the server's clock when it answered.
#[derive(Debug, Clone, Default)]
pub struct RawPage {
    pub rows: Vec<Value>,
    pub server_date: Option<DateTime<Utc>>,
}

/// A delete recorded in the server's activity log.
#[derive(Debug, Clone, PartialEq)]
pub struct DeleteActivity {
    pub id: i64,
    pub key: Key,
    pub at: Option<Stamp>,
}

/// The version a locally changed row started from, kept when it was first changed.
#[derive(Debug, Clone, PartialEq)]
pub struct Base {
    /// The server stamp of that version, where the snapshot recorded it.
    pub stamp: Option<Stamp>,
    pub data: Row,
}

/// One page of a collection's logged deletes, read together with the evidence that the log
/// still reaches back to where the read started.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeletePage {
    pub deletes: Vec<DeleteActivity>,
    /// The log still holds entry `after` or `after + 1`: retention, which removes the oldest
    /// entries first, has removed nothing logged after `after`.
    pub anchored: bool,
    /// The newest entry the page covers, anchors included: the next read starts after it.
    pub last_id: Option<i64>,
    /// The page was full: more deletes may follow `last_id`.
    pub full: bool,
}

/// An action a token may be allowed on a collection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Create,
    Read,
    Update,
    Delete,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Read => "read",
            Action::Update => "update",
            Action::Delete => "delete",
        }
    }
}

/// What the token may do, as the server reports it: the actions allowed per collection, each
/// with the fields it covers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Permissions {
    /// Allowed actions; `None` fields: every field.
    grants: HashMap<(String, Action), Option<Vec<String>>>,
}

impl Permissions {
    /// Allows `action` on `collection` for `fields` (`None`: every field).
    pub fn grant(&mut self, collection: &str, action: Action, fields: Option<Vec<String>>) {
        self.grants.insert((collection.to_owned(), action), fields);
    }

    pub fn allows(&self, collection: &str, action: Action) -> bool {
        self.grants.contains_key(&(collection.to_owned(), action))
    }

    /// Whether `action` on `collection` may touch `field`.
    pub fn covers(&self, collection: &str, action: Action, field: &str) -> bool {
        match self.grants.get(&(collection.to_owned(), action)) {
            None => false,
            Some(None) => true,
            Some(Some(fields)) => fields.iter().any(|f| f == field || f == "*"),
        }
    }
}

/// A field of a server collection, as its schema describes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerField {
    pub name: String,
    /// The Directus type (`integer`, `timestamp`, `alias`, ...).
    pub kind: String,
    /// `meta.special`: `date-created`, `date-updated`, `uuid`, `m2o`, ...
    pub specials: Vec<String>,
    pub primary_key: bool,
    pub auto_increment: bool,
    pub unique: bool,
    /// `meta.readonly`: the Data Studio does not let people edit it.
    pub read_only: bool,
}

impl ServerField {
    pub fn has_special(&self, special: &str) -> bool {
        self.specials.iter().any(|s| s == special)
    }
}

/// What the engine needs from a Directus server.
pub trait Remote: Send + Sync {
    /// A page of the pull: the rows `request` asks for that pass the collection's own
    /// `filter`, in cursor order, then key order; each with `fields`.
    fn page(
        &self,
        c: &CollectionConfig,
        request: &PageRequest,
        fields: &[String],
    ) -> impl Future<Output = Result<RawPage>> + Send;

    /// How many rows the pull of `request` will read from its position on (the server's
    /// `filter_count`), in one request; `None` when the server does not say.
    fn count(
        &self,
        c: &CollectionConfig,
        request: &PageRequest,
    ) -> impl Future<Output = Result<Option<u64>>> + Send;

    /// The rows among `keys`, whatever the collection's own `filter`, in key order; each
    /// with `fields`. Rows the server does not hold are left out, never cut off by a limit.
    fn rows_by_keys(
        &self,
        c: &CollectionConfig,
        keys: &[Key],
        fields: &[String],
    ) -> impl Future<Output = Result<RawPage>> + Send;

    /// The rows whose idempotency field (`c.idempotency_field`) holds one of `ids`, whatever
    /// the collection's own `filter`; each with `fields`. Never cut off by a limit.
    fn rows_created_as(
        &self,
        c: &CollectionConfig,
        ids: &[String],
        fields: &[String],
    ) -> impl Future<Output = Result<RawPage>> + Send;

    /// The rows `which` covers among those passing the collection's own `filter`, in key
    /// order; each with `fields`.
    fn filtered_rows(
        &self,
        c: &CollectionConfig,
        which: FilteredRows<'_>,
        fields: &[String],
    ) -> impl Future<Output = Result<RawPage>> + Send;

    /// Creates rows in one request (all or nothing); returns them with `fields`.
    fn create(
        &self,
        collection: &str,
        rows: Vec<Value>,
        fields: &[String],
        idempotency_key: &str,
    ) -> impl Future<Output = Result<Vec<Value>>> + Send;

    /// Writes `patch` to each of `rows` the server still holds at the given stamp, in one
    /// request (a compare-and-set of every key on its stamp); returns the updated rows with
    /// `fields`. A row left out did not match: it moved on, or is gone.
    fn update_if_unchanged(
        &self,
        c: &CollectionConfig,
        rows: &[(Key, Stamp)],
        patch: Row,
        fields: &[String],
        idempotency_key: &str,
    ) -> impl Future<Output = Result<Vec<Value>>> + Send;

    /// Deletes each of `rows` the server still holds at the given stamp (`None`: whatever
    /// its stamp), in one request. Says nothing about what matched.
    fn delete_if_unchanged(
        &self,
        c: &CollectionConfig,
        rows: &[(Key, Option<Stamp>)],
        idempotency_key: &str,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Deletes logged for `collection` after activity `after`, oldest first, at most `limit`,
    /// and whether the log still reaches back to `after`; one request.
    fn deletes_after(
        &self,
        collection: &str,
        after: i64,
        limit: u32,
    ) -> impl Future<Output = Result<DeletePage>> + Send;

    /// When the server logged the latest delete of `key`, if its activity log has it.
    fn delete_time(
        &self,
        collection: &str,
        key: &str,
    ) -> impl Future<Output = Result<Option<Stamp>>> + Send;

    /// The newest activity id logged for `collection` (any action), if any.
    fn latest_activity(&self, collection: &str)
    -> impl Future<Output = Result<Option<i64>>> + Send;

    /// The oldest activity id the server still keeps (any collection), if any: entries
    /// before it were removed by retention.
    fn oldest_activity(&self) -> impl Future<Output = Result<Option<i64>>> + Send;

    /// The newest activity id logged at or before `at` (any collection), if any. Entries up
    /// to it are old enough to have committed: a delete cursor may move past them.
    fn settled_activity(
        &self,
        at: DateTime<Utc>,
    ) -> impl Future<Output = Result<Option<i64>>> + Send;

    /// For every collection whose settings the token may read: whether the server logs its
    /// activity (its accountability is on). One request for all collections.
    fn activity_logging(&self) -> impl Future<Output = Result<HashMap<String, bool>>> + Send;

    /// What the token may do; `None` when the server cannot say (no such endpoint, or not
    /// readable with this token). One request.
    fn permissions(&self) -> impl Future<Output = Result<Option<Permissions>>> + Send;

    /// The fields of `collection` as the server's schema describes them; `None` when the
    /// token may not read them. One request.
    fn server_fields(
        &self,
        collection: &str,
    ) -> impl Future<Output = Result<Option<Vec<ServerField>>>> + Send;

    /// The most rows the server returns for one list request (Directus's
    /// `QUERY_LIMIT_MAX`); `None` when it sets no such limit or cannot say. One request.
    fn query_limit(&self) -> impl Future<Output = Result<Option<u32>>> + Send;

    /// The current estimate of the server clock minus the local clock.
    fn clock_skew(&self) -> chrono::Duration;

    /// Until `stop`, sends on `notices` the collection of each change the server announces
    /// (Directus realtime), and every collection after each (re)connection, since nothing
    /// announced meanwhile is replayed. Reconnects by itself. Returns
    /// [`Realtime::Unavailable`] at once when the server offers no such channel.
    fn watch_changes(
        &self,
        config: &Config,
        notices: tokio::sync::mpsc::Sender<String>,
        stop: tokio_util::sync::CancellationToken,
    ) -> impl Future<Output = Result<Realtime>> + Send;

    /// Whether the server answers, in one cheap unauthenticated request, without retries:
    /// the probe of a server that was down.
    fn ping(&self) -> impl Future<Output = Result<()>> + Send;
}

/// Per-collection progress kept by the store, advanced with the rows it covers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Where the pull of rows by their cursor stamp stands.
    pub pull: PullPosition,
    /// Where the pull of never-updated rows by their created stamp stands (collections with
    /// `cursor_created` only).
    #[serde(default)]
    pub pull_created: PullPosition,
    /// The last activity id whose delete has been applied; `None` before the first pull.
    pub delete_cursor: Option<i64>,
}

/// How a row operation is guarded against local writes made since the engine read the row.
#[derive(Debug, Clone, PartialEq)]
pub enum Guard {
    /// Only if the row is synced (or, for writes, absent).
    IfSynced,
    /// Only if the row still carries this pending change.
    IfUnchanged(Option<String>),
}

/// One change to a local row, made by the engine.
#[derive(Debug, Clone, PartialEq)]
pub enum RowOp {
    /// Write a server version as synced where the local row is absent or synced.
    Pull(RemoteRow),
    /// The server now holds `stamp` for this row, with content `data` where the engine knows
    /// it differs from the local content. If the row still carries `change_key` it becomes
    /// synced (with `data`, when given, as its content); otherwise only its base moves to
    /// `stamp`, `data` (when given) becomes its base snapshot, and the newer local change
    /// stays pending on top of it (a `created` row becomes `updated`). A row that becomes
    /// synced has its open `rejected` records closed as kept: a later change went through.
    Settle {
        key: Key,
        change_key: Option<String>,
        stamp: Stamp,
        data: Option<Row>,
    },
    /// Remove the local row if `guard` holds, closing its open `rejected` records.
    Remove { key: Key, guard: Guard },
    /// Set the status (and, when given, the base) of a row still carrying `change_key`.
    Mark {
        key: Key,
        change_key: Option<String>,
        status: SyncStatus,
        base: Option<Option<Stamp>>,
    },
    /// Carry the pending change of a row still carrying `change_key` (or of a row not held
    /// locally) onto server version `stamp` (`None`: the server does not hold the row), whose
    /// content is `base`: the row's content becomes `data`, it is pending as `status`, and
    /// `base` becomes its base snapshot. A merge writes the merged row this way before
    /// pushing it; a person's decision writes the version it keeps.
    Rebase {
        key: Key,
        change_key: Option<String>,
        status: SyncStatus,
        stamp: Option<Stamp>,
        data: Row,
        base: Option<Row>,
    },
    /// The server created the row of temporary key `from` as `to`: the local row, the rows
    /// of `references` (table and column) that hold `from`, and the engine's own records
    /// move to `to`, and the move is kept in the key map. Applied before the other
    /// operations of its step, which name the row by `to`.
    Rekey {
        from: Key,
        to: Key,
        references: Vec<(String, String)>,
    },
    /// Keep the pending change but stop pushing it: the server rejected it for good.
    Quarantine {
        key: Key,
        change_key: Option<String>,
        error: String,
    },
}

/// A conflict or a rejected change, as recorded for people and tools. The store keeps one
/// open `invalid_remote` record per server version of a row, however often it is read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConflictRecord {
    /// Assigned by the store.
    pub id: i64,
    pub collection: String,
    pub key: Key,
    pub kind: ConflictKind,
    pub strategy: String,
    /// `None` while it waits for a person.
    pub resolution: Option<Resolution>,
    pub base: Option<Row>,
    pub local: Option<Row>,
    pub remote: Option<Row>,
    /// The server version's stamp, or its delete time when the server deleted the row.
    pub remote_stamp: Option<Stamp>,
    /// When the local change was made, on the server clock: what `last_write_wins` compared
    /// with `remote_stamp`.
    pub local_changed_at: Option<DateTime<Utc>>,
    pub message: Option<String>,
    /// For a merged row: where each field changed since the base came from; for a row
    /// parked by a merge, the colliding fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fields: Option<FieldSources>,
    pub created_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
}

/// A person's decision on an open conflict record.
#[derive(Debug, Clone, PartialEq)]
pub struct Close {
    pub id: i64,
    pub resolution: Resolution,
    /// The local version the decision kept or dropped, when it is not the one recorded (the
    /// row was written while it waited; `Some(None)`: it was deleted); the record is updated
    /// to show it.
    pub local: Option<Option<Row>>,
}

/// Everything the engine changes locally at one step, applied in one transaction.
#[derive(Debug, Clone, Default)]
pub struct Changes {
    pub ops: Vec<RowOp>,
    pub records: Vec<ConflictRecord>,
    /// Conflict records this step closes with a resolution.
    pub closes: Vec<Close>,
    pub checkpoint: Option<Checkpoint>,
    /// All or nothing: when a guarded row operation finds the row changed since it was
    /// read, nothing is applied and the store fails with [`StoreErrorKind::Changed`].
    ///
    /// [`StoreErrorKind::Changed`]: crate::error::StoreErrorKind::Changed
    pub atomic: bool,
}

impl Checkpoint {
    /// The position of `lane`.
    pub fn position(&self, lane: Lane) -> &PullPosition {
        match lane {
            Lane::Cursor => &self.pull,
            Lane::Created => &self.pull_created,
        }
    }

    /// Sets the position of `lane`.
    pub fn set_position(&mut self, lane: Lane, position: PullPosition) {
        match lane {
            Lane::Cursor => self.pull = position,
            Lane::Created => self.pull_created = position,
        }
    }
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
            && self.records.is_empty()
            && self.closes.is_empty()
            && self.checkpoint.is_none()
    }
}

/// Pending changes and parked rows of a collection.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CollectionStatus {
    pub collection: String,
    pub rows: u64,
    pub created: u64,
    pub updated: u64,
    pub deleted: u64,
    pub conflicts: u64,
    pub quarantined: u64,
    pub checkpoint: Checkpoint,
    /// The collection is no longer in the schema file: its table is kept as it is and no
    /// longer synced, pending changes included.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub removed_from_file: bool,
}

/// A finished sync run as kept in the run history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub ok: bool,
    pub summary: Value,
}

/// How following the server's changes ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Realtime {
    /// Stopped as asked.
    Stopped,
    /// The server offers no realtime channel (Directus with `WEBSOCKETS_ENABLED=false`, its
    /// default): why, as the server answered.
    Unavailable(String),
}

/// What to do when another process holds a lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseWait {
    /// Wait until it is released.
    Wait,
    /// Do without: the holder does the work.
    Skip,
}

/// The right to sync one collection (or to upgrade the tables) while it is held, across every
/// process on the local database. Dropping it releases it; so does the holder's death.
pub struct Lease {
    _held: Box<dyn Send + Sync>,
}

impl Lease {
    /// A lease held as long as `held` lives.
    pub fn new(held: impl Send + Sync + 'static) -> Lease {
        Lease {
            _held: Box::new(held),
        }
    }
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Lease")
    }
}

/// A write transaction a long pull keeps open across pages, so that rows commit in large
/// groups rather than one page at a time. What it applies is seen by its own reads at once
/// and by everyone else at [`Batch::commit`]; dropping it rolls back what was not committed,
/// checkpoints included. While it is open, other writers to the local database wait.
pub trait Batch: Send + Sync {
    /// The local rows among `keys` as this transaction sees them (absent keys are left out).
    fn rows(
        &self,
        collection: &CollectionConfig,
        keys: &[Key],
    ) -> impl Future<Output = Result<Vec<LocalRow>>> + Send;

    /// Applies `changes` inside this transaction, like [`Store::apply`] without the commit.
    fn apply(
        &self,
        collection: &CollectionConfig,
        changes: Changes,
    ) -> impl Future<Output = Result<usize>> + Send;

    /// Makes everything applied durable and visible, as one transaction.
    fn commit(self) -> impl Future<Output = Result<()>> + Send;
}

/// What the engine needs from the local database.
pub trait Store: Send + Sync {
    /// The store's open write transaction.
    type Batch: Batch;

    /// Opens a write transaction, waiting for other writers to finish theirs.
    fn begin(&self) -> impl Future<Output = Result<Self::Batch>> + Send;

    /// Until `stop`, sends on `notices` the collection of each write that another
    /// connection (another process, plain SQL) makes to a collection table, leaving a row
    /// pending. Cheap while nothing happens. A store that cannot tell returns an error at
    /// once, and the caller relies on its interval.
    fn watch_writes(
        &self,
        config: &Config,
        notices: tokio::sync::mpsc::Sender<String>,
        stop: tokio_util::sync::CancellationToken,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Takes the lease `name` in the local database: at most one holder at a time, in any
    /// process; with [`LeaseWait::Skip`], `None` when another holds it.
    fn lease(
        &self,
        name: &str,
        wait: LeaseWait,
    ) -> impl Future<Output = Result<Option<Lease>>> + Send;

    /// Creates the engine's tables and creates or upgrades every collection table.
    fn prepare(&self, config: &Config) -> impl Future<Output = Result<()>> + Send;

    fn checkpoint(&self, collection: &str) -> impl Future<Output = Result<Checkpoint>> + Send;

    /// Pending, unquarantined rows with keys after `after`, in key order.
    fn pending(
        &self,
        collection: &CollectionConfig,
        after: Option<&Key>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<LocalRow>>> + Send;

    /// Keys and base stamps of synced rows after `after`, in key order, at most `limit`.
    fn synced(
        &self,
        collection: &CollectionConfig,
        after: Option<&Key>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<(Key, Option<Stamp>)>>> + Send;

    /// The local rows among `keys` (absent keys are left out).
    fn rows(
        &self,
        collection: &CollectionConfig,
        keys: &[Key],
    ) -> impl Future<Output = Result<Vec<LocalRow>>> + Send;

    /// The versions the locally changed rows of `keys` started from, where the store kept
    /// them.
    fn bases(
        &self,
        collection: &CollectionConfig,
        keys: &[Key],
    ) -> impl Future<Output = Result<HashMap<Key, Base>>> + Send;

    /// Applies `changes` in one transaction. Returns how many row operations took effect.
    fn apply(
        &self,
        collection: &CollectionConfig,
        changes: Changes,
    ) -> impl Future<Output = Result<usize>> + Send;

    fn conflicts(
        &self,
        open_only: bool,
    ) -> impl Future<Output = Result<Vec<ConflictRecord>>> + Send;

    fn conflict(&self, id: i64) -> impl Future<Output = Result<Option<ConflictRecord>>> + Send;

    /// How many conflicts and rejected changes wait for a person, all collections.
    fn waiting(&self) -> impl Future<Output = Result<u64>> + Send;

    fn status(
        &self,
        collection: &CollectionConfig,
    ) -> impl Future<Output = Result<CollectionStatus>> + Send;

    /// The status of collections synced here before that `config` no longer has; their
    /// tables are kept.
    fn removed(
        &self,
        config: &Config,
    ) -> impl Future<Output = Result<Vec<CollectionStatus>>> + Send;

    /// Records a finished sync; the last write of every run, where a store may also tidy up
    /// (the SQL store checkpoints SQLite's write-ahead log).
    fn record_run(&self, run: &RunRecord) -> impl Future<Output = Result<()>> + Send;

    fn last_run(&self) -> impl Future<Output = Result<Option<RunRecord>>> + Send;

    /// This database's replica id, made once: part of every create's idempotency key, so that
    /// two replicas' temporary keys never meet.
    fn replica_id(&self) -> impl Future<Output = Result<String>> + Send;

    /// The server key a temporary key of `collection` became, while the key map keeps it.
    fn server_key(
        &self,
        collection: &str,
        temporary: &Key,
    ) -> impl Future<Output = Result<Option<Key>>> + Send;

    /// Writes a row as an application would (the table's triggers do the bookkeeping).
    fn write(
        &self,
        collection: &CollectionConfig,
        write: LocalWrite,
    ) -> impl Future<Output = Result<bool>> + Send;
}

/// A write through the Rust API, with the same meaning as the plain-SQL contract.
#[derive(Debug, Clone, PartialEq)]
pub enum LocalWrite {
    Insert { key: Key, data: Row },
    Update { key: Key, data: Row },
    Delete { key: Key },
}
