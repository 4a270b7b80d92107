//! The activity log: one row per written item, none when accountability is off or for
//! direct database deletes, readable with the usual query parameters.

mod common;

use common::Api;
use serde_json::{Value, json};

#[tokio::test]
async fn writes_leave_one_activity_row_per_item() {
    let api = Api::start().await;
    let a = api.create_note(Api::note("a")).await;
    let id = a["id"].as_str().unwrap();
    api.tick(1);
    api.patch(&format!("/items/notes/{id}"), json!({"title": "b"}))
        .await;
    api.tick(1);
    api.delete(&format!("/items/notes/{id}"), None).await;

    let r = api
        .get(
            "/activity",
            &[
                ("filter", r#"{"collection":{"_eq":"notes"}}"#),
                ("sort", "id"),
            ],
        )
        .await;
    let rows = r.data().as_array().unwrap();
    let actions: Vec<&Value> = rows.iter().map(|row| &row["action"]).collect();
    assert_eq!(
        actions,
        [&json!("create"), &json!("update"), &json!("delete")]
    );
    let row = &rows[2];
    assert_eq!(row["id"], json!(3));
    assert_eq!(row["item"], json!(id));
    assert_eq!(row["collection"], json!("notes"));
    assert_eq!(row["timestamp"], json!("2026-11-22T10:00:00.002Z"));
    assert_eq!(row["user"], json!(api.server.state().admin_user_id()));
    assert_eq!(row["ip"], json!("127.0.0.1"));
    // Creates and updates save a revision; deletes do not.
    let revisions: Vec<&Value> = rows.iter().map(|row| &row["revisions"]).collect();
    assert_eq!(revisions, [&json!([1]), &json!([2]), &json!([])]);
    // Each revision holds the item as the write left it.
    let saved = api.server.state().revisions();
    let titles: Vec<(&str, &Value)> = saved
        .iter()
        .map(|r| (r.item.as_str(), &r.data["title"]))
        .collect();
    assert_eq!(titles, [(id, &json!("a")), (id, &json!("b"))]);
    assert_eq!(saved[1].activity, 2);
}

#[tokio::test]
async fn delete_activity_can_be_read_with_an_id_cursor() {
    let api = Api::start().await;
    let notes: Vec<Value> = (0..5).map(|i| Api::note(&format!("n{i}"))).collect();
    api.post("/items/notes", json!(notes.clone())).await;
    for n in &notes {
        api.delete(&format!("/items/notes/{}", n["id"].as_str().unwrap()), None)
            .await;
    }
    let filter = r#"{"collection":{"_eq":"notes"},"action":{"_eq":"delete"},"id":{"_gt":7}}"#;
    let r = api
        .get(
            "/activity",
            &[("filter", filter), ("sort", "id"), ("fields", "id,item")],
        )
        .await;
    let items: Vec<&Value> = r
        .data()
        .as_array()
        .unwrap()
        .iter()
        .map(|row| &row["item"])
        .collect();
    assert_eq!(items, [&notes[2]["id"], &notes[3]["id"], &notes[4]["id"]]);
}

#[tokio::test]
async fn nothing_is_logged_without_accountability_or_for_raw_deletes() {
    let api = Api::start().await;
    let a = api.create_note(Api::note("a")).await;
    let state = api.server.state();
    assert!(state.raw_delete("notes", a["id"].as_str().unwrap()));
    assert_eq!(state.activity().len(), 1);

    state.set_accountability("notes", None).unwrap();
    let b = api.create_note(Api::note("b")).await;
    api.delete(&format!("/items/notes/{}", b["id"].as_str().unwrap()), None)
        .await;
    assert_eq!(state.activity().len(), 1);

    let r = api.get("/collections/notes", &[]).await;
    assert_eq!(r.data()["meta"]["accountability"], json!(null));
}

#[tokio::test]
async fn the_public_role_cannot_read_activity() {
    let api = Api::start().await;
    let r = api.anonymous().get("/activity").await;
    assert_eq!(r.status, 403);
}
