//! Rows whose keys the server assigns (`key_type: auto_increment`).
//!
//! A row created locally carries a negative temporary key. It is created on the server
//! without a key and with its idempotency key (this replica's id and the temporary key) in
//! the collection's unique idempotency field; when the server's row is known, the local row,
//! the rows that refer to it and the engine's records move to the server's key in one
//! transaction ([`RowOp::Rekey`]). The server's row becomes known from the create's answer,
//! or, when that answer was lost, from the idempotency field: a retried create is refused as
//! not unique and the row is looked up, and the pull recognises this replica's rows. So a
//! create is made once, and never dropped because someone else used the same number.
//!
//! Owns the rounds of creates (parents in the same collection before their children) and the
//! adoption of rows found by their idempotency key. It must not decide conflicts.

use super::push::create_fields;
use super::*;

/// Whether `key` is a temporary key: server keys are positive.
pub(crate) fn is_temporary(key: &str) -> bool {
    key.starts_with('-')
}

/// The idempotency key of the create of temporary key `key`, unique across replicas.
fn idempotency_key(replica: &str, key: &Key) -> String {
    format!("{replica}:{key}")
}

/// The temporary key of a create made by `replica`, from a server row's idempotency key.
pub(super) fn created_here(replica: &str, c: &CollectionConfig, raw: &Value) -> Option<Key> {
    let field = c.idempotency_field.as_deref()?;
    let (from, key) = raw.get(field)?.as_str()?.split_once(':')?;
    (from == replica && is_temporary(key)).then(|| key.to_owned())
}

/// The columns, in every configured collection, that hold keys of `c`: they move with a key.
pub(super) fn referring_columns(config: &Config, c: &CollectionConfig) -> Vec<(String, String)> {
    config
        .collections
        .iter()
        .flat_map(|other| {
            other
                .fields
                .iter()
                .filter(|f| f.references.as_deref() == Some(c.name.as_str()))
                .map(|f| (other.table.clone(), f.name.clone()))
        })
        .collect()
}

impl<S: Store, R: Remote> Engine<S, R> {
    /// Creates rows with temporary keys, in rounds: a row whose parent in the same
    /// collection has no server key yet waits for the round after its parent's.
    pub(super) async fn push_server_key_creates(
        &self,
        c: &CollectionConfig,
        rows: Vec<LocalRow>,
        run: &RunCache,
        report: &mut CollectionReport,
    ) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let permissions = self.allowed(c, Action::Create, run).await?;
        let parents = self_references(c);
        let mut moved: HashMap<Key, Key> = HashMap::new();
        let mut waiting = rows;
        while !waiting.is_empty() {
            for row in &mut waiting {
                for field in &parents {
                    let to = row
                        .data
                        .get(*field)
                        .and_then(key_from_json)
                        .and_then(|k| moved.get(&k));
                    if let Some(to) = to {
                        row.data
                            .insert((*field).to_owned(), key_to_json(to, c.key_type));
                    }
                }
            }
            let (ready, rest): (Vec<LocalRow>, Vec<LocalRow>) =
                waiting.into_iter().partition(|r| {
                    parents.iter().all(|f| {
                        r.data
                            .get(*f)
                            .and_then(key_from_json)
                            .is_none_or(|k| !is_temporary(&k))
                    })
                });
            if ready.is_empty() {
                for r in &rest {
                    warn!(collection = %c.name, key = %r.key, "held back: its parent has not reached the server");
                }
                return Ok(());
            }
            let mut payloads = Vec::new();
            for r in ready {
                let Some(mut body) = create_fields(c, &r, permissions.as_ref()) else {
                    continue;
                };
                if let Some(field) = &c.idempotency_field {
                    body.insert(
                        field.clone(),
                        Value::from(idempotency_key(&self.replica, &r.key)),
                    );
                }
                payloads.push((r, Value::Object(body)));
            }
            let size = |(_, body): &(LocalRow, Value)| body.to_string().len();
            for batch in plan::batches_by_size(payloads, size, MAX_BODY_BYTES, MAX_CREATE_ROWS) {
                for (from, to) in self.create_batch(c, batch, run, report).await? {
                    moved.insert(from, to);
                }
            }
            waiting = rest;
        }
        Ok(())
    }

    /// Creates one batch; returns the keys that moved. A batch refused as not unique holds a
    /// create that landed before: those found are taken, the others sent again. Any other
    /// refusal of a batch sends its rows one by one, to find the row refused.
    async fn create_batch(
        &self,
        c: &CollectionConfig,
        batch: Vec<(LocalRow, Value)>,
        run: &RunCache,
        report: &mut CollectionReport,
    ) -> Result<Vec<(Key, Key)>> {
        let (locals, bodies): (Vec<LocalRow>, Vec<Value>) = batch.iter().cloned().unzip();
        let idem = batch_key(&locals);
        let error = match self
            .remote
            .create(&c.name, bodies, &read_fields(c), &idem)
            .await
        {
            Ok(created) => {
                return self.settle_created(c, &locals, created, report).await;
            }
            Err(Error::Remote(e)) => e,
            Err(e) => return Err(e),
        };
        if e_is_stop(&error) {
            return Err(Error::Remote(error));
        }
        let mut moved = Vec::new();
        let mut batch = batch;
        if error.kind == RemoteErrorKind::NotUnique && c.idempotency_field.is_some() {
            let (found, rest) = self.adopt_landed(c, locals).await?;
            batch.retain(|(l, _)| rest.iter().any(|r| r.key == l.key));
            if !found.is_empty() {
                // What was not found goes again; another refusal is then its own.
                moved.extend(found);
                if !batch.is_empty() {
                    moved.extend(Box::pin(self.create_batch(c, batch, run, report)).await?);
                }
                return Ok(moved);
            }
        }
        if batch.len() > 1 {
            if decide::create_failure(error.kind, batch.len())
                == decide::CreateFailure::AskPermissions
            {
                self.refusal(c, Action::Create, &[], error.clone(), run)
                    .await?;
            }
            for one in batch {
                moved.extend(Box::pin(self.create_batch(c, vec![one], run, report)).await?);
            }
            return Ok(moved);
        }
        let error = match decide::create_failure(error.kind, 1) {
            decide::CreateFailure::AskPermissions => {
                self.refusal(c, Action::Create, &[], error, run).await?
            }
            _ => error,
        };
        self.quarantine(c, &batch[0].0, error.to_string(), report)
            .await?;
        Ok(moved)
    }

    /// Moves the created rows to the keys the server gave them, and settles them.
    async fn settle_created(
        &self,
        c: &CollectionConfig,
        locals: &[LocalRow],
        created: Vec<Value>,
        report: &mut CollectionReport,
    ) -> Result<Vec<(Key, Key)>> {
        let keys = answered_keys(c, &self.replica, locals, &created)?;
        let references = referring_columns(&self.config, c);
        let mut ops = Vec::new();
        let mut moved_locals = Vec::new();
        for (local, to) in locals.iter().zip(&keys) {
            ops.push(RowOp::Rekey {
                from: local.key.clone(),
                to: to.clone(),
                references: references.clone(),
            });
            moved_locals.push(LocalRow {
                key: to.clone(),
                ..local.clone()
            });
        }
        ops.extend(super::push::settle_pushed(c, &moved_locals, &created)?);
        report.pushed += locals.len() as u64;
        self.store
            .apply(
                c,
                Changes {
                    ops,
                    ..Default::default()
                },
            )
            .await?;
        Ok(locals.iter().map(|l| l.key.clone()).zip(keys).collect())
    }

    /// Looks up, by their idempotency keys, rows of `locals` an earlier attempt created, and
    /// takes them: each moves to its server key with the server's version as its base, its
    /// change pending on top (a push that finds nothing to send settles it). Returns the
    /// keys that moved and the rows not found.
    pub(super) async fn adopt_landed(
        &self,
        c: &CollectionConfig,
        locals: Vec<LocalRow>,
    ) -> Result<(Vec<(Key, Key)>, Vec<LocalRow>)> {
        if c.idempotency_field.is_none() || locals.is_empty() {
            return Ok((Vec::new(), locals));
        }
        let ids: Vec<String> = locals
            .iter()
            .map(|l| idempotency_key(&self.replica, &l.key))
            .collect();
        let page = self
            .remote
            .rows_created_as(c, &ids, &read_fields(c))
            .await?;
        let mut found: HashMap<Key, &Value> = HashMap::new();
        for raw in &page.rows {
            if let Some(temporary) = created_here(&self.replica, c, raw) {
                found.insert(temporary, raw);
            }
        }
        let mut changes = Changes::default();
        let mut moved = Vec::new();
        let mut rest = Vec::new();
        for local in locals {
            match found
                .get(&local.key)
                .map(|raw| remote_row_unchecked(c, raw))
            {
                Some(Ok(server)) => {
                    info!(collection = %c.name, key = %local.key, server_key = %server.key,
                        "a create whose answer was lost had landed: taken");
                    changes
                        .ops
                        .extend(adoption(&self.config, c, &local.key, server.clone()));
                    moved.push((local.key, server.key));
                }
                _ => rest.push(local),
            }
        }
        self.store.apply(c, changes).await?;
        Ok((moved, rest))
    }
}

