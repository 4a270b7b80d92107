//! `deltasync sync` killed with SIGKILL at an exact point of its work (the Nth request, before
//! it reaches the server or after the server committed it), then a clean sync: the server and
//! the local tables hold exactly the expected rows, every local change made before the crash
//! is on the server, and `verify` finds no drift. On SQLite, and on PostgreSQL when
//! `DELTASYNC_TEST_PG` is set.

use std::collections::BTreeMap;
use std::process::Command;

use deltasync::FieldType;
use refserver::proxy::{FaultProxy, Moment};
use sea_orm::{ConnectionTrait, Database};
use serde_json::{Value, json};

/// Kill points per backend: requests 1 to 18 (push, pull and reconcile), each before
/// forwarding and after the answer.
const TRIALS: u64 = 36;

fn row(value: Value) -> deltasync::Row {
    value.as_object().cloned().expect("an object")
}

/// Runs the binary to completion, off the runtime that serves the servers.
async fn cli(config: &std::path::Path, args: &[&str]) -> (Option<i32>, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_deltasync"));
    command.arg("-c").arg(config).args(args);
    let out = tokio::task::spawn_blocking(move || command.output().expect("runs"))
        .await
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

/// A fresh local database URL: a SQLite file in `dir`, or a new PostgreSQL database.
async fn database(dir: &tempfile::TempDir, postgres: Option<&str>) -> String {
    match postgres {
        None => format!("sqlite://{}", dir.path().join("local.db").display()),
        Some(admin) => {
            let db = Database::connect(admin).await.unwrap_or_else(|e| {
                panic!("DELTASYNC_TEST_PG is set but {admin} is unreachable: {e}")
            });
            let name = format!("deltasync_crash_{}", uuid::Uuid::new_v4().simple());
            db.execute_unprepared(&format!("CREATE DATABASE {name}"))
                .await
                .unwrap();
            let base = admin.rsplit_once('/').map_or(admin, |(b, _)| b);
            format!("{base}/{name}")
        }
    }
}

/// The PostgreSQL server of `DELTASYNC_TEST_PG`, when set.
fn postgres() -> Option<String> {
    std::env::var("DELTASYNC_TEST_PG")
        .ok()
        .filter(|u| !u.is_empty())
}

/// SQLite (`None`), then `postgres` when given.
fn backends(postgres: &Option<String>) -> Vec<Option<&str>> {
    std::iter::once(None)
        .chain(postgres.as_deref().map(Some))
        .collect()
}

/// One trial; returns whether the process was really killed (the kill point was reached).
async fn trial(seed: u64, postgres: Option<&str>) -> bool {
    let server = refserver::start(Default::default()).await.unwrap();
    let fields = [("title", FieldType::String), ("views", FieldType::Integer)];
    cli::demo::create_collection(&server, "articles", &fields)
        .await
        .unwrap();
    let seeded = server
        .state()
        .insert(
            "articles",
            (0..20)
                .map(|i| row(json!({"title": format!("s{i}"), "views": i})))
                .collect(),
        )
        .unwrap();
    let keys: Vec<String> = seeded
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    let mut expected: BTreeMap<String, String> = seeded
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap().to_owned(),
                r["title"].as_str().unwrap().to_owned(),
            )
        })
        .collect();

    let proxy = FaultProxy::start(&server.url(), seed, 0.0).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("deltasync.yaml");
    std::fs::write(
        &config,
        format!(
            "remote:\n  url: {}\n  token: {}\n  max_retries: 0\nlocal:\n  database: {}\n\
             collections:\n  articles:\n    page_size: 5\n    fields: {{title: string, views: integer}}\n",
            proxy.url(),
            server.admin_token(),
            database(&dir, postgres).await
        ),
    )
    .unwrap();
    let (code, text) = cli(&config, &["sync"]).await;
    assert_eq!(code, Some(0), "seed {seed}: initial sync: {text}");

    // Local changes on rows 0..8, server changes on rows 10..14: no conflicts.
    {
        let local = deltasync::open_file(&config).await.unwrap();
        let articles = local.collection("articles").unwrap();
        for i in 0..3 {
            let title = format!("new{i}");
            let key = articles
                .insert(row(json!({"title": title, "views": 100 + i})))
                .await
                .unwrap();
            expected.insert(key.to_string(), title);
        }
        for key in &keys[0..4] {
            assert!(
                articles
                    .update(key, row(json!({"title": "edited"})))
                    .await
                    .unwrap()
            );
            expected.insert(key.clone(), "edited".into());
        }
        for key in &keys[5..8] {
            assert!(articles.delete(key).await.unwrap());
            expected.remove(key);
        }
    }
    for key in &keys[10..14] {
        server
            .state()
            .update("articles", key, row(json!({"title": "server"})))
            .unwrap();
        expected.insert(key.clone(), "server".into());
    }
    server
        .state()
        .delete("articles", &[keys[15].as_str()])
        .unwrap();
    expected.remove(&keys[15]);

    // The crash: SIGKILL at request k, before it is forwarded or after the server answered.
    let k = 1 + (seed / 2 % 18) as usize;
    let moment = if seed.is_multiple_of(2) {
        Moment::BeforeForward
    } else {
        Moment::AfterAnswer
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_deltasync"))
        .arg("-c")
        .arg(&config)
        .arg("sync")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id().to_string();
    let killed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = killed.clone();
    proxy.on_request(k, moment, move || {
        flag.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = Command::new("kill")
            .args(["-9", &pid])
            .stderr(std::process::Stdio::null())
            .status();
    });
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    // A run that ended before request k must not leave the hook for the next process.
    proxy.disarm();
    let killed = killed.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(status.success(), !killed, "seed {seed}: {status:?}");

    // A clean sync finishes the work; a second one finds nothing left.
    let (code, text) = cli(&config, &["sync", "--json"]).await;
    assert_eq!(code, Some(0), "seed {seed} (k {k}, {moment:?}): {text}");
    let (code, text) = cli(&config, &["sync", "--json"]).await;
    assert_eq!(code, Some(0), "seed {seed}: {text}");
    let report: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        report["collections"][0]["pushed"], 0,
        "seed {seed}: {report}"
    );

    let on_server: BTreeMap<String, String> = server
        .state()
        .rows("articles")
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap().to_owned(),
                r["title"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        on_server, expected,
        "seed {seed} (k {k}, {moment:?}): nothing lost, nothing duplicated"
    );
    let (code, text) = cli(&config, &["verify"]).await;
    assert_eq!(
        code,
        Some(0),
        "seed {seed}: local rows match the server: {text}"
    );
    killed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_killed_at_any_request_loses_and_duplicates_nothing() {
    let postgres = postgres();
    for backend in backends(&postgres) {
        let mut kills = 0;
        for seed in 0..TRIALS {
            kills += usize::from(trial(seed, backend).await);
        }
        println!(
            "{}: {TRIALS} trials, {kills} killed mid-sync",
            backend.map_or("sqlite", |_| "postgres")
        );
        assert!(kills > TRIALS as usize / 2, "most kill points are reached");
    }
}

