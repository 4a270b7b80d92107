//! Benchmarks of the sync service (`Syncer`), each printing one JSON line:
//!
//! ```text
//! cargo run --release -p benches --bin service -- latency [--edits 200] [--directus]
//! cargo run --release -p benches --bin service -- idle [--collections 10] [--seconds 30] [--directus]
//! cargo run --release -p benches --bin service -- instances [--writes 10000]
//! ```
//!
//! - `latency`: a server edit until the local row has it, and a local write through the
//!   library until the server has it, each `--edits` times, one at a time; p50 and p99.
//! - `idle`: the service over `--collections` synced collections with nothing to do: CPU time
//!   of the process and requests sent during `--seconds`.
//! - `instances`: two services on one PostgreSQL database (`DELTASYNC_BENCH_PG` or
//!   `DELTASYNC_TEST_PG`), `--writes` local inserts split between them while both run: how
//!   many creates the server received and how many rows it holds.
//!
//! Against the reference server on loopback, or with `--directus` the server of
//! `scripts/directus env` (with WebSockets on).

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use deltasync::{
    CancellationToken, CollectionConfig, Config, Deltasync, FieldType, SyncEvent, Syncer,
    SyncerHandle, SyncerOptions,
};
use serde_json::{Value, json};

#[derive(Debug)]
struct Options {
    edits: usize,
    collections: usize,
    seconds: u64,
    writes: usize,
    directus: bool,
}

