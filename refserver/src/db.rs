//! The database: all tables plus the activity log, and item writes with Directus's rules.
//!
//! Owns: creating collections and fields, turning create/update payloads into rows the way
//! Directus's `ItemsService` and `PayloadService` do on SQLite (unknown fields dropped, `uuid`,
//! `date-created` and `date-updated` specials, defaults, no type checks: values are stored as
//! SQLite's type affinity makes them), all-or-nothing batches and one activity row per written
//! item. Must not: parse HTTP requests, check tokens or read the clock (callers pass the
//! stamp).

use crate::cell::{self, Cell};
use crate::error::Error;
use crate::schema::{Collection, CollectionDef, Field, FieldDef, FieldType};
use crate::store::{Key, Table, Txn};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// Name of the activity collection.
pub(crate) const ACTIVITY: &str = "directus_activity";

/// Who made a change, as recorded in activity rows.
#[derive(Debug, Clone, Default)]
pub(crate) struct Actor {
    pub user: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub origin: Option<String>,
}

/// The context of one write request: its single stamp and its author.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WriteCtx<'a> {
    /// Epoch milliseconds for `date-created` / `date-updated` and activity rows.
    pub stamp: i64,
    pub actor: &'a Actor,
}

#[derive(Debug, Clone, Copy)]
enum Action {
    Create,
    Update,
    Delete,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Delete => "delete",
        }
    }
}

/// All collections and the activity log.
#[derive(Debug)]
pub(crate) struct Db {
    tables: BTreeMap<String, Table>,
    activity: Table,
    /// Numbers field meta rows like `directus_fields.id`.
    next_meta_id: u64,
    /// `directus_revisions`: the item as it stood after each create or update, oldest first.
    revisions: Vec<Revision>,
    /// `directus_relations`: many-to-one relations, as created.
    relations: Vec<Value>,
    /// Each write through the item services, for realtime subscribers.
    events: tokio::sync::broadcast::Sender<ItemEvent>,
}

/// A write through the item services, as realtime subscriptions announce it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ItemEvent {
    pub collection: String,
    /// `create`, `update` or `delete`.
    pub event: &'static str,
    pub keys: Vec<Value>,
}

/// One saved version of an item, as a `directus_revisions` row holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct Revision {
    pub id: i64,
    /// The activity row that saved it.
    pub activity: i64,
    pub collection: String,
    pub item: String,
    /// The whole item after the write, rendered as the API returns it (`null` when the
    /// write named a missing item).
    pub data: Value,
}

impl Db {
    pub(crate) fn new() -> Self {
        let mut next_meta_id = 0;
        let activity = Collection::compile(&activity_def(), &mut next_meta_id)
            .expect("the activity collection definition is valid");
        Db {
            tables: BTreeMap::new(),
            activity: Table::new(activity),
            next_meta_id,
            revisions: Vec::new(),
            relations: Vec::new(),
            events: tokio::sync::broadcast::channel(1024).0,
        }
    }

    /// Writes through the item services from now on.
    pub(crate) fn subscribe(&self) -> tokio::sync::broadcast::Receiver<ItemEvent> {
        self.events.subscribe()
    }

    /// Looks a collection up; `directus_activity` resolves to the activity log.
    pub(crate) fn table(&self, collection: &str) -> Result<&Table, Error> {
        if collection == ACTIVITY {
            return Ok(&self.activity);
        }
        self.tables
            .get(collection)
            .ok_or_else(|| Error::unknown_collection(collection))
    }

    fn table_mut(&mut self, collection: &str) -> Result<&mut Table, Error> {
        self.tables
            .get_mut(collection)
            .ok_or_else(|| Error::unknown_collection(collection))
    }

    /// User collections in name order.
    pub(crate) fn collections(&self) -> impl Iterator<Item = &Collection> {
        self.tables.values().map(|t| &t.schema)
    }

