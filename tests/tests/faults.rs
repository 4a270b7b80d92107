//! Replicas converge through a network that drops, cuts, truncates and refuses requests, with
//! nothing lost and nothing duplicated. Each run is replayable from its seed.

use std::collections::BTreeMap;
use std::time::Duration;

use deltasync::{Config, Deltasync, DirectusClient, SqlStore};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use refserver::proxy::{Fault, FaultProxy};
use serde_json::json;
use tests::{FIELDS, World, assert_converged, backends, row};

/// Seeds per backend; `DELTASYNC_FAULT_SEEDS` asks for more (a longer soak).
const SEEDS: u64 = 6;

fn seeds() -> u64 {
    std::env::var("DELTASYNC_FAULT_SEEDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(SEEDS)
}
const ROUNDS: usize = 4;

/// A replica whose requests go through `proxy`, retrying after a millisecond, not 200.
async fn replica_behind(world: &mut World, proxy: &FaultProxy) -> Deltasync {
    let database = world.database().await;
    let config = Config::new(
        proxy.url(),
        world.server.admin_token(),
        database,
        vec![World::config("articles", &FIELDS)],
    );
    let store = SqlStore::connect(&config.local.database).await.unwrap();
    let client = DirectusClient::new(&config.remote)
        .unwrap()
        .with_min_backoff(Duration::from_millis(1));
    deltasync::Deltasync::open(config, store, client)
        .await
        .unwrap()
}

#[tokio::test]
async fn replicas_converge_through_a_faulty_network() {
    for backend in backends() {
        for seed in 0..seeds() {
            let mut world = World::new(backend.clone()).await;
            world.collection("articles", &FIELDS).await;
            let seeded = world
                .server
                .state()
                .insert(
                    "articles",
                    (0..30)
                        .map(|i| row(json!({"title": format!("s{i}"), "views": i})))
                        .collect(),
                )
                .unwrap();
            // What the server must hold in the end: key -> title.
            let mut expected: BTreeMap<String, String> = seeded
                .iter()
                .map(|r| {
                    let key = r["id"].as_str().unwrap().to_owned();
                    (key, r["title"].as_str().unwrap().to_owned())
                })
                .collect();
            let keys: Vec<String> = expected.keys().cloned().collect();
            let proxy = FaultProxy::start(&world.server.url(), seed, 0.0).await;
            let a = replica_behind(&mut world, &proxy).await;
            let b = replica_behind(&mut world, &proxy).await;
            // Both start from the server's rows; from then on, the network fails.
            a.sync(None).await.unwrap();
            b.sync(None).await.unwrap();
            proxy.set_rate(0.3);
            let mut rng = StdRng::seed_from_u64(seed);
            // Each side edits rows of its own, so no edit meets a conflict: the outcome is exact.
            let mut own = [
                keys[0..10].to_vec(),
                keys[10..20].to_vec(),
                keys[20..30].to_vec(),
            ];

            for round in 0..ROUNDS {
                for (side, replica) in [&a, &b].into_iter().enumerate() {
                    let handle = replica.collection("articles").unwrap();
                    let title = format!("r{round}-side{side}-new");
                    let key = handle
                        .insert(row(json!({"title": title, "views": round})))
                        .await
                        .unwrap()
                        .to_string();
                    expected.insert(key, title);
                    if own[side].is_empty() {
                        continue;
                    }
                    let pick = rng.random_range(0..own[side].len());
                    if rng.random_bool(0.3) {
                        let key = own[side].swap_remove(pick);
                        assert!(handle.delete(&key).await.unwrap());
                        expected.remove(&key);
                    } else {
                        let key = own[side][pick].clone();
                        let title = format!("r{round}-side{side}-edit");
                        let updated = handle.update(&key, row(json!({"title": title})));
                        assert!(updated.await.unwrap());
                        expected.insert(key, title);
                    }
                }
                if !own[2].is_empty() {
                    let key = own[2][rng.random_range(0..own[2].len())].clone();
                    let title = format!("r{round}-server");
                    world
                        .server
                        .state()
                        .update("articles", &key, row(json!({"title": title})))
                        .unwrap();
                    expected.insert(key, title);
                }
                // Failures are expected here; a later sync picks up where this one stopped.
                let _ = a.sync(None).await;
                let _ = b.sync(None).await;
            }

            proxy.set_rate(0.0);
            for replica in [&a, &b, &a] {
                let report = replica.sync(None).await.unwrap();
                assert!(!report.failed(), "seed {seed}: {report:?}");
                assert_eq!(report.waiting, 0, "seed {seed}: no conflicts: {report:?}");
            }
            let faults = proxy
                .log()
                .iter()
                .filter(|(_, f)| *f != Fault::None)
                .count();
            assert!(faults > 0, "seed {seed}: the network did fail");
            let server: BTreeMap<String, String> = world
                .server_rows("articles")
                .iter()
                .map(|r| {
                    (
                        r["id"].as_str().unwrap().to_owned(),
                        r["title"].as_str().unwrap().to_owned(),
                    )
                })
                .collect();
            if server != expected {
                for (k, v) in server.iter().filter(|(k, v)| expected.get(*k) != Some(*v)) {
                    eprintln!("server has {k} = {v}; expected {:?}", expected.get(k));
                    for (name, r) in [("a", &a), ("b", &b)] {
                        let local = r.collection("articles").unwrap().get(k).await.unwrap();
                        eprintln!("  {name}: {local:?}");
                    }
                }
                for entry in proxy.log() {
                    eprintln!("  {entry:?}");
                }
            }
            assert_eq!(
                server, expected,
                "seed {seed}: nothing lost, nothing duplicated"
            );
            assert_converged(&world, &a, "articles").await;
            assert_converged(&world, &b, "articles").await;
        }
    }
}
