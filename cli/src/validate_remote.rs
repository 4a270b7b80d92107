//! Does a Directus server have what a configuration needs (`deltasync validate --remote`)?
//!
//! Owns the checks of collections, fields, types, the cursor's specials, the token's
//! permissions and activity logging against a live server. Reads only: it changes nothing.

use adapters::directus::Method;
use serde_json::{Value, json};

use deltasync::{
    CollectionConfig, Config, Deletes, DirectusClient, Error, FieldType, OpenError, RemoteErrorKind,
};

/// One line per problem; empty when the server fits the configuration. Fails only when the
/// server cannot be asked at all.
pub async fn check(config: &Config) -> Result<Vec<String>, OpenError> {
    let client = DirectusClient::new(&config.remote)?;
    let info = client
        .server_info()
        .await
        .map_err(|e| OpenError::Engine(Error::Remote(e)))?;
    let mut problems = Vec::new();
    // Older servers lack /permissions/me; the probes below still catch missing read access.
    let permissions = client
        .request(Method::GET, "/permissions/me", &[], None, None)
        .await
        .ok()
        .map(|body| body["data"].clone());
    let query_limit = info["data"]["queryLimit"]["max"]
        .as_i64()
        .filter(|max| *max > 0);
    for c in &config.collections {
        if let Some(max) = query_limit
            && i64::from(c.page_size) > max
        {
            problems.push(format!(
                "{}: page_size {} is above the server's QUERY_LIMIT_MAX {max}: the server refuses such pages, and a sync falls back to pages of {max} after the first is refused; set page_size to at most {max}",
                c.name, c.page_size
            ));
        }
        check_collection(&client, c, &mut problems).await;
        // A collection the token may do nothing with at all (or that is missing) is one
        // problem, said above, not one per action.
        if let Some(permissions) = &permissions
            && permissions.get(&c.name).is_some()
        {
            check_permissions(permissions, c, &mut problems);
        }
    }
    Ok(problems)
}

