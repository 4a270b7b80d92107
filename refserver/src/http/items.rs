//! `/items/:collection` routes, shaped like Directus's items controller.
//!
//! Owns: the order of checks per route (query, collection, access, key), the batch body
//! rules of `validateBatch`, reading written rows back with the request's query (a 403 there
//! turns into 204, as in Directus) and the response envelopes. Must not: implement write or
//! query semantics itself (see `db` and `query`).

use super::{JsonBody, Params, RequestCtx};
use crate::db::{Db, WriteCtx};
use crate::error::Error;
use crate::query::{self, Plan, RawQuery};
use crate::server::Server;
use crate::store::{Key, Table};
use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use std::sync::Arc;

type Reply = Result<Response, Error>;

pub(super) fn url_query(s: &Server, params: &[(String, String)]) -> Result<RawQuery, Error> {
    RawQuery::from_params(params, s.options().query_limit_max, s.now_ms())
}

/// The table behind an items route, after Directus's checks: system collections are
/// forbidden, unknown ones too, and the public role may do nothing (it is told the collection
/// is not there, for reads and writes alike).
fn item_table<'a>(db: &'a Db, collection: &str, ctx: &RequestCtx) -> Result<&'a Table, Error> {
    if collection.starts_with("directus_") {
        return Err(Error::Forbidden);
    }
    let table = db.table(collection)?;
    if ctx.acc.is_admin() {
        Ok(table)
    } else {
        Err(Error::unknown_collection(collection))
    }
}

/// The admin may do everything but what a test revoked (see [`Server::revoke`]).
fn permitted(s: &Server, ctx: &RequestCtx, collection: &str, action: &str) -> Result<(), Error> {
    if ctx.acc.is_admin() && !s.allows(collection, action) {
        return Err(Error::Forbidden);
    }
    Ok(())
}

fn path_key(table: &Table, raw: &str) -> Result<Key, Error> {
    Key::parse(table.schema.pk_field().kind, raw).ok_or(Error::Forbidden)
}

/// `{"meta":{...}, "data":[...]}` for a list query.
pub(super) fn page_body(table: &Table, q: &RawQuery) -> Result<Value, Error> {
    let plan = Plan::compile(&table.schema, q)?;
    let page = query::execute(table, &plan);
    let data: Vec<Value> = page
        .rows
        .iter()
        .map(|r| query::render_row(&table.schema, plan.select.as_deref(), r))
        .collect();
    let mut body = Map::new();
    if !q.meta.is_empty() {
        let mut meta = Map::new();
        for m in &q.meta {
            let count = if m == "total_count" {
                page.total_count
            } else {
                page.filter_count
            };
            meta.insert(m.clone(), json!(count));
        }
        body.insert("meta".into(), Value::Object(meta));
    }
    body.insert("data".into(), Value::Array(data));
    Ok(Value::Object(body))
}

/// Directus's `readMany` / `readOne`: the request's query narrowed to `keys`, its limit
/// defaulting to the number of keys.
pub(super) fn read_keys(table: &Table, q: &RawQuery, keys: &[Key]) -> Result<Vec<Value>, Error> {
    let mut q = q.clone();
    if !keys.is_empty() && q.limit.is_none_or(|l| l == 0) {
        q.limit = Some(keys.len() as i64);
    }
    let mut plan = Plan::compile(&table.schema, &q)?;
    plan.restrict_to_keys(table.schema.pk, keys);
    let page = query::execute(table, &plan);
    Ok(page
        .rows
        .iter()
        .map(|r| query::render_row(&table.schema, plan.select.as_deref(), r))
        .collect())
}

/// After a write, a 403 while reading the result back means "no content", not failure.
fn read_back(table: &Table, q: &RawQuery, keys: &[Key]) -> Result<Option<Vec<Value>>, Error> {
    match read_keys(table, q, keys) {
        Ok(rows) => Ok(Some(rows)),
        Err(e) if e.status() == StatusCode::FORBIDDEN => Ok(None),
        Err(e) => Err(e),
    }
}

fn data(v: Value) -> Response {
    Json(json!({ "data": v })).into_response()
}

fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

fn one_row(rows: Option<Vec<Value>>) -> Response {
    match rows.and_then(|r| r.into_iter().next()) {
        Some(row) => data(row),
        None => no_content(),
    }
}

