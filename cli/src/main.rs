//! The `deltasync` command line. Exit codes: 0 done (for `run`: stopped cleanly); 1 sync
//! failed (nothing lost, retry later); 2 bad usage or bad configuration; 3 done, but
//! conflicts wait for a person; 4 `verify` found drift.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use comfy_table::Table;
use deltasync::{Choice, Config, ConfigError, Deltasync, OpenError, SyncReport};
use serde_json::json;

/// Two-way sync of local SQL tables with Directus collections.
#[derive(Debug, Parser)]
#[command(name = "deltasync", version, about)]
struct Cli {
    /// The schema file.
    #[arg(
        short,
        long,
        global = true,
        env = "DELTASYNC_CONFIG",
        default_value = "deltasync.yaml"
    )]
    config: PathBuf,
    /// More log output on stderr (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one sync cycle: push, pull, reconcile.
    Sync {
        /// Only this collection.
        #[arg(long)]
        collection: Option<String>,
        /// Print the report as JSON on stdout.
        #[arg(long)]
        json: bool,
        /// Also compare every synced key with the server and remove what it no longer has.
        #[arg(long)]
        reconcile: bool,
    },
    /// Sync continuously until SIGTERM or SIGINT: every collection at once, then after local
    /// writes (by any process), when the server announces a change over WebSockets, on its
    /// interval, and as soon as the server answers again after an outage. One line per cycle
    /// on stdout.
    Run {
        /// Seconds between two cycles of a collection when nothing else calls for one, for
        /// the collections without `interval_seconds` in the schema file.
        #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
        interval: u64,
        /// Serve Prometheus metrics at /metrics, and /healthz and /readyz, on this address
        /// (for example 127.0.0.1:9464).
        #[arg(long, value_name = "ADDR")]
        metrics: Option<std::net::SocketAddr>,
    },
    /// Compare local synced rows with the server (keys and cursor stamps, both ways).
    Verify {
        /// Only this collection.
        #[arg(long)]
        collection: Option<String>,
        /// Pull again what is missing or stale locally; remove what the server lacks.
        #[arg(long)]
        repair: bool,
        /// Print the result as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Pending changes, parked conflicts, cursor and last run, per collection.
    Status {
        #[arg(long)]
        json: bool,
        /// Refresh every SECONDS (default 2) until interrupted; with --json, one JSON
        /// document per line and refresh.
        #[arg(long, value_name = "SECONDS", num_args = 0..=1, default_missing_value = "2",
            value_parser = clap::value_parser!(u64).range(1..))]
        watch: Option<u64>,
    },
    /// List, show and resolve conflicts and rejected changes.
    Conflicts {
        #[command(subcommand)]
        command: ConflictsCommand,
    },
    /// Write a schema file from what a Directus server has (DIRECTUS_URL, DIRECTUS_TOKEN).
    Init {
        /// The collections to sync; every collection that is not a Directus system
        /// collection when none is named.
        collections: Vec<String>,
        /// The server (default: DIRECTUS_URL).
        #[arg(long, env = "DIRECTUS_URL", hide_env_values = true)]
        url: Option<String>,
        /// A static token allowed to read the server's schema (default: DIRECTUS_TOKEN).
        #[arg(long, env = "DIRECTUS_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// The local database URL (default: a SQLite file beside the schema file).
        #[arg(long)]
        database: Option<String>,
        /// Overwrite the schema file if it exists.
        #[arg(long)]
        force: bool,
        /// Add what the server lacks for a safe sync (date fields, the idempotency field)
        /// without asking.
        #[arg(long)]
        add_fields: bool,
    },
    /// Check the schema file; with --remote also the Directus schema and permissions.
    Validate {
        #[arg(long)]
        remote: bool,
    },
    /// Print the JSON Schema of the schema file (for editors).
    Schema,
    /// Run a self-contained demo: reference server, two replicas, offline edits, a conflict.
    Demo,
}