fn parse(args: &[String]) -> Result<(String, Options), String> {
    let mut o = Options {
        edits: 200,
        collections: 10,
        seconds: 30,
        writes: 10_000,
        directus: false,
    };
    let mut it = args.iter();
    let scenario = it
        .next()
        .cloned()
        .ok_or("usage: service latency|idle|instances [options]")?;
    while let Some(arg) = it.next() {
        let mut number = || -> Result<u64, String> {
            it.next()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("{arg} needs a number"))
        };
        match arg.as_str() {
            "--edits" => o.edits = number()? as usize,
            "--collections" => o.collections = number()? as usize,
            "--seconds" => o.seconds = number()?,
            "--writes" => o.writes = number()? as usize,
            "--directus" => o.directus = true,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok((scenario, o))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let result = runtime.block_on(async {
        let (scenario, o) = parse(&args)?;
        match scenario.as_str() {
            "latency" => latency(&o).await,
            "idle" => idle(&o).await,
            "instances" => instances(&o).await,
            other => Err(format!("unknown scenario {other}")),
        }
    });
    match result {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("service bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A server to sync with: the reference server on loopback, or the Directus of the
/// environment; with its admin client and a way to drop what the benchmark made.
struct Server {
    url: String,
    token: String,
    admin: deltasync::DirectusClient,
    _reference: Option<refserver::ServerHandle>,
    made: Vec<String>,
}

impl Server {
    async fn start(directus: bool) -> Result<Server, String> {
        let (url, token, reference) = if directus {
            let url = std::env::var("DELTASYNC_TEST_DIRECTUS")
                .map_err(|_| "--directus needs DELTASYNC_TEST_DIRECTUS (scripts/directus env)")?;
            let token = std::env::var("DELTASYNC_TEST_DIRECTUS_TOKEN")
                .map_err(|_| "--directus needs DELTASYNC_TEST_DIRECTUS_TOKEN")?;
            (url, token, None)
        } else {
            let server = refserver::start(Default::default())
                .await
                .map_err(|e| e.to_string())?;
            (server.url(), server.admin_token().to_owned(), Some(server))
        };
        let admin = benches::admin_client(&url, &token).map_err(|e| e.to_string())?;
        Ok(Server {
            url,
            token,
            admin,
            _reference: reference,
            made: Vec::new(),
        })
    }

    async fn collection(&mut self, base: &str) -> Result<CollectionConfig, String> {
        let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
        let c = CollectionConfig::new(format!("{base}_{suffix}"))
            .with_field("title", FieldType::String);
        cli::remote_setup::create_collection(&self.admin, &c)
            .await
            .map_err(|e| format!("creating {}: {e}", c.name))?;
        self.made.push(c.name.clone());
        Ok(c)
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Value, String> {
        self.admin
            .request(method, path, query, body, None)
            .await
            .map_err(|e| format!("{path}: {e}"))
    }

    async fn drop_made(&self) {
        for name in self.made.iter().rev() {
            let _ = self
                .call(
                    reqwest::Method::DELETE,
                    &format!("/collections/{name}"),
                    &[],
                    None,
                )
                .await;
        }
    }
}

fn spawn(engine: Arc<Deltasync>) -> (SyncerHandle, CancellationToken, tokio::task::JoinHandle<()>) {
    let options = SyncerOptions {
        interval: Duration::from_secs(3600),
        ..Default::default()
    };
    let (syncer, handle) = Syncer::new(engine, options);
    let stop = CancellationToken::new();
    let task = tokio::spawn(syncer.run(stop.clone()));
    (handle, stop, task)
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

async fn until_cycle(
    events: &mut tokio::sync::broadcast::Receiver<SyncEvent>,
    wanted: impl Fn(&deltasync::CollectionReport) -> bool,
) -> Result<(), String> {
    let found = async {
        loop {
            match events.recv().await {
                Ok(SyncEvent::Cycle(r)) if wanted(&r) => return Ok(()),
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), found)
        .await
        .map_err(|_| "no cycle within 30 s".to_owned())?
}

async fn latency(o: &Options) -> Result<String, String> {
    let mut server = Server::start(o.directus).await?;
    let c = server.collection("latency").await?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let database = format!("sqlite://{}", dir.path().join("bench.db").display());
    let config = Config::new(
        server.url.clone(),
        server.token.clone(),
        database,
        vec![c.clone()],
    );
    let engine = Arc::new(deltasync::open(config).await.map_err(|e| e.to_string())?);
    let (handle, stop, task) = spawn(engine.clone());
    handle
        .status()
        .wait_for(|s| s.ready())
        .await
        .map_err(|e| e.to_string())?;
    handle.sync_now().await;
    let realtime = handle.status().borrow().realtime_off.is_none();
    let articles = engine.collection(&c.name).map_err(|e| e.to_string())?;
    let key = articles
        .insert(
            json!({"title": "start"})
                .as_object()
                .cloned()
                .unwrap_or_default(),
        )
        .await
        .map_err(|e| e.to_string())?;
    handle.sync_now().await;

    let mut down = Vec::with_capacity(o.edits);
    let mut up = Vec::with_capacity(o.edits);
    let path = format!("/items/{}/{key}", c.name);
    for i in 0..o.edits {
        let mut events = handle.events();
        let started = Instant::now();
        let body = json!({"title": format!("server {i}")});
        server
            .call(reqwest::Method::PATCH, &path, &[], Some(&body))
            .await?;
        until_cycle(&mut events, |r| r.pulled >= 1).await?;
        down.push(started.elapsed());

        let mut events = handle.events();
        let started = Instant::now();
        let patch = json!({"title": format!("local {i}")});
        articles
            .update(&key, patch.as_object().cloned().unwrap_or_default())
            .await
            .map_err(|e| e.to_string())?;
        until_cycle(&mut events, |r| r.pushed >= 1).await?;
        up.push(started.elapsed());
    }
    stop.cancel();
    let _ = task.await;
    server.drop_made().await;
    down.sort();
    up.sort();
    Ok(json!({
        "scenario": "service_latency",
        "server": if o.directus { "directus" } else { "reference" },
        "realtime": realtime,
        "edits": o.edits,
        "server_to_local_ms": {"p50": percentile(&down, 0.5), "p99": percentile(&down, 0.99)},
        "local_to_server_ms": {"p50": percentile(&up, 0.5), "p99": percentile(&up, 0.99)},
    })
    .to_string())
}

/// User and system CPU time of this process so far.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name, which is in parentheses: utime and stime are 14 and 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<u64> = rest
        .split_whitespace()
        .filter_map(|f| f.parse().ok())
        .collect();
    let ticks = fields.get(10).copied().unwrap_or(0) + fields.get(11).copied().unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

async fn idle(o: &Options) -> Result<String, String> {
    let mut server = Server::start(o.directus).await?;
    let mut collections = Vec::new();
    for _ in 0..o.collections {
        collections.push(server.collection("idle").await?);
    }
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let database = format!("sqlite://{}", dir.path().join("bench.db").display());
    let config = Config::new(
        server.url.clone(),
        server.token.clone(),
        database,
        collections,
    );
    let engine = Arc::new(deltasync::open(config).await.map_err(|e| e.to_string())?);
    let (handle, stop, task) = spawn(engine.clone());
    handle
        .status()
        .wait_for(|s| s.ready())
        .await
        .map_err(|e| e.to_string())?;
    handle.sync_now().await;
    let realtime = handle.status().borrow().realtime_off.is_none();

    let requests = |engine: &Deltasync| -> u64 {
        engine.remote().answer_counts().iter().map(|(_, n)| n).sum()
    };
    let (cpu_before, requests_before, started) = (cpu_time(), requests(&engine), Instant::now());
    tokio::time::sleep(Duration::from_secs(o.seconds)).await;
    let (cpu, wall) = (cpu_time() - cpu_before, started.elapsed());
    let sent = requests(&engine) - requests_before;
    stop.cancel();
    let _ = task.await;
    server.drop_made().await;
    Ok(json!({
        "scenario": "service_idle",
        "server": if o.directus { "directus" } else { "reference" },
        "realtime": realtime,
        "collections": o.collections,
        "seconds": wall.as_secs_f64(),
        "cpu_share_percent": 100.0 * cpu.as_secs_f64() / wall.as_secs_f64(),
        "requests": sent,
    })
    .to_string())
}

async fn instances(o: &Options) -> Result<String, String> {
    let admin = std::env::var("DELTASYNC_BENCH_PG")
        .or_else(|_| std::env::var("DELTASYNC_TEST_PG"))
        .map_err(|_| "instances needs DELTASYNC_BENCH_PG or DELTASYNC_TEST_PG")?;
    let mut server = Server::start(o.directus).await?;
    let c = server.collection("instances").await?;
    let database = benches::fresh_postgres_database(&admin)
        .await
        .map_err(|e| e.to_string())?;
    let config = Config::new(
        server.url.clone(),
        server.token.clone(),
        database.clone(),
        vec![c.clone()],
    );
    let a = Arc::new(
        deltasync::open(config.clone())
            .await
            .map_err(|e| e.to_string())?,
    );
    let b = Arc::new(deltasync::open(config).await.map_err(|e| e.to_string())?);
    let (handle_a, stop_a, task_a) = spawn(a.clone());
    let (handle_b, stop_b, task_b) = spawn(b.clone());
    let (mut events_a, mut events_b) = (handle_a.events(), handle_b.events());
    let started = Instant::now();
    let write = |engine: Arc<Deltasync>, side: &'static str, n: usize| {
        let name = c.name.clone();
        async move {
            let collection = engine.collection(&name).map_err(|e| e.to_string())?;
            for i in 0..n {
                let row = json!({"title": format!("{side} {i}")});
                collection
                    .insert(row.as_object().cloned().unwrap_or_default())
                    .await
                    .map_err(|e| e.to_string())?;
            }
            Ok::<(), String>(())
        }
    };
    let half = o.writes / 2;
    let (wa, wb) = tokio::join!(
        write(a.clone(), "a", half),
        write(b.clone(), "b", o.writes - half)
    );
    wa?;
    wb?;
    handle_a
        .status()
        .wait_for(|s| s.collections[&c.name].pending == Some(0))
        .await
        .map_err(|e| e.to_string())?;
    handle_a.sync_now().await;
    handle_b.sync_now().await;
    let took = started.elapsed();
    stop_a.cancel();
    stop_b.cancel();
    let _ = tokio::join!(task_a, task_b);
    let mut pushed = 0;
    for events in [&mut events_a, &mut events_b] {
        loop {
            match events.try_recv() {
                Ok(SyncEvent::Cycle(r)) => pushed += r.pushed,
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::TryRecvError::Lagged(missed)) => {
                    return Err(format!("{missed} events missed: the push count is unknown"));
                }
                Err(_) => break,
            }
        }
    }
    let query = [
        ("limit", "0".to_owned()),
        ("meta", "filter_count".to_owned()),
    ];
    let count = server
        .call(
            reqwest::Method::GET,
            &format!("/items/{}", c.name),
            &query,
            None,
        )
        .await?;
    server.drop_made().await;
    let _ = benches::drop_postgres_database(&admin, &database).await;
    Ok(json!({
        "scenario": "service_instances",
        "server": if o.directus { "directus" } else { "reference" },
        "writes": o.writes,
        "pushed": pushed,
        "server_rows": count["meta"]["filter_count"],
        "seconds": took.as_secs_f64(),
    })
    .to_string())
}
