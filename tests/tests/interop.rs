//! Scenarios over REST only, so that they run unchanged against the reference server and,
//! when `DELTASYNC_TEST_DIRECTUS` is set, against a real Directus; each on every backend.

use deltasync::{Choice, ConflictKind, Resolution, Strategy, SyncStatus};
use serde_json::{Value, json};
use tests::{FIELDS, Site, backdate_local_change, local_rows, pairs, row, shift_local_change};

fn article(i: usize) -> deltasync::Row {
    row(json!({"title": format!("a{i}"), "views": i, "meta": {"i": i}}))
}

fn keys_of(rows: &[deltasync::Row]) -> Vec<String> {
    rows.iter()
        .map(|r| r["id"].as_str().expect("uuid key").to_owned())
        .collect()
}

#[tokio::test]
async fn an_initial_sync_of_20000_rows_brings_every_row() {
    for (site, mut dbs) in pairs().await {
        let c = site.collection("initial", &FIELDS).await;
        site.insert(&c.name, (0..20_000).map(article).collect())
            .await;
        let a = site.replica(&mut dbs, vec![c.clone()]).await;
        let report = a.sync(None).await.unwrap();
        assert!(!report.failed(), "{}: {report:?}", site.label);
        assert_eq!(report.collections[0].pulled, 20_000, "{}", site.label);
        site.assert_converged(&a, &c.name).await;
        site.cleanup().await;
    }
}

#[tokio::test]
async fn a_batch_update_of_2500_rows_with_one_stamp_is_pulled_in_pages_of_1000() {
    for (site, mut dbs) in pairs().await {
        let mut c = site.collection("ties", &FIELDS).await;
        c.page_size = 1000;
        let keys = keys_of(
            &site
                .insert(&c.name, (0..2_500).map(article).collect())
                .await,
        );
        let a = site.replica(&mut dbs, vec![c.clone()]).await;
        a.sync(None).await.unwrap();

        site.update_many(&c.name, &keys, row(json!({"title": "batch"})))
            .await;
        let stamps: std::collections::BTreeSet<String> = site
            .rows(&c.name)
            .await
            .iter()
            .map(|r| r["last_modified"].to_string())
            .collect();
        assert_eq!(stamps.len(), 1, "{}: one stamp for the batch", site.label);
        let report = a.sync(None).await.unwrap();
        assert!(!report.failed(), "{}: {report:?}", site.label);
        assert_eq!(report.collections[0].pulled, 2_500, "{}", site.label);
        let local = local_rows(&a, &c.name).await;
        assert!(
            local.iter().all(|(_, _, data)| data["title"] == "batch"),
            "{}",
            site.label
        );
        site.assert_converged(&a, &c.name).await;
        site.cleanup().await;
    }
}

#[tokio::test]
async fn offline_creates_updates_and_deletes_are_pushed_and_reach_the_other_replica() {
    for (site, mut dbs) in pairs().await {
        let c = site.collection("offline", &FIELDS).await;
        let keys = keys_of(&site.insert(&c.name, (0..6).map(article).collect()).await);
        let a = site.replica(&mut dbs, vec![c.clone()]).await;
        let b = site.replica(&mut dbs, vec![c.clone()]).await;
        a.sync(None).await.unwrap();
        b.sync(None).await.unwrap();

        let on_a = a.collection(&c.name).unwrap();
        let created = on_a.insert(article(100)).await.unwrap().to_string();
        on_a.update(&keys[0], row(json!({"views": 1000})))
            .await
            .unwrap();
        on_a.delete(&keys[1]).await.unwrap();
        let on_b = b.collection(&c.name).unwrap();
        on_b.update(&keys[2], row(json!({"title": "from b"})))
            .await
            .unwrap();
        on_b.delete(&keys[3]).await.unwrap();

        let report = a.sync(None).await.unwrap();
        assert_eq!(
            report.collections[0].pushed, 3,
            "{}: {report:?}",
            site.label
        );
        let report = b.sync(None).await.unwrap();
        assert_eq!(
            report.collections[0].pushed, 2,
            "{}: {report:?}",
            site.label
        );
        a.sync(None).await.unwrap();

        let server = site.rows(&c.name).await;
        assert_eq!(server.len(), 5, "{}", site.label);
        assert!(server.iter().any(|r| r["id"] == created.as_str()));
        site.assert_converged(&a, &c.name).await;
        site.assert_converged(&b, &c.name).await;
        site.cleanup().await;
    }
}

