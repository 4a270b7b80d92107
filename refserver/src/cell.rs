//! Stored field values: conversion from and to JSON, ordering and text matching.
//!
//! Owns: how a JSON value becomes a stored cell for each field type (the write casts), how a
//! cell is written back out (the read format, e.g. `timestamp` with ms and `Z`), the ordering
//! used by sort and comparisons (SQLite's: NULL first, text by bytes) and SQL `LIKE`.
//! Must not: know about collections, rows or queries.

use crate::clock;
use crate::schema::FieldType;
use serde_json::{Value, json};
use std::cmp::Ordering;

/// One stored value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Cell {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
    /// `timestamp`, `dateTime` and `date` values as epoch milliseconds (UTC).
    Time(i64),
    Json(Value),
}

impl Cell {
    pub(crate) fn is_null(&self) -> bool {
        matches!(self, Cell::Null)
    }

    fn rank(&self) -> u8 {
        match self {
            Cell::Null => 0,
            Cell::Bool(_) => 1,
            Cell::Int(_) | Cell::Float(_) => 2,
            Cell::Time(_) => 3,
            Cell::Text(_) => 4,
            Cell::Json(_) => 5,
        }
    }
}

/// Total order over cells: NULL first (as SQLite sorts ascending), numbers numerically, text
/// by bytes (SQLite's BINARY collation), instants chronologically.
pub(crate) fn compare(a: &Cell, b: &Cell) -> Ordering {
    match (a, b) {
        (Cell::Bool(x), Cell::Bool(y)) => x.cmp(y),
        (Cell::Int(x), Cell::Int(y)) => x.cmp(y),
        (Cell::Float(x), Cell::Float(y)) => x.total_cmp(y),
        (Cell::Int(x), Cell::Float(y)) => (*x as f64).total_cmp(y),
        (Cell::Float(x), Cell::Int(y)) => x.total_cmp(&(*y as f64)),
        (Cell::Time(x), Cell::Time(y)) => x.cmp(y),
        (Cell::Text(x), Cell::Text(y)) => x.as_bytes().cmp(y.as_bytes()),
        (Cell::Json(x), Cell::Json(y)) => x.to_string().cmp(&y.to_string()),
        _ => a.rank().cmp(&b.rank()),
    }
}

/// Converts a payload value for a field of `kind`; `None` when the value has the wrong type.
pub(crate) fn from_payload(kind: FieldType, v: &Value) -> Option<Cell> {
    if v.is_null() {
        return Some(Cell::Null);
    }
    match kind {
        FieldType::Uuid => v
            .as_str()
            .filter(|s| is_uuid(s))
            .map(|s| Cell::Text(s.to_string())),
        FieldType::String | FieldType::Text => match v {
            Value::String(s) => Some(Cell::Text(s.clone())),
            // SQLite's text affinity stores numbers as their text.
            Value::Number(n) => Some(Cell::Text(n.to_string())),
            _ => None,
        },
        FieldType::Integer | FieldType::BigInteger => to_integer(v).map(Cell::Int),
        FieldType::Float | FieldType::Decimal => to_float(v).map(Cell::Float),
        FieldType::Boolean => to_bool(v).map(Cell::Bool),
        FieldType::Json => Some(Cell::Json(v.clone())),
        FieldType::Timestamp => to_instant(v).map(Cell::Time),
        // Directus writes dateTime without zone or milliseconds and date as the day only.
        FieldType::DateTime => to_instant(v).map(|ms| Cell::Time(ms - ms.rem_euclid(1000))),
        FieldType::Date => to_instant(v).map(|ms| Cell::Time(ms - ms.rem_euclid(86_400_000))),
        // A time of day is kept as its text, as Directus on SQLite does.
        FieldType::Time => v.as_str().map(|s| Cell::Text(s.to_string())),
        // `cast-csv` joins a list on write.
        FieldType::Csv => match v {
            Value::Array(items) => Some(Cell::Text(
                items
                    .iter()
                    .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_owned))
                    .collect::<Vec<_>>()
                    .join(","),
            )),
            Value::String(s) => Some(Cell::Text(s.clone())),
            _ => None,
        },
        // The `hash` special stores a hash of the value, never the value.
        FieldType::Hash => v.as_str().map(|s| Cell::Text(hashed(s))),
    }
}

/// A stand-in for Directus's argon2 hash: recognisably a hash, never the value itself.
fn hashed(value: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    value.hash(&mut hasher);
    format!("$argon2id$v=19$refserver${:016x}", hasher.finish())
}

