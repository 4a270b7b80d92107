//! The bare insert: the benchmark's rows written into a fresh table of the engine's shape by
//! the plainest code that can write them fast, the local limit a sync is compared with.
//!
//! Owns the knobs that decide how fast a plain insert goes (transaction size, SQLite's page
//! cache, statement shape and length) and the insert itself. Must not time anything but the
//! inserts: generating the rows is left out.

use std::time::Duration;

use deltasync::{CollectionConfig, FieldType};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, DbBackend, TransactionTrait};
use serde_json::{Value, json};

use crate::{Error, Fixture, collections};

/// How the rows reach the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// `INSERT … VALUES (…), (…), …`: one bound parameter per value (the store's shape).
    Values,
    /// PostgreSQL only: `INSERT … SELECT … FROM UNNEST($1::text[], …)`, one array per column.
    Unnest,
    /// PostgreSQL only: `COPY … FROM STDIN` in CSV, one per transaction.
    Copy,
}

impl Shape {
    fn name(self) -> &'static str {
        match self {
            Shape::Values => "values",
            Shape::Unnest => "unnest",
            Shape::Copy => "copy",
        }
    }
}

/// How [`bare_insert`] writes: the knobs that decide how fast a plain insert can go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BareInsert {
    /// Rows per transaction.
    pub rows_per_transaction: usize,
    /// SQLite's page cache in KiB (`PRAGMA cache_size = -N`); `None`: SQLite's default.
    pub cache_kib: Option<u32>,
    /// Rows per `INSERT` statement; `None`: as many as the bind limit allows (for
    /// [`Shape::Unnest`]: a whole transaction).
    pub rows_per_statement: Option<usize>,
    pub shape: Shape,
}

impl BareInsert {
    /// The settings the sweep (`e2e bare`) found fastest on SQLite: the bare insert a sync
    /// is compared with.
    pub const BEST: BareInsert = BareInsert {
        rows_per_transaction: 100_000,
        cache_kib: Some(262_144),
        rows_per_statement: None,
        shape: Shape::Values,
    };

    /// The fastest on PostgreSQL, where the page cache is the server's.
    pub const BEST_POSTGRES: BareInsert = BareInsert {
        rows_per_transaction: 100_000,
        cache_kib: None,
        rows_per_statement: None,
        shape: Shape::Copy,
    };

    /// The settings `e2e bare` tries on SQLite. (One row per statement was tried too and
    /// dropped: 4 to 8 times slower than any multi-row shape through this driver.)
    pub fn sweep() -> Vec<BareInsert> {
        let mut out = Vec::new();
        for rows_per_transaction in [1_000, 20_000, 100_000] {
            for cache_kib in [None, Some(65_536), Some(262_144)] {
                for rows_per_statement in [None, Some(100), Some(500)] {
                    out.push(BareInsert {
                        rows_per_transaction,
                        cache_kib,
                        rows_per_statement,
                        shape: Shape::Values,
                    });
                }
            }
        }
        out
    }

    /// The settings `e2e bare --db postgres` tries: each shape at each transaction size.
    pub fn sweep_postgres() -> Vec<BareInsert> {
        let mut out = Vec::new();
        for rows_per_transaction in [1_000, 20_000, 100_000] {
            for shape in [Shape::Values, Shape::Unnest, Shape::Copy] {
                out.push(BareInsert {
                    rows_per_transaction,
                    cache_kib: None,
                    rows_per_statement: None,
                    shape,
                });
            }
        }
        out
    }

    /// As command-line words, for a child process: `TXN CACHE STATEMENT SHAPE` (0 for `None`).
    pub fn to_args(self) -> [String; 4] {
        [
            self.rows_per_transaction.to_string(),
            self.cache_kib.unwrap_or(0).to_string(),
            self.rows_per_statement.unwrap_or(0).to_string(),
            self.shape.name().to_owned(),
        ]
    }

    /// Reads [`BareInsert::to_args`].
    pub fn from_args(args: &[String]) -> Result<BareInsert, String> {
        let [txn, cache, statement, shape] = args else {
            return Err("TXN CACHE STATEMENT SHAPE".to_owned());
        };
        let number = |s: &String| s.parse::<usize>().map_err(|e| format!("{s}: {e}"));
        let some = |n: usize| (n > 0).then_some(n);
        let shape = [Shape::Values, Shape::Unnest, Shape::Copy]
            .into_iter()
            .find(|s| s.name() == shape)
            .ok_or_else(|| format!("{shape}: not values, unnest or copy"))?;
        Ok(BareInsert {
            rows_per_transaction: number(txn)?.max(1),
            cache_kib: some(number(cache)?).map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
            rows_per_statement: some(number(statement)?),
            shape,
        })
    }

