//! Item queries: `fields`, `filter`, `sort`, `limit`, `offset`, `page`, `meta`.
//!
//! Owns: reading query parameters (JSON or bracket syntax) and body queries the way
//! Directus's `sanitizeQuery`, `parseFilter` and `validateQuery` do, checking them against a
//! collection (unknown fields are 403, operators not valid for a field type are 400), and
//! running them over a table. Semantics follow Directus on SQLite: no primary-key
//! tie-breaker is added to `sort` (ties come back in insertion order), NULL sorts first,
//! `LIKE` operators ignore ASCII case, dates compare chronologically.
//! Must not: change data or know about HTTP.

use crate::cell::{self, Cell};
use crate::clock;
use crate::error::Error;
use crate::schema::{Collection, FieldType};
use crate::store::{Key, StoredRow, Table};
use serde_json::{Map, Value, json};
use std::cmp::Ordering;
use std::ops::Bound;

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

/// Turns `a[b][c]=v` style parameters into nested JSON, like the `qs` parser Express uses:
/// `[]` appends, numeric segments make arrays, repeated plain keys collect into an array.
fn nest_params(pairs: &[(String, String)]) -> Map<String, Value> {
    let mut root = Value::Object(Map::new());
    for (key, value) in pairs {
        let segments = split_key(key);
        insert_path(&mut root, &segments, Value::String(value.clone()));
    }
    match arrays_from_indexes(root) {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

fn split_key(key: &str) -> Vec<String> {
    let Some(open) = key.find('[') else {
        return vec![key.to_string()];
    };
    let mut out = vec![key[..open].to_string()];
    let mut rest = &key[open..];
    while let Some(stripped) = rest.strip_prefix('[') {
        let Some(close) = stripped.find(']') else {
            break;
        };
        out.push(stripped[..close].to_string());
        rest = &stripped[close + 1..];
    }
    out
}

fn insert_path(node: &mut Value, segments: &[String], value: Value) {
    let Some((first, rest)) = segments.split_first() else {
        return;
    };
    if first.is_empty() {
        // `[]`: append to an array.
        if !node.is_array() {
            *node = Value::Array(Vec::new());
        }
        if let Value::Array(items) = node {
            if rest.is_empty() {
                items.push(value);
            } else {
                let mut child = Value::Object(Map::new());
                insert_path(&mut child, rest, value);
                items.push(child);
            }
        }
        return;
    }
    if !node.is_object() {
        *node = Value::Object(Map::new());
    }
    let Value::Object(map) = node else { return };
    if rest.is_empty() {
        match map.get_mut(first) {
            Some(Value::Array(items)) => items.push(value),
            Some(existing) => {
                let old = existing.take();
                *existing = Value::Array(vec![old, value]);
            }
            None => {
                map.insert(first.clone(), value);
            }
        }
        return;
    }
    let child = map
        .entry(first.clone())
        .or_insert_with(|| Value::Object(Map::new()));
    insert_path(child, rest, value);
}

/// Objects whose keys are all indexes become arrays, ordered by index.
fn arrays_from_indexes(v: Value) -> Value {
    match v {
        Value::Object(map) => {
            let all_indexes = !map.is_empty() && map.keys().all(|k| k.parse::<usize>().is_ok());
            if all_indexes {
                let mut items: Vec<(usize, Value)> = map
                    .into_iter()
                    .map(|(k, v)| (k.parse().unwrap_or(0), arrays_from_indexes(v)))
                    .collect();
                items.sort_by_key(|(i, _)| *i);
                Value::Array(items.into_iter().map(|(_, v)| v).collect())
            } else {
                Value::Object(
                    map.into_iter()
                        .map(|(k, v)| (k, arrays_from_indexes(v)))
                        .collect(),
                )
            }
        }
        Value::Array(items) => Value::Array(items.into_iter().map(arrays_from_indexes).collect()),
        other => other,
    }
}

/// Directus's `sanitizeQuery`.
fn sanitize(
    raw: &Map<String, Value>,
    limit_max: Option<u32>,
    now_ms: i64,
) -> Result<RawQuery, Error> {
    for unsupported in ["search", "aggregate", "groupBy", "deep", "alias"] {
        if raw.contains_key(unsupported) {
            return Err(Error::InvalidQuery(format!(
                "\"{unsupported}\" is not supported by this server"
            )));
        }
    }
    let max = limit_max.map(i64::from);
    let limit = match raw.get("limit").filter(|v| !v.is_null()) {
        Some(v) => {
            let n = to_number(v);
            Some(if n == -1.0 && max.is_some() {
                max.unwrap_or(-1)
            } else {
                n as i64
            })
        }
        None => max.map(|m| DEFAULT_LIMIT.min(m)),
    };
    let filter = match raw.get("filter") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) => {
            let parsed: Value = serde_json::from_str(s)
                .map_err(|_| Error::InvalidQuery("Invalid JSON for filter object".into()))?;
            Some(parse_filter(&parsed, now_ms))
        }
        Some(v) => Some(parse_filter(v, now_ms)),
    };
    Ok(RawQuery {
        fields: raw.get("fields").and_then(list_param),
        filter,
        sort: raw.get("sort").and_then(list_param),
        limit,
        offset: raw.get("offset").map(|v| to_number(v) as i64),
        page: raw.get("page").map(|v| to_number(v) as i64),
        meta: raw.get("meta").map(meta_param).unwrap_or_default(),
    })
}

