//! Scenarios with two or more replicas against the reference server, on every backend.

use deltasync::{Choice, ConflictKind, FieldType, Resolution, Strategy, SyncStatus};
use refserver::{Clock, Fault, FaultScope};
use serde_json::json;
use tests::{
    Call, FIELDS, TICK, World, assert_converged, backends, edit_before_next, local_rows, row,
};

fn articles(strategy: Strategy) -> deltasync::CollectionConfig {
    let mut c = World::config("articles", &FIELDS);
    c.conflict = strategy;
    c
}

async fn world_with_articles(backend: tests::Backend, n: usize) -> (World, Vec<String>) {
    let world = World::new(backend).await;
    world.collection("articles", &FIELDS).await;
    let rows = (0..n)
        .map(|i| row(json!({"title": format!("a{i}"), "views": i, "meta": {"i": i}})))
        .collect();
    let created = world.server.state().insert("articles", rows).expect("seed");
    let keys = created
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    (world, keys)
}

#[tokio::test]
async fn offline_creates_updates_and_deletes_on_both_sides_converge() {
    for backend in backends() {
        let (mut world, keys) = world_with_articles(backend, 6).await;
        let a = world.replica(vec![articles(Strategy::LastWriteWins)]).await;
        let b = world.replica(vec![articles(Strategy::LastWriteWins)]).await;
        a.sync(None).await.unwrap();
        b.sync(None).await.unwrap();

        let ca = a.collection("articles").unwrap();
        let cb = b.collection("articles").unwrap();
        let new_a = ca
            .insert(row(json!({"title": "from a", "views": 1})))
            .await
            .unwrap();
        ca.update(&keys[0], row(json!({"title": "a0 by a"})))
            .await
            .unwrap();
        ca.delete(&keys[1]).await.unwrap();
        let new_b = cb
            .insert(row(json!({"title": "from b", "meta": [1, 2]})))
            .await
            .unwrap();
        cb.update(&keys[2], row(json!({"views": 42})))
            .await
            .unwrap();
        cb.delete(&keys[3]).await.unwrap();
        world
            .server
            .state()
            .update("articles", &keys[4], row(json!({"title": "server edit"})))
            .unwrap();
        world
            .server
            .state()
            .delete("articles", &[keys[5].as_str()])
            .unwrap();

        let ra = a.sync(None).await.unwrap();
        assert_eq!(ra.collections[0].pushed, 3, "{ra:?}");
        let rb = b.sync(None).await.unwrap();
        assert_eq!(rb.collections[0].pushed, 3, "{rb:?}");
        a.sync(None).await.unwrap();

        let server = world.server_rows("articles");
        assert_eq!(server.len(), 6 + 2 - 3);
        let title = |k: &str| {
            server
                .iter()
                .find(|r| r["id"] == k)
                .map(|r| r["title"].clone())
        };
        assert_eq!(title(&new_a), Some(json!("from a")));
        assert_eq!(title(&new_b), Some(json!("from b")));
        assert_eq!(title(&keys[0]), Some(json!("a0 by a")));
        assert_eq!(title(&keys[1]), None);
        assert_eq!(title(&keys[5]), None);
        assert_converged(&world, &a, "articles").await;
        assert_converged(&world, &b, "articles").await;
    }
}

#[tokio::test]
async fn a_tie_group_larger_than_a_page_is_pulled_without_loss_or_duplicates() {
    for backend in backends() {
        let (mut world, _) = world_with_articles(backend, 2_500).await;
        // One request: every row gets the same stamp.
        let rows = world.server_rows("articles");
        assert!(
            rows.iter()
                .all(|r| r["last_modified"] == rows[0]["last_modified"])
        );
        let mut c = articles(Strategy::LastWriteWins);
        c.page_size = 1_000;
        let a = world.replica(vec![c]).await;
        let report = a.sync(None).await.unwrap();
        assert_eq!(report.collections[0].pulled, 2_500);
        assert_converged(&world, &a, "articles").await;
        // Nothing new: nothing pulled again.
        let again = a.sync(None).await.unwrap();
        assert_eq!(again.collections[0].pulled, 0);
    }
}

#[tokio::test]
async fn a_create_whose_response_was_lost_is_not_duplicated() {
    for backend in backends() {
        let (mut world, _) = world_with_articles(backend, 1).await;
        let a = world
            .replica(vec![articles(Strategy::FirstWriteWins)])
            .await;
        a.sync(None).await.unwrap();
        let key = a
            .collection("articles")
            .unwrap()
            .insert(row(json!({"title": "once"})))
            .await
            .unwrap();
        world.server.state().inject_scoped(
            Fault::CommitThenFail {
                count: 1,
                status: 502,
            },
            FaultScope::method("POST"),
        );
        let report = a.sync(None).await.unwrap();
        assert!(report.collections[0].error.is_none(), "{report:?}");
        assert_eq!(
            world
                .server_rows("articles")
                .iter()
                .filter(|r| r["id"] == key)
                .count(),
            1
        );
        assert_eq!(report.collections[0].conflicts, 0);
        assert_converged(&world, &a, "articles").await;
    }
}