    pub(crate) fn create_collection(&mut self, def: &CollectionDef) -> Result<&Collection, Error> {
        if def.collection.starts_with("directus_") {
            return Err(Error::InvalidPayload(
                "Collections can't start with \"directus_\"".into(),
            ));
        }
        if self.tables.contains_key(&def.collection) {
            return Err(Error::InvalidPayload(format!(
                "Collection \"{}\" already exists",
                def.collection
            )));
        }
        let schema = Collection::compile(def, &mut self.next_meta_id)?;
        let name = schema.name.clone();
        let table = self
            .tables
            .entry(name)
            .or_insert_with(|| Table::new(schema));
        Ok(&table.schema)
    }

    /// Records a many-to-one relation (the body of `POST /relations`): the field must exist,
    /// and the related collection too unless it is a system collection. No foreign key is
    /// enforced.
    pub(crate) fn create_relation(&mut self, body: &Map<String, Value>) -> Result<Value, Error> {
        let text = |name: &str| body.get(name).and_then(Value::as_str).unwrap_or_default();
        let (collection, field, related) = (
            text("collection"),
            text("field"),
            text("related_collection"),
        );
        let table = self.table(collection)?;
        if table.schema.field_index(field).is_none() {
            return Err(Error::InvalidPayload(format!(
                "Field \"{field}\" does not exist in collection \"{collection}\""
            )));
        }
        if !related.starts_with("directus_") {
            self.table(related)?;
        }
        let relation = json!({
            "collection": collection,
            "field": field,
            "related_collection": related,
            "schema": {"table": collection, "column": field, "foreign_key_table": related,
                "on_delete": "SET NULL"},
            "meta": body.get("meta").cloned().unwrap_or(Value::Null),
        });
        self.relations.push(relation.clone());
        Ok(relation)
    }

    /// Every relation, as `GET /relations` lists them.
    pub(crate) fn relations(&self) -> &[Value] {
        &self.relations
    }

    pub(crate) fn create_field(
        &mut self,
        collection: &str,
        def: &FieldDef,
    ) -> Result<Value, Error> {
        self.next_meta_id += 1;
        let meta_id = self.next_meta_id;
        let table = self.table_mut(collection)?;
        if table.schema.field_index(&def.field).is_some() {
            return Err(Error::InvalidPayload(format!(
                "Field \"{}\" already exists in collection \"{collection}\"",
                def.field
            )));
        }
        let field = Field::compile(def, meta_id)?;
        if field.pk {
            return Err(Error::InvalidPayload(
                "A collection can only have one primary key".into(),
            ));
        }
        // Existing rows take the column default, as ALTER TABLE ... ADD COLUMN does.
        let fill = cell::from_payload(field.kind, &field.default).unwrap_or(Cell::Null);
        if fill.is_null() && !field.nullable && table.len() > 0 {
            return Err(Error::NotNullViolation {
                collection: collection.into(),
                field: field.name.clone(),
            });
        }
        let sort = table.schema.fields.len() + 1;
        let description = field.describe(collection, sort);
        table.add_field(field, fill);
        Ok(description)
    }

    /// Replaces collection meta members (e.g. `accountability`).
    pub(crate) fn update_collection_meta(
        &mut self,
        collection: &str,
        meta: &Map<String, Value>,
    ) -> Result<&Collection, Error> {
        let table = self.tables.get_mut(collection).ok_or(Error::Forbidden)?;
        for (k, v) in meta {
            if k == "accountability" {
                table.schema.accountability = v.as_str().map(str::to_string);
            }
            table.schema.meta.insert(k.clone(), v.clone());
        }
        Ok(&table.schema)
    }

    /// Creates items in one transaction; returns their keys in request order.
    pub(crate) fn create_items(
        &mut self,
        collection: &str,
        payloads: &[Value],
        ctx: WriteCtx<'_>,
    ) -> Result<Vec<Key>, Error> {
        let table = self.table_mut(collection)?;
        let keys = Txn::run(table, |txn| {
            let mut keys = Vec::with_capacity(payloads.len());
            for payload in payloads {
                let (key, cells) = new_row(txn.table, as_object(payload)?, ctx.stamp)?;
                txn.insert(key.clone(), cells)?;
                keys.push(key);
            }
            Ok(keys)
        })?;
        self.log(collection, Action::Create, &keys, ctx);
        Ok(keys)
    }