fn many_rows(rows: Option<Vec<Value>>) -> Response {
    rows.map_or_else(no_content, |r| data(Value::Array(r)))
}

pub(super) async fn list(
    State(s): State<Arc<Server>>,
    Extension(ctx): Extension<RequestCtx>,
    Path(collection): Path<String>,
    Params(params): Params,
) -> Reply {
    permitted(&s, &ctx, &collection, "read")?;
    let q = url_query(&s, &params)?;
    let body = s.with_db(|db| page_body(item_table(db, &collection, &ctx)?, &q))?;
    Ok(Json(body).into_response())
}

pub(super) async fn read_one(
    State(s): State<Arc<Server>>,
    Extension(ctx): Extension<RequestCtx>,
    Path((collection, pk)): Path<(String, String)>,
    Params(params): Params,
) -> Reply {
    permitted(&s, &ctx, &collection, "read")?;
    let q = url_query(&s, &params)?;
    s.with_db(|db| {
        let table = item_table(db, &collection, &ctx)?;
        let key = path_key(table, &pk)?;
        let row = read_keys(table, &q, &[key])?
            .into_iter()
            .next()
            .ok_or(Error::Forbidden)?;
        Ok(data(row))
    })
}

pub(super) async fn create(
    State(s): State<Arc<Server>>,
    Extension(ctx): Extension<RequestCtx>,
    Path(collection): Path<String>,
    Params(params): Params,
    JsonBody(body): JsonBody,
) -> Reply {
    permitted(&s, &ctx, &collection, "create")?;
    let q = url_query(&s, &params)?;
    let write = WriteCtx {
        stamp: s.stamp(ctx.backdate),
        actor: &ctx.actor,
    };
    s.with_db(|db| {
        item_table(db, &collection, &ctx)?;
        let (payloads, many) = match body.unwrap_or_else(|| json!({})) {
            Value::Array(items) => (items, true),
            one => (vec![one], false),
        };
        let keys = db.create_items(&collection, &payloads, write)?;
        let rows = read_back(db.table(&collection)?, &q, &keys)?;
        Ok(if many { many_rows(rows) } else { one_row(rows) })
    })
}

pub(super) async fn update_one(
    State(s): State<Arc<Server>>,
    Extension(ctx): Extension<RequestCtx>,
    Path((collection, pk)): Path<(String, String)>,
    Params(params): Params,
    JsonBody(body): JsonBody,
) -> Reply {
    permitted(&s, &ctx, &collection, "update")?;
    let q = url_query(&s, &params)?;
    let write = WriteCtx {
        stamp: s.stamp(ctx.backdate),
        actor: &ctx.actor,
    };
    s.with_db(|db| {
        let key = path_key(item_table(db, &collection, &ctx)?, &pk)?;
        let patch = body.unwrap_or_else(|| json!({}));
        db.update_items(&collection, std::slice::from_ref(&key), &patch, write)?;
        // An admin PATCH of a missing item writes nothing, logs the update, and the read-back
        // finds nothing: Directus answers 204.
        Ok(one_row(read_back(db.table(&collection)?, &q, &[key])?))
    })
}

pub(super) async fn update_many(
    State(s): State<Arc<Server>>,
    Extension(ctx): Extension<RequestCtx>,
    Path(collection): Path<String>,
    Params(params): Params,
    JsonBody(body): JsonBody,
) -> Reply {
    permitted(&s, &ctx, &collection, "update")?;
    let q = url_query(&s, &params)?;
    let limit_max = s.options().query_limit_max;
    let now = s.now_ms();
    let write = WriteCtx {
        stamp: s.stamp(ctx.backdate),
        actor: &ctx.actor,
    };
    s.with_db(|db| {
        let table = item_table(db, &collection, &ctx)?;
        let keys = match body.unwrap_or_else(|| json!({})) {
            Value::Array(items) => db.update_batch(&collection, &items, write)?,
            body => {
                let batch = Batch::parse(&body, true)?;
                let keys = batch.keys(table, limit_max, now)?;
                if !keys.is_empty() {
                    db.update_items(
                        &collection,
                        &keys,
                        batch.data.unwrap_or(&Value::Null),
                        write,
                    )?;
                }
                keys
            }
        };
        Ok(many_rows(read_back(db.table(&collection)?, &q, &keys)?))
    })
}

