//! Collection and field definitions, as sent to `POST /collections` and `POST /fields`.
//!
//! Owns: the definition types (deserialised from the Directus request bodies, or built in
//! code), their validation into the compiled [`Collection`] the store uses, and the JSON
//! descriptions `GET /collections/:c` and `GET /fields/:c` return. Must not: hold rows.

use crate::error::Error;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// The Directus field types the server supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum FieldType {
    Uuid,
    String,
    Text,
    Integer,
    BigInteger,
    Float,
    Decimal,
    Boolean,
    Json,
    Timestamp,
    DateTime,
    Date,
    Time,
    Csv,
    Hash,
}

impl FieldType {
    /// The name Directus uses in `type`.
    pub fn as_str(self) -> &'static str {
        match self {
            FieldType::Uuid => "uuid",
            FieldType::String => "string",
            FieldType::Text => "text",
            FieldType::Integer => "integer",
            FieldType::BigInteger => "bigInteger",
            FieldType::Float => "float",
            FieldType::Decimal => "decimal",
            FieldType::Boolean => "boolean",
            FieldType::Json => "json",
            FieldType::Timestamp => "timestamp",
            FieldType::DateTime => "dateTime",
            FieldType::Date => "date",
            FieldType::Time => "time",
            FieldType::Csv => "csv",
            FieldType::Hash => "hash",
        }
    }

    /// The column type reported in `schema.data_type` (SQLite's, as Directus creates them).
    fn data_type(self) -> &'static str {
        match self {
            FieldType::Uuid => "char",
            FieldType::String => "varchar",
            FieldType::Text => "text",
            FieldType::Integer => "integer",
            FieldType::BigInteger => "bigint",
            FieldType::Float | FieldType::Decimal => "float",
            FieldType::Boolean => "boolean",
            FieldType::Json => "json",
            FieldType::Timestamp | FieldType::DateTime => "datetime",
            FieldType::Date => "date",
            FieldType::Time => "time",
            FieldType::Csv => "text",
            FieldType::Hash => "varchar",
        }
    }

    /// The column definition in the `CREATE TABLE` statement SQLite keeps.
    fn column_sql(self) -> &'static str {
        match self {
            FieldType::Uuid => "char(36)",
            FieldType::String => "varchar(255)",
            other => other.data_type(),
        }
    }

    /// `schema.max_length`.
    fn max_length(self) -> Value {
        match self {
            FieldType::Uuid => json!(36),
            FieldType::String => json!(255),
            _ => Value::Null,
        }
    }

    /// Whether values are instants (stored as epoch milliseconds).
    pub(crate) fn is_temporal(self) -> bool {
        matches!(
            self,
            FieldType::Timestamp | FieldType::DateTime | FieldType::Date
        )
    }

    /// Whether values are numbers.
    pub(crate) fn is_numeric(self) -> bool {
        matches!(
            self,
            FieldType::Integer | FieldType::BigInteger | FieldType::Float | FieldType::Decimal
        )
    }

    /// The filter operators Directus allows for the type (`getFilterOperatorsForType`,
    /// without the leading underscore). `timestamp` falls to Directus's default list.
    pub(crate) fn filter_operators(self) -> &'static [&'static str] {
        const TEXT: &[&str] = &[
            "contains",
            "ncontains",
            "icontains",
            "starts_with",
            "nstarts_with",
            "istarts_with",
            "nistarts_with",
            "ends_with",
            "nends_with",
            "iends_with",
            "niends_with",
            "eq",
            "neq",
            "empty",
            "nempty",
            "null",
            "nnull",
            "in",
            "nin",
        ];
        const RANGE: &[&str] = &[
            "eq", "neq", "lt", "lte", "gt", "gte", "between", "nbetween", "null", "nnull", "in",
            "nin",
        ];
        const DEFAULT: &[&str] = &[
            "contains",
            "ncontains",
            "eq",
            "neq",
            "lt",
            "lte",
            "gt",
            "gte",
            "between",
            "nbetween",
            "empty",
            "nempty",
            "null",
            "nnull",
            "in",
            "nin",
        ];
        match self {
            FieldType::String | FieldType::Text => TEXT,
            FieldType::Uuid => &["eq", "neq", "null", "nnull", "in", "nin"],
            FieldType::Json => &["null", "nnull"],
            FieldType::Boolean => &["eq", "neq", "null", "nnull"],
            FieldType::Integer
            | FieldType::BigInteger
            | FieldType::Float
            | FieldType::Decimal
            | FieldType::DateTime
            | FieldType::Date
            | FieldType::Time => RANGE,
            FieldType::Csv | FieldType::Hash => TEXT,
            FieldType::Timestamp => DEFAULT,
        }
    }
}

