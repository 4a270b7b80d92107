//! The local store on SQLite or PostgreSQL through sea-orm, as the engine's [`Store`].
//!
//! Owns connections, transactions, collection tables and the engine's tables. Every batch of
//! engine changes is one transaction, checkpoint included, or part of one a pull keeps open
//! ([`crate::SqlBatch`]). It must not decide anything about sync: it carries out [`RowOp`]s
//! with the guards they name.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use engine::conflict::{ConflictKind, Resolution};
use engine::cursor::PullPosition;
use engine::ports::{
    Base, Changes, Checkpoint, CollectionStatus, ConflictRecord, Guard, Lease, LeaseWait,
    LocalWrite, RowOp, RunRecord, Store,
};
use engine::{Key, LocalRow, RemoteRow, Row, Stamp, StoreError, StoreErrorKind, SyncStatus};
use migrations::Migrator;
use migrations::MigratorTrait;
use schema::{CollectionConfig, Config};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, QueryResult,
    TransactionTrait, Value as SqlValue,
};
use serde_json::Value;

use crate::batch::SqlBatch;
use crate::lease::Leases;
use crate::sql::{self, CHANGE_KEY, CHANGED_AT, ERROR, REV, STATUS, Sql, ident};

/// A push the server acknowledged: `RowOp::Settle` without data.
struct Ack<'a> {
    key: &'a Key,
    change_key: &'a Option<String>,
    stamp: Stamp,
}

/// A SQLite or PostgreSQL database holding collection tables and the engine's tables.
#[derive(Debug, Clone)]
pub struct SqlStore {
    db: DatabaseConnection,
    leases: std::sync::Arc<Leases>,
    /// When the last [`SqlBatch`] committed, on SQLite (see [`SqlStore::begin`]).
    last_commit: std::sync::Arc<std::sync::Mutex<Option<Instant>>>,
}

type Result<T, E = engine::Error> = std::result::Result<T, E>;

/// How long a pull leaves the SQLite write lock free after committing a transaction it held
/// at least [`LONG_HOLD`]: longer than SQLite's busy handler sleeps between tries.
const WRITER_TURN: Duration = Duration::from_millis(110);
/// A transaction held this long is followed by [`WRITER_TURN`].
const LONG_HOLD: Duration = Duration::from_millis(250);

pub(crate) fn db_err(
    context: impl std::fmt::Display,
) -> impl FnOnce(sea_orm::DbErr) -> engine::Error {
    move |e| {
        engine::Error::Store(StoreError {
            kind: store_error_kind(&e),
            message: format!("{context}: {e}"),
            source: Some(Box::new(e)),
        })
    }
}

/// SQLite reports a database held by another connection as SQLITE_BUSY ("database is
/// locked") once its busy timeout ran out; PostgreSQL as a lock or serialization failure.
/// Retrying later may succeed.
fn store_error_kind(e: &sea_orm::DbErr) -> StoreErrorKind {
    let text = e.to_string();
    let busy = [
        "database is locked",
        "database table is locked",
        "could not obtain lock",
        "deadlock detected",
        "could not serialize access",
    ]
    .iter()
    .any(|sign| text.contains(sign));
    if busy {
        StoreErrorKind::Busy
    } else {
        StoreErrorKind::Other
    }
}

fn invalid_value(message: String) -> engine::Error {
    engine::Error::Store(StoreError::with_kind(StoreErrorKind::InvalidValue, message))
}

impl SqlStore {
    /// Connects to `url` (`sqlite://path`, `sqlite::memory:`, `postgres://...`). SQLite files
    /// are created when missing and run in WAL mode.
    pub async fn connect(url: &str) -> Result<SqlStore, crate::Error> {
        let mut options = ConnectOptions::new(url.to_owned());
        options
            .sqlx_logging(false)
            .max_connections(if url.starts_with("sqlite") { 4 } else { 8 })
            .acquire_timeout(Duration::from_secs(30))
            .map_sqlx_sqlite_opts(|o| {
                use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
                o.create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .busy_timeout(Duration::from_secs(30))
            })
            .map_sqlx_postgres_pool_opts(|o| {
                o.after_connect(|conn, _| Box::pin(crate::nodelay::turn_off_nagle(conn)))
            });
        if url.contains(":memory:") {
            // Each in-memory connection is its own database: keep exactly one.
            options.max_connections(1).min_connections(1);
        }
        let db = Database::connect(options)
            .await
            .map_err(|e| crate::Error::Connect {
                url: redact_url(url),
                message: e.to_string(),
            })?;
        let leases = Leases::of(&db).await.map_err(|e| crate::Error::Connect {
            url: redact_url(url),
            message: e.to_string(),
        })?;
        Ok(SqlStore {
            db,
            leases: std::sync::Arc::new(leases),
            last_commit: Default::default(),
        })
    }

    /// Starts a write transaction. On SQLite it takes the write lock at once (`BEGIN
    /// IMMEDIATE`), waiting up to the busy timeout: a deferred transaction that reads first
    /// fails at its first write, without waiting, when another connection wrote meanwhile.
    async fn begin_write(&self, context: &str) -> Result<sea_orm::DatabaseTransaction> {
        self.db
            .begin_with_options(sea_orm::TransactionOptions {
                sqlite_transaction_mode: Some(sea_orm::SqliteTransactionMode::Immediate),
                ..Default::default()
            })
            .await
            .map_err(db_err(context))
    }

    /// The local rows among `keys`, as `conn` sees them.
    pub(crate) async fn rows_in(
        &self,
        conn: &impl ConnectionTrait,
        c: &CollectionConfig,
        keys: &[Key],
    ) -> Result<Vec<LocalRow>> {
        let mut out = Vec::with_capacity(keys.len());
        for chunk in sql::key_chunks(self.backend(), keys) {
            let mut q = Sql::new(self.backend());
            q.push(&format!(
                "SELECT {} FROM {} WHERE {} ",
                Self::select_list(c),
                ident(&c.table),
                ident(&c.primary_key)
            ));
            if self.backend() == DbBackend::Postgres {
                // One array, not a parameter per key: cheap to parse and plan.
                let keys = chunk.iter().map(|key| Some(key.clone())).collect();
                q.push("= ANY(")
                    .bind(sql::text_array(keys))
                    .push("::text[]::")
                    .push(sql::key_column_type(DbBackend::Postgres, c.key_type))
                    .push("[])");
            } else {
                q.push("IN ")
                    .bind_list(chunk.iter().map(|key| self.key_value(c, key)));
            }
            let rows = conn
                .query_all_raw(q.build())
                .await
                .map_err(db_err(format!("reading rows of {}", c.name)))?;
            for r in &rows {
                out.push(self.decode_local(c, r)?);
            }
        }
        Ok(out)
    }

    /// Notes that a [`SqlBatch`] held for `held` committed just now. Only a long hold can
    /// have kept a writer out for long, so only a long one is followed by a pause.
    pub(crate) fn committed(&self, held: Duration) {
        if held >= LONG_HOLD {
            *self.last_commit.lock().expect("commit time") = Some(Instant::now());
        }
    }

    /// Carries out `changes` inside `tx`, without committing. An error leaves part of them
    /// done: the caller drops `tx`, which rolls them back.
    pub(crate) async fn apply_in(
        &self,
        tx: &impl ConnectionTrait,
        c: &CollectionConfig,
        changes: Changes,
    ) -> Result<usize> {
        let mut applied = 0;
        // Keys move first: the other operations name rows by their new keys.
        let (rekeys, ops): (Vec<&RowOp>, Vec<&RowOp>) = changes
            .ops
            .iter()
            .partition(|op| matches!(op, RowOp::Rekey { .. }));
        for op in rekeys {
            if let RowOp::Rekey {
                from,
                to,
                references,
            } = op
            {
                self.rekey(tx, c, from, to, references).await?;
                applied += 1;
            }
        }
        // Pulled rows go in multi-row statements; the rest one by one, in order.
        let (pulled, others): (Vec<&RowOp>, Vec<&RowOp>) =
            ops.into_iter().partition(|op| matches!(op, RowOp::Pull(_)));
        let pulled: Vec<&RemoteRow> = pulled
            .into_iter()
            .filter_map(|op| match op {
                RowOp::Pull(r) => Some(r),
                _ => None,
            })
            .collect();
        if !pulled.is_empty() {
            self.upsert_pulled(tx, c, &pulled).await?;
            applied += pulled.len();
        }
        // Acknowledged pushes are settled in multi-row statements too, and so are the rows
        // they delete (unless one row that moved on must undo the lot).
        let mut acks = Vec::new();
        let mut gone = Vec::new();
        let mut rest = Vec::new();
        for op in others {
            match op {
                RowOp::Remove {
                    key,
                    guard: Guard::IfUnchanged(change_key),
                } if !changes.atomic => gone.push((key, change_key)),
                RowOp::Settle {
                    key,
                    change_key,
                    stamp,
                    data: None,
                } => acks.push(Ack {
                    key,
                    change_key,
                    stamp: *stamp,
                }),
                other => rest.push(other),
            }
        }
        if !acks.is_empty() {
            applied += self.settle_acknowledged(tx, c, &acks).await?;
        }
        if !gone.is_empty() {
            applied += self.remove_unchanged(tx, c, &gone).await?;
        }
        for op in rest {
            let done = self.apply_op(tx, c, op).await?;
            if changes.atomic && !done {
                // Dropping the transaction rolls it back: nothing of these changes is kept.
                return Err(engine::Error::Store(StoreError::with_kind(
                    StoreErrorKind::Changed,
                    format!(
                        "collection {}: a row changed while the change to it was prepared; nothing was written",
                        c.name
                    ),
                )));
            }
            applied += usize::from(done);
        }
        for record in &changes.records {
            self.insert_record(tx, record).await?;
        }
        for close in &changes.closes {
            let mut q = Sql::new(self.backend());
            q.push("UPDATE \"_deltasync_conflict\" SET resolution = ")
                .bind(SqlValue::from(close.resolution.as_str()))
                .push(", resolved_at = ")
                .bind(SqlValue::from(time_text(Utc::now())));
            if let Some(local) = &close.local {
                let text = local.as_ref().map(|l| Value::Object(l.clone()).to_string());
                q.push(", local = ").bind(SqlValue::String(text));
            }
            q.push(" WHERE id = ")
                .bind(SqlValue::BigInt(Some(close.id)));
            tx.execute_raw(q.build())
                .await
                .map_err(db_err("closing a conflict"))?;
        }
        if let Some(cp) = &changes.checkpoint {
            self.save_checkpoint(tx, c, cp).await?;
        }
        Ok(applied)
    }