#[tokio::test]
async fn an_update_whose_response_was_lost_is_recognised_as_applied() {
    for backend in backends() {
        let (mut world, keys) = world_with_articles(backend, 1).await;
        let a = world.replica(vec![articles(Strategy::Manual)]).await;
        a.sync(None).await.unwrap();
        a.collection("articles")
            .unwrap()
            .update(&keys[0], row(json!({"views": 7})))
            .await
            .unwrap();
        world.server.state().inject_scoped(
            Fault::CommitThenFail {
                count: 1,
                status: 504,
            },
            FaultScope::method("PATCH"),
        );
        let report = a.sync(None).await.unwrap();
        assert_eq!(report.collections[0].conflicts, 0, "{report:?}");
        assert_eq!(world.server_rows("articles")[0]["views"], json!(7));
        assert_converged(&world, &a, "articles").await;
    }
}

/// Writes `patch` to an article on the server, as another client of Directus would.
fn edit_on_server(world: &World, key: &str, patch: deltasync::Row) {
    world
        .server
        .state()
        .update("articles", key, patch)
        .expect("a server edit");
}

async fn conflict_world(
    strategy: Strategy,
    backend: tests::Backend,
) -> (World, deltasync::Deltasync, String) {
    let (mut world, keys) = world_with_articles(backend, 1).await;
    world
        .server
        .state()
        .set_clock(Clock::Manual(chrono::Utc::now()));
    let a = world.replica(vec![articles(strategy)]).await;
    a.sync(None).await.unwrap();
    // Server writes from here on carry stamps distinct from the seed's.
    world.server.state().advance_clock(TICK);
    (world, a, keys[0].clone())
}

#[tokio::test]
async fn last_write_wins_keeps_the_later_side() {
    for backend in backends() {
        // Server edit first, local edit later: local wins.
        let (world, a, key) = conflict_world(Strategy::LastWriteWins, backend.clone()).await;
        edit_on_server(&world, &key, row(json!({"title": "server"})));
        world.server.state().advance_clock(TICK);
        a.collection("articles")
            .unwrap()
            .update(&key, row(json!({"title": "local"})))
            .await
            .unwrap();
        let report = a.sync(None).await.unwrap();
        assert_eq!(report.collections[0].conflicts, 1);
        assert_eq!(world.server_rows("articles")[0]["title"], json!("local"));
        assert_converged(&world, &a, "articles").await;
        let records = a.conflicts(false).await.unwrap();
        assert_eq!(records[0].resolution, Some(Resolution::KeepLocal));
        assert_eq!(
            records[0].remote.as_ref().unwrap()["title"],
            json!("server")
        );
        assert_eq!(records[0].local.as_ref().unwrap()["title"], json!("local"));

        // Local edit first, server edit later: the server wins, the local change is recorded.
        let (world, a, key) = conflict_world(Strategy::LastWriteWins, backend).await;
        a.collection("articles")
            .unwrap()
            .update(&key, row(json!({"title": "local"})))
            .await
            .unwrap();
        tests::backdate_local_change(&a, "articles", &key).await;
        world.server.state().advance_clock(TICK);
        edit_on_server(&world, &key, row(json!({"title": "server"})));
        let report = a.sync(None).await.unwrap();
        assert_eq!(report.collections[0].conflicts, 1);
        assert_eq!(world.server_rows("articles")[0]["title"], json!("server"));
        assert_converged(&world, &a, "articles").await;
        let records = a.conflicts(false).await.unwrap();
        assert_eq!(records[0].resolution, Some(Resolution::TakeRemote));
        assert_eq!(records[0].local.as_ref().unwrap()["title"], json!("local"));
        assert_eq!(records[0].base.as_ref().unwrap()["title"], json!("a0"));
    }
}

#[tokio::test]
async fn first_write_wins_keeps_the_server_version_and_records_the_loser() {
    for backend in backends() {
        let (world, a, key) = conflict_world(Strategy::FirstWriteWins, backend).await;
        world.server.state().advance_clock(TICK);
        a.collection("articles")
            .unwrap()
            .update(&key, row(json!({"title": "local"})))
            .await
            .unwrap();
        edit_on_server(&world, &key, row(json!({"title": "server first"})));
        let report = a.sync(None).await.unwrap();
        assert_eq!(report.collections[0].conflicts, 1);
        assert_eq!(
            world.server_rows("articles")[0]["title"],
            json!("server first")
        );
        assert_converged(&world, &a, "articles").await;
        let records = a.conflicts(false).await.unwrap();
        assert_eq!(records[0].resolution, Some(Resolution::TakeRemote));
        assert_eq!(records[0].local.as_ref().unwrap()["title"], json!("local"));
    }
}

