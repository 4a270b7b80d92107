//! Scenarios around how a replica is set up: relations between collections, login with
//! rotating tokens, a field added to the schema file, and archive-field deletes.

use std::time::Duration;

use deltasync::{Auth, CollectionConfig, Deletes, FieldType, Secret, Strategy};
use refserver::{Clock, Options};
use serde_json::{Value, json};
use tests::{FIELDS, World, assert_converged, backends, local_rows, row};

/// `(collection, action, item)` of every activity entry after the first `skip`.
fn activity_after(world: &World, skip: usize) -> Vec<(String, String, String)> {
    world
        .server
        .state()
        .activity()
        .into_iter()
        .skip(skip)
        .map(|a| {
            let text = |k: &str| a[k].as_str().unwrap_or_default().to_owned();
            (text("collection"), text("action"), text("item"))
        })
        .collect()
}

/// A server with `authors` and `books` (whose `author` refers to them), and their configs.
async fn authors_and_books(backend: tests::Backend) -> (World, CollectionConfig, CollectionConfig) {
    let world = World::new(backend).await;
    world
        .collection("authors", &[("name", FieldType::String)])
        .await;
    world
        .collection(
            "books",
            &[("title", FieldType::String), ("author", FieldType::Uuid)],
        )
        .await;
    let books = World::config("books", &[("title", FieldType::String)]).with_relation(
        "author",
        FieldType::Uuid,
        "authors",
    );
    let authors = World::config("authors", &[("name", FieldType::String)]);
    (world, authors, books)
}

/// A server with `categories`, related to itself through `parent`, and its config.
async fn categories(backend: tests::Backend) -> (World, CollectionConfig) {
    let world = World::new(backend).await;
    let fields = [("name", FieldType::String), ("parent", FieldType::Uuid)];
    world.collection("categories", &fields).await;
    let categories = World::config("categories", &[("name", FieldType::String)]).with_relation(
        "parent",
        FieldType::Uuid,
        "categories",
    );
    (world, categories)
}

#[tokio::test]
async fn related_collections_push_parents_first_and_delete_children_first() {
    for backend in backends() {
        let (mut world, authors, books) = authors_and_books(backend).await;
        // Children listed first in the file: the order must come from the relation.
        let a = world.replica(vec![books, authors]).await;

        let author = a
            .collection("authors")
            .unwrap()
            .insert(row(json!({"name": "Le Guin"})))
            .await
            .unwrap();
        let book = a
            .collection("books")
            .unwrap()
            .insert(row(
                json!({"title": "The Dispossessed", "author": author.to_string()}),
            ))
            .await
            .unwrap();
        let (author, book) = (author.to_string(), book.to_string());
        let seen = world.server.state().activity().len();
        let report = a.sync(None).await.unwrap();
        assert!(!report.failed(), "{report:?}");
        assert_eq!(
            activity_after(&world, seen),
            vec![
                ("authors".into(), "create".into(), author.clone()),
                ("books".into(), "create".into(), book.clone()),
            ]
        );

        a.collection("books").unwrap().delete(&book).await.unwrap();
        a.collection("authors")
            .unwrap()
            .delete(&author)
            .await
            .unwrap();
        let seen = world.server.state().activity().len();
        let report = a.sync(None).await.unwrap();
        assert!(!report.failed(), "{report:?}");
        assert_eq!(
            activity_after(&world, seen),
            vec![
                ("books".into(), "delete".into(), book),
                ("authors".into(), "delete".into(), author),
            ]
        );
        assert_converged(&world, &a, "books").await;
        assert_converged(&world, &a, "authors").await;
    }
}