#[derive(Debug, Subcommand)]
enum ConflictsCommand {
    /// Conflicts waiting for a person (all recorded ones with --all).
    List {
        #[arg(long)]
        all: bool,
        #[arg(long)]
        json: bool,
    },
    /// One conflict with its base, local and remote versions.
    Show {
        id: i64,
        #[arg(long)]
        json: bool,
    },
    /// Decide a conflict; the next sync pushes what has to reach the server.
    Resolve {
        id: i64,
        /// Keep this side.
        #[arg(
            long,
            value_enum,
            conflicts_with = "with",
            required_unless_present = "with"
        )]
        take: Option<Side>,
        /// Replace the row with the JSON object in this file.
        #[arg(long)]
        with: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Side {
    Local,
    Remote,
}

/// Exit codes, as documented in the README.
mod exit {
    pub const OK: u8 = 0;
    pub const SYNC_FAILED: u8 = 1;
    pub const BAD_INPUT: u8 = 2;
    pub const CONFLICTS: u8 = 3;
    pub const DRIFT: u8 = 4;
}

/// An error with the exit code it maps to.
struct Failure {
    code: u8,
    error: anyhow::Error,
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(error: E) -> Failure {
        let error = error.into();
        let code = classify(&error);
        Failure { code, error }
    }
}

fn classify(error: &anyhow::Error) -> u8 {
    for cause in error.chain() {
        if cause.downcast_ref::<ConfigError>().is_some() {
            return exit::BAD_INPUT;
        }
        if let Some(e) = cause.downcast_ref::<deltasync::Error>() {
            return match e {
                deltasync::Error::Usage(_) => exit::BAD_INPUT,
                _ => exit::SYNC_FAILED,
            };
        }
        if let Some(OpenError::Config(_)) = cause.downcast_ref::<OpenError>() {
            return exit::BAD_INPUT;
        }
    }
    exit::SYNC_FAILED
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose, cli.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(exit::SYNC_FAILED);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(Failure { code, error }) => {
            eprintln!("error: {error:#}");
            ExitCode::from(code)
        }
    }
}