/// A collection definition: the body of `POST /collections`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CollectionDef {
    pub collection: String,
    /// Directus collection meta (`accountability`, `archive_field`, ...); kept as sent.
    #[serde(default)]
    pub meta: Option<Map<String, Value>>,
    #[serde(default)]
    pub schema: Option<Value>,
    #[serde(default)]
    pub fields: Vec<FieldDef>,
}

/// A field definition: one entry of `fields`, or the body of `POST /fields/:c`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FieldDef {
    pub field: String,
    #[serde(rename = "type")]
    pub kind: FieldType,
    #[serde(default)]
    pub meta: Option<FieldMeta>,
    #[serde(default)]
    pub schema: Option<FieldSchema>,
}

/// Field meta; only `special` changes behaviour, the rest is echoed back.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FieldMeta {
    #[serde(default)]
    pub special: Option<Vec<String>>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// Field column options.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FieldSchema {
    #[serde(default)]
    pub is_primary_key: bool,
    #[serde(default)]
    pub has_auto_increment: bool,
    #[serde(default)]
    pub is_nullable: Option<bool>,
    #[serde(default)]
    pub is_unique: bool,
    #[serde(default)]
    pub default_value: Value,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

impl CollectionDef {
    /// A collection with no fields yet (an integer `id` is added if no primary key is given).
    pub fn new(name: &str) -> Self {
        CollectionDef {
            collection: name.into(),
            schema: Some(json!({})),
            ..Default::default()
        }
    }

    /// Adds a field.
    pub fn field(mut self, field: FieldDef) -> Self {
        self.fields.push(field);
        self
    }

    /// Sets `meta.accountability` (`Some("all")` is the default, `None` logs nothing).
    pub fn accountability(mut self, value: Option<&str>) -> Self {
        let meta = self.meta.get_or_insert_with(Map::new);
        meta.insert(
            "accountability".into(),
            value.map_or(Value::Null, |v| json!(v)),
        );
        self
    }
}

impl FieldDef {
    /// A plain nullable field.
    pub fn new(name: &str, kind: FieldType) -> Self {
        FieldDef {
            field: name.into(),
            kind,
            meta: None,
            schema: None,
        }
    }

    /// A uuid primary key generated on create, as the Directus app defines one.
    pub fn uuid_pk(name: &str) -> Self {
        FieldDef::new(name, FieldType::Uuid)
            .special(&["uuid"])
            .primary_key()
    }

    /// An integer auto-increment primary key.
    pub fn integer_pk(name: &str) -> Self {
        let mut f = FieldDef::new(name, FieldType::Integer).primary_key();
        f.schema_mut().has_auto_increment = true;
        f
    }

    /// A `timestamp` stamped on create and on every update: the sync cursor column.
    pub fn sync_timestamp(name: &str) -> Self {
        FieldDef::new(name, FieldType::Timestamp).special(&["date-created", "date-updated"])
    }

    /// Sets `meta.special`.
    pub fn special(mut self, specials: &[&str]) -> Self {
        let meta = self.meta.get_or_insert_with(FieldMeta::default);
        meta.special = Some(specials.iter().map(|s| (*s).to_string()).collect());
        self
    }