    /// Applies one patch to every key (Directus `updateMany`): missing keys are skipped but
    /// still get an activity row, as for an admin in Directus.
    pub(crate) fn update_items(
        &mut self,
        collection: &str,
        keys: &[Key],
        patch: &Value,
        ctx: WriteCtx<'_>,
    ) -> Result<(), Error> {
        let patch = as_object(patch)?;
        let mut keys = keys.to_vec();
        keys.sort();
        let table = self.table_mut(collection)?;
        Txn::run(table, |txn| {
            for key in &keys {
                update_one(txn, key, patch, ctx.stamp)?;
            }
            Ok(())
        })?;
        self.log(collection, Action::Update, &keys, ctx);
        Ok(())
    }

    /// Applies a different patch per item (Directus `updateBatch`); each item carries its key.
    pub(crate) fn update_batch(
        &mut self,
        collection: &str,
        items: &[Value],
        ctx: WriteCtx<'_>,
    ) -> Result<Vec<Key>, Error> {
        let table = self.table_mut(collection)?;
        let keys = Txn::run(table, |txn| {
            let pk = txn.table.schema.pk_field().clone();
            let mut keys = Vec::with_capacity(items.len());
            for item in items {
                let item = as_object(item)?;
                let raw = item.get(&pk.name).filter(|v| truthy(v)).ok_or_else(|| {
                    Error::InvalidPayload("Item in update misses primary key".into())
                })?;
                let key = Key::from_json(pk.kind, raw).ok_or(Error::Forbidden)?;
                update_one(txn, &key, item, ctx.stamp)?;
                keys.push(key);
            }
            Ok(keys)
        })?;
        self.log(collection, Action::Update, &keys, ctx);
        Ok(keys)
    }

    /// Deletes keys in one transaction; every key gets an activity row, present or not.
    pub(crate) fn delete_items(
        &mut self,
        collection: &str,
        keys: &[Key],
        ctx: WriteCtx<'_>,
    ) -> Result<(), Error> {
        let table = self.table_mut(collection)?;
        Txn::run(table, |txn| {
            for key in keys {
                txn.remove(key);
            }
            Ok(())
        })?;
        self.log(collection, Action::Delete, keys, ctx);
        Ok(())
    }

    /// Deletes a row the way a direct database statement would: no activity.
    pub(crate) fn raw_delete(&mut self, collection: &str, key: &Key) -> Result<bool, Error> {
        Ok(self.table_mut(collection)?.remove(key).is_some())
    }

    /// Every saved revision, oldest first.
    pub(crate) fn revisions(&self) -> &[Revision] {
        &self.revisions
    }

    /// An item as the API renders it, if it exists.
    fn item_json(&self, collection: &str, key: &Key) -> Option<Value> {
        let table = self.tables.get(collection)?;
        let row = table.get(key)?;
        Some(crate::query::render_row(&table.schema, None, row))
    }

    /// Removes activity entries up to and including `id`, as retention does; returns how many.
    pub(crate) fn purge_activity(&mut self, through: i64) -> usize {
        let doomed: Vec<Key> = self
            .activity
            .iter()
            .map(|(k, _)| k.clone())
            .filter(|k| matches!(k, Key::Int(id) if *id <= through))
            .collect();
        doomed
            .iter()
            .filter(|k| self.activity.remove(k).is_some())
            .count()
    }