    pub fn connection(&self) -> &DatabaseConnection {
        &self.db
    }

    fn backend(&self) -> DbBackend {
        self.db.get_database_backend()
    }

    async fn existing_columns(db: &impl ConnectionTrait, table: &str) -> Result<Vec<String>> {
        let stmt = match db.get_database_backend() {
            DbBackend::Postgres => {
                let mut q = Sql::new(DbBackend::Postgres);
                q.push("SELECT column_name::text FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = ")
                    .bind(SqlValue::from(table));
                q.build()
            }
            _ => {
                let mut q = Sql::new(DbBackend::Sqlite);
                q.push("SELECT name FROM pragma_table_info(")
                    .bind(SqlValue::from(table))
                    .push(")");
                q.build()
            }
        };
        let rows = db
            .query_all_raw(stmt)
            .await
            .map_err(db_err(format!("reading columns of {table}")))?;
        rows.iter()
            .map(|r| {
                r.try_get_by_index::<String>(0)
                    .map_err(db_err("reading a column name"))
            })
            .collect()
    }

    /// Creates the collection table, or adds the fields it lacks. Rows synced before a field
    /// was added lose their base stamp so that the next pull rewrites them with the field.
    ///
    /// One transaction on one connection: the upgrade is all or nothing, and SQLite never
    /// checks a statement against another connection's stale copy of the schema.
    async fn prepare_collection(&self, c: &CollectionConfig) -> Result<()> {
        let context = || format!("preparing table {}", c.table);
        let txn = self.begin_write(&context()).await?;
        let backend = txn.get_database_backend();
        let exec = async |statement: &str| {
            txn.execute_unprepared(statement)
                .await
                .map(drop)
                .map_err(db_err(context()))
        };
        let returning = Self::check_field_types(&txn, c).await?;
        let existing = Self::existing_columns(&txn, &c.table).await?;
        if existing.is_empty() {
            exec(&sql::create_table(backend, c)).await?;
        } else {
            let missing: Vec<_> = c
                .fields
                .iter()
                .filter(|f| !existing.contains(&f.name))
                .collect();
            for f in &missing {
                exec(&format!(
                    "ALTER TABLE {} ADD COLUMN {} {}",
                    ident(&c.table),
                    ident(&f.name),
                    sql::column_type(backend, f.kind)
                ))
                .await?;
            }
            if !missing.is_empty() || !returning.is_empty() {
                tracing::info!(collection = %c.name, added = missing.len() + returning.len(), "new fields: synced rows will be pulled again");
                exec(&format!(
                    "UPDATE {} SET {} = NULL, {REV} = {REV} + 1 WHERE {STATUS} = 'synced'",
                    ident(&c.table),
                    ident(&c.cursor)
                ))
                .await?;
                Self::restart_pull(&txn, c, "").await?;
            }
            // A field back in the file after rows were edited without it: their snapshots
            // take its current local value, so that only a change made to it since the
            // snapshot was taken is pushed, never the value it kept while out of the file.
            for field in &returning {
                exec(&sql::snapshot_field_backfill(backend, c, field)).await?;
            }
        }
        // A cursor that gained or lost its created lane reads rows differently.
        let lane_switched = if c.cursor_created.is_some() {
            " AND pull_created IS NULL"
        } else {
            " AND pull_created IS NOT NULL"
        };
        Self::restart_pull(&txn, c, lane_switched).await?;
        exec(&sql::create_pending_index(c)).await?;
        for statement in sql::local_write_trigger(backend, c)
            .into_iter()
            .chain(sql::server_key_guard(backend, c))
            .chain(sql::write_notice_trigger(backend, c))
        {
            exec(&statement).await?;
        }
        txn.commit().await.map_err(db_err(context()))
    }

    /// Starts the pull of `c` over, in every lane, where `condition` (` AND …`) holds. Only
    /// the pull: the delete cursor stays, or deletes logged since the last reconcile would
    /// never be applied.
    async fn restart_pull(
        db: &impl ConnectionTrait,
        c: &CollectionConfig,
        condition: &str,
    ) -> Result<()> {
        let mut q = Sql::new(db.get_database_backend());
        q.push("UPDATE \"_deltasync_checkpoint\" SET pull = ")
            .bind(SqlValue::from(start_position()))
            .push(", pull_created = ")
            .bind(SqlValue::String(
                c.cursor_created.as_ref().map(|_| start_position()),
            ))
            .push(" WHERE collection = ")
            .bind(SqlValue::from(c.name.as_str()))
            .push(condition);
        db.execute_raw(q.build())
            .await
            .map_err(db_err("restarting the pull"))
            .map(drop)
    }

    /// Refuses a field whose configured type differs from the one its column was made for,
    /// records the fields new to the table, and marks the fields no longer in the file. A
    /// removed field keeps its record, so that bringing it back under another type is refused
    /// too; returns the fields that come back, whose columns missed every change meanwhile.
    async fn check_field_types(
        db: &impl ConnectionTrait,
        c: &CollectionConfig,
    ) -> Result<Vec<String>> {
        let backend = db.get_database_backend();
        let context = || format!("reading the field types of {}", c.name);
        let mut q = Sql::new(backend);
        q.push("SELECT field, type, in_file FROM \"_deltasync_field\" WHERE collection = ")
            .bind(SqlValue::from(c.name.as_str()));
        let rows = db
            .query_all_raw(q.build())
            .await
            .map_err(db_err(context()))?;
        let mut recorded = HashMap::new();
        for row in rows {
            let field: String = row.try_get_by_index(0).map_err(db_err(context()))?;
            let kind: String = row.try_get_by_index(1).map_err(db_err(context()))?;
            let in_file: bool = row.try_get_by_index(2).map_err(db_err(context()))?;
            recorded.insert(field, (kind, in_file));
        }
        let mut returning = Vec::new();
        for f in &c.fields {
            let mut q = Sql::new(backend);
            match recorded.remove(&f.name) {
                Some((was, _)) if was != f.kind.as_str() => {
                    return Err(engine::Error::SchemaChanged(engine::SchemaChange {
                        collection: c.name.clone(),
                        field: f.name.clone(),
                        was,
                        now: f.kind.as_str().to_owned(),
                    }));
                }
                Some((_, true)) => continue,
                Some((_, false)) => {
                    returning.push(f.name.clone());
                    q.push("UPDATE \"_deltasync_field\" SET in_file = ")
                        .bind(SqlValue::from(true))
                        .push(" WHERE collection = ")
                        .bind(SqlValue::from(c.name.as_str()))
                        .push(" AND field = ")
                        .bind(SqlValue::from(f.name.as_str()));
                }
                None => {
                    q.push("INSERT INTO \"_deltasync_field\" (collection, field, table_name, type, in_file) VALUES ")
                        .bind_list([
                            SqlValue::from(c.name.as_str()),
                            SqlValue::from(f.name.as_str()),
                            SqlValue::from(c.table.as_str()),
                            SqlValue::from(f.kind.as_str()),
                            SqlValue::from(true),
                        ]);
                }
            }
            db.execute_raw(q.build())
                .await
                .map_err(db_err(format!("recording the field types of {}", c.name)))?;
        }
        for (field, (_, in_file)) in recorded {
            if !in_file {
                continue;
            }
            let mut q = Sql::new(backend);
            q.push("UPDATE \"_deltasync_field\" SET in_file = ")
                .bind(SqlValue::from(false))
                .push(" WHERE collection = ")
                .bind(SqlValue::from(c.name.as_str()))
                .push(" AND field = ")
                .bind(SqlValue::from(field.as_str()));
            db.execute_raw(q.build())
                .await
                .map_err(db_err(format!("recording the field types of {}", c.name)))?;
        }
        Ok(returning)
    }