/// What Directus on SQLite stores for a payload value in a column of `kind`. Directus does not
/// check types on write, so SQLite's type affinity decides: numeric text becomes a number in
/// integer, float, boolean and json columns, numbers and booleans (bound as 1 and 0) become
/// text in text columns, objects and arrays are stored as their JSON text, and anything else
/// is kept as it came. Only dates are converted by Directus itself, which fails on a value it
/// cannot read: the `Err` is that failure's message (a 500 in Directus).
pub(crate) fn stored(kind: FieldType, v: &Value) -> Result<Cell, &'static str> {
    if v.is_null() {
        return Ok(Cell::Null);
    }
    if kind.is_temporal() {
        return match v {
            Value::String(_) | Value::Number(_) => {
                from_payload(kind, v).ok_or("Invalid time value")
            }
            _ => Err("value.toISOString is not a function"),
        };
    }
    let as_text = || match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => number_text(n),
        Value::Bool(b) => if *b { "1" } else { "0" }.to_string(),
        other => other.to_string(),
    };
    let numeric = || match v {
        Value::Number(n) => n
            .as_i64()
            .map_or_else(|| number_cell(n.as_f64()), |i| Some(Cell::Int(i))),
        Value::Bool(b) => Some(Cell::Int(i64::from(*b))),
        Value::String(s) => number_cell(s.trim().parse::<f64>().ok()),
        _ => None,
    };
    Ok(match kind {
        FieldType::Uuid | FieldType::String | FieldType::Text => Cell::Text(as_text()),
        FieldType::Integer | FieldType::BigInteger => {
            numeric().unwrap_or_else(|| Cell::Text(as_text()))
        }
        FieldType::Float | FieldType::Decimal => match numeric() {
            Some(Cell::Int(i)) => Cell::Float(i as f64),
            Some(c) => c,
            None => Cell::Text(as_text()),
        },
        FieldType::Boolean => match v {
            Value::Bool(b) => Cell::Bool(*b),
            _ => match numeric() {
                Some(Cell::Int(0)) => Cell::Bool(false),
                Some(Cell::Int(1)) => Cell::Bool(true),
                Some(c) => c,
                None => Cell::Text(as_text()),
            },
        },
        // `cast-json` parses what it reads back when it can.
        FieldType::Json => match v {
            Value::Bool(b) => Cell::Json(json!(i64::from(*b))),
            Value::String(s) => {
                Cell::Json(serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.clone())))
            }
            other => Cell::Json(other.clone()),
        },
        FieldType::Timestamp | FieldType::DateTime | FieldType::Date => Cell::Null,
        FieldType::Time | FieldType::Csv | FieldType::Hash => {
            from_payload(kind, v).unwrap_or_else(|| Cell::Text(as_text()))
        }
    })
}

/// A number as SQLite keeps it: integral values as integers.
fn number_cell(n: Option<f64>) -> Option<Cell> {
    let n = n.filter(|f| f.is_finite())?;
    Some(if n.fract() == 0.0 && n.abs() < 9.0e15 {
        Cell::Int(n as i64)
    } else {
        Cell::Float(n)
    })
}

/// A JSON number as JavaScript prints it (`3.0` is `3`).
fn number_text(n: &serde_json::Number) -> String {
    match n.as_f64() {
        Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 9.0e15 => (f as i64).to_string(),
        _ => n.to_string(),
    }
}

/// Writes a cell the way Directus returns it for a field of `kind`.
pub(crate) fn to_json(kind: FieldType, cell: &Cell) -> Value {
    match cell {
        Cell::Null => Value::Null,
        Cell::Bool(b) => json!(b),
        Cell::Int(i) => json!(i),
        // JavaScript has one number type: an integral float prints as an integer.
        Cell::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => json!(*f as i64),
        Cell::Float(f) => json!(f),
        // `cast-csv` splits the text on read.
        Cell::Text(s) if kind == FieldType::Csv && s.is_empty() => json!([]),
        Cell::Text(s) if kind == FieldType::Csv => json!(s.split(',').collect::<Vec<_>>()),
        Cell::Text(s) => json!(s),
        Cell::Json(v) => v.clone(),
        Cell::Time(ms) => json!(match kind {
            FieldType::DateTime => clock::format_datetime(*ms),
            FieldType::Date => clock::format_date(*ms),
            _ => clock::format_timestamp(*ms),
        }),
    }
}

/// The text SQL `LIKE` sees for a cell.
pub(crate) fn as_text(kind: FieldType, cell: &Cell) -> Option<String> {
    match (cell, to_json(kind, cell)) {
        (Cell::Null, _) => None,
        (_, Value::String(s)) => Some(s),
        (_, other) => Some(other.to_string()),
    }
}

pub(crate) fn is_uuid(s: &str) -> bool {
    uuid::Uuid::try_parse(s).is_ok() && s.len() == 36
}

fn to_integer(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                .map(|f| f as i64)
        }),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn to_float(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok().filter(|f: &f64| f.is_finite()),
        _ => None,
    }
}

