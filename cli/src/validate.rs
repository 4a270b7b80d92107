//! `deltasync validate --remote`: does the server have what the schema file needs?
//!
//! Reads the server's field definitions and probes permissions; it changes nothing.

use adapters::directus::Method;
use deltasync::{CollectionConfig, Config, Deletes, DirectusClient, FieldType, RemoteErrorKind};
use serde_json::{Value, json};

/// One line per problem; empty when the server fits the configuration.
pub async fn remote(config: &Config) -> anyhow::Result<Vec<String>> {
    let client = DirectusClient::new(&config.remote)?;
    let info = client
        .server_info()
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach {}: {e}", config.remote.url))?;
    let mut problems = Vec::new();
    let query_limit = info["data"]["queryLimit"]["max"]
        .as_i64()
        .filter(|max| *max > 0);
    for c in &config.collections {
        if let Some(max) = query_limit
            && i64::from(c.page_size) > max
        {
            problems.push(format!(
                "{}: page_size {} is above the server's QUERY_LIMIT_MAX {max}, which refuses such pages",
                c.name, c.page_size
            ));
        }
        check_collection(&client, c, &mut problems).await;
    }
    Ok(problems)
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
    match find(&c.cursor) {
        None => problems.push(format!(
            "{}.{}: cursor field missing; create a timestamp field with special date-created and date-updated",
            c.name, c.cursor
        )),
        Some(f) => {
            if f["type"] != "timestamp" {
                problems.push(format!("{}.{}: cursor must have type timestamp, has {}", c.name, c.cursor, f["type"]));
            }
            let specials: Vec<&str> = f["meta"]["special"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            for needed in ["date-created", "date-updated"] {
                if !specials.contains(&needed) {
                    problems.push(format!(
                        "{}.{}: cursor field lacks special {needed} (rows would not be stamped on {})",
                        c.name,
                        c.cursor,
                        if needed == "date-created" { "create" } else { "update" }
                    ));
                }
            }
        }
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
        FieldType::String | FieldType::Text => {
            matches!(server, "string" | "text" | "uuid" | "hash" | "csv")
        }
        FieldType::Integer => matches!(server, "integer" | "bigInteger"),
        FieldType::Float => matches!(server, "float" | "decimal" | "integer" | "bigInteger"),
        FieldType::Boolean => server == "boolean",
        FieldType::Json => matches!(server, "json" | "csv" | "alias"),
        // Directus on SQLite reports a uuid field that is not a key as a string.
        FieldType::Uuid => matches!(server, "uuid" | "string"),
        FieldType::Timestamp => server == "timestamp",
    }
}