/// Comma lists given as one string or as an array of strings.
fn list_param(v: &Value) -> Option<Vec<String>> {
    let parts: Vec<String> = match v {
        Value::String(s) if s.is_empty() => return None,
        Value::String(s) => s.split(',').map(|p| p.trim().to_string()).collect(),
        Value::Array(items) => items
            .iter()
            .filter_map(Value::as_str)
            .flat_map(|s| s.split(','))
            .map(|p| p.trim().to_string())
            .collect(),
        _ => return None,
    };
    Some(parts)
}

fn meta_param(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) if s == "*" => vec!["total_count".into(), "filter_count".into()],
        other => list_param(other).unwrap_or_default(),
    }
}

/// JavaScript `Number(v)`: NaN for anything that is not a number.
fn to_number(v: &Value) -> f64 {
    match v {
        Value::Number(n) => n.as_f64().unwrap_or(f64::NAN),
        Value::String(s) if s.trim().is_empty() => 0.0,
        Value::String(s) => s.trim().parse().unwrap_or(f64::NAN),
        Value::Bool(b) => f64::from(u8::from(*b)),
        Value::Null => 0.0,
        _ => f64::NAN,
    }
}

/// Directus's Joi checks on `limit`, `offset`, `page`, `meta` and `validateFilter`.
fn validate(q: &RawQuery, raw: &Map<String, Value>, limit_max: Option<u32>) -> Result<(), Error> {
    if let Some(v) = raw.get("limit") {
        check_integer("limit", to_number(v), -1.0, limit_max.map(f64::from))?;
    }
    if let Some(v) = raw.get("offset") {
        check_integer("offset", to_number(v), 0.0, None)?;
    }
    if let Some(v) = raw.get("page") {
        check_integer("page", to_number(v), 0.0, None)?;
    }
    for (i, m) in q.meta.iter().enumerate() {
        if m != "total_count" && m != "filter_count" {
            return Err(Error::InvalidQuery(format!(
                "\"meta[{i}]\" must be one of [total_count, filter_count]"
            )));
        }
    }
    if let Some(filter) = &q.filter {
        validate_filter(filter)?;
    }
    Ok(())
}

fn check_integer(name: &str, n: f64, min: f64, max: Option<f64>) -> Result<(), Error> {
    let reason = if n.is_nan() {
        format!("\"{name}\" must be a number")
    } else if n.fract() != 0.0 {
        format!("\"{name}\" must be an integer")
    } else if n < min {
        format!("\"{name}\" must be greater than or equal to {min}")
    } else if let Some(max) = max.filter(|m| n > *m) {
        format!("\"{name}\" must be less than or equal to {max}")
    } else {
        return Ok(());
    };
    Err(Error::InvalidQuery(reason))
}

/// Directus's `parseFilter`: `"true"`, `"false"`, `"null"` become values, `$NOW` becomes the
/// current instant, list operators take comma strings as lists.
pub(crate) fn parse_filter(v: &Value, now_ms: i64) -> Value {
    match v {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), parse_entry(k, v, now_ms)))
                .collect(),
        ),
        Value::Null => Value::Null,
        other => json!({ "_eq": parse_value(other, now_ms) }),
    }
}