#[tokio::test]
async fn manual_parks_the_row_until_a_person_resolves_it() {
    for backend in backends() {
        let (world, a, key) = conflict_world(Strategy::Manual, backend).await;
        a.collection("articles")
            .unwrap()
            .update(&key, row(json!({"title": "local"})))
            .await
            .unwrap();
        edit_on_server(&world, &key, row(json!({"title": "server"})));
        let report = a.sync(None).await.unwrap();
        assert_eq!(
            (
                report.collections[0].conflicts,
                report.collections[0].parked,
                report.waiting
            ),
            (1, 1, Some(1))
        );
        // Parked: keeps local data, neither pushed nor overwritten.
        let local = a
            .collection("articles")
            .unwrap()
            .get(&key)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (local.status, local.data["title"].clone()),
            (SyncStatus::Conflict, json!("local"))
        );
        edit_on_server(&world, &key, row(json!({"views": 5})));
        a.sync(None).await.unwrap();
        let local = a
            .collection("articles")
            .unwrap()
            .get(&key)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(local.data["title"], json!("local"));
        assert_eq!(world.server_rows("articles")[0]["title"], json!("server"));

        let record = &a.conflicts(true).await.unwrap()[0];
        assert_eq!(record.kind, ConflictKind::UpdateUpdate);
        assert_eq!(record.base.as_ref().unwrap()["title"], json!("a0"));
        a.resolve(record.id, Choice::Local).await.unwrap();
        let report = a.sync(None).await.unwrap();
        assert_eq!(report.waiting, Some(0));
        assert_eq!(world.server_rows("articles")[0]["title"], json!("local"));
        assert_eq!(
            world.server_rows("articles")[0]["views"],
            json!(5),
            "taking local decides the colliding title; the server's later edit of views stays"
        );
        assert_converged(&world, &a, "articles").await;
    }
}

#[tokio::test]
async fn taking_the_server_version_of_a_parked_row_edited_since_records_the_dropped_edit() {
    for backend in backends() {
        let (world, a, key) = conflict_world(Strategy::Manual, backend).await;
        let handle = a.collection("articles").unwrap();
        handle
            .update(&key, row(json!({"title": "local"})))
            .await
            .unwrap();
        edit_on_server(&world, &key, row(json!({"title": "server"})));
        a.sync(None).await.unwrap();
        // The application edits the parked row before anyone decides.
        let edit = row(json!({"title": "local, edited"}));
        assert!(handle.update(&key, edit).await.unwrap());
        let id = a.conflicts(true).await.unwrap()[0].id;
        let record = a.resolve(id, Choice::Remote).await.unwrap();
        assert_eq!(record.resolution, Some(deltasync::Resolution::TakeRemote));
        assert_eq!(
            record.local.unwrap()["title"],
            json!("local, edited"),
            "the record shows the version the decision dropped"
        );
        a.sync(None).await.unwrap();
        assert_eq!(world.server_rows("articles")[0]["title"], json!("server"));
        assert_converged(&world, &a, "articles").await;
    }
}

#[tokio::test]
async fn a_row_deleted_locally_can_be_neither_edited_nor_deleted_again() {
    for backend in backends() {
        let (world, a, key) = conflict_world(Strategy::LastWriteWins, backend).await;
        let handle = a.collection("articles").unwrap();
        assert!(handle.delete(&key).await.unwrap());
        let edit = handle.update(&key, row(json!({"title": "too late"})));
        assert!(!edit.await.unwrap(), "an edit of a deleted row is refused");
        assert!(!handle.delete(&key).await.unwrap());
        a.sync(None).await.unwrap();
        assert!(world.server_rows("articles").is_empty());
        assert_converged(&world, &a, "articles").await;
    }
}