    /// Marks the field as the primary key.
    pub fn primary_key(mut self) -> Self {
        self.schema_mut().is_primary_key = true;
        self
    }

    /// Forbids NULL.
    pub fn not_null(mut self) -> Self {
        self.schema_mut().is_nullable = Some(false);
        self
    }

    /// Requires values to be unique.
    pub fn unique(mut self) -> Self {
        self.schema_mut().is_unique = true;
        self
    }

    /// The column default used on create when the field is absent.
    pub fn default_value(mut self, value: Value) -> Self {
        self.schema_mut().default_value = value;
        self
    }

    fn schema_mut(&mut self) -> &mut FieldSchema {
        self.schema.get_or_insert_with(FieldSchema::default)
    }
}

/// A validated field as the store uses it.
#[derive(Debug, Clone)]
pub(crate) struct Field {
    pub name: String,
    /// The type Directus reports and works with, read back from the column and `special`
    /// (on SQLite a `uuid` without the `uuid` special reads back as `string`, a `decimal` as
    /// `float`).
    pub kind: FieldType,
    /// The type the field was created with, which decides the column.
    pub column: FieldType,
    /// Whether the field has a `directus_fields` row (`meta` is `null` without one).
    pub has_meta: bool,
    pub specials: Vec<String>,
    pub pk: bool,
    pub auto_increment: bool,
    pub nullable: bool,
    pub unique: bool,
    pub default: Value,
    /// Meta id reported by `GET /fields` (Directus numbers `directus_fields` rows).
    pub meta_id: u64,
    pub meta_extra: Map<String, Value>,
}

impl Field {
    pub(crate) fn has_special(&self, special: &str) -> bool {
        self.specials.iter().any(|s| s == special)
    }

    /// Validates a definition; `meta_id` numbers it like a `directus_fields` row.
    pub(crate) fn compile(def: &FieldDef, meta_id: u64) -> Result<Field, Error> {
        if def.field.is_empty() {
            return Err(Error::InvalidPayload("\"field\" is required".into()));
        }
        let schema = def.schema.clone().unwrap_or_default();
        let meta = def.meta.clone().unwrap_or_default();
        let pk = schema.is_primary_key;
        if pk
            && !matches!(
                def.kind,
                FieldType::Uuid | FieldType::String | FieldType::Integer | FieldType::BigInteger
            )
        {
            return Err(Error::InvalidPayload(format!(
                "Field \"{}\" of type \"{}\" can't be a primary key",
                def.field,
                def.kind.as_str()
            )));
        }
        let auto_increment = schema.has_auto_increment
            && matches!(def.kind, FieldType::Integer | FieldType::BigInteger);
        let mut specials = meta.special.unwrap_or_default();
        // Directus adds the cast a type needs to read back right.
        let cast = match def.kind {
            FieldType::Timestamp => Some("cast-timestamp"),
            FieldType::Json => Some("cast-json"),
            _ => None,
        };
        if let Some(cast) = cast.filter(|c| !specials.iter().any(|s| s == c)) {
            specials.push(cast.to_string());
        }
        let kind = match def.kind {
            FieldType::Uuid if !specials.iter().any(|s| s == "uuid") => FieldType::String,
            FieldType::Decimal => FieldType::Float,
            other => other,
        };
        Ok(Field {
            name: def.field.clone(),
            kind,
            column: def.kind,
            has_meta: def.meta.is_some() || cast.is_some(),
            specials,
            pk,
            auto_increment,
            nullable: !pk && schema.is_nullable.unwrap_or(true),
            unique: schema.is_unique,
            default: schema.default_value,
            meta_id,
            meta_extra: meta.other,
        })
    }

