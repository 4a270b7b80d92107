//! The typed configuration model.
//!
//! This module owns the plain data types that the rest of the workspace reads ([`Config`] and
//! everything below it), their defaults, and their YAML spellings. It must not read files,
//! parse YAML or validate: a value of these types may be built in code and is only checked by
//! [`Config::validate`](crate::Config::validate).

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

/// Default `local.database`: a SQLite file next to the schema file.
pub const DEFAULT_DATABASE: &str = "sqlite://deltasync.db";
/// Default `remote.timeout_seconds`.
pub const DEFAULT_TIMEOUT_SECONDS: u64 = 30;
/// Default `remote.max_retries`.
pub const DEFAULT_MAX_RETRIES: u32 = 5;
/// Default cursor field: a Directus `timestamp` stamped on create and on update.
pub const DEFAULT_CURSOR: &str = "last_modified";
/// Default primary key field.
pub const DEFAULT_PRIMARY_KEY: &str = "id";
/// Default number of rows per pulled page.
pub const DEFAULT_PAGE_SIZE: u32 = 2500;
/// Largest allowed page size.
pub const MAX_PAGE_SIZE: u32 = 10_000;
/// Default server field that carries each create's idempotency key, for collections whose
/// keys the server assigns.
pub const DEFAULT_IDEMPOTENCY_FIELD: &str = "deltasync_key";
/// Default number of seconds re-read before the cursor on every pull.
pub const DEFAULT_OVERLAP_SECONDS: u32 = 10;

/// A whole schema file: where the server is, where the local database is, what to sync.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Config {
    /// The file this configuration was loaded from, if any.
    pub source: Option<PathBuf>,
    /// The Directus server.
    pub remote: RemoteConfig,
    /// The local database.
    pub local: LocalConfig,
    /// The synced collections, in file order.
    pub collections: Vec<CollectionConfig>,
}

impl Config {
    /// A configuration built in code: a server with a static token, a database URL and the
    /// collections. Check it with [`Config::validate`] (opening an engine does).
    pub fn new(
        url: impl Into<String>,
        token: impl Into<String>,
        database: impl Into<String>,
        collections: Vec<CollectionConfig>,
    ) -> Self {
        Config {
            source: None,
            remote: RemoteConfig::new(url, Auth::Token(Secret::new(token))),
            local: LocalConfig {
                database: database.into(),
            },
            collections,
        }
    }

    /// The collection configured under `name`, if any.
    pub fn collection(&self, name: &str) -> Option<&CollectionConfig> {
        self.collections.iter().find(|c| c.name == name)
    }
}

/// How to reach the Directus server.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RemoteConfig {
    /// Base URL without a trailing slash, e.g. `http://127.0.0.1:8055`.
    pub url: String,
    /// How to authenticate.
    pub auth: Auth,
    /// Timeout of one HTTP request.
    pub timeout_seconds: u64,
    /// How often a failed request that may be repeated is retried.
    pub max_retries: u32,
}

impl RemoteConfig {
    /// A remote with the default timeout and retry count.
    pub fn new(url: impl Into<String>, auth: Auth) -> Self {
        RemoteConfig {
            url: url.into(),
            auth,
            timeout_seconds: DEFAULT_TIMEOUT_SECONDS,
            max_retries: DEFAULT_MAX_RETRIES,
        }
    }
}

/// Credentials for Directus.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Auth {
    /// A static token sent as `Authorization: Bearer <token>`.
    Token(Secret),
    /// Email and password exchanged for short-lived access tokens.
    Login {
        /// The user's email.
        email: String,
        /// The user's password.
        password: Secret,
    },
}

/// A credential that never shows up in logs, debug output or serialized configurations.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a credential.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The credential itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str("***")
    }
}

/// Where the local tables live.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LocalConfig {
    /// A `sqlite:` or `postgres:`/`postgresql:` URL. Relative SQLite paths of a loaded file are
    /// already resolved against the file's directory.
    pub database: String,
}

impl Default for LocalConfig {
    fn default() -> Self {
        LocalConfig {
            database: DEFAULT_DATABASE.to_owned(),
        }
    }
}

