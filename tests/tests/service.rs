//! The sync service (`Syncer`) against the reference server: spawned on the runtime, it syncs
//! at once, follows local writes and pokes, survives an outage, and stops when asked. Two
//! instances on one database are in `service_interop`, against both servers.
//!
//! Intervals are an hour long, so every cycle here is called for by the step before it; the
//! tests wait on the service's events and status, never on the clock.

use std::sync::Arc;

use deltasync::SyncEvent;
use refserver::proxy::FaultProxy;
use serde_json::json;
use tests::service::{cycle_where, event_where, spawn};
use tests::{FIELDS, World, backends, local_rows, row};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spawned_service_syncs_at_once_follows_local_and_server_changes_and_stops() {
    for backend in backends() {
        let mut world = World::new(backend.clone()).await;
        world.collection("articles", &FIELDS).await;
        let seeded = world.seed(
            "articles",
            (0..3)
                .map(|i| row(json!({"title": format!("server {i}")})))
                .collect(),
        );
        let engine = Arc::new(
            world
                .replica(vec![World::config("articles", &FIELDS)])
                .await,
        );
        let (handle, stop, task) = spawn(engine.clone());
        let mut events = handle.events();

        let mut status = handle.status();
        status.wait_for(|s| s.ready()).await.unwrap();
        let local = local_rows(&engine, "articles").await;
        assert_eq!(local.len(), 3, "{backend:?}: the first cycle pulls at once");

        // A write through the library is pushed without waiting for the interval.
        let key = engine
            .collection("articles")
            .unwrap()
            .insert(row(json!({"title": "local"})))
            .await
            .unwrap();
        cycle_where(&mut events, "articles", |r| r.pushed == 1).await;
        assert!(
            world
                .server_rows("articles")
                .iter()
                .any(|r| r["id"] == json!(key))
        );

        // A server edit is announced over the realtime connection and pulled at once.
        world
            .server
            .state()
            .update("articles", &seeded[0], row(json!({"title": "edited"})))
            .unwrap();
        cycle_where(&mut events, "articles", |r| r.pulled == 1).await;
        let edited = engine
            .collection("articles")
            .unwrap()
            .get(&seeded[0])
            .await
            .unwrap();
        assert_eq!(edited.unwrap().data["title"], "edited", "{backend:?}");

        let now = handle.sync_now().await;
        assert!(now.collections["articles"].last_error.is_none(), "{now:?}");
        assert_eq!(now.collections["articles"].pending, Some(0));

        stop.cancel();
        task.await.unwrap();
        assert!(!handle.status().borrow().running, "{backend:?}: stopped");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_is_reported_probed_and_caught_up_without_losing_anything() {
    for backend in backends() {
        let mut world = World::new(backend.clone()).await;
        world.collection("articles", &FIELDS).await;
        let proxy = FaultProxy::start(&world.server.url(), 1, 0.0).await;
        let engine = Arc::new(
            world
                .replica_behind(proxy.url(), vec![World::config("articles", &FIELDS)])
                .await,
        );
        let (handle, stop, task) = spawn(engine.clone());
        let mut events = handle.events();
        handle.status().wait_for(|s| s.ready()).await.unwrap();

        proxy.set_down(true);
        let articles = engine.collection("articles").unwrap();
        articles
            .insert(row(json!({"title": "offline 1"})))
            .await
            .unwrap();
        event_where(&mut events, |e| matches!(e, SyncEvent::RemoteDown { .. })).await;
        assert!(
            !handle.status().borrow().remote_up,
            "{backend:?}: reported down"
        );
        // Work goes on while the server is away, on both sides.
        articles
            .insert(row(json!({"title": "offline 2"})))
            .await
            .unwrap();
        let server_side = world.seed("articles", vec![row(json!({"title": "meanwhile"}))]);

        proxy.set_down(false);
        event_where(&mut events, |e| *e == SyncEvent::RemoteUp).await;
        let caught_up = handle
            .status()
            .wait_for(|s| {
                s.remote_up
                    && s.collections["articles"].pending == Some(0)
                    && s.collections["articles"].last_error.is_none()
            })
            .await
            .unwrap()
            .clone();
        assert!(caught_up.remote_up);
        let titles: Vec<String> = world
            .server_rows("articles")
            .iter()
            .map(|r| r["title"].as_str().unwrap_or_default().to_owned())
            .collect();
        for title in ["offline 1", "offline 2", "meanwhile"] {
            assert_eq!(
                titles.iter().filter(|t| *t == title).count(),
                1,
                "{backend:?}: {titles:?}"
            );
        }
        // The server's row arrives too (the next cycle after the catch-up, at the latest).
        handle.sync_now().await;
        let local = articles.get(&server_side[0]).await.unwrap();
        assert!(local.is_some(), "{backend:?}: the server's row arrived");

        stop.cancel();
        task.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_sql_insert_by_another_process_is_pushed_promptly() {
    use sea_orm::ConnectionTrait;
    for backend in backends() {
        let mut world = World::new(backend.clone()).await;
        world.collection("articles", &FIELDS).await;
        let config = world
            .replica_config(vec![World::config("articles", &FIELDS)])
            .await;
        let engine = Arc::new(deltasync::open(config.clone()).await.unwrap());
        let (handle, stop, task) = spawn(engine);
        let mut events = handle.events();
        handle.status().wait_for(|s| s.ready()).await.unwrap();

        // Another program, on a connection of its own, writes with plain SQL.
        let other = sea_orm::Database::connect(config.local.database.as_str())
            .await
            .unwrap();
        let key = uuid::Uuid::new_v4().to_string();
        other
            .execute_unprepared(&format!(
                "INSERT INTO articles (id, title) VALUES ('{key}', 'plain sql')"
            ))
            .await
            .unwrap();

        // The interval is an hour: only the notice of the write can call for this cycle.
        cycle_where(&mut events, "articles", |r| r.pushed == 1).await;
        let on_server = world.server_rows("articles");
        assert!(
            on_server.iter().any(|r| r["id"] == json!(key)),
            "{backend:?}"
        );

        // An update by plain SQL too.
        other
            .execute_unprepared(&format!(
                "UPDATE articles SET title = 'edited by sql' WHERE id = '{key}'"
            ))
            .await
            .unwrap();
        cycle_where(&mut events, "articles", |r| r.pushed == 1).await;
        let edited = world.server_rows("articles");
        let row = edited.iter().find(|r| r["id"] == json!(key)).unwrap();
        assert_eq!(row["title"], "edited by sql", "{backend:?}");

        stop.cancel();
        task.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_realtime_on_the_server_the_service_says_so_and_a_poke_still_pulls() {
    let options = refserver::Options {
        websockets: false,
        ..Default::default()
    };
    let mut world = World::with_options(tests::Backend::Sqlite, options).await;
    world.collection("articles", &FIELDS).await;
    let seeded = world.seed("articles", vec![row(json!({"title": "first"}))]);
    let engine = Arc::new(
        world
            .replica(vec![World::config("articles", &FIELDS)])
            .await,
    );
    let (handle, stop, task) = spawn(engine.clone());
    let off = handle
        .status()
        .wait_for(|s| s.realtime_off.is_some() && s.ready())
        .await
        .unwrap()
        .clone();
    assert!(
        off.realtime_off.unwrap().contains("404"),
        "names the answer"
    );
    let mut events = handle.events();

    world
        .server
        .state()
        .update("articles", &seeded[0], row(json!({"title": "edited"})))
        .unwrap();
    handle.poke("articles");
    cycle_where(&mut events, "articles", |r| r.pulled == 1).await;
    let local = engine
        .collection("articles")
        .unwrap()
        .get(&seeded[0])
        .await
        .unwrap();
    assert_eq!(local.unwrap().data["title"], "edited");

    stop.cancel();
    task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_realtime_session_whose_token_expires_authenticates_again_and_pulls() {
    use deltasync::{Auth, Secret};
    use refserver::{Clock, Options};
    for backend in backends() {
        let options = Options {
            access_token_ttl: std::time::Duration::from_secs(60),
            ..Options::default()
        };
        let mut world = World::with_options(backend.clone(), options).await;
        world
            .server
            .state()
            .set_clock(Clock::Manual("2026-01-01T00:00:00Z".parse().unwrap()));
        world.collection("articles", &FIELDS).await;
        let seeded = world.seed("articles", vec![row(json!({"title": "before"}))]);
        let mut config = world
            .replica_config(vec![World::config("articles", &FIELDS)])
            .await;
        let state = world.server.state();
        config.remote.auth = Auth::Login {
            email: state.options().admin_email.clone(),
            password: Secret::new(state.options().admin_password.clone()),
        };
        let engine = Arc::new(deltasync::open(config).await.unwrap());
        let (handle, stop, task) = spawn(engine.clone());
        handle.status().wait_for(|s| s.ready()).await.unwrap();
        handle.sync_now().await;
        let mut events = handle.events();

        // Past the access token's lifetime, with no request made: the realtime session is
        // the first to learn that it expired.
        state.advance_clock(std::time::Duration::from_secs(120));
        state
            .update(
                "articles",
                &seeded[0],
                row(json!({"title": "after expiry"})),
            )
            .unwrap();
        cycle_where(&mut events, "articles", |r| r.pulled == 1).await;
        let local = engine.collection("articles").unwrap().get(&seeded[0]).await;
        assert_eq!(
            local.unwrap().unwrap().data["title"],
            "after expiry",
            "{backend:?}"
        );
        assert!(
            handle.status().borrow().realtime_off.is_none(),
            "{backend:?}"
        );
        assert!(
            state.stats().count("POST", "/auth/refresh") >= 1,
            "{backend:?}"
        );
        stop.cancel();
        task.await.unwrap();
    }
}