    /// `SELECT columns FROM table WHERE condition [AND key > after] ORDER BY key LIMIT limit`.
    fn key_page(
        &self,
        c: &CollectionConfig,
        columns: &str,
        condition: &str,
        after: Option<&Key>,
        limit: usize,
    ) -> Sql {
        let mut q = Sql::new(self.backend());
        q.push(&format!(
            "SELECT {columns} FROM {} WHERE {condition}",
            ident(&c.table)
        ));
        if let Some(after) = after {
            q.push(&format!(" AND {} > ", ident(&c.primary_key)))
                .bind(self.key_value(c, after));
        }
        q.push(&format!(
            " ORDER BY {} LIMIT {limit}",
            ident(&c.primary_key)
        ));
        q
    }

    /// The columns read for a local row, in order: key, fields, cursor, sync columns.
    fn select_list(c: &CollectionConfig) -> String {
        let mut columns = vec![ident(&c.primary_key)];
        columns.extend(c.fields.iter().map(|f| ident(&f.name)));
        columns.push(ident(&c.cursor));
        for s in [STATUS, REV, CHANGE_KEY, CHANGED_AT, ERROR] {
            columns.push(s.to_owned());
        }
        columns.join(", ")
    }

    fn decode_local(&self, c: &CollectionConfig, row: &QueryResult) -> Result<LocalRow> {
        let backend = self.backend();
        let key_value = sql::from_sql(backend, row, 0, sql::key_kind(c.key_type)).map_err(
            db_err(format!("collection {}: reading a primary key", c.name)),
        )?;
        let key = engine::model::key_from_json(&key_value).unwrap_or_default();
        let mut data = Row::new();
        for (i, f) in c.fields.iter().enumerate() {
            let value = sql::from_sql(backend, row, i + 1, f.kind).map_err(|e| {
                invalid_value(format!(
                    "collection {}, key {key}, field {}: the local value is not a valid {}: {e}",
                    c.name,
                    f.name,
                    f.kind.as_str()
                ))
            })?;
            data.insert(f.name.clone(), value);
        }
        let at = c.fields.len() + 1;
        let cursor =
            sql::from_sql(backend, row, at, schema::FieldType::Timestamp).map_err(db_err(
                format!("collection {}, key {key}: reading {}", c.name, c.cursor),
            ))?;
        let status_text: String = row
            .try_get_by_index(at + 1)
            .map_err(db_err("reading _sync_status"))?;
        let status = SyncStatus::parse(&status_text).ok_or_else(|| {
            engine::Error::Store(StoreError::new(format!(
                "collection {}, key {key}: unknown _sync_status {status_text:?}",
                c.name
            )))
        })?;
        let changed_at = sql::from_sql(backend, row, at + 4, schema::FieldType::Timestamp)
            .map_err(db_err("reading _sync_changed_at"))?;
        Ok(LocalRow {
            key,
            status,
            rev: row
                .try_get_by_index(at + 2)
                .map_err(db_err("reading _sync_rev"))?,
            base: cursor.as_str().and_then(Stamp::parse),
            change_key: row
                .try_get_by_index(at + 3)
                .map_err(db_err("reading _sync_key"))?,
            changed_at: changed_at.as_str().and_then(Stamp::parse).map(|s| s.0),
            error: row
                .try_get_by_index(at + 5)
                .map_err(db_err("reading _sync_error"))?,
            data,
        })
    }

    fn key_value(&self, c: &CollectionConfig, key: &Key) -> SqlValue {
        let json = engine::model::key_to_json(key, c.key_type);
        sql::to_sql(self.backend(), sql::key_kind(c.key_type), &json)
            .unwrap_or_else(|_| SqlValue::String(Some(key.clone())))
    }

    fn stamp_value(&self, stamp: Option<Stamp>) -> SqlValue {
        match self.backend() {
            DbBackend::Postgres => SqlValue::ChronoDateTimeUtc(stamp.map(|s| s.0)),
            _ => SqlValue::String(stamp.map(Stamp::to_wire)),
        }
    }

    fn field_value(
        &self,
        c: &CollectionConfig,
        key: &Key,
        field: &schema::FieldConfig,
        data: &Row,
    ) -> Result<SqlValue> {
        let value = data.get(&field.name).unwrap_or(&Value::Null);
        sql::to_sql(self.backend(), field.kind, value).map_err(|message| {
            invalid_value(format!(
                "collection {}, key {key}, field {}: {message}",
                c.name, field.name
            ))
        })
    }

    /// Multi-row upsert of pulled rows; rows with a pending local change are left alone.
    async fn upsert_pulled(
        &self,
        tx: &impl ConnectionTrait,
        c: &CollectionConfig,
        rows: &[&RemoteRow],
    ) -> Result<()> {
        let backend = self.backend();
        let mut columns = vec![ident(&c.primary_key)];
        columns.extend(c.fields.iter().map(|f| ident(&f.name)));
        columns.push(ident(&c.cursor));
        columns.extend([STATUS, CHANGE_KEY, CHANGED_AT].map(str::to_owned));
        let per_statement = sql::rows_per_statement(backend, columns.len());
        let updates = c
            .fields
            .iter()
            .map(|f| ident(&f.name))
            .chain([ident(&c.cursor)])
            .map(|col| format!("{col} = excluded.{col}"))
            .collect::<Vec<_>>()
            .join(", ");
        let table = ident(&c.table);
        if backend == DbBackend::Postgres {
            return self
                .upsert_pulled_unnest(tx, c, rows, &columns, &updates)
                .await;
        }
        for chunk in rows.chunks(per_statement) {
            let mut q = Sql::new(backend);
            q.push(&format!(
                "INSERT INTO {table} ({}) VALUES ",
                columns.join(", ")
            ));
            for (i, row) in chunk.iter().enumerate() {
                q.push(if i == 0 { "(" } else { ", (" });
                q.bind(self.key_value(c, &row.key));
                for f in &c.fields {
                    q.push(", ")
                        .bind(self.field_value(c, &row.key, f, &row.data)?);
                }
                q.push(", ").bind(self.stamp_value(Some(row.stamp)));
                q.push(", 'synced', NULL, NULL)");
            }
            q.push(&format!(
                " ON CONFLICT ({pk}) DO UPDATE SET {updates}, {REV} = {table}.{REV} + 1 WHERE {table}.{STATUS} = 'synced'",
                pk = ident(&c.primary_key)
            ));
            tx.execute_raw(q.build())
                .await
                .map_err(db_err(format!("writing pulled rows of {}", c.name)))?;
        }
        Ok(())
    }

    /// The PostgreSQL form of [`SqlStore::upsert_pulled`]: one array of text per column,
    /// unnested and cast back. A dozen parameters instead of one per value, so the statement
    /// costs little to parse and plan whatever the page size.
    async fn upsert_pulled_unnest(
        &self,
        tx: &impl ConnectionTrait,
        c: &CollectionConfig,
        rows: &[&RemoteRow],
        columns: &[String],
        updates: &str,
    ) -> Result<()> {
        let mut types = vec![sql::key_column_type(DbBackend::Postgres, c.key_type)];
        types.extend(
            c.fields
                .iter()
                .map(|f| sql::column_type(DbBackend::Postgres, f.kind)),
        );
        types.push(sql::column_type(
            DbBackend::Postgres,
            schema::FieldType::Timestamp,
        ));
        let mut texts: Vec<Vec<Option<String>>> = Vec::with_capacity(rows.len());
        for row in rows {
            let mut values = Vec::with_capacity(types.len());
            values.push(self.key_value(c, &row.key));
            for f in &c.fields {
                values.push(self.field_value(c, &row.key, f, &row.data)?);
            }
            values.push(self.stamp_value(Some(row.stamp)));
            texts.push(
                values
                    .into_iter()
                    .map(sql::pg_text)
                    .collect::<std::result::Result<_, _>>()
                    .map_err(|e| {
                        invalid_value(format!("collection {}, key {}: {e}", c.name, row.key))
                    })?,
            );
        }
        let casts = types
            .iter()
            .enumerate()
            .map(|(i, t)| format!("u.c{i}::{t}"))
            .collect::<Vec<_>>()
            .join(", ");
        let names = (0..types.len())
            .map(|i| format!("c{i}"))
            .collect::<Vec<_>>()
            .join(", ");
        let table = ident(&c.table);
        let head = format!(
            "INSERT INTO {table} ({}) SELECT {casts}, 'synced', NULL, NULL FROM UNNEST(",
            columns.join(", ")
        );
        let tail = format!(
            ") AS u({names}) ON CONFLICT ({pk}) DO UPDATE SET {updates}, {REV} = {table}.{REV} + 1 WHERE {table}.{STATUS} = 'synced'",
            pk = ident(&c.primary_key)
        );
        // Each value costs its text and a length word.
        let costs = texts.iter().map(|row| {
            row.iter()
                .map(|t| t.as_ref().map_or(0, String::len) + 4)
                .sum()
        });
        for run in sql::pg_runs(costs, sql::PG_ROWS_BYTES) {
            let mut arrays: Vec<Vec<Option<String>>> =
                vec![Vec::with_capacity(run.len()); types.len()];
            for row in &mut texts[run] {
                for (array, text) in arrays.iter_mut().zip(row.drain(..)) {
                    array.push(text);
                }
            }
            let mut q = Sql::new(DbBackend::Postgres);
            q.push(&head);
            for (i, array) in arrays.into_iter().enumerate() {
                q.push(if i == 0 { "" } else { ", " })
                    .bind(sql::text_array(array))
                    .push("::text[]");
            }
            q.push(&tail);
            tx.execute_raw(q.build())
                .await
                .map_err(db_err(format!("writing pulled rows of {}", c.name)))?;
        }
        Ok(())
    }