pub(super) async fn delete_one(
    State(s): State<Arc<Server>>,
    Extension(ctx): Extension<RequestCtx>,
    Path((collection, pk)): Path<(String, String)>,
) -> Reply {
    permitted(&s, &ctx, &collection, "delete")?;
    let write = WriteCtx {
        stamp: s.stamp(ctx.backdate),
        actor: &ctx.actor,
    };
    s.with_db(|db| {
        let key = path_key(item_table(db, &collection, &ctx)?, &pk)?;
        // As for an admin in Directus: no existence check, and the delete is logged anyway.
        db.delete_items(&collection, &[key], write)?;
        Ok(no_content())
    })
}

pub(super) async fn delete_many(
    State(s): State<Arc<Server>>,
    Extension(ctx): Extension<RequestCtx>,
    Path(collection): Path<String>,
    JsonBody(body): JsonBody,
) -> Reply {
    permitted(&s, &ctx, &collection, "delete")?;
    let limit_max = s.options().query_limit_max;
    let now = s.now_ms();
    let write = WriteCtx {
        stamp: s.stamp(ctx.backdate),
        actor: &ctx.actor,
    };
    s.with_db(|db| {
        let table = item_table(db, &collection, &ctx)?;
        let keys = match body.unwrap_or_else(|| json!({})) {
            Value::Array(items) => parse_keys(table, &items)?,
            body => Batch::parse(&body, false)?.keys(table, limit_max, now)?,
        };
        if !keys.is_empty() {
            db.delete_items(&collection, &keys, write)?;
        }
        Ok(no_content())
    })
}

fn parse_keys(table: &Table, items: &[Value]) -> Result<Vec<Key>, Error> {
    let kind = table.schema.pk_field().kind;
    items
        .iter()
        .map(|v| Key::from_json(kind, v).ok_or(Error::Forbidden))
        .collect()
}

/// A `{"keys":[...]}` or `{"query":{...}}` body (plus `data` for updates), checked like
/// Directus's `validateBatch` (Joi messages).
struct Batch<'a> {
    keys: Option<&'a Vec<Value>>,
    query: Option<&'a Value>,
    data: Option<&'a Value>,
}

impl<'a> Batch<'a> {
    fn parse(body: &'a Value, update: bool) -> Result<Self, Error> {
        let invalid = |reason: &str| Err(Error::InvalidPayload(reason.into()));
        let Value::Object(map) = body else {
            return invalid("\"value\" must be of type object");
        };
        let keys = match map.get("keys") {
            None => None,
            Some(Value::Array(items)) => {
                if let Some(i) = items.iter().position(|k| !(k.is_string() || k.is_number())) {
                    return invalid(&format!("\"keys[{i}]\" must be one of [string, number]"));
                }
                Some(items)
            }
            Some(_) => return invalid("\"keys\" must be an array"),
        };
        let query = map.get("query");
        if query.is_some_and(|q| !q.is_object()) {
            return invalid("\"query\" must be of type object");
        }
        let data = map.get("data");
        if update {
            match data {
                None => return invalid("\"data\" is required"),
                Some(d) if !d.is_object() => return invalid("\"data\" must be of type object"),
                _ => {}
            }
        }
        let allowed: &[&str] = if update {
            &["keys", "query", "data"]
        } else {
            &["keys", "query"]
        };
        if let Some(extra) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
            return invalid(&format!("\"{extra}\" is not allowed"));
        }
        match (keys.is_some(), query.is_some()) {
            (false, false) => invalid("\"value\" must contain at least one of [query, keys]"),
            (true, true) => {
                invalid("\"value\" contains a conflict between exclusive peers [query, keys]")
            }
            _ => Ok(Batch { keys, query, data }),
        }
    }

    /// The keys named, or matched by the query (at most its limit: 100 unless it says).
    fn keys(&self, table: &Table, limit_max: Option<u32>, now_ms: i64) -> Result<Vec<Key>, Error> {
        if let Some(keys) = self.keys {
            return parse_keys(table, keys);
        }
        let raw = RawQuery::from_body(self.query.unwrap_or(&Value::Null), limit_max, now_ms)?;
        let mut plan = Plan::compile(&table.schema, &raw)?;
        plan.select = Some(vec![table.schema.pk]);
        plan.total_count = false;
        plan.filter_count = false;
        let page = query::execute(table, &plan);
        Ok(page
            .rows
            .iter()
            .filter_map(|r| Key::from_cell(&r.cells[table.schema.pk]))
            .collect())
    }
}
