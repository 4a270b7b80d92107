//! Checks that hold for every configuration, loaded or built in code.
//!
//! This module owns the rules that go beyond the file's shape: safe SQL identifiers, reserved
//! names, value ranges, URL schemes, unique tables, relations that point at configured
//! collections, and the primary key and cursor staying out of `fields`. Table and column names
//! end up in SQL, so this is the gate that keeps them safe. It must not look at YAML: errors get
//! their positions through [`Reporter`].

use std::ops::RangeInclusive;

use crate::database;
use crate::error::{ConfigError, ConfigErrorKind};
use crate::locate::Reporter;
use crate::model::{Auth, CollectionConfig, Config, Deletes, FieldConfig, FieldType, KeyType};

pub(crate) const TIMEOUT_SECONDS: RangeInclusive<u64> = 1..=3600;
pub(crate) const MAX_RETRIES: RangeInclusive<u64> = 0..=100;
pub(crate) const PAGE_SIZE: RangeInclusive<u64> = 1..=(crate::model::MAX_PAGE_SIZE as u64);
pub(crate) const OVERLAP_SECONDS: RangeInclusive<u64> = 0..=3600;
/// A day at most: a longer wait is better served by a scheduled `sync`.
pub(crate) const INTERVAL_SECONDS: RangeInclusive<u64> = 1..=86_400;

/// Longest identifier PostgreSQL keeps without truncating it.
pub const MAX_IDENTIFIER_LEN: usize = 63;
/// Column names starting with this are the engine's own bookkeeping columns.
pub const RESERVED_COLUMN_PREFIX: &str = "_sync";
/// Table names starting with this are the engine's own tables.
pub const RESERVED_TABLE_PREFIX: &str = "_deltasync";

type Check = Result<(), ConfigError>;

/// Runs every check; reports the first problem found, in file order.
pub(crate) fn validate(config: &Config, report: &Reporter<'_>) -> Check {
    remote(config, report)?;
    database(&config.local.database, report)?;
    if config.collections.is_empty() {
        return Err(report.at_key(
            ConfigErrorKind::Invalid,
            "collections",
            "no collections; configure at least one",
        ));
    }
    for (index, c) in config.collections.iter().enumerate() {
        collection(c, report)?;
        unique_collection(config, index, report)?;
    }
    for c in &config.collections {
        relations(config, c, report)?;
    }
    Ok(())
}

/// Whether `name` can be used as an SQL identifier without surprises on SQLite and PostgreSQL.
pub fn is_safe_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= MAX_IDENTIFIER_LEN
        && matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn remote(config: &Config, report: &Reporter<'_>) -> Check {
    let remote = &config.remote;
    if !is_http_url(&remote.url) {
        return Err(report.at_value(
            ConfigErrorKind::InvalidValue,
            "remote.url",
            format!(
                "\"{}\" is not an http(s) URL; expected e.g. http://127.0.0.1:8055",
                remote.url.escape_debug()
            ),
        ));
    }
    match &remote.auth {
        Auth::Token(token) => not_empty(token.expose(), "remote.token", report)?,
        Auth::Login { email, password } => {
            not_empty(email, "remote.email", report)?;
            not_empty(password.expose(), "remote.password", report)?;
        }
    }
    in_range(
        remote.timeout_seconds,
        &TIMEOUT_SECONDS,
        "remote.timeout_seconds",
        report,
    )?;
    in_range(
        u64::from(remote.max_retries),
        &MAX_RETRIES,
        "remote.max_retries",
        report,
    )
}

fn is_http_url(url: &str) -> bool {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    matches!(rest, Some(rest) if !rest.is_empty() && !rest.starts_with('/'))
        && !url.chars().any(char::is_whitespace)
}

fn not_empty(value: &str, path: &str, report: &Reporter<'_>) -> Check {
    if value.is_empty() {
        return Err(report.at_value(
            ConfigErrorKind::InvalidValue,
            path,
            "empty value; expected a non-empty string (is the environment variable empty?)",
        ));
    }
    Ok(())
}