/// One Directus collection synced with one local table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CollectionConfig {
    /// The Directus collection name.
    pub name: String,
    /// The local table name.
    pub table: String,
    /// The primary key field, on both sides.
    pub primary_key: String,
    /// The type of the primary key.
    pub key_type: KeyType,
    /// The Directus `timestamp` field that holds a row's version: stamped on update, and on
    /// create too unless `cursor_created` is set. Its local column holds the version.
    pub cursor: String,
    /// The field stamped on create only (Directus `date_created`), when `cursor` is stamped
    /// on update only (`date_updated`): a row never updated has the version in this field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor_created: Option<String>,
    /// The synced fields, in file order; never contains the primary key or the cursor.
    pub fields: Vec<FieldConfig>,
    /// For `key_type: auto_increment`: the unique string field on the server that carries
    /// each create's idempotency key, so that a create whose answer was lost is found, never
    /// made twice. `None`: no such field (a create whose answer was lost may be made twice).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idempotency_field: Option<String>,
    /// How a row changed on both sides is resolved.
    pub conflict: Strategy,
    /// Whether edits of different fields of one row are merged before the strategy decides.
    pub merge: Merge,
    /// How remote deletions are learned.
    pub deletes: Deletes,
    /// Rows per pulled page.
    pub page_size: u32,
    /// Seconds re-read before the cursor on every pull, for late commits.
    pub overlap_seconds: u32,
    /// Seconds between a sync service's cycles of this collection when nothing calls for
    /// one sooner; `None`: the service's own interval.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval_seconds: Option<u32>,
    /// A Directus filter object restricting the synced rows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filter: Option<serde_json::Value>,
}

impl CollectionConfig {
    /// A collection with every option at its default and no fields yet.
    pub fn new(name: impl Into<String>) -> Self {
        let name = name.into();
        CollectionConfig {
            table: name.clone(),
            name,
            primary_key: DEFAULT_PRIMARY_KEY.to_owned(),
            key_type: KeyType::Uuid,
            cursor: DEFAULT_CURSOR.to_owned(),
            cursor_created: None,
            idempotency_field: None,
            fields: Vec::new(),
            conflict: Strategy::LastWriteWins,
            merge: Merge::Fields,
            deletes: Deletes::Activity,
            page_size: DEFAULT_PAGE_SIZE,
            overlap_seconds: DEFAULT_OVERLAP_SECONDS,
            interval_seconds: None,
            filter: None,
        }
    }

    /// The field named `name`, if configured.
    pub fn field(&self, name: &str) -> Option<&FieldConfig> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// Syncs on Directus's standard date fields: the version is `date_updated`, or
    /// `date_created` while the row was never updated.
    #[must_use]
    pub fn with_date_cursor(mut self) -> Self {
        self.cursor = "date_updated".to_owned();
        self.cursor_created = Some("date_created".to_owned());
        self
    }

    /// Keys assigned by the server (auto-increment integers), with creates found again by the
    /// default idempotency field.
    #[must_use]
    pub fn with_server_keys(mut self) -> Self {
        self.key_type = KeyType::AutoIncrement;
        self.idempotency_field = Some(DEFAULT_IDEMPOTENCY_FIELD.to_owned());
        self
    }

    /// The server fields that carry a row's version: the cursor, and the created field.
    pub fn version_fields(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.cursor.as_str()).chain(self.cursor_created.as_deref())
    }

    /// Whether `field` is filled by the server and never pushed.
    pub fn is_read_only(&self, field: &FieldConfig) -> bool {
        field.read_only
            || field.kind == FieldType::Hash
            || self.cursor_created.as_deref() == Some(field.name.as_str())
    }

    /// Adds a plain field.
    #[must_use]
    pub fn with_field(mut self, name: impl Into<String>, kind: FieldType) -> Self {
        self.fields.push(FieldConfig::new(name, kind));
        self
    }

    /// Adds a many-to-one relation field holding the key of a row of `collection`.
    #[must_use]
    pub fn with_relation(
        mut self,
        name: impl Into<String>,
        kind: FieldType,
        collection: impl Into<String>,
    ) -> Self {
        let mut field = FieldConfig::new(name, kind);
        field.references = Some(collection.into());
        self.fields.push(field);
        self
    }
}

/// One synced field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldConfig {
    /// The field name, on both sides.
    pub name: String,
    /// The field type.
    #[serde(rename = "type")]
    pub kind: FieldType,
    /// For a many-to-one relation, the configured collection the value points to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub references: Option<String>,
    /// Filled by the server (e.g. `user_created`, or a field the token may only read): pulled,
    /// never pushed.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
}

impl FieldConfig {
    /// A plain field.
    pub fn new(name: impl Into<String>, kind: FieldType) -> Self {
        FieldConfig {
            name: name.into(),
            kind,
            references: None,
            read_only: false,
        }
    }
}