#[tokio::test]
async fn a_login_session_refreshes_and_rotates_its_tokens() {
    for backend in backends() {
        let options = Options {
            access_token_ttl: Duration::from_secs(60),
            ..Options::default()
        };
        let mut world = World::with_options(backend, options).await;
        world.server.state().set_clock(Clock::Manual(
            "2026-01-01T00:00:00Z".parse().expect("a timestamp"),
        ));
        world.collection("articles", &FIELDS).await;
        let mut config = world
            .replica_config(vec![World::config("articles", &FIELDS)])
            .await;
        config.remote.auth = Auth::Login {
            email: world.server.state().options().admin_email.clone(),
            password: Secret::new(world.server.state().options().admin_password.clone()),
        };
        let a = deltasync::open(config).await.unwrap();

        for i in 0..3 {
            a.collection("articles")
                .unwrap()
                .insert(row(json!({"title": format!("t{i}"), "views": i})))
                .await
                .unwrap();
            let report = a.sync(None).await.unwrap();
            assert!(!report.failed(), "sync {i}: {report:?}");
            // Past the access token's lifetime: the next request meets TOKEN_EXPIRED.
            world.server.state().advance_clock(Duration::from_secs(120));
        }
        let stats = world.server.state().stats();
        assert_eq!(stats.count("POST", "/auth/login"), 1, "{stats:?}");
        // The second refresh only works with the token the first one returned.
        assert_eq!(stats.count("POST", "/auth/refresh"), 2, "{stats:?}");
        assert_converged(&world, &a, "articles").await;
    }
}

#[tokio::test]
async fn a_field_added_to_the_schema_file_is_filled_from_the_server() {
    for backend in backends() {
        let mut world = World::new(backend).await;
        world.collection("articles", &FIELDS).await;
        let seeded = world
            .server
            .state()
            .insert(
                "articles",
                (0..5)
                    .map(|i| row(json!({"title": format!("a{i}"), "views": i})))
                    .collect(),
            )
            .unwrap();
        let narrow = World::config("articles", &[("title", FieldType::String)]);
        let config = world.replica_config(vec![narrow]).await;
        let a = deltasync::open(config.clone()).await.unwrap();
        a.sync(None).await.unwrap();
        drop(a);
        // A delete logged while the replica was down must survive the schema change.
        let gone = seeded[0]["id"].as_str().unwrap();
        world.server.state().delete("articles", &[gone]).unwrap();

        let mut wider = config;
        wider.collections[0] = World::config("articles", &FIELDS);
        let a = deltasync::open(wider).await.unwrap();
        let report = a.sync(None).await.unwrap();
        assert!(!report.failed(), "{report:?}");
        assert_eq!(
            (report.collections[0].pulled, report.collections[0].deleted),
            (seeded.len() as u64 - 1, 1),
            "every row is read again for the new field, and the delete applied"
        );
        assert_converged(&world, &a, "articles").await;
        let views: Vec<Value> = local_rows(&a, "articles")
            .await
            .into_iter()
            .map(|(_, _, data)| data["views"].clone())
            .collect();
        assert!(views.iter().all(Value::is_i64), "{views:?}");
    }
}

#[tokio::test]
async fn an_archived_server_row_is_removed_locally() {
    for backend in backends() {
        let mut world = World::new(backend).await;
        let fields = [("title", FieldType::String), ("status", FieldType::String)];
        world.collection("posts", &fields).await;
        let keys = world.seed(
            "posts",
            (0..3)
                .map(|i| row(json!({"title": format!("p{i}"), "status": "published"})))
                .collect(),
        );
        let mut posts = World::config("posts", &fields);
        posts.conflict = Strategy::LastWriteWins;
        posts.deletes = Deletes::Archive {
            field: "status".into(),
            value: json!("archived"),
        };
        let a = world.replica(vec![posts]).await;
        a.sync(None).await.unwrap();
        assert_eq!(local_rows(&a, "posts").await.len(), 3);

        world
            .server
            .state()
            .update("posts", &keys[0], row(json!({"status": "archived"})))
            .unwrap();
        let report = a.sync(None).await.unwrap();
        assert!(!report.failed(), "{report:?}");
        assert_eq!(report.collections[0].deleted, 1, "{report:?}");
        let left: Vec<String> = local_rows(&a, "posts")
            .await
            .into_iter()
            .map(|(key, _, _)| key)
            .collect();
        assert!(!left.contains(&keys[0]), "{left:?}");
        assert_eq!(left.len(), 2);
    }
}