    /// Settles pushed rows the server acknowledged (`RowOp::Settle` without data), many per
    /// statement: each row whose change key is still the pushed one becomes synced on its
    /// new stamp; the others keep their newer change, based on that stamp.
    async fn settle_acknowledged(
        &self,
        tx: &impl ConnectionTrait,
        c: &CollectionConfig,
        acks: &[Ack<'_>],
    ) -> Result<usize> {
        let backend = self.backend();
        let context = || format!("settling pushed rows of {}", c.name);
        let same_key = sql::null_safe_eq(backend);
        let mut moved_on = Vec::new();
        let bytes = |ack: &Ack| {
            sql::bound_text(ack.key) + ack.change_key.as_deref().map_or(4, sql::bound_text) + 40
        };
        for chunk in sql::statement_chunks(backend, acks, 3, bytes) {
            let mut q = Sql::new(backend);
            q.push("WITH \"_sync_acks\" (\"_sync_k\", \"_sync_ck\", \"_sync_st\") AS (VALUES ");
            for (i, ack) in chunk.iter().enumerate() {
                q.push(if i == 0 { "" } else { ", " }).bind_list([
                    self.key_value(c, ack.key),
                    SqlValue::String(ack.change_key.clone()),
                    self.stamp_value(Some(ack.stamp)),
                ]);
            }
            q.push(&format!(
                ") UPDATE {table} SET {STATUS} = 'synced', {CHANGE_KEY} = NULL, {ERROR} = NULL, \
                 {REV} = {REV} + 1, {cursor} = \"_sync_acks\".\"_sync_st\" FROM \"_sync_acks\" \
                 WHERE {table}.{pk} = \"_sync_acks\".\"_sync_k\" \
                 AND {table}.{CHANGE_KEY} {same_key} \"_sync_acks\".\"_sync_ck\" RETURNING {pk}",
                table = ident(&c.table),
                pk = ident(&c.primary_key),
                cursor = ident(&c.cursor),
            ));
            let settled: HashSet<Key> = self
                .returned_keys(tx, c, q, context)
                .await?
                .into_iter()
                .collect();
            let (done, changed): (Vec<&Ack>, Vec<&Ack>) =
                chunk.iter().partition(|ack| settled.contains(ack.key));
            let done: Vec<&Key> = done.into_iter().map(|ack| ack.key).collect();
            self.forget_pending_states(tx, c, &done).await?;
            moved_on.extend(changed);
        }
        for ack in moved_on {
            self.move_base(tx, c, ack.key, ack.stamp).await?;
        }
        Ok(acks.len())
    }

    /// Runs `q`, a statement `RETURNING` the primary key, and returns the keys.
    async fn returned_keys(
        &self,
        tx: &impl ConnectionTrait,
        c: &CollectionConfig,
        q: Sql,
        context: impl Fn() -> String,
    ) -> Result<Vec<Key>> {
        let backend = self.backend();
        let rows = tx
            .query_all_raw(q.build())
            .await
            .map_err(db_err(context()))?;
        rows.iter()
            .map(|r| {
                let key = sql::from_sql(backend, r, 0, sql::key_kind(c.key_type))
                    .map_err(db_err(context()))?;
                Ok(engine::model::key_from_json(&key).unwrap_or_default())
            })
            .collect()
    }

    /// Removes the rows whose delete the server acknowledged, each only while it still
    /// carries that change (`Guard::IfUnchanged`); returns how many went.
    async fn remove_unchanged(
        &self,
        tx: &impl ConnectionTrait,
        c: &CollectionConfig,
        gone: &[(&Key, &Option<String>)],
    ) -> Result<usize> {
        let backend = self.backend();
        let context = || format!("removing deleted rows of {}", c.name);
        let same_key = sql::null_safe_eq(backend);
        let bytes = |(key, change_key): &(&Key, &Option<String>)| {
            sql::bound_text(key) + change_key.as_deref().map_or(4, sql::bound_text)
        };
        let mut removed = 0;
        for chunk in sql::statement_chunks(backend, gone, 2, bytes) {
            let mut q = Sql::new(backend);
            q.push("WITH \"_sync_gone\" (\"_sync_k\", \"_sync_ck\") AS (VALUES ");
            for (i, (key, change_key)) in chunk.iter().enumerate() {
                q.push(if i == 0 { "" } else { ", " }).bind_list([
                    self.key_value(c, key),
                    SqlValue::String((*change_key).clone()),
                ]);
            }
            // The key list finds the rows by index; the change key is checked per row.
            q.push(&format!(
                ") DELETE FROM {table} WHERE {pk} IN (SELECT \"_sync_k\" FROM \"_sync_gone\") \
                 AND EXISTS (SELECT 1 FROM \"_sync_gone\" WHERE \"_sync_k\" = {table}.{pk} \
                 AND {table}.{CHANGE_KEY} {same_key} \"_sync_ck\") RETURNING {pk}",
                table = ident(&c.table),
                pk = ident(&c.primary_key),
            ));
            let keys = self.returned_keys(tx, c, q, context).await?;
            let keys: Vec<&Key> = keys.iter().collect();
            self.forget_pending_states(tx, c, &keys).await?;
            removed += keys.len();
        }
        Ok(removed)
    }

    /// A row changed again while it was pushed: the new change stays pending on the
    /// server's new version. A create the server now holds continues as an update.
    async fn move_base(
        &self,
        tx: &impl ConnectionTrait,
        c: &CollectionConfig,
        key: &Key,
        stamp: Stamp,
    ) -> Result<bool> {
        let mut q = Sql::new(self.backend());
        q.push(&format!(
            "UPDATE {table} SET {REV} = {REV} + 1, {STATUS} = CASE WHEN {STATUS} = 'created' THEN 'updated' ELSE {STATUS} END, ",
            table = ident(&c.table),
        ))
        .push(&ident(&c.cursor))
        .push(" = ")
        .bind(self.stamp_value(Some(stamp)))
        .push(&format!(" WHERE {} = ", ident(&c.primary_key)))
        .bind(self.key_value(c, key));
        let done = tx
            .execute_raw(q.build())
            .await
            .map_err(db_err(format!("updating {}", c.name)))?;
        Ok(done.rows_affected() > 0)
    }

    /// Replaces the base snapshot of `key` with `data`, the server's content at `stamp`.
    async fn save_snapshot(
        &self,
        tx: &impl ConnectionTrait,
        c: &CollectionConfig,
        key: &Key,
        stamp: Option<Stamp>,
        data: &Row,
    ) -> Result<()> {
        let mut snapshot = data.clone();
        snapshot.insert(
            c.cursor.clone(),
            stamp.map_or(Value::Null, |s| Value::from(s.to_wire())),
        );
        let mut q = Sql::new(self.backend());
        q.push("INSERT INTO \"_deltasync_base\" (collection, key, data) VALUES (")
            .bind(SqlValue::from(c.name.as_str()))
            .push(", ")
            .bind(SqlValue::from(key.as_str()))
            .push(", ")
            .bind(SqlValue::from(Value::Object(snapshot).to_string()))
            .push(") ON CONFLICT (collection, key) DO UPDATE SET data = excluded.data");
        tx.execute_raw(q.build())
            .await
            .map_err(db_err("saving a base snapshot"))?;
        Ok(())
    }

    async fn forget_snapshot(
        &self,
        tx: &impl ConnectionTrait,
        c: &CollectionConfig,
        key: &Key,
    ) -> Result<()> {
        let mut q = Sql::new(self.backend());
        q.push("DELETE FROM \"_deltasync_base\" WHERE collection = ")
            .bind(SqlValue::from(c.name.as_str()))
            .push(" AND key = ")
            .bind(SqlValue::from(key.as_str()));
        tx.execute_raw(q.build())
            .await
            .map_err(db_err("clearing a base snapshot"))?;
        Ok(())
    }

    async fn exists(
        &self,
        tx: &impl ConnectionTrait,
        c: &CollectionConfig,
        key: &Key,
    ) -> Result<bool> {
        let mut q = Sql::new(self.backend());
        q.push(&format!(
            "SELECT 1 FROM {} WHERE {} = ",
            ident(&c.table),
            ident(&c.primary_key)
        ))
        .bind(self.key_value(c, key));
        let found = tx
            .query_one_raw(q.build())
            .await
            .map_err(db_err(format!("reading rows of {}", c.name)))?;
        Ok(found.is_some())
    }

    /// Inserts a row the engine writes as pending, with a change key of its own.
    async fn insert_pending(
        &self,
        tx: &impl ConnectionTrait,
        c: &CollectionConfig,
        key: &Key,
        status: SyncStatus,
        stamp: Option<Stamp>,
        data: &Row,
    ) -> Result<bool> {
        let mut columns = vec![ident(&c.primary_key)];
        columns.extend(c.fields.iter().map(|f| ident(&f.name)));
        columns.push(ident(&c.cursor));
        columns.extend([STATUS, CHANGE_KEY, CHANGED_AT].map(str::to_owned));
        let mut q = Sql::new(self.backend());
        q.push(&format!(
            "INSERT INTO {} ({}) VALUES (",
            ident(&c.table),
            columns.join(", ")
        ))
        .bind(self.key_value(c, key));
        for f in &c.fields {
            q.push(", ").bind(self.field_value(c, key, f, data)?);
        }
        q.push(", ").bind(self.stamp_value(stamp));
        q.push(", ").bind(SqlValue::from(status.as_str()));
        q.push(", ")
            .bind(SqlValue::from(uuid::Uuid::new_v4().to_string()));
        q.push(", ").bind(self.stamp_value(Some(Stamp(Utc::now()))));
        q.push(")");
        tx.execute_raw(q.build())
            .await
            .map_err(db_err(format!("writing to {}", c.name)))?;
        Ok(true)
    }

    async fn apply_op(
        &self,
        tx: &impl ConnectionTrait,
        c: &CollectionConfig,
        op: &RowOp,
    ) -> Result<bool> {
        let backend = self.backend();
        let table = ident(&c.table);
        let pk = ident(&c.primary_key);
        let run = async |q: Sql| -> Result<bool> {
            let done = tx
                .execute_raw(q.build())
                .await
                .map_err(db_err(format!("updating {}", c.name)))?;
            Ok(done.rows_affected() > 0)
        };
        match op {
            RowOp::Pull(row) => {
                self.upsert_pulled(tx, c, &[row]).await?;
                Ok(true)
            }
            RowOp::Settle {
                key,
                change_key,
                stamp,
                data,
            } => {
                let mut q = Sql::new(backend);
                q.push(&format!("UPDATE {table} SET {STATUS} = 'synced', {CHANGE_KEY} = NULL, {ERROR} = NULL, {REV} = {REV} + 1, "));
                if let Some(data) = data {
                    for f in &c.fields {
                        q.push(&ident(&f.name))
                            .push(" = ")
                            .bind(self.field_value(c, key, f, data)?)
                            .push(", ");
                    }
                }
                q.push(&ident(&c.cursor))
                    .push(" = ")
                    .bind(self.stamp_value(Some(*stamp)));
                q.push(&format!(" WHERE {pk} = "))
                    .bind(self.key_value(c, key))
                    .push(" AND ");
                q.null_safe_eq(CHANGE_KEY, SqlValue::String(change_key.clone()));
                if run(q).await? {
                    self.forget_pending_states(tx, c, &[key]).await?;
                    return Ok(true);
                }
                let moved = self.move_base(tx, c, key, *stamp).await?;
                if moved && let Some(data) = data {
                    self.save_snapshot(tx, c, key, Some(*stamp), data).await?;
                }
                Ok(moved)
            }
            RowOp::Rebase {
                key,
                change_key,
                status,
                stamp,
                data,
                base,
            } => {
                let mut q = Sql::new(backend);
                q.push(&format!("UPDATE {table} SET {STATUS} = "))
                    .bind(SqlValue::from(status.as_str()))
                    .push(&format!(", {ERROR} = NULL, {REV} = {REV} + 1"));
                for f in &c.fields {
                    q.push(", ")
                        .push(&ident(&f.name))
                        .push(" = ")
                        .bind(self.field_value(c, key, f, data)?);
                }
                q.push(", ")
                    .push(&ident(&c.cursor))
                    .push(" = ")
                    .bind(self.stamp_value(*stamp));
                q.push(&format!(" WHERE {pk} = "))
                    .bind(self.key_value(c, key))
                    .push(" AND ");
                q.null_safe_eq(CHANGE_KEY, SqlValue::String(change_key.clone()));
                let mut done = run(q).await?;
                if !done && change_key.is_none() && !self.exists(tx, c, key).await? {
                    // Not held locally (a server row that did not fit): the row is made.
                    done = self
                        .insert_pending(tx, c, key, *status, *stamp, data)
                        .await?;
                }
                if done {
                    match base {
                        Some(base) => self.save_snapshot(tx, c, key, *stamp, base).await?,
                        None => self.forget_snapshot(tx, c, key).await?,
                    }
                }
                Ok(done)
            }
            RowOp::Rekey {
                from,
                to,
                references,
            } => {
                self.rekey(tx, c, from, to, references).await?;
                Ok(true)
            }
            RowOp::Remove { key, guard } => {
                let mut q = Sql::new(backend);
                q.push(&format!("DELETE FROM {table} WHERE {pk} = "))
                    .bind(self.key_value(c, key))
                    .push(" AND ");
                match guard {
                    Guard::IfSynced => q.push(&format!("{STATUS} = 'synced'")),
                    Guard::IfUnchanged(k) => {
                        q.null_safe_eq(CHANGE_KEY, SqlValue::String(k.clone()))
                    }
                };
                let removed = run(q).await?;
                if removed {
                    self.forget_pending_states(tx, c, &[key]).await?;
                }
                Ok(removed)
            }
            RowOp::Mark {
                key,
                change_key,
                status,
                base,
            } => {
                let mut q = Sql::new(backend);
                q.push(&format!("UPDATE {table} SET {STATUS} = "))
                    .bind(SqlValue::from(status.as_str()));
                q.push(&format!(", {ERROR} = NULL, {REV} = {REV} + 1"));
                if let Some(base) = base {
                    q.push(", ")
                        .push(&ident(&c.cursor))
                        .push(" = ")
                        .bind(self.stamp_value(*base));
                }
                q.push(&format!(" WHERE {pk} = "))
                    .bind(self.key_value(c, key))
                    .push(" AND ");
                q.null_safe_eq(CHANGE_KEY, SqlValue::String(change_key.clone()));
                run(q).await
            }
            RowOp::Quarantine {
                key,
                change_key,
                error,
            } => {
                let mut q = Sql::new(backend);
                q.push(&format!("UPDATE {table} SET {ERROR} = "))
                    .bind(SqlValue::from(error.as_str()));
                q.push(&format!(", {REV} = {REV} + 1 WHERE {pk} = "))
                    .bind(self.key_value(c, key))
                    .push(" AND ");
                q.null_safe_eq(CHANGE_KEY, SqlValue::String(change_key.clone()));
                run(q).await
            }
        }
    }

    /// The pending changes of `keys` reached the server (or the rows are gone): their base
    /// snapshots are no longer needed, and earlier rejections of them, still open, are
    /// closed as kept.
    async fn forget_pending_states(
        &self,
        tx: &impl ConnectionTrait,
        c: &CollectionConfig,
        keys: &[&Key],
    ) -> Result<()> {
        for chunk in sql::statement_chunks(self.backend(), keys, 1, |key| sql::bound_text(key)) {
            let in_keys = || chunk.iter().map(|key| SqlValue::from(key.as_str()));
            let mut q = Sql::new(self.backend());
            q.push("DELETE FROM \"_deltasync_base\" WHERE collection = ")
                .bind(SqlValue::from(c.name.as_str()))
                .push(" AND key IN ")
                .bind_list(in_keys());
            tx.execute_raw(q.build())
                .await
                .map_err(db_err("clearing base snapshots"))?;
            let mut q = Sql::new(self.backend());
            q.push("UPDATE \"_deltasync_conflict\" SET resolution = ")
                .bind(SqlValue::from(Resolution::KeepLocal.as_str()))
                .push(", resolved_at = ")
                .bind(SqlValue::from(time_text(Utc::now())))
                .push(" WHERE resolution IS NULL AND kind = ")
                .bind(SqlValue::from(ConflictKind::Rejected.as_str()))
                .push(" AND collection = ")
                .bind(SqlValue::from(c.name.as_str()))
                .push(" AND key IN ")
                .bind_list(in_keys());
            tx.execute_raw(q.build())
                .await
                .map_err(db_err("closing earlier rejections"))?;
        }
        Ok(())
    }

    async fn insert_record(&self, tx: &impl ConnectionTrait, r: &ConflictRecord) -> Result<()> {
        let json = |v: &Option<Row>| {
            SqlValue::String(v.as_ref().map(|r| Value::Object(r.clone()).to_string()))
        };
        if r.kind == ConflictKind::InvalidRemote && self.is_open(tx, r).await? {
            return Ok(()); // the same server row, read again (an overlap window)
        }
        let mut q = Sql::new(self.backend());
        q.push("INSERT INTO \"_deltasync_conflict\" (collection, key, kind, strategy, resolution, base, local, remote, remote_stamp, local_changed_at, message, fields, created_at, resolved_at) VALUES (");
        q.bind(SqlValue::from(r.collection.as_str())).push(", ");
        q.bind(SqlValue::from(r.key.as_str())).push(", ");
        q.bind(SqlValue::from(r.kind.as_str())).push(", ");
        q.bind(SqlValue::from(r.strategy.as_str())).push(", ");
        q.bind(SqlValue::String(
            r.resolution.map(|x| x.as_str().to_owned()),
        ))
        .push(", ");
        q.bind(json(&r.base)).push(", ");
        q.bind(json(&r.local)).push(", ");
        q.bind(json(&r.remote)).push(", ");
        q.bind(SqlValue::String(r.remote_stamp.map(Stamp::to_wire)))
            .push(", ");
        q.bind(SqlValue::String(r.local_changed_at.map(time_text)))
            .push(", ");
        q.bind(SqlValue::String(r.message.clone())).push(", ");
        let fields = r
            .fields
            .as_ref()
            .map(|f| serde_json::to_string(f).expect("field sources serialize"));
        q.bind(SqlValue::String(fields)).push(", ");
        q.bind(SqlValue::from(time_text(r.created_at))).push(", ");
        q.bind(SqlValue::String(r.resolved_at.map(time_text)))
            .push(")");
        tx.execute_raw(q.build())
            .await
            .map_err(db_err("recording a conflict"))?;
        Ok(())
    }

    /// Whether an open record of the same kind exists for the same server version of a row.
    async fn is_open(&self, tx: &impl ConnectionTrait, r: &ConflictRecord) -> Result<bool> {
        let mut q = Sql::new(self.backend());
        q.push("SELECT 1 FROM \"_deltasync_conflict\" WHERE resolution IS NULL AND collection = ")
            .bind(SqlValue::from(r.collection.as_str()))
            .push(" AND key = ")
            .bind(SqlValue::from(r.key.as_str()))
            .push(" AND kind = ")
            .bind(SqlValue::from(r.kind.as_str()))
            .push(" AND ");
        q.null_safe_eq(
            "remote_stamp",
            SqlValue::String(r.remote_stamp.map(Stamp::to_wire)),
        );
        let found = tx
            .query_one_raw(q.build())
            .await
            .map_err(db_err("reading conflicts"))?;
        Ok(found.is_some())
    }

    /// Moves a row from its temporary key to the key the server gave it, with the rows that
    /// refer to it, its base snapshot and conflict records, and keeps the move in the key map.
    /// Engine writes: `_sync_rev` is bumped, so no row counts as changed by the application.
    async fn rekey(
        &self,
        tx: &impl ConnectionTrait,
        c: &CollectionConfig,
        from: &Key,
        to: &Key,
        references: &[(String, String)],
    ) -> Result<()> {
        let context = || format!("collection {}: moving key {from} to {to}", c.name);
        let (old, new) = (self.key_value(c, from), self.key_value(c, to));
        let moves = std::iter::once((c.table.as_str(), c.primary_key.as_str()))
            .chain(references.iter().map(|(t, col)| (t.as_str(), col.as_str())));
        for (table, column) in moves {
            let column = ident(column);
            let mut q = Sql::new(self.backend());
            q.push(&format!("UPDATE {} SET {column} = ", ident(table)))
                .bind(new.clone())
                .push(&format!(", {REV} = {REV} + 1 WHERE {column} = "))
                .bind(old.clone());
            tx.execute_raw(q.build()).await.map_err(db_err(context()))?;
        }
        for engine_table in ["_deltasync_base", "_deltasync_conflict"] {
            let mut q = Sql::new(self.backend());
            q.push(&format!("UPDATE \"{engine_table}\" SET key = "))
                .bind(SqlValue::from(to.as_str()))
                .push(" WHERE collection = ")
                .bind(SqlValue::from(c.name.as_str()))
                .push(" AND key = ")
                .bind(SqlValue::from(from.as_str()));
            tx.execute_raw(q.build()).await.map_err(db_err(context()))?;
        }
        let mut q = Sql::new(self.backend());
        q.push("INSERT INTO \"_deltasync_key_map\" (collection, temporary_key, server_key, mapped_at) VALUES (")
            .bind(SqlValue::from(c.name.as_str()))
            .push(", ")
            .bind(SqlValue::from(from.as_str()))
            .push(", ")
            .bind(SqlValue::from(to.as_str()))
            .push(", ")
            .bind(SqlValue::from(time_text(Utc::now())))
            .push(") ON CONFLICT (collection, temporary_key) DO UPDATE SET server_key = excluded.server_key, mapped_at = excluded.mapped_at");
        tx.execute_raw(q.build()).await.map_err(db_err(context()))?;
        Ok(())
    }

    async fn save_checkpoint(
        &self,
        tx: &impl ConnectionTrait,
        c: &CollectionConfig,
        cp: &Checkpoint,
    ) -> Result<()> {
        let pull = serde_json::to_string(&cp.pull).expect("positions serialize");
        // NULL says "one lane", which is how a switch between one and two lanes is noticed.
        let pull_created = c
            .cursor_created
            .as_ref()
            .map(|_| serde_json::to_string(&cp.pull_created).expect("positions serialize"));
        let mut q = Sql::new(self.backend());
        q.push("INSERT INTO \"_deltasync_checkpoint\" (collection, pull, pull_created, delete_cursor, updated_at) VALUES (")
            .bind(SqlValue::from(c.name.as_str()))
            .push(", ")
            .bind(SqlValue::from(pull))
            .push(", ")
            .bind(SqlValue::String(pull_created))
            .push(", ")
            .bind(SqlValue::BigInt(cp.delete_cursor))
            .push(", ")
            .bind(SqlValue::from(time_text(Utc::now())))
            .push(") ON CONFLICT (collection) DO UPDATE SET pull = excluded.pull, pull_created = excluded.pull_created, delete_cursor = excluded.delete_cursor, updated_at = excluded.updated_at");
        tx.execute_raw(q.build())
            .await
            .map_err(db_err("saving the checkpoint"))?;
        Ok(())
    }

    fn decode_record(row: &QueryResult) -> Result<ConflictRecord> {
        let text = |i: usize| {
            row.try_get_by_index::<Option<String>>(i)
                .map_err(db_err("reading a conflict"))
        };
        let object = |i: usize| -> Result<Option<Row>> {
            Ok(text(i)?
                .and_then(|s| serde_json::from_str::<Value>(&s).ok())
                .and_then(|v| match v {
                    Value::Object(o) => Some(o),
                    _ => None,
                }))
        };
        let time = |s: Option<String>| s.and_then(|s| Stamp::parse(&s)).map(|s| s.0);
        Ok(ConflictRecord {
            id: row
                .try_get_by_index(0)
                .map_err(db_err("reading a conflict id"))?,
            collection: text(1)?.unwrap_or_default(),
            key: text(2)?.unwrap_or_default(),
            kind: text(3)?
                .as_deref()
                .and_then(ConflictKind::parse)
                .unwrap_or(ConflictKind::UpdateUpdate),
            strategy: text(4)?.unwrap_or_default(),
            resolution: text(5)?
                .as_deref()
                .and_then(Resolution::parse)
                .filter(|r| *r != Resolution::Park),
            base: object(6)?,
            local: object(7)?,
            remote: object(8)?,
            remote_stamp: text(9)?.as_deref().and_then(Stamp::parse),
            local_changed_at: time(text(10)?),
            message: text(11)?,
            created_at: time(text(12)?).unwrap_or_default(),
            resolved_at: time(text(13)?),
            fields: text(14)?.and_then(|s| serde_json::from_str(&s).ok()),
        })
    }
}

/// How long the key map keeps a temporary key's server key.
pub const KEY_MAP_KEPT: chrono::Duration = chrono::Duration::days(30);

/// The stored form of a pull that has not started.
fn start_position() -> String {
    serde_json::to_string(&PullPosition::Start).expect("a pull position serializes")
}

fn time_text(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A database URL without its password.
pub fn redact_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('@') {
            Some((userinfo, host)) => {
                let user = userinfo.split(':').next().unwrap_or("");
                format!("{scheme}://{user}:***@{host}")
            }
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// Runs kept in the run history.
const RUNS_KEPT: u32 = 1_000;

/// The lease held while the tables are created or upgraded (collection names never start
/// with `_deltasync`).
const PREPARE_LEASE: &str = "_deltasync_prepare";

const RECORD_COLUMNS: &str = "id, collection, key, kind, strategy, resolution, base, local, remote, remote_stamp, local_changed_at, message, created_at, resolved_at, fields";

impl Store for SqlStore {
    type Batch = SqlBatch;

    async fn watch_writes(
        &self,
        config: &Config,
        notices: tokio::sync::mpsc::Sender<String>,
        stop: tokio_util::sync::CancellationToken,
    ) -> Result<()> {
        crate::watch::watch(&self.db, config, notices, stop).await
    }

    async fn lease(&self, name: &str, wait: LeaseWait) -> Result<Option<Lease>> {
        self.leases.take(&self.db, name, wait).await
    }

    async fn prepare(&self, config: &Config) -> Result<()> {
        // One process at a time creates and upgrades tables; the others wait and find them.
        let _upgrading = self.lease(PREPARE_LEASE, LeaseWait::Wait).await?;
        Migrator::up(&self.db, None)
            .await
            .map_err(db_err("creating the engine's tables"))?;
        for c in &config.collections {
            self.prepare_collection(c).await?;
        }
        let mut q = Sql::new(self.backend());
        q.push("INSERT INTO \"_deltasync_replica\" (id) SELECT ")
            .bind(SqlValue::from(uuid::Uuid::new_v4().to_string()))
            .push(" WHERE NOT EXISTS (SELECT 1 FROM \"_deltasync_replica\")");
        self.db
            .execute_raw(q.build())
            .await
            .map_err(db_err("making the replica id"))?;
        Ok(())
    }

    async fn replica_id(&self) -> Result<String> {
        let row = self
            .db
            .query_one_raw(sea_orm::Statement::from_string(
                self.backend(),
                "SELECT id FROM \"_deltasync_replica\"",
            ))
            .await
            .map_err(db_err("reading the replica id"))?
            .ok_or_else(|| engine::Error::Store(StoreError::new("the replica id is missing")))?;
        row.try_get_by_index(0)
            .map_err(db_err("reading the replica id"))
    }

    async fn server_key(&self, collection: &str, temporary: &Key) -> Result<Option<Key>> {
        let mut q = Sql::new(self.backend());
        q.push("SELECT server_key FROM \"_deltasync_key_map\" WHERE collection = ")
            .bind(SqlValue::from(collection))
            .push(" AND temporary_key = ")
            .bind(SqlValue::from(temporary.as_str()));
        let row = self
            .db
            .query_one_raw(q.build())
            .await
            .map_err(db_err("reading the key map"))?;
        row.map(|r| r.try_get_by_index(0))
            .transpose()
            .map_err(db_err("reading the key map"))
    }

    async fn checkpoint(&self, collection: &str) -> Result<Checkpoint> {
        let mut q = Sql::new(self.backend());
        q.push("SELECT pull, delete_cursor, pull_created FROM \"_deltasync_checkpoint\" WHERE collection = ")
            .bind(SqlValue::from(collection));
        let row = self
            .db
            .query_one_raw(q.build())
            .await
            .map_err(db_err("reading the checkpoint"))?;
        let Some(row) = row else {
            return Ok(Checkpoint::default());
        };
        let position = |text: &str| {
            serde_json::from_str(text).map_err(|e| {
                engine::Error::Store(StoreError::new(format!(
                    "checkpoint of {collection} is unreadable: {e}"
                )))
            })
        };
        let pull: String = row
            .try_get_by_index(0)
            .map_err(db_err("reading the checkpoint"))?;
        let pull_created: Option<String> = row
            .try_get_by_index(2)
            .map_err(db_err("reading the checkpoint"))?;
        Ok(Checkpoint {
            pull: position(&pull)?,
            pull_created: match pull_created {
                Some(text) => position(&text)?,
                None => PullPosition::Start,
            },
            delete_cursor: row
                .try_get_by_index(1)
                .map_err(db_err("reading the checkpoint"))?,
        })
    }

    async fn pending(
        &self,
        c: &CollectionConfig,
        after: Option<&Key>,
        limit: usize,
    ) -> Result<Vec<LocalRow>> {
        // The first term is the pending index's own condition, which lets the planner use it:
        // finding the changes costs what they number, not what the table holds.
        let condition = format!(
            "{STATUS} <> 'synced' AND {STATUS} IN ('created', 'updated', 'deleted') AND {ERROR} IS NULL"
        );
        let q = self.key_page(c, &Self::select_list(c), &condition, after, limit);
        let rows = self
            .db
            .query_all_raw(q.build())
            .await
            .map_err(db_err(format!("reading changes of {}", c.name)))?;
        rows.iter().map(|r| self.decode_local(c, r)).collect()
    }

    async fn synced(
        &self,
        c: &CollectionConfig,
        after: Option<&Key>,
        limit: usize,
    ) -> Result<Vec<(Key, Option<Stamp>)>> {
        let condition = format!("{STATUS} = 'synced'");
        let columns = format!("{}, {}", ident(&c.primary_key), ident(&c.cursor));
        let q = self.key_page(c, &columns, &condition, after, limit);
        let context = || format!("reading synced rows of {}", c.name);
        let rows = self
            .db
            .query_all_raw(q.build())
            .await
            .map_err(db_err(context()))?;
        let backend = self.backend();
        rows.iter()
            .map(|r| {
                let key = sql::from_sql(backend, r, 0, sql::key_kind(c.key_type))
                    .map_err(db_err(context()))?;
                let stamp = sql::from_sql(backend, r, 1, schema::FieldType::Timestamp)
                    .map_err(db_err(context()))?;
                Ok((
                    engine::model::key_from_json(&key).unwrap_or_default(),
                    stamp.as_str().and_then(Stamp::parse),
                ))
            })
            .collect()
    }

    async fn rows(&self, c: &CollectionConfig, keys: &[Key]) -> Result<Vec<LocalRow>> {
        self.rows_in(&self.db, c, keys).await
    }

    async fn bases(&self, c: &CollectionConfig, keys: &[Key]) -> Result<HashMap<Key, Base>> {
        let context = || format!("reading base snapshots of {}", c.name);
        let mut out = HashMap::with_capacity(keys.len());
        for chunk in sql::key_chunks(self.backend(), keys) {
            let mut q = Sql::new(self.backend());
            q.push("SELECT key, data FROM \"_deltasync_base\" WHERE collection = ")
                .bind(SqlValue::from(c.name.as_str()))
                .push(" AND key IN ")
                .bind_list(chunk.iter().map(|key| SqlValue::from(key.as_str())));
            let rows = self
                .db
                .query_all_raw(q.build())
                .await
                .map_err(db_err(context()))?;
            for row in rows {
                let key: String = row.try_get_by_index(0).map_err(db_err(context()))?;
                let text: String = row.try_get_by_index(1).map_err(db_err(context()))?;
                if let Ok(v) = serde_json::from_str::<Value>(&text) {
                    let stamp = v[&c.cursor].as_str().and_then(Stamp::parse);
                    let data = sql::normalize_snapshot(c, v);
                    out.insert(Key::from(key), Base { stamp, data });
                }
            }
        }
        Ok(out)
    }

    async fn apply(&self, c: &CollectionConfig, changes: Changes) -> Result<usize> {
        if changes.is_empty() {
            return Ok(0);
        }
        let tx = self.begin_write("starting a transaction").await?;
        let applied = self.apply_in(&tx, c, changes).await?;
        tx.commit().await.map_err(db_err("committing"))?;
        Ok(applied)
    }

    async fn begin(&self) -> Result<SqlBatch> {
        if self.backend() == DbBackend::Sqlite {
            // SQLite does not queue writers: one waiting for the lock polls, sleeping up to
            // 100 ms between tries, and a pull that began its next transaction right after
            // committing would keep it out again and again. A pause after each long
            // transaction lets it in; see the bound in docs/sync-protocol.md.
            let committed = *self.last_commit.lock().expect("commit time");
            if let Some(pause) = committed
                .map(|at| (at + WRITER_TURN).saturating_duration_since(Instant::now()))
                .filter(|pause| !pause.is_zero())
            {
                tokio::time::sleep(pause).await;
            }
        }
        let tx = self.begin_write("starting a transaction").await?;
        Ok(SqlBatch::new(self.clone(), tx))
    }

    async fn conflicts(&self, open_only: bool) -> Result<Vec<ConflictRecord>> {
        let filter = if open_only {
            " WHERE resolution IS NULL"
        } else {
            ""
        };
        let sql =
            format!("SELECT {RECORD_COLUMNS} FROM \"_deltasync_conflict\"{filter} ORDER BY id");
        let rows = self
            .db
            .query_all_raw(sea_orm::Statement::from_string(self.backend(), sql))
            .await
            .map_err(db_err("listing conflicts"))?;
        rows.iter().map(Self::decode_record).collect()
    }

    async fn conflict(&self, id: i64) -> Result<Option<ConflictRecord>> {
        let mut q = Sql::new(self.backend());
        q.push(&format!(
            "SELECT {RECORD_COLUMNS} FROM \"_deltasync_conflict\" WHERE id = "
        ))
        .bind(SqlValue::BigInt(Some(id)));
        let row = self
            .db
            .query_one_raw(q.build())
            .await
            .map_err(db_err("reading a conflict"))?;
        row.as_ref().map(Self::decode_record).transpose()
    }

    async fn waiting(&self) -> Result<u64> {
        let sql = "SELECT COUNT(*) FROM \"_deltasync_conflict\" WHERE resolution IS NULL";
        let row = self
            .db
            .query_one_raw(sea_orm::Statement::from_string(self.backend(), sql))
            .await
            .map_err(db_err("counting conflicts"))?;
        let n: i64 = match row {
            Some(row) => row
                .try_get_by_index(0)
                .map_err(db_err("counting conflicts"))?,
            None => 0,
        };
        Ok(n as u64)
    }

    async fn status(&self, c: &CollectionConfig) -> Result<CollectionStatus> {
        let sql = format!(
            "SELECT {STATUS}, COUNT(*), COUNT({ERROR}) FROM {} GROUP BY {STATUS}",
            ident(&c.table)
        );
        let rows = self
            .db
            .query_all_raw(sea_orm::Statement::from_string(self.backend(), sql))
            .await
            .map_err(db_err(format!("counting rows of {}", c.name)))?;
        let mut counts: HashMap<String, (u64, u64)> = HashMap::new();
        for r in &rows {
            let status: String = r.try_get_by_index(0).map_err(db_err("counting"))?;
            let n: i64 = r.try_get_by_index(1).map_err(db_err("counting"))?;
            let errors: i64 = r.try_get_by_index(2).map_err(db_err("counting"))?;
            counts.insert(status, (n as u64, errors as u64));
        }
        let get = |s: &str| counts.get(s).copied().unwrap_or_default();
        Ok(CollectionStatus {
            collection: c.name.clone(),
            rows: counts.values().map(|(n, _)| n).sum(),
            created: get("created").0,
            updated: get("updated").0,
            deleted: get("deleted").0,
            conflicts: get("conflict").0,
            quarantined: counts.values().map(|(_, e)| e).sum(),
            checkpoint: self.checkpoint(&c.name).await?,
            removed_from_file: false,
        })
    }

    async fn removed(&self, config: &Config) -> Result<Vec<CollectionStatus>> {
        let sql =
            "SELECT DISTINCT collection, table_name FROM \"_deltasync_field\" ORDER BY collection";
        let rows = self
            .db
            .query_all_raw(sea_orm::Statement::from_string(self.backend(), sql))
            .await
            .map_err(db_err("reading the collections synced before"))?;
        let mut out = Vec::new();
        for row in rows {
            let name: String = row
                .try_get_by_index(0)
                .map_err(db_err("reading a collection"))?;
            let table: String = row
                .try_get_by_index(1)
                .map_err(db_err("reading a collection"))?;
            if config.collection(&name).is_some()
                || Self::existing_columns(&self.db, &table).await?.is_empty()
            {
                continue;
            }
            let mut c = CollectionConfig::new(name);
            c.table = table;
            let mut status = self.status(&c).await?;
            status.removed_from_file = true;
            out.push(status);
        }
        Ok(out)
    }

    async fn record_run(&self, run: &RunRecord) -> Result<()> {
        let mut q = Sql::new(self.backend());
        q.push("INSERT INTO \"_deltasync_run\" (started_at, finished_at, ok, summary) VALUES (")
            .bind(SqlValue::from(time_text(run.started_at)))
            .push(", ")
            .bind(SqlValue::from(time_text(run.finished_at)))
            .push(", ")
            .bind(SqlValue::from(run.ok))
            .push(", ")
            .bind(SqlValue::from(run.summary.to_string()))
            .push(")");
        self.db
            .execute_raw(q.build())
            .await
            .map_err(db_err("recording the run"))?;
        // The service records a run per cycle: the history keeps the latest runs only.
        self.db
            .execute_unprepared(&format!(
                "DELETE FROM \"_deltasync_run\" WHERE id <= (SELECT max(id) FROM \"_deltasync_run\") - {RUNS_KEPT}"
            ))
            .await
            .map_err(db_err("pruning the run history"))?;
        let mut q = Sql::new(self.backend());
        q.push("DELETE FROM \"_deltasync_key_map\" WHERE mapped_at < ")
            .bind(SqlValue::from(time_text(run.finished_at - KEY_MAP_KEPT)));
        self.db
            .execute_raw(q.build())
            .await
            .map_err(db_err("pruning the key map"))?;
        if self.backend() == DbBackend::Sqlite {
            // A run ends here: fold the write-ahead log into the database, or the next
            // process to open it first reads through all of the log (seconds after a large
            // pull).
            self.db
                .execute_unprepared("PRAGMA wal_checkpoint(TRUNCATE)")
                .await
                .map_err(db_err("checkpointing the write-ahead log"))?;
        }
        Ok(())
    }

    async fn last_run(&self) -> Result<Option<RunRecord>> {
        let sql = "SELECT started_at, finished_at, ok, summary FROM \"_deltasync_run\" ORDER BY id DESC LIMIT 1";
        let row = self
            .db
            .query_one_raw(sea_orm::Statement::from_string(self.backend(), sql))
            .await
            .map_err(db_err("reading the run history"))?;
        let Some(row) = row else { return Ok(None) };
        let text = |i| {
            row.try_get_by_index::<String>(i)
                .map_err(db_err("reading the run history"))
        };
        let time = |s: String| Stamp::parse(&s).map(|s| s.0).unwrap_or_default();
        Ok(Some(RunRecord {
            started_at: time(text(0)?),
            finished_at: time(text(1)?),
            ok: row
                .try_get_by_index(2)
                .map_err(db_err("reading the run history"))?,
            summary: serde_json::from_str(&text(3)?).unwrap_or(Value::Null),
        }))
    }

    async fn write(&self, c: &CollectionConfig, write: LocalWrite) -> Result<bool> {
        let backend = self.backend();
        let table = ident(&c.table);
        let pk = ident(&c.primary_key);
        let mut q = Sql::new(backend);
        match &write {
            LocalWrite::Insert { key, data } => {
                let fields: Vec<_> = c
                    .fields
                    .iter()
                    .filter(|f| data.contains_key(&f.name))
                    .collect();
                let mut columns = vec![pk.clone()];
                columns.extend(fields.iter().map(|f| ident(&f.name)));
                q.push(&format!(
                    "INSERT INTO {table} ({}) VALUES (",
                    columns.join(", ")
                ));
                q.bind(self.key_value(c, key));
                for f in fields {
                    q.push(", ").bind(self.field_value(c, key, f, data)?);
                }
                q.push(")");
            }
            LocalWrite::Update { key, data } => {
                let fields: Vec<_> = c
                    .fields
                    .iter()
                    .filter(|f| data.contains_key(&f.name))
                    .collect();
                if fields.is_empty() {
                    return Ok(false);
                }
                q.push(&format!("UPDATE {table} SET "));
                for (i, f) in fields.iter().enumerate() {
                    if i > 0 {
                        q.push(", ");
                    }
                    q.push(&ident(&f.name))
                        .push(" = ")
                        .bind(self.field_value(c, key, f, data)?);
                }
                q.push(&format!(" WHERE {pk} = "))
                    .bind(self.key_value(c, key));
                // A row deleted locally is gone for the application, also while its delete
                // is parked as a conflict: an edit would be lost with whatever is decided.
                q.push(&format!(" AND {STATUS} <> 'deleted'"));
                q.push(" AND NOT EXISTS (SELECT 1 FROM \"_deltasync_conflict\" WHERE resolution IS NULL AND kind = 'local_delete_remote_update' AND collection = ")
                    .bind(SqlValue::from(c.name.as_str()))
                    .push(" AND key = ")
                    .bind(SqlValue::from(key.as_str()))
                    .push(")");
            }
            LocalWrite::Delete { key } => {
                q.push(&format!(
                    "UPDATE {table} SET {STATUS} = 'deleted' WHERE {pk} = "
                ))
                .bind(self.key_value(c, key))
                // A parked row waits for a person's decision on its local version; deleting
                // it underneath would turn that decision into something else.
                .push(&format!(" AND {STATUS} NOT IN ('deleted', 'conflict')"));
            }
        }
        let done = self
            .db
            .execute_raw(q.build())
            .await
            .map_err(db_err(format!("writing to {}", c.name)))?;
        Ok(done.rows_affected() > 0)
    }
}