fn in_range(value: u64, range: &RangeInclusive<u64>, path: &str, report: &Reporter<'_>) -> Check {
    if range.contains(&value) {
        return Ok(());
    }
    Err(report.at_value(
        ConfigErrorKind::InvalidValue,
        path,
        format!(
            "{value} is out of range; expected an integer from {} to {}",
            range.start(),
            range.end()
        ),
    ))
}

fn database(url: &str, report: &Reporter<'_>) -> Check {
    if database::scheme(url).is_some() {
        return Ok(());
    }
    // The URL may carry a password, so only its scheme is shown.
    let found = match url.split_once(':') {
        Some((scheme, _)) if !scheme.is_empty() => {
            format!("unsupported database URL \"{scheme}:...\"")
        }
        _ => "not a database URL".to_owned(),
    };
    Err(report.at_value(
        ConfigErrorKind::InvalidValue,
        "local.database",
        format!("{found}; expected {}", database::EXPECTED),
    ))
}

fn collection(c: &CollectionConfig, report: &Reporter<'_>) -> Check {
    let path = format!("collections.{}", c.name);
    identifier(&c.name, &path, Target::CollectionName, report)?;
    if c.table != c.name {
        identifier(&c.table, &format!("{path}.table"), Target::Table, report)?;
    }
    identifier(
        &c.primary_key,
        &format!("{path}.primary_key"),
        Target::Column,
        report,
    )?;
    cursor(c, &path, report)?;
    idempotency_field(c, &path, report)?;
    let page_size = format!("{path}.page_size");
    in_range(u64::from(c.page_size), &PAGE_SIZE, &page_size, report)?;
    let overlap = format!("{path}.overlap_seconds");
    in_range(
        u64::from(c.overlap_seconds),
        &OVERLAP_SECONDS,
        &overlap,
        report,
    )?;
    if let Some(seconds) = c.interval_seconds {
        let interval = format!("{path}.interval_seconds");
        in_range(u64::from(seconds), &INTERVAL_SECONDS, &interval, report)?;
    }
    deletes(c, &path, report)?;
    if let Some(filter) = &c.filter
        && !filter.is_object()
    {
        return Err(report.at_value(
            ConfigErrorKind::InvalidValue,
            &format!("{path}.filter"),
            "expected a Directus filter object, e.g. {status: {_neq: draft}}",
        ));
    }
    fields(c, &path, report)
}

/// The idempotency field is for server-assigned keys, and is none of the synced columns.
fn idempotency_field(c: &CollectionConfig, path: &str, report: &Reporter<'_>) -> Check {
    let Some(field) = &c.idempotency_field else {
        return Ok(());
    };
    let at = format!("{path}.idempotency_field");
    if c.key_type != KeyType::AutoIncrement {
        return Err(report.at_value(
            ConfigErrorKind::Invalid,
            &at,
            format!(
                "only keys the server assigns need one (key_type: auto_increment); \
                 key_type {} is chosen here, so a retried create is recognised by its key",
                c.key_type
            ),
        ));
    }
    identifier(field, &at, Target::Column, report)?;
    let taken = c
        .version_fields()
        .chain([c.primary_key.as_str()])
        .chain(c.fields.iter().map(|f| f.name.as_str()))
        .any(|f| f.eq_ignore_ascii_case(field));
    if taken {
        return Err(report.at_value(
            ConfigErrorKind::Invalid,
            &at,
            format!("\"{field}\" is also a synced field; expected a field of its own, e.g. deltasync_key"),
        ));
    }
    Ok(())
}