#[tokio::test]
async fn a_page_size_equal_to_the_servers_query_limit_works_for_pulls_and_deletes() {
    for backend in backends() {
        let options = Options {
            query_limit_max: Some(100),
            ..Options::default()
        };
        let mut world = World::with_options(backend, options).await;
        world.collection("articles", &FIELDS).await;
        // One insert: 250 rows share one stamp, a tie group over three pages.
        let keys = world.seed(
            "articles",
            (0..250)
                .map(|i| row(json!({"title": format!("a{i}"), "views": i})))
                .collect(),
        );
        let mut c = World::config("articles", &FIELDS);
        c.page_size = 100;
        let a = world.replica(vec![c]).await;
        let report = a.sync(None).await.unwrap();
        assert!(!report.failed(), "{report:?}");
        assert_eq!(report.collections[0].pulled, 250);

        let articles = a.collection("articles").unwrap();
        for key in &keys[..150] {
            articles.delete(key).await.unwrap();
        }
        let report = a.sync(None).await.unwrap();
        assert!(!report.failed(), "{report:?}");
        assert_eq!(report.collections[0].pushed, 150, "{report:?}");
        assert_eq!(world.server.state().count("articles"), 100);
        assert_converged(&world, &a, "articles").await;
    }
}

#[tokio::test]
async fn a_page_size_above_the_servers_query_limit_is_cut_to_it() {
    for backend in backends() {
        let options = Options {
            query_limit_max: Some(300),
            ..Options::default()
        };
        let mut world = World::with_options(backend, options).await;
        world.collection("articles", &FIELDS).await;
        let keys = world.seed(
            "articles",
            (0..1_000)
                .map(|i| row(json!({"title": format!("a{i}"), "views": i})))
                .collect(),
        );
        // The default page size, above the server's limit.
        let c = World::config("articles", &FIELDS);
        assert!(c.page_size > 300);
        let a = world.replica(vec![c]).await;
        let report = a.sync(None).await.unwrap();
        assert!(!report.failed(), "{report:?}");
        assert_eq!(report.collections[0].pulled, 1_000);
        let asked = world.server.state().stats().count("GET", "/server/info");
        assert_eq!(
            asked, 1,
            "the limit is asked for once, after the first page is refused"
        );

        let articles = a.collection("articles").unwrap();
        for key in &keys[..400] {
            articles.delete(key).await.unwrap();
        }
        let report = a.sync(None).await.unwrap();
        assert!(!report.failed(), "{report:?}");
        assert_eq!(report.collections[0].pushed, 400, "{report:?}");
        assert_eq!(world.server.state().count("articles"), 600);
        assert_converged(&world, &a, "articles").await;
    }
}

#[tokio::test]
async fn rows_of_a_collection_related_to_itself_are_created_parents_first() {
    for backend in backends() {
        let (mut world, categories) = categories(backend).await;
        let a = world.replica(vec![categories]).await;
        let handle = a.collection("categories").unwrap();
        // Keys chosen so that key order puts every child before its parent.
        let (root, mid, leaf) = (
            "cccccccc-0000-4000-8000-000000000000",
            "bbbbbbbb-0000-4000-8000-000000000000",
            "aaaaaaaa-0000-4000-8000-000000000000",
        );
        for (key, parent) in [(leaf, Some(mid)), (mid, Some(root)), (root, None)] {
            handle
                .insert(row(json!({"id": key, "name": key, "parent": parent})))
                .await
                .unwrap();
        }
        let seen = world.server.state().activity().len();
        let report = a.sync(None).await.unwrap();
        assert!(!report.failed(), "{report:?}");
        let created: Vec<String> = activity_after(&world, seen)
            .into_iter()
            .map(|(_, _, item)| item)
            .collect();
        assert_eq!(created, [root, mid, leaf]);
        assert_converged(&world, &a, "categories").await;
    }
}