fn parse_entry(key: &str, v: &Value, now_ms: i64) -> Value {
    match key {
        "_and" | "_or" => {
            Value::Array(to_list(v).iter().map(|f| parse_filter(f, now_ms)).collect())
        }
        "_in" | "_nin" | "_between" | "_nbetween" => {
            Value::Array(to_list(v).iter().map(|x| parse_value(x, now_ms)).collect())
        }
        k if k.starts_with('_') => parse_value(v, now_ms),
        _ => match v {
            Value::Object(_) => parse_filter(v, now_ms),
            other => parse_value(other, now_ms),
        },
    }
}

/// `toArray`: strings split on commas, objects (qs arrays past 20 items) by their values.
fn to_list(v: &Value) -> Vec<Value> {
    match v {
        Value::Array(items) => items.clone(),
        Value::String(s) => s.split(',').map(|p| json!(p)).collect(),
        Value::Object(map) => map.values().cloned().collect(),
        other => vec![other.clone()],
    }
}

fn parse_value(v: &Value, now_ms: i64) -> Value {
    let Value::String(s) = v else {
        return v.clone();
    };
    match s.as_str() {
        "true" => json!(true),
        "false" => json!(false),
        "null" | "NULL" => Value::Null,
        _ if s.starts_with("$NOW") => now_with_adjustment(s, now_ms)
            .map_or_else(|| v.clone(), |ms| json!(clock::format_timestamp(ms))),
        _ => v.clone(),
    }
}

/// `$NOW` or `$NOW(-1 day)`.
fn now_with_adjustment(s: &str, now_ms: i64) -> Option<i64> {
    if s == "$NOW" {
        return Some(now_ms);
    }
    let inner = s.strip_prefix("$NOW(")?.strip_suffix(')')?.trim();
    let (amount, unit) = inner.split_once(' ')?;
    let amount: i64 = amount.trim().parse().ok()?;
    let unit_ms: i64 = match unit.trim().trim_end_matches('s') {
        "millisecond" => 1,
        "second" => 1000,
        "minute" => 60_000,
        "hour" => 3_600_000,
        "day" => 86_400_000,
        "week" => 604_800_000,
        "month" => 2_592_000_000,
        "year" => 31_536_000_000,
        _ => return None,
    };
    Some(now_ms + amount * unit_ms)
}

/// Directus's `validateFilter` (only for URL queries).
fn validate_filter(filter: &Value) -> Result<(), Error> {
    let Value::Object(map) = filter else {
        return Ok(());
    };
    for (key, nested) in map {
        if key == "_and" || key == "_or" {
            let Value::Array(items) = nested else {
                return Err(Error::InvalidQuery("Invalid filter object".into()));
            };
            items.iter().try_for_each(validate_filter)?;
        } else if key.starts_with('_') {
            match key.as_str() {
                "_in" | "_nin" | "_between" | "_nbetween" => {
                    if nested.as_array().is_none_or(Vec::is_empty) {
                        return Err(Error::InvalidQuery(format!(
                            "\"{key}\" has to be an array of values"
                        )));
                    }
                }
                "_null" | "_nnull" | "_empty" | "_nempty" => {
                    let ok = matches!(nested, Value::Null | Value::Bool(_))
                        || nested.as_str() == Some("");
                    if !ok {
                        return Err(Error::InvalidQuery(format!(
                            "\"{key}\" has to be a boolean"
                        )));
                    }
                }
                _ => validate_primitive(nested, key)?,
            }
        } else if nested.is_object() {
            validate_filter(nested)?;
        } else if !nested.is_array() {
            validate_primitive(nested, "_eq")?;
        }
    }
    Ok(())
}

fn validate_primitive(v: &Value, key: &str) -> Result<(), Error> {
    match v {
        Value::Null | Value::Bool(_) => Ok(()),
        Value::Number(n)
            if n.as_f64()
                .is_some_and(|f| f.abs() <= 9_007_199_254_740_991.0) =>
        {
            Ok(())
        }
        Value::Number(_) => Err(Error::InvalidQuery(format!(
            "The filter value for \"{key}\" is not a valid number"
        ))),
        Value::String(s) if s.is_empty() => Err(Error::InvalidQuery(format!(
            "You can't filter for an empty string in \"{key}\". Use \"_empty\" or \"_nempty\" instead"
        ))),
        Value::String(_) => Ok(()),
        _ => Err(Error::InvalidQuery(format!(
            "The filter value for \"{key}\" has to be a string, number, or boolean"
        ))),
    }
}

