//! Payload limit, injected faults, request statistics and the `Date` header.

mod common;

use common::Api;
use refserver::{Fault, FaultScope, Options};
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn oversized_bodies_are_an_invalid_payload_not_413() {
    let api = Api::with(Options {
        max_payload_bytes: 1_000,
        ..Options::default()
    })
    .await;
    let r = api
        .post("/items/notes", json!({"title": "x".repeat(2_000)}))
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.code(), "INVALID_PAYLOAD");
    assert_eq!(r.message(), "Invalid payload. request entity too large.");
    assert_eq!(api.server.state().count("notes"), 0);
}

#[tokio::test]
async fn fail_next_answers_before_touching_data() {
    let api = Api::start().await;
    let state = api.server.state();
    state.inject_scoped(
        Fault::rate_limited(1, 2),
        FaultScope::method("POST").path("/items/notes"),
    );
    let r = api.post("/items/notes", Api::note("a")).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.code(), "REQUESTS_EXCEEDED");
    assert_eq!(r.headers["retry-after"], "2");
    assert_eq!(state.count("notes"), 0);
    assert_eq!(api.post("/items/notes", Api::note("a")).await.status, 200);

    state.inject(Fault::unavailable(1));
    let r = api.get("/items/notes", &[]).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.code(), "SERVICE_UNAVAILABLE");
    assert!(r.headers.get("retry-after").is_none());
    assert_eq!(state.pending_faults(), 0);
}

#[tokio::test]
async fn commit_then_fail_applies_the_write_and_loses_the_response() {
    let api = Api::start().await;
    let state = api.server.state();
    state.inject_scoped(
        Fault::CommitThenFail {
            count: 1,
            status: 503,
        },
        FaultScope::method("POST"),
    );
    let note = Api::note("a");
    let r = api.post("/items/notes", note.clone()).await;
    assert_eq!(r.status, 503);
    assert_eq!(state.count("notes"), 1);
    // The retry of the same create is recognisable by its key.
    let r = api.post("/items/notes", note).await;
    assert_eq!(r.code(), "RECORD_NOT_UNIQUE");
}

#[tokio::test]
async fn backdated_writes_stamp_in_the_past() {
    let api = Api::start().await;
    api.tick(10_000);
    api.server.state().inject(Fault::BackdateWrites {
        count: 1,
        by: Duration::from_secs(5),
    });
    let slow = api.create_note(Api::note("slow")).await;
    let normal = api.create_note(Api::note("normal")).await;
    assert_eq!(slow["last_modified"], json!("2026-11-22T10:00:05.000Z"));
    assert_eq!(normal["last_modified"], json!("2026-11-22T10:00:10.000Z"));
}

#[tokio::test]
async fn stats_count_requests_per_route_pattern() {
    let api = Api::start().await;
    api.server.state().reset_stats();
    api.get("/items/notes", &[]).await;
    api.get("/items/notes", &[("limit", "1")]).await;
    api.post("/items/notes", Api::note("a")).await;
    api.get("/nowhere", &[]).await;
    let stats = api.server.state().stats();
    assert_eq!(stats.count("GET", "/items/{collection}"), 2);
    assert_eq!(stats.count("POST", "/items/{collection}"), 1);
    assert_eq!(stats.total, 4);
}

#[tokio::test]
async fn date_header_follows_the_server_clock() {
    let api = Api::start().await;
    let r = api.get("/server/ping", &[]).await;
    assert_eq!(r.body, json!("pong"));
    assert_eq!(r.headers["date"], "Sun, 22 Nov 2026 10:00:00 GMT");
    let r = api.get("/nowhere", &[]).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.code(), "ROUTE_NOT_FOUND");
    assert_eq!(r.headers["date"], "Sun, 22 Nov 2026 10:00:00 GMT");
}
