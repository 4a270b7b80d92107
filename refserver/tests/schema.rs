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
    assert_eq!(
        fields[2]["meta"]["special"],
        json!(["date-created", "date-updated"])
    );

    let r = api.post("/items/todos", json!({"id": uuid()})).await;
    assert_eq!(r.data()["done"], json!(false));
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