/// Directus's `cast-boolean` write rules.
fn to_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => match n.as_i64() {
            Some(1) => Some(true),
            Some(0) => Some(false),
            _ => None,
        },
        Value::String(s) => match s.as_str() {
            "true" | "1" => Some(true),
            "false" | "0" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// Strings in the formats clients send, or epoch milliseconds like `new Date(n)`.
pub(crate) fn to_instant(v: &Value) -> Option<i64> {
    match v {
        Value::String(s) => clock::parse_instant(s),
        Value::Number(n) => n.as_i64(),
        _ => None,
    }
}

/// SQL `LIKE` with `%` and `_` wildcards; `fold_case` compares ASCII letters case-insensitively
/// as SQLite's `LIKE` does.
pub(crate) fn like(text: &str, pattern: &str, fold_case: bool) -> bool {
    let t: Vec<char> = text.chars().collect();
    let p: Vec<char> = pattern.chars().collect();
    let eq = |a: char, b: char| {
        if fold_case {
            a.eq_ignore_ascii_case(&b)
        } else {
            a == b
        }
    };
    // Iterative wildcard matching with backtracking to the last `%`.
    let (mut ti, mut pi) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '_' || (p[pi] != '%' && eq(p[pi], t[ti]))) {
            ti += 1;
            pi += 1;
        } else if pi < p.len() && p[pi] == '%' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '%')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_matches_sql_semantics() {
        assert!(like("Hello World", "%lo w%", true));
        assert!(!like("Hello World", "%lo w%", false));
        assert!(like("abc", "a_c", false));
        assert!(like("abc", "%", false));
        assert!(!like("abc", "b%", false));
        assert!(like("", "%", false));
    }

    #[test]
    fn payload_casts_follow_field_types() {
        assert_eq!(
            from_payload(FieldType::Integer, &json!("42")),
            Some(Cell::Int(42))
        );
        assert_eq!(from_payload(FieldType::Integer, &json!("x")), None);
        assert_eq!(
            from_payload(FieldType::Boolean, &json!(1)),
            Some(Cell::Bool(true))
        );
        assert_eq!(from_payload(FieldType::Uuid, &json!("nope")), None);
        let t = from_payload(FieldType::Timestamp, &json!("2026-01-01T00:00:00+02:00")).unwrap();
        assert_eq!(
            to_json(FieldType::Timestamp, &t),
            json!("2025-12-31T22:00:00.000Z")
        );
        let d = from_payload(FieldType::DateTime, &json!("2026-01-01T10:00:00.789Z")).unwrap();
        assert_eq!(
            to_json(FieldType::DateTime, &d),
            json!("2026-01-01T10:00:00")
        );
    }

    #[test]
    fn stored_values_follow_sqlite_affinity() {
        let int = |v: Value| stored(FieldType::Integer, &v).unwrap();
        assert_eq!(int(json!("12")), Cell::Int(12));
        assert_eq!(int(json!(" 7 ")), Cell::Int(7));
        assert_eq!(int(json!("2.0")), Cell::Int(2));
        assert_eq!(int(json!("1.5")), Cell::Float(1.5));
        assert_eq!(int(json!("many")), Cell::Text("many".into()));
        assert_eq!(int(json!(true)), Cell::Int(1));
        assert_eq!(int(json!([1, 2])), Cell::Text("[1,2]".into()));
        let text = |v: Value| stored(FieldType::String, &v).unwrap();
        assert_eq!(text(json!(12)), Cell::Text("12".into()));
        assert_eq!(text(json!(3.0)), Cell::Text("3".into()));
        assert_eq!(text(json!(false)), Cell::Text("0".into()));
        let boolean = |v: Value| stored(FieldType::Boolean, &v).unwrap();
        assert_eq!(boolean(json!("1")), Cell::Bool(true));
        assert_eq!(boolean(json!(0)), Cell::Bool(false));
        assert_eq!(boolean(json!("yes")), Cell::Text("yes".into()));
        assert_eq!(boolean(json!(2)), Cell::Int(2));
        let js = |v: Value| stored(FieldType::Json, &v).unwrap();
        assert_eq!(js(json!("{\"a\":1}")), Cell::Json(json!({"a": 1})));
        assert_eq!(js(json!("not json")), Cell::Json(json!("not json")));
        assert_eq!(js(json!(true)), Cell::Json(json!(1)));
        assert_eq!(
            stored(FieldType::Float, &json!(3)).map(|c| to_json(FieldType::Float, &c)),
            Ok(json!(3))
        );
        assert_eq!(
            stored(FieldType::Timestamp, &json!("nope")),
            Err("Invalid time value")
        );
        assert_eq!(
            stored(FieldType::Uuid, &json!("abc")),
            Ok(Cell::Text("abc".into()))
        );
    }

    #[test]
    fn null_sorts_first() {
        assert_eq!(compare(&Cell::Null, &Cell::Int(-5)), Ordering::Less);
        assert_eq!(compare(&Cell::Int(2), &Cell::Float(1.5)), Ordering::Greater);
    }
}