    /// The settings as JSON, for a result line.
    pub fn describe(self) -> Value {
        json!({
            "rows_per_transaction": self.rows_per_transaction,
            "cache_kib": self.cache_kib,
            "rows_per_statement": self.rows_per_statement,
            "shape": self.shape.name(),
        })
    }
}

/// Inserts a fixture's rows into a fresh table of the engine's shape (no triggers) in
/// `database`, as `settings` say: the local limit a sync's apply is compared with. Returns
/// the time the inserts took, generation excluded.
pub async fn bare_insert(
    database: &str,
    fixture: &Fixture,
    settings: BareInsert,
) -> Result<Duration, Error> {
    let url = if database.starts_with("sqlite:") && !database.contains('?') {
        format!("{database}?mode=rwc")
    } else {
        database.to_owned()
    };
    // One connection, so that the settings below hold for every insert.
    let mut options = sea_orm::ConnectOptions::new(url);
    options.max_connections(1).sqlx_logging(false);
    let db = Database::connect(options).await.map_err(db_error)?;
    let backend = db.get_database_backend();
    if backend == DbBackend::Sqlite {
        // The engine's store runs SQLite in WAL mode with synchronous NORMAL, as here.
        let mut pragmas = vec![
            "PRAGMA journal_mode = WAL".to_owned(),
            "PRAGMA synchronous = NORMAL".to_owned(),
        ];
        if let Some(kib) = settings.cache_kib {
            pragmas.push(format!("PRAGMA cache_size = -{kib}"));
        }
        for pragma in pragmas {
            db.execute_unprepared(&pragma).await.map_err(db_error)?;
        }
    } else if settings.shape != Shape::Values && backend != DbBackend::Postgres {
        return Err(Error::Local(format!(
            "the {} shape is PostgreSQL's",
            settings.shape.name()
        )));
    }
    let posts = collections().pop().expect("posts");
    db.execute_unprepared(&adapters::sql::create_table(backend, &posts))
        .await
        .map_err(db_error)?;
    db.execute_unprepared(&adapters::sql::create_pending_index(&posts))
        .await
        .map_err(db_error)?;
    let rows = fixture.post_rows(0..fixture.posts);
    let started = std::time::Instant::now();
    for transaction in rows.chunks(settings.rows_per_transaction) {
        match settings.shape {
            Shape::Values => insert_values(&db, &posts, transaction, settings).await?,
            Shape::Unnest => insert_unnest(&db, &posts, transaction, settings).await?,
            Shape::Copy => insert_copy(&db, &posts, transaction).await?,
        }
    }
    Ok(started.elapsed())
}

fn db_error(e: sea_orm::DbErr) -> Error {
    Error::Local(e.to_string())
}

fn sqlx_error(e: sea_orm::sqlx::Error) -> Error {
    Error::Local(e.to_string())
}

/// Every post is written with this stamp and as synced.
const STAMP: &str = "2026-01-01T00:00:00.000Z";

/// The columns written, in order: key, fields, cursor, status.
fn columns(posts: &CollectionConfig) -> Vec<(String, FieldType)> {
    let mut columns = vec![(posts.primary_key.clone(), FieldType::Uuid)];
    columns.extend(posts.fields.iter().map(|f| (f.name.clone(), f.kind)));
    columns.push((posts.cursor.clone(), FieldType::Timestamp));
    columns.push(("_sync_status".to_owned(), FieldType::String));
    columns
}

/// The values of a row in [`columns`] order.
fn values<'r>(
    posts: &CollectionConfig,
    row: &'r deltasync::Row,
    stamp: &'r Value,
) -> Vec<&'r Value> {
    static SYNCED: std::sync::LazyLock<Value> = std::sync::LazyLock::new(|| json!("synced"));
    let field = |name: &str| row.get(name).unwrap_or(&Value::Null);
    let mut out = vec![field("id")];
    out.extend(posts.fields.iter().map(|f| field(&f.name)));
    out.push(stamp);
    out.push(&SYNCED);
    out
}

fn column_list(posts: &CollectionConfig) -> String {
    columns(posts)
        .iter()
        .map(|(name, _)| adapters::sql::ident(name))
        .collect::<Vec<_>>()
        .join(", ")
}

