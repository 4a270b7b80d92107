//! Replicas converge through a network that drops, cuts, truncates and refuses requests, with
//! nothing lost and nothing duplicated, against the reference server and, when
//! `DELTASYNC_TEST_DIRECTUS` is set, a real Directus. Each run is replayable from its seed.

use std::collections::BTreeMap;

use deltasync::{Deltasync, Row};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use refserver::proxy::{Fault, FaultProxy};
use serde_json::json;
use tests::{Databases, FIELDS, Site, backends, row, sites};

/// Seeds per site and backend; `DELTASYNC_FAULT_SEEDS` asks for more (a longer soak).
const SEEDS: u64 = 6;

fn seeds() -> u64 {
    std::env::var("DELTASYNC_FAULT_SEEDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(SEEDS)
}
const ROUNDS: usize = 4;

/// key -> title, as the server holds it.
fn titles(rows: &[Row]) -> BTreeMap<String, String> {
    rows.iter()
        .map(|r| {
            let key = r["id"].as_str().unwrap().to_owned();
            (key, r["title"].as_str().unwrap().to_owned())
        })
        .collect()
}

#[tokio::test]
async fn replicas_converge_through_a_faulty_network() {
    for backend in backends() {
        for site in sites().await {
            for seed in 0..seeds() {
                let mut dbs = Databases::new(backend.clone());
                converge_through_faults(&site, &mut dbs, seed).await;
            }
            site.cleanup().await;
        }
    }
}

async fn converge_through_faults(site: &Site, dbs: &mut Databases, seed: u64) {
    let label = format!("{} seed {seed}", site.label);
    let c = site.collection("faults", &FIELDS).await;
    let seeded = site
        .insert(
            &c.name,
            (0..30)
                .map(|i| row(json!({"title": format!("s{i}"), "views": i})))
                .collect(),
        )
        .await;
    // What the server must hold in the end.
    let mut expected = titles(&seeded);
    let keys: Vec<String> = expected.keys().cloned().collect();
    let proxy = FaultProxy::start(&site.url, seed, 0.0).await;
    let a = site.replica_behind(dbs, proxy.url(), vec![c.clone()]).await;
    let b = site.replica_behind(dbs, proxy.url(), vec![c.clone()]).await;
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
            let handle = replica.collection(&c.name).unwrap();
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
            site.update(&c.name, &key, row(json!({"title": title})))
                .await;
            expected.insert(key, title);
        }
        // Failures are expected here; a later sync picks up where this one stopped.
        let _ = a.sync(None).await;
        let _ = b.sync(None).await;
    }

    proxy.set_rate(0.0);
    for replica in [&a, &b, &a] {
        let report = replica.sync(None).await.unwrap();
        assert!(!report.failed(), "{label}: {report:?}");
        assert_eq!(report.waiting, Some(0), "{label}: no conflicts: {report:?}");
    }
    let faults = proxy
        .log()
        .iter()
        .filter(|(_, f)| *f != Fault::None)
        .count();
    assert!(faults > 0, "{label}: the network did fail");
    let server = titles(&site.rows(&c.name).await);
    if server != expected {
        explain(&server, &expected, [&a, &b], &c.name, &proxy).await;
    }
    assert_eq!(
        server, expected,
        "{label}: nothing lost, nothing duplicated"
    );
    site.assert_converged(&a, &c.name).await;
    site.assert_converged(&b, &c.name).await;
}

/// Prints what differs, and the request log, before the assertion fails.
async fn explain(
    server: &BTreeMap<String, String>,
    expected: &BTreeMap<String, String>,
    replicas: [&Deltasync; 2],
    collection: &str,
    proxy: &FaultProxy,
) {
    for (k, v) in server.iter().filter(|(k, v)| expected.get(*k) != Some(*v)) {
        eprintln!("server has {k} = {v}; expected {:?}", expected.get(k));
        for (name, r) in ["a", "b"].into_iter().zip(replicas) {
            let local = r.collection(collection).unwrap().get(k).await.unwrap();
            eprintln!("  {name}: {local:?}");
        }
    }
    for entry in proxy.log() {
        eprintln!("  {entry:?}");
    }
}
