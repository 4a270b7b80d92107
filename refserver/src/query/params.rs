//! Reading query parameters and body queries the way Directus's `sanitizeQuery`,
//! `parseFilter` and `validateQuery` do.
//!
//! Owns: `qs`-style nesting of bracket parameters, number and list coercions, the Joi-style
//! messages for invalid `limit`/`offset`/`page`/`meta`, filter value parsing (`"true"`,
//! `"null"`, `$NOW`, comma lists) and `validateFilter`. Must not: look at a collection.

use super::{DEFAULT_LIMIT, RawQuery};
use crate::clock;
use crate::error::Error;
use serde_json::{Map, Value, json};

/// Turns `a[b][c]=v` style parameters into nested JSON, like the `qs` parser Express uses:
/// `[]` appends, numeric segments make arrays, repeated plain keys collect into an array.
pub(super) fn nest_params(pairs: &[(String, String)]) -> Map<String, Value> {
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
pub(super) fn sanitize(
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
pub(super) fn to_number(v: &Value) -> f64 {
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
pub(super) fn validate(
    q: &RawQuery,
    raw: &Map<String, Value>,
    limit_max: Option<u32>,
) -> Result<(), Error> {
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
pub(super) fn to_list(v: &Value) -> Vec<Value> {
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
}
