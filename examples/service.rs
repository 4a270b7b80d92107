//! A service that embeds deltasync: it opens the schema file, spawns the sync service on its
//! own tokio runtime, serves Prometheus metrics, health and readiness, and stops cleanly on
//! Ctrl-C. Writes the application makes through the library are pushed at once.
//!
//! ```text
//! cargo run -p deltasync --features metrics --example service -- deltasync.yaml 127.0.0.1:9464
//! ```

use std::sync::Arc;

use deltasync::metrics;
use deltasync::{CancellationToken, Syncer, SyncerOptions};

type Error = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let mut args = std::env::args().skip(1);
    let file = args.next().unwrap_or_else(|| "deltasync.yaml".to_owned());
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:9464".to_owned());

    let engine = Arc::new(deltasync::open_file(&file).await?);
    let (syncer, service) = Syncer::new(engine.clone(), SyncerOptions::default());
    let stop = CancellationToken::new();
    let running = tokio::spawn(syncer.run(stop.clone()));

    let listener = tokio::net::TcpListener::bind(&addr).await?;
    tokio::spawn(metrics::expose(
        listener,
        engine.clone(),
        service.clone(),
        stop.clone(),
    ));
    println!("syncing {file}; metrics on http://{addr}/metrics; Ctrl-C stops");

    // The application's own work goes here, for example:
    //   engine.collection("articles")?.insert(row).await?;
    // and `service.sync_now().await` when it needs the server to have everything now.

    tokio::signal::ctrl_c().await?;
    stop.cancel();
    running.await?;
    Ok(())
}
