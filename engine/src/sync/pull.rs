//! The pull phase: server rows changed since the checkpoint, page by page.
//!
//! Owns the paging loop, the local transaction the pages go into (kept open across pages,
//! committed as [`crate::commit`] decides) and the checkpoint it advances with the rows. The
//! cursor decisions live in [`crate::cursor`], the per-row ones in [`crate::plan`].

use std::future::Future;

use super::read::{by_key, invalid_record};
use super::*;
use crate::cursor::PageRequest;
use crate::ports::{Batch, RawPage};

impl<S: Store, R: Remote> Engine<S, R> {
    pub(super) async fn pull(
        &self,
        c: &CollectionConfig,
        report: &mut CollectionReport,
    ) -> Result<()> {
        let mut checkpoint = self.store.checkpoint(&c.name).await?;
        if matches!(c.deletes, Deletes::Activity) && checkpoint.delete_cursor.is_none() {
            // Deletes before the first pull are already reflected in what it reads.
            checkpoint.delete_cursor =
                Some(self.remote.latest_activity(&c.name).await?.unwrap_or(0));
        }
        for &lane in Lane::of(c) {
            self.pull_lane(c, lane, &mut checkpoint, report).await?;
        }
        Ok(())
    }

    /// Pulls one lane from its stored position to the end, saving `checkpoint` (with the
    /// lane's new position) with every page.
    async fn pull_lane(
        &self,
        c: &CollectionConfig,
        lane: Lane,
        checkpoint: &mut Checkpoint,
        report: &mut CollectionReport,
    ) -> Result<()> {
        let fields = read_fields(c);
        let overlap = chrono::Duration::seconds(i64::from(c.overlap_seconds));
        let mut settled: Option<Stamp> = None;
        let mut position = checkpoint.position(lane).clone();
        let total = if self.counting() {
            let whole = page_request(lane, &position, c.page_size);
            self.remote.count(c, &whole).await.unwrap_or(None)
        } else {
            None
        };
        let mut read = 0u64;
        // The local transaction the pages go into, committed now and then (see
        // [`crate::commit`]); dropping it on an error rolls back what it did not commit.
        let mut open: Option<Open<S::Batch>> = None;
        // The next page, fetched while the previous one was written.
        let mut prefetched = None;
        loop {
            let request = page_request(lane, &position, c.page_size);
            let fetched = match prefetched.take() {
                Some(fetched) => fetched,
                None => self.fetch(c, &request, &fields).await,
            };
            let Fetched {
                server_date,
                read: page_len,
                rows,
                invalid,
                archived,
                ours,
            } = match fetched {
                Ok(fetched) => fetched,
                // What was written so far is whole, checkpoint included: keep it.
                Err(e) => return commit(open).await.and(Err(e)),
            };
            let server_now = server_date.unwrap_or_else(|| Utc::now() + self.remote.clock_skew());
            settled.get_or_insert(Stamp(server_now - overlap));
            let (rows, next, done) = match page_outcome(&position, &request, rows, page_len) {
                PageOutcome::Advance { rows, next, done } => (rows, next, done),
                PageOutcome::AnchorLost { restart } => {
                    info!(collection = %c.name, "rows moved during the pull; re-reading the stamp group");
                    position = restart;
                    continue;
                }
            };
            let keys: Vec<Key> = rows
                .iter()
                .map(|r| r.key.clone())
                .chain(ours.values().cloned())
                .collect();
            let batch = match &mut open {
                Some(batch) => batch,
                None => open.insert(Open {
                    batch: self.store.begin().await?,
                    since: Instant::now(),
                    rows: 0,
                }),
            };
            // Read inside the transaction, which sees the pages written before this one.
            let locals = by_key(batch.batch.rows(c, &keys).await?);
            let mut changes = Changes::default();
            for row in rows {
                if let Some(temporary) = ours.get(&row.key)
                    && locals.contains_key(temporary)
                    && !invalid.contains_key(&row.key)
                {
                    info!(collection = %c.name, key = %temporary, server_key = %row.key,
                        "a create whose answer was lost had landed: taken");
                    report.pulled += 1;
                    changes
                        .ops
                        .extend(server_keys::adoption(&self.config, c, temporary, row));
                    continue;
                }
                if let Some(error) = invalid.get(&row.key) {
                    report.quarantined += 1;
                    warn!(%error, "server row does not fit the configuration; not applied");
                    changes
                        .records
                        .push(invalid_record(c, &row.key, Some(row.stamp), error));
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
            read += page_len as u64;
            self.report_progress(&c.name, ProgressPhase::Pull, read, total);
            position = if done {
                settle(&next, settled.expect("set on the first page"))
            } else {
                next
            };
            checkpoint.set_position(lane, position.clone());
            changes.checkpoint = Some(checkpoint.clone());
            batch.rows += changes.ops.len();
            if done {
                batch.batch.apply(c, changes).await?;
                return commit(open).await;
            }
            // Writing and fetching overlap: the next request depends only on the position.
            let next = page_request(lane, &position, c.page_size);
            let (written, fetched) = self
                .write_while_fetching(c, &mut open, changes, self.fetch(c, &next, &fields))
                .await;
            written?;
            prefetched = Some(fetched);
        }
    }

    /// Reads a page and decodes it, on a thread of its own: decoding is the pull's heaviest
    /// work on this side, and so it overlaps the writing of the page before.
    async fn fetch(
        &self,
        c: &CollectionConfig,
        request: &PageRequest,
        fields: &[String],
    ) -> Result<Fetched> {
        let page = self.remote.page(c, request, fields).await?;
        let (c, replica) = (c.clone(), self.replica.clone());
        Ok(
            tokio::task::spawn_blocking(move || Fetched::decode(&c, &replica, page))
                .await
                .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic())),
        )
    }