#[tokio::test]
async fn a_parked_row_deleted_in_sql_is_decided_as_a_delete() {
    use sea_orm::ConnectionTrait;
    for backend in backends() {
        for choice in [Choice::Local, Choice::Remote] {
            let (world, a, key) = conflict_world(Strategy::Manual, backend.clone()).await;
            let handle = a.collection("articles").unwrap();
            let edit = handle.update(&key, row(json!({"title": "local"})));
            assert!(edit.await.unwrap());
            edit_on_server(&world, &key, row(json!({"title": "server"})));
            assert_eq!(a.sync(None).await.unwrap().waiting, Some(1));
            assert!(
                !handle.delete(&key).await.unwrap(),
                "the library does not delete a parked row"
            );
            // Plain SQL can; the decision then is about that delete.
            let sql = format!("UPDATE articles SET _sync_status = 'deleted' WHERE id = '{key}'");
            a.store()
                .connection()
                .execute_unprepared(&sql)
                .await
                .unwrap();
            let id = a.conflicts(true).await.unwrap()[0].id;
            let record = a.resolve(id, choice.clone()).await.unwrap();
            assert_eq!(
                record.local, None,
                "the record shows a delete was decided on"
            );
            a.sync(None).await.unwrap();
            let server = world.server_rows("articles");
            match choice {
                Choice::Local => assert!(server.is_empty(), "the delete went: {server:?}"),
                _ => assert_eq!(server[0]["title"], json!("server")),
            }
            assert_converged(&world, &a, "articles").await;
        }
    }
}

#[tokio::test]
async fn a_parked_local_delete_cannot_be_edited() {
    for backend in backends() {
        let (world, a, key) = conflict_world(Strategy::Manual, backend).await;
        let handle = a.collection("articles").unwrap();
        assert!(handle.delete(&key).await.unwrap());
        edit_on_server(&world, &key, row(json!({"title": "server"})));
        assert_eq!(a.sync(None).await.unwrap().waiting, Some(1));
        let edit = handle.update(&key, row(json!({"title": "too late"})));
        assert!(
            !edit.await.unwrap(),
            "the row is deleted until a person decides"
        );
        let id = a.conflicts(true).await.unwrap()[0].id;
        a.resolve(id, Choice::Remote).await.unwrap();
        a.sync(None).await.unwrap();
        assert_eq!(world.server_rows("articles")[0]["title"], json!("server"));
        assert_converged(&world, &a, "articles").await;
        // Back from the dead, the row can be edited again.
        let edit = handle.update(&key, row(json!({"title": "edited"})));
        assert!(edit.await.unwrap());
    }
}

#[tokio::test]
async fn delete_versus_update_per_strategy() {
    for backend in backends() {
        // Local delete, remote update.
        for (strategy, survives) in [
            (Strategy::FirstWriteWins, true),
            (Strategy::LastWriteWins, false),
        ] {
            let (world, a, key) = conflict_world(strategy, backend.clone()).await;
            edit_on_server(&world, &key, row(json!({"title": "server"})));
            world.server.state().advance_clock(TICK);
            a.collection("articles")
                .unwrap()
                .delete(&key)
                .await
                .unwrap();
            let report = a.sync(None).await.unwrap();
            assert_eq!(report.collections[0].conflicts, 1, "{strategy:?}");
            assert_eq!(
                world.server_rows("articles").len(),
                usize::from(survives),
                "{strategy:?}"
            );
            assert_converged(&world, &a, "articles").await;
            let record = &a.conflicts(false).await.unwrap()[0];
            assert_eq!(record.kind, ConflictKind::LocalDeleteRemoteUpdate);
        }
        // Local update, remote delete (learned from the activity log at reconcile time).
        for (strategy, survives) in [
            (Strategy::FirstWriteWins, false),
            (Strategy::LastWriteWins, true),
        ] {
            let (world, a, key) = conflict_world(strategy, backend.clone()).await;
            world
                .server
                .state()
                .delete("articles", &[key.as_str()])
                .unwrap();
            world.server.state().advance_clock(TICK);
            a.collection("articles")
                .unwrap()
                .update(&key, row(json!({"title": "local"})))
                .await
                .unwrap();
            let first = a.sync(None).await.unwrap();
            a.sync(None).await.unwrap();
            assert_eq!(
                first.collections[0].conflicts,
                1,
                "{strategy:?}: {first:?} {:?}",
                a.conflicts(false).await.unwrap()
            );
            assert_eq!(
                world.server_rows("articles").len(),
                usize::from(survives),
                "{strategy:?}"
            );
            assert_converged(&world, &a, "articles").await;
        }
        // Manual parks delete-versus-update as well.
        let (world, a, key) = conflict_world(Strategy::Manual, backend.clone()).await;
        edit_on_server(&world, &key, row(json!({"title": "server"})));
        a.collection("articles")
            .unwrap()
            .delete(&key)
            .await
            .unwrap();
        let report = a.sync(None).await.unwrap();
        assert_eq!(report.collections[0].parked, 1);
        assert_eq!(world.server_rows("articles").len(), 1);
        let record = &a.conflicts(true).await.unwrap()[0];
        a.resolve(record.id, Choice::Local).await.unwrap();
        a.sync(None).await.unwrap();
        assert_eq!(
            world.server_rows("articles").len(),
            0,
            "taking the local delete deletes"
        );
        assert_converged(&world, &a, "articles").await;
    }
}

