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
    let server = deltasync::refserver::start(Default::default())
        .await
        .unwrap();
    deltasync::demo::create_collection(
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