    /// Writes one activity row per key unless the collection's accountability is off. With
    /// accountability `all`, creates and updates also save a revision, which the activity row
    /// lists in `revisions`.
    fn log(&mut self, collection: &str, action: Action, keys: &[Key], ctx: WriteCtx<'_>) {
        // Realtime announces every write of the item services, logged or not.
        let _ = self.events.send(ItemEvent {
            collection: collection.to_owned(),
            event: action.as_str(),
            keys: keys.iter().map(Key::to_json).collect(),
        });
        let Some(accountability) = self
            .tables
            .get(collection)
            .and_then(|t| t.schema.accountability.clone())
        else {
            return;
        };
        let revised = accountability == "all" && !matches!(action, Action::Delete);
        for key in keys {
            let id = self.activity.next_auto_key();
            // Directus saves a revision for a patched missing item too; it holds no item.
            let saved = revised
                .then(|| self.item_json(collection, key).unwrap_or(Value::Null))
                .map(|data| {
                    let revision = Revision {
                        id: i64::try_from(self.revisions.len()).unwrap_or(i64::MAX) + 1,
                        activity: id,
                        collection: collection.to_owned(),
                        item: key.as_string(),
                        data,
                    };
                    let id = revision.id;
                    self.revisions.push(revision);
                    id
                });
            let revisions = serde_json::json!(saved.into_iter().collect::<Vec<_>>());
            let text = |v: &Option<String>| v.clone().map_or(Cell::Null, Cell::Text);
            let cells = vec![
                Cell::Int(id),
                Cell::Text(action.as_str().into()),
                text(&ctx.actor.user),
                Cell::Time(ctx.stamp),
                text(&ctx.actor.ip),
                text(&ctx.actor.user_agent),
                Cell::Text(collection.into()),
                Cell::Text(key.as_string()),
                text(&ctx.actor.origin),
                Cell::Json(revisions),
            ];
            // Cannot clash: the id is fresh and no activity field is constrained.
            let _ = Txn::run(&mut self.activity, |txn| txn.insert(Key::Int(id), cells));
        }
    }
}

/// `directus_activity` as the server keeps it (field order is the column order).
fn activity_def() -> CollectionDef {
    CollectionDef::new(ACTIVITY)
        .field(FieldDef::integer_pk("id"))
        .field(FieldDef::new("action", FieldType::String).not_null())
        .field(FieldDef::new("user", FieldType::Uuid))
        .field(FieldDef::new("timestamp", FieldType::Timestamp).not_null())
        .field(FieldDef::new("ip", FieldType::String))
        .field(FieldDef::new("user_agent", FieldType::Text))
        .field(FieldDef::new("collection", FieldType::String).not_null())
        .field(FieldDef::new("item", FieldType::String).not_null())
        .field(FieldDef::new("origin", FieldType::String))
        // An alias in Directus (the revisions saved with the entry), held here as a list.
        .field(FieldDef::new("revisions", FieldType::Json))
}

fn as_object(v: &Value) -> Result<&Map<String, Value>, Error> {
    v.as_object()
        .ok_or_else(|| Error::InvalidPayload("Payload has to be an object".into()))
}

/// JavaScript truthiness, which Directus uses to decide whether a value is "missing".
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        _ => true,
    }
}

/// The cell stored for a payload value (see [`cell::stored`]). A primary key must be a valid
/// key of its type, or the request is forbidden (Directus's `validateKeys`).
fn cast(field: &Field, v: &Value) -> Result<Cell, Error> {
    if field.pk && !v.is_null() {
        return Key::from_json(field.kind, v)
            .map(|k| k.to_cell())
            .ok_or(Error::Forbidden);
    }
    cell::stored(field.kind, v).map_err(|message| Error::Internal(message.into()))
}

/// Builds a new row from a create payload. Unknown fields are dropped (as for an admin);
/// `uuid` fills an empty value, `date-created` always stamps, a `date-updated`-only field
/// keeps what the client sent, absent fields take their default.
fn new_row(
    table: &mut Table,
    payload: &Map<String, Value>,
    stamp: i64,
) -> Result<(Key, Vec<Cell>), Error> {
    let pk_field = table.schema.pk_field();
    let needs_auto =
        pk_field.auto_increment && payload.get(&pk_field.name).is_none_or(Value::is_null);
    let auto = needs_auto.then(|| table.next_auto_key());
    let table: &Table = table;
    let mut cells = Vec::with_capacity(table.schema.fields.len());
    for field in &table.schema.fields {
        let given = payload.get(&field.name);
        let cell = if field.has_special("date-created") {
            Cell::Time(stamp)
        } else if field.has_special("uuid") && !given.is_some_and(truthy) {
            Cell::Text(uuid::Uuid::new_v4().to_string())
        } else if let (true, Some(id)) = (field.pk, auto) {
            Cell::Int(id)
        } else if let Some(v) = given {
            cast(field, v)?
        } else {
            cell::from_payload(field.kind, &field.default).unwrap_or(Cell::Null)
        };
        cells.push(cell);
    }
    let pk = table.schema.pk;
    let key = Key::from_cell(&cells[pk]).ok_or_else(|| Error::NotNullViolation {
        collection: table.schema.name.clone(),
        field: table.schema.fields[pk].name.clone(),
    })?;
    Ok((key, cells))
}

