//! `deltasync init`: a schema file written from what a Directus server has.
//!
//! Owns the translation of a server's collections, fields and relations into a schema file
//! (key types, cursors, field types, relations, delete modes) and the notes on what it left
//! out and why. [`plan`] is pure: the server's schema in, the file's text and the notes out.
//! [`run`] reads the server, offers the fields a safe sync needs, and writes the file. It
//! never writes a secret: the token is read from `${DIRECTUS_TOKEN}`.

use std::collections::{BTreeMap, HashSet};

use adapters::directus::{Method, parse_fields};
use engine::ports::{Remote, ServerField};
use serde_json::{Value, json};

use deltasync::{DirectusClient, FieldType, KeyType, RemoteError};

/// The field each create's idempotency key goes in, where `init` adds it.
pub const IDEMPOTENCY_FIELD: &str = schema::DEFAULT_IDEMPOTENCY_FIELD;

/// A server's schema as `init` reads it: each collection's description (`GET /collections`)
/// with its fields (`GET /fields/:collection`), every relation (`GET /relations`), and the
/// most rows a request may ask for (`QUERY_LIMIT_MAX`, from `GET /server/info`).
#[derive(Debug, Clone, Default)]
pub struct ServerSchema {
    pub collections: Vec<(Value, Vec<ServerField>)>,
    pub relations: Vec<Value>,
    /// `None`: no limit, Directus's default.
    pub query_limit: Option<u32>,
}

/// A field the server lacks that a safe sync of a collection needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Addition {
    /// The standard date fields (those missing of `date_created` and `date_updated`), so the
    /// cursor sees every row; existing rows get a `date_created`.
    DateFields {
        collection: String,
        created: bool,
        updated: bool,
    },
    /// The unique field that makes each create of a server-assigned key happen once.
    IdempotencyField { collection: String },
}

impl std::fmt::Display for Addition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Addition::DateFields {
                collection,
                created,
                updated,
            } => {
                let missing: Vec<&str> = [(*created, "date_created"), (*updated, "date_updated")]
                    .into_iter()
                    .filter_map(|(missing, name)| missing.then_some(name))
                    .collect();
                write!(f, "{collection}: {} (the cursor)", missing.join(" and "))
            }
            Addition::IdempotencyField { collection } => write!(
                f,
                "{collection}: {IDEMPOTENCY_FIELD} (a unique string, so a create whose answer was lost is not made twice)"
            ),
        }
    }
}

/// What `init` writes and says.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// The schema file's text.
    pub yaml: String,
    /// One line per collection written: what was chosen.
    pub chosen: Vec<String>,
    /// What was left out, and why.
    pub skipped: Vec<String>,
    /// Fields the server lacks that a safe sync needs (offered, never added unasked).
    pub additions: Vec<Addition>,
}

/// How the written file reaches the server and the local database.
#[derive(Debug, Clone)]
pub struct Target<'a> {
    /// The URL as written (e.g. `${DIRECTUS_URL:-http://…}`).
    pub url: &'a str,
    pub database: &'a str,
}

/// One collection as it goes into the file.
struct Planned {
    name: String,
    key_type: KeyType,
    cursor: String,
    idempotency_none: bool,
    deletes: String,
    fields: Vec<String>,
    summary: String,
}

