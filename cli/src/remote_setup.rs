//! Creating Directus collections from a deltasync configuration, over REST.
//!
//! Owns the one translation of a [`CollectionConfig`] into the body of `POST /collections`
//! (primary key, cursor, synced fields, archive field, activity logging) and the calls that
//! create the collections a server lacks. The demo, the tests and `scripts/directus seed` all
//! create collections through here, so a collection looks the same wherever it was made.
//!
//! Everything goes through the public Directus API with a [`DirectusClient`]: it works the
//! same against a real Directus and the bundled reference server. It never alters a collection
//! that exists (fields a server lacks are reported by `deltasync validate --remote`).
//! Many-to-one fields are created as plain key fields; [`ensure_collections`] (the seed) adds
//! their Directus relations once every collection exists.

use std::collections::BTreeSet;
use std::time::Duration;

use adapters::directus::Method;
use backon::{ExponentialBuilder, Retryable};
use serde_json::{Map, Value, json};

use deltasync::{CollectionConfig, Deletes, DirectusClient, FieldType, KeyType, RemoteError};

/// The Directus field type that holds a configured field type.
pub fn directus_type(kind: FieldType) -> &'static str {
    match kind {
        FieldType::String => "string",
        FieldType::Text => "text",
        FieldType::Integer => "integer",
        FieldType::Float => "float",
        FieldType::Boolean => "boolean",
        FieldType::Json => "json",
        FieldType::Uuid => "uuid",
        FieldType::Timestamp => "timestamp",
        FieldType::BigInteger => "bigInteger",
        FieldType::Decimal => "decimal",
        FieldType::DateTime => "dateTime",
        FieldType::Date => "date",
        FieldType::Time => "time",
        FieldType::Csv => "csv",
        FieldType::Geometry => "geometry",
        FieldType::Hash => "hash",
    }
}

/// The body of `POST /collections` that creates `c`: its primary key, its cursor (a
/// `timestamp` stamped on create and on update, or the two standard date fields), every
/// configured field, the archive field of
/// `deletes: archive` unless it is also a configured field, and `accountability: all` so that
/// deletes reach the activity log.
pub fn collection_definition(c: &CollectionConfig) -> Value {
    let mut fields = vec![primary_key(&c.primary_key, c.key_type)];
    match &c.cursor_created {
        None => fields.push(stamp_field(&c.cursor, &["date-created", "date-updated"])),
        Some(created) => {
            fields.push(stamp_field(created, &["date-created"]));
            fields.push(stamp_field(&c.cursor, &["date-updated"]));
        }
    }
    fields.extend(
        c.fields
            .iter()
            .filter(|f| !c.version_fields().any(|v| v == f.name))
            .map(|f| plain_field(&f.name, directus_type(f.kind))),
    );
    fields.extend(c.idempotency_field.as_deref().map(idempotency_field));
    let mut meta = Map::new();
    meta.insert("accountability".into(), json!("all"));
    if let Deletes::Archive { field, value } = &c.deletes {
        if c.field(field).is_none() {
            fields.push(plain_field(field, archive_type(value)));
        }
        meta.insert("archive_field".into(), json!(field));
        meta.insert("archive_value".into(), json!(archive_text(value)));
        meta.insert(
            "unarchive_value".into(),
            match value {
                Value::Bool(archived) => json!((!archived).to_string()),
                _ => Value::Null,
            },
        );
        meta.insert("archive_app_filter".into(), json!(true));
    }
    json!({"collection": c.name, "meta": meta, "schema": {}, "fields": fields})
}

fn primary_key(name: &str, key_type: KeyType) -> Value {
    match key_type {
        KeyType::Uuid => json!({"field": name, "type": "uuid", "meta": {"special": ["uuid"]},
            "schema": {"is_primary_key": true, "length": 36, "has_auto_increment": false}}),
        KeyType::Integer => json!({"field": name, "type": "integer", "meta": {},
            "schema": {"is_primary_key": true, "has_auto_increment": false}}),
        KeyType::AutoIncrement => json!({"field": name, "type": "integer", "meta": {},
            "schema": {"is_primary_key": true, "has_auto_increment": true}}),
        KeyType::String => json!({"field": name, "type": "string", "meta": {},
            "schema": {"is_primary_key": true, "length": 255, "has_auto_increment": false}}),
    }
}

