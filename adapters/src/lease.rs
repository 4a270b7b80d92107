//! Leases in the local database: which process may sync a collection, or upgrade the tables,
//! right now.
//!
//! Owns the lock primitives of each backend. A lease is released when its guard is dropped,
//! and by the operating system or the database server when the process dies, so a crash never
//! leaves one behind:
//! - PostgreSQL: a session advisory lock on a connection of its own, outside the pool, closed
//!   with the guard (`pg_advisory_lock(DELTASYNC, hashtext(name))`);
//! - SQLite file: an exclusive lock (`flock`) on a file per name in `<database>-leases/`;
//! - SQLite in memory: a mutex of the store, since no other process can open the database.
//!
//! It must not decide what a lease covers: the engine takes them.

use std::collections::HashMap;
use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use engine::ports::{Lease, LeaseWait};
use engine::{Error, StoreError};
use sea_orm::sqlx::{self, Connection, PgConnection};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};

/// The first key of every advisory lock deltasync takes, so that its locks cannot collide with
/// an application's single-key locks ("DS" in ASCII).
const ADVISORY_CLASS: i32 = 0x4453;

/// Where the leases of one store live.
#[derive(Debug)]
pub(crate) enum Leases {
    Postgres,
    /// The directory of the lock files of an SQLite database file.
    Files(PathBuf),
    /// An in-memory database: leases within this process.
    Memory(Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>),
}

fn lease_err(name: &str, e: impl std::fmt::Display) -> Error {
    Error::Store(StoreError::new(format!("taking the lease {name:?}: {e}")))
}

impl Leases {
    /// Finds where `db` keeps its leases.
    pub(crate) async fn of(db: &DatabaseConnection) -> Result<Leases, Error> {
        if db.get_database_backend() == DbBackend::Postgres {
            return Ok(Leases::Postgres);
        }
        let row = db
            .query_one_raw(Statement::from_string(
                DbBackend::Sqlite,
                "SELECT file FROM pragma_database_list WHERE name = 'main'",
            ))
            .await
            .map_err(|e| lease_err("", e))?;
        let file: String = row
            .map(|r| r.try_get_by_index(0))
            .transpose()
            .map_err(|e| lease_err("", e))?
            .unwrap_or_default();
        Ok(if file.is_empty() {
            Leases::Memory(Mutex::default())
        } else {
            Leases::Files(PathBuf::from(format!("{file}-leases")))
        })
    }

    /// Takes the lease `name`; with [`LeaseWait::Skip`], `None` when another holder has it.
    pub(crate) async fn take(
        &self,
        db: &DatabaseConnection,
        name: &str,
        wait: LeaseWait,
    ) -> Result<Option<Lease>, Error> {
        match self {
            Leases::Postgres => postgres(db, name, wait).await,
            Leases::Files(dir) => file(dir, name, wait).await,
            Leases::Memory(mutexes) => {
                let mutex = mutexes
                    .lock()
                    .expect("lease map")
                    .entry(name.to_owned())
                    .or_default()
                    .clone();
                Ok(match wait {
                    LeaseWait::Wait => Some(Lease::new(mutex.lock_owned().await)),
                    LeaseWait::Skip => mutex.try_lock_owned().ok().map(Lease::new),
                })
            }
        }
    }
}

async fn postgres(
    db: &DatabaseConnection,
    name: &str,
    wait: LeaseWait,
) -> Result<Option<Lease>, Error> {
    let options = db.get_postgres_connection_pool().connect_options();
    let mut conn = PgConnection::connect_with(&options)
        .await
        .map_err(|e| lease_err(name, e))?;
    let taken = match wait {
        LeaseWait::Wait => {
            sqlx::query("SELECT pg_advisory_lock($1, hashtext($2))")
                .bind(ADVISORY_CLASS)
                .bind(name)
                .execute(&mut conn)
                .await
                .map_err(|e| lease_err(name, e))?;
            true
        }
        LeaseWait::Skip => sqlx::query_scalar("SELECT pg_try_advisory_lock($1, hashtext($2))")
            .bind(ADVISORY_CLASS)
            .bind(name)
            .fetch_one(&mut conn)
            .await
            .map_err(|e| lease_err(name, e))?,
    };
    // The lock lives as long as the session: the guard owns the connection, and closing it
    // (dropping the guard, or the process dying) releases the lock.
    Ok(taken.then(|| Lease::new(conn)))
}

async fn file(dir: &Path, name: &str, wait: LeaseWait) -> Result<Option<Lease>, Error> {
    std::fs::create_dir_all(dir).map_err(|e| lease_err(name, format!("{}: {e}", dir.display())))?;
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let path = dir.join(format!("{safe}.lock"));
    let lock_file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| lease_err(name, format!("{}: {e}", path.display())))?;
    match wait {
        LeaseWait::Skip => match lock_file.try_lock() {
            Ok(()) => Ok(Some(Lease::new(lock_file))),
            Err(TryLockError::WouldBlock) => Ok(None),
            Err(TryLockError::Error(e)) => Err(lease_err(name, e)),
        },
        LeaseWait::Wait => {
            // Blocks a thread of the blocking pool, not the runtime, while another holds it.
            let locked = tokio::task::spawn_blocking(move || lock_file.lock().map(|()| lock_file))
                .await
                .map_err(|e| lease_err(name, e))?;
            let lock_file: File = locked.map_err(|e| lease_err(name, e))?;
            Ok(Some(Lease::new(lock_file)))
        }
    }
}