/// The schema file for `wanted` collections (every collection that is not a Directus system
/// collection when empty).
pub fn plan(server: &ServerSchema, wanted: &[String], target: &Target<'_>) -> Plan {
    let mut out = Plan::default();
    let known: HashSet<&str> = server
        .collections
        .iter()
        .filter_map(|(c, _)| c["collection"].as_str())
        .collect();
    for name in wanted.iter().filter(|w| !known.contains(w.as_str())) {
        out.skipped.push(format!(
            "{name}: no such collection (or the token may not read it)"
        ));
    }
    let chosen: Vec<&(Value, Vec<ServerField>)> = server
        .collections
        .iter()
        .filter(|(c, _)| {
            let name = c["collection"].as_str().unwrap_or_default();
            if wanted.is_empty() {
                !name.starts_with("directus_")
            } else {
                wanted.iter().any(|w| w == name)
            }
        })
        .collect();
    // Keys first: a relation's field takes the type of the key it points at.
    let mut keys: BTreeMap<&str, KeyType> = BTreeMap::new();
    let mut syncable = Vec::new();
    for (description, fields) in &chosen {
        let name = description["collection"].as_str().unwrap_or_default();
        match shape(name, description, fields, &mut out.additions) {
            Ok((key_type, cursor)) => {
                keys.insert(name, key_type);
                syncable.push((name, description, fields, key_type, cursor));
            }
            Err(why) => out.skipped.push(format!("{name}: {why}")),
        }
    }
    let mut planned = Vec::new();
    for (name, description, fields, key_type, cursor) in syncable {
        let c = collection(
            name,
            description,
            fields,
            key_type,
            cursor,
            &keys,
            &server.relations,
            &mut out,
        );
        planned.push(c);
    }
    out.chosen = planned.iter().map(|c| c.summary.clone()).collect();
    // The default page size, where the server allows it; otherwise the most it allows.
    let page_size = server
        .query_limit
        .filter(|limit| *limit < schema::DEFAULT_PAGE_SIZE);
    out.yaml = yaml(&planned, page_size, target);
    out
}

/// The key type and cursor of a collection, or why it cannot be synced.
fn shape(
    name: &str,
    description: &Value,
    fields: &[ServerField],
    additions: &mut Vec<Addition>,
) -> Result<(KeyType, Cursor), String> {
    if name.starts_with("directus_") {
        return Err("a Directus system collection".into());
    }
    if description["schema"].is_null() {
        return Err("a folder, without a table".into());
    }
    if !schema::is_safe_identifier(name) || name.to_ascii_lowercase().starts_with("_deltasync") {
        return Err("the name is not a safe SQL identifier for a local table".into());
    }
    let pk = fields
        .iter()
        .find(|f| f.primary_key)
        .ok_or("no primary key field")?;
    let key_type = match pk.kind.as_str() {
        "uuid" => KeyType::Uuid,
        "string" => KeyType::String,
        "integer" | "bigInteger" if pk.auto_increment => KeyType::AutoIncrement,
        "integer" | "bigInteger" => KeyType::Integer,
        other => return Err(format!("a primary key of type {other} is not supported")),
    };
    if pk.name != "id" && !schema::is_safe_identifier(&pk.name) {
        return Err("the primary key's name is not a safe SQL identifier".into());
    }
    let stamped = |special: &str| {
        fields
            .iter()
            .find(|f| f.kind == "timestamp" && f.has_special(special))
    };
    let both = fields.iter().find(|f| {
        f.kind == "timestamp" && f.has_special("date-created") && f.has_special("date-updated")
    });
    if let Some(f) = both {
        return Ok((key_type, Cursor::Single(f.name.clone())));
    }
    match (stamped("date-updated"), stamped("date-created")) {
        (Some(updated), Some(created)) => Ok((
            key_type,
            Cursor::Dates {
                updated: updated.name.clone(),
                created: created.name.clone(),
            },
        )),
        (updated, created) => {
            additions.push(Addition::DateFields {
                collection: name.to_owned(),
                created: created.is_none(),
                updated: updated.is_none(),
            });
            Err(
                "no timestamp stamped on create and on update, so a pull could not see every \
                 row; add date_created and date_updated (Data Studio: the collection's optional \
                 system fields), or run `deltasync init --add-fields`"
                    .into(),
            )
        }
    }
}

/// The field(s) a collection's version is in.
enum Cursor {
    Single(String),
    Dates { updated: String, created: String },
}