#[tokio::test]
async fn each_strategy_settles_update_versus_update_as_configured() {
    for (site, mut dbs) in pairs().await {
        for strategy in [
            Strategy::LastWriteWins,
            Strategy::FirstWriteWins,
            Strategy::Manual,
        ] {
            let mut c = site.collection("strategy", &FIELDS).await;
            c.conflict = strategy;
            let keys = keys_of(&site.insert(&c.name, (0..2).map(article).collect()).await);
            let a = site.replica(&mut dbs, vec![c.clone()]).await;
            a.sync(None).await.unwrap();
            let on_a = a.collection(&c.name).unwrap();
            // Row 0: the local edit is older than the server's; row 1: it is newer.
            for key in &keys {
                on_a.update(key, row(json!({"title": "local"})))
                    .await
                    .unwrap();
                site.update(&c.name, key, row(json!({"title": "server"})))
                    .await;
            }
            backdate_local_change(&a, &c.name, &keys[0]).await;
            shift_local_change(&a, &c.name, &keys[1], 3600).await;

            let report = a.sync(None).await.unwrap();
            let what = format!("{} {strategy:?}: {report:?}", site.label);
            assert!(!report.failed(), "{what}");
            assert_eq!(report.collections[0].conflicts, 2, "{what}");
            let server: Vec<Value> = site
                .rows(&c.name)
                .await
                .iter()
                .map(|r| r["title"].clone())
                .collect();
            let by_key = |k: &str| {
                let i = keys.iter().position(|x| x == k).unwrap();
                server[sorted_index(&keys, i)].clone()
            };
            match strategy {
                Strategy::LastWriteWins => {
                    assert_eq!(by_key(&keys[0]), "server", "{what}");
                    assert_eq!(by_key(&keys[1]), "local", "{what}");
                }
                Strategy::FirstWriteWins => {
                    assert_eq!(by_key(&keys[0]), "server", "{what}");
                    assert_eq!(by_key(&keys[1]), "server", "{what}");
                }
                Strategy::Manual => {
                    assert_eq!(report.waiting, Some(2), "{what}");
                    let parked = local_rows(&a, &c.name).await;
                    assert!(
                        parked
                            .iter()
                            .all(|(_, s, d)| *s == SyncStatus::Conflict && d["title"] == "local"),
                        "{what}: {parked:?}"
                    );
                    for record in a.conflicts(true).await.unwrap() {
                        a.resolve(record.id, Choice::Local).await.unwrap();
                    }
                    a.sync(None).await.unwrap();
                    assert_eq!(by_key(&keys[1]), "server", "{what}: untouched while parked");
                    let now: Vec<Value> = site
                        .rows(&c.name)
                        .await
                        .iter()
                        .map(|r| r["title"].clone())
                        .collect();
                    assert!(now.iter().all(|t| t == "local"), "{what}: {now:?}");
                }
            }
            let recorded = a.conflicts(false).await.unwrap();
            assert_eq!(recorded.len(), 2, "{what}");
            assert!(
                recorded
                    .iter()
                    .all(|r| r.local.is_some() && r.remote.is_some()),
                "{what}: both versions recorded"
            );
            site.assert_converged(&a, &c.name).await;
            site.cleanup().await;
        }
    }
}

/// Where the `i`th key lands among the keys sorted as the server sorts them.
fn sorted_index(keys: &[String], i: usize) -> usize {
    let mut sorted = keys.to_vec();
    sorted.sort();
    sorted.iter().position(|k| *k == keys[i]).unwrap()
}

#[tokio::test]
async fn delete_versus_update_follows_the_strategy() {
    for (site, mut dbs) in pairs().await {
        for strategy in [Strategy::LastWriteWins, Strategy::FirstWriteWins] {
            let mut c = site.collection("delupd", &FIELDS).await;
            c.conflict = strategy;
            let keys = keys_of(&site.insert(&c.name, (0..2).map(article).collect()).await);
            let a = site.replica(&mut dbs, vec![c.clone()]).await;
            a.sync(None).await.unwrap();
            let on_a = a.collection(&c.name).unwrap();
            // Row 0: deleted here, updated there. Row 1: updated here, deleted there.
            on_a.delete(&keys[0]).await.unwrap();
            site.update(&c.name, &keys[0], row(json!({"title": "server"})))
                .await;
            on_a.update(&keys[1], row(json!({"title": "local"})))
                .await
                .unwrap();
            site.delete(&c.name, std::slice::from_ref(&keys[1])).await;
            backdate_local_change(&a, &c.name, &keys[0]).await;
            backdate_local_change(&a, &c.name, &keys[1]).await;

            let report = a.sync(None).await.unwrap();
            let what = format!("{} {strategy:?}: {report:?}", site.label);
            assert!(!report.failed(), "{what}");
            let kinds: Vec<ConflictKind> = a
                .conflicts(false)
                .await
                .unwrap()
                .iter()
                .map(|r| r.kind)
                .collect();
            assert!(
                kinds.contains(&ConflictKind::LocalDeleteRemoteUpdate)
                    && kinds.contains(&ConflictKind::LocalUpdateRemoteDelete),
                "{what}: {kinds:?}"
            );
            // Both local changes are older than the server's: the server's side stands.
            let server = site.rows(&c.name).await;
            assert_eq!(keys_of(&server), vec![keys[0].clone()], "{what}");
            assert_eq!(server[0]["title"], "server", "{what}");
            assert!(
                a.conflicts(false)
                    .await
                    .unwrap()
                    .iter()
                    .all(|r| r.resolution == Some(Resolution::TakeRemote)),
                "{what}"
            );
            site.assert_converged(&a, &c.name).await;
            site.cleanup().await;
        }
    }
}

