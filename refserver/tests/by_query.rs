//! Update and delete by query: compare-and-set, the 100-row default, deletes.

mod common;

use common::Api;
use serde_json::{Value, json};

fn cas(id: &Value, base: &Value, title: &str) -> Value {
    json!({
        "query": {"filter": {"_and": [{"id": {"_eq": id}}, {"last_modified": {"_eq": base}}]}, "limit": -1},
        "data": {"title": title}
    })
}

#[tokio::test]
async fn compare_and_set_applies_only_at_the_expected_stamp() {
    let api = Api::start().await;
    let note = api.create_note(Api::note("a")).await;
    let base = note["last_modified"].clone();
    api.tick(10);
    let r = api
        .patch("/items/notes", cas(&note["id"], &base, "mine"))
        .await;
    assert_eq!(r.status, 200);
    let rows = r.data().as_array().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["title"], json!("mine"));

    // The stamp moved with that write: the same base no longer matches.
    api.tick(10);
    let r = api
        .patch("/items/notes", cas(&note["id"], &base, "theirs"))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, json!({"data": []}));
    let stored = api
        .server
        .state()
        .get("notes", note["id"].as_str().unwrap())
        .unwrap();
    assert_eq!(stored["title"], json!("mine"));
}

#[tokio::test]
async fn by_query_mutations_touch_at_most_100_rows_without_a_limit() {
    let api = Api::start().await;
    let batch: Vec<Value> = (0..130).map(|i| Api::note(&format!("n{i}"))).collect();
    api.post("/items/notes", json!(batch)).await;
    let r = api
        .patch(
            "/items/notes",
            json!({"query": {"filter": {"title": {"_nnull": true}}}, "data": {"count": 1}}),
        )
        .await;
    assert_eq!(r.data().as_array().unwrap().len(), 100);
    let r = api
        .patch("/items/notes", json!({"query": {"filter": {"count": {"_null": true}}, "limit": -1}, "data": {"count": 2}}))
        .await;
    assert_eq!(r.data().as_array().unwrap().len(), 30);
}

#[tokio::test]
async fn delete_by_query_keys_and_array() {
    let api = Api::start().await;
    let batch: Vec<Value> = (0..6)
        .map(|i| json!({"id": common::uuid(), "title": format!("n{i}"), "count": i}))
        .collect();
    api.post("/items/notes", json!(batch.clone())).await;

    let r = api
        .delete(
            "/items/notes",
            Some(json!({"query": {"filter": {"count": {"_lt": 2}}}})),
        )
        .await;
    assert_eq!(r.status, 204);
    assert_eq!(api.server.state().count("notes"), 4);

    let r = api
        .delete("/items/notes", Some(json!({"keys": [batch[2]["id"]]})))
        .await;
    assert_eq!(r.status, 204);
    let r = api
        .delete(
            "/items/notes",
            Some(json!([batch[3]["id"], batch[4]["id"]])),
        )
        .await;
    assert_eq!(r.status, 204);
    assert_eq!(api.server.state().count("notes"), 1);

    let deletes: Vec<_> = api
        .server
        .state()
        .activity()
        .into_iter()
        .filter(|a| a["action"] == json!("delete"))
        .collect();
    assert_eq!(deletes.len(), 5);
}
