//! End-to-end benchmarks of `deltasync sync` on seeded fixtures.
//!
//! ```text
//! e2e initial  [--rows N] [--db sqlite|postgres]   initial sync, and a bare insert of the same rows
//! e2e delta    [--rows N] [--changes N] [--db ..]  delta sync of N changed rows, then a no-op sync
//! e2e push     [--rows N] [--changes N] [--db ..] [--updates distinct|alike]
//!                                                  push of N local changes (creates, updates, deletes)
//! e2e directus [--rows N] [--page-size N]          initial sync from a real Directus vs a plain page fetch
//! e2e bare     [--rows N] [--db ..]                 the bare insert under each setting of the sweep
//! ```
//!
//! `--page-size` sets the pull's rows per page (default 2,500) in every scenario.
//!
//! Each sync runs in a child process (this binary, re-executed), so that its wall time and
//! peak RSS are its own; the reference server runs in this process and counts the requests.
//! Results go to stdout as one JSON object per line; with `RUST_LOG` set (say
//! `RUST_LOG=engine=info`), each sync logs its phases and their durations to stderr. PostgreSQL comes from
//! `DELTASYNC_BENCH_PG` or `DELTASYNC_TEST_PG`; Directus from `DELTASYNC_TEST_DIRECTUS` and
//! `DELTASYNC_TEST_DIRECTUS_TOKEN`.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use benches::{
    BareInsert, Changes, Fixture, admin_client, collections, collections_named, load_directus,
    load_reference,
};
use deltasync::{Config, Row};
use serde_json::{Value, json};

const SEED: u64 = 42;

/// The child's own arguments: `__sync URL DATABASE SUFFIX` and
/// `__bare DATABASE ROWS TXN CACHE STATEMENT SHAPE` (see `BareInsert::to_args`).
const CHILD_SYNC: &str = "__sync";
const CHILD_BARE: &str = "__bare";
const TOKEN_VAR: &str = "DELTASYNC_BENCH_TOKEN";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let outcome = match args.first().map(String::as_str) {
        Some(CHILD_SYNC) => runtime.block_on(child_sync(&args[1..])),
        Some(CHILD_BARE) => runtime.block_on(child_bare(&args[1..])),
        Some(scenario) => match Options::parse(&args[1..]) {
            Ok(options) => runtime.block_on(async {
                let outcome = run(scenario, options).await;
                drop_created().await;
                outcome
            }),
            Err(e) => Err(e),
        },
        None => Err(USAGE.to_owned()),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("e2e: {e}");
            ExitCode::from(2)
        }
    }
}

const USAGE: &str = "usage: e2e initial|delta|push|directus|bare [--rows N] [--changes N] \
                     [--db sqlite|postgres] [--updates distinct|alike] [--page-size N]";

#[derive(Debug, Clone)]
struct Options {
    rows: usize,
    changes: usize,
    postgres: bool,
    /// Whether the pushed updates all change the same field to the same value.
    alike: bool,
    /// Rows per page of the pull.
    page_size: u32,
}

impl Options {
    fn parse(args: &[String]) -> Result<Options, String> {
        let mut o = Options {
            rows: 100_000,
            changes: 1_000,
            postgres: false,
            alike: false,
            page_size: schema::DEFAULT_PAGE_SIZE,
        };
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let value = it
                .next()
                .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
            let number = || {
                value
                    .replace('_', "")
                    .parse::<usize>()
                    .map_err(|e| format!("{flag}: {e}"))
            };
            match flag.as_str() {
                "--rows" => o.rows = number()?,
                "--changes" => o.changes = number()?,
                "--page-size" => {
                    o.page_size = u32::try_from(number()?).map_err(|e| format!("{flag}: {e}"))?
                }
                "--db" => {
                    o.postgres = match value.as_str() {
                        "sqlite" => false,
                        "postgres" => true,
                        other => return Err(format!("--db: {other} is not sqlite or postgres")),
                    }
                }
                "--updates" => {
                    o.alike = match value.as_str() {
                        "distinct" => false,
                        "alike" => true,
                        other => {
                            return Err(format!("--updates: {other} is not distinct or alike"));
                        }
                    }
                }
                other => return Err(format!("unknown option {other}\n{USAGE}")),
            }
        }
        Ok(o)
    }
}

