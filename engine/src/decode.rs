//! Turning server rows into [`RemoteRow`]s, checked against the configured field types.
//!
//! Owns what counts as a well-formed remote row. A bad row is reported with its collection,
//! key and field and never stops the rows around it. Pure: no IO.

use schema::{CollectionConfig, FieldType};
use serde_json::Value;

use crate::model::{Key, RemoteRow, Row, Stamp, key_from_json};

/// Why one server row could not be taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("collection {collection}, key {}, field {field}: {message}", key.as_deref().unwrap_or("?"))]
pub struct RowError {
    pub collection: String,
    pub key: Option<Key>,
    pub field: String,
    pub message: String,
}

/// Decodes one server row of `collection`.
pub fn remote_row(collection: &CollectionConfig, raw: &Value) -> Result<RemoteRow, RowError> {
    let (key, stamp) = check(collection, raw, true)?;
    Ok(RemoteRow {
        key,
        stamp,
        data: copy(collection, raw, normalize),
    })
}

/// [`remote_row`] for a row the caller no longer needs: its values move into the
/// [`RemoteRow`] instead of being copied. On error the row comes back untouched.
pub fn remote_row_owned(
    collection: &CollectionConfig,
    raw: Value,
) -> Result<RemoteRow, Box<(RowError, Value)>> {
    match check(collection, &raw, true) {
        Ok((key, stamp)) => Ok(RemoteRow {
            key,
            stamp,
            data: take(collection, raw),
        }),
        Err(error) => Err(Box::new((error, raw))),
    }
}

/// Decodes the key and stamp of a server row, taking its fields as they are: for looking
/// at a row that does not fit, never for applying it.
pub fn remote_row_unchecked(
    collection: &CollectionConfig,
    raw: &Value,
) -> Result<RemoteRow, RowError> {
    let (key, stamp) = check(collection, raw, false)?;
    Ok(RemoteRow {
        key,
        stamp,
        data: copy(collection, raw, |_, value| value.clone()),
    })
}

/// The key and stamp of `raw`, once it is known to be an object with both and, when
/// `fields` is set, every configured field readable in its configured type.
fn check(
    collection: &CollectionConfig,
    raw: &Value,
    fields: bool,
) -> Result<(Key, Stamp), RowError> {
    let fail = |key: Option<&Key>, field: &str, message: String| RowError {
        collection: collection.name.clone(),
        key: key.cloned(),
        field: field.to_owned(),
        message,
    };
    let Some(object) = raw.as_object() else {
        return Err(fail(
            None,
            "*",
            format!("expected an object, got {}", kind_of(raw)),
        ));
    };
    let pk = &collection.primary_key;
    let key = object
        .get(pk)
        .and_then(key_from_json)
        .ok_or_else(|| fail(None, pk, "missing or not a string or integer".into()))?;
    let stamp =
        version(collection, object).map_err(|(field, message)| fail(Some(&key), field, message))?;
    if !fields {
        return Ok((key, stamp));
    }
    for field in &collection.fields {
        let value = object.get(&field.name).ok_or_else(|| {
            fail(
                Some(&key),
                &field.name,
                "missing from the server row (is it readable with this token?)".into(),
            )
        })?;
        let normalized = normalized(field.kind, value);
        check_value(field.kind, normalized.as_ref().unwrap_or(value))
            .map_err(|message| fail(Some(&key), &field.name, message))?;
    }
    Ok((key, stamp))
}

/// The configured fields of a checked row, each copied through `form`.
fn copy(
    collection: &CollectionConfig,
    raw: &Value,
    form: impl Fn(FieldType, &Value) -> Value,
) -> Row {
    collection
        .fields
        .iter()
        .map(|f| {
            let value = raw.get(&f.name).unwrap_or(&Value::Null);
            (f.name.clone(), form(f.kind, value))
        })
        .collect()
}

/// The configured fields of a checked row, moved out of it and normalized.
fn take(collection: &CollectionConfig, raw: Value) -> Row {
    let Value::Object(mut object) = raw else {
        unreachable!("checked to be an object")
    };
    let mut data = Row::new();
    for field in &collection.fields {
        let (name, value) = object
            .remove_entry(&field.name)
            .unwrap_or_else(|| (field.name.clone(), Value::Null));
        let value = normalized(field.kind, &value).unwrap_or(value);
        data.insert(name, value);
    }
    data
}