    /// The entry `GET /fields/:c` returns for this field.
    pub(crate) fn describe(&self, collection: &str, sort: usize) -> Value {
        let meta = if self.has_meta {
            let mut meta = Map::new();
            meta.insert("id".into(), json!(self.meta_id));
            meta.insert("collection".into(), json!(collection));
            meta.insert("field".into(), json!(self.name));
            let special = if self.specials.is_empty() {
                Value::Null
            } else {
                json!(self.specials)
            };
            meta.insert("special".into(), special);
            for key in ["interface", "options", "display", "display_options"] {
                meta.insert(key.into(), Value::Null);
            }
            meta.insert("readonly".into(), json!(false));
            meta.insert("hidden".into(), json!(false));
            meta.insert("sort".into(), json!(sort));
            meta.insert("width".into(), json!("full"));
            for key in ["translations", "note", "conditions"] {
                meta.insert(key.into(), Value::Null);
            }
            meta.insert("required".into(), json!(false));
            for key in ["group", "validation", "validation_message"] {
                meta.insert(key.into(), Value::Null);
            }
            meta.insert("searchable".into(), json!(true));
            meta.extend(self.meta_extra.clone());
            Value::Object(meta)
        } else {
            Value::Null
        };
        json!({
            "collection": collection,
            "field": self.name,
            "type": self.kind.as_str(),
            "schema": {
                "name": self.name,
                "table": collection,
                "data_type": self.column.data_type(),
                "default_value": self.default,
                "max_length": self.column.max_length(),
                "numeric_precision": Value::Null,
                "numeric_scale": Value::Null,
                "is_generated": false,
                "generation_expression": Value::Null,
                "is_nullable": self.nullable,
                "is_unique": self.unique || self.pk,
                "is_indexed": self.unique && !self.pk,
                "is_primary_key": self.pk,
                "has_auto_increment": self.auto_increment,
                "foreign_key_column": Value::Null,
                "foreign_key_table": Value::Null,
            },
            "meta": meta,
        })
    }

    /// The column in SQLite's `CREATE TABLE` statement.
    fn column_sql(&self) -> String {
        let mut sql = format!("`{}` {}", self.name, self.column.column_sql());
        if self.pk && self.auto_increment {
            sql.push_str(" not null primary key autoincrement");
        } else if self.nullable {
            sql.push_str(" null");
        } else {
            sql.push_str(" not null");
        }
        sql
    }
}

/// A validated collection as the store uses it.
#[derive(Debug, Clone)]
pub(crate) struct Collection {
    pub name: String,
    pub fields: Vec<Field>,
    /// Index of the primary key in `fields`.
    pub pk: usize,
    /// `meta.accountability`: `Some("all")` by default, `None` disables activity.
    pub accountability: Option<String>,
    pub meta: Map<String, Value>,
}

impl Collection {
    /// Validates a definition. `next_meta_id` numbers the fields.
    pub(crate) fn compile(def: &CollectionDef, next_meta_id: &mut u64) -> Result<Self, Error> {
        if def.collection.is_empty() {
            return Err(Error::InvalidPayload("\"collection\" is required".into()));
        }
        let mut defs = def.fields.clone();
        let pk_count = defs
            .iter()
            .filter(|f| f.schema.as_ref().is_some_and(|s| s.is_primary_key))
            .count();
        if pk_count > 1 {
            return Err(Error::InvalidPayload(
                "A collection can only have one primary key".into(),
            ));
        }
        if pk_count == 0 {
            // Directus gives every collection a primary key: an auto-increment integer `id`.
            if defs.iter().any(|f| f.field == "id") {
                return Err(Error::InvalidPayload(
                    "Field \"id\" has to be the primary key when no other primary key is given"
                        .into(),
                ));
            }
            defs.insert(0, FieldDef::integer_pk("id"));
        }
        let mut fields: Vec<Field> = Vec::with_capacity(defs.len());
        for f in &defs {
            if fields.iter().any(|existing| existing.name == f.field) {
                return Err(Error::InvalidPayload(format!(
                    "Field \"{}\" is defined twice",
                    f.field
                )));
            }
            *next_meta_id += 1;
            fields.push(Field::compile(f, *next_meta_id)?);
        }
        let pk = fields.iter().position(|f| f.pk).unwrap_or(0);
        let meta = def.meta.clone().unwrap_or_default();
        let accountability = match meta.get("accountability") {
            None => Some("all".to_string()),
            Some(Value::Null) => None,
            Some(v) => Some(v.as_str().unwrap_or("all").to_string()),
        };
        Ok(Collection {
            name: def.collection.clone(),
            fields,
            pk,
            accountability,
            meta,
        })
    }