#[tokio::test]
async fn keeping_a_rejected_delete_whose_row_is_gone_does_not_recreate_it() {
    for backend in backends() {
        let (mut world, keys) = world_with_articles(backend, 1).await;
        let a = world.replica(vec![articles(Strategy::LastWriteWins)]).await;
        a.sync(None).await.unwrap();
        a.collection("articles")
            .unwrap()
            .delete(&keys[0])
            .await
            .unwrap();
        world.reject_next("DELETE", "/items/articles", "INVALID_PAYLOAD");
        let report = a.sync(None).await.unwrap();
        assert_eq!(report.collections[0].quarantined, 1, "{report:?}");
        let waiting = a.conflicts(true).await.unwrap();
        assert_eq!(waiting.len(), 1);
        assert_eq!(waiting[0].kind, ConflictKind::Rejected);

        // Someone else deletes the row on the server; the person keeps the local delete.
        assert!(world.server.state().raw_delete("articles", &keys[0]));
        a.resolve(waiting[0].id, Choice::Local).await.unwrap();
        let report = a.sync(None).await.unwrap();
        assert!(!report.failed(), "{report:?}");
        assert_eq!(world.server.state().count("articles"), 0, "not re-created");
        assert!(local_rows(&a, "articles").await.is_empty());
    }
}

#[tokio::test]
async fn a_rejected_change_edited_and_pushed_closes_its_record() {
    for backend in backends() {
        let (mut world, keys) = world_with_articles(backend, 1).await;
        let a = world.replica(vec![articles(Strategy::LastWriteWins)]).await;
        a.sync(None).await.unwrap();
        let articles = a.collection("articles").unwrap();
        articles
            .update(&keys[0], row(json!({"title": "too long"})))
            .await
            .unwrap();
        world.reject_next("PATCH", "/items/articles", "FAILED_VALIDATION");
        let report = a.sync(None).await.unwrap();
        assert_eq!(report.collections[0].quarantined, 1, "{report:?}");
        assert_eq!(report.waiting, Some(1));

        // The application fixes the row; the fix goes through and the rejection is settled.
        articles
            .update(&keys[0], row(json!({"title": "short"})))
            .await
            .unwrap();
        let report = a.sync(None).await.unwrap();
        assert_eq!(
            (report.collections[0].pushed, report.waiting),
            (1, Some(0)),
            "{report:?}"
        );
        let all = a.conflicts(false).await.unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].resolution, Some(Resolution::KeepLocal));
        assert_converged(&world, &a, "articles").await;
    }
}

#[tokio::test]
async fn a_remote_delete_removes_the_local_row() {
    for backend in backends() {
        let (mut world, keys) = world_with_articles(backend, 3).await;
        let a = world.replica(vec![articles(Strategy::LastWriteWins)]).await;
        a.sync(None).await.unwrap();
        world
            .server
            .state()
            .delete("articles", &[keys[1].as_str()])
            .unwrap();
        let report = a.sync(None).await.unwrap();
        assert_eq!(report.collections[0].deleted, 1);
        assert!(
            a.collection("articles")
                .unwrap()
                .get(&keys[1])
                .await
                .unwrap()
                .is_none()
        );
        assert_converged(&world, &a, "articles").await;
    }
}

#[tokio::test]
async fn a_failed_pull_resumes_where_it_stopped() {
    for backend in backends() {
        let (mut world, _) = world_with_articles(backend, 250).await;
        let mut c = articles(Strategy::LastWriteWins);
        c.page_size = 100;
        let a = world.hooked_replica(vec![c]).await;
        // The check before a first pull (one list: rows without a version) and one page go
        // through, then the server becomes unreachable.
        a.remote().fail_lists_after(Some(2));
        let failed = a.sync(None).await.unwrap();
        assert!(failed.failed(), "{failed:?}");
        assert_eq!(
            local_rows(&a, "articles").await.len(),
            100,
            "the first page stays applied"
        );
        a.remote().fail_lists_after(None);
        let resumed = a.sync(None).await.unwrap();
        assert!(!resumed.failed(), "{resumed:?}");
        assert_eq!(
            resumed.collections[0].pulled, 150,
            "only the rest is pulled"
        );
        assert_converged(&world, &a, "articles").await;
    }
}

