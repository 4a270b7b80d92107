//! Several processes on one local database: the lease of a collection lets one of them sync it
//! at a time, so each change is pushed once, and opening a fresh database together works.
//!
//! Two engines opened on one database stand for two processes: each has its own connections,
//! and the leases are held in the database (advisory locks) or beside it (lock files).

use deltasync::engine_ports::Store;
use deltasync::{LeaseWait, SyncOptions};
use serde_json::json;
use tests::{FIELDS, World, backends, row};

const ROWS: usize = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_syncing_at_once_push_each_change_once() {
    for backend in backends() {
        let mut world = World::new(backend.clone()).await;
        world.collection("articles", &FIELDS).await;
        let config = world
            .replica_config(vec![World::config("articles", &FIELDS)])
            .await;
        // Opening a fresh database together: one creates the tables, the other finds them.
        let (a, b) = tokio::join!(deltasync::open(config.clone()), deltasync::open(config));
        let (a, b) = (a.expect("first opens"), b.expect("second opens"));
        let articles = a.collection("articles").unwrap();
        for i in 0..ROWS {
            let data = row(json!({"title": format!("row {i}"), "views": i}));
            articles.insert(data).await.unwrap();
        }
        world.server.state().reset_stats();

        let (first, second) = tokio::join!(a.sync(None), b.sync(None));
        let (first, second) = (first.unwrap(), second.unwrap());

        let pushed = first.collections[0].pushed + second.collections[0].pushed;
        assert_eq!(pushed, ROWS as u64, "{backend:?}: each change pushed once");
        let creates = world
            .server
            .state()
            .stats()
            .count("POST", "/items/{collection}");
        assert_eq!(creates, 1, "{backend:?}: one create request for the batch");
        assert_eq!(world.server.state().count("articles"), ROWS);
        assert!(
            !first.failed() && !second.failed(),
            "{backend:?}: {first:?} {second:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collection_whose_lease_is_held_is_left_to_its_holder_or_waited_for() {
    for backend in backends() {
        let mut world = World::new(backend.clone()).await;
        world.collection("articles", &FIELDS).await;
        let replica = world
            .replica(vec![World::config("articles", &FIELDS)])
            .await;
        let articles = replica.collection("articles").unwrap();
        articles
            .insert(row(json!({"title": "waits"})))
            .await
            .unwrap();

        let held = replica
            .store()
            .lease("articles", LeaseWait::Skip)
            .await
            .unwrap()
            .expect("a free lease is taken");
        let again = replica
            .store()
            .lease("articles", LeaseWait::Skip)
            .await
            .unwrap();
        assert!(
            again.is_none(),
            "{backend:?}: a held lease is not taken twice"
        );

        let skip = SyncOptions {
            lease: LeaseWait::Skip,
            ..Default::default()
        };
        let report = replica.sync_with(None, skip).await.unwrap();
        assert!(report.collections[0].held_elsewhere, "{backend:?}");
        assert_eq!(report.collections[0].pushed, 0);
        assert_eq!(world.server.state().count("articles"), 0);

        // A waiting sync goes ahead once the holder lets go.
        let waiting = replica.sync(None);
        let release = async move { drop(held) };
        let (report, ()) = tokio::join!(waiting, release);
        assert_eq!(report.unwrap().collections[0].pushed, 1, "{backend:?}");
        assert_eq!(world.server.state().count("articles"), 1);
    }
}
