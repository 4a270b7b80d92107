//! The service's followers: tasks that turn what happens elsewhere into pokes and status.
//!
//! Owns the probe of a server that is down, the realtime and local-write notices, and the
//! progress shown in the status. It must not run cycles; the collection tasks do.

use super::*;

/// Probes a server that is down, backing off with jitter, and brings every collection back
/// when it answers.
pub(super) async fn probe<S: Store, R: Remote>(
    engine: Arc<Engine<S, R>>,
    shared: Arc<Shared>,
    health: Arc<watch::Sender<Connectivity>>,
    options: SyncerOptions,
    stop: CancellationToken,
) {
    let mut watch = health.subscribe();
    loop {
        tokio::select! {
            biased;
            () = stop.cancelled() => return,
            down = watch.wait_for(|h| *h == Connectivity::Down) => if down.is_err() { return },
        }
        let mut delays = schedule::probe_delays(options.probe_min, options.probe_max);
        loop {
            let delay = delays.next().unwrap_or(options.probe_max);
            tokio::select! {
                biased;
                () = stop.cancelled() => return,
                () = tokio::time::sleep(delay) => {}
            }
            if engine.remote().ping().await.is_ok() {
                break;
            }
        }
        info!("the server answers again");
        health.send_replace(Connectivity::Up);
        shared.status.send_modify(|s| s.remote_up = true);
        shared.emit(SyncEvent::RemoteUp);
        shared.poke_all();
    }
}

/// Pokes the collection of each change the server announces.
pub(super) async fn follow_server_changes<S: Store, R: Remote>(
    engine: Arc<Engine<S, R>>,
    shared: Arc<Shared>,
    stop: CancellationToken,
) {
    let (notices, received) = tokio::sync::mpsc::channel(NOTICE_BACKLOG);
    let watching = engine
        .remote()
        .watch_changes(engine.config(), notices, stop.clone());
    let why = match poking(&shared, received, watching).await {
        None | Some(Ok(Realtime::Stopped)) => return,
        Some(Ok(Realtime::Unavailable(why))) => why,
        Some(Err(e)) => e.to_string(),
    };
    warn!(reason = %why, "no realtime from the server: its changes arrive on each collection's interval");
    shared
        .status
        .send_modify(|s| s.realtime_off = Some(why.clone()));
    shared.emit(SyncEvent::RealtimeOff { reason: why });
}

/// Pokes the collection of each write another process makes to the local database.
pub(super) async fn follow_store_writes<S: Store, R: Remote>(
    engine: Arc<Engine<S, R>>,
    shared: Arc<Shared>,
    stop: CancellationToken,
) {
    let (notices, received) = tokio::sync::mpsc::channel(NOTICE_BACKLOG);
    let watching = engine
        .store()
        .watch_writes(engine.config(), notices, stop.clone());
    if let Some(Err(e)) = poking(&shared, received, watching).await {
        warn!(error = %e, "writes by other processes are picked up on each collection's interval only");
    }
}

/// Pokes each collection named on `received` while `watching` runs; what `watching` ended
/// with, or `None` when the notices ended first.
async fn poking<T>(
    shared: &Shared,
    mut received: tokio::sync::mpsc::Receiver<String>,
    watching: impl std::future::Future<Output = T>,
) -> Option<T> {
    let forwarding = async {
        while let Some(collection) = received.recv().await {
            shared.poke(&collection);
        }
    };
    tokio::select! {
        watched = watching => Some(watched),
        () = forwarding => None,
    }
}

/// Shows the progress of running cycles in the status.
pub(super) async fn follow_progress(
    mut progress: broadcast::Receiver<crate::sync::Progress>,
    shared: Arc<Shared>,
    stop: CancellationToken,
) {
    loop {
        let notice = tokio::select! {
            biased;
            () = stop.cancelled() => return,
            notice = progress.recv() => notice,
        };
        match notice {
            Ok(p) => shared.update(&p.collection, |s| {
                if s.activity != Activity::Idle {
                    let (done, total) = (p.done, p.total);
                    s.activity = match p.phase {
                        crate::sync::ProgressPhase::Push => Activity::Pushing { done, total },
                        crate::sync::ProgressPhase::Pull => Activity::Pulling { done, total },
                    };
                }
            }),
            Err(broadcast::error::RecvError::Lagged(_)) => {}
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// Pokes the collection of each write made through the engine.
pub(super) async fn follow_local_writes(
    mut writes: broadcast::Receiver<String>,
    shared: Arc<Shared>,
    stop: CancellationToken,
) {
    loop {
        let written = tokio::select! {
            biased;
            () = stop.cancelled() => return,
            written = writes.recv() => written,
        };
        match written {
            Ok(collection) => shared.poke(&collection),
            Err(broadcast::error::RecvError::Lagged(_)) => shared.poke_all(),
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}