async fn insert_values(
    db: &DatabaseConnection,
    posts: &CollectionConfig,
    rows: &[deltasync::Row],
    settings: BareInsert,
) -> Result<(), Error> {
    let backend = db.get_database_backend();
    let columns = columns(posts);
    let per_statement = settings
        .rows_per_statement
        .unwrap_or_else(|| adapters::sql::rows_per_statement(backend, columns.len()));
    let stamp = json!(STAMP);
    let txn = db.begin().await.map_err(db_error)?;
    for chunk in rows.chunks(per_statement) {
        let mut q = adapters::sql::Sql::new(backend);
        q.push(&format!(
            "INSERT INTO {} ({}) VALUES ",
            adapters::sql::ident(&posts.table),
            column_list(posts)
        ));
        for (i, r) in chunk.iter().enumerate() {
            q.push(if i == 0 { "(" } else { ", (" });
            for (j, ((_, kind), value)) in columns.iter().zip(values(posts, r, &stamp)).enumerate()
            {
                if j > 0 {
                    q.push(", ");
                }
                q.bind(adapters::sql::to_sql(backend, *kind, value).map_err(Error::Local)?);
            }
            q.push(")");
        }
        txn.execute_raw(q.build()).await.map_err(db_error)?;
    }
    txn.commit().await.map_err(db_error)
}

/// A value as PostgreSQL's text input reads it; `None` for NULL.
fn text(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

async fn insert_unnest(
    db: &DatabaseConnection,
    posts: &CollectionConfig,
    rows: &[deltasync::Row],
    settings: BareInsert,
) -> Result<(), Error> {
    let columns = columns(posts);
    let arrays = (1..=columns.len())
        .map(|i| format!("${i}::text[]"))
        .collect::<Vec<_>>()
        .join(", ");
    let casts = columns
        .iter()
        .enumerate()
        .map(|(i, (_, kind))| {
            format!(
                "c{i}::{}",
                adapters::sql::column_type(DbBackend::Postgres, *kind)
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let names = (0..columns.len())
        .map(|i| format!("c{i}"))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "INSERT INTO {} ({}) SELECT {casts} FROM UNNEST({arrays}) AS u({names})",
        adapters::sql::ident(&posts.table),
        column_list(posts)
    );
    let stamp = json!(STAMP);
    let mut tx = db
        .get_postgres_connection_pool()
        .begin()
        .await
        .map_err(sqlx_error)?;
    for chunk in rows.chunks(settings.rows_per_statement.unwrap_or(rows.len())) {
        let mut by_column: Vec<Vec<Option<String>>> =
            vec![Vec::with_capacity(chunk.len()); columns.len()];
        for r in chunk {
            for (column, value) in by_column.iter_mut().zip(values(posts, r, &stamp)) {
                column.push(text(value));
            }
        }
        // Built from the configured column names, quoted; the values are bound.
        let mut query = sea_orm::sqlx::query(sea_orm::sqlx::AssertSqlSafe(sql.clone()));
        for column in by_column {
            query = query.bind(column);
        }
        query.execute(&mut *tx).await.map_err(sqlx_error)?;
    }
    tx.commit().await.map_err(sqlx_error)
}

async fn insert_copy(
    db: &DatabaseConnection,
    posts: &CollectionConfig,
    rows: &[deltasync::Row],
) -> Result<(), Error> {
    let stamp = json!(STAMP);
    let mut csv = String::with_capacity(rows.len() * 512);
    for r in rows {
        for (j, value) in values(posts, r, &stamp).into_iter().enumerate() {
            if j > 0 {
                csv.push(',');
            }
            // Quoted, quotes doubled; NULL is the empty unquoted field.
            if let Some(text) = text(value) {
                csv.push('"');
                csv.push_str(&text.replace('"', "\"\""));
                csv.push('"');
            }
        }
        csv.push('\n');
    }
    let mut tx = db
        .get_postgres_connection_pool()
        .begin()
        .await
        .map_err(sqlx_error)?;
    let mut copy = tx
        .copy_in_raw(&format!(
            "COPY {} ({}) FROM STDIN WITH (FORMAT csv)",
            adapters::sql::ident(&posts.table),
            column_list(posts)
        ))
        .await
        .map_err(sqlx_error)?;
    copy.send(csv.into_bytes()).await.map_err(sqlx_error)?;
    copy.finish().await.map_err(sqlx_error)?;
    tx.commit().await.map_err(sqlx_error)
}