/// A compiled filter.
#[derive(Debug, Clone)]
pub(crate) enum Filter {
    True,
    False,
    And(Vec<Filter>),
    Or(Vec<Filter>),
    Cond(usize, Test),
}

/// A test on one field.
#[derive(Debug, Clone)]
pub(crate) enum Test {
    IsNull,
    NotNull,
    Empty,
    NotEmpty,
    Cmp(Ordering, bool, Cell),
    Neq(Cell),
    In(Vec<Cell>),
    NotIn(Vec<Cell>),
    Between(Cell, Cell, bool),
    Like { pattern: String, negate: bool },
}

impl Filter {
    fn and(mut parts: Vec<Filter>) -> Filter {
        parts.retain(|p| !matches!(p, Filter::True));
        match parts.len() {
            0 => Filter::True,
            1 => parts.pop().unwrap_or(Filter::True),
            _ => Filter::And(parts),
        }
    }

    pub(crate) fn matches(&self, schema: &Collection, cells: &[Cell]) -> bool {
        match self {
            Filter::True => true,
            Filter::False => false,
            Filter::And(parts) => parts.iter().all(|p| p.matches(schema, cells)),
            Filter::Or(parts) => parts.iter().any(|p| p.matches(schema, cells)),
            Filter::Cond(field, test) => test.matches(schema.fields[*field].kind, &cells[*field]),
        }
    }

    /// The top-level conjuncts, nested ANDs flattened.
    fn conjuncts(&self) -> Vec<&Filter> {
        match self {
            Filter::And(parts) => parts.iter().flat_map(Filter::conjuncts).collect(),
            other => vec![other],
        }
    }
}

impl Test {
    fn matches(&self, kind: FieldType, c: &Cell) -> bool {
        // SQL: every comparison with NULL is unknown, so the row does not match.
        let present = !c.is_null();
        match self {
            Test::IsNull => !present,
            Test::NotNull => present,
            Test::Empty => !present || *c == Cell::Text(String::new()),
            Test::NotEmpty => present && *c != Cell::Text(String::new()),
            Test::Cmp(ord, or_equal, v) => {
                let got = cell::compare(c, v);
                present && (got == *ord || (*or_equal && got.is_eq()))
            }
            Test::Neq(v) => present && !cell::compare(c, v).is_eq(),
            Test::In(list) => present && contains(list, c),
            // `NOT IN ()` is true for every row; otherwise NULL never matches.
            Test::NotIn(list) => list.is_empty() || (present && !contains(list, c)),
            Test::Between(lo, hi, negate) => {
                let inside = cell::compare(c, lo).is_ge() && cell::compare(c, hi).is_le();
                present && inside != *negate
            }
            Test::Like { pattern, negate } => cell::as_text(kind, c)
                .is_some_and(|text| cell::like(&text, pattern, true) != *negate),
        }
    }
}