/// A timestamp the server stamps: on create, on update, or both (the Data Studio's
/// `date_created` and `date_updated` are read-only in the app).
pub fn stamp_field(name: &str, specials: &[&str]) -> Value {
    json!({"field": name, "type": "timestamp",
        "meta": {"special": specials, "readonly": true}, "schema": {}})
}

/// The field that carries each create's idempotency key: unique, so that the server itself
/// refuses a create sent twice; hidden and read-only in the Data Studio.
pub fn idempotency_field(name: &str) -> Value {
    json!({"field": name, "type": "string",
        "meta": {"hidden": true, "readonly": true, "interface": "input",
            "note": "Set by deltasync: the idempotency key of the create that made this row"},
        "schema": {"is_unique": true, "is_nullable": true, "max_length": 255}})
}

/// A nullable field. Booleans carry the `cast-boolean` special, without which Directus on
/// SQLite answers 0 and 1 instead of false and true; JSON fields carry `cast-json`, which
/// Directus would add itself.
pub fn plain_field(name: &str, directus_type: &str) -> Value {
    let meta = match directus_type {
        "boolean" => json!({"special": ["cast-boolean"]}),
        "json" => json!({"special": ["cast-json"]}),
        "csv" => json!({"special": ["cast-csv"]}),
        "hash" => json!({"special": ["hash"]}),
        _ => json!({}),
    };
    json!({"field": name, "type": directus_type, "meta": meta, "schema": {}})
}

/// The Directus type of an archive field that is not also a configured field.
fn archive_type(value: &Value) -> &'static str {
    match value {
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "float",
        _ => "string",
    }
}

/// Directus keeps `archive_value` as text.
fn archive_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Creates `c` on the server (see [`collection_definition`]). Fails if it exists.
pub async fn create_collection(
    client: &DirectusClient,
    c: &CollectionConfig,
) -> Result<(), RemoteError> {
    let body = collection_definition(c);
    client
        .request(Method::POST, "/collections", &[], Some(&body), None)
        .await?;
    Ok(())
}