#[tokio::test]
async fn an_edit_made_during_a_push_is_not_marked_synced() {
    for backend in backends() {
        let (mut world, keys) = world_with_articles(backend, 1).await;
        let a = world
            .hooked_replica(vec![articles(Strategy::LastWriteWins)])
            .await;
        a.sync(None).await.unwrap();
        a.collection("articles")
            .unwrap()
            .update(&keys[0], row(json!({"title": "first"})))
            .await
            .unwrap();
        edit_before_next(
            &a,
            Call::Update,
            "articles",
            &keys[0],
            row(json!({"title": "second"})),
        );
        let report = a.sync(None).await.unwrap();
        assert_eq!(report.collections[0].pushed, 1);
        assert_eq!(world.server_rows("articles")[0]["title"], json!("first"));
        let local = a
            .collection("articles")
            .unwrap()
            .get(&keys[0])
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (local.status, local.data["title"].clone()),
            (SyncStatus::Updated, json!("second"))
        );
        let report = a.sync(None).await.unwrap();
        assert_eq!(
            (
                report.collections[0].pushed,
                report.collections[0].conflicts
            ),
            (1, 0)
        );
        assert_eq!(world.server_rows("articles")[0]["title"], json!("second"));
        assert_converged(&world, &a, "articles").await;
    }
}

#[tokio::test]
async fn updates_alike_share_a_request_but_a_row_whose_base_moved_goes_alone() {
    for backend in backends() {
        let (mut world, keys) = world_with_articles(backend, 3).await;
        let a = world
            .hooked_replica(vec![articles(Strategy::LastWriteWins)])
            .await;
        a.sync(None).await.unwrap();
        let articles = a.collection("articles").unwrap();
        for key in &keys {
            articles
                .update(key, row(json!({"title": "x"})))
                .await
                .unwrap();
        }
        // While the three go in one request, the first is edited back to its old title and
        // given 7 views: measured against its old snapshot, it only changes the views.
        edit_before_next(
            &a,
            Call::Update,
            "articles",
            &keys[0],
            row(json!({"title": "a0", "views": 7})),
        );
        world.server.state().reset_stats();
        let report = a.sync(None).await.unwrap();
        assert_eq!(report.collections[0].pushed, 3);
        let patches = || {
            world
                .server
                .state()
                .stats()
                .count("PATCH", "/items/{collection}")
        };
        assert_eq!(
            patches(),
            1,
            "one compare-and-set request for three alike updates"
        );
        // The second row now changes only its views to 7 as well; the first must not share
        // its request, or the server would keep the first row's pushed title.
        articles
            .update(&keys[1], row(json!({"views": 7})))
            .await
            .unwrap();
        let report = a.sync(None).await.unwrap();
        assert_eq!(
            (
                report.collections[0].pushed,
                report.collections[0].conflicts
            ),
            (2, 0)
        );
        let server = world.server.state().get("articles", &keys[0]).unwrap();
        assert_eq!(
            (&server["title"], &server["views"]),
            (&json!("a0"), &json!(7))
        );
        assert_converged(&world, &a, "articles").await;
    }
}

#[tokio::test]
async fn an_edit_made_while_its_create_is_pushed_goes_with_the_next_sync() {
    for backend in backends() {
        let mut world = World::new(backend).await;
        world.collection("articles", &FIELDS).await;
        // first_write_wins would drop the edit if it were mistaken for a conflict.
        let a = world
            .hooked_replica(vec![articles(Strategy::FirstWriteWins)])
            .await;
        let key = a
            .collection("articles")
            .unwrap()
            .insert(row(json!({"title": "first"})))
            .await
            .unwrap()
            .to_string();
        edit_before_next(
            &a,
            Call::Create,
            "articles",
            &key,
            row(json!({"title": "second"})),
        );
        let report = a.sync(None).await.unwrap();
        assert_eq!(report.collections[0].pushed, 1, "{report:?}");
        assert_eq!(world.server_rows("articles")[0]["title"], json!("first"));
        let local = a
            .collection("articles")
            .unwrap()
            .get(&key)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (local.status, local.data["title"].clone()),
            (SyncStatus::Updated, json!("second"))
        );
        let report = a.sync(None).await.unwrap();
        assert_eq!(
            (
                report.collections[0].pushed,
                report.collections[0].conflicts
            ),
            (1, 0),
            "{report:?}"
        );
        assert_eq!(world.server_rows("articles")[0]["title"], json!("second"));
        assert_converged(&world, &a, "articles").await;
    }
}

