//! Missing items: 403 on read, 204 for admin writes (which still log activity), 403 for the
//! public role and for keys that are not valid for the key type.

mod common;

use common::{Api, uuid};
use serde_json::json;

#[tokio::test]
async fn get_of_a_missing_item_is_forbidden() {
    let api = Api::start().await;
    let r = api.get(&format!("/items/notes/{}", uuid()), &[]).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.code(), "FORBIDDEN");
    assert_eq!(r.message(), "You don't have permission to access this.");
}

#[tokio::test]
async fn invalid_keys_and_unknown_collections_are_forbidden() {
    let api = Api::start().await;
    let r = api.get("/items/notes/not-a-uuid", &[]).await;
    assert_eq!(r.status, 403);
    let r = api.delete("/items/notes/not-a-uuid", None).await;
    assert_eq!(r.status, 403);
    let r = api.get("/items/nope", &[]).await;
    assert_eq!(r.status, 403);
    assert_eq!(
        r.message(),
        "You don't have permission to access collection \"nope\" or it does not exist. Queried in root."
    );
}

#[tokio::test]
async fn admin_patch_of_a_missing_item_answers_no_content_and_logs() {
    let api = Api::start().await;
    let id = uuid();
    let r = api
        .patch(&format!("/items/notes/{id}"), json!({"title": "x"}))
        .await;
    assert_eq!(r.status, 204);
    assert_eq!(api.server.state().count("notes"), 0);
    let activity = api.server.state().activity();
    assert_eq!(activity.len(), 1);
    assert_eq!(activity[0]["action"], json!("update"));
    assert_eq!(activity[0]["item"], json!(id));
}

#[tokio::test]
async fn admin_delete_of_a_missing_item_answers_no_content_and_logs() {
    let api = Api::start().await;
    let id = uuid();
    let r = api.delete(&format!("/items/notes/{id}"), None).await;
    assert_eq!(r.status, 204);
    let activity = api.server.state().activity();
    assert_eq!(activity.len(), 1);
    assert_eq!(activity[0]["action"], json!("delete"));
    assert_eq!(activity[0]["item"], json!(id));
}

#[tokio::test]
async fn the_public_role_gets_forbidden_everywhere() {
    let api = Api::start().await;
    let note = api.create_note(Api::note("a")).await;
    let path = format!("/items/notes/{}", note["id"].as_str().unwrap());
    let anon = api.anonymous();
    for r in [
        anon.get(&path).await,
        anon.get("/items/notes").await,
        anon.patch(&path, json!({"title": "x"})).await,
        anon.delete(&path).await,
        anon.post("/items/notes", Api::note("b")).await,
    ] {
        assert_eq!(r.status, 403, "{:?}", r.body);
        assert_eq!(r.code(), "FORBIDDEN");
        // Reads and writes alike are told the collection may not be there.
        assert_eq!(
            r.message(),
            "You don't have permission to access collection \"notes\" or it does not exist. Queried in root."
        );
    }
    assert_eq!(api.server.state().count("notes"), 1);
}
