//! Item queries: `fields`, `filter`, `sort`, `limit`, `offset`, `page`, `meta`.
//!
//! Owns: the query as sanitised from a request ([`RawQuery`]) and as checked against a
//! collection ([`Plan`]): unknown fields in `fields`, `filter` or `sort` are 403 like
//! Directus's path validation, then operators are checked per field type (400). Reading the
//! parameters lives in `params`, filters in `filter`, running a plan in `exec`. Semantics
//! follow Directus on SQLite: no primary-key tie-breaker is added to `sort` (ties come back
//! in insertion order), NULL sorts first, `LIKE` operators ignore ASCII case, dates compare
//! chronologically. Must not: change data or know about HTTP.

mod exec;
mod filter;
mod params;

pub(crate) use exec::{execute, render_row};

use crate::cell::{self, Cell};
use crate::error::Error;
use crate::schema::Collection;
use crate::store::Key;
use filter::{Filter, Test, compile_filter};
use params::{nest_params, sanitize, validate};
use serde_json::Value;

/// Page size when the request names none (`QUERY_LIMIT_DEFAULT`).
pub(crate) const DEFAULT_LIMIT: i64 = 100;

/// A query after sanitising, before it is checked against a collection.
#[derive(Debug, Clone, Default)]
pub(crate) struct RawQuery {
    pub fields: Option<Vec<String>>,
    pub filter: Option<Value>,
    pub sort: Option<Vec<String>>,
    /// `None` means the default page size, `-1` everything.
    pub limit: Option<i64>,
    pub offset: Option<i64>,
    pub page: Option<i64>,
    pub meta: Vec<String>,
}

impl RawQuery {
    /// From URL query parameters; validated like Directus's `validateQuery`.
    pub(crate) fn from_params(
        pairs: &[(String, String)],
        limit_max: Option<u32>,
        now_ms: i64,
    ) -> Result<Self, Error> {
        let tree = nest_params(pairs);
        let q = sanitize(&tree, limit_max, now_ms)?;
        validate(&q, &tree, limit_max)?;
        Ok(q)
    }

    /// From the `query` object of a PATCH/DELETE body: sanitised but not validated, as in
    /// Directus (so a body query is not capped by the maximum page size).
    pub(crate) fn from_body(
        query: &Value,
        limit_max: Option<u32>,
        now_ms: i64,
    ) -> Result<Self, Error> {
        match query {
            Value::Object(map) => sanitize(map, limit_max, now_ms),
            _ => Err(Error::InvalidPayload(
                "\"query\" must be of type object".into(),
            )),
        }
    }
}

/// A query checked against a collection, ready to run.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    /// Field indexes to return, in order; `None` for all fields.
    pub select: Option<Vec<usize>>,
    pub filter: Filter,
    /// `(field, descending)`.
    pub sort: Vec<(usize, bool)>,
    /// `None` returns everything.
    pub limit: Option<usize>,
    pub offset: usize,
    pub total_count: bool,
    pub filter_count: bool,
}

impl Plan {
    /// Checks a query against a collection: field existence first (403, like Directus's
    /// path validation), then operators (400).
    pub(crate) fn compile(schema: &Collection, q: &RawQuery) -> Result<Plan, Error> {
        let read = q.fields.clone().unwrap_or_default();
        let read: Vec<String> = read.into_iter().filter(|f| !f.starts_with('*')).collect();
        check_fields_exist(schema, &read)?;
        let mut other = Vec::new();
        if let Some(f) = &q.filter {
            filter_fields(f, &mut other);
        }
        let sort_names: Vec<String> = q
            .sort
            .iter()
            .flatten()
            .map(|s| s.trim_start_matches('-').to_string())
            .collect();
        other.extend(sort_names.iter().cloned());
        check_fields_exist(schema, &other)?;

        let filter = match &q.filter {
            Some(f) => compile_filter(schema, f)?,
            None => Filter::True,
        };
        let limit = match q.limit.unwrap_or(DEFAULT_LIMIT) {
            n if n < 0 => None,
            n => Some(n as usize),
        };
        let offset = match (q.page, limit) {
            (Some(page), Some(l)) if page > 0 => l * (page as usize - 1),
            _ => q.offset.unwrap_or(0).max(0) as usize,
        };
        Ok(Plan {
            select: selection(schema, q.fields.as_deref()),
            filter,
            sort: sort_keys(schema, q.sort.as_deref()),
            limit,
            offset,
            total_count: q.meta.iter().any(|m| m == "total_count"),
            filter_count: q.meta.iter().any(|m| m == "filter_count"),
        })
    }
}

impl Plan {
    /// Narrows the plan to `keys` (Directus's `readMany` / `readOne`).
    pub(crate) fn restrict_to_keys(&mut self, pk: usize, keys: &[Key]) {
        let mut cells: Vec<Cell> = keys.iter().map(Key::to_cell).collect();
        cells.sort_by(cell::compare);
        cells.dedup_by(|a, b| cell::compare(a, b).is_eq());
        let by_key = if cells.is_empty() {
            Filter::False
        } else {
            Filter::Cond(pk, Test::In(cells))
        };
        let rest = std::mem::replace(&mut self.filter, Filter::True);
        self.filter = Filter::and(vec![by_key, rest]);
    }
}

fn check_fields_exist(schema: &Collection, names: &[String]) -> Result<(), Error> {
    let mut missing: Vec<String> = Vec::new();
    for name in names {
        if schema.field_index(name).is_none() && !missing.contains(name) {
            missing.push(name.clone());
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Error::unknown_fields(&schema.name, &missing))
    }
}

/// Field paths a filter mentions; nested non-operator keys form dotted (relational) paths.
fn filter_fields(f: &Value, out: &mut Vec<String>) {
    let Value::Object(map) = f else { return };
    for (key, v) in map {
        if key == "_and" || key == "_or" {
            v.as_array()
                .into_iter()
                .flatten()
                .for_each(|x| filter_fields(x, out));
        } else if !key.starts_with('_') {
            match v
                .as_object()
                .and_then(|m| m.keys().find(|k| !k.starts_with('_')))
            {
                Some(sub) => out.push(format!("{key}.{sub}")),
                None => out.push(key.clone()),
            }
        }
    }
}

fn selection(schema: &Collection, fields: Option<&[String]>) -> Option<Vec<usize>> {
    let fields = fields?;
    if fields.iter().any(|f| f.starts_with('*')) {
        return None;
    }
    let mut out = Vec::new();
    for name in fields {
        if let Some(i) = schema.field_index(name).filter(|i| !out.contains(i)) {
            out.push(i);
        }
    }
    Some(out)
}

/// The requested sort, or Directus's default: the collection's sort field, else the key.
fn sort_keys(schema: &Collection, sort: Option<&[String]>) -> Vec<(usize, bool)> {
    if let Some(sort) = sort.filter(|s| !s.is_empty()) {
        return sort
            .iter()
            .filter_map(|s| {
                let desc = s.starts_with('-');
                schema
                    .field_index(s.trim_start_matches('-'))
                    .map(|i| (i, desc))
            })
            .collect();
    }
    let default = schema
        .meta
        .get("sort_field")
        .and_then(Value::as_str)
        .and_then(|f| schema.field_index(f))
        .unwrap_or(schema.pk);
    vec![(default, false)]
}