#[tokio::test]
async fn a_server_row_of_the_wrong_type_is_reported_and_the_others_applied() {
    for backend in backends() {
        let mut world = World::new(backend).await;
        // On the server `views` is json, so it can hold a string; locally it is an integer.
        world
            .collection(
                "articles",
                &[
                    ("title", FieldType::String),
                    ("views", FieldType::Json),
                    ("meta", FieldType::Json),
                ],
            )
            .await;
        // A stopped clock keeps the rows inside the overlap window that every pull re-reads.
        world.server.state().set_clock(Clock::Manual(
            "2026-01-01T00:00:00Z".parse().expect("a timestamp"),
        ));
        let seeded = world
            .server
            .state()
            .insert(
                "articles",
                vec![
                    row(json!({"title": "ok", "views": 1})),
                    row(json!({"title": "bad", "views": "many"})),
                ],
            )
            .unwrap();
        let bad = seeded.iter().find(|r| r["title"] == "bad").unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let a = world.replica(vec![articles(Strategy::LastWriteWins)]).await;
        let report = a.sync(None).await.unwrap();
        assert_eq!(
            (
                report.collections[0].pulled,
                report.collections[0].quarantined
            ),
            (1, 1)
        );
        let record = &a.conflicts(true).await.unwrap()[0];
        assert_eq!(record.kind, ConflictKind::InvalidRemote);
        let message = record.message.as_deref().unwrap();
        assert!(
            message.contains("collection articles")
                && message.contains(&bad)
                && message.contains("field views"),
            "{message}"
        );
        assert_eq!(local_rows(&a, "articles").await.len(), 1);
        let again = a.sync(None).await.unwrap();
        assert!(again.collections[0].quarantined >= 1, "re-read: {again:?}");
        assert_eq!(a.conflicts(true).await.unwrap().len(), 1, "recorded once");

        // A person supplies a version that fits; it replaces the server's.
        let id = a.conflicts(true).await.unwrap()[0].id;
        let unknown = a
            .resolve(id, Choice::With(row(json!({"colour": "red"}))))
            .await;
        assert!(
            matches!(&unknown, Err(deltasync::Error::Usage(e)) if e.kind == deltasync::UsageErrorKind::UnknownField),
            "{unknown:?}"
        );
        let remote = a.resolve(id, Choice::Remote).await;
        assert!(
            matches!(&remote, Err(deltasync::Error::Usage(e)) if e.kind == deltasync::UsageErrorKind::ServerVersionDoesNotFit),
            "{remote:?}"
        );
        let fixed = row(json!({"title": "fixed", "views": 3}));
        a.resolve(id, Choice::With(fixed)).await.unwrap();
        let report = a.sync(None).await.unwrap();
        assert_eq!(report.collections[0].pushed, 1, "{report:?}");
        assert_eq!(
            world.server.state().get("articles", &bad).unwrap()["views"],
            3
        );
        assert_converged(&world, &a, "articles").await;
    }
}

#[tokio::test]
async fn a_delete_of_a_row_the_server_never_acknowledged_never_goes_by_key_alone() {
    for backend in backends() {
        let (mut world, _) = world_with_articles(backend, 0).await;
        let a = world
            .replica(vec![articles(Strategy::FirstWriteWins)])
            .await;
        a.sync(None).await.unwrap();
        let config = a.collection_config("articles").unwrap().clone();
        let (landed, never_sent) = (
            uuid::Uuid::new_v4().to_string(),
            uuid::Uuid::new_v4().to_string(),
        );
        for key in [&landed, &never_sent] {
            let insert = engine::ports::LocalWrite::Insert {
                key: key.clone(),
                data: row(json!({"title": "mine"})),
            };
            engine::ports::Store::write(a.store(), &config, insert)
                .await
                .unwrap();
        }
        // The create of `landed` reached the server, its answer did not, and someone edited
        // the row since; then the application deleted both rows.
        world
            .server
            .state()
            .insert(
                "articles",
                vec![row(json!({"id": landed, "title": "edited on the server"}))],
            )
            .unwrap();
        for key in [&landed, &never_sent] {
            assert!(a.collection("articles").unwrap().delete(key).await.unwrap());
        }
        let report = a.sync(None).await.unwrap();
        assert!(!report.failed(), "{report:?}");
        let server = world.server_rows("articles");
        assert_eq!(
            server.len(),
            1,
            "the edited row is not deleted by its key alone"
        );
        assert_eq!(server[0]["title"], json!("edited on the server"));
        let records = a.conflicts(false).await.unwrap();
        assert_eq!(records.len(), 1, "{records:?}");
        assert_eq!(records[0].kind, ConflictKind::LocalDeleteRemoteUpdate);
        assert_converged(&world, &a, "articles").await;
    }
}