fn init_logging(verbose: u8, format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    // -v is about deltasync itself; RUST_LOG can open up the libraries underneath.
    let default = match verbose {
        0 => "warn",
        1 => "warn,engine=info,adapters=info,deltasync=info",
        _ => "info,engine=debug,adapters=debug,deltasync=debug",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn run(cli: Cli) -> Result<u8, Failure> {
    match cli.command {
        Command::Schema => {
            println!(
                "{}",
                serde_json::to_string_pretty(&deltasync::schema_json())?
            );
            Ok(exit::OK)
        }
        Command::Demo => {
            let converged = cli::demo::run(&mut std::io::stdout())
                .await
                .map_err(|e| anyhow::anyhow!("demo failed: {e}"))?;
            Ok(if converged {
                exit::OK
            } else {
                exit::SYNC_FAILED
            })
        }
        Command::Init {
            collections,
            url,
            token,
            database,
            force,
            add_fields,
        } => {
            let (Some(url), Some(token)) = (url, token) else {
                return Err(Failure {
                    code: exit::BAD_INPUT,
                    error: anyhow::anyhow!(
                        "init needs the server: set DIRECTUS_URL and DIRECTUS_TOKEN, or pass --url and --token"
                    ),
                });
            };
            let options = cli::init::Options {
                file: cli.config.clone(),
                collections,
                url,
                token: deltasync::Secret::new(token),
                database,
                force,
                add_fields,
            };
            let ask = |additions: &[cli::init::Addition]| {
                use std::io::{BufRead, IsTerminal, Write};
                if !std::io::stdin().is_terminal() {
                    return false;
                }
                println!("the server lacks what a safe sync needs:");
                for addition in additions {
                    println!("  {addition}");
                }
                print!("add these fields on the server now? [y/N] ");
                let _ = std::io::stdout().flush();
                let mut answer = String::new();
                let _ = std::io::stdin().lock().read_line(&mut answer);
                matches!(answer.trim(), "y" | "Y" | "yes")
            };
            match cli::init::run(&options, &mut std::io::stdout(), ask).await {
                Ok(()) => Ok(exit::OK),
                Err(e) => Err(Failure {
                    code: if e.is_usage() {
                        exit::BAD_INPUT
                    } else {
                        exit::SYNC_FAILED
                    },
                    error: e.into(),
                }),
            }
        }
        Command::Validate { remote } => {
            let config = load(&cli.config)?;
            println!(
                "{}: valid, {} collection(s)",
                cli.config.display(),
                config.collections.len()
            );
            let cycle = engine::sync::relation_cycle(&config);
            if !cycle.is_empty() {
                println!(
                    "  warning: the relations of {} form a cycle; they are pushed in file order, \
                     so a create or delete among them can meet a foreign-key error",
                    cycle.join(", ")
                );
            }
            if !remote {
                return Ok(exit::OK);
            }
            let problems = cli::validate_remote::check(&config).await?;
            for p in &problems {
                println!("  {p}");
            }
            if problems.is_empty() {
                println!(
                    "{}: the server has every collection, field and permission needed",
                    config.remote.url
                );
                Ok(exit::OK)
            } else {
                println!("{} problem(s) on {}", problems.len(), config.remote.url);
                Ok(exit::BAD_INPUT)
            }
        }
        Command::Sync {
            collection,
            json,
            reconcile,
        } => {
            let engine = open(&cli.config).await?;
            let options = deltasync::SyncOptions {
                reconcile_keys: reconcile,
                ..Default::default()
            };
            let bars = (!json && std::io::IsTerminal::is_terminal(&std::io::stdout()))
                .then(|| cli::progress::Bars::show(&engine));
            let report = engine.sync_with(collection.as_deref(), options).await;
            if let Some(bars) = bars {
                bars.finish().await;
            }
            let report = report?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print_report(&report);
            }
            Ok(sync_exit(&report))
        }
        Command::Run { interval, metrics } => {
            let engine = open(&cli.config).await?;
            let options = cli::run::Options {
                interval: Some(std::time::Duration::from_secs(interval)),
                metrics,
            };
            match cli::run::run(engine, options, stop_signal(), std::io::stdout()).await {
                Ok(()) => Ok(exit::OK),
                Err(e) => Err(Failure {
                    code: exit::BAD_INPUT,
                    error: e.into(),
                }),
            }
        }
        Command::Verify {
            collection,
            repair,
            json,
        } => {
            let engine = open(&cli.config).await?;
            let drift = engine.verify(collection.as_deref(), repair).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&drift)?);
            } else {
                print_drift(&drift);
            }
            let left = drift.iter().any(|d| d.drifted()) && !repair;
            Ok(if left { exit::DRIFT } else { exit::OK })
        }
        Command::Status { json, watch: None } => {
            let format = if json { Format::Json } else { Format::Table };
            status(&open(&cli.config).await?, format).await
        }
        Command::Status {
            json,
            watch: Some(seconds),
        } => {
            let engine = open(&cli.config).await?;
            let every = std::time::Duration::from_secs(seconds);
            let watching = async {
                loop {
                    if !json {
                        // Clear the screen and go home, as `watch` does.
                        print!("\x1b[2J\x1b[H");
                        println!("every {seconds} s; Ctrl-C stops\n");
                    }
                    let format = if json {
                        Format::JsonLine
                    } else {
                        Format::Table
                    };
                    status(&engine, format).await?;
                    tokio::time::sleep(every).await;
                }
            };
            tokio::select! {
                result = watching => result,
                () = stop_signal() => Ok(exit::OK),
            }
        }
        Command::Conflicts { command } => conflicts(&open(&cli.config).await?, command).await,
    }
}

/// Resolves at the first SIGINT (Ctrl-C) or SIGTERM.
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn load(path: &std::path::Path) -> Result<Config, Failure> {
    Ok(Config::load(path)?)
}

async fn open(path: &std::path::Path) -> Result<Deltasync, Failure> {
    let config = load(path)?;
    Ok(deltasync::open(config)
        .await
        .context("cannot open the local database")?)
}

/// What the last run said per collection that a person may need to act on: its error, and
/// fields the token may not write.
fn print_last_run_notes(run: &deltasync::engine_ports::RunRecord) {
    let Ok(report) = serde_json::from_value::<SyncReport>(run.summary.clone()) else {
        return;
    };
    for c in &report.collections {
        if let Some(error) = &c.error {
            println!("  {}: {error}", c.collection);
        }
        if !c.read_only_fields.is_empty() {
            println!(
                "  {}: the token may not update {}; local changes to them are held back",
                c.collection,
                c.read_only_fields.join(", ")
            );
        }
    }
}

