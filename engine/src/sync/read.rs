//! Reading server rows by key, for the phases that must see the current server version.
//!
//! A row that does not fit the configuration is returned as such, never as an error: the
//! caller records it and goes on with the other rows.

use super::*;

/// A server row that does not fit the configured types, as far as it could be read.
#[derive(Debug, Clone)]
pub(crate) struct InvalidRow {
    pub stamp: Option<Stamp>,
    /// The fields as the server sent them, unchecked.
    pub data: Row,
    pub error: RowError,
}

/// A server row read by key: one that fits, or one that does not.
pub(crate) type Fetched = Result<RemoteRow, InvalidRow>;

impl<S: Store, R: Remote> Engine<S, R> {
    /// The current server version of one row; `None` when it is gone (or archived).
    pub(super) async fn fetch_remote(
        &self,
        c: &CollectionConfig,
        key: &Key,
    ) -> Result<Option<Fetched>> {
        Ok(self
            .fetch_remotes(c, std::slice::from_ref(key))
            .await?
            .remove(key))
    }

    /// The current server versions of `keys`; gone (or archived) rows are left out.
    pub(crate) async fn fetch_remotes(
        &self,
        c: &CollectionConfig,
        keys: &[Key],
    ) -> Result<HashMap<Key, Fetched>> {
        let archive = archive_of(c);
        let mut out = HashMap::new();
        // Chunks of at most a page: the page size is what the server is known to allow.
        for chunk in keys.chunks(c.page_size.max(1) as usize) {
            let page = self.remote.rows_by_keys(c, chunk, &read_fields(c)).await?;
            for raw in &page.rows {
                if plan::is_archived(raw, archive) {
                    continue;
                }
                if let Some((key, fetched)) = fetched(c, raw) {
                    out.insert(key, fetched);
                }
            }
        }
        Ok(out)
    }

    /// The local rows among `keys`, by key.
    pub(super) async fn locals_by_key(
        &self,
        c: &CollectionConfig,
        keys: &[Key],
    ) -> Result<HashMap<Key, LocalRow>> {
        Ok(by_key(self.store.rows(c, keys).await?))
    }

    /// Records a server row that does not fit, once per server version, and counts it.
    pub(super) async fn record_invalid(
        &self,
        c: &CollectionConfig,
        key: &Key,
        invalid: &InvalidRow,
        report: &mut CollectionReport,
    ) -> Result<()> {
        warn!(collection = %c.name, %key, error = %invalid.error,
            "server row does not fit the configuration; the local change waits");
        report.quarantined += 1;
        let changes = Changes {
            records: vec![invalid_record(c, key, invalid.stamp, &invalid.error)],
            ..Default::default()
        };
        self.store.apply(c, changes).await.map(drop)
    }
}

/// Decodes a row read by key: `None` only when even its key is unreadable.
pub(super) fn fetched(c: &CollectionConfig, raw: &Value) -> Option<(Key, Fetched)> {
    match remote_row(c, raw) {
        Ok(row) => Some((row.key.clone(), Ok(row))),
        Err(error) => {
            let key = error.key.clone()?;
            let loose = remote_row_unchecked(c, raw).ok();
            let invalid = InvalidRow {
                stamp: loose.as_ref().map(|r| r.stamp),
                data: loose.map(|r| r.data).unwrap_or_default(),
                error,
            };
            Some((key, Err(invalid)))
        }
    }
}

/// The record of a server row that does not fit, at server version `stamp`.
pub(crate) fn invalid_record(
    c: &CollectionConfig,
    key: &Key,
    stamp: Option<Stamp>,
    error: &RowError,
) -> ConflictRecord {
    ConflictRecord {
        id: 0,
        collection: c.name.clone(),
        key: key.clone(),
        kind: ConflictKind::InvalidRemote,
        strategy: c.conflict.as_str().to_owned(),
        resolution: None,
        base: None,
        local: None,
        remote: None,
        remote_stamp: stamp,
        local_changed_at: None,
        message: Some(error.to_string()),
        fields: None,
        created_at: Utc::now(),
        resolved_at: None,
    }
}

/// Local rows by their keys.
pub(super) fn by_key(rows: Vec<LocalRow>) -> HashMap<Key, LocalRow> {
    rows.into_iter().map(|l| (l.key.clone(), l)).collect()
}
