//! A pull's write transaction kept open across pages ([`engine::ports::Batch`]).
//!
//! Owns nothing but the transaction: reads and writes go through the store's own code, run
//! inside it. It must not decide when to commit; the engine does.

use engine::ports::{Batch, Changes};
use engine::{Key, LocalRow};
use schema::CollectionConfig;
use std::time::Instant;

use sea_orm::DatabaseTransaction;

use crate::store::SqlStore;

/// An open write transaction of a [`SqlStore`]. Dropping it rolls back what was not
/// committed.
pub struct SqlBatch {
    store: SqlStore,
    tx: DatabaseTransaction,
    began: Instant,
}

impl SqlBatch {
    pub(crate) fn new(store: SqlStore, tx: DatabaseTransaction) -> SqlBatch {
        SqlBatch {
            store,
            tx,
            began: Instant::now(),
        }
    }
}

impl std::fmt::Debug for SqlBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SqlBatch")
    }
}

impl Batch for SqlBatch {
    async fn rows(&self, c: &CollectionConfig, keys: &[Key]) -> engine::Result<Vec<LocalRow>> {
        self.store.rows_in(&self.tx, c, keys).await
    }

    async fn apply(&self, c: &CollectionConfig, changes: Changes) -> engine::Result<usize> {
        self.store.apply_in(&self.tx, c, changes).await
    }

    async fn commit(self) -> engine::Result<()> {
        self.tx
            .commit()
            .await
            .map_err(crate::store::db_err("committing"))?;
        self.store.committed(self.began.elapsed());
        Ok(())
    }
}
