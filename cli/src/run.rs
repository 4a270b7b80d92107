//! `deltasync run`: the sync service until the process is asked to stop, with a line per
//! cycle on stdout and, when asked, Prometheus metrics, health and readiness over HTTP.
//!
//! Owns the wiring of the library's service ([`deltasync::Syncer`]) and metrics endpoint for
//! the command line, and the cycle lines. It must not schedule anything itself.

use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use deltasync::metrics;
use deltasync::{CancellationToken, CollectionReport, Deltasync, SyncEvent, Syncer, SyncerOptions};
use tokio::sync::broadcast::error::RecvError;

/// How long the service may take to stop once asked: the current cycles get most of it.
pub const STOP_WITHIN: Duration = Duration::from_secs(10);

/// What `run` was asked for.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The interval of every collection (default 60 s).
    pub interval: Option<Duration>,
    /// Where to serve `/metrics`, `/healthz` and `/readyz`.
    pub metrics: Option<SocketAddr>,
}

/// Why `run` could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot listen on {addr} for --metrics: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Runs the service of `engine` until `shutdown` resolves, then stops it within
/// [`STOP_WITHIN`]. Cycle lines go to `out`.
pub async fn run(
    engine: Deltasync,
    options: Options,
    shutdown: impl Future<Output = ()>,
    mut out: impl Write + Send + 'static,
) -> Result<(), RunError> {
    let listener = match options.metrics {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| RunError::Listen { addr, source })?,
        ),
        None => None,
    };
    let engine = Arc::new(engine);
    let defaults = SyncerOptions::default();
    let syncer_options = SyncerOptions {
        interval: options.interval.unwrap_or(defaults.interval),
        shutdown_grace: STOP_WITHIN / 2,
        ..defaults
    };
    let (syncer, service) = Syncer::new(engine.clone(), syncer_options);
    let stop = CancellationToken::new();
    let mut events = service.events();
    let service_task = tokio::spawn(syncer.run(stop.clone()));
    // Stopped once the service has: the events it sent last are still printed.
    let finished = CancellationToken::new();
    let lines_finished = finished.clone();
    let lines = tokio::spawn(async move {
        let mut print = |received: Result<SyncEvent, RecvError>| {
            let text = match received {
                Ok(event) => line(&event),
                Err(RecvError::Lagged(n)) => format!("({n} events not shown)"),
                Err(RecvError::Closed) => return,
            };
            let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ");
            let _ = writeln!(out, "{now} {text}");
        };
        loop {
            tokio::select! {
                received = events.recv() => print(received),
                () = lines_finished.cancelled() => break,
            }
        }
        while let Ok(event) = events.try_recv() {
            print(Ok(event));
        }
    });
    if let Some(listener) = listener {
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(%addr, "serving /metrics, /healthz and /readyz");
        }
        let serving = metrics::expose(listener, engine.clone(), service.clone(), stop.clone());
        tokio::spawn(async move {
            if let Err(e) = serving.await {
                tracing::warn!(error = %e, "the metrics endpoint stopped");
            }
        });
    }

    shutdown.await;
    tracing::info!("stopping");
    stop.cancel();
    if tokio::time::timeout(STOP_WITHIN, service_task)
        .await
        .is_err()
    {
        tracing::warn!("the service did not stop in time; leaving its cycles to be redone");
    }
    finished.cancel();
    let _ = lines.await;
    Ok(())
}

fn line(event: &SyncEvent) -> String {
    match event {
        SyncEvent::Cycle(report) => cycle_line(report),
        SyncEvent::RemoteDown { message } => {
            format!("server down ({message}); probing until it answers")
        }
        SyncEvent::RemoteUp => "server answers again; catching up".to_owned(),
        SyncEvent::RealtimeOff { reason } => {
            format!("no realtime from the server ({reason}); its changes arrive on the interval")
        }
    }
}

fn cycle_line(r: &CollectionReport) -> String {
    if r.held_elsewhere {
        return format!("{}: synced by another process", r.collection);
    }
    let counts = format!(
        "{}: pushed {}, pulled {}, deleted {}, conflicts {}, quarantined {}, {} ms",
        r.collection, r.pushed, r.pulled, r.deleted, r.conflicts, r.quarantined, r.duration_ms
    );
    match &r.error {
        Some(error) => format!(
            "{counts}; failed in {}: {error}",
            r.error_phase.as_deref().unwrap_or("sync")
        ),
        None => counts,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cycle_lines() {
        let done = CollectionReport {
            collection: "articles".into(),
            pushed: 2,
            pulled: 5,
            duration_ms: 12,
            ..Default::default()
        };
        let failed = CollectionReport {
            error: Some("unreachable".into()),
            error_phase: Some("pull".into()),
            ..done.clone()
        };
        let elsewhere = CollectionReport {
            held_elsewhere: true,
            ..done.clone()
        };
        let cases = [
            (
                SyncEvent::Cycle(done),
                "articles: pushed 2, pulled 5, deleted 0, conflicts 0, quarantined 0, 12 ms",
            ),
            (
                SyncEvent::Cycle(failed),
                "articles: pushed 2, pulled 5, deleted 0, conflicts 0, quarantined 0, 12 ms; failed in pull: unreachable",
            ),
            (
                SyncEvent::Cycle(elsewhere),
                "articles: synced by another process",
            ),
            (SyncEvent::RemoteUp, "server answers again; catching up"),
        ];
        for (event, expected) in cases {
            assert_eq!(line(&event), expected);
        }
    }
}
