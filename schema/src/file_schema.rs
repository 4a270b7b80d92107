//! The JSON Schema of the schema file, for editors.
//!
//! This module owns a description-only mirror of the file format: types that are never built,
//! only turned into a JSON Schema by schemars, with their doc comments as descriptions. It must
//! not be used to parse files (decoding lives in `decode`); a test keeps the keys of both in
//! step.
#![allow(
    dead_code,
    reason = "these types exist only to describe the file format as a JSON Schema"
)]

use std::collections::BTreeMap;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};

/// Matches a value that is entirely one `${NAME}` or `${NAME:-default}` reference.
const ENV_PATTERN: &str = r"^\$\{[A-Za-z_][A-Za-z0-9_]*(:-[^}]*)?\}$";

/// An integer in `min..=max`, or an environment reference that expands to one.
fn integer_or_env(min: u64, max: u64) -> Schema {
    json_schema!({
        "anyOf": [
            {"type": "integer", "minimum": min, "maximum": max},
            {"type": "string", "pattern": ENV_PATTERN}
        ]
    })
}

fn timeout_seconds(_: &mut SchemaGenerator) -> Schema {
    integer_or_env(1, 3600)
}

fn max_retries(_: &mut SchemaGenerator) -> Schema {
    integer_or_env(0, 100)
}

fn page_size(_: &mut SchemaGenerator) -> Schema {
    integer_or_env(1, u64::from(crate::model::MAX_PAGE_SIZE))
}

fn overlap_seconds(_: &mut SchemaGenerator) -> Schema {
    integer_or_env(0, 3600)
}

fn interval_seconds(_: &mut SchemaGenerator) -> Schema {
    integer_or_env(1, 86_400)
}

/// A deltasync schema file: keeps local SQL tables in two-way sync with Directus collections.
/// Any string value may contain ${NAME} or ${NAME:-default}, replaced by environment variables.
#[derive(JsonSchema)]
#[schemars(title = "deltasync configuration", deny_unknown_fields)]
pub(crate) struct File {
    remote: Remote,
    local: Option<Local>,
    defaults: Option<Defaults>,
    /// The synced collections: Directus collection name -> its table and fields. Order is kept:
    /// collections are synced in file order. At least one.
    #[schemars(extend(
        "minProperties" = 1,
        "propertyNames" = {"pattern": "^[A-Za-z_][A-Za-z0-9_]{0,62}$"}
    ))]
    collections: BTreeMap<String, Collection>,
}

/// The Directus server and how to authenticate: either token, or email and password.
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields, extend(
    "oneOf" = [{"required": ["token"]}, {"required": ["email", "password"]}]
))]
struct Remote {
    /// Base URL of Directus, e.g. http://127.0.0.1:8055. A trailing slash is removed.
    url: String,
    /// A static Directus access token, sent as a bearer token. Usually ${DIRECTUS_TOKEN}.
    token: Option<String>,
    /// Email of the Directus user to log in as (with password, instead of token).
    email: Option<String>,
    /// Password of the Directus user (with email, instead of token).
    password: Option<String>,
    /// Timeout of one HTTP request in seconds. Default 30.
    #[serde(default)]
    #[schemars(schema_with = "timeout_seconds")]
    #[schemars(extend("default" = 30))]
    timeout_seconds: Option<u64>,
    /// How often a failed request that may be repeated is retried. Default 5.
    #[serde(default)]
    #[schemars(schema_with = "max_retries")]
    #[schemars(extend("default" = 5))]
    max_retries: Option<u32>,
}

/// The local database holding the synced tables.
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
struct Local {
    /// sqlite://<file> (relative to this file), sqlite::memory:, or
    /// postgres://user@host/database. Default sqlite://deltasync.db.
    #[schemars(extend("default" = "sqlite://deltasync.db"))]
    database: Option<String>,
}

/// Options applied to every collection that does not set them itself.
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
struct Defaults {
    /// Default cursor field. Default last_modified.
    #[schemars(extend("default" = "last_modified"))]
    cursor: Option<String>,
    /// Default conflict strategy. Default last_write_wins.
    #[schemars(extend("default" = "last_write_wins"))]
    conflict: Option<StrategyName>,
    /// Default rows per pulled page. Default 2500.
    #[serde(default)]
    #[schemars(schema_with = "page_size")]
    #[schemars(extend("default" = 2500))]
    page_size: Option<u32>,
    /// Default overlap window in seconds. Default 10.
    #[serde(default)]
    #[schemars(schema_with = "overlap_seconds")]
    #[schemars(extend("default" = 10))]
    overlap_seconds: Option<u32>,
    /// Default way to learn remote deletions. Default activity.
    #[schemars(extend("default" = "activity"))]
    deletes: Option<DeletesSpec>,
}