#[allow(clippy::too_many_arguments)]
fn collection(
    name: &str,
    description: &Value,
    fields: &[ServerField],
    key_type: KeyType,
    cursor: Cursor,
    keys: &BTreeMap<&str, KeyType>,
    relations: &[Value],
    out: &mut Plan,
) -> Planned {
    let (cursor_text, version_field) = match &cursor {
        Cursor::Single(f) => (f.clone(), f.as_str()),
        Cursor::Dates { updated, created } => (
            format!("{{updated: {updated}, created: {created}}}"),
            updated.as_str(),
        ),
    };
    let mut planned_fields = Vec::new();
    for f in fields
        .iter()
        .filter(|f| !f.primary_key && f.name != version_field)
    {
        let skip = |why: &str| format!("{name}.{}: {why}", f.name);
        if f.name == IDEMPOTENCY_FIELD {
            continue;
        }
        if f.kind == "alias" {
            out.skipped.push(skip(
                "an alias (one-to-many, many-to-many or presentation), not a column; its other \
                 side is synced where it is a column",
            ));
            continue;
        }
        let Some(kind) = field_type(&f.kind) else {
            out.skipped
                .push(skip(&format!("the type {} is not supported", f.kind)));
            continue;
        };
        if !schema::is_safe_identifier(&f.name) || f.name.to_ascii_lowercase().starts_with("_sync")
        {
            out.skipped.push(skip(
                "the name is not a safe SQL identifier for a local column",
            ));
            continue;
        }
        let related = relations
            .iter()
            .find(|r| r["collection"] == json!(name) && r["field"] == json!(f.name))
            .and_then(|r| r["related_collection"].as_str());
        let mut options = Vec::new();
        let mut kind = kind;
        match related {
            Some(parent) if keys.contains_key(parent) => {
                kind = FieldType::for_key(keys[parent]);
                options.push(format!("references: {parent}"));
            }
            Some(parent) => out.skipped.push(skip(&format!(
                "a many-to-one to {parent}, which is not synced: kept as a plain value"
            ))),
            None => {}
        }
        let server_filled = [
            "user-created",
            "user-updated",
            "date-created",
            "date-updated",
        ]
        .iter()
        .any(|s| f.has_special(s));
        if server_filled && kind != FieldType::Hash {
            options.push("read_only: true".into());
        }
        planned_fields.push(if options.is_empty() {
            format!("{}: {kind}", f.name)
        } else {
            format!("{}: {{type: {kind}, {}}}", f.name, options.join(", "))
        });
    }
    let idempotency_none = key_type == KeyType::AutoIncrement
        && !fields
            .iter()
            .any(|f| f.name == IDEMPOTENCY_FIELD && f.unique);
    if idempotency_none {
        out.additions.push(Addition::IdempotencyField {
            collection: name.to_owned(),
        });
        out.skipped.push(format!(
            "{name}: no unique {IDEMPOTENCY_FIELD} field, so `idempotency_field: none`: a create \
             whose answer was lost could be made twice; `deltasync init --add-fields` adds it"
        ));
    }
    let deletes = deletes(name, description, fields, out);
    let summary = format!(
        "{name}: key {key_type}, cursor {cursor_text}, deletes {deletes}, {} field(s)",
        planned_fields.len()
    );
    Planned {
        name: name.to_owned(),
        key_type,
        cursor: cursor_text,
        idempotency_none,
        deletes,
        fields: planned_fields,
        summary,
    }
}

/// How deletes on the server are learned: the activity log when the collection's
/// accountability is on, else its archive field, else not at all (with a note).
fn deletes(name: &str, description: &Value, fields: &[ServerField], out: &mut Plan) -> String {
    let meta = &description["meta"];
    if matches!(meta["accountability"].as_str(), Some("all" | "activity")) {
        return "activity".into();
    }
    let archive = meta["archive_field"].as_str().and_then(|field| {
        let value = meta["archive_value"].as_str()?;
        let kind = fields.iter().find(|f| f.name == field)?.kind.clone();
        let value = match kind.as_str() {
            "boolean" => value.to_string(),
            "integer" | "bigInteger" | "float" | "decimal" => value.to_string(),
            _ => format!("\"{}\"", value.replace('"', "\\\"")),
        };
        Some(format!("{{archive: {{field: {field}, value: {value}}}}}"))
    });
    let note = match &archive {
        Some(_) => {
            "accountability is off, so hard deletes on the server are not seen; archived rows are removed locally"
        }
        None => {
            "accountability is off and there is no archive field, so deletes on the server are not seen; turn accountability on (then `deletes: activity`) or run `sync --reconcile` now and then"
        }
    };
    out.skipped.push(format!("{name}: {note}"));
    archive.unwrap_or_else(|| "none".into())
}

