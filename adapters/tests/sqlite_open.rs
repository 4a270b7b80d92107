//! Opening a SQLite database that an application is writing to at that moment.

use std::time::Duration;

use adapters::SqlStore;
use sea_orm::{ConnectionTrait, Database};

/// An application holds the write lock of a database that is not in WAL mode yet (it made
/// the file) while the store opens it and switches it to WAL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_opens_a_database_an_application_is_writing_to() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("app.db").display());
    let app = Database::connect(&url).await.unwrap();
    app.execute_unprepared("CREATE TABLE notes (body TEXT)")
        .await
        .unwrap();
    app.execute_unprepared("BEGIN EXCLUSIVE").await.unwrap();
    app.execute_unprepared("INSERT INTO notes VALUES ('busy')")
        .await
        .unwrap();
    let opening = tokio::spawn({
        let url = url.clone();
        async move { SqlStore::connect(&url).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    app.execute_unprepared("COMMIT").await.unwrap();
    let opened = opening.await.unwrap();
    assert!(opened.is_ok(), "{:?}", opened.err());
}