/// The rows of the local `articles` table, read on a connection of its own; `None` while the
/// database or the table does not exist yet.
async fn local_rows(url: &str) -> Option<i64> {
    let db = Database::connect(url).await.ok()?;
    let row = db
        .query_one_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            "SELECT COUNT(*) AS n FROM articles",
        ))
        .await
        .ok()??;
    row.try_get::<i64>("", "n").ok()
}

/// A pull writes its pages into a transaction that commits after a second. The server stalls
/// mid-pull: the pages written before commit once the second is up, though the next page has
/// not come. Once released, a few more pages go into a new transaction, and the process is
/// killed before that one commits. Its pages are rolled back, the committed ones stay, and a
/// clean sync reads again exactly the pages that did not commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_killed_inside_its_transaction_keeps_what_committed_and_reads_the_rest_again() {
    let postgres = postgres();
    for backend in backends(&postgres) {
        let label = backend.map_or("sqlite", |_| "postgres");
        let server = refserver::start(Default::default()).await.unwrap();
        let fields = [("title", FieldType::String)];
        cli::demo::create_collection(&server, "articles", &fields)
            .await
            .unwrap();
        let rows = (0..300)
            .map(|i| row(json!({"title": format!("s{i}")})))
            .collect();
        server.state().insert("articles", rows).unwrap();
        let proxy = std::sync::Arc::new(FaultProxy::start(&server.url(), 1, 0.0).await);
        let dir = tempfile::tempdir().unwrap();
        let url = database(&dir, backend).await;
        let config = dir.path().join("deltasync.yaml");
        std::fs::write(
            &config,
            format!(
                "remote:\n  url: {}\n  token: {}\n  max_retries: 0\nlocal:\n  database: {url}\n\
                 collections:\n  articles:\n    page_size: 10\n    fields: {{title: string}}\n",
                proxy.url(),
                server.admin_token(),
            ),
        )
        .unwrap();

        // The eighth request, a page past the first few, stalls until released.
        let stalling = std::sync::Arc::downgrade(&proxy);
        proxy.on_request(8, Moment::BeforeForward, move || {
            stalling.upgrade().unwrap().set_stalled(true);
        });
        let mut child = Command::new(env!("CARGO_BIN_EXE_deltasync"))
            .arg("-c")
            .arg(&config)
            .arg("sync")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let started = std::time::Instant::now();
        let committed = loop {
            if let Some(n @ 1..) = local_rows(&url).await {
                break n;
            }
            assert!(
                started.elapsed() < std::time::Duration::from_secs(30),
                "{label}: the pages before the stall never committed"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        };
        assert!(committed < 300, "{label}: not all committed: {committed}");

        // Released, the pull goes on for three more pages; the fourth request kills it.
        let pid = child.id().to_string();
        proxy.on_request(4, Moment::BeforeForward, move || {
            let _ = Command::new("kill")
                .args(["-9", &pid])
                .stderr(std::process::Stdio::null())
                .status();
        });
        proxy.set_stalled(false);
        let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
            .await
            .unwrap();
        assert!(!status.success(), "{label}: killed: {status:?}");
        assert_eq!(
            local_rows(&url).await,
            Some(committed),
            "{label}: the pages after the commit were rolled back"
        );

        let (code, text) = cli(&config, &["sync", "--json"]).await;
        assert_eq!(code, Some(0), "{label}: {text}");
        let report: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            report["collections"][0]["pulled"],
            json!(300 - committed),
            "{label}: what did not commit is read again, nothing more: {report}"
        );
        assert_eq!(local_rows(&url).await, Some(300), "{label}");
        let (code, text) = cli(&config, &["verify"]).await;
        assert_eq!(
            code,
            Some(0),
            "{label}: local rows match the server: {text}"
        );
    }
}
