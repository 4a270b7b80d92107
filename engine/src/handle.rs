//! Local writes through Rust, with the same meaning as the plain-SQL contract.
//!
//! Owns the collection handle applications use instead of SQL. It validates values against
//! the configured types and leaves all bookkeeping to the store (and its triggers).

use crate::error::{Error, Result, UsageErrorKind};
use crate::model::{Key, LocalRow, Row};
use crate::ports::{LocalWrite, Remote, Store};
use crate::sync::Engine;
use schema::CollectionConfig;

/// A configured collection, for reading and writing its local table.
#[derive(Debug)]
pub struct Collection<'e, S, R> {
    engine: &'e Engine<S, R>,
    config: &'e CollectionConfig,
}

impl<S: Store, R: Remote> Engine<S, R> {
    /// The handle of a configured collection.
    pub fn collection(&self, name: &str) -> Result<Collection<'_, S, R>> {
        Ok(Collection {
            engine: self,
            config: self.collection_config(name)?,
        })
    }
}

impl<S: Store, R: Remote> Collection<'_, S, R> {
    /// Inserts a row (status `created`). The key is taken from `data` when present,
    /// otherwise a new UUID is generated (uuid keys), or a negative temporary key (keys the
    /// server assigns; [`Engine::server_key`](crate::Engine::server_key) tells what it
    /// became). Returns the key.
    pub async fn insert(&self, mut data: Row) -> Result<Key> {
        let c = self.config;
        let key = match data.remove(&c.primary_key) {
            Some(value) => crate::model::key_from_json(&value).ok_or_else(|| {
                Error::usage(
                    UsageErrorKind::InvalidValue,
                    format!(
                        "{}: the primary key {} must be a string or integer",
                        c.name, c.primary_key
                    ),
                )
            })?,
            None if c.key_type == schema::KeyType::Uuid => uuid::Uuid::new_v4().to_string(),
            // A temporary key, as the table's default gives plain-SQL inserts.
            None if c.key_type == schema::KeyType::AutoIncrement => {
                let random = (uuid::Uuid::new_v4().as_u128() % 9_007_199_254_740_990) as i64;
                (-1 - random).to_string()
            }
            None => {
                return Err(Error::usage(
                    UsageErrorKind::InvalidValue,
                    format!(
                        "{}: rows need a {} (only uuid keys are generated)",
                        c.name, c.primary_key
                    ),
                ));
            }
        };
        self.check(&data)?;
        let write = LocalWrite::Insert {
            key: key.clone(),
            data,
        };
        self.write(write).await?;
        Ok(key)
    }

    /// Changes the given fields of a row (status `updated`). Returns whether it was written:
    /// `false` for an unknown key or a row already deleted locally.
    pub async fn update(&self, key: &str, patch: Row) -> Result<bool> {
        self.check(&patch)?;
        let write = LocalWrite::Update {
            key: key.to_owned(),
            data: patch,
        };
        self.write(write).await
    }

    /// Marks a row deleted (status `deleted`); the engine pushes the delete, then removes it.
    /// Returns `false` for an unknown key or a row already deleted locally.
    pub async fn delete(&self, key: &str) -> Result<bool> {
        let write = LocalWrite::Delete {
            key: key.to_owned(),
        };
        self.write(write).await
    }

    /// Writes through the store and tells the engine's listeners.
    async fn write(&self, write: LocalWrite) -> Result<bool> {
        let written = self.engine.store().write(self.config, write).await?;
        if written {
            self.engine.wrote(&self.config.name);
        }
        Ok(written)
    }

    /// The local row, with its sync state.
    pub async fn get(&self, key: &str) -> Result<Option<LocalRow>> {
        Ok(self
            .engine
            .store()
            .rows(self.config, &[key.to_owned()])
            .await?
            .pop())
    }

    fn check(&self, data: &Row) -> Result<()> {
        check_fields(self.config, data)
    }
}

/// Whether `data` holds only configured fields with values of their types.
pub(crate) fn check_fields(c: &CollectionConfig, data: &Row) -> Result<()> {
    for (name, value) in data {
        let field = c.field(name).ok_or_else(|| {
            Error::usage(
                UsageErrorKind::UnknownField,
                format!("{}: {name} is not a configured field", c.name),
            )
        })?;
        crate::decode::check_value(field.kind, value).map_err(|m| {
            Error::usage(
                UsageErrorKind::InvalidValue,
                format!("{}.{name}: {m}", c.name),
            )
        })?;
    }
    Ok(())
}
