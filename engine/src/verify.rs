//! Divergence check: do the local synced rows and the server's rows still agree?
//!
//! Owns the comparison of keys and cursor stamps in both directions, page by page, and the
//! optional repair. It must not touch pending rows: their difference from the server is a
//! change on its way, not drift.

use std::collections::HashSet;

use schema::CollectionConfig;
use serde::{Deserialize, Serialize};
use tracing::{Instrument, info_span, warn};

use crate::error::Result;
use crate::model::Key;
use crate::ports::{Changes, FilteredRows, Guard, Remote, RowOp, Store};
use crate::sync::Engine;

/// Keys listed per kind of drift; the counts are always complete.
const SAMPLE: usize = 20;

/// What a divergence check found in one collection.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CollectionDrift {
    pub collection: String,
    /// Local synced rows compared.
    pub local_rows: u64,
    /// Server rows seen (through the collection's filter, archived rows left out).
    pub server_rows: u64,
    /// On the server, absent locally.
    pub missing_locally: u64,
    /// Synced locally, gone from the server.
    pub missing_on_server: u64,
    /// Synced locally at another stamp than the server's.
    pub stale: u64,
    /// Some of the keys behind those counts.
    pub sample: Vec<Key>,
    /// Rows pulled again or removed by the repair.
    pub repaired: u64,
}

impl CollectionDrift {
    pub fn drifted(&self) -> bool {
        self.missing_locally + self.missing_on_server + self.stale > 0
    }
}

impl<S: Store, R: Remote> Engine<S, R> {
    /// Compares every collection (or `only`) with the server; with `repair`, pulls again
    /// what is missing or stale locally and removes what the server no longer has.
    pub async fn verify(&self, only: Option<&str>, repair: bool) -> Result<Vec<CollectionDrift>> {
        if let Some(name) = only {
            self.collection_config(name)?;
        }
        let mut out = Vec::new();
        for c in &self.config().collections {
            if only.is_some_and(|name| name != c.name) {
                continue;
            }
            let span = info_span!("verify", collection = %c.name);
            out.push(self.verify_collection(c, repair).instrument(span).await?);
        }
        Ok(out)
    }

    async fn verify_collection(
        &self,
        c: &CollectionConfig,
        repair: bool,
    ) -> Result<CollectionDrift> {
        let mut drift = CollectionDrift {
            collection: c.name.clone(),
            ..Default::default()
        };
        let mut gone: Vec<Key> = Vec::new();
        let mut refetch: Vec<Key> = Vec::new();
        let page = c.page_size.max(1) as usize;

        // Local to server: each page of synced keys looked up on the server.
        let mut after: Option<Key> = None;
        loop {
            let local = self.store().synced(c, after.as_ref(), page).await?;
            let Some((last, _)) = local.last() else { break };
            after = Some(last.clone());
            drift.local_rows += local.len() as u64;
            let keys: Vec<Key> = local.iter().map(|(k, _)| k.clone()).collect();
            let (server, _) = self.key_stamps(c, FilteredRows::Among(&keys)).await?;
            let server: std::collections::HashMap<Key, _> = server.into_iter().collect();
            for (key, stamp) in &local {
                match server.get(key) {
                    None => {
                        drift.missing_on_server += 1;
                        gone.push(key.clone());
                    }
                    Some(theirs) if theirs != stamp => {
                        drift.stale += 1;
                        refetch.push(key.clone());
                    }
                    Some(_) => {}
                }
            }
            if local.len() < page {
                break;
            }
        }

        // Server to local: the server's keys page by page, each page looked up locally.
        // Offsets can shift while others write; what a shift hides shows at the next check.
        let mut offset = 0;
        loop {
            let all = FilteredRows::Page {
                offset,
                limit: page,
            };
            let (server, returned) = self.key_stamps(c, all).await?;
            offset += returned as u64;
            drift.server_rows += server.len() as u64;
            let keys: Vec<Key> = server.into_iter().map(|(k, _)| k).collect();
            let present: HashSet<Key> = self
                .store()
                .rows(c, &keys)
                .await?
                .into_iter()
                .map(|r| r.key)
                .collect();
            for key in keys.into_iter().filter(|k| !present.contains(k)) {
                drift.missing_locally += 1;
                refetch.push(key);
            }
            if returned < page {
                break;
            }
        }

        drift.sample = gone.iter().chain(&refetch).take(SAMPLE).cloned().collect();
        if drift.drifted() {
            warn!(
                collection = %c.name,
                missing_locally = drift.missing_locally,
                missing_on_server = drift.missing_on_server,
                stale = drift.stale,
                "local rows and the server disagree"
            );
        }
        if repair {
            drift.repaired = self.repair(c, gone, refetch).await?;
        }
        Ok(drift)
    }

    /// Removes synced rows the server lacks and pulls again the rows that are missing or
    /// stale; pending rows are left to the next sync.
    async fn repair(&self, c: &CollectionConfig, gone: Vec<Key>, refetch: Vec<Key>) -> Result<u64> {
        let mut repaired = 0;
        let removals = gone.into_iter().map(|key| RowOp::Remove {
            key,
            guard: Guard::IfSynced,
        });
        let changes = Changes {
            ops: removals.collect(),
            ..Default::default()
        };
        repaired += self.store().apply(c, changes).await? as u64;
        for chunk in refetch.chunks(c.page_size.max(1) as usize) {
            let mut changes = Changes::default();
            // A row that does not fit is recorded, as the pull does, and left alone.
            for (key, fetched) in self.fetch_remotes(c, chunk).await? {
                match fetched {
                    Ok(row) => changes.ops.push(RowOp::Pull(row)),
                    Err(invalid) => changes.records.push(crate::sync::read::invalid_record(
                        c,
                        &key,
                        invalid.stamp,
                        &invalid.error,
                    )),
                }
            }
            repaired += self.store().apply(c, changes).await? as u64;
        }
        Ok(repaired)
    }
}
