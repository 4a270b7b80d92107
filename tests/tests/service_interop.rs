//! The sync service against the reference server and, when `DELTASYNC_TEST_DIRECTUS` is set,
//! a real Directus (with WebSockets on, as `scripts/directus` runs it), on every backend: a
//! server edit reaches the local table while the interval is an hour long; local writes,
//! through the library and by plain SQL from another connection, are pushed promptly; an
//! outage through the fault proxy is reported, ridden out and caught up, nothing lost; a
//! realtime connection that is cut reconnects and pulls in full; two instances on one database,
//! with local writes through both and server edits all at once, push each change once and
//! converge.

use std::sync::Arc;

use deltasync::{Deltasync, SyncEvent};
use refserver::proxy::{Fault, FaultProxy};
use sea_orm::ConnectionTrait;
use serde_json::json;
use tests::service::{cycle_where, event_where, realtime_refused, spawn};
use tests::{FIELDS, pairs, row};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_edits_and_local_writes_cross_at_once_while_the_interval_is_long() {
    for (site, mut dbs) in pairs().await {
        let label = format!("{} on {:?}", site.label, dbs.backend);
        let c = site.collection("service", &FIELDS).await;
        let seeded = site
            .insert(&c.name, vec![row(json!({"title": "first"}))])
            .await;
        let key = seeded[0]["id"].as_str().unwrap().to_owned();
        let config = site.replica_config(&mut dbs, vec![c.clone()]).await;
        let engine = Arc::new(deltasync::open(config.clone()).await.unwrap());
        let (handle, stop, task) = spawn(engine.clone());
        let status = handle
            .status()
            .wait_for(|s| s.ready())
            .await
            .unwrap()
            .clone();
        assert!(status.realtime_off.is_none(), "{label}: {status:?}");
        // Past the first cycles, and the one that follows the subscription.
        handle.sync_now().await;
        let mut events = handle.events();

        site.update(&c.name, &key, row(json!({"title": "edited on the server"})))
            .await;
        cycle_where(&mut events, &c.name, |r| r.pulled == 1).await;
        let local = engine.collection(&c.name).unwrap().get(&key).await.unwrap();
        assert_eq!(
            local.unwrap().data["title"],
            "edited on the server",
            "{label}"
        );

        let written = engine
            .collection(&c.name)
            .unwrap()
            .insert(row(json!({"title": "through the library"})))
            .await
            .unwrap();
        cycle_where(&mut events, &c.name, |r| r.pushed == 1).await;

        let other = sea_orm::Database::connect(config.local.database.as_str())
            .await
            .unwrap();
        let by_sql = uuid::Uuid::new_v4().to_string();
        other
            .execute_unprepared(&format!(
                "INSERT INTO \"{}\" (id, title) VALUES ('{by_sql}', 'by plain sql')",
                c.table
            ))
            .await
            .unwrap();
        cycle_where(&mut events, &c.name, |r| r.pushed == 1).await;

        let on_server = site.rows(&c.name).await;
        for wanted in [&written, &by_sql] {
            assert!(
                on_server.iter().any(|r| r["id"] == json!(wanted)),
                "{label}: {wanted} on the server"
            );
        }
        stop.cancel();
        task.await.unwrap();
        site.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_is_reported_and_caught_up_with_nothing_lost() {
    for (site, mut dbs) in pairs().await {
        let label = format!("{} on {:?}", site.label, dbs.backend);
        let c = site.collection("outage", &FIELDS).await;
        let proxy = FaultProxy::start(&site.url, 7, 0.0).await;
        let engine = Arc::new(
            site.replica_behind(&mut dbs, proxy.url(), vec![c.clone()])
                .await,
        );
        let (handle, stop, task) = spawn(engine.clone());
        handle.status().wait_for(|s| s.ready()).await.unwrap();
        let mut events = handle.events();

        proxy.set_down(true);
        realtime_refused(&proxy).await;
        let articles = engine.collection(&c.name).unwrap();
        articles
            .insert(row(json!({"title": "offline 1"})))
            .await
            .unwrap();
        event_where(&mut events, |e| matches!(e, SyncEvent::RemoteDown { .. })).await;
        assert!(!handle.status().borrow().remote_up, "{label}");
        articles
            .insert(row(json!({"title": "offline 2"})))
            .await
            .unwrap();
        let meanwhile = site
            .insert(&c.name, vec![row(json!({"title": "meanwhile"}))])
            .await;
        let meanwhile = meanwhile[0]["id"].as_str().unwrap().to_owned();

        proxy.set_down(false);
        let mut status = handle.status();
        let caught_up = status.wait_for(|s| {
            s.remote_up
                && s.collections[&c.name].pending == Some(0)
                && s.collections[&c.name].last_error.is_none()
        });
        tokio::time::timeout(tests::service::PATIENCE, caught_up)
            .await
            .expect("caught up")
            .unwrap();
        handle.sync_now().await;
        let titles: Vec<String> = site
            .rows(&c.name)
            .await
            .iter()
            .map(|r| r["title"].as_str().unwrap_or_default().to_owned())
            .collect();
        for title in ["offline 1", "offline 2", "meanwhile"] {
            let n = titles.iter().filter(|t| *t == title).count();
            assert_eq!(n, 1, "{label}: {title} in {titles:?}");
        }
        assert!(articles.get(&meanwhile).await.unwrap().is_some(), "{label}");

        // Realtime came back with the server (a gateway's 502 is not "no realtime"): a server
        // edit arrives while the interval is an hour long.
        let mut events = handle.events();
        site.update(&c.name, &meanwhile, row(json!({"title": "after"})))
            .await;
        cycle_where(&mut events, &c.name, |r| r.pulled == 1).await;
        let local = articles.get(&meanwhile).await.unwrap().unwrap();
        assert_eq!(local.data["title"], "after", "{label}");
        assert!(handle.status().borrow().realtime_off.is_none(), "{label}");
        stop.cancel();
        task.await.unwrap();
        site.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_realtime_connection_reconnects_and_pulls_what_it_missed() {
    for (site, mut dbs) in pairs().await {
        let label = format!("{} on {:?}", site.label, dbs.backend);
        let c = site.collection("deaf", &FIELDS).await;
        let seeded = site
            .insert(&c.name, vec![row(json!({"title": "before"}))])
            .await;
        let key = seeded[0]["id"].as_str().unwrap().to_owned();
        let proxy = FaultProxy::start(&site.url, 11, 0.0).await;
        let engine = Arc::new(
            site.replica_behind(&mut dbs, proxy.url(), vec![c.clone()])
                .await,
        );
        let (handle, stop, task) = spawn(engine.clone());
        handle.status().wait_for(|s| s.ready()).await.unwrap();
        handle.sync_now().await;
        assert!(handle.status().borrow().realtime_off.is_none(), "{label}");

        // No subscription hears this edit: nothing is replayed on reconnecting.
        proxy.set_realtime_down(true);
        site.update(&c.name, &key, row(json!({"title": "missed"})))
            .await;
        realtime_refused(&proxy).await;
        let local = engine.collection(&c.name).unwrap().get(&key).await.unwrap();
        assert_eq!(local.unwrap().data["title"], "before", "{label}");

        let mut events = handle.events();
        proxy.set_realtime_down(false);
        cycle_where(&mut events, &c.name, |r| r.pulled == 1).await;
        let local = engine.collection(&c.name).unwrap().get(&key).await.unwrap();
        assert_eq!(local.unwrap().data["title"], "missed", "{label}");
        let upgrades = proxy
            .log()
            .iter()
            .filter(|(request, fault)| request.contains("/websocket") && *fault == Fault::None)
            .count();
        assert!(upgrades >= 2, "{label}: {upgrades} realtime connections");
        stop.cancel();
        task.await.unwrap();
        site.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_database_push_each_change_once_and_converge() {
    const EACH: usize = 25;
    for (site, mut dbs) in pairs().await {
        let label = format!("{} on {:?}", site.label, dbs.backend);
        let c = site.collection("replicas", &FIELDS).await;
        let edited: Vec<String> = site
            .insert(
                &c.name,
                (0..5)
                    .map(|i| row(json!({"title": format!("seeded {i}")})))
                    .collect(),
            )
            .await
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_owned())
            .collect();
        let config = site.replica_config(&mut dbs, vec![c.clone()]).await;
        let a = Arc::new(deltasync::open(config.clone()).await.unwrap());
        let b = Arc::new(deltasync::open(config).await.unwrap());
        let (handle_a, stop_a, task_a) = spawn(a.clone());
        let (handle_b, stop_b, task_b) = spawn(b.clone());
        let (mut events_a, mut events_b) = (handle_a.events(), handle_b.events());
        handle_a.status().wait_for(|s| s.ready()).await.unwrap();
        handle_b.status().wait_for(|s| s.ready()).await.unwrap();

        // Local writes through both instances, server creates and edits, all at once.
        let write = |engine: Arc<Deltasync>, side: &'static str| {
            let name = c.name.clone();
            async move {
                let rows = engine.collection(&name).unwrap();
                for i in 0..EACH {
                    rows.insert(row(json!({"title": format!("{side} {i}")})))
                        .await
                        .unwrap();
                }
            }
        };
        let server = async {
            for i in 0..EACH {
                site.insert(&c.name, vec![row(json!({"title": format!("server {i}")}))])
                    .await;
                let key = &edited[i % edited.len()];
                site.update(&c.name, key, row(json!({"title": format!("edit {i}")})))
                    .await;
            }
        };
        tokio::join!(write(a.clone(), "a"), write(b.clone(), "b"), server);

        // Both drain: every local change pushed, then one more cycle each pulls the rest.
        for handle in [&handle_a, &handle_b] {
            // Pending counts are refreshed by each instance's own cycles.
            handle.sync_now().await;
            let mut status = handle.status();
            let drained = status.wait_for(|s| {
                let state = &s.collections[&c.name];
                state.pending == Some(0) && state.last_error.is_none()
            });
            tokio::time::timeout(tests::service::PATIENCE, drained)
                .await
                .expect("drained")
                .unwrap();
        }
        handle_a.sync_now().await;
        handle_b.sync_now().await;
        stop_a.cancel();
        stop_b.cancel();
        task_a.await.unwrap();
        task_b.await.unwrap();

        let mut pushed = 0;
        for events in [&mut events_a, &mut events_b] {
            while let Ok(event) = events.try_recv() {
                if let SyncEvent::Cycle(report) = event {
                    pushed += report.pushed;
                }
            }
        }
        assert_eq!(pushed, 2 * EACH as u64, "{label}: each change pushed once");
        let on_server = site.rows(&c.name).await;
        let mut titles: Vec<&str> = on_server
            .iter()
            .map(|r| r["title"].as_str().unwrap_or_default())
            .collect();
        titles.sort_unstable();
        titles.dedup();
        assert_eq!(titles.len(), 5 + 3 * EACH, "{label}: {titles:?}");
        assert_eq!(on_server.len(), 5 + 3 * EACH, "{label}");
        site.assert_converged(&a, &c.name).await;
        site.cleanup().await;
    }
}
