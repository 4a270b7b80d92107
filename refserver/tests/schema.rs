//! Collections and fields over HTTP, as deltasync sets up and checks a remote schema.

mod common;

use common::{Api, uuid};
use serde_json::json;

#[tokio::test]
async fn collection_created_over_http_is_described_by_fields() {
    let api = Api::start().await;
    let body = json!({
        "collection": "todos",
        "meta": {"accountability": "all"},
        "schema": {},
        "fields": [
            {"field": "id", "type": "uuid", "meta": {"special": ["uuid"]},
             "schema": {"is_primary_key": true, "length": 36, "has_auto_increment": false}},
            {"field": "done", "type": "boolean", "schema": {"default_value": false}},
            {"field": "last_modified", "type": "timestamp", "meta": {"special": ["date-created", "date-updated"]}}
        ]
    });
    let r = api.post("/collections", body.clone()).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.data()["collection"], json!("todos"));
    assert_eq!(
        api.post("/collections", body).await.code(),
        "INVALID_PAYLOAD"
    );

    let r = api.get("/fields/todos", &[]).await;
    let fields = r.data().as_array().unwrap();
    assert_eq!(fields.len(), 3);
    assert_eq!(fields[0]["schema"]["is_primary_key"], json!(true));
    assert_eq!(fields[0]["type"], json!("uuid"));
    assert_eq!(fields[0]["schema"]["data_type"], json!("char"));
    assert_eq!(fields[0]["schema"]["max_length"], json!(36));
    // Directus adds the cast a timestamp needs to read back as one.
    assert_eq!(
        fields[2]["meta"]["special"],
        json!(["date-created", "date-updated", "cast-timestamp"])
    );
    assert_eq!(fields[2]["schema"]["data_type"], json!("datetime"));
    // A field created without `meta` has no `directus_fields` row.
    assert_eq!(fields[1]["meta"], json!(null));
    assert_eq!(fields[1]["schema"]["default_value"], json!(false));

    let r = api.get("/collections/todos", &[]).await;
    assert_eq!(r.data()["meta"]["status"], json!("active"));
    assert_eq!(
        r.data()["schema"]["sql"],
        json!(
            "CREATE TABLE `todos` (`id` char(36) not null, `done` boolean null, \
             `last_modified` datetime null, primary key (`id`))"
        )
    );

    let r = api.post("/items/todos", json!({"id": uuid()})).await;
    // Without `cast-boolean`, Directus on SQLite answers a boolean as 0 or 1.
    assert_eq!(r.data()["done"], json!(0));
}

#[tokio::test]
async fn added_fields_start_empty_on_existing_rows() {
    let api = Api::start().await;
    let note = api.create_note(Api::note("a")).await;
    let r = api
        .post("/fields/notes", json!({"field": "body", "type": "text"}))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.data()["field"], json!("body"));
    let r = api
        .get(
            &format!("/items/notes/{}", note["id"].as_str().unwrap()),
            &[],
        )
        .await;
    assert_eq!(r.data()["body"], json!(null));
    assert_eq!(api.get("/fields/nope", &[]).await.status, 403);
}

#[tokio::test]
async fn types_read_back_as_directus_on_sqlite_reports_them() {
    let api = Api::start().await;
    for (field, kind, meta) in [
        ("owner", "uuid", json!({})),
        ("amount", "decimal", json!({})),
        ("data", "json", json!({})),
    ] {
        let r = api
            .post(
                "/fields/notes",
                json!({"field": field, "type": kind, "meta": meta, "schema": {}}),
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
    }
    let r = api.get("/fields/notes", &[]).await;
    let fields = r.data().as_array().unwrap();
    let find = |name: &str| fields.iter().find(|f| f["field"] == name).unwrap().clone();
    // A uuid without the `uuid` special is a `char(36)` column, which reads back as a string.
    assert_eq!(find("owner")["type"], json!("string"));
    assert_eq!(find("owner")["schema"]["data_type"], json!("char"));
    assert_eq!(find("amount")["type"], json!("float"));
    assert_eq!(find("data")["meta"]["special"], json!(["cast-json"]));
    assert_eq!(find("id")["type"], json!("uuid"));
    assert_eq!(find("id")["meta"]["searchable"], json!(true));

    // String operators only, as for any string.
    let r = api
        .get("/items/notes", &[("filter", r#"{"owner":{"_gt":"a"}}"#)])
        .await;
    assert_eq!(
        r.message(),
        "Invalid query. \"string\" field type does not contain the \"_gt\" filter operator."
    );
}

#[tokio::test]
async fn schema_reads_need_the_admin() {
    let api = Api::start().await;
    let anon = api.anonymous();
    let r = anon.get("/fields/notes").await;
    assert_eq!(r.status, 403);
    assert_eq!(
        r.message(),
        "You don't have permission to perform \"read\" for collection \"directus_fields\" or it does not exist."
    );
    let r = anon.get("/collections/notes").await;
    assert_eq!(
        r.message(),
        "You don't have permission to perform \"read\" for collection \"notes\" or it does not exist."
    );
    let r = anon.get("/collections").await;
    assert_eq!(r.status, 403);
    assert_eq!(
        r.message(),
        "You don't have permission to access collection \"directus_collections\" or it does not exist. Queried in root."
    );
    let r = api.get("/fields/nope", &[]).await;
    assert_eq!(
        r.body["errors"][0]["extensions"]["reason"],
        json!(
            "You don't have permission to access collection \"nope\" or it does not exist. Queried in root."
        )
    );
}
