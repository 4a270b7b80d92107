//! Login sessions under concurrency: Directus rotates refresh tokens, so a second refresh
//! with the same token fails; the client must renew a session once however many requests
//! are in flight when it expires.

use std::time::Duration;

use adapters::DirectusClient;
use adapters::directus::Method;
use chrono::{TimeZone, Utc};
use futures::future::join_all;
use refserver::{Clock, CollectionDef, FieldDef, FieldType, Options, ServerHandle};
use schema::{Auth, RemoteConfig, Secret};

/// As many requests as the engine sends at once.
const IN_FLIGHT: usize = 8;
const ACCESS_TOKEN_TTL: Duration = Duration::from_secs(60);

async fn start_server() -> ServerHandle {
    let server = refserver::start(Options {
        access_token_ttl: ACCESS_TOKEN_TTL,
        ..Options::default()
    })
    .await
    .expect("server starts");
    let t0 = Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap();
    server.state().set_clock(Clock::Manual(t0));
    server
        .state()
        .create_collection(
            CollectionDef::new("notes")
                .field(FieldDef::uuid_pk("id"))
                .field(FieldDef::new("title", FieldType::String)),
        )
        .expect("notes collection");
    server
}

fn login_client(server: &ServerHandle) -> DirectusClient {
    let options = server.state().options();
    let auth = Auth::Login {
        email: options.admin_email.clone(),
        password: Secret::new(options.admin_password.clone()),
    };
    DirectusClient::new(&RemoteConfig::new(server.url(), auth))
        .expect("client")
        .with_min_backoff(Duration::from_millis(1))
}

/// Sends [`IN_FLIGHT`] concurrent reads and asserts they all succeed.
async fn read_concurrently(client: &DirectusClient) {
    let reads =
        (0..IN_FLIGHT).map(|_| client.request(Method::GET, "/items/notes", &[], None, None));
    for (i, result) in join_all(reads).await.into_iter().enumerate() {
        if let Err(e) = result {
            panic!("read {i} failed: {e}");
        }
    }
}

#[tokio::test]
async fn concurrent_first_requests_log_in_once() {
    let server = start_server().await;
    let client = login_client(&server);

    read_concurrently(&client).await;

    let stats = server.state().stats();
    assert_eq!(stats.count("POST", "/auth/login"), 1);
    assert_eq!(stats.count("POST", "/auth/refresh"), 0);
    server.shutdown().await;
}

#[tokio::test]
async fn concurrent_requests_with_an_expired_token_refresh_once() {
    let server = start_server().await;
    let client = login_client(&server);
    client
        .request(Method::GET, "/items/notes", &[], None, None)
        .await
        .expect("first read logs in");
    server.state().advance_clock(ACCESS_TOKEN_TTL);
    server.state().reset_stats();

    read_concurrently(&client).await;

    let stats = server.state().stats();
    assert_eq!(stats.count("POST", "/auth/refresh"), 1);
    assert_eq!(stats.count("POST", "/auth/login"), 0);
    server.shutdown().await;
}
