//! The `deltasync` binary: exit codes, error messages, secrets kept out of output.

use assert_cmd::Command;

fn deltasync() -> Command {
    Command::new(env!("CARGO_BIN_EXE_deltasync"))
}

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn a_bad_config_exits_2_naming_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        &dir,
        "bad.yaml",
        "remote:\n  url: http://127.0.0.1:9\n  token: t\ncollections:\n  a:\n    conflict: lww\n    fields: {x: string}\n",
    );
    let out = deltasync()
        .args(["-c", path.to_str().unwrap(), "validate"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.yaml:6:") && err.contains("collections.a.conflict"),
        "{err}"
    );
    assert!(
        err.contains("last_write_wins"),
        "says what is allowed: {err}"
    );
}

#[test]
fn an_unreachable_server_exits_1_without_leaking_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("local.db");
    let path = write(
        &dir,
        "deltasync.yaml",
        &format!(
            "remote:\n  url: http://127.0.0.1:9\n  token: super-secret-token\n  max_retries: 0\nlocal:\n  database: sqlite://{}\ncollections:\n  a:\n    fields: {{x: string}}\n",
            db.display()
        ),
    );
    let out = deltasync()
        .args(["-c", path.to_str().unwrap(), "-vv", "sync", "--json"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!all.contains("super-secret-token"), "{all}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report["collections"][0]["error"].is_string(), "{report}");
}

#[test]
fn schema_prints_the_json_schema() {
    let out = deltasync().arg("schema").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let schema: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(schema.to_string().contains("collections"));
}

#[test]
fn the_demo_converges() {
    let out = deltasync().arg("demo").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("replicas converged: true"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_remote_names_what_the_server_lacks() {
    use deltasync::FieldType;
    let server = refserver::start(Default::default()).await.unwrap();
    cli::demo::create_collection(
        &server,
        "articles",
        &[("title", FieldType::String), ("views", FieldType::Integer)],
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = |collections: &str| {
        format!(
            "remote:\n  url: {}\n  token: {}\nlocal:\n  database: sqlite://{}\ncollections:\n{collections}",
            server.url(),
            server.admin_token(),
            dir.path().join("local.db").display()
        )
    };
    let good = write(
        &dir,
        "good.yaml",
        &config("  articles:\n    fields: {title: string, views: integer}\n"),
    );
    let bad = write(
        &dir,
        "bad.yaml",
        &config(
            "  articles:\n    fields: {title: string, views: boolean, body: text}\n  \
             missing:\n    fields: {x: string}\n",
        ),
    );
    let run = |path: std::path::PathBuf| {
        tokio::task::spawn_blocking(move || {
            deltasync()
                .args(["-c", path.to_str().unwrap(), "validate", "--remote"])
                .output()
                .unwrap()
        })
    };

    let out = run(good).await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");

    let out = run(bad).await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{text}");
    for expected in [
        "articles.views: configured as boolean, but the server type is integer",
        "articles.body: field missing on the server",
        "missing: collection missing",
        "3 problem(s)",
    ] {
        assert!(text.contains(expected), "{expected:?} not in:\n{text}");
    }
    assert!(!text.contains(server.admin_token()), "{text}");
}

/// Runs the binary with `args` off the async runtime, which serves the reference server.
async fn run_cli(args: Vec<String>) -> (Option<i32>, serde_json::Value, String) {
    let out = tokio::task::spawn_blocking(move || deltasync().args(&args).output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let json = serde_json::from_str(&stdout).unwrap_or(serde_json::Value::Null);
    let log = format!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    (out.status.code(), json, log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manual_conflict_goes_from_sync_to_status_to_resolve() {
    use deltasync::FieldType;
    let server = refserver::start(Default::default()).await.unwrap();
    cli::demo::create_collection(&server, "articles", &[("title", FieldType::String)])
        .await
        .unwrap();
    let seeded = server
        .state()
        .insert(
            "articles",
            vec![
                serde_json::json!({"title": "draft"})
                    .as_object()
                    .unwrap()
                    .clone(),
            ],
        )
        .unwrap();
    let key = seeded[0]["id"].as_str().unwrap().to_owned();
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        &dir,
        "deltasync.yaml",
        &format!(
            "remote:\n  url: {}\n  token: {}\nlocal:\n  database: sqlite://{}\n\
             collections:\n  articles:\n    conflict: manual\n    fields: {{title: string}}\n",
            server.url(),
            server.admin_token(),
            dir.path().join("local.db").display()
        ),
    );
    let cli = |args: &[&str]| {
        let mut all = vec!["-c".to_owned(), path.to_str().unwrap().to_owned()];
        all.extend(args.iter().map(|a| a.to_string()));
        run_cli(all)
    };

    let (code, _, log) = cli(&["sync"]).await;
    assert_eq!(code, Some(0), "{log}");
    // Both sides change the row while apart.
    {
        let local = deltasync::open_file(&path).await.unwrap();
        let patch = serde_json::json!({"title": "local"});
        local
            .collection("articles")
            .unwrap()
            .update(&key, patch.as_object().unwrap().clone())
            .await
            .unwrap();
    }
    let patch = serde_json::json!({"title": "remote"});
    server
        .state()
        .update("articles", &key, patch.as_object().unwrap().clone())
        .unwrap();

    let (code, report, log) = cli(&["sync", "--json"]).await;
    assert_eq!(code, Some(3), "{log}");
    assert_eq!(report["collections"][0]["parked"], 1, "{report}");
    let (code, status, log) = cli(&["status", "--json"]).await;
    assert_eq!(code, Some(3), "{log}");
    assert_eq!(status["collections"][0]["conflicts"], 1, "{status}");
    let (code, list, log) = cli(&["conflicts", "list", "--json"]).await;
    assert_eq!(code, Some(0), "{log}");
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    let id = list[0]["id"].to_string();
    let (_, shown, _) = cli(&["conflicts", "show", &id, "--json"]).await;
    assert_eq!(shown["local"]["title"], "local", "{shown}");
    assert_eq!(shown["remote"]["title"], "remote", "{shown}");
    assert_eq!(shown["base"]["title"], "draft", "{shown}");

    let (code, _, log) = cli(&["conflicts", "resolve", &id, "--take", "local"]).await;
    assert_eq!(code, Some(0), "{log}");
    let (code, _, log) = cli(&["sync"]).await;
    assert_eq!(code, Some(0), "{log}");
    assert_eq!(
        server.state().get("articles", &key).unwrap()["title"],
        "local"
    );
    let (code, _, log) = cli(&["conflicts", "show", "999"]).await;
    assert_eq!(code, Some(2), "{log}");
    assert!(log.contains("no conflict with id 999"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_syncs_started_together_on_one_sqlite_file_all_succeed_and_push_once() {
    use deltasync::FieldType;
    let server = refserver::start(Default::default()).await.unwrap();
    cli::demo::create_collection(&server, "articles", &[("title", FieldType::String)])
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        &dir,
        "deltasync.yaml",
        &format!(
            "remote:\n  url: {}\n  token: {}\nlocal:\n  database: sqlite://{}\n\
             collections:\n  articles:\n    fields: {{title: string}}\n",
            server.url(),
            server.admin_token(),
            dir.path().join("local.db").display()
        ),
    );
    {
        let local = deltasync::open_file(&path).await.unwrap();
        let articles = local.collection("articles").unwrap();
        for i in 0..20 {
            let data = serde_json::json!({"title": format!("offline {i}")});
            articles
                .insert(data.as_object().unwrap().clone())
                .await
                .unwrap();
        }
    }
    let sync = || {
        let args = ["-c", path.to_str().unwrap(), "sync", "--json"];
        run_cli(args.iter().map(|a| a.to_string()).collect())
    };
    let (a, b, c) = tokio::join!(sync(), sync(), sync());
    let mut pushed = 0;
    for (code, json, log) in [a, b, c] {
        assert_eq!(code, Some(0), "{log}");
        assert!(!log.contains("locked"), "{log}");
        pushed += json["collections"][0]["pushed"].as_u64().unwrap();
    }
    assert_eq!(pushed, 20, "each change pushed by one of them");
    assert_eq!(server.state().count("articles"), 20);
}