/// One Directus collection synced with one local table.
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
struct Collection {
    /// Local table name. Default: the collection name.
    table: Option<String>,
    /// Primary key field (never listed in fields). Default id.
    #[schemars(extend("default" = "id"))]
    primary_key: Option<String>,
    /// Type of the primary key. Default uuid.
    #[schemars(extend("default" = "uuid"))]
    key_type: Option<KeyTypeName>,
    /// The field that holds a row's version, used as pull cursor: a Directus timestamp
    /// stamped on create and on update (special date-created and date-updated), or, for
    /// collections with the standard date fields, {updated: date_updated, created:
    /// date_created} (a row never updated has its version in date_created). date_updated
    /// alone is not enough: Directus leaves it empty on create. The cursor is never listed in
    /// fields (the created field may be, read-only). Default from defaults.cursor, else
    /// last_modified.
    cursor: Option<CursorSpec>,
    /// For key_type auto_increment: the unique string field on the server carrying each
    /// create's idempotency key, so that a create whose answer was lost is never made twice;
    /// none to go without (such a create may then be made twice). Default deltasync_key.
    idempotency_field: Option<String>,
    /// How a row changed on both sides is resolved. Default from defaults.conflict.
    conflict: Option<StrategyName>,
    /// fields: edits of different fields of one row are merged, and only fields changed on
    /// both sides go to the strategy; rows: the strategy decides for the whole row.
    /// Default fields.
    #[schemars(extend("default" = "fields"))]
    merge: Option<MergeName>,
    /// How remote deletions are learned. Default from defaults.deletes.
    deletes: Option<DeletesSpec>,
    /// Rows per pulled page, 1 to 10000. Default from defaults.page_size.
    #[serde(default)]
    #[schemars(schema_with = "page_size")]
    page_size: Option<u32>,
    /// Seconds re-read before the cursor on every pull. Default from defaults.overlap_seconds.
    #[serde(default)]
    #[schemars(schema_with = "overlap_seconds")]
    overlap_seconds: Option<u32>,
    /// For `deltasync run` and the library's sync service: seconds between this
    /// collection's cycles when no write or server change calls for one sooner, 1 to 86400.
    /// Default: the service's interval (`run --interval`, 60).
    #[serde(default)]
    #[schemars(schema_with = "interval_seconds")]
    interval_seconds: Option<u32>,
    /// A Directus filter object: only matching rows are synced.
    filter: Option<serde_json::Map<String, serde_json::Value>>,
    /// The synced fields: name -> type, or name -> {type, references}. At least one.
    #[schemars(extend(
        "minProperties" = 1,
        "propertyNames" = {"pattern": "^[A-Za-z_][A-Za-z0-9_]{0,62}$"}
    ))]
    fields: BTreeMap<String, FieldSpec>,
}

/// A field type, or a type with a many-to-one relation.
#[derive(JsonSchema)]
#[serde(untagged)]
enum FieldSpec {
    Plain(FieldTypeName),
    Full(FullField),
}

/// A field with options.
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
struct FullField {
    /// The field type.
    r#type: FieldTypeName,
    /// Makes the field a many-to-one relation to this configured collection; its type must
    /// match that collection's key_type.
    references: Option<String>,
    /// Filled by the server (user_created, a field the token may only read, ...): pulled,
    /// never pushed. Default false.
    read_only: Option<bool>,
}

/// The field holding a row's version, or the two standard date fields.
#[derive(JsonSchema)]
#[serde(untagged)]
enum CursorSpec {
    /// One timestamp stamped on create and on update.
    Single(String),
    /// Two timestamps: one stamped on update, one on create.
    Dates(DateCursor),
}

/// The standard Directus date fields.
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
struct DateCursor {
    /// The field stamped on update (special date-updated), e.g. date_updated.
    updated: String,
    /// The field stamped on create (special date-created), e.g. date_created.
    created: String,
}

/// How remote deletions are learned.
#[derive(JsonSchema)]
#[serde(untagged)]
enum DeletesSpec {
    Plain(DeletesName),
    Archive(ArchiveSpec),
}

#[derive(JsonSchema)]
#[serde(rename_all = "snake_case")]
enum DeletesName {
    /// Read deletions from the Directus activity log.
    Activity,
    /// Do not sync remote deletions.
    None,
}

/// Rows are soft-deleted on the server by setting a field to a value.
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
struct ArchiveSpec {
    archive: Archive,
}

#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
struct Archive {
    /// The archive field, e.g. status.
    field: String,
    /// The value that marks a row archived, e.g. archived.
    value: serde_json::Value,
}

#[derive(JsonSchema)]
#[serde(rename_all = "snake_case")]
enum StrategyName {
    /// The change with the later timestamp wins.
    LastWriteWins,
    /// The change that reached the server first wins.
    FirstWriteWins,
    /// Both versions are parked as a conflict for a person to resolve.
    Manual,
}

#[derive(JsonSchema)]
#[serde(rename_all = "snake_case")]
enum MergeName {
    /// Merge edits of different fields; only colliding fields go to the strategy.
    Fields,
    /// The strategy decides for the whole row.
    Rows,
}

