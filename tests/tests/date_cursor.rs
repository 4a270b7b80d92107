//! The date cursor (`{updated: date_updated, created: date_created}`) keeps the guarantees of
//! a single cursor field: stamp groups larger than a page in both lanes, a failed pull that
//! resumes where it stopped, uuid keys, and a row first updated between two pulls.

use deltasync::{CollectionConfig, FieldType};
use refserver::{Clock, CollectionDef, FieldDef};
use serde_json::json;
use tests::{World, assert_converged, backends, local_rows, row};

/// A collection with the standard date fields and a uuid key on the reference server.
fn posts() -> CollectionDef {
    CollectionDef::new("posts")
        .field(FieldDef::uuid_pk("id"))
        .field(FieldDef::new("title", refserver::FieldType::String))
        .field(
            FieldDef::new("date_created", refserver::FieldType::Timestamp)
                .special(&["date-created"]),
        )
        .field(
            FieldDef::new("date_updated", refserver::FieldType::Timestamp)
                .special(&["date-updated"]),
        )
}

#[tokio::test]
async fn both_lanes_page_through_tie_groups_and_resume_after_a_failure() {
    for backend in backends() {
        let mut world = World::new(backend).await;
        let state = world.server.state();
        // One instant for every write: each lane is one stamp group, larger than a page.
        state.set_clock(Clock::Manual(
            chrono::Utc::now() - chrono::Duration::minutes(5),
        ));
        state.create_collection(posts()).unwrap();
        let created = state
            .insert(
                "posts",
                (0..260)
                    .map(|i| row(json!({"title": format!("t{i}")})))
                    .collect(),
            )
            .unwrap();
        state.advance_clock(std::time::Duration::from_secs(60));
        for r in &created[..150] {
            let key = r["id"].as_str().unwrap();
            state
                .update("posts", key, row(json!({"title": "updated"})))
                .unwrap();
        }
        let mut c = CollectionConfig::new("posts")
            .with_date_cursor()
            .with_field("title", FieldType::String);
        c.page_size = 100;
        let a = world.hooked_replica(vec![c]).await;

        // The check's probe and one page go through, then the server is out of reach.
        a.remote().fail_lists_after(Some(2));
        let failed = a.sync(None).await.unwrap();
        assert!(failed.failed(), "{failed:?}");
        assert_eq!(
            local_rows(&a, "posts").await.len(),
            100,
            "the first page stays applied"
        );
        a.remote().fail_lists_after(None);
        let resumed = a.sync(None).await.unwrap();
        assert!(!resumed.failed(), "{resumed:?}");
        assert_eq!(
            resumed.collections[0].pulled, 160,
            "only the rest is pulled, once"
        );
        assert_converged(&world, &a, "posts").await;

        // A row never updated is updated on the server: it leaves the first lane and is
        // seen in the second.
        world
            .server
            .state()
            .advance_clock(std::time::Duration::from_secs(60));
        let never = created[200]["id"].as_str().unwrap();
        world
            .server
            .state()
            .update("posts", never, row(json!({"title": "late"})))
            .unwrap();
        let again = a.sync(None).await.unwrap();
        assert_eq!(again.collections[0].pulled, 1, "{again:?}");
        assert_converged(&world, &a, "posts").await;
    }
}
