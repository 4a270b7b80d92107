//! The reconcile phase: server deletes applied locally, from the activity log or by
//! comparing keys.
//!
//! Owns when the activity log is trusted and the delete cursor. It must not speak HTTP or
//! SQL.

use super::*;

impl<S: Store, R: Remote> Engine<S, R> {
    pub(super) async fn reconcile(
        &self,
        c: &CollectionConfig,
        keys: bool,
        run: &RunCache,
        report: &mut CollectionReport,
    ) -> Result<()> {
        match c.deletes {
            Deletes::None => return Ok(()), // remote deletes are not synced
            // Archived rows arrive through the pull; hard deletes only through the keys.
            Deletes::Archive { .. } if keys => return self.reconcile_keys(c, report).await,
            Deletes::Archive { .. } => return Ok(()),
            Deletes::Activity => {}
        }
        let mut checkpoint = self.store.checkpoint(&c.name).await?;
        let after = checkpoint.delete_cursor.unwrap_or(0);
        // Read before the deletes, so that the read below covers every entry up to it.
        let settled = self.settled_activity(run).await?;
        let first = match self.first_delete_page(c, after, run).await? {
            Ok(page) => page,
            Err(reason) => {
                warn!(collection = %c.name, %reason, "the activity log cannot be trusted; comparing keys");
                // Read from here on: deletes logged while the keys are compared are seen next
                // time. A log the token may not read gives no position; any other failure
                // stops here, and the cursor never moves back.
                let latest = readable(self.remote.latest_activity(&c.name).await)?;
                let oldest = readable(self.remote.oldest_activity().await)?;
                let restart = latest.unwrap_or(0).max(oldest.map_or(0, |o| o - 1));
                self.reconcile_keys(c, report).await?;
                checkpoint.delete_cursor = checkpoint.delete_cursor.max(Some(restart));
                let changes = Changes {
                    checkpoint: Some(checkpoint),
                    ..Default::default()
                };
                return self.store.apply(c, changes).await.map(drop);
            }
        };
        if keys {
            self.reconcile_keys(c, report).await?;
        }
        let mut page = first;
        loop {
            if !page.full {
                // Every delete up to the settled entry has been read: the cursor moves past
                // the other collections' entries too, so the next read starts there.
                let covered = settled.filter(|s| Some(*s) > checkpoint.delete_cursor);
                if page.deletes.is_empty() && covered.is_none() {
                    return Ok(());
                }
                checkpoint.delete_cursor = checkpoint.delete_cursor.max(covered);
            }
            checkpoint.delete_cursor = page.last_id.max(checkpoint.delete_cursor);
            let keys: Vec<Key> = page.deletes.iter().map(|d| d.key.clone()).collect();
            let locals = self.locals_by_key(c, &keys).await?;
            let mut changes = Changes::default();
            let mut conflicted = Vec::new();
            for delete in &page.deletes {
                let local = locals.get(&delete.key);
                match plan::remote_delete(local, delete.at) {
                    RemoteDelete::Ignore => {}
                    RemoteDelete::Remove(op) => {
                        report.deleted += 1;
                        changes.ops.push(op);
                    }
                    RemoteDelete::Purge(op) => changes.ops.push(op),
                    RemoteDelete::Conflict => {
                        conflicted.push((local.expect("conflicts have a local row"), delete.at))
                    }
                }
            }
            for (local, at) in conflicted {
                // The row may have come back since the logged delete: ask the server.
                let remote = self.fetch_remote(c, &local.key).await?;
                if remote.is_some() {
                    continue; // the push compares against it at the next sync
                }
                self.resolve_conflict(c, local, None, at, report).await?;
            }
            changes.checkpoint = Some(checkpoint.clone());
            self.store.apply(c, changes).await?;
            if !page.full {
                return Ok(());
            }
            let after = checkpoint.delete_cursor.unwrap_or(0);
            page = self
                .remote
                .deletes_after(&c.name, after, c.page_size)
                .await?;
        }
    }

    /// The first page of deletes after `after`, or why the activity log cannot tell every
    /// delete since then: the collection is not logged, the log is not readable, or
    /// retention removed entries after the cursor.
    pub(super) async fn first_delete_page(
        &self,
        c: &CollectionConfig,
        after: i64,
        run: &RunCache,
    ) -> Result<Result<DeletePage, String>> {
        let logging = self.activity_logging(&c.name, run).await?;
        let (mut read, mut page, mut oldest) = (None, None, None);
        loop {
            match decide::activity_log_trust(logging, read, oldest, after) {
                decide::LogTrust::Trusted => return Ok(Ok(page.expect("trusted on a read page"))),
                decide::LogTrust::Untrusted(reason) => return Ok(Err(reason)),
                decide::LogTrust::ReadLog => {
                    match self.remote.deletes_after(&c.name, after, c.page_size).await {
                        Ok(first) => {
                            read = Some(decide::LogRead::Read {
                                anchored: first.anchored,
                            });
                            page = Some(first);
                        }
                        Err(Error::Remote(e)) if e.kind == RemoteErrorKind::Forbidden => {
                            read = Some(decide::LogRead::Forbidden);
                        }
                        Err(e) => return Err(e),
                    }
                }
                decide::LogTrust::AskOldest => {
                    oldest = Some(self.remote.oldest_activity().await?);
                }
            }
        }
    }