fn contains(sorted: &[Cell], c: &Cell) -> bool {
    sorted.binary_search_by(|x| cell::compare(x, c)).is_ok()
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

fn compile_filter(schema: &Collection, f: &Value) -> Result<Filter, Error> {
    let Value::Object(map) = f else {
        return Ok(Filter::True);
    };
    let mut parts = Vec::with_capacity(map.len());
    for (key, v) in map {
        let part = match key.as_str() {
            "_and" => Filter::and(
                list(v)?
                    .iter()
                    .map(|x| compile_filter(schema, x))
                    .collect::<Result<_, _>>()?,
            ),
            "_or" => {
                let items = list(v)?;
                // An empty member matches everything, so Directus drops the whole group.
                if items.is_empty()
                    || items
                        .iter()
                        .any(|x| x.as_object().is_some_and(Map::is_empty))
                {
                    Filter::True
                } else {
                    Filter::Or(
                        items
                            .iter()
                            .map(|x| compile_filter(schema, x))
                            .collect::<Result<_, _>>()?,
                    )
                }
            }
            k if k.starts_with('_') => Filter::True,
            field => {
                let idx = schema
                    .field_index(field)
                    .ok_or_else(|| Error::unknown_fields(&schema.name, &[field.to_string()]))?;
                compile_field(schema, idx, v)?
            }
        };
        parts.push(part);
    }
    Ok(Filter::and(parts))
}

fn list(v: &Value) -> Result<&Vec<Value>, Error> {
    v.as_array()
        .ok_or_else(|| Error::InvalidQuery("Invalid filter object".into()))
}

/// Every operator of a field object applies (Directus shifts several into an `_and`).
fn compile_field(schema: &Collection, idx: usize, v: &Value) -> Result<Filter, Error> {
    let Value::Object(ops) = v else {
        return compile_op(schema, idx, "_eq", v);
    };
    let mut parts = Vec::with_capacity(ops.len());
    for (op, arg) in ops {
        let part = match op.as_str() {
            "_and" => Filter::and(
                list(arg)?
                    .iter()
                    .map(|x| compile_field(schema, idx, x))
                    .collect::<Result<_, _>>()?,
            ),
            "_or" => Filter::Or(
                list(arg)?
                    .iter()
                    .map(|x| compile_field(schema, idx, x))
                    .collect::<Result<_, _>>()?,
            ),
            o if o.starts_with('_') => compile_op(schema, idx, o, arg)?,
            sub => {
                let path = format!("{}.{sub}", schema.fields[idx].name);
                return Err(Error::unknown_fields(&schema.name, &[path]));
            }
        };
        parts.push(part);
    }
    Ok(Filter::and(parts))
}

fn compile_op(schema: &Collection, idx: usize, op: &str, arg: &Value) -> Result<Filter, Error> {
    let kind = schema.fields[idx].kind;
    let name = op.trim_start_matches('_');
    if !kind.filter_operators().contains(&name) {
        return Err(Error::InvalidQuery(format!(
            "\"{}\" field type does not contain the \"_{name}\" filter operator",
            kind.as_str()
        )));
    }
    let not_false = *arg != Value::Bool(false);
    let cond = |t: Test| Ok(Filter::Cond(idx, t));
    match name {
        "null" => cond(if not_false {
            Test::IsNull
        } else {
            Test::NotNull
        }),
        "nnull" => cond(if not_false {
            Test::NotNull
        } else {
            Test::IsNull
        }),
        "empty" => cond(if not_false {
            Test::Empty
        } else {
            Test::NotEmpty
        }),
        "nempty" => cond(if not_false {
            Test::NotEmpty
        } else {
            Test::Empty
        }),
        "eq" if arg.is_null() => cond(Test::IsNull),
        "neq" if arg.is_null() => cond(Test::NotNull),
        "eq" => cond(Test::Cmp(Ordering::Equal, true, filter_cell(kind, arg)?)),
        "neq" => cond(Test::Neq(filter_cell(kind, arg)?)),
        "lt" => cond(Test::Cmp(Ordering::Less, false, filter_cell(kind, arg)?)),
        "lte" => cond(Test::Cmp(Ordering::Less, true, filter_cell(kind, arg)?)),
        "gt" => cond(Test::Cmp(Ordering::Greater, false, filter_cell(kind, arg)?)),
        "gte" => cond(Test::Cmp(Ordering::Greater, true, filter_cell(kind, arg)?)),
        "in" | "nin" => {
            let mut cells = to_list(arg)
                .iter()
                .map(|v| filter_cell(kind, v))
                .collect::<Result<Vec<_>, _>>()?;
            cells.sort_by(cell::compare);
            cells.dedup_by(|a, b| cell::compare(a, b).is_eq());
            match (name, cells.is_empty()) {
                ("in", true) => Ok(Filter::False),
                ("in", false) => cond(Test::In(cells)),
                _ => cond(Test::NotIn(cells)),
            }
        }
        "between" | "nbetween" => {
            let bounds = to_list(arg);
            let [lo, hi] = bounds.as_slice() else {
                return Ok(Filter::True);
            };
            cond(Test::Between(
                filter_cell(kind, lo)?,
                filter_cell(kind, hi)?,
                name == "nbetween",
            ))
        }
        _ => like_filter(idx, name, arg),
    }
}

fn like_filter(idx: usize, name: &str, arg: &Value) -> Result<Filter, Error> {
    let text = match arg {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let negate = name.starts_with('n');
    let base = name.trim_start_matches('n').trim_start_matches('i');
    let pattern = match base {
        "contains" => format!("%{text}%"),
        "starts_with" => format!("{text}%"),
        "ends_with" => format!("%{text}"),
        _ => {
            return Err(Error::InvalidQuery(format!(
                "Unknown filter operator \"_{name}\""
            )));
        }
    };
    Ok(Filter::Cond(idx, Test::Like { pattern, negate }))
}

/// Casts a filter value for comparison with a field of `kind` (Directus casts dates and
/// numbers; numbers that are not numbers are an invalid query).
fn filter_cell(kind: FieldType, v: &Value) -> Result<Cell, Error> {
    if v.is_null() {
        return Ok(Cell::Null);
    }
    if kind.is_temporal() {
        return cell::to_instant(v)
            .map(Cell::Time)
            .ok_or_else(|| Error::InvalidQuery(format!("Invalid date value {v}")));
    }
    if kind.is_numeric() {
        let n = to_number(v);
        if n.is_nan() {
            return Err(Error::InvalidQuery("Invalid numeric value".into()));
        }
        let integral = n.fract() == 0.0 && n.abs() < 9.0e15;
        return Ok(if integral {
            Cell::Int(n as i64)
        } else {
            Cell::Float(n)
        });
    }
    Ok(match (kind, v) {
        (FieldType::Boolean, Value::Bool(b)) => Cell::Bool(*b),
        (FieldType::Boolean, other) => match other.to_string().trim_matches('"') {
            "1" => Cell::Bool(true),
            "0" => Cell::Bool(false),
            s => Cell::Text(s.to_string()),
        },
        (FieldType::Json, other) => Cell::Json(other.clone()),
        (_, Value::String(s)) => Cell::Text(s.clone()),
        (_, other) => Cell::Text(other.to_string()),
    })
}

/// One page of matching rows.
#[derive(Debug)]
pub(crate) struct Page<'t> {
    pub rows: Vec<&'t StoredRow>,
    pub total_count: Option<usize>,
    pub filter_count: Option<usize>,
}

/// Runs a plan. The common sync page — a range on a date field, sorted by that field — walks
/// the field's ordered index; key lookups and key-ordered scans use the primary key; anything
/// else filters every row and sorts.
pub(crate) fn execute<'t>(table: &'t Table, plan: &Plan) -> Page<'t> {
    let schema = &table.schema;
    let matching = |r: &&'t StoredRow| plan.filter.matches(schema, &r.cells);
    let rows = if let Some(keys) = key_lookup(table, &plan.filter) {
        let hits = keys
            .iter()
            .filter_map(|k| table.get(k))
            .filter(matching)
            .collect();
        sorted_window(hits, plan)
    } else if plan.sort.len() == 1 && plan.sort[0].0 == schema.pk {
        key_ordered(table, plan)
    } else if let Some(rows) = index_ordered(table, plan) {
        rows
    } else {
        let hits = table.iter().map(|(_, r)| r).filter(matching).collect();
        sorted_window(hits, plan)
    };
    let filter_count = plan.filter_count.then(|| match plan.filter {
        Filter::True => table.len(),
        _ => table.iter().map(|(_, r)| r).filter(matching).count(),
    });
    Page {
        rows,
        total_count: plan.total_count.then(|| table.len()),
        filter_count,
    }
}