/// Reads a value the way Directus means it: on SQLite, a boolean field without the
/// `cast-boolean` special comes back as 0 or 1.
/// A `bigInteger` arrives as a string from Directus on PostgreSQL and as a number on SQLite,
/// a `decimal` the other way round, and a `csv` without the `cast-csv` special as one string:
/// each is taken in one form, the one the local column gives back.
pub fn normalize(kind: FieldType, value: &Value) -> Value {
    normalized(kind, value).unwrap_or_else(|| value.clone())
}

/// [`normalize`] where the form changes; `None` where the value is taken as it is.
pub fn normalized(kind: FieldType, value: &Value) -> Option<Value> {
    Some(match (kind, value) {
        (FieldType::Boolean, Value::Number(n)) if matches!(n.as_i64(), Some(0 | 1)) => {
            Value::Bool(n.as_i64() == Some(1))
        }
        (FieldType::BigInteger, Value::String(s)) => Value::from(s.trim().parse::<i64>().ok()?),
        (FieldType::Decimal, Value::Number(n)) => Value::String(n.to_string()),
        (FieldType::Csv, Value::String(s)) if s.is_empty() => Value::Array(Vec::new()),
        (FieldType::Csv, Value::String(s)) => Value::Array(s.split(',').map(Value::from).collect()),
        _ => return None,
    })
}

/// The form of a value Directus reads exactly: a `bigInteger` beyond 2^53 as a JSON number
/// would be rounded by its JSON parser, so it goes as a string.
pub fn to_wire(kind: FieldType, value: &Value) -> Value {
    match (kind, value) {
        (FieldType::BigInteger, Value::Number(n)) => Value::String(n.to_string()),
        _ => value.clone(),
    }
}

/// The version stamp of a server row: its cursor field, or, while that is empty, its created
/// field (collections with `cursor_created`). `None` when it has no readable one.
pub fn version_of(collection: &CollectionConfig, raw: &Value) -> Option<Stamp> {
    raw.as_object()
        .and_then(|object| version(collection, object).ok())
}

/// The version of `object`, or the field that is wrong and why.
fn version<'c>(
    collection: &'c CollectionConfig,
    object: &serde_json::Map<String, Value>,
) -> Result<Stamp, (&'c str, String)> {
    let stamp_in = |field: &'c str| match object.get(field) {
        Some(Value::String(s)) => Stamp::parse(s)
            .map(Some)
            .ok_or_else(|| (field, format!("{s:?} is not an RFC 3339 timestamp"))),
        Some(Value::Null) => Ok(None),
        Some(other) => Err((
            field,
            format!("expected a timestamp, got {}", kind_of(other)),
        )),
        None => Err((field, "missing from the server row".to_owned())),
    };
    let cursor = collection.cursor.as_str();
    if let Some(stamp) = stamp_in(cursor)? {
        return Ok(stamp);
    }
    match collection.cursor_created.as_deref() {
        None => Err((cursor, "empty: the row has no version".to_owned())),
        Some(created) => stamp_in(created)?.ok_or_else(|| {
            (
                created,
                format!("empty, and so is {cursor}: the row has no version"),
            )
        }),
    }
}

/// Whether `value` fits a field of type `kind` (null always does).
pub fn check_value(kind: FieldType, value: &Value) -> Result<(), String> {
    let ok = match (kind, value) {
        (_, Value::Null) | (FieldType::Json, _) => true,
        (FieldType::String | FieldType::Text, Value::String(_)) => true,
        (FieldType::Integer, Value::Number(n)) => n.is_i64() || n.is_u64(),
        (FieldType::Float, Value::Number(_)) => true,
        (FieldType::Boolean, Value::Bool(_)) => true,
        (FieldType::Uuid, Value::String(s)) => uuid::Uuid::parse_str(s).is_ok(),
        (FieldType::Timestamp, Value::String(s)) => Stamp::parse(s).is_some(),
        (FieldType::BigInteger, Value::Number(n)) => n.is_i64(),
        (FieldType::BigInteger, Value::String(s)) => s.trim().parse::<i64>().is_ok(),
        (FieldType::Decimal, Value::Number(_)) => true,
        (FieldType::Decimal, Value::String(s)) => is_decimal(s),
        (FieldType::DateTime, Value::String(s)) => naive_date_time(s).is_some(),
        (FieldType::Date, Value::String(s)) => {
            chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok()
        }
        (FieldType::Time, Value::String(s)) => naive_time(s).is_some(),
        (FieldType::Csv, Value::String(_)) => true,
        (FieldType::Csv, Value::Array(items)) => items.iter().all(Value::is_string),
        (FieldType::Geometry, Value::Object(o)) => o.get("type").is_some_and(Value::is_string),
        (FieldType::Hash, Value::String(_)) => true,
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "expected {}, got {}",
            kind.as_str(),
            describe(value)
        ))
    }
}