/// The configured type for a Directus field type.
fn field_type(directus: &str) -> Option<FieldType> {
    if directus.starts_with("geometry") {
        return Some(FieldType::Geometry);
    }
    FieldType::from_name(directus)
}

/// The schema file's text.
fn yaml(collections: &[Planned], page_size: Option<u32>, target: &Target<'_>) -> String {
    let mut text = format!(
        "# Written by `deltasync init`. Every key is explained in docs/configuration.md.\n\
         remote:\n  url: {}\n  token: ${{DIRECTUS_TOKEN}}\nlocal:\n  database: {}\n",
        target.url, target.database
    );
    if let Some(page_size) = page_size {
        text.push_str(&format!(
            "defaults:\n  page_size: {page_size}  # the server's QUERY_LIMIT_MAX\n"
        ));
    }
    text.push_str("collections:\n");
    for c in collections {
        text.push_str(&format!("  {}:\n", c.name));
        if c.key_type != KeyType::Uuid {
            text.push_str(&format!("    key_type: {}\n", c.key_type));
        }
        if c.idempotency_none {
            text.push_str("    idempotency_field: none\n");
        }
        text.push_str(&format!("    cursor: {}\n", c.cursor));
        text.push_str(&format!("    deletes: {}\n", c.deletes));
        text.push_str("    fields:\n");
        for f in &c.fields {
            text.push_str(&format!("      {f}\n"));
        }
    }
    text
}

/// What `deltasync init` was asked for.
#[derive(Debug, Clone)]
pub struct Options {
    /// The schema file to write.
    pub file: std::path::PathBuf,
    /// The collections to take; every collection that is not a system collection when empty.
    pub collections: Vec<String>,
    pub url: String,
    pub token: schema::Secret,
    /// The local database URL; a SQLite file beside the schema file when `None`.
    pub database: Option<String>,
    /// Overwrite an existing file.
    pub force: bool,
    /// Add the fields a safe sync needs without asking.
    pub add_fields: bool,
}

