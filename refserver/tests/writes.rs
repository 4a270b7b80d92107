//! Creates and batch writes: duplicates, rollback, response order, payload checks.

mod common;

use common::{Api, uuid};
use serde_json::{Value, json};

#[tokio::test]
async fn duplicate_key_rolls_back_the_whole_batch() {
    let api = Api::start().await;
    let existing = api.create_note(Api::note("first")).await;
    let batch = json!([Api::note("a"), Api::note("b"), {"id": existing["id"], "title": "dup"}]);
    let r = api.post("/items/notes", batch).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.code(), "RECORD_NOT_UNIQUE");
    let ext = &r.body["errors"][0]["extensions"];
    assert_eq!(ext["collection"], json!("notes"));
    assert_eq!(ext["field"], json!("id"));
    assert_eq!(ext["value"], existing["id"]);
    assert_eq!(
        r.message(),
        format!(
            "Value \"{}\" for field \"id\" in collection \"notes\" has to be unique.",
            existing["id"].as_str().unwrap()
        )
    );
    assert_eq!(api.server.state().count("notes"), 1);
    // Only the first create was logged.
    assert_eq!(api.server.state().activity().len(), 1);
}

#[tokio::test]
async fn batch_create_answers_in_primary_key_order() {
    let api = Api::start().await;
    let mut ids: Vec<String> = (0..10).map(|_| uuid()).collect();
    let batch: Vec<Value> = ids
        .iter()
        .map(|id| json!({"id": id, "title": "t"}))
        .collect();
    let r = api.post("/items/notes", json!(batch)).await;
    let got: Vec<String> = r
        .data()
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    assert_eq!(got, ids);
}

#[tokio::test]
async fn fields_param_shapes_the_echo() {
    let api = Api::start().await;
    let r = api
        .post_query("/items/notes", &[("fields", "id,title")], Api::note("a"))
        .await;
    let keys: Vec<&String> = r.data().as_object().unwrap().keys().collect();
    assert_eq!(keys, ["id", "title"]);
}

#[tokio::test]
async fn unknown_payload_fields_are_dropped_and_values_stored_as_sqlite_does() {
    let api = Api::start().await;
    let mut note = Api::note("a");
    note["nonsense"] = json!(1);
    note["count"] = json!("12");
    let created = api.create_note(note).await;
    assert!(created.get("nonsense").is_none());
    assert_eq!(created["count"], json!(12));

    // Directus does not check types on write: SQLite keeps what its type affinity makes of
    // a value, and the value reads back as stored.
    let created = api
        .create_note(json!({"id": uuid(), "count": "twelve", "title": 12.5}))
        .await;
    assert_eq!(created["count"], json!("twelve"));
    assert_eq!(created["title"], json!("12.5"));
    let created = api
        .create_note(json!({"id": uuid(), "count": true, "title": {"a": [1]}}))
        .await;
    assert_eq!(created["count"], json!(1));
    assert_eq!(created["title"], json!("{\"a\":[1]}"));

    // Dates are converted by Directus itself, which fails on one it cannot read.
    let r = api
        .post(
            "/items/notes",
            json!({"id": uuid(), "date_updated": "not a date"}),
        )
        .await;
    assert_eq!(r.status, 500);
    assert_eq!(r.code(), "INTERNAL_SERVER_ERROR");
    assert_eq!(r.message(), "Invalid time value");

    // A key that is not valid for the key type is refused before anything is written.
    let r = api
        .post("/items/notes", json!({"id": "not-a-uuid", "title": "x"}))
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(r.code(), "FORBIDDEN");
    assert_eq!(api.server.state().count("notes"), 3);
}

#[tokio::test]
async fn missing_uuid_key_is_generated() {
    let api = Api::start().await;
    let created = api.create_note(json!({"title": "no id"})).await;
    assert_eq!(created["id"].as_str().unwrap().len(), 36);
}

#[tokio::test]
async fn batch_update_is_all_or_nothing_and_needs_keys() {
    let api = Api::start().await;
    let a = api.create_note(Api::note("a")).await;
    let b = api.create_note(Api::note("b")).await;
    let r = api
        .patch(
            "/items/notes",
            json!([{"id": a["id"], "title": "a2"}, {"id": b["id"], "date_created": "bad"}]),
        )
        .await;
    assert_eq!(r.status, 500);
    assert_eq!(
        api.server
            .state()
            .get("notes", a["id"].as_str().unwrap())
            .unwrap()["title"],
        json!("a")
    );

    let r = api
        .patch("/items/notes", json!([{"title": "no key"}]))
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.message(),
        "Invalid payload. Item in update misses primary key."
    );

    let r = api
        .patch(
            "/items/notes",
            json!([{"id": a["id"], "title": "a2"}, {"id": b["id"], "title": "b2"}]),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.data().as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn batch_bodies_are_validated_like_directus() {
    let api = Api::start().await;
    let r = api.patch("/items/notes", json!({"data": {}})).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.message(),
        "Invalid payload. \"value\" must contain at least one of [query, keys]."
    );
    let r = api.patch("/items/notes", json!({"keys": []})).await;
    assert_eq!(r.message(), "Invalid payload. \"data\" is required.");
    let r = api
        .delete("/items/notes", Some(json!({"keys": [], "query": {}})))
        .await;
    assert_eq!(
        r.message(),
        "Invalid payload. \"value\" contains a conflict between exclusive peers [query, keys]."
    );
}

#[tokio::test]
async fn integer_keys_autoincrement_and_are_never_reused() {
    let api = Api::start().await;
    let def = refserver::CollectionDef::new("tags").field(refserver::FieldDef::new(
        "name",
        refserver::FieldType::String,
    ));
    let r = api
        .post("/collections", serde_json::to_value(&def).unwrap())
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let a = api.post("/items/tags", json!({"name": "a"})).await;
    assert_eq!(a.data()["id"], json!(1));
    let r = api.delete("/items/tags/1", None).await;
    assert_eq!(r.status, 204);
    let b = api.post("/items/tags", json!({"name": "b"})).await;
    assert_eq!(b.data()["id"], json!(2));
}