fn sorted_window<'t>(mut hits: Vec<&'t StoredRow>, plan: &Plan) -> Vec<&'t StoredRow> {
    hits.sort_by(|a, b| compare_rows(a, b, &plan.sort));
    window(hits.into_iter(), plan)
}

fn window<'t>(rows: impl Iterator<Item = &'t StoredRow>, plan: &Plan) -> Vec<&'t StoredRow> {
    let rows = rows.skip(plan.offset);
    match plan.limit {
        Some(l) => rows.take(l).collect(),
        None => rows.collect(),
    }
}

/// Orders rows by the requested keys; rows equal on all of them keep insertion order.
fn compare_rows(a: &StoredRow, b: &StoredRow, sort: &[(usize, bool)]) -> Ordering {
    for (field, desc) in sort {
        let ord = cell::compare(&a.cells[*field], &b.cells[*field]);
        let ord = if *desc { ord.reverse() } else { ord };
        if ord.is_ne() {
            return ord;
        }
    }
    a.seq.cmp(&b.seq)
}

/// Keys named by a top-level `pk _eq` / `pk _in` condition.
fn key_lookup(table: &Table, filter: &Filter) -> Option<Vec<Key>> {
    let pk = table.schema.pk;
    filter.conjuncts().into_iter().find_map(|c| match c {
        Filter::Cond(f, Test::Cmp(Ordering::Equal, true, v)) if *f == pk => {
            Some(Key::from_cell(v).into_iter().collect())
        }
        Filter::Cond(f, Test::In(list)) if *f == pk => {
            Some(list.iter().filter_map(Key::from_cell).collect())
        }
        _ => None,
    })
}

