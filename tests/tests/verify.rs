//! `verify`: local synced rows compared with the server in both directions, and repaired.

use serde_json::json;
use tests::{FIELDS, World, assert_converged, backends, row};

#[tokio::test]
async fn verify_finds_each_kind_of_drift_and_repairs_it() {
    for backend in backends() {
        let mut world = World::new(backend).await;
        world.collection("articles", &FIELDS).await;
        let mut c = World::config("articles", &FIELDS);
        c.page_size = 3; // several pages each way
        let keys: Vec<String> = world.seed(
            "articles",
            (0..8)
                .map(|i| row(json!({"title": format!("a{i}"), "views": i})))
                .collect(),
        );
        let a = world.replica(vec![c]).await;
        a.sync(None).await.unwrap();

        let clean = &a.verify(None, false).await.unwrap()[0];
        assert!(!clean.drifted(), "{clean:?}");
        assert_eq!((clean.local_rows, clean.server_rows), (8, 8));

        let server = world.server.state();
        assert!(server.raw_delete("articles", &keys[0]));
        server
            .update("articles", &keys[1], row(json!({"title": "changed"})))
            .unwrap();
        let added = server
            .insert("articles", vec![row(json!({"title": "new"}))])
            .unwrap();
        // A pending local change is on its way, not drift.
        a.collection("articles")
            .unwrap()
            .update(&keys[2], row(json!({"title": "local"})))
            .await
            .unwrap();

        let found = &a.verify(None, false).await.unwrap()[0];
        assert_eq!(
            (found.missing_on_server, found.stale, found.missing_locally),
            (1, 1, 1),
            "{found:?}"
        );
        let added_key = added[0]["id"].as_str().unwrap().to_owned();
        for key in [&keys[0], &keys[1], &added_key] {
            assert!(found.sample.contains(key), "{key} in {found:?}");
        }

        let repaired = &a.verify(None, true).await.unwrap()[0];
        assert_eq!(repaired.repaired, 3, "{repaired:?}");
        let after = &a.verify(None, false).await.unwrap()[0];
        assert!(!after.drifted(), "{after:?}");
        a.sync(None).await.unwrap(); // pushes the pending edit
        assert_converged(&world, &a, "articles").await;
    }
}
