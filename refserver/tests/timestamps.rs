//! Stamping of `date-created` / `date-updated` fields, as deltasync's pull cursor relies on.

mod common;

use common::{Api, uuid};
use refserver::{CollectionDef, FieldDef, FieldType};
use serde_json::json;

#[tokio::test]
async fn date_updated_is_null_on_create_and_cursor_is_stamped() {
    let api = Api::start().await;
    let note = api.create_note(Api::note("a")).await;
    assert_eq!(note["date_updated"], json!(null));
    assert_eq!(note["date_created"], json!("2026-11-22T10:00:00.000Z"));
    assert_eq!(note["last_modified"], json!("2026-11-22T10:00:00.000Z"));
}

#[tokio::test]
async fn update_stamps_date_updated_and_cursor_but_not_date_created() {
    let api = Api::start().await;
    let note = api.create_note(Api::note("a")).await;
    api.tick(1_234);
    let r = api
        .patch(
            &format!("/items/notes/{}", note["id"].as_str().unwrap()),
            json!({"title": "b"}),
        )
        .await;
    assert_eq!(r.status, 200);
    let updated = r.data();
    assert_eq!(updated["title"], json!("b"));
    assert_eq!(updated["date_created"], json!("2026-11-22T10:00:00.000Z"));
    assert_eq!(updated["date_updated"], json!("2026-11-22T10:00:01.234Z"));
    assert_eq!(updated["last_modified"], json!("2026-11-22T10:00:01.234Z"));
}

#[tokio::test]
async fn empty_patch_still_moves_the_stamp() {
    let api = Api::start().await;
    let note = api.create_note(Api::note("a")).await;
    api.tick(5);
    let r = api
        .patch(
            &format!("/items/notes/{}", note["id"].as_str().unwrap()),
            json!({}),
        )
        .await;
    assert_eq!(r.data()["last_modified"], json!("2026-11-22T10:00:00.005Z"));
    assert_eq!(r.data()["title"], json!("a"));
}

#[tokio::test]
async fn every_row_of_a_request_gets_the_same_stamp() {
    let api = Api::start().await;
    let batch: Vec<_> = (0..20).map(|i| Api::note(&format!("n{i}"))).collect();
    let r = api.post("/items/notes", json!(batch)).await;
    let rows = r.data().as_array().unwrap();
    assert_eq!(rows.len(), 20);
    assert!(
        rows.iter()
            .all(|row| row["last_modified"] == rows[0]["last_modified"])
    );

    api.tick(10);
    let keys: Vec<_> = rows.iter().map(|row| row["id"].clone()).collect();
    let r = api
        .patch("/items/notes", json!({"keys": keys, "data": {"count": 1}}))
        .await;
    let rows = r.data().as_array().unwrap();
    assert_eq!(rows.len(), 20);
    assert!(
        rows.iter()
            .all(|row| row["last_modified"] == json!("2026-11-22T10:00:00.010Z"))
    );
}

#[tokio::test]
async fn client_values_for_stamped_fields_are_overwritten() {
    let api = Api::start().await;
    let mut note = Api::note("a");
    note["last_modified"] = json!("1999-01-01T00:00:00.000Z");
    note["date_created"] = json!("1999-01-01T00:00:00.000Z");
    let created = api.create_note(note).await;
    assert_eq!(created["last_modified"], json!("2026-11-22T10:00:00.000Z"));
    assert_eq!(created["date_created"], json!("2026-11-22T10:00:00.000Z"));

    api.tick(1);
    let path = format!("/items/notes/{}", created["id"].as_str().unwrap());
    let r = api.patch(&path, json!({"last_modified": "1999-01-01T00:00:00Z", "date_updated": "1999-01-01T00:00:00Z"})).await;
    assert_eq!(r.data()["last_modified"], json!("2026-11-22T10:00:00.001Z"));
    assert_eq!(r.data()["date_updated"], json!("2026-11-22T10:00:00.001Z"));
}

#[tokio::test]
async fn datetime_fields_come_back_without_zone_or_milliseconds() {
    let api = Api::start().await;
    let def = CollectionDef::new("events")
        .field(FieldDef::uuid_pk("id"))
        .field(FieldDef::new("at", FieldType::DateTime))
        .field(FieldDef::new("stamp", FieldType::Timestamp));
    api.server.state().create_collection(def).unwrap();
    let r = api
        .post("/items/events", json!({"id": uuid(), "at": "2026-01-02T03:04:05.678Z", "stamp": "2026-01-02T05:04:05.678+02:00"}))
        .await;
    assert_eq!(r.data()["at"], json!("2026-01-02T03:04:05"));
    assert_eq!(r.data()["stamp"], json!("2026-01-02T03:04:05.678Z"));
}

#[tokio::test]
async fn direct_writes_stamp_like_the_api() {
    let api = Api::start().await;
    let state = api.server.state();
    let row = json!({"id": uuid(), "title": "x"})
        .as_object()
        .unwrap()
        .clone();
    let created = state.insert("notes", vec![row]).unwrap().remove(0);
    assert_eq!(created["date_updated"], json!(null));
    api.tick(7);
    let id = created["id"].as_str().unwrap();
    let updated = state.update("notes", id, serde_json::Map::new()).unwrap();
    assert_eq!(updated["last_modified"], json!("2026-11-22T10:00:00.007Z"));
    assert_eq!(state.activity().len(), 2);
}