/// The operations that take a server row as the create of temporary key `from`: the key
/// moves, and the server's version becomes the row's base with its local change pending on
/// top (`Settle` without the change key never marks a row synced).
pub(super) fn adoption(
    config: &Config,
    c: &CollectionConfig,
    from: &Key,
    server: RemoteRow,
) -> Vec<RowOp> {
    vec![
        RowOp::Rekey {
            from: from.clone(),
            to: server.key.clone(),
            references: referring_columns(config, c),
        },
        RowOp::Settle {
            key: server.key,
            change_key: None,
            stamp: server.stamp,
            data: Some(server.data),
        },
    ]
}

/// The server key of each of `locals`, from a create's answer: by idempotency key, or, without
/// that field, by position (Directus answers in key order, and assigns rising keys in the
/// order rows are sent).
fn answered_keys(
    c: &CollectionConfig,
    replica: &str,
    locals: &[LocalRow],
    created: &[Value],
) -> Result<Vec<Key>> {
    let key_of = |raw: &Value| raw.get(&c.primary_key).and_then(key_from_json);
    let keys: Option<Vec<Key>> = match &c.idempotency_field {
        Some(_) => {
            let by_temporary: HashMap<Key, Key> = created
                .iter()
                .filter_map(|raw| Some((created_here(replica, c, raw)?, key_of(raw)?)))
                .collect();
            locals
                .iter()
                .map(|l| by_temporary.get(&l.key).cloned())
                .collect()
        }
        None => {
            let mut keys: Vec<(i64, Key)> = created
                .iter()
                .filter_map(key_of)
                .filter_map(|k| Some((k.parse().ok()?, k)))
                .collect();
            keys.sort();
            (keys.len() == locals.len()).then(|| keys.into_iter().map(|(_, k)| k).collect())
        }
    };
    keys.ok_or_else(|| {
        protocol(format!(
            "the create of {} rows of {} was answered without them",
            locals.len(),
            c.name
        ))
    })
}

fn e_is_stop(e: &RemoteError) -> bool {
    decide::create_failure(e.kind, 1) == decide::CreateFailure::Stop
}