async fn run(scenario: &str, o: Options) -> Result<(), String> {
    match scenario {
        "initial" => initial(&o).await,
        "delta" => delta(&o).await,
        "push" => push(&o).await,
        "directus" => directus(&o).await,
        "bare" => bare(&o).await,
        other => Err(format!("unknown scenario {other}\n{USAGE}")),
    }
}

// ----- scenarios -----

async fn initial(o: &Options) -> Result<(), String> {
    let bench = Bench::start(o).await?;
    let (ready, set_up) = tokio::sync::oneshot::channel();
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let writer = tokio::spawn(benches::app_writes(
        bench.database.clone(),
        Duration::from_millis(20),
        ready,
        stopped,
    ));
    if set_up.await.is_err() {
        // The writer failed before it was ready: its error says why.
        let failed = writer.await.map_err(|e| e.to_string())?;
        return Err(failed
            .err()
            .map_or_else(|| "the writer stopped".to_owned(), |e| e.to_string()));
    }
    let sync = bench.sync().await?;
    let _ = stop.send(());
    let app = writer
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let rows = bench.fixture.posts + bench.fixture.authors();
    let bare = bench.bare().await?;
    let (url, token) = (bench.server.url(), bench.server.admin_token());
    let reads = recorded_reads(&url, token, "", o.page_size).await?;
    let fetch = plain_fetch(&url, token, &reads).await?;
    emit(json!({
        "scenario": "initial",
        "db": bench.db_label(),
        "rows": rows,
        "wall_s": secs(sync.wall),
        "rows_per_s": per_s(rows, sync.wall),
        "requests": sync.requests,
        "requests_per_1000_rows": sync.requests as f64 * 1000.0 / rows as f64,
        "peak_rss_mb": mb(sync.peak_rss_kb),
        "bare_insert_rows_per_s": per_s(bench.fixture.posts, bare),
        "ratio_to_bare_insert": (rows as f64 / sync.wall.as_secs_f64())
            / (bench.fixture.posts as f64 / bare.as_secs_f64()),
        "plain_fetch_s": secs(fetch),
        "app_writes": app.writes,
        "app_write_longest_ms": app.longest.as_secs_f64() * 1000.0,
    }));
    Ok(())
}

/// The bare insert under every setting of the sweep, each into a fresh database.
async fn bare(o: &Options) -> Result<(), String> {
    let sweep = if o.postgres {
        BareInsert::sweep_postgres()
    } else {
        BareInsert::sweep()
    };
    for settings in sweep {
        let took = bare_in_child(o.postgres, o.rows, settings).await?;
        let mut result = json!({
            "scenario": "bare",
            "db": if o.postgres { "postgres" } else { "sqlite" },
            "rows": o.rows,
            "rows_per_s": per_s(o.rows, took),
        });
        if let (Some(line), Value::Object(knobs)) = (result.as_object_mut(), settings.describe()) {
            line.extend(knobs);
        }
        emit(result);
    }
    Ok(())
}

async fn delta(o: &Options) -> Result<(), String> {
    let bench = Bench::start(o).await?;
    bench.sync().await?;
    let changes = Changes::spread(&bench.fixture, o.changes);
    bench.update_on_server(&changes.updated).await?;
    let delta = bench.sync().await?;
    let noop = bench.sync().await?;
    emit(json!({
        "scenario": "delta",
        "db": bench.db_label(),
        "rows": bench.fixture.posts,
        "changed": changes.updated.len(),
        "wall_s": secs(delta.wall),
        "requests": delta.requests,
        "peak_rss_mb": mb(delta.peak_rss_kb),
        "noop_wall_s": secs(noop.wall),
        "noop_requests": noop.requests,
        "noop_requests_per_collection": noop.requests as f64 / collections().len() as f64,
    }));
    Ok(())
}

async fn push(o: &Options) -> Result<(), String> {
    let bench = Bench::start(o).await?;
    bench.sync().await?;
    let made = bench.change_locally(o.changes, o.alike).await?;
    let push = bench.sync().await?;
    emit(json!({
        "scenario": "push",
        "db": bench.db_label(),
        "rows": bench.fixture.posts,
        "changes": made,
        "updates": if o.alike { "alike" } else { "distinct" },
        "wall_s": secs(push.wall),
        "rows_per_s": per_s(made, push.wall),
        "requests": push.requests,
        "requests_per_row": push.requests as f64 / made as f64,
        "peak_rss_mb": mb(push.peak_rss_kb),
    }));
    Ok(())
}