fn sync_exit(report: &SyncReport) -> u8 {
    let mismatch = report
        .collections
        .iter()
        .any(|c| c.error_kind == Some(deltasync::ErrorKind::ServerMismatch));
    if mismatch {
        exit::BAD_INPUT
    } else if report.failed() {
        exit::SYNC_FAILED
    } else if report.waiting.is_some_and(|n| n > 0) {
        exit::CONFLICTS
    } else {
        exit::OK
    }
}

fn print_report(report: &SyncReport) {
    let mut table = Table::new();
    table.set_header([
        "collection",
        "pushed",
        "pulled",
        "deleted",
        "conflicts",
        "parked",
        "merged",
        "quarantined",
        "ms",
        "error",
    ]);
    for c in &report.collections {
        table.add_row([
            c.collection.clone(),
            c.pushed.to_string(),
            c.pulled.to_string(),
            c.deleted.to_string(),
            c.conflicts.to_string(),
            c.parked.to_string(),
            c.merged.to_string(),
            c.quarantined.to_string(),
            c.duration_ms.to_string(),
            c.error.clone().unwrap_or_default(),
        ]);
    }
    println!("{table}");
    if report.failed() {
        println!(
            "Sync did not finish; nothing was lost. Run it again once the error above is fixed (or the server is reachable)."
        );
    }
    if let Some(waiting) = report.waiting.filter(|n| *n > 0) {
        println!("{waiting} conflict(s) wait for a person: deltasync conflicts list");
    }
}

fn print_drift(drift: &[deltasync::CollectionDrift]) {
    let mut table = Table::new();
    table.set_header([
        "collection",
        "local",
        "server",
        "missing locally",
        "missing on server",
        "stale",
        "repaired",
    ]);
    for d in drift {
        table.add_row([
            d.collection.clone(),
            d.local_rows.to_string(),
            d.server_rows.to_string(),
            d.missing_locally.to_string(),
            d.missing_on_server.to_string(),
            d.stale.to_string(),
            d.repaired.to_string(),
        ]);
    }
    println!("{table}");
    for d in drift.iter().filter(|d| d.drifted()) {
        println!("{}: for example {}", d.collection, d.sample.join(", "));
    }
}

/// How `status` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Table,
    Json,
    /// One JSON document on one line (`status --watch --json`).
    JsonLine,
}

async fn status(engine: &Deltasync, format: Format) -> Result<u8, Failure> {
    let rows = engine.status().await?;
    let last = engine.last_run().await?;
    let waiting = engine.waiting().await?;
    if format != Format::Table {
        let body = json!({"collections": rows, "last_run": last, "waiting": waiting});
        if format == Format::JsonLine {
            println!("{}", serde_json::to_string(&body)?);
        } else {
            println!("{}", serde_json::to_string_pretty(&body)?);
        }
    } else {
        let mut table = Table::new();
        table.set_header([
            "collection",
            "rows",
            "created",
            "updated",
            "deleted",
            "conflicts",
            "quarantined",
            "cursor",
        ]);
        for s in &rows {
            let name = if s.removed_from_file {
                format!(
                    "{} (not in the schema file: table kept, not synced)",
                    s.collection
                )
            } else {
                s.collection.clone()
            };
            table.add_row([
                name,
                s.rows.to_string(),
                s.created.to_string(),
                s.updated.to_string(),
                s.deleted.to_string(),
                s.conflicts.to_string(),
                s.quarantined.to_string(),
                serde_json::to_string(&s.checkpoint.pull)?,
            ]);
        }
        println!("{table}");
        match &last {
            Some(run) => {
                println!(
                    "last run: {} ({})",
                    run.finished_at.to_rfc3339(),
                    if run.ok { "ok" } else { "failed" }
                );
                print_last_run_notes(run);
            }
            None => println!("last run: never"),
        }
        println!("waiting for a person: {waiting}");
    }
    Ok(if waiting > 0 {
        exit::CONFLICTS
    } else {
        exit::OK
    })
}