/// The cursor is one field, or `{updated, created}`: two different fields, neither of them
/// the primary key.
fn cursor(c: &CollectionConfig, path: &str, report: &Reporter<'_>) -> Check {
    let (updated, created) = match &c.cursor_created {
        Some(_) => (
            format!("{path}.cursor.updated"),
            format!("{path}.cursor.created"),
        ),
        None => (format!("{path}.cursor"), String::new()),
    };
    identifier(&c.cursor, &updated, Target::Column, report)?;
    let key_clash = |field: &str, at: &str| {
        report.at_value(
            ConfigErrorKind::Invalid,
            at,
            format!(
                "the cursor \"{field}\" is also the primary key; expected a separate timestamp field"
            ),
        )
    };
    if c.primary_key.eq_ignore_ascii_case(&c.cursor) {
        return Err(key_clash(&c.cursor, &updated));
    }
    let Some(field) = &c.cursor_created else {
        return Ok(());
    };
    identifier(field, &created, Target::Column, report)?;
    if c.primary_key.eq_ignore_ascii_case(field) {
        return Err(key_clash(field, &created));
    }
    if c.cursor.eq_ignore_ascii_case(field) {
        return Err(report.at_value(
            ConfigErrorKind::Invalid,
            &created,
            format!(
                "\"{field}\" is also cursor.updated; expected the field stamped on create, e.g. \
                 date_created"
            ),
        ));
    }
    Ok(())
}

fn fields(c: &CollectionConfig, path: &str, report: &Reporter<'_>) -> Check {
    if c.fields.is_empty() {
        return Err(report.at_key(
            ConfigErrorKind::Invalid,
            &format!("{path}.fields"),
            "no fields; list at least one field besides the primary key and the cursor",
        ));
    }
    for (index, field) in c.fields.iter().enumerate() {
        let field_path = format!("{path}.fields.{}", field.name);
        identifier(&field.name, &field_path, Target::FieldName, report)?;
        field_is_not_key_or_cursor(c, field, &field_path, report)?;
        let earlier = c.fields[..index]
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(&field.name));
        if let Some(earlier) = earlier {
            return Err(report.at_key(
                ConfigErrorKind::Invalid,
                &field_path,
                format!(
                    "duplicate field; \"{}\" and \"{}\" name the same column (names are compared \
                     without case)",
                    earlier.name, field.name
                ),
            ));
        }
    }
    Ok(())
}

fn field_is_not_key_or_cursor(
    c: &CollectionConfig,
    field: &FieldConfig,
    path: &str,
    report: &Reporter<'_>,
) -> Check {
    let role = if field.name.eq_ignore_ascii_case(&c.primary_key) {
        "the primary key (primary_key)"
    } else if field.name.eq_ignore_ascii_case(&c.cursor) {
        "the cursor field (cursor)"
    } else {
        return Ok(());
    };
    Err(report.at_key(
        ConfigErrorKind::Invalid,
        path,
        format!(
            "\"{}\" is {role}; it is always synced, remove it from fields",
            field.name
        ),
    ))
}

fn deletes(c: &CollectionConfig, path: &str, report: &Reporter<'_>) -> Check {
    let Deletes::Archive { field, value } = &c.deletes else {
        return Ok(());
    };
    let field_path = format!("{path}.deletes.archive.field");
    identifier(field, &field_path, Target::Column, report)?;
    if c.version_fields()
        .chain([c.primary_key.as_str()])
        .any(|f| field.eq_ignore_ascii_case(f))
    {
        return Err(report.at_value(
            ConfigErrorKind::Invalid,
            &field_path,
            format!(
                "\"{field}\" is the primary key or the cursor; expected a separate field such \
                 as status"
            ),
        ));
    }
    if value.is_null() || value.is_array() || value.is_object() {
        return Err(report.at_value(
            ConfigErrorKind::InvalidValue,
            &format!("{path}.deletes.archive.value"),
            "expected a string, number or boolean (the value Directus writes when archiving)",
        ));
    }
    Ok(())
}

/// Collection names and table names must each be unique; tables are compared without case
/// because SQLite and unquoted PostgreSQL names ignore it.
fn unique_collection(config: &Config, index: usize, report: &Reporter<'_>) -> Check {
    let c = &config.collections[index];
    let earlier = &config.collections[..index];
    if earlier.iter().any(|e| e.name == c.name) {
        return Err(report.at_key(
            ConfigErrorKind::Invalid,
            &format!("collections.{}", c.name),
            "duplicate collection; each collection may be configured once",
        ));
    }
    let Some(other) = earlier
        .iter()
        .find(|e| e.table.eq_ignore_ascii_case(&c.table))
    else {
        return Ok(());
    };
    let message = format!(
        "table \"{}\" is already used by collection {}; set a different table",
        c.table, other.name
    );
    if c.table == c.name {
        // The table was not written: point at the collection itself.
        Err(report.at_key(
            ConfigErrorKind::Invalid,
            &format!("collections.{}", c.name),
            message,
        ))
    } else {
        let path = format!("collections.{}.table", c.name);
        Err(report.at_value(ConfigErrorKind::Invalid, &path, message))
    }
}