    /// Writes `changes` into the open transaction while `fetch` reads the next page, and
    /// commits when [`CommitPolicy`](crate::commit::CommitPolicy) says so: right after the
    /// write when it is due, or once its time is up while the next page is still on its way,
    /// so that a slow server never keeps other writers waiting.
    async fn write_while_fetching<T>(
        &self,
        c: &CollectionConfig,
        open: &mut Option<Open<S::Batch>>,
        changes: Changes,
        fetch: impl Future<Output = T>,
    ) -> (Result<()>, T) {
        let (fetched_tx, fetched_rx) = tokio::sync::oneshot::channel::<()>();
        let fetch = async {
            let fetched = fetch.await;
            let _ = fetched_tx.send(());
            fetched
        };
        let write = async {
            let Some(batch) = open.as_ref() else {
                return Ok(());
            };
            batch.batch.apply(c, changes).await?;
            let policy = self.commits;
            if !policy.due(batch.since.elapsed(), batch.rows) {
                let left = policy.left(batch.since.elapsed());
                if tokio::time::timeout(left, fetched_rx).await.is_ok() {
                    return Ok(());
                }
            }
            commit(open.take()).await
        };
        futures::join!(write, fetch)
    }
}

/// A page as read and decoded.
struct Fetched {
    server_date: Option<chrono::DateTime<Utc>>,
    /// How many rows the server sent.
    read: usize,
    /// Rows for the cursor, with their data when valid.
    rows: Vec<RemoteRow>,
    /// The errors of rows that did not fit.
    invalid: HashMap<Key, RowError>,
    /// The keys of archived rows.
    archived: HashSet<Key>,
    /// Rows this replica created whose create's answer was lost, to be recognised and taken:
    /// their server keys and the temporary keys they had here.
    ours: HashMap<Key, Key>,
}

impl Fetched {
    fn decode(c: &CollectionConfig, replica: &str, page: RawPage) -> Fetched {
        let ours = page
            .rows
            .iter()
            .filter_map(|raw| {
                let temporary = server_keys::created_here(replica, c, raw)?;
                Some((raw.get(&c.primary_key).and_then(key_from_json)?, temporary))
            })
            .collect();
        let read = page.rows.len();
        let (rows, invalid, archived) = decode_page(c, page.rows, archive_of(c));
        Fetched {
            server_date: page.server_date,
            read,
            rows,
            invalid,
            archived,
            ours,
        }
    }
}

/// The transaction a pull writes into, with when it began and what it carries.
struct Open<B> {
    batch: B,
    since: Instant,
    rows: usize,
}

/// Commits `open`, if there is one.
async fn commit<B: Batch>(open: Option<Open<B>>) -> Result<()> {
    match open {
        Some(open) => open.batch.commit().await,
        None => Ok(()),
    }
}

/// Decodes a page: rows for the cursor (with their data when valid), the errors of rows
/// that did not fit, and the keys of archived rows.
fn decode_page(
    c: &CollectionConfig,
    raw_rows: Vec<Value>,
    archive: Option<(&str, &Value)>,
) -> (Vec<RemoteRow>, HashMap<Key, RowError>, HashSet<Key>) {
    let mut rows = Vec::with_capacity(raw_rows.len());
    let mut invalid = HashMap::new();
    let mut archived = HashSet::new();
    for raw in raw_rows {
        let is_archived = plan::is_archived(&raw, archive);
        match remote_row_owned(c, raw) {
            Ok(row) => {
                if is_archived {
                    archived.insert(row.key.clone());
                }
                rows.push(row);
            }
            Err(failed) => {
                let (error, raw) = *failed;
                // Keep the row's place in the cursor order when its key and stamp are readable.
                let ident = error.key.clone().zip(version_of(c, &raw));
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