#[tokio::test]
async fn a_remote_delete_arrives_through_the_activity_log() {
    for (site, mut dbs) in pairs().await {
        let c = site.collection("remote_delete", &FIELDS).await;
        let keys = keys_of(&site.insert(&c.name, (0..3).map(article).collect()).await);
        let a = site.replica(&mut dbs, vec![c.clone()]).await;
        a.sync(None).await.unwrap();
        site.delete(&c.name, std::slice::from_ref(&keys[1])).await;
        let report = a.sync(None).await.unwrap();
        assert_eq!(
            report.collections[0].deleted, 1,
            "{}: {report:?}",
            site.label
        );
        site.assert_converged(&a, &c.name).await;
        site.cleanup().await;
    }
}

#[tokio::test]
async fn a_create_that_already_landed_is_not_duplicated() {
    for (site, mut dbs) in pairs().await {
        let c = site.collection("retried", &FIELDS).await;
        let a = site.replica(&mut dbs, vec![c.clone()]).await;
        let key = a
            .collection(&c.name)
            .unwrap()
            .insert(article(7))
            .await
            .unwrap()
            .to_string();
        // An earlier attempt reached the server, but its answer was lost on the way back.
        let mut landed = article(7);
        landed.insert("id".into(), json!(key));
        site.insert(&c.name, vec![landed]).await;

        let report = a.sync(None).await.unwrap();
        assert!(!report.failed(), "{}: {report:?}", site.label);
        assert_eq!(
            (
                report.collections[0].pushed,
                report.collections[0].conflicts
            ),
            (1, 0),
            "{}: {report:?}",
            site.label
        );
        assert_eq!(site.rows(&c.name).await.len(), 1, "{}", site.label);
        site.assert_converged(&a, &c.name).await;
        site.cleanup().await;
    }
}

#[tokio::test]
async fn changes_to_rows_the_server_no_longer_has_are_settled() {
    for (site, mut dbs) in pairs().await {
        let c = site.collection("missing", &FIELDS).await;
        let keys = keys_of(&site.insert(&c.name, (0..2).map(article).collect()).await);
        let a = site.replica(&mut dbs, vec![c.clone()]).await;
        a.sync(None).await.unwrap();
        // Both rows go away on the server (a missing item answers 403 there).
        site.delete(&c.name, &keys).await;
        let on_a = a.collection(&c.name).unwrap();
        on_a.delete(&keys[0]).await.unwrap();
        on_a.update(&keys[1], row(json!({"title": "local"})))
            .await
            .unwrap();
        backdate_local_change(&a, &c.name, &keys[1]).await;

        let report = a.sync(None).await.unwrap();
        assert!(!report.failed(), "{}: {report:?}", site.label);
        // The delete is done; the older update loses to the delete (last_write_wins).
        assert!(local_rows(&a, &c.name).await.is_empty(), "{}", site.label);
        assert!(site.rows(&c.name).await.is_empty(), "{}", site.label);
        site.cleanup().await;
    }
}

#[tokio::test]
async fn validate_remote_names_what_a_restricted_token_lacks() {
    // Policies and users exist on a real Directus only.
    let Some(site) = Site::directus().await else {
        return;
    };
    let c = site.collection("validated", &FIELDS).await;
    let token = site.token_for(&c.name, &["read"], false).await;
    let config =
        deltasync::Config::new(site.url.clone(), token, "sqlite::memory:", vec![c.clone()]);
    let problems = cli::validate_remote::check(&config).await.unwrap();
    // Users count against the server's seats: gone before anything can fail.
    site.cleanup().await;
    for expected in [
        "no create permission",
        "no update permission",
        "no delete permission",
        "may not read the activity log",
    ] {
        assert!(
            problems.iter().any(|p| p.contains(expected)),
            "{expected:?} not in {problems:?}"
        );
    }
    assert!(
        !problems.iter().any(|p| p.contains("read permission")),
        "{problems:?}"
    );
}
