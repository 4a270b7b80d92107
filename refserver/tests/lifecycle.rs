//! Starting and stopping the server.

use refserver::Options;

#[tokio::test]
async fn serves_until_shut_down() {
    let server = refserver::start(Options::default()).await.unwrap();
    let url = format!("{}/server/ping", server.url());
    let client = reqwest::Client::new();
    let body = client.get(&url).send().await.unwrap().text().await.unwrap();
    assert_eq!(body, "pong");
    server.shutdown().await;
    assert!(client.get(&url).send().await.is_err());
}