/// Declares a closed set of YAML spellings with `as_str`, `Display`, `ALL` and a lookup.
macro_rules! spelled_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident { $( $(#[$vmeta:meta])* $variant:ident => $text:literal, )+ }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
        pub enum $name {
            $( $(#[$vmeta])* #[serde(rename = $text)] $variant, )+
        }

        impl $name {
            /// Every value, in documentation order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The spelling used in schema files.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }

            /// The value spelled `text` in schema files, if any.
            pub fn from_name(text: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|v| v.as_str() == text)
            }

            /// The allowed spellings joined for error messages.
            pub(crate) fn expected() -> String {
                Self::ALL.iter().map(|v| v.as_str()).collect::<Vec<_>>().join(", ")
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

spelled_enum! {
    /// The type of a primary key.
    pub enum KeyType {
        /// A UUID generated by the client, so a retried create is recognisable.
        Uuid => "uuid",
        /// A string chosen by the client.
        String => "string",
        /// An integer chosen by the client.
        Integer => "integer",
        /// An integer the server assigns (Directus auto-increment): a row created locally
        /// has a negative temporary key until the server has created it.
        AutoIncrement => "auto_increment",
    }
}

spelled_enum! {
    /// The type of a synced field.
    pub enum FieldType {
        /// Short text (Directus `string`).
        String => "string",
        /// Long text (Directus `text`).
        Text => "text",
        /// 64-bit integer (Directus `integer` or `bigInteger`).
        Integer => "integer",
        /// Floating point number (Directus `float`, `decimal`).
        Float => "float",
        /// `true` or `false`.
        Boolean => "boolean",
        /// Any JSON value.
        Json => "json",
        /// A UUID.
        Uuid => "uuid",
        /// A UTC timestamp (Directus `timestamp`).
        Timestamp => "timestamp",
        /// A 64-bit integer Directus may send as a JSON string (Directus `bigInteger`).
        BigInteger => "bigInteger",
        /// An exact decimal number, kept as its text (Directus `decimal`).
        Decimal => "decimal",
        /// A date and time without time zone, `2026-01-02T03:04:05` (Directus `dateTime`).
        DateTime => "dateTime",
        /// A day, `2026-01-02` (Directus `date`).
        Date => "date",
        /// A time of day without time zone, `03:04:05` (Directus `time`).
        Time => "time",
        /// A list of strings (Directus `csv`).
        Csv => "csv",
        /// A GeoJSON geometry (Directus `geometry` and its `geometry.*` types).
        Geometry => "geometry",
        /// A hashed value (Directus `hash`): pulled, never pushed.
        Hash => "hash",
    }
}

impl FieldType {
    /// The field type that holds a key of type `key`, used by relation fields.
    pub fn for_key(key: KeyType) -> FieldType {
        match key {
            KeyType::Uuid => FieldType::Uuid,
            KeyType::String => FieldType::String,
            KeyType::Integer | KeyType::AutoIncrement => FieldType::Integer,
        }
    }
}

spelled_enum! {
    /// How a row changed on both sides since its last sync is resolved.
    pub enum Strategy {
        /// The change with the later timestamp wins.
        LastWriteWins => "last_write_wins",
        /// The change that reached the server first wins; the local change is discarded and
        /// recorded.
        FirstWriteWins => "first_write_wins",
        /// Both versions are parked as a conflict for a person to resolve.
        Manual => "manual",
    }
}

spelled_enum! {
    /// What a conflict compares: fields, or whole rows.
    pub enum Merge {
        /// Fields changed on one side only are taken from that side; only fields changed
        /// on both sides to different values go to the strategy.
        Fields => "fields",
        /// The strategy decides for the whole row, whichever fields changed.
        Rows => "rows",
    }
}

/// How deletions on the server are learned.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Deletes {
    /// From the Directus activity log (`action = delete`).
    Activity,
    /// Remote deletions are not synced.
    None,
    /// Rows are soft-deleted on the server by setting `field` to `value`.
    Archive {
        /// The archive field.
        field: String,
        /// The value that marks a row as archived.
        value: serde_json::Value,
    },
}

impl Deletes {
    /// The spellings of the plain (non-archive) forms.
    pub(crate) const PLAIN: &'static [&'static str] = &["activity", "none"];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_prints() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret}"), "***");
        assert_eq!(format!("{secret:?}"), "***");
        assert_eq!(
            serde_json::to_string(&secret).ok().as_deref(),
            Some("\"***\"")
        );
        assert_eq!(secret.expose(), "hunter2");
        let auth = Auth::Login {
            email: "a@b.c".into(),
            password: secret,
        };
        assert!(!format!("{auth:?}").contains("hunter2"));
    }

    #[test]
    fn spellings_round_trip() {
        for kind in FieldType::ALL {
            assert_eq!(FieldType::from_name(kind.as_str()), Some(*kind));
            assert_eq!(kind.to_string(), kind.as_str());
        }
        assert_eq!(Strategy::LastWriteWins.as_str(), "last_write_wins");
        assert_eq!(KeyType::from_name("int"), None);
        assert_eq!(
            Strategy::expected(),
            "last_write_wins, first_write_wins, manual"
        );
    }

    #[test]
    fn new_collection_has_defaults() {
        let c = CollectionConfig::new("articles")
            .with_field("title", FieldType::String)
            .with_relation("author", FieldType::Uuid, "authors");
        assert_eq!(c.table, "articles");
        assert_eq!(c.primary_key, "id");
        assert_eq!(c.cursor, "last_modified");
        assert_eq!(c.page_size, 2500);
        assert_eq!(
            c.field("author").and_then(|f| f.references.as_deref()),
            Some("authors")
        );
        assert!(c.field("nope").is_none());
    }
}