async fn directus(o: &Options) -> Result<(), String> {
    let url = std::env::var("DELTASYNC_TEST_DIRECTUS").map_err(|_| {
        "set DELTASYNC_TEST_DIRECTUS and DELTASYNC_TEST_DIRECTUS_TOKEN (scripts/directus env)"
            .to_owned()
    })?;
    let token = std::env::var("DELTASYNC_TEST_DIRECTUS_TOKEN")
        .map_err(|_| "DELTASYNC_TEST_DIRECTUS_TOKEN is not set".to_owned())?;
    let fixture = Fixture::new(SEED, o.rows);
    let suffix = format!("_{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    load_directus(&url, &token, &fixture, &suffix)
        .await
        .map_err(|e| e.to_string())?;
    let outcome = async {
        let dir = tempdir()?;
        let database = sqlite_url(&dir);
        let sync = sync_child(&url, &token, &database, &suffix, o.page_size).await?;
        let reads = recorded_reads(&url, &token, &suffix, o.page_size).await?;
        let fetch = plain_fetch(&url, &token, &reads).await?;
        let rows = fixture.posts + fixture.authors();
        emit(json!({
            "scenario": "directus",
            "db": "sqlite",
            "rows": rows,
            "wall_s": secs(sync.wall),
            "rows_per_s": per_s(rows, sync.wall),
            "plain_fetch_s": secs(fetch),
            "ratio_to_plain_fetch": sync.wall.as_secs_f64() / fetch.as_secs_f64(),
            "peak_rss_mb": mb(sync.peak_rss_kb),
        }));
        Ok::<(), String>(())
    }
    .await;
    let client = admin_client(&url, &token).map_err(|e| e.to_string())?;
    for c in collections_named(&suffix) {
        let _ = client
            .request(
                adapters::directus::Method::DELETE,
                &format!("/collections/{}", c.name),
                &[],
                None,
                None,
            )
            .await;
    }
    outcome
}

/// The GET requests an initial sync sends, recorded by a proxy in front of `url` during a
/// sync into a fresh database.
async fn recorded_reads(
    url: &str,
    token: &str,
    suffix: &str,
    page_size: u32,
) -> Result<Vec<String>, String> {
    let proxy = refserver::proxy::FaultProxy::start(url, 0, 0.0).await;
    let dir = tempdir()?;
    sync_child(&proxy.url(), token, &sqlite_url(&dir), suffix, page_size).await?;
    Ok(proxy
        .log()
        .into_iter()
        .filter_map(|(request, _)| request.strip_prefix("GET ").map(str::to_owned))
        .filter(|path| path.starts_with("/items/"))
        .collect())
}

/// Sends `reads` one after the other with a plain HTTP client, reading each body whole:
/// what fetching the same pages costs without deltasync.
async fn plain_fetch(url: &str, token: &str, reads: &[String]) -> Result<Duration, String> {
    let http = reqwest::Client::new();
    let started = Instant::now();
    for path in reads {
        http.get(format!("{url}{path}"))
            .bearer_auth(token)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| e.to_string())?
            .bytes()
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(started.elapsed())
}

// ----- the bench world -----

/// A reference server loaded with a fixture, and a local database for the replica.
struct Bench {
    server: refserver::ServerHandle,
    fixture: Fixture,
    database: String,
    postgres: bool,
    page_size: u32,
    _dir: TempDir,
}

impl Bench {
    async fn start(o: &Options) -> Result<Bench, String> {
        let server = refserver::start(refserver::Options::default())
            .await
            .map_err(|e| format!("reference server: {e}"))?;
        let fixture = Fixture::new(SEED, o.rows);
        let loading = Instant::now();
        load_reference(&server, &fixture)
            .await
            .map_err(|e| e.to_string())?;
        eprintln!(
            "loaded {} posts in {:.1} s",
            fixture.posts,
            loading.elapsed().as_secs_f64()
        );
        let dir = tempdir()?;
        let database = if o.postgres {
            fresh_postgres().await?
        } else {
            sqlite_url(&dir)
        };
        Ok(Bench {
            server,
            fixture,
            database,
            postgres: o.postgres,
            page_size: o.page_size,
            _dir: dir,
        })
    }

    fn db_label(&self) -> &'static str {
        if self.postgres { "postgres" } else { "sqlite" }
    }

    /// One `sync` in a child process; requests counted by the server.
    async fn sync(&self) -> Result<ChildRun, String> {
        self.server.state().reset_stats();
        let mut run = sync_child(
            &self.server.url(),
            self.server.admin_token(),
            &self.database,
            "",
            self.page_size,
        )
        .await?;
        run.requests = self.server.state().stats().total;
        Ok(run)
    }

    /// The same rows inserted into a fresh database of the same kind, in the engine's table
    /// shape, a transaction per page: the local limit. Returns the insert time.
    /// The bare insert of the fixture's posts, with the best settings found.
    async fn bare(&self) -> Result<Duration, String> {
        let best = if self.postgres {
            BareInsert::BEST_POSTGRES
        } else {
            BareInsert::BEST
        };
        bare_in_child(self.postgres, self.fixture.posts, best).await
    }

    /// Applies one batch update on the server: the changed rows share one stamp.
    async fn update_on_server(&self, keys: &[String]) -> Result<(), String> {
        let client = admin_client(&self.server.url(), self.server.admin_token())
            .map_err(|e| e.to_string())?;
        for chunk in keys.chunks(1000) {
            let body =
                json!({"keys": chunk, "data": {"title": "changed on the server", "views": 1}});
            client
                .request(
                    adapters::directus::Method::PATCH,
                    "/items/posts",
                    &[],
                    Some(&body),
                    None,
                )
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// `n` local changes through the library: a third creates, a third updates, a third
    /// deletes. The updates give each row a title of its own, or with `alike` all the same
    /// title. Returns how many were made.
    async fn change_locally(&self, n: usize, alike: bool) -> Result<usize, String> {
        let replica = deltasync::open(config(
            &self.server.url(),
            self.server.admin_token(),
            &self.database,
            "",
            self.page_size,
        ))
        .await
        .map_err(|e| e.to_string())?;
        let posts = replica.collection("posts").map_err(|e| e.to_string())?;
        let third = n / 3;
        let keys = self
            .fixture
            .post_keys(0..(2 * third).min(self.fixture.posts));
        let fresh = Fixture::new(SEED + 1, third);
        let author = self.fixture.author_rows()[0]["id"].clone();
        let mut made = 0;
        for mut data in fresh.post_rows(0..third) {
            data["author"] = author.clone();
            posts.insert(data).await.map_err(|e| e.to_string())?;
            made += 1;
        }
        for (i, key) in keys.iter().take(third).enumerate() {
            let title = if alike {
                "changed locally".to_owned()
            } else {
                format!("changed locally {i}")
            };
            let patch: Row = json!({"title": title, "views": 2})
                .as_object()
                .cloned()
                .unwrap_or_default();
            made += usize::from(posts.update(key, patch).await.map_err(|e| e.to_string())?);
        }
        for key in keys.iter().skip(third).take(n - 2 * third) {
            made += usize::from(posts.delete(key).await.map_err(|e| e.to_string())?);
        }
        Ok(made)
    }
}

fn config(url: &str, token: &str, database: &str, suffix: &str, page_size: u32) -> Config {
    let mut collections = collections_named(suffix);
    for c in &mut collections {
        c.page_size = page_size;
    }
    Config::new(url, token, database, collections)
}

async fn sync_child(
    url: &str,
    token: &str,
    database: &str,
    suffix: &str,
    page_size: u32,
) -> Result<ChildRun, String> {
    let page_size = page_size.to_string();
    let out = child(&[CHILD_SYNC, url, database, suffix, &page_size], token).await?;
    let report: Value = serde_json::from_str(out.stdout.trim())
        .map_err(|e| format!("sync output: {e}: {}", out.stdout))?;
    if report["failed"] == json!(true) {
        return Err(format!("the sync failed: {report}"));
    }
    Ok(ChildRun {
        wall: out.wall,
        peak_rss_kb: report["peak_rss_kb"].as_u64().unwrap_or(0),
        // Counted by whoever owns the server.
        requests: 0,
    })
}

// ----- child processes -----

/// The child side of [`sync_child`]: one sync, its report as JSON on stdout.
async fn child_sync(args: &[String]) -> Result<(), String> {
    let [url, database, suffix, page_size] = args else {
        return Err("__sync URL DATABASE SUFFIX PAGE_SIZE".to_owned());
    };
    let page_size: u32 = page_size.parse().map_err(|e| format!("page size: {e}"))?;
    let token = std::env::var(TOKEN_VAR).map_err(|_| format!("{TOKEN_VAR} is not set"))?;
    if let Ok(filter) = std::env::var("RUST_LOG") {
        // The sync's spans and phase timings, for finding where a run spends its time.
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    }
    let replica = deltasync::open(config(url, &token, database, suffix, page_size))
        .await
        .map_err(|e| e.to_string())?;
    let report = replica.sync(None).await.map_err(|e| e.to_string())?;
    let peak_rss_kb = benches::measure::peak_rss_kb();
    println!(
        "{}",
        json!({"failed": report.failed(), "peak_rss_kb": peak_rss_kb})
    );
    Ok(())
}

/// Runs the bare insert of `rows` fixture posts in a child, into a fresh database.
async fn bare_in_child(
    postgres: bool,
    rows: usize,
    settings: BareInsert,
) -> Result<Duration, String> {
    let dir = tempdir()?;
    let database = if postgres {
        fresh_postgres().await?
    } else {
        sqlite_url(&dir)
    };
    let [txn, cache, statement, shape] = settings.to_args();
    let rows = rows.to_string();
    let out = child(
        &[
            CHILD_BARE, &database, &rows, &txn, &cache, &statement, &shape,
        ],
        "",
    )
    .await?;
    let ms: f64 = out
        .stdout
        .trim()
        .parse()
        .map_err(|e| format!("bare insert output: {e}"))?;
    Ok(Duration::from_secs_f64(ms / 1000.0))
}

/// The child side of [`bare_in_child`]: prints the milliseconds the inserts took.
async fn child_bare(args: &[String]) -> Result<(), String> {
    let [database, rows, settings @ ..] = args else {
        return Err("__bare DATABASE ROWS TXN CACHE STATEMENT SHAPE".to_owned());
    };
    let rows: usize = rows.parse().map_err(|e| format!("{e}"))?;
    let settings = BareInsert::from_args(settings)?;
    let fixture = Fixture::new(SEED, rows);
    let took = benches::bare_insert(database, &fixture, settings)
        .await
        .map_err(|e| e.to_string())?;
    println!("{}", took.as_secs_f64() * 1000.0);
    Ok(())
}

struct ChildRun {
    wall: Duration,
    peak_rss_kb: u64,
    requests: u64,
}

/// Runs this binary with `args`, measuring its wall time.
async fn child(args: &[&str], token: &str) -> Result<benches::measure::Measured, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let token = token.to_owned();
    tokio::task::spawn_blocking(move || benches::measure::run(&exe, &args, &[(TOKEN_VAR, &token)]))
        .await
        .map_err(|e| e.to_string())?
}

// ----- helpers -----

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tempdir() -> Result<TempDir, String> {
    let path =
        std::env::temp_dir().join(format!("deltasync-bench-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(TempDir(path))
}

fn sqlite_url(dir: &TempDir) -> String {
    format!("sqlite://{}", dir.0.join("replica.db").display())
}

/// The databases this run created, dropped when it ends.
static CREATED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

fn postgres_admin() -> Result<String, String> {
    std::env::var("DELTASYNC_BENCH_PG")
        .or_else(|_| std::env::var("DELTASYNC_TEST_PG"))
        .map_err(|_| "set DELTASYNC_BENCH_PG to a PostgreSQL URL (e.g. postgres://postgres@127.0.0.1:5432/test)".to_owned())
}

async fn fresh_postgres() -> Result<String, String> {
    let url = benches::fresh_postgres_database(&postgres_admin()?)
        .await
        .map_err(|e| e.to_string())?;
    CREATED.lock().expect("not poisoned").push(url.clone());
    Ok(url)
}

/// Drops the databases this run created; a failure is only reported.
async fn drop_created() {
    let created = std::mem::take(&mut *CREATED.lock().expect("not poisoned"));
    let Ok(admin) = postgres_admin() else { return };
    for url in created {
        if let Err(e) = benches::drop_postgres_database(&admin, &url).await {
            eprintln!("e2e: could not drop a benchmark database: {e}");
        }
    }
}

fn emit(result: Value) {
    println!("{result}");
}

fn secs(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

fn per_s(rows: usize, d: Duration) -> f64 {
    (rows as f64 / d.as_secs_f64()).round()
}

fn mb(kb: u64) -> f64 {
    (kb as f64 / 1024.0 * 10.0).round() / 10.0
}