/// Applies a patch to one stored row. The primary key is never changed, `date-updated`
/// always stamps (so even an empty patch changes the row), a `date-created`-only field takes
/// what the client sent. A missing row is skipped.
fn update_one(
    txn: &mut Txn<'_>,
    key: &Key,
    patch: &Map<String, Value>,
    stamp: i64,
) -> Result<(), Error> {
    let Some(row) = txn.table.get(key) else {
        return Ok(());
    };
    let mut cells = row.cells.clone();
    for (i, field) in txn.table.schema.fields.iter().enumerate() {
        if field.pk {
            continue;
        }
        if field.has_special("date-updated") {
            cells[i] = Cell::Time(stamp);
        } else if let Some(v) = patch.get(&field.name) {
            cells[i] = cast(field, v)?;
        }
    }
    txn.replace(key, cells)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn db() -> Db {
        let mut db = Db::new();
        let def = CollectionDef::new("notes")
            .field(FieldDef::uuid_pk("id"))
            .field(FieldDef::new("title", FieldType::String))
            .field(FieldDef::new("date_created", FieldType::Timestamp).special(&["date-created"]))
            .field(FieldDef::new("date_updated", FieldType::Timestamp).special(&["date-updated"]))
            .field(FieldDef::sync_timestamp("last_modified"));
        db.create_collection(&def).unwrap();
        db
    }

    #[test]
    fn create_and_update_stamp_like_directus() {
        let mut db = db();
        let actor = Actor::default();
        let keys = db
            .create_items(
                "notes",
                &[json!({"title": "a", "date_created": "1999-01-01T00:00:00Z"})],
                WriteCtx {
                    stamp: 1000,
                    actor: &actor,
                },
            )
            .unwrap();
        let row = db
            .table("notes")
            .unwrap()
            .get(&keys[0])
            .unwrap()
            .cells
            .clone();
        assert_eq!(row[2], Cell::Time(1000));
        assert_eq!(row[3], Cell::Null);
        assert_eq!(row[4], Cell::Time(1000));
        db.update_items(
            "notes",
            &keys,
            &json!({}),
            WriteCtx {
                stamp: 2000,
                actor: &actor,
            },
        )
        .unwrap();
        let row = db
            .table("notes")
            .unwrap()
            .get(&keys[0])
            .unwrap()
            .cells
            .clone();
        assert_eq!(row[2], Cell::Time(1000));
        assert_eq!(row[3], Cell::Time(2000));
        assert_eq!(row[4], Cell::Time(2000));
        assert_eq!(db.table(ACTIVITY).unwrap().len(), 2);
    }

    #[test]
    fn failed_batch_leaves_nothing_behind() {
        let mut db = db();
        let actor = Actor::default();
        let ctx = WriteCtx {
            stamp: 1,
            actor: &actor,
        };
        let id = uuid::Uuid::new_v4().to_string();
        db.create_items("notes", &[json!({"id": id})], ctx).unwrap();
        let err = db.create_items("notes", &[json!({"title": "x"}), json!({"id": id})], ctx);
        assert!(matches!(err, Err(Error::RecordNotUnique { .. })));
        assert_eq!(db.table("notes").unwrap().len(), 1);
        assert_eq!(db.table(ACTIVITY).unwrap().len(), 1);
    }
}