/// The names of the collections on the server (`GET /collections`), Directus's own included.
pub async fn existing_collections(
    client: &DirectusClient,
) -> Result<BTreeSet<String>, RemoteError> {
    let body = client
        .request(Method::GET, "/collections", &[], None, None)
        .await?;
    Ok(body["data"]
        .as_array()
        .map(|list| {
            list.iter()
                .filter_map(|c| c["collection"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default())
}

/// What [`ensure_collections`] did with one collection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It was missing and has been created.
    Created,
    /// It existed already and was left as it was.
    Existed,
    /// It existed already; the idempotency field its server-assigned keys need was added.
    AddedIdempotencyField,
}

/// Why [`ensure_collections`] stopped. Collections created before the failure stay.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SetupError {
    #[error("cannot list the collections on the server: {0}")]
    List(#[source] RemoteError),
    #[error("cannot complete collection {collection}: {source}")]
    Complete {
        collection: String,
        #[source]
        source: RemoteError,
    },
    #[error("cannot create collection {collection}: {source}")]
    Create {
        collection: String,
        #[source]
        source: RemoteError,
    },
}

/// Creates, in order, each of `collections` that the server lacks; leaves existing ones alone,
/// except that one whose keys the server assigns gets the idempotency field it lacks.
pub async fn ensure_collections(
    client: &DirectusClient,
    collections: &[CollectionConfig],
) -> Result<Vec<(String, Outcome)>, SetupError> {
    let existing = existing_collections(client)
        .await
        .map_err(SetupError::List)?;
    let mut done = Vec::with_capacity(collections.len());
    for c in collections {
        let outcome = if existing.contains(&c.name) {
            add_idempotency_field(client, c)
                .await
                .map_err(|source| SetupError::Complete {
                    collection: c.name.clone(),
                    source,
                })?
        } else {
            create_collection(client, c)
                .await
                .map_err(|source| SetupError::Create {
                    collection: c.name.clone(),
                    source,
                })?;
            Outcome::Created
        };
        done.push((c.name.clone(), outcome));
    }
    // Relations once every collection exists: a relation needs both of its ends.
    for (c, (_, outcome)) in collections.iter().zip(&done) {
        if *outcome == Outcome::Created {
            create_relations(client, c)
                .await
                .map_err(|source| SetupError::Create {
                    collection: c.name.clone(),
                    source,
                })?;
        }
    }
    Ok(done)
}

/// A Directus many-to-one relation for each field of `c` with `references`, as the Data Studio
/// makes them: `deltasync init` finds them again.
async fn create_relations(
    client: &DirectusClient,
    c: &CollectionConfig,
) -> Result<(), RemoteError> {
    for f in &c.fields {
        let Some(parent) = &f.references else {
            continue;
        };
        let relation = json!({"collection": c.name, "field": f.name, "related_collection": parent,
            "schema": {"on_delete": "SET NULL"}});
        create_relation(client, &relation).await?;
    }
    Ok(())
}

/// Creates a relation (the body of `POST /relations`) between collections that exist.
///
/// Directus checks both ends against its cached schema, and a request that read the schema
/// while a collection was being created can put the old schema back into that cache after
/// the creation cleared it (several requests at once make this likely). The relation is then
/// refused as `INVALID_PAYLOAD` naming a collection that exists, so that refusal is retried a
/// few times before it is believed.
pub async fn create_relation(client: &DirectusClient, relation: &Value) -> Result<(), RemoteError> {
    let backoff = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_times(5);
    (|| client.request(Method::POST, "/relations", &[], Some(relation), None))
        .retry(backoff)
        .when(|e: &RemoteError| e.code.as_deref() == Some("INVALID_PAYLOAD"))
        .await?;
    Ok(())
}

/// Adds the idempotency field `c` needs when the server lacks it.
async fn add_idempotency_field(
    client: &DirectusClient,
    c: &CollectionConfig,
) -> Result<Outcome, RemoteError> {
    let Some(name) = &c.idempotency_field else {
        return Ok(Outcome::Existed);
    };
    let fields = client.fields(&c.name).await?;
    let has = fields["data"]
        .as_array()
        .is_some_and(|list| list.iter().any(|f| f["field"] == json!(name)));
    if has {
        return Ok(Outcome::Existed);
    }
    add_field(client, &c.name, &idempotency_field(name)).await?;
    Ok(Outcome::AddedIdempotencyField)
}

/// Adds a field (the body of `POST /fields/:collection`) to an existing collection.
pub async fn add_field(
    client: &DirectusClient,
    collection: &str,
    field: &Value,
) -> Result<(), RemoteError> {
    client
        .request(
            Method::POST,
            &format!("/fields/{collection}"),
            &[],
            Some(field),
            None,
        )
        .await
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definition_has_key_cursor_fields_and_accountability() {
        let c = CollectionConfig::new("articles")
            .with_field("title", FieldType::String)
            .with_relation("author", FieldType::Uuid, "authors");
        let body = collection_definition(&c);
        assert_eq!(body["collection"], "articles");
        assert_eq!(body["meta"], json!({"accountability": "all"}));
        let fields = body["fields"].as_array().unwrap();
        let names: Vec<_> = fields
            .iter()
            .map(|f| f["field"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["id", "last_modified", "title", "author"]);
        assert_eq!(fields[0]["type"], "uuid");
        assert_eq!(fields[0]["schema"]["is_primary_key"], true);
        assert_eq!(fields[0]["meta"]["special"], json!(["uuid"]));
        assert_eq!(fields[1]["type"], "timestamp");
        assert_eq!(
            fields[1]["meta"]["special"],
            json!(["date-created", "date-updated"])
        );
        assert_eq!(fields[3]["type"], "uuid");
        assert_eq!(fields[3]["meta"], json!({}));
    }

    #[test]
    fn booleans_and_json_carry_their_cast() {
        let c = CollectionConfig::new("flags")
            .with_field("on", FieldType::Boolean)
            .with_field("data", FieldType::Json);
        let body = collection_definition(&c);
        assert_eq!(
            body["fields"][2]["meta"]["special"],
            json!(["cast-boolean"])
        );
        assert_eq!(body["fields"][3]["meta"]["special"], json!(["cast-json"]));
    }

    #[test]
    fn key_types_and_custom_names() {
        let mut c = CollectionConfig::new("tags");
        c.primary_key = "code".into();
        c.key_type = KeyType::String;
        c.cursor = "changed".into();
        let body = collection_definition(&c);
        assert_eq!(body["fields"][0]["field"], "code");
        assert_eq!(body["fields"][0]["type"], "string");
        assert_eq!(body["fields"][0]["schema"]["has_auto_increment"], false);
        assert_eq!(body["fields"][1]["field"], "changed");

        // Integer keys are chosen here, so the server must not number rows itself.
        c.key_type = KeyType::Integer;
        let body = collection_definition(&c);
        assert_eq!(body["fields"][0]["type"], "integer");
        assert_eq!(body["fields"][0]["schema"]["has_auto_increment"], false);

        let c = c.with_server_keys();
        let body = collection_definition(&c);
        assert_eq!(body["fields"][0]["type"], "integer");
        assert_eq!(body["fields"][0]["schema"]["has_auto_increment"], true);
        let idempotency = body["fields"].as_array().unwrap().last().unwrap().clone();
        assert_eq!(idempotency["field"], "deltasync_key");
        assert_eq!(idempotency["schema"]["is_unique"], true);
    }

    #[test]
    fn archive_field_is_added_once() {
        let mut c = CollectionConfig::new("posts").with_field("title", FieldType::String);
        c.deletes = Deletes::Archive {
            field: "archived".into(),
            value: json!(true),
        };
        let body = collection_definition(&c);
        let fields = body["fields"].as_array().unwrap();
        assert_eq!(fields.last().unwrap()["field"], "archived");
        assert_eq!(fields.last().unwrap()["type"], "boolean");
        assert_eq!(
            fields.last().unwrap()["meta"]["special"],
            json!(["cast-boolean"])
        );
        assert_eq!(body["meta"]["archive_field"], "archived");
        assert_eq!(body["meta"]["archive_value"], "true");
        assert_eq!(body["meta"]["unarchive_value"], "false");

        // A configured archive field keeps its configured type and is not repeated.
        let mut c = CollectionConfig::new("posts").with_field("status", FieldType::Text);
        c.deletes = Deletes::Archive {
            field: "status".into(),
            value: json!("archived"),
        };
        let body = collection_definition(&c);
        let fields = body["fields"].as_array().unwrap();
        assert_eq!(fields.len(), 3);
        assert_eq!(fields[2]["type"], "text");
        assert_eq!(body["meta"]["archive_value"], "archived");
        assert_eq!(body["meta"]["unarchive_value"], Value::Null);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ensure_creates_what_is_missing_and_leaves_the_rest() {
        let server = refserver::start(Default::default()).await.unwrap();
        let remote = schema::RemoteConfig::new(
            server.url(),
            deltasync::Auth::Token(deltasync::Secret::new(server.admin_token())),
        );
        let client = DirectusClient::new(&remote).unwrap();
        let authors = CollectionConfig::new("authors").with_field("name", FieldType::String);
        create_collection(&client, &authors).await.unwrap();
        let mut articles = CollectionConfig::new("articles")
            .with_field("title", FieldType::String)
            .with_field("meta", FieldType::Json)
            .with_relation("author", FieldType::Uuid, "authors");
        articles.deletes = Deletes::Archive {
            field: "archived".into(),
            value: json!(true),
        };
        let done = ensure_collections(&client, &[authors.clone(), articles.clone()])
            .await
            .unwrap();
        assert_eq!(
            done,
            [
                ("authors".to_owned(), Outcome::Existed),
                ("articles".to_owned(), Outcome::Created)
            ]
        );
        let fields = client.fields("articles").await.unwrap();
        let names: Vec<_> = fields["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["field"].as_str().unwrap().to_owned())
            .collect();
        for name in ["id", "last_modified", "title", "meta", "author", "archived"] {
            assert!(names.iter().any(|n| n == name), "{name} in {names:?}");
        }
        let again = ensure_collections(&client, &[authors, articles])
            .await
            .unwrap();
        assert!(again.iter().all(|(_, o)| *o == Outcome::Existed));
        server.shutdown().await;
    }
}