/// What the token may do, from `GET /permissions/me`: every action on the collection, with
/// the fields deltasync writes and reads, and reading the activity log for its deletes.
fn check_permissions(permissions: &Value, c: &CollectionConfig, problems: &mut Vec<String>) {
    let configured: Vec<&str> = c.fields.iter().map(|f| f.name.as_str()).collect();
    let mut read = configured.clone();
    read.extend([c.primary_key.as_str(), c.cursor.as_str()]);
    let mut create = configured.clone();
    create.push(c.primary_key.as_str());
    for (action, needed, why) in [
        ("create", create, "push new rows"),
        ("read", read, "pull"),
        ("update", configured, "push updates"),
        ("delete", Vec::new(), "push deletes"),
    ] {
        let granted = &permissions[&c.name][action];
        if granted["access"].as_str().unwrap_or("none") == "none" {
            problems.push(format!(
                "{}: no {action} permission (needed to {why})",
                c.name
            ));
            continue;
        }
        let fields: Vec<&str> = granted["fields"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if fields.contains(&"*") {
            continue;
        }
        let missing: Vec<&str> = needed.into_iter().filter(|f| !fields.contains(f)).collect();
        if !missing.is_empty() {
            problems.push(format!(
                "{}: the {action} permission does not cover field(s) {} (needed to {why})",
                c.name,
                missing.join(", ")
            ));
        }
    }
    if matches!(c.deletes, Deletes::Activity)
        && permissions["directus_activity"]["read"]["access"]
            .as_str()
            .unwrap_or("none")
            == "none"
    {
        problems.push(format!(
            "{}: deletes: activity, but the token may not read the activity log",
            c.name
        ));
    }
}

async fn check_collection(
    client: &DirectusClient,
    c: &CollectionConfig,
    problems: &mut Vec<String>,
) {
    let fields = match client.fields(&c.name).await {
        Ok(body) => body["data"].as_array().cloned().unwrap_or_default(),
        Err(e) if e.kind == RemoteErrorKind::Forbidden => {
            problems.push(format!(
                "{}: collection missing, or no permission to read its fields ({e})",
                c.name
            ));
            return;
        }
        Err(e) => {
            problems.push(format!("{}: cannot read fields: {e}", c.name));
            return;
        }
    };
    let find = |name: &str| fields.iter().find(|f| f["field"] == name);
    match find(&c.primary_key) {
        None => problems.push(format!(
            "{}.{}: primary key field missing",
            c.name, c.primary_key
        )),
        Some(f) if f["schema"]["is_primary_key"] != json!(true) => problems.push(format!(
            "{}.{}: is not the primary key on the server",
            c.name, c.primary_key
        )),
        Some(_) => {}
    }
    if let Some(f) = find(&c.cursor)
        && f["type"] != "timestamp"
    {
        problems.push(format!(
            "{}.{}: cursor must have type timestamp, has {}",
            c.name, c.cursor, f["type"]
        ));
    }
    // The cursor's specials, who assigns the keys, the idempotency field: as `sync` checks
    // them, all at once.
    let typed = adapters::directus::parse_fields(&Value::Array(fields.clone()));
    for m in engine::fit::mismatches(c, &typed) {
        problems.push(format!("{}.{}: {}", c.name, m.field, m.message));
    }
    for field in &c.fields {
        match find(&field.name) {
            None => problems.push(format!(
                "{}.{}: field missing on the server",
                c.name, field.name
            )),
            Some(f) => {
                let server_type = f["type"].as_str().unwrap_or("?");
                if !compatible(field.kind, server_type) {
                    problems.push(format!(
                        "{}.{}: configured as {}, but the server type is {server_type}",
                        c.name,
                        field.name,
                        field.kind.as_str()
                    ));
                }
            }
        }
    }
    let probe = [
        ("limit", "1".to_owned()),
        ("fields", format!("{},{}", c.primary_key, c.cursor)),
    ];
    if let Err(e) = client
        .request(
            Method::GET,
            &format!("/items/{}", c.name),
            &probe,
            None,
            None,
        )
        .await
    {
        problems.push(format!("{}: cannot read items: {e}", c.name));
    }
    if matches!(c.deletes, Deletes::Activity) {
        match client.collection_info(&c.name).await {
            Ok(info) if info["data"]["meta"]["accountability"].is_null() => problems.push(format!(
                "{}: deletes: activity, but the collection's accountability is off (nothing is logged)",
                c.name
            )),
            Ok(_) => {}
            Err(e) => problems.push(format!("{}: cannot read the collection's settings: {e}", c.name)),
        }
        let probe = [("limit", "1".to_owned()), ("fields", "id".to_owned())];
        if let Err(e) = client
            .request(Method::GET, "/activity", &probe, None, None)
            .await
        {
            problems.push(format!(
                "{}: deletes: activity, but the activity log is not readable: {e}",
                c.name
            ));
        }
    }
}

/// Whether a Directus field type can hold a configured field type.
fn compatible(kind: FieldType, server: &str) -> bool {
    match kind {
        // Directus may send bigInteger and decimal values as JSON strings.
        FieldType::String | FieldType::Text => matches!(
            server,
            "string" | "text" | "uuid" | "hash" | "csv" | "bigInteger" | "decimal"
        ),
        FieldType::Integer => server == "integer",
        FieldType::Float => matches!(server, "float" | "integer"),
        FieldType::Boolean => server == "boolean",
        FieldType::Json => matches!(server, "json" | "csv" | "alias"),
        // Directus on SQLite reports a uuid field that is not a key as a string.
        FieldType::Uuid => matches!(server, "uuid" | "string"),
        FieldType::Timestamp => server == "timestamp",
        FieldType::BigInteger => matches!(server, "bigInteger" | "integer"),
        // Directus on SQLite reports a decimal field as float.
        FieldType::Decimal => matches!(server, "decimal" | "float"),
        FieldType::DateTime => server == "dateTime",
        FieldType::Date => server == "date",
        FieldType::Time => server == "time",
        FieldType::Csv => server == "csv",
        FieldType::Geometry => server.starts_with("geometry"),
        FieldType::Hash => server == "hash",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_types_match_what_directus_sends() {
        // A uuid field that is not a key reads back as string on SQLite.
        assert!(compatible(FieldType::Uuid, "string"));
        // bigInteger and decimal arrive as JSON strings.
        assert!(!compatible(FieldType::Integer, "bigInteger"));
        assert!(!compatible(FieldType::Float, "decimal"));
        assert!(compatible(FieldType::String, "bigInteger"));
        assert!(compatible(FieldType::Float, "integer"));
        assert!(!compatible(FieldType::Boolean, "integer"));
    }

    #[test]
    fn permissions_name_the_missing_action_and_fields() {
        let c = CollectionConfig::new("articles")
            .with_field("title", FieldType::String)
            .with_field("views", FieldType::Integer);
        // As `GET /permissions/me` answers for a token that may read and partly update.
        let permissions = json!({
            "articles": {
                "create": {"access": "none"},
                "read": {"access": "full", "fields": ["*"]},
                "update": {"access": "partial", "fields": ["title"]},
                "delete": {"access": "full", "fields": ["*"]}
            },
            "directus_activity": {"read": {"access": "none"}}
        });
        let mut problems = Vec::new();
        check_permissions(&permissions, &c, &mut problems);
        assert_eq!(
            problems,
            [
                "articles: no create permission (needed to push new rows)",
                "articles: the update permission does not cover field(s) views (needed to push updates)",
                "articles: deletes: activity, but the token may not read the activity log",
            ]
        );
    }
}
