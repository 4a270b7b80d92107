//! `deltasync run` as a service manager runs it: it syncs, serves metrics, health and
//! readiness, logs a line per cycle, and on SIGTERM stops within 10 s with exit 0, losing
//! nothing even in the middle of a pull.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use deltasync::FieldType;
use refserver::proxy::{FaultProxy, Moment};
use serde_json::{Value, json};

fn row(value: Value) -> deltasync::Row {
    value.as_object().cloned().expect("an object")
}

/// A loopback address nobody listens on right now.
fn free_addr() -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// Waits, up to `within`, for `url` to answer 200; returns the body.
async fn until_ok(url: &str, within: Duration) -> String {
    let started = Instant::now();
    loop {
        if let Ok(answer) = reqwest::get(url).await
            && answer.status().is_success()
        {
            return answer.text().await.unwrap();
        }
        assert!(
            started.elapsed() < within,
            "{url} did not answer 200 within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn terminate(pid: u32) {
    // Never `kill 0`: that is the whole process group.
    assert_ne!(pid, 0, "no process to stop");
    Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
}

/// Waits for `child` to exit; returns its exit code, stdout and how long it took.
async fn exited(child: std::process::Child) -> (Option<i32>, String, Duration) {
    let started = Instant::now();
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text, started.elapsed())
}

/// Starts `deltasync -c CONFIG args…` with its output piped.
fn spawn(config: &std::path::Path, args: &[&str]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_deltasync"))
        .arg("-c")
        .arg(config)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn schema_file(
    dir: &tempfile::TempDir,
    url: &str,
    token: &str,
    page_size: u32,
) -> std::path::PathBuf {
    let path = dir.path().join("deltasync.yaml");
    std::fs::write(
        &path,
        format!(
            "remote:\n  url: {url}\n  token: {token}\nlocal:\n  database: sqlite://{}\n\
             collections:\n  articles:\n    page_size: {page_size}\n    fields: {{title: string}}\n",
            dir.path().join("local.db").display()
        ),
    )
    .unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_serves_metrics_health_and_readiness_and_stops_on_sigterm() {
    let server = refserver::start(Default::default()).await.unwrap();
    cli::demo::create_collection(&server, "articles", &[("title", FieldType::String)])
        .await
        .unwrap();
    let rows = (0..7)
        .map(|i| row(json!({"title": format!("s{i}")})))
        .collect();
    server.state().insert("articles", rows).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = schema_file(&dir, &server.url(), server.admin_token(), 100);
    let addr = free_addr();
    let child = spawn(
        &config,
        &["run", "--interval", "3600", "--metrics", &addr.to_string()],
    );
    let pid = child.id();

    until_ok(&format!("http://{addr}/healthz"), Duration::from_secs(30)).await;
    until_ok(&format!("http://{addr}/readyz"), Duration::from_secs(30)).await;
    let metrics = until_ok(&format!("http://{addr}/metrics"), Duration::from_secs(5)).await;
    for expected in [
        "deltasync_rows_pulled_total{collection=\"articles\"} 7",
        "deltasync_rows_pushed_total{collection=\"articles\"} 0",
        "deltasync_pending_changes{collection=\"articles\"} 0",
        "deltasync_remote_up 1",
        "deltasync_requests_total{status=\"200\"}",
        "deltasync_sync_duration_seconds_count{collection=\"articles\"}",
        "deltasync_conflicts_total{collection=\"articles\",strategy=\"last_write_wins\"} 0",
        "deltasync_last_success_timestamp_seconds{collection=\"articles\"}",
    ] {
        assert!(metrics.contains(expected), "{expected} not in:\n{metrics}");
    }
    assert!(!metrics.contains(server.admin_token()));

    terminate(pid);
    let (code, text, took) = exited(child).await;
    assert_eq!(code, Some(0), "{text}");
    assert!(took < Duration::from_secs(10), "stopped in {took:?}");
    assert!(
        text.contains("articles: pushed 0, pulled 7, deleted 0, conflicts 0, quarantined 0"),
        "one line per cycle: {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_in_the_middle_of_a_pull_loses_nothing() {
    for (site, mut dbs) in tests::pairs().await {
        let label = format!("{} on {:?}", site.label, dbs.backend);
        let c = site.collection("sigterm", &tests::FIELDS).await;
        let rows = (0..60)
            .map(|i| row(json!({"title": format!("s{i}")})))
            .collect();
        site.insert(&c.name, rows).await;
        let proxy = std::sync::Arc::new(FaultProxy::start(&site.url, 1, 0.0).await);
        let dir = tempfile::tempdir().unwrap();
        // Pages of 5: the pull takes a dozen requests. SIGTERM arrives before the eighth
        // request, past the few that start a run, and the server stops answering, so that
        // the pull outlasts the grace and is cut off.
        let config = dir.path().join("deltasync.yaml");
        std::fs::write(
            &config,
            format!(
                "remote:\n  url: {}\n  token: {}\nlocal:\n  database: {}\ncollections:\n  {}:\n    page_size: 5\n    fields: {{title: string}}\n",
                proxy.url(),
                site.admin_token(),
                dbs.fresh().await,
                c.name
            ),
        )
        .unwrap();
        let pid = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let target = pid.clone();
        let stalling = std::sync::Arc::downgrade(&proxy);
        proxy.on_request(8, Moment::BeforeForward, move || {
            stalling.upgrade().unwrap().set_stalled(true);
            terminate(target.load(std::sync::atomic::Ordering::SeqCst));
        });
        let child = spawn(&config, &["run", "--interval", "3600"]);
        pid.store(child.id(), std::sync::atomic::Ordering::SeqCst);
        let (code, text, took) = exited(child).await;
        assert_eq!(code, Some(0), "{label}: {text}");
        assert!(
            took < Duration::from_secs(10),
            "{label}: stopped in {took:?}"
        );

        // What was pulled is kept; a sync afterwards finishes the pull, with every row once.
        proxy.set_stalled(false);
        let out = Command::new(env!("CARGO_BIN_EXE_deltasync"))
            .arg("-c")
            .arg(&config)
            .args(["sync", "--json"])
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{label}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let local = deltasync::open_file(&config).await.unwrap();
        let status = local.status().await.unwrap();
        assert_eq!(status[0].rows, 60, "{label}: {status:?}");
        site.assert_converged(&local, &c.name).await;
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        let pulled = report["collections"][0]["pulled"].as_u64().unwrap();
        assert!(
            (1..60).contains(&pulled),
            "{label}: the first run's pages were kept: the sync pulled {pulled}"
        );
        site.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_stays_off_a_pipe_and_status_watch_refreshes_until_sigterm() {
    let server = refserver::start(Default::default()).await.unwrap();
    cli::demo::create_collection(&server, "articles", &[("title", FieldType::String)])
        .await
        .unwrap();
    let rows = (0..3_000)
        .map(|i| row(json!({"title": format!("s{i}")})))
        .collect();
    server.state().insert("articles", rows).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = schema_file(&dir, &server.url(), server.admin_token(), 500);

    // A long pull, but stdout is a pipe: the summary table only, no bar.
    let child = spawn(&config, &["sync"]);
    let (code, text, _) = exited(child).await;
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("3000"), "{text}");
    assert!(
        !text.contains("rows,") && !text.contains('\u{2591}'),
        "{text}"
    );

    // `status --watch --json`: a JSON document per line and refresh, until SIGTERM.
    let mut child = spawn(&config, &["status", "--watch", "1", "--json"]);
    let stdout = child.stdout.take().unwrap();
    let first_two = tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        std::io::BufReader::new(stdout)
            .lines()
            .take(2)
            .map(|line| line.unwrap())
            .collect::<Vec<String>>()
    })
    .await
    .unwrap();
    for line in &first_two {
        let status: Value = serde_json::from_str(line).unwrap();
        assert_eq!(status["collections"][0]["rows"], 3000, "{line}");
    }
    terminate(child.id());
    let (code, text, took) = exited(child).await;
    assert_eq!(code, Some(0), "{text}");
    assert!(took < Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collection_interval_in_the_schema_file_outruns_the_command_line_one() {
    // WebSockets off: nothing but the interval brings the server's changes.
    let server = refserver::start(refserver::Options {
        websockets: false,
        ..Default::default()
    })
    .await
    .unwrap();
    cli::demo::create_collection(&server, "articles", &[("title", FieldType::String)])
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("deltasync.yaml");
    std::fs::write(
        &config,
        format!(
            "remote:\n  url: {}\n  token: {}\nlocal:\n  database: sqlite://{}\n\
             collections:\n  articles:\n    interval_seconds: 1\n    fields: {{title: string}}\n",
            server.url(),
            server.admin_token(),
            dir.path().join("local.db").display()
        ),
    )
    .unwrap();
    let mut child = spawn(&config, &["run", "--interval", "3600"]);
    let stdout = child.stdout.take().unwrap();
    let (first_cycle, first_seen) = tokio::sync::oneshot::channel();
    let pulled = tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        let mut first_cycle = Some(first_cycle);
        for line in std::io::BufReader::new(stdout).lines() {
            let line = line.unwrap();
            if line.contains("articles: pushed") {
                first_cycle.take().map(|seen| seen.send(()));
            }
            if line.contains("pulled 1,") {
                return true;
            }
        }
        false
    });
    first_seen.await.unwrap();
    server
        .state()
        .insert("articles", vec![row(json!({"title": "later"}))])
        .unwrap();
    let pulled = tokio::time::timeout(Duration::from_secs(30), pulled).await;
    terminate(child.id());
    let (code, text, _) = exited(child).await;
    assert!(
        matches!(pulled, Ok(Ok(true))),
        "the server's row came on the 1 s interval: {text}"
    );
    assert_eq!(code, Some(0), "{text}");
}
