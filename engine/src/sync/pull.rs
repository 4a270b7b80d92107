//! The pull phase: server rows changed since the checkpoint, page by page.
//!
//! Owns the paging loop and the checkpoint it advances with the rows. The cursor decisions
//! live in [`crate::cursor`], the per-row ones in [`crate::plan`].

use super::read::invalid_record;
use super::*;

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
        let archive = archive_of(c);
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
        // The next page, fetched while the previous one was applied.
        let mut prefetched = None;
        loop {
            let request = page_request(lane, &position, c.page_size);
            let page = match prefetched.take() {
                Some(page) => page,
                None => self.remote.page(c, &request, &fields).await?,
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
            // Rows this replica created whose create's answer was lost are recognised and
            // taken.
            let ours: HashMap<Key, Key> = page
                .rows
                .iter()
                .filter_map(|raw| {
                    let temporary = server_keys::created_here(&self.replica, c, raw)?;
                    Some((raw.get(&c.primary_key).and_then(key_from_json)?, temporary))
                })
                .collect();
            let keys: Vec<Key> = rows
                .iter()
                .map(|r| r.key.clone())
                .chain(ours.values().cloned())
                .collect();
            let locals = self.locals_by_key(c, &keys).await?;
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
            read += page.rows.len() as u64;
            self.report_progress(&c.name, ProgressPhase::Pull, read, total);
            position = if done {
                settle(&next, settled.expect("set on the first page"))
            } else {
                next
            };
            checkpoint.set_position(lane, position.clone());
            changes.checkpoint = Some(checkpoint.clone());
            if done {
                return self.store.apply(c, changes).await.map(drop);
            }
            // Fetching and applying overlap: the next request depends only on the position.
            let next = page_request(lane, &position, c.page_size);
            let (applied, page) = futures::join!(
                self.store.apply(c, changes),
                self.remote.page(c, &next, &fields)
            );
            applied?;
            prefetched = Some(page?);
        }
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
                let ident = error.key.clone().zip(version_of(c, raw));
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
