//! Compiled filters: building them from Directus filter JSON and testing rows.
//!
//! Owns: the operators each field type allows (others are 400 `INVALID_QUERY` with
//! Directus's message), the casting of compare values (dates to instants, numbers to
//! numbers), `_and`/`_or`, and SQL semantics when testing a row (NULL never compares, `NOT IN
//! ()` matches everything). Must not: decide which rows are read or in what order.

use super::params::{to_list, to_number};
use crate::cell::{self, Cell};
use crate::error::Error;
use crate::schema::{Collection, FieldType};
use serde_json::{Map, Value};
use std::cmp::Ordering;

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
    pub(super) fn and(mut parts: Vec<Filter>) -> Filter {
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
    pub(super) fn conjuncts(&self) -> Vec<&Filter> {
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

pub(super) fn compile_filter(schema: &Collection, f: &Value) -> Result<Filter, Error> {
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
