//! Notices of local writes made outside this process (plain SQL from other programs), for the
//! sync service to push them promptly.
//!
//! Owns the two ways the databases tell: PostgreSQL's `LISTEN` on the channel the collection
//! triggers `NOTIFY` ([`NOTICE_CHANNEL`]), and, for SQLite, a cheap poll of
//! `PRAGMA data_version` (which changes when another connection commits) followed by a look at
//! each collection's pending rows. A notice names a collection; it carries no rows, the sync
//! reads them. It must not decide anything else.

use std::collections::HashMap;
use std::time::Duration;

use engine::{Error, StoreError};
use schema::Config;
use sea_orm::sqlx::postgres::{PgListener, PgPoolOptions};
use sea_orm::sqlx::{self, Connection, SqliteConnection};
use sea_orm::{DatabaseConnection, DbBackend};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::sql::{CHANGED_AT, STATUS, ident};

/// The channel the collection triggers notify on PostgreSQL, with the collection as payload.
pub const NOTICE_CHANNEL: &str = "deltasync_writes";

/// How often SQLite is asked whether another connection committed.
const SQLITE_POLL: Duration = Duration::from_millis(200);

fn watch_err(e: impl std::fmt::Display) -> Error {
    Error::Store(StoreError::new(format!("watching local writes: {e}")))
}

/// Sends the collection of each local write made by another connection until `stop`.
pub(crate) async fn watch(
    db: &DatabaseConnection,
    config: &Config,
    notices: mpsc::Sender<String>,
    stop: CancellationToken,
) -> Result<(), Error> {
    match db.get_database_backend() {
        DbBackend::Postgres => postgres(db, config, notices, stop).await,
        _ => sqlite(db, config, notices, stop).await,
    }
}

async fn postgres(
    db: &DatabaseConnection,
    config: &Config,
    notices: mpsc::Sender<String>,
    stop: CancellationToken,
) -> Result<(), Error> {
    // A pool of its own: the listening connection is never returned.
    let options = db.get_postgres_connection_pool().connect_options();
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_with((*options).clone())
        .await
        .map_err(watch_err)?;
    let mut listener = PgListener::connect_with(&pool).await.map_err(watch_err)?;
    listener.listen(NOTICE_CHANNEL).await.map_err(watch_err)?;
    loop {
        let received = tokio::select! {
            () = stop.cancelled() => return Ok(()),
            received = listener.try_recv() => received.map_err(watch_err)?,
        };
        let names = match received {
            Some(notice) => vec![notice.payload().to_owned()],
            // The connection dropped and notices may be lost: every collection may have
            // been written meanwhile.
            None => {
                debug!("the notice connection dropped; reconnecting");
                config.collections.iter().map(|c| c.name.clone()).collect()
            }
        };
        for name in names {
            if notices.send(name).await.is_err() {
                return Ok(());
            }
        }
    }
}

async fn sqlite(
    db: &DatabaseConnection,
    config: &Config,
    notices: mpsc::Sender<String>,
    stop: CancellationToken,
) -> Result<(), Error> {
    let options = db.get_sqlite_connection_pool().connect_options();
    if options.get_filename().to_string_lossy().is_empty()
        || config.local.database.contains(":memory:")
    {
        // An in-memory database has no other connection to write it.
        stop.cancelled().await;
        return Ok(());
    }
    let mut conn = SqliteConnection::connect_with(&options)
        .await
        .map_err(watch_err)?;
    let mut version = data_version(&mut conn).await?;
    let mut seen: HashMap<String, (i64, Option<String>)> = HashMap::new();
    for c in &config.collections {
        seen.insert(c.name.clone(), pending_mark(&mut conn, &c.table).await?);
    }
    loop {
        tokio::select! {
            () = stop.cancelled() => return Ok(()),
            () = tokio::time::sleep(SQLITE_POLL) => {}
        }
        let now = data_version(&mut conn).await?;
        if now == version {
            continue;
        }
        version = now;
        for c in &config.collections {
            let mark = match pending_mark(&mut conn, &c.table).await {
                Ok(mark) => mark,
                Err(e) => {
                    warn!(collection = %c.name, error = %e, "reading pending rows failed");
                    continue;
                }
            };
            let before = seen.insert(c.name.clone(), mark.clone());
            // A write by an application stamps a later change time, or adds a pending row;
            // the sync's own writes only take rows out of pending.
            let written = before.is_none_or(|(count, latest)| mark.0 > count || mark.1 > latest);
            if written && mark.0 > 0 && notices.send(c.name.clone()).await.is_err() {
                return Ok(());
            }
        }
    }
}

async fn data_version(conn: &mut SqliteConnection) -> Result<i64, Error> {
    sqlx::query_scalar("PRAGMA data_version")
        .fetch_one(conn)
        .await
        .map_err(watch_err)
}

/// How many rows of `table` are pending, and the latest change time among them.
async fn pending_mark(
    conn: &mut SqliteConnection,
    table: &str,
) -> Result<(i64, Option<String>), Error> {
    let sql = format!(
        "SELECT count(*), max({CHANGED_AT}) FROM {} WHERE {STATUS} <> 'synced'",
        ident(table)
    );
    // The table name is quoted by `ident`, as everywhere else.
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .fetch_one(conn)
        .await
        .map_err(watch_err)
}