#[tokio::test]
async fn within_a_collection_descendants_of_a_rejected_row_are_held_back() {
    for backend in backends() {
        let (mut world, categories) = categories(backend).await;
        let a = world.replica(vec![categories]).await;
        let handle = a.collection("categories").unwrap();
        let (root, mid, leaf, other) = (
            "cccccccc-0000-4000-8000-000000000000",
            "bbbbbbbb-0000-4000-8000-000000000000",
            "aaaaaaaa-0000-4000-8000-000000000000",
            "dddddddd-0000-4000-8000-000000000000",
        );
        for (key, parent) in [
            (leaf, Some(mid)),
            (mid, Some(root)),
            (root, None),
            (other, None),
        ] {
            handle
                .insert(row(json!({"id": key, "name": key, "parent": parent})))
                .await
                .unwrap();
        }
        // The batch fails, and so does the root alone: it is rejected for good.
        world.server.state().inject_scoped(
            refserver::Fault::FailNext {
                count: 2,
                status: 400,
                code: "FAILED_VALIDATION".into(),
                retry_after: None,
            },
            refserver::FaultScope::method("POST").path("/items/categories"),
        );
        let report = a.sync(None).await.unwrap();
        let c = &report.collections[0];
        assert_eq!((c.quarantined, c.pushed), (1, 1), "{report:?}");
        let server_keys: Vec<String> = world
            .server_rows("categories")
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(server_keys, [other], "only the unrelated row went");
        for key in [mid, leaf] {
            let held = handle.get(key).await.unwrap().unwrap();
            assert_eq!(held.status, deltasync::SyncStatus::Created, "{key}");
            assert!(held.error.is_none(), "held back, not rejected: {held:?}");
        }
        // A later sync still holds them back: the root is quarantined, not pending.
        let report = a.sync(None).await.unwrap();
        assert_eq!(report.collections[0].pushed, 0, "{report:?}");
        assert_eq!(world.server.state().count("categories"), 1);

        let rejected = a.conflicts(true).await.unwrap();
        assert_eq!(rejected.len(), 1, "only the root is rejected: {rejected:?}");
        a.resolve(rejected[0].id, deltasync::Choice::Local)
            .await
            .unwrap();
        let report = a.sync(None).await.unwrap();
        assert!(!report.failed(), "{report:?}");
        assert_eq!(report.collections[0].pushed, 3, "{report:?}");
        assert_converged(&world, &a, "categories").await;
    }
}

#[tokio::test]
async fn a_child_of_a_rejected_parent_is_held_back_until_the_parent_goes() {
    for backend in backends() {
        let (mut world, authors, books) = authors_and_books(backend).await;
        let a = world.replica(vec![authors, books]).await;
        let author = a
            .collection("authors")
            .unwrap()
            .insert(row(json!({"name": "Le Guin"})))
            .await
            .unwrap()
            .to_string();
        let book = a
            .collection("books")
            .unwrap()
            .insert(row(json!({"title": "Lavinia", "author": author})))
            .await
            .unwrap()
            .to_string();
        world.reject_next("POST", "/items/authors", "FAILED_VALIDATION");
        let report = a.sync(None).await.unwrap();
        assert_eq!(report.collections[0].quarantined, 1, "{report:?}");
        assert_eq!(report.collections[1].pushed, 0, "held back: {report:?}");
        assert_eq!(world.server.state().count("books"), 0);
        let held = a
            .collection("books")
            .unwrap()
            .get(&book)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(held.status, deltasync::SyncStatus::Created);
        assert!(held.error.is_none(), "held back, not rejected: {held:?}");

        // The person retries the parent; both go, parent first.
        let rejected = a.conflicts(true).await.unwrap();
        a.resolve(rejected[0].id, deltasync::Choice::Local)
            .await
            .unwrap();
        let report = a.sync(None).await.unwrap();
        assert!(!report.failed(), "{report:?}");
        assert_eq!(world.server.state().count("books"), 1);
        assert_converged(&world, &a, "authors").await;
        assert_converged(&world, &a, "books").await;
    }
}