    pub(crate) fn field_index(&self, name: &str) -> Option<usize> {
        self.fields.iter().position(|f| f.name == name)
    }

    pub(crate) fn pk_field(&self) -> &Field {
        &self.fields[self.pk]
    }

    /// The object `GET /collections/:c` returns.
    pub(crate) fn describe(&self) -> Value {
        let mut meta = Map::new();
        meta.insert("collection".into(), json!(self.name));
        for key in ["icon", "note", "display_template"] {
            meta.insert(key.into(), Value::Null);
        }
        meta.insert("hidden".into(), json!(false));
        meta.insert("singleton".into(), json!(false));
        meta.insert("translations".into(), Value::Null);
        meta.insert("archive_field".into(), Value::Null);
        meta.insert("archive_app_filter".into(), json!(true));
        meta.insert("archive_value".into(), Value::Null);
        meta.insert("unarchive_value".into(), Value::Null);
        meta.insert("sort_field".into(), Value::Null);
        meta.insert("color".into(), Value::Null);
        meta.insert("item_duplication_fields".into(), Value::Null);
        meta.insert("sort".into(), Value::Null);
        meta.insert("group".into(), Value::Null);
        meta.insert("collapse".into(), json!("open"));
        meta.insert("preview_url".into(), Value::Null);
        meta.insert("versioning".into(), json!(false));
        meta.insert("status".into(), json!("active"));
        meta.insert("autosave_revision_interval".into(), Value::Null);
        meta.extend(self.meta.clone());
        meta.insert("collection".into(), json!(self.name));
        meta.insert("accountability".into(), json!(self.accountability));
        json!({ "collection": self.name, "meta": meta, "schema": { "name": self.name, "sql": self.create_table_sql() } })
    }

    /// The statement SQLite keeps for the table (`sqlite_master.sql`), as Directus's schema
    /// builder writes it.
    fn create_table_sql(&self) -> String {
        let mut columns: Vec<String> = self.fields.iter().map(Field::column_sql).collect();
        let pk = self.pk_field();
        if !pk.auto_increment {
            columns.push(format!("primary key (`{}`)", pk.name));
        }
        format!("CREATE TABLE `{}` ({})", self.name, columns.join(", "))
    }

    /// The array `GET /fields/:c` returns.
    pub(crate) fn describe_fields(&self) -> Value {
        Value::Array(
            self.fields
                .iter()
                .enumerate()
                .map(|(i, f)| f.describe(&self.name, i + 1))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_directus_request_body() {
        let body = json!({
            "collection": "notes",
            "meta": {"accountability": null},
            "schema": {},
            "fields": [
                {"field": "id", "type": "uuid", "meta": {"special": ["uuid"]},
                 "schema": {"is_primary_key": true, "length": 36, "has_auto_increment": false}},
                {"field": "last_modified", "type": "timestamp",
                 "meta": {"special": ["date-created", "date-updated"]}}
            ]
        });
        let def: CollectionDef = serde_json::from_value(body).unwrap();
        let mut ids = 0;
        let c = Collection::compile(&def, &mut ids).unwrap();
        assert_eq!(c.pk_field().name, "id");
        assert_eq!(c.accountability, None);
        assert!(c.fields[1].has_special("date-updated"));
    }

    #[test]
    fn adds_integer_id_without_primary_key() {
        let def = CollectionDef::new("tags").field(FieldDef::new("name", FieldType::String));
        let mut ids = 0;
        let c = Collection::compile(&def, &mut ids).unwrap();
        assert_eq!(c.pk_field().name, "id");
        assert!(c.pk_field().auto_increment);
        assert_eq!(c.accountability.as_deref(), Some("all"));
    }
}