    /// The newest activity id logged more than the longest overlap window ago, read once per
    /// run; `None` when there is none or the log is not readable. Entries commit within that
    /// window (the same bound the pull's overlap relies on), so none with a smaller id can
    /// still appear.
    pub(super) async fn settled_activity(&self, run: &RunCache) -> Result<Option<i64>> {
        let mut cached = run.settled_activity.lock().await;
        if let Some(settled) = *cached {
            return Ok(settled);
        }
        let window = self
            .config
            .collections
            .iter()
            .map(|c| c.overlap_seconds)
            .max()
            .unwrap_or(0);
        let at = Utc::now() + self.remote.clock_skew() - chrono::Duration::seconds(window.into());
        let settled = match self.remote.settled_activity(at).await {
            Ok(settled) => settled,
            Err(Error::Remote(e)) if e.kind == RemoteErrorKind::Forbidden => None,
            Err(e) => return Err(e),
        };
        *cached = Some(settled);
        Ok(settled)
    }

    /// Whether the server logs the activity of `c`, read once per run for all collections;
    /// `None` when the token may not read its settings (the log itself is then the evidence).
    pub(super) async fn activity_logging(
        &self,
        collection: &str,
        run: &RunCache,
    ) -> Result<Option<bool>> {
        let mut cached = run.activity_logging.lock().await;
        if cached.is_none() {
            *cached = Some(match self.remote.activity_logging().await {
                Ok(logging) => logging,
                Err(Error::Remote(e)) if e.kind == RemoteErrorKind::Forbidden => HashMap::new(),
                Err(e) => return Err(e),
            });
        }
        Ok(cached.as_ref().and_then(|m| m.get(collection).copied()))
    }

    /// Removes local synced rows whose keys the server no longer has, or no longer shows
    /// through the collection's filter, or has archived. Page by page of local keys, each
    /// looked up by key in one request: no offsets to shift while the server changes.
    pub(super) async fn reconcile_keys(
        &self,
        c: &CollectionConfig,
        report: &mut CollectionReport,
    ) -> Result<()> {
        let page = c.page_size.max(1) as usize;
        let mut after: Option<Key> = None;
        loop {
            let keys: Vec<Key> = self
                .store
                .synced(c, after.as_ref(), page)
                .await?
                .into_iter()
                .map(|(key, _)| key)
                .collect();
            let Some(last) = keys.last() else {
                return Ok(());
            };
            after = Some(last.clone());
            let present = self.present_keys(c, &keys).await?;
            let gone: Vec<RowOp> = keys
                .iter()
                .filter(|k| !present.contains(*k))
                .map(|k| RowOp::Remove {
                    key: k.clone(),
                    guard: Guard::IfSynced,
                })
                .collect();
            if !gone.is_empty() {
                info!(collection = %c.name, removed = gone.len(), "rows the server no longer has");
            }
            let changes = Changes {
                ops: gone,
                ..Default::default()
            };
            report.deleted += self.store.apply(c, changes).await? as u64;
            if keys.len() < page {
                return Ok(());
            }
        }
    }

    /// Which of `keys` the server shows, through the collection's filter, unarchived.
    pub(super) async fn present_keys(
        &self,
        c: &CollectionConfig,
        keys: &[Key],
    ) -> Result<HashSet<Key>> {
        let (rows, _) = self.key_stamps(c, FilteredRows::Among(keys)).await?;
        Ok(rows.into_iter().map(|(key, _)| key).collect())
    }

    /// Keys and stamps of the server rows `which` covers through the collection's filter,
    /// in key order, archived rows left out; also how many rows the server returned.
    pub(crate) async fn key_stamps(
        &self,
        c: &CollectionConfig,
        which: FilteredRows<'_>,
    ) -> Result<(Vec<(Key, Option<Stamp>)>, usize)> {
        let archive = archive_of(c);
        let mut fields = ident_fields(c);
        fields.extend(archive.map(|(field, _)| field.to_owned()));
        let page = self.remote.filtered_rows(c, which, &fields).await?;
        let rows = page
            .rows
            .iter()
            .filter(|raw| !plan::is_archived(raw, archive))
            .filter_map(|raw| {
                let key = raw
                    .get(&c.primary_key)
                    .and_then(crate::model::key_from_json)?;
                let stamp = version_of(c, raw);
                Some((key, stamp))
            })
            .collect();
        Ok((rows, page.rows.len()))
    }
}

/// An activity id read from the log, `None` when the token may not read it.
fn readable(read: Result<Option<i64>>) -> Result<Option<i64>> {
    match read {
        Err(Error::Remote(e)) if e.kind == RemoteErrorKind::Forbidden => Ok(None),
        other => other,
    }
}