/// Where each field of a merged row came from: `title: local, views: remote`.
fn field_sources(record: &deltasync::ConflictRecord) -> String {
    record
        .fields
        .iter()
        .flatten()
        .map(|(field, source)| {
            let source = serde_json::to_value(source).unwrap_or_default();
            format!("{field}: {}", source.as_str().unwrap_or_default())
        })
        .collect::<Vec<_>>()
        .join(", ")
}

async fn conflicts(engine: &Deltasync, command: ConflictsCommand) -> Result<u8, Failure> {
    match command {
        ConflictsCommand::List { all, json } => {
            let records = engine.conflicts(!all).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&records)?);
            } else {
                let mut table = Table::new();
                table.set_header([
                    "id",
                    "collection",
                    "key",
                    "kind",
                    "strategy",
                    "resolution",
                    "fields",
                    "message",
                ]);
                for r in &records {
                    table.add_row([
                        r.id.to_string(),
                        r.collection.clone(),
                        r.key.clone(),
                        r.kind.as_str().to_owned(),
                        r.strategy.clone(),
                        r.resolution.map_or("waiting", |x| x.as_str()).to_owned(),
                        field_sources(r),
                        r.message.clone().unwrap_or_default(),
                    ]);
                }
                println!("{table}");
            }
            Ok(exit::OK)
        }
        ConflictsCommand::Show { id, json } => {
            let record = engine.conflict(id).await?.ok_or_else(|| {
                deltasync::Error::usage(
                    deltasync::UsageErrorKind::UnknownConflict,
                    format!("no conflict with id {id}"),
                )
            })?;
            if json {
                println!("{}", serde_json::to_string_pretty(&record)?);
            } else {
                println!(
                    "conflict {} in {} key {}: {}",
                    record.id,
                    record.collection,
                    record.key,
                    record.kind.as_str()
                );
                println!(
                    "strategy: {}, resolution: {}",
                    record.strategy,
                    record.resolution.map_or("waiting", |x| x.as_str())
                );
                if let Some(m) = &record.message {
                    println!("message: {m}");
                }
                if record.fields.is_some() {
                    println!("fields: {}", field_sources(&record));
                }
                let time = |t: Option<chrono::DateTime<chrono::Utc>>| {
                    t.map_or("unknown".to_owned(), |t| t.to_rfc3339())
                };
                if record.local_changed_at.is_some() {
                    println!(
                        "changed locally at {}, on the server at {} (server clock)",
                        time(record.local_changed_at),
                        time(record.remote_stamp.map(|s| s.0))
                    );
                }
                for (label, version) in [
                    ("base", &record.base),
                    ("local", &record.local),
                    ("remote", &record.remote),
                ] {
                    let text = version.as_ref().map_or("(none)".to_owned(), |v| {
                        serde_json::to_string_pretty(v).unwrap_or_default()
                    });
                    println!("{label}: {text}");
                }
            }
            Ok(exit::OK)
        }
        ConflictsCommand::Resolve {
            id,
            take,
            with,
            json,
        } => {
            let choice = match (take, with) {
                (Some(Side::Local), _) => Choice::Local,
                (Some(Side::Remote), _) => Choice::Remote,
                (None, Some(path)) => {
                    let text = std::fs::read_to_string(&path)
                        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
                        .map_err(|e| Failure {
                            code: exit::BAD_INPUT,
                            error: e,
                        })?;
                    let value: serde_json::Value =
                        serde_json::from_str(&text).map_err(|e| Failure {
                            code: exit::BAD_INPUT,
                            error: anyhow::anyhow!(
                                "{}:{}:{}: not JSON: {e}",
                                path.display(),
                                e.line(),
                                e.column()
                            ),
                        })?;
                    let object = value.as_object().cloned().ok_or_else(|| Failure {
                        code: exit::BAD_INPUT,
                        error: anyhow::anyhow!(
                            "{}: expected a JSON object of field values",
                            path.display()
                        ),
                    })?;
                    Choice::With(object)
                }
                (None, None) => unreachable!("clap requires --take or --with"),
            };
            let record = engine.resolve(id, choice).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&record)?);
            } else {
                println!(
                    "conflict {id} resolved ({}); run `deltasync sync` to push the outcome",
                    record.resolution.map_or("waiting", |x| x.as_str())
                );
            }
            Ok(exit::OK)
        }
    }
}
