//! A push works through pending rows a chunk (1,000 rows) at a time, and settles a chunk
//! while the next one goes out. These tests pin down how chunks follow each other: the
//! overlap itself, and that nothing the server acknowledged is left looking pending when a
//! chunk fails.

use std::sync::Arc;
use std::time::Duration;

use engine::ports::Store;
use sea_orm::{ConnectionTrait, DatabaseTransaction, TransactionTrait};
use serde_json::json;
use tests::{Backend, Call, FIELDS, World, backends, row};

/// Inserts `n` local rows through the engine, as an application would.
async fn insert_articles<R: engine::ports::Remote>(
    replica: &engine::Engine<adapters::SqlStore, R>,
    n: usize,
) {
    let articles = replica.collection("articles").unwrap();
    for i in 0..n {
        articles
            .insert(row(json!({"title": format!("a{i}"), "views": i})))
            .await
            .unwrap();
    }
}

/// The collection's pending creates and all its local rows.
async fn created_and_rows<R: engine::ports::Remote>(
    replica: &engine::Engine<adapters::SqlStore, R>,
) -> (u64, u64) {
    let c = replica.config().collection("articles").unwrap();
    let status = replica.store().status(c).await.unwrap();
    (status.created, status.rows)
}

#[tokio::test]
async fn the_next_chunk_goes_out_while_the_chunk_before_waits_to_be_settled() {
    for backend in backends() {
        let mut world = World::new(backend.clone()).await;
        world.collection("articles", &FIELDS).await;
        let a = world
            .hooked_replica(vec![World::config("articles", &FIELDS)])
            .await;
        // Two chunks: 1,000 rows in two create requests, then one row in a third.
        insert_articles(&a, 1_001).await;
        // Once the push has begun, an application takes the write lock (SQLite) or a lock
        // that lets reads through but no write (PostgreSQL): settling the first chunk waits.
        let app = sea_orm::Database::connect(&a.config().local.database)
            .await
            .unwrap();
        if backend == Backend::Sqlite {
            app.execute_unprepared("CREATE TABLE app_lock (x INTEGER)")
                .await
                .unwrap();
        }
        let held: Arc<tokio::sync::Mutex<Option<DatabaseTransaction>>> = Arc::default();
        let holder = held.clone();
        a.remote().before_nth(
            Call::Create,
            1,
            Box::new(move || {
                Box::pin(async move {
                    let tx = app.begin().await.unwrap();
                    let lock = match backend {
                        Backend::Sqlite => "INSERT INTO app_lock VALUES (1)",
                        Backend::Postgres(_) => "LOCK TABLE articles IN SHARE ROW EXCLUSIVE MODE",
                    };
                    tx.execute_unprepared(lock).await.unwrap();
                    *holder.lock().await = Some(tx);
                })
            }),
        );
        let (reached, third_create) = tokio::sync::oneshot::channel();
        a.remote().before_nth(
            Call::Create,
            3,
            Box::new(move || {
                Box::pin(async move {
                    let _ = reached.send(());
                })
            }),
        );
        let release = async {
            // A failure detector, not a pause: without the overlap this never arrives.
            tokio::time::timeout(Duration::from_secs(20), third_create)
                .await
                .expect("the second chunk's create waited for the first chunk to be settled")
                .unwrap();
            let (created, _) = created_and_rows(&a).await;
            assert_eq!(created, 1_001, "nothing is settled while the lock is held");
            let tx = held.lock().await.take().expect("the lock is held");
            tx.rollback().await.unwrap();
        };
        let (report, ()) = tokio::join!(a.sync(None), release);
        let report = report.unwrap();
        assert!(!report.failed(), "{report:?}");
        assert_eq!(report.collections[0].pushed, 1_001);
        assert_eq!(created_and_rows(&a).await, (0, 1_001));
        assert_eq!(world.server_rows("articles").len(), 1_001);
    }
}

#[tokio::test]
async fn what_the_server_acknowledged_is_settled_when_the_rest_of_its_chunk_fails() {
    for backend in backends() {
        let mut world = World::new(backend).await;
        world.collection("articles", &FIELDS).await;
        let a = world
            .hooked_replica(vec![World::config("articles", &FIELDS)])
            .await;
        // One chunk, two create requests of 500 rows; the second fails.
        insert_articles(&a, 1_000).await;
        a.remote().fail_nth(Call::Create, 2);
        let failed = a.sync(None).await.unwrap();
        assert!(failed.failed(), "{failed:?}");
        assert_eq!(world.server_rows("articles").len(), 500);
        assert_eq!(
            created_and_rows(&a).await,
            (500, 1_000),
            "the 500 rows the server created are settled"
        );
        let report = a.sync(None).await.unwrap();
        assert!(!report.failed(), "{report:?}");
        assert_eq!(report.collections[0].pushed, 500);
        assert_eq!(world.server_rows("articles").len(), 1_000);
        assert_eq!(created_and_rows(&a).await, (0, 1_000));
        tests::assert_converged(&world, &a, "articles").await;
    }
}