/// A decimal number as text: an optional sign, digits, an optional fraction.
fn is_decimal(s: &str) -> bool {
    let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    !(whole.is_empty() && fraction.is_empty())
        && whole
            .chars()
            .chain(fraction.chars())
            .all(|c| c.is_ascii_digit())
}

/// A Directus `dateTime`: `2026-01-02T03:04:05`, with optional fractional seconds, or a
/// space instead of the `T`.
pub fn naive_date_time(s: &str) -> Option<chrono::NaiveDateTime> {
    ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"]
        .iter()
        .find_map(|format| chrono::NaiveDateTime::parse_from_str(s, format).ok())
}

/// A Directus `time`: `03:04:05`, with optional fractional seconds, or `03:04`.
pub fn naive_time(s: &str) -> Option<chrono::NaiveTime> {
    ["%H:%M:%S%.f", "%H:%M"]
        .iter()
        .find_map(|format| chrono::NaiveTime::parse_from_str(s, format).ok())
}

fn describe(value: &Value) -> String {
    let text = value.to_string();
    if text.len() > 40 {
        format!(
            "{} {}...",
            kind_of(value),
            &text[..text.floor_char_boundary(40)]
        )
    } else {
        format!("{} {text}", kind_of(value))
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn articles() -> CollectionConfig {
        CollectionConfig::new("articles")
            .with_field("title", FieldType::String)
            .with_field("views", FieldType::Integer)
    }

    #[test]
    fn decodes_a_good_row() {
        let raw = json!({"id": "k1", "last_modified": "2026-01-01T00:00:00.000Z", "title": "t", "views": 3});
        let row = remote_row(&articles(), &raw).unwrap();
        assert_eq!(row.key, "k1");
        assert_eq!(row.data["views"], json!(3));
    }

    #[test]
    fn a_row_taken_whole_decodes_as_a_row_read_in_place() {
        let c = articles()
            .with_field("live", FieldType::Boolean)
            .with_field("tags", FieldType::Csv);
        let good = json!({"id": "k1", "last_modified": "2026-01-01T00:00:00.000Z", "title": "t",
            "views": 3, "live": 1, "tags": "a,b", "extra": "not configured"});
        let owned = remote_row_owned(&c, good.clone()).unwrap();
        assert_eq!(owned, remote_row(&c, &good).unwrap());
        assert_eq!(owned.data["tags"], json!(["a", "b"]));
        assert!(!owned.data.contains_key("extra"));
        // A row that does not fit comes back as it was, with the reason.
        let bad = json!({"id": "k2", "last_modified": "2026-01-01T00:00:00.000Z", "title": "t",
            "views": "many", "live": 1, "tags": ""});
        let (error, returned) = *remote_row_owned(&c, bad.clone()).unwrap_err();
        assert_eq!(error, remote_row(&c, &bad).unwrap_err());
        assert_eq!(error.field, "views");
        assert_eq!(returned, bad);
    }

    #[test]
    fn reads_0_and_1_of_a_boolean_field_as_booleans() {
        let c = articles().with_field("live", FieldType::Boolean);
        let raw = |live: Value| json!({"id": "k1", "last_modified": "2026-01-01T00:00:00.000Z", "title": "t", "views": 3, "live": live});
        assert_eq!(
            remote_row(&c, &raw(json!(1))).unwrap().data["live"],
            json!(true)
        );
        assert_eq!(
            remote_row(&c, &raw(json!(0))).unwrap().data["live"],
            json!(false)
        );
        assert!(remote_row(&c, &raw(json!(2))).is_err());
    }

    #[test]
    fn names_collection_key_and_field_of_a_bad_value() {
        let raw = json!({"id": "k1", "last_modified": "2026-01-01T00:00:00.000Z", "title": "t", "views": "many"});
        let err = remote_row(&articles(), &raw).unwrap_err();
        assert_eq!(err.field, "views");
        assert_eq!(err.key.as_deref(), Some("k1"));
        assert_eq!(
            err.to_string(),
            "collection articles, key k1, field views: expected integer, got string \"many\""
        );
    }

    #[test]
    fn the_version_is_date_updated_or_else_date_created() {
        let c = articles().with_date_cursor();
        let row = |updated: Value, created: Value| json!({"id": 1, "date_updated": updated, "date_created": created, "title": "t", "views": 1});
        let version = |raw: Value| {
            remote_row(&c, &raw)
                .map(|r| r.stamp.to_wire())
                .map_err(|e| e.field)
        };
        let table = [
            (
                json!("2026-01-02T00:00:00.000Z"),
                json!("2026-01-01T00:00:00.000Z"),
                Ok("2026-01-02T00:00:00.000Z".to_owned()),
            ),
            (
                Value::Null,
                json!("2026-01-01T00:00:00.000Z"),
                Ok("2026-01-01T00:00:00.000Z".to_owned()),
            ),
            (Value::Null, Value::Null, Err("date_created".to_owned())),
            (
                json!(3),
                json!("2026-01-01T00:00:00.000Z"),
                Err("date_updated".to_owned()),
            ),
        ];
        for (updated, created, expected) in table {
            assert_eq!(
                version(row(updated.clone(), created.clone())),
                expected,
                "{updated} {created}"
            );
        }
        assert_eq!(
            version_of(&c, &row(Value::Null, json!("2026-01-01T00:00:00.000Z")))
                .map(Stamp::to_wire),
            Some("2026-01-01T00:00:00.000Z".to_owned())
        );
    }

    #[test]
    fn the_types_of_stock_collections_in_each_form_directus_sends() {
        // (type, as sent, as taken, or None when it does not fit)
        let table: Vec<(FieldType, Value, Option<Value>)> = vec![
            (
                FieldType::BigInteger,
                json!("9007199254740993"),
                Some(json!(9007199254740993_i64)),
            ),
            (FieldType::BigInteger, json!(42), Some(json!(42))),
            (FieldType::BigInteger, json!("4.5"), None),
            (
                FieldType::Decimal,
                json!("12.50000"),
                Some(json!("12.50000")),
            ),
            (FieldType::Decimal, json!(12.5), Some(json!("12.5"))),
            (FieldType::Decimal, json!("1e5"), None),
            (
                FieldType::DateTime,
                json!("2026-01-02T03:04:05"),
                Some(json!("2026-01-02T03:04:05")),
            ),
            (FieldType::DateTime, json!("2026-01-02"), None),
            (
                FieldType::Date,
                json!("2026-01-02"),
                Some(json!("2026-01-02")),
            ),
            (FieldType::Date, json!("02/01/2026"), None),
            (FieldType::Time, json!("03:04:05"), Some(json!("03:04:05"))),
            (FieldType::Time, json!("25:00:00"), None),
            (FieldType::Csv, json!(["a", "b"]), Some(json!(["a", "b"]))),
            (FieldType::Csv, json!("a,b"), Some(json!(["a", "b"]))),
            (FieldType::Csv, json!(""), Some(json!([]))),
            (FieldType::Csv, json!([1]), None),
            (
                FieldType::Geometry,
                json!({"type": "Point", "coordinates": [1.5, 2.5]}),
                Some(json!({"type": "Point", "coordinates": [1.5, 2.5]})),
            ),
            (FieldType::Geometry, json!("POINT (1 2)"), None),
            (
                FieldType::Hash,
                json!("$argon2id$v=19$…"),
                Some(json!("$argon2id$v=19$…")),
            ),
        ];
        for (kind, sent, expected) in table {
            let taken = normalize(kind, &sent);
            let fits = check_value(kind, &taken).is_ok();
            assert_eq!(fits.then_some(taken), expected, "{kind} {sent}");
        }
        assert_eq!(
            to_wire(FieldType::BigInteger, &json!(9007199254740993_i64)),
            json!("9007199254740993")
        );
    }

    #[test]
    fn a_missing_stamp_is_an_error() {
        let raw = json!({"id": 7, "title": "t", "views": 1});
        let err = remote_row(&articles(), &raw).unwrap_err();
        assert_eq!(
            (err.key.as_deref(), err.field.as_str()),
            (Some("7"), "last_modified")
        );
    }
}