/// Walks the primary key in order, narrowed by top-level key ranges.
fn key_ordered<'t>(table: &'t Table, plan: &Plan) -> Vec<&'t StoredRow> {
    let pk = table.schema.pk;
    let (mut lo, mut hi) = (Bound::Unbounded, Bound::Unbounded);
    for c in plan.filter.conjuncts() {
        if let Filter::Cond(f, Test::Cmp(ord, or_equal, v)) = c
            && *f == pk
            && let Some(k) = Key::from_cell(v)
        {
            let bound = if *or_equal {
                Bound::Included(k)
            } else {
                Bound::Excluded(k)
            };
            match ord {
                Ordering::Greater => lo = tighter(lo, bound, Ordering::Greater),
                Ordering::Less => hi = tighter(hi, bound, Ordering::Less),
                Ordering::Equal => {}
            }
        }
    }
    let matching = |(_, r): &(&Key, &StoredRow)| plan.filter.matches(&table.schema, &r.cells);
    let range = table.range(lo, hi);
    if plan.sort[0].1 {
        window(range.rev().filter(matching).map(|(_, r)| r), plan)
    } else {
        window(range.filter(matching).map(|(_, r)| r), plan)
    }
}

/// Of two bounds on the same side (`Greater` for lower bounds), the one that admits less.
fn tighter<T: Ord>(a: Bound<T>, b: Bound<T>, side: Ordering) -> Bound<T> {
    match (&a, &b) {
        (Bound::Unbounded, _) => b,
        (_, Bound::Unbounded) => a,
        (Bound::Included(x) | Bound::Excluded(x), Bound::Included(y) | Bound::Excluded(y)) => {
            match x.cmp(y) {
                Ordering::Equal if matches!(a, Bound::Excluded(_)) => a,
                Ordering::Equal => b,
                ord if ord == side => a,
                _ => b,
            }
        }
    }
}

/// Uses the ordered index of the first sort field when a top-level condition on it excludes
/// NULL (so the index, which holds only values, covers every match).
fn index_ordered<'t>(table: &'t Table, plan: &Plan) -> Option<Vec<&'t StoredRow>> {
    let (field, desc) = *plan.sort.first()?;
    let index = table.time_index(field)?;
    let mut usable = false;
    let (mut lo, mut hi): (Bound<i64>, Bound<i64>) = (Bound::Unbounded, Bound::Unbounded);
    for c in plan.filter.conjuncts() {
        let Filter::Cond(f, test) = c else { continue };
        if *f != field {
            continue;
        }
        match test {
            Test::Cmp(ord, or_equal, Cell::Time(t)) => {
                usable = true;
                let b = if *or_equal {
                    Bound::Included(*t)
                } else {
                    Bound::Excluded(*t)
                };
                match ord {
                    Ordering::Greater => lo = tighter(lo, b, Ordering::Greater),
                    Ordering::Less => hi = tighter(hi, b, Ordering::Less),
                    Ordering::Equal => {
                        lo = tighter(lo, Bound::Included(*t), Ordering::Greater);
                        hi = tighter(hi, Bound::Included(*t), Ordering::Less);
                    }
                }
            }
            Test::NotNull | Test::Neq(_) | Test::In(_) | Test::Between(..) | Test::Cmp(..) => {
                usable = true;
            }
            _ => {}
        }
    }
    if !usable {
        return None;
    }
    let start = match lo {
        Bound::Included(t) => Bound::Included((t, 0, Key::Int(i64::MIN))),
        Bound::Excluded(t) => Bound::Included((t.saturating_add(1), 0, Key::Int(i64::MIN))),
        Bound::Unbounded => Bound::Unbounded,
    };
    let end = match hi {
        Bound::Included(t) => Bound::Excluded((t.saturating_add(1), 0, Key::Int(i64::MIN))),
        Bound::Excluded(t) => Bound::Excluded((t, 0, Key::Int(i64::MIN))),
        Bound::Unbounded => Bound::Unbounded,
    };
    if let (Bound::Included(a) | Bound::Excluded(a), Bound::Included(b) | Bound::Excluded(b)) =
        (&start, &end)
        && a >= b
    {
        return Some(Vec::new());
    }
    let entries = index.range((start, end));
    let entries: Box<dyn Iterator<Item = &(i64, u64, Key)>> = if desc {
        Box::new(entries.rev())
    } else {
        Box::new(entries)
    };
    Some(walk_groups(table, plan, entries))
}