fn relations(config: &Config, c: &CollectionConfig, report: &Reporter<'_>) -> Check {
    for field in &c.fields {
        let Some(target) = &field.references else {
            continue;
        };
        let path = format!("collections.{}.fields.{}", c.name, field.name);
        let Some(referenced) = config.collection(target) else {
            let names: Vec<&str> = config.collections.iter().map(|c| c.name.as_str()).collect();
            return Err(report.at_value(
                ConfigErrorKind::Invalid,
                &format!("{path}.references"),
                format!(
                    "unknown collection \"{}\"; expected one of the configured collections: {}",
                    target.escape_debug(),
                    names.join(", ")
                ),
            ));
        };
        let wanted = FieldType::for_key(referenced.key_type);
        if field.kind != wanted {
            return Err(report.at_value(
                ConfigErrorKind::Invalid,
                &format!("{path}.type"),
                format!(
                    "type {} does not match the key type of collection {target} ({}); \
                     expected type {wanted}",
                    field.kind, referenced.key_type
                ),
            ));
        }
    }
    Ok(())
}

/// What an identifier names, which decides its reserved prefix and whether the error points at
/// a key (names written as mapping keys) or at a value.
#[derive(Clone, Copy)]
enum Target {
    CollectionName,
    Table,
    FieldName,
    Column,
}

fn identifier(name: &str, path: &str, target: Target, report: &Reporter<'_>) -> Check {
    let at = |message: String| match target {
        // Collection and field names are keys: point at them, not at what they map to.
        Target::CollectionName | Target::FieldName => {
            report.at_key(ConfigErrorKind::UnsafeIdentifier, path, message)
        }
        Target::Table | Target::Column => {
            report.at_value(ConfigErrorKind::UnsafeIdentifier, path, message)
        }
    };
    if !is_safe_identifier(name) {
        return Err(at(format!(
            "\"{}\" is not a safe SQL identifier; use letters, digits and _ (starting with a \
             letter or _), at most {MAX_IDENTIFIER_LEN} characters",
            name.escape_debug()
        )));
    }
    let lower = name.to_ascii_lowercase();
    let reserved = match target {
        Target::FieldName | Target::Column => RESERVED_COLUMN_PREFIX,
        Target::CollectionName | Target::Table => RESERVED_TABLE_PREFIX,
    };
    if lower.starts_with(reserved) {
        let owner = match target {
            Target::FieldName | Target::Column => "deltasync's own columns",
            Target::CollectionName | Target::Table => "deltasync's own tables",
        };
        return Err(at(format!(
            "\"{name}\" is reserved: names starting with {reserved} are used by {owner}; \
             choose another name"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers() {
        assert!(is_safe_identifier("articles"));
        assert!(is_safe_identifier("_x1"));
        assert!(is_safe_identifier(&"a".repeat(63)));
        assert!(!is_safe_identifier(&"a".repeat(64)));
        assert!(!is_safe_identifier("my-table"));
        assert!(!is_safe_identifier("1abc"));
        assert!(!is_safe_identifier(""));
        assert!(!is_safe_identifier("tablé"));
        assert!(!is_safe_identifier("a\"b"));
    }

    #[test]
    fn http_urls() {
        assert!(is_http_url("http://127.0.0.1:8055"));
        assert!(is_http_url("https://cms.example.com/api"));
        assert!(!is_http_url("ftp://x"));
        assert!(!is_http_url("http://"));
        assert!(!is_http_url("http:///x"));
        assert!(!is_http_url("http://a b"));
        assert!(!is_http_url("127.0.0.1:8055"));
    }
}
