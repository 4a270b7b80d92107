//! Tokens: static token, login, expiry on the server clock, refresh rotation, error codes.

mod common;

use common::Api;
use refserver::Options;
use serde_json::json;
use std::time::Duration;

async fn login(api: &Api) -> (String, String) {
    let r = api
        .post(
            "/auth/login",
            json!({"email": "admin@example.com", "password": "admin-password", "mode": "json"}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.data()["expires"], json!(60_000));
    (
        r.data()["access_token"].as_str().unwrap().to_string(),
        r.data()["refresh_token"].as_str().unwrap().to_string(),
    )
}

async fn start() -> Api {
    let mut api = Api::with(Options {
        access_token_ttl: Duration::from_secs(60),
        ..Options::default()
    })
    .await;
    api.token = None;
    api
}

#[tokio::test]
async fn access_tokens_expire_by_the_server_clock_and_refresh_rotates() {
    let mut api = start().await;
    let (access, refresh) = login(&api).await;
    api.token = Some(access);
    assert_eq!(api.get("/items/notes", &[]).await.status, 200);

    api.tick(60_000);
    let r = api.get("/items/notes", &[]).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.code(), "TOKEN_EXPIRED");
    assert_eq!(r.message(), "Token expired.");

    // Directus authenticates every route, so the expired token must not be sent along.
    api.token = None;
    let r = api
        .post(
            "/auth/refresh",
            json!({"refresh_token": refresh, "mode": "json"}),
        )
        .await;
    assert_eq!(r.status, 200);
    let next_access = r.data()["access_token"].as_str().unwrap().to_string();
    assert_ne!(r.data()["refresh_token"].as_str().unwrap(), refresh);

    let r = api
        .post(
            "/auth/refresh",
            json!({"refresh_token": refresh, "mode": "json"}),
        )
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.code(), "INVALID_CREDENTIALS");

    api.token = Some(next_access);
    assert_eq!(api.get("/items/notes", &[]).await.status, 200);
}

#[tokio::test]
async fn bad_credentials_and_tokens_get_directus_codes() {
    let mut api = start().await;
    let r = api
        .post(
            "/auth/login",
            json!({"email": "admin@example.com", "password": "wrong"}),
        )
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.code(), "INVALID_CREDENTIALS");
    assert_eq!(r.message(), "Invalid user credentials.");

    let r = api.post("/auth/login", json!({"password": "x"})).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.code(), "INVALID_PAYLOAD");

    api.token = Some("not-a-token".into());
    let r = api.get("/items/notes", &[]).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.code(), "INVALID_CREDENTIALS");

    // A well-formed Directus JWT this server never issued.
    let (access, _) = {
        api.token = None;
        login(&api).await
    };
    let mut parts: Vec<&str> = access.split('.').collect();
    parts[2] = "AAAA";
    api.token = Some(parts.join("."));
    let r = api.get("/items/notes", &[]).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.code(), "INVALID_TOKEN");
}

#[tokio::test]
async fn static_token_works_in_header_and_query() {
    let mut api = start().await;
    let token = api.server.admin_token().to_string();
    assert_eq!(
        api.get("/items/notes", &[("access_token", &token)])
            .await
            .status,
        200
    );
    api.token = Some(token);
    let r = api.get("/users/me", &[]).await;
    assert_eq!(r.data()["email"], json!("admin@example.com"));
    assert_eq!(api.anonymous().get("/items/notes").await.status, 403);
}