#[tokio::test]
async fn content_given_for_a_parked_local_delete_is_kept_and_pushed() {
    for backend in backends() {
        let (world, a, key) = conflict_world(Strategy::Manual, backend).await;
        edit_on_server(&world, &key, row(json!({"title": "server"})));
        a.collection("articles")
            .unwrap()
            .delete(&key)
            .await
            .unwrap();
        let report = a.sync(None).await.unwrap();
        assert_eq!(report.collections[0].parked, 1, "{report:?}");
        let record = a.conflicts(true).await.unwrap().remove(0);
        assert_eq!(record.kind, ConflictKind::LocalDeleteRemoteUpdate);

        let given = row(json!({"title": "given", "views": 7, "meta": null}));
        a.resolve(record.id, Choice::With(given)).await.unwrap();
        let local = local_rows(&a, "articles").await;
        assert_eq!(local[0].1, SyncStatus::Updated, "{local:?}");
        assert_eq!(local[0].2["title"], json!("given"));
        let report = a.sync(None).await.unwrap();
        assert!(!report.failed(), "{report:?}");
        let server = world.server_rows("articles");
        assert_eq!(server.len(), 1, "the given content replaces the delete");
        assert_eq!(server[0]["title"], json!("given"));
        assert_converged(&world, &a, "articles").await;
    }
}

#[tokio::test]
async fn a_decision_on_a_row_written_meanwhile_changes_nothing() {
    for backend in backends() {
        let (mut world, keys) = world_with_articles(backend, 1).await;
        world
            .server
            .state()
            .set_clock(Clock::Manual(chrono::Utc::now()));
        let a = world.hooked_replica(vec![articles(Strategy::Manual)]).await;
        a.sync(None).await.unwrap();
        world.server.state().advance_clock(TICK);
        edit_on_server(&world, &keys[0], row(json!({"title": "server"})));
        a.collection("articles")
            .unwrap()
            .update(&keys[0], row(json!({"title": "local"})))
            .await
            .unwrap();
        a.sync(None).await.unwrap();
        let record = a.conflicts(true).await.unwrap().remove(0);

        // The application writes the row while the decision reads the server.
        edit_before_next(
            &a,
            Call::List,
            "articles",
            &keys[0],
            row(json!({"title": "newer"})),
        );
        let error = a
            .resolve(record.id, Choice::With(row(json!({"title": "given"}))))
            .await
            .unwrap_err();
        assert_eq!(error.kind(), deltasync::ErrorKind::StoreChanged, "{error}");
        let local = local_rows(&a, "articles").await;
        assert_eq!(
            local[0].2["title"],
            json!("newer"),
            "nothing of the decision is written"
        );
        let open = a.conflicts(true).await.unwrap();
        assert_eq!(
            open.len(),
            1,
            "the record waits for a decision on what is there now"
        );
    }
}

#[tokio::test]
async fn a_report_of_committed_work_survives_a_failed_count_of_what_waits() {
    for backend in backends() {
        let (mut world, keys) = world_with_articles(backend, 1).await;
        let a = world.replica(vec![articles(Strategy::Manual)]).await;
        a.sync(None).await.unwrap();
        edit_on_server(&world, &keys[0], row(json!({"title": "server"})));
        // The conflict records cannot be read: counting what waits fails.
        sea_orm::ConnectionTrait::execute_unprepared(
            a.store().connection(),
            "ALTER TABLE \"_deltasync_conflict\" RENAME TO \"_deltasync_conflict_away\"",
        )
        .await
        .unwrap();
        let report = a.sync(None).await.expect("the report of the work done");
        assert_eq!(report.collections[0].pulled, 1, "{report:?}");
        assert_eq!(report.waiting, None, "{report:?}");
    }
}

#[tokio::test]
async fn a_person_decides_only_the_colliding_fields_of_a_parked_merge() {
    for backend in backends() {
        for (choice, title) in [(Choice::Local, "local"), (Choice::Remote, "server")] {
            let (world, a, key) = conflict_world(Strategy::Manual, backend.clone()).await;
            edit_on_server(&world, &key, row(json!({"title": "server", "views": 42})));
            a.collection("articles")
                .unwrap()
                .update(&key, row(json!({"title": "local", "meta": {"m": 1}})))
                .await
                .unwrap();
            let report = a.sync(None).await.unwrap();
            assert_eq!(report.collections[0].parked, 1, "{report:?}");
            let record = a.conflicts(true).await.unwrap().remove(0);
            let sources = record.fields.clone().unwrap();
            assert_eq!(
                sources["title"],
                deltasync::FieldSource::Collided,
                "{record:?}"
            );

            a.resolve(record.id, choice.clone()).await.unwrap();
            let report = a.sync(None).await.unwrap();
            assert!(!report.failed(), "{report:?}");
            let server = &world.server_rows("articles")[0];
            assert_eq!(
                server["title"],
                json!(title),
                "{choice:?}: the person's side"
            );
            assert_eq!(
                server["views"],
                json!(42),
                "{choice:?}: the server's edit stays"
            );
            assert_eq!(
                server["meta"],
                json!({"m": 1}),
                "{choice:?}: the local edit stays"
            );
            assert_converged(&world, &a, "articles").await;
        }
    }
}