/// Collects matching rows in index order, one equal-value group at a time (each group
/// sorted by the remaining keys), until the page is full and its last group complete.
fn walk_groups<'t>(
    table: &'t Table,
    plan: &Plan,
    entries: impl Iterator<Item = &'t (i64, u64, Key)>,
) -> Vec<&'t StoredRow> {
    let want = plan.limit.map(|l| plan.offset + l);
    let mut out: Vec<&'t StoredRow> = Vec::new();
    let mut group: Vec<&'t StoredRow> = Vec::new();
    let mut current: Option<i64> = None;
    for (t, _, key) in entries {
        let Some(row) = table.get(key) else { continue };
        if !plan.filter.matches(&table.schema, &row.cells) {
            continue;
        }
        if current != Some(*t) {
            flush(&mut group, &mut out, &plan.sort);
            if want.is_some_and(|w| out.len() >= w) {
                break;
            }
            current = Some(*t);
        }
        group.push(row);
    }
    flush(&mut group, &mut out, &plan.sort);
    out.into_iter()
        .skip(plan.offset)
        .take(plan.limit.unwrap_or(usize::MAX))
        .collect()
}

fn flush<'t>(group: &mut Vec<&'t StoredRow>, out: &mut Vec<&'t StoredRow>, sort: &[(usize, bool)]) {
    group.sort_by(|a, b| compare_rows(a, b, sort));
    out.append(group);
}

/// A row as the API returns it: the selected fields (all by default) in order.
pub(crate) fn render_row(schema: &Collection, select: Option<&[usize]>, row: &StoredRow) -> Value {
    let mut out = Map::new();
    let mut put = |i: usize| {
        let f = &schema.fields[i];
        out.insert(f.name.clone(), cell::to_json(f.kind, &row.cells[i]));
    };
    match select {
        Some(fields) => fields.iter().copied().for_each(&mut put),
        None => (0..schema.fields.len()).for_each(&mut put),
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect()
    }

    #[test]
    fn bracket_syntax_nests_like_qs() {
        let tree = nest_params(&pairs(&[
            ("filter[id][_eq]", "3"),
            ("filter[_or][0][a][_null]", "true"),
            ("fields[]", "id"),
            ("fields[]", "name"),
        ]));
        assert_eq!(tree["filter"]["id"]["_eq"], json!("3"));
        assert_eq!(tree["filter"]["_or"][0]["a"]["_null"], json!("true"));
        assert_eq!(tree["fields"], json!(["id", "name"]));
    }

    #[test]
    fn limit_above_maximum_is_invalid() {
        let err = RawQuery::from_params(&pairs(&[("limit", "500")]), Some(100), 0).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Invalid query. \"limit\" must be less than or equal to 100."
        );
        let q = RawQuery::from_params(&pairs(&[("limit", "-1")]), Some(100), 0).unwrap();
        assert_eq!(q.limit, Some(100));
    }

    #[test]
    fn filter_values_are_parsed() {
        let f = parse_filter(&json!({"a": {"_in": "x,y"}, "b": {"_null": "true"}}), 0);
        assert_eq!(f, json!({"a": {"_in": ["x", "y"]}, "b": {"_null": true}}));
    }

    #[test]
    fn tighter_bound_wins() {
        let b = tighter(Bound::Included(3), Bound::Excluded(3), Ordering::Greater);
        assert_eq!(b, Bound::Excluded(3));
        let b = tighter(Bound::Included(5), Bound::Included(3), Ordering::Greater);
        assert_eq!(b, Bound::Included(5));
        let b = tighter(Bound::Included(5), Bound::Included(3), Ordering::Less);
        assert_eq!(b, Bound::Included(3));
    }
}
