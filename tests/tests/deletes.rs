//! Remote deletes the activity log cannot tell: key reconciliation, on demand and as the
//! fallback when the log is off, unreadable or cut by retention; rows leaving a filter.

use deltasync::{LeaseWait, SyncOptions};
use serde_json::json;
use tests::{FIELDS, World, assert_converged, backends, local_rows, row};

const KEYS: SyncOptions = SyncOptions {
    reconcile_keys: true,
    lease: LeaseWait::Wait,
};

async fn synced_world(backend: tests::Backend) -> (World, deltasync::Deltasync, Vec<String>) {
    let mut world = World::new(backend).await;
    world.collection("articles", &FIELDS).await;
    let keys = world.seed(
        "articles",
        (0..5)
            .map(|i| row(json!({"title": format!("a{i}"), "views": i * 100})))
            .collect(),
    );
    let a = world
        .replica(vec![World::config("articles", &FIELDS)])
        .await;
    a.sync(None).await.unwrap();
    (world, a, keys)
}

#[tokio::test]
async fn comparing_keys_on_demand_removes_rows_deleted_without_a_trace() {
    for backend in backends() {
        let (world, a, keys) = synced_world(backend).await;
        // Gone from the database behind Directus's back: nothing in the activity log.
        assert!(world.server.state().raw_delete("articles", &keys[2]));
        let report = a.sync(None).await.unwrap();
        assert_eq!(report.collections[0].deleted, 0, "the log cannot tell");
        let report = a.sync_with(None, KEYS).await.unwrap();
        assert!(!report.failed(), "{report:?}");
        assert_eq!(report.collections[0].deleted, 1, "{report:?}");
        assert_converged(&world, &a, "articles").await;
    }
}

#[tokio::test]
async fn with_accountability_off_deletes_are_found_by_comparing_keys() {
    for backend in backends() {
        let (world, a, keys) = synced_world(backend).await;
        world
            .server
            .state()
            .set_accountability("articles", None)
            .unwrap();
        world
            .server
            .state()
            .delete("articles", &[keys[0].as_str()])
            .unwrap();
        let report = a.sync(None).await.unwrap();
        assert!(!report.failed(), "{report:?}");
        assert_eq!(report.collections[0].deleted, 1, "{report:?}");
        assert_converged(&world, &a, "articles").await;
    }
}

#[tokio::test]
async fn a_retention_gap_in_the_activity_log_falls_back_to_keys() {
    for backend in backends() {
        let (world, a, keys) = synced_world(backend).await;
        let server = world.server.state();
        server.delete("articles", &[keys[1].as_str()]).unwrap();
        server
            .insert("articles", vec![row(json!({"title": "later"}))])
            .unwrap();
        // Retention removes every entry but the newest, the delete among them.
        let newest = server.activity().last().unwrap()["id"].as_i64().unwrap();
        assert!(server.purge_activity(newest - 1) > 0);
        let report = a.sync(None).await.unwrap();
        assert!(!report.failed(), "{report:?}");
        assert_eq!(report.collections[0].deleted, 1, "{report:?}");
        assert_converged(&world, &a, "articles").await;
        // Back on the log: the next sync neither finds a gap nor compares keys again.
        world.server.state().reset_stats();
        a.sync(None).await.unwrap();
        let stats = world.server.state().stats();
        assert_eq!(
            stats.count("GET", "/items/{collection}"),
            1,
            "only the pull: {stats:?}"
        );
    }
}

#[tokio::test]
async fn rows_that_leave_the_filter_go_when_keys_are_compared() {
    for backend in backends() {
        let mut world = World::new(backend).await;
        world.collection("articles", &FIELDS).await;
        let keys: Vec<String> = world.seed(
            "articles",
            (0..4)
                .map(|i| row(json!({"title": format!("a{i}"), "views": i})))
                .collect(),
        );
        let mut c = World::config("articles", &FIELDS);
        c.filter = Some(json!({"views": {"_lt": 100}}));
        let a = world.replica(vec![c]).await;
        a.sync(None).await.unwrap();
        world
            .server
            .state()
            .update("articles", &keys[3], row(json!({"views": 500})))
            .unwrap();
        let report = a.sync_with(None, KEYS).await.unwrap();
        assert!(!report.failed(), "{report:?}");
        assert_eq!(report.collections[0].deleted, 1, "{report:?}");
        let left: Vec<String> = local_rows(&a, "articles")
            .await
            .into_iter()
            .map(|(k, _, _)| k)
            .collect();
        assert!(!left.contains(&keys[3]) && left.len() == 3, "{left:?}");
    }
}

#[tokio::test]
async fn the_delete_cursor_moves_past_other_collections_activity_once_it_settled() {
    for backend in backends() {
        let mut world = World::new(backend).await;
        world
            .server
            .state()
            .set_clock(refserver::Clock::Manual(chrono::Utc::now()));
        world.collection("articles", &FIELDS).await;
        world.collection("notes", &FIELDS).await;
        let keys = world.seed("articles", vec![row(json!({"title": "kept"}))]);
        let a = world
            .replica(vec![
                World::config("articles", &FIELDS),
                World::config("notes", &FIELDS),
            ])
            .await;
        a.sync(None).await.unwrap();
        // Activity of another collection only: nothing the articles' deletes need.
        world.seed(
            "notes",
            (0..20)
                .map(|i| row(json!({"title": format!("n{i}")})))
                .collect(),
        );
        let newest = world
            .server
            .state()
            .activity()
            .iter()
            .filter_map(|e| e["id"].as_i64())
            .max()
            .unwrap();
        let cursor = async || {
            let checkpoint = engine::ports::Store::checkpoint(a.store(), "articles");
            checkpoint.await.unwrap().delete_cursor.unwrap_or(0)
        };
        a.sync(None).await.unwrap();
        assert!(
            cursor().await < newest,
            "entries of the last overlap window may still move"
        );
        world
            .server
            .state()
            .advance_clock(std::time::Duration::from_secs(30));
        a.sync(None).await.unwrap();
        assert!(cursor().await >= newest, "settled entries are passed over");
        // A delete logged after that still arrives.
        world
            .server
            .state()
            .delete("articles", &[keys[0].as_str()])
            .unwrap();
        let report = a.sync(None).await.unwrap();
        assert_eq!(report.collections[0].deleted, 1, "{report:?}");
        assert_converged(&world, &a, "articles").await;
    }
}

#[tokio::test]
async fn a_failed_read_of_the_activity_log_never_moves_the_delete_cursor_back() {
    for backend in backends() {
        let mut world = World::new(backend).await;
        world.collection("articles", &FIELDS).await;
        world.seed("articles", vec![row(json!({"title": "a"}))]);
        let a = world
            .hooked_replica(vec![World::config("articles", &FIELDS)])
            .await;
        a.sync(None).await.unwrap();
        let cursor = || async { a.status().await.unwrap()[0].checkpoint.delete_cursor };
        let before = cursor().await;
        assert!(before.is_some_and(|c| c > 0), "{before:?}");

        // The log cannot be trusted, and reading its newest entry fails.
        world
            .server
            .state()
            .set_accountability("articles", None)
            .unwrap();
        a.remote().fail_next(tests::Call::LatestActivity);
        let report = a.sync(None).await.unwrap();
        assert_eq!(
            report.collections[0].error_kind,
            Some(deltasync::ErrorKind::Unavailable),
            "{report:?}"
        );
        assert_eq!(cursor().await, before, "the cursor stays where it was");

        let report = a.sync(None).await.unwrap();
        assert!(!report.failed(), "{report:?}");
        assert!(cursor().await >= before);
    }
}
