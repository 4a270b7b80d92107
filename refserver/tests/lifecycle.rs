//! Starting and stopping the server.

use refserver::Options;

#[tokio::test]
async fn serves_until_shut_down() {
    let server = refserver::start(Options::default()).await.unwrap();
    let url = format!("{}/server/ping", server.url());
    let client = reqwest::Client::new();
    let body = client.get(&url).send().await.unwrap().text().await.unwrap();
    assert_eq!(body, "pong");
    // The ping is answered before the token is looked at, in Express's content type.
    let r = client
        .get(&url)
        .bearer_auth("nonsense")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8");
    let r = client
        .get(format!("{}/server/info", server.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["content-type"],
        "application/json; charset=utf-8"
    );
    server.shutdown().await;
    assert!(client.get(&url).send().await.is_err());
}