#[derive(JsonSchema)]
#[serde(rename_all = "snake_case")]
enum KeyTypeName {
    /// A UUID generated by the client.
    Uuid,
    /// A string.
    String,
    /// An integer chosen by the client.
    Integer,
    /// An integer the server assigns (auto-increment); local creates get a negative
    /// temporary key until the server has made them.
    AutoIncrement,
}

#[derive(JsonSchema)]
#[serde(rename_all = "snake_case")]
enum FieldTypeName {
    /// Short text.
    String,
    /// Long text.
    Text,
    /// 64-bit integer.
    Integer,
    /// Floating point number.
    Float,
    /// true or false.
    Boolean,
    /// Any JSON value.
    Json,
    /// A UUID.
    Uuid,
    /// A UTC timestamp.
    Timestamp,
    /// A 64-bit integer (Directus bigInteger).
    #[serde(rename = "bigInteger")]
    BigInteger,
    /// An exact decimal, kept as text.
    Decimal,
    /// A date and time without time zone (Directus dateTime).
    #[serde(rename = "dateTime")]
    DateTime,
    /// A day.
    Date,
    /// A time of day without time zone.
    Time,
    /// A list of strings (Directus csv).
    Csv,
    /// A GeoJSON geometry.
    Geometry,
    /// A hashed value: pulled, never pushed.
    Hash,
}

/// The JSON Schema of the schema file format, with descriptions, for editors and linters.
pub fn json_schema() -> serde_json::Value {
    let mut schema = schemars::schema_for!(File).to_value();
    drop_null(&mut schema);
    schema
}

/// Removes the `null` alternative schemars adds for optional keys: an optional key is left
/// out, not written empty (an empty value is an error for most keys).
fn drop_null(schema: &mut serde_json::Value) {
    use serde_json::Value;
    let Value::Object(object) = schema else {
        return;
    };
    if object.get("default") == Some(&Value::Null) {
        object.remove("default");
    }
    if let Some(Value::Array(types)) = object.get_mut("type") {
        types.retain(|t| t != "null");
        if let [single] = types.as_slice() {
            let single = single.clone();
            object.insert("type".to_owned(), single);
        }
    }
    if let Some(Value::Array(options)) = object.get_mut("anyOf") {
        options.retain(|o| o.get("type").and_then(Value::as_str) != Some("null"));
        if let [single] = options.as_slice() {
            let single = single.clone();
            object.remove("anyOf");
            if let Value::Object(inner) = single {
                object.extend(inner);
            }
        }
    }
    for value in object.values_mut() {
        match value {
            Value::Array(items) => items.iter_mut().for_each(drop_null),
            other => drop_null(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode;

    /// The property names of the object schema at `pointer`, sorted.
    fn keys(schema: &serde_json::Value, pointer: &str) -> Vec<String> {
        let properties = schema
            .pointer(&format!("{pointer}/properties"))
            .and_then(|p| p.as_object())
            .unwrap_or_else(|| panic!("no properties at {pointer}"));
        let mut keys: Vec<String> = properties.keys().cloned().collect();
        keys.sort();
        keys
    }

    fn sorted(keys: &[&str]) -> Vec<String> {
        let mut keys: Vec<String> = keys.iter().map(|k| (*k).to_owned()).collect();
        keys.sort();
        keys
    }

    #[test]
    fn schema_and_decoder_know_the_same_keys() {
        let schema = json_schema();
        assert_eq!(keys(&schema, ""), sorted(decode::ROOT_KEYS));
        assert_eq!(keys(&schema, "/$defs/Remote"), sorted(decode::REMOTE_KEYS));
        assert_eq!(keys(&schema, "/$defs/Local"), sorted(decode::LOCAL_KEYS));
        assert_eq!(
            keys(&schema, "/$defs/Defaults"),
            sorted(decode::DEFAULTS_KEYS)
        );
        assert_eq!(
            keys(&schema, "/$defs/Collection"),
            sorted(decode::COLLECTION_KEYS)
        );
        assert_eq!(
            keys(&schema, "/$defs/FullField"),
            sorted(decode::FIELD_KEYS)
        );
        assert_eq!(
            keys(&schema, "/$defs/ArchiveSpec"),
            sorted(decode::DELETES_KEYS)
        );
        assert_eq!(
            keys(&schema, "/$defs/Archive"),
            sorted(decode::ARCHIVE_KEYS)
        );
    }

    #[test]
    fn schema_spells_enums_like_the_model() {
        let text = json_schema().to_string();
        for name in crate::FieldType::ALL.iter().map(|t| t.as_str()) {
            assert!(text.contains(&format!("\"{name}\"")), "{name}");
        }
        for name in crate::Strategy::ALL.iter().map(|t| t.as_str()) {
            assert!(text.contains(&format!("\"{name}\"")), "{name}");
        }
    }
}