/// Why `init` wrote nothing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InitError {
    /// The schema file exists and `--force` was not given.
    #[error("{0} exists; pass --force to overwrite it")]
    Exists(std::path::PathBuf),
    /// None of the collections can be synced.
    #[error("no collection to sync on {url}: {why}")]
    NothingToSync { url: String, why: String },
    #[error("{0}")]
    Remote(#[from] RemoteError),
    #[error("{0}")]
    Client(#[from] adapters::Error),
    #[error("writing {path}: {source}")]
    Write {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

impl InitError {
    /// Whether the input was at fault (exit code 2), not the server or the disk.
    pub fn is_usage(&self) -> bool {
        matches!(self, InitError::Exists(_) | InitError::NothingToSync { .. })
    }
}

/// Reads the server, offers the fields a safe sync needs (`ask` says whether to add them,
/// when `add_fields` was not given), writes the schema file and says what it chose and why.
pub async fn run(
    options: &Options,
    out: &mut impl std::io::Write,
    ask: impl Fn(&[Addition]) -> bool,
) -> Result<(), InitError> {
    if options.file.exists() && !options.force {
        return Err(InitError::Exists(options.file.clone()));
    }
    let remote = schema::RemoteConfig::new(
        options.url.clone(),
        schema::Auth::Token(options.token.clone()),
    );
    let client = DirectusClient::new(&remote)?;
    let database = options.database.clone().unwrap_or_else(|| {
        let stem = options
            .file
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("deltasync");
        format!("sqlite://{stem}.db")
    });
    let written_database = if has_password(&database) {
        "${DELTASYNC_DATABASE}".to_owned()
    } else {
        database.clone()
    };
    let url = format!("${{DIRECTUS_URL:-{}}}", options.url);
    let target = Target {
        url: &url,
        database: &written_database,
    };
    let mut plan = plan(&read(&client).await?, &options.collections, &target);
    if !plan.additions.is_empty() && (options.add_fields || ask(&plan.additions)) {
        for addition in &plan.additions {
            add(&client, addition).await?;
            let _ = writeln!(out, "added {addition}");
        }
        plan = self::plan(&read(&client).await?, &options.collections, &target);
    }
    if plan.chosen.is_empty() {
        return Err(InitError::NothingToSync {
            url: options.url.clone(),
            why: if plan.skipped.is_empty() {
                "it has no collections".into()
            } else {
                plan.skipped.join("; ")
            },
        });
    }
    std::fs::write(&options.file, &plan.yaml).map_err(|source| InitError::Write {
        path: options.file.clone(),
        source,
    })?;
    let _ = writeln!(out, "wrote {}:", options.file.display());
    for line in &plan.chosen {
        let _ = writeln!(out, "  {line}");
    }
    if !plan.skipped.is_empty() {
        let _ = writeln!(out, "left out or worth knowing:");
        for line in &plan.skipped {
            let _ = writeln!(out, "  {line}");
        }
    }
    if !plan.additions.is_empty() {
        let _ = writeln!(
            out,
            "the server lacks what a safe sync of some collections needs; `deltasync init --force --add-fields` adds:"
        );
        for addition in &plan.additions {
            let _ = writeln!(out, "  {addition}");
        }
    }
    if written_database != database {
        let _ = writeln!(
            out,
            "the database URL holds a password, so the file reads it from DELTASYNC_DATABASE: export it before syncing"
        );
    }
    let _ = writeln!(
        out,
        "next: export DIRECTUS_TOKEN (the file reads the token from it), then `deltasync -c {} validate --remote` and `deltasync -c {} sync`",
        options.file.display(),
        options.file.display()
    );
    Ok(())
}

/// Whether a database URL carries a password (`scheme://user:password@host/...`).
fn has_password(url: &str) -> bool {
    url.split_once("://")
        .and_then(|(_, rest)| rest.split_once('@'))
        .is_some_and(|(userinfo, _)| userinfo.contains(':'))
}

/// Reads the schema of every collection the token may read.
pub async fn read(client: &DirectusClient) -> Result<ServerSchema, RemoteError> {
    let collections = client
        .request(Method::GET, "/collections", &[], None, None)
        .await?;
    let mut out = ServerSchema::default();
    for description in collections["data"].as_array().cloned().unwrap_or_default() {
        let name = description["collection"].as_str().unwrap_or_default();
        if name.starts_with("directus_") || description["schema"].is_null() {
            out.collections.push((description, Vec::new()));
            continue;
        }
        let fields = client.fields(name).await?;
        out.collections
            .push((description, parse_fields(&fields["data"])));
    }
    let relations = client
        .request(Method::GET, "/relations", &[], None, None)
        .await?;
    out.relations = relations["data"].as_array().cloned().unwrap_or_default();
    // A server that does not say has no limit as far as the file is concerned.
    out.query_limit = client.query_limit().await.ok().flatten();
    Ok(out)
}

/// Adds a field the server lacks (see [`Addition`]).
pub async fn add(client: &DirectusClient, addition: &Addition) -> Result<(), RemoteError> {
    use crate::remote_setup::{add_field, idempotency_field, stamp_field};
    match addition {
        Addition::IdempotencyField { collection } => {
            add_field(client, collection, &idempotency_field(IDEMPOTENCY_FIELD)).await
        }
        Addition::DateFields {
            collection,
            created,
            updated,
        } => {
            if *created {
                let field = stamp_field("date_created", &["date-created"]);
                add_field(client, collection, &field).await?;
            }
            if *updated {
                let field = stamp_field("date_updated", &["date-updated"]);
                add_field(client, collection, &field).await?;
            }
            stamp_existing_rows(client, collection).await
        }
    }
}

/// Gives every row without a `date_created` one (now), so that the cursor sees it.
async fn stamp_existing_rows(client: &DirectusClient, collection: &str) -> Result<(), RemoteError> {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    loop {
        let body = json!({
            "query": {"filter": {"date_created": {"_null": true}}, "limit": 1000},
            "data": {"date_created": now},
        });
        let answer = client
            .request(
                Method::PATCH,
                &format!("/items/{collection}"),
                &[("fields", "date_created".to_owned())],
                Some(&body),
                None,
            )
            .await?;
        if answer["data"].as_array().is_none_or(Vec::is_empty) {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(name: &str, kind: &str) -> ServerField {
        ServerField {
            name: name.into(),
            kind: kind.into(),
            ..Default::default()
        }
    }

    fn special(mut f: ServerField, specials: &[&str]) -> ServerField {
        f.specials = specials.iter().map(|s| (*s).to_owned()).collect();
        f
    }

    fn id(auto_increment: bool) -> ServerField {
        ServerField {
            primary_key: true,
            auto_increment,
            ..field("id", "integer")
        }
    }

    /// The system fields the Data Studio adds, and the date cursor among them.
    fn stock(extra: Vec<ServerField>) -> Vec<ServerField> {
        let mut fields = vec![
            id(true),
            field("status", "string"),
            field("sort", "integer"),
            special(field("user_created", "uuid"), &["user-created"]),
            special(field("date_created", "timestamp"), &["date-created"]),
            special(field("user_updated", "uuid"), &["user-updated"]),
            special(field("date_updated", "timestamp"), &["date-updated"]),
        ];
        fields.extend(extra);
        fields
    }

    fn described(name: &str, accountability: Option<&str>) -> Value {
        json!({"collection": name, "schema": {"name": name},
            "meta": {"accountability": accountability}})
    }

    fn target() -> Target<'static> {
        Target {
            url: "${DIRECTUS_URL:-http://127.0.0.1:8055}",
            database: "sqlite://deltasync.db",
        }
    }

    fn server() -> ServerSchema {
        let unique_key = ServerField {
            unique: true,
            ..field(IDEMPOTENCY_FIELD, "string")
        };
        ServerSchema {
            collections: vec![
                (
                    described("categories", Some("all")),
                    stock(vec![field("name", "string"), unique_key.clone()]),
                ),
                (
                    described("articles", Some("all")),
                    stock(vec![
                        field("title", "string"),
                        field("category", "integer"),
                        field("comments", "alias"),
                        field("price", "decimal"),
                        field("location", "geometry.Point"),
                        field("blob", "binary"),
                        unique_key,
                    ]),
                ),
                (
                    described("articles_tags", None),
                    vec![
                        id(true),
                        field("articles_id", "integer"),
                        field("tags_id", "integer"),
                    ],
                ),
                (
                    described("notes", None),
                    vec![
                        ServerField {
                            primary_key: true,
                            ..field("id", "uuid")
                        },
                        special(
                            field("last_modified", "timestamp"),
                            &["date-created", "date-updated"],
                        ),
                        field("body", "text"),
                    ],
                ),
                (described("directus_users", Some("all")), Vec::new()),
                (
                    json!({"collection": "folder", "schema": null, "meta": {}}),
                    Vec::new(),
                ),
            ],
            relations: vec![
                json!({"collection": "articles", "field": "category", "related_collection": "categories"}),
                json!({"collection": "articles", "field": "user_created", "related_collection": "directus_users"}),
            ],
            query_limit: None,
        }
    }

    #[test]
    fn the_page_size_fits_the_servers_query_limit() {
        let page_size = |query_limit| {
            let server = ServerSchema {
                query_limit,
                ..server()
            };
            let plan = plan(&server, &[], &target());
            let env = |name: &str| (name == "DIRECTUS_TOKEN").then(|| "t".to_owned());
            let config = schema::Config::from_yaml_str_with_env(&plan.yaml, None, env)
                .unwrap_or_else(|e| panic!("{e}\n{}", plan.yaml));
            config.collection("notes").unwrap().page_size
        };
        let default = schema::DEFAULT_PAGE_SIZE;
        for (limit, expected) in [
            (None, default),
            (Some(default + 1), default),
            (Some(default), default),
            (Some(1_000), 1_000),
            (Some(50), 50),
        ] {
            assert_eq!(page_size(limit), expected, "{limit:?}");
        }
    }

    #[test]
    fn a_stock_server_becomes_a_file_that_validates() {
        let plan = plan(&server(), &[], &target());
        let env = |name: &str| (name == "DIRECTUS_TOKEN").then(|| "t".to_owned());
        let config = schema::Config::from_yaml_str_with_env(&plan.yaml, None, env)
            .unwrap_or_else(|e| panic!("{e}\n{}", plan.yaml));
        config
            .validate()
            .unwrap_or_else(|e| panic!("{e}\n{}", plan.yaml));
        let names: Vec<&str> = config.collections.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["categories", "articles", "notes"], "{}", plan.yaml);

        let articles = config.collection("articles").unwrap();
        assert_eq!(articles.key_type, KeyType::AutoIncrement);
        assert_eq!(
            articles.idempotency_field.as_deref(),
            Some(IDEMPOTENCY_FIELD)
        );
        assert_eq!(
            (articles.cursor.as_str(), articles.cursor_created.as_deref()),
            ("date_updated", Some("date_created"))
        );
        assert!(matches!(articles.deletes, schema::Deletes::Activity));
        let category = articles.field("category").unwrap();
        assert_eq!(category.references.as_deref(), Some("categories"));
        assert!(articles.field("user_created").unwrap().read_only);
        assert!(articles.is_read_only(articles.field("date_created").unwrap()));
        assert_eq!(articles.field("price").unwrap().kind, FieldType::Decimal);
        assert_eq!(
            articles.field("location").unwrap().kind,
            FieldType::Geometry
        );
        for absent in ["comments", "blob", IDEMPOTENCY_FIELD, "date_updated", "id"] {
            assert!(articles.field(absent).is_none(), "{absent}");
        }

        let notes = config.collection("notes").unwrap();
        assert_eq!(
            (notes.key_type, notes.cursor.as_str()),
            (KeyType::Uuid, "last_modified")
        );
        assert!(matches!(notes.deletes, schema::Deletes::None));

        let said = plan.skipped.join("\n");
        for expected in [
            "articles.comments: an alias",
            "articles.blob: the type binary is not supported",
            "articles.user_created: a many-to-one to directus_users",
            "articles_tags: no timestamp stamped on create and on update",
            "notes: accountability is off",
            "folder: a folder",
        ] {
            assert!(said.contains(expected), "{expected:?} not in\n{said}");
        }
        assert!(
            !said.contains("directus_users:"),
            "system collections go unmentioned: {said}"
        );
        assert_eq!(
            plan.additions,
            [Addition::DateFields {
                collection: "articles_tags".into(),
                created: true,
                updated: true
            }]
        );
        assert!(plan.yaml.contains("token: ${DIRECTUS_TOKEN}"));
    }

    #[test]
    fn named_collections_only_and_a_missing_idempotency_field_is_offered() {
        let mut server = server();
        server.collections[1]
            .1
            .retain(|f| f.name != IDEMPOTENCY_FIELD);
        let plan = plan(
            &server,
            &["articles".into(), "nope".into(), "directus_users".into()],
            &target(),
        );
        let env = |name: &str| (name == "DIRECTUS_TOKEN").then(|| "t".to_owned());
        let config = schema::Config::from_yaml_str_with_env(&plan.yaml, None, env).unwrap();
        config.validate().unwrap();
        let articles = config.collection("articles").unwrap();
        assert_eq!(articles.idempotency_field, None);
        // Its parent is not chosen: a plain integer.
        assert_eq!(articles.field("category").unwrap().references, None);
        assert_eq!(
            plan.additions,
            [Addition::IdempotencyField {
                collection: "articles".into()
            }]
        );
        let said = plan.skipped.join("\n");
        assert!(said.contains("nope: no such collection"), "{said}");
        assert!(
            said.contains("directus_users: a Directus system collection"),
            "{said}"
        );
        assert_eq!(config.collections.len(), 1);
    }
}
