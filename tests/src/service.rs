//! Helpers of the sync service's tests: a service spawned with an hour-long interval (so
//! that every cycle in a test is called for by the step before it), and waits on its events
//! that fail the test, rather than hang it, when the event never comes.

use std::sync::Arc;
use std::time::Duration;

use deltasync::{
    CancellationToken, CollectionReport, Deltasync, SyncEvent, Syncer, SyncerHandle, SyncerOptions,
};
use tokio::sync::broadcast;

/// How long a test waits for an event: far more than any step takes.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// Spawns the service of `engine` on the runtime; returns its handle, its stop token and its
/// task. A server that is down is probed every few milliseconds.
pub fn spawn(
    engine: Arc<Deltasync>,
) -> (SyncerHandle, CancellationToken, tokio::task::JoinHandle<()>) {
    let options = SyncerOptions {
        interval: Duration::from_secs(3600),
        probe_min: Duration::from_millis(10),
        probe_max: Duration::from_millis(50),
        ..Default::default()
    };
    let (syncer, handle) = Syncer::new(engine, options);
    let stop = CancellationToken::new();
    // Send + 'static: it runs on the runtime's threads like any service task.
    let task = tokio::spawn(syncer.run(stop.clone()));
    (handle, stop, task)
}

/// Waits for the next cycle of `collection` that satisfies `wanted`.
pub async fn cycle_where(
    events: &mut broadcast::Receiver<SyncEvent>,
    collection: &str,
    wanted: impl Fn(&CollectionReport) -> bool,
) -> CollectionReport {
    let found = async {
        loop {
            match events.recv().await.expect("the service runs") {
                SyncEvent::Cycle(report) if report.collection == collection && wanted(&report) => {
                    return report;
                }
                _ => {}
            }
        }
    };
    tokio::time::timeout(PATIENCE, found)
        .await
        .expect("no such cycle came")
}

/// Waits for the next event that satisfies `wanted`.
pub async fn event_where(
    events: &mut broadcast::Receiver<SyncEvent>,
    wanted: fn(&SyncEvent) -> bool,
) {
    let found = async { while !wanted(&events.recv().await.expect("the service runs")) {} };
    tokio::time::timeout(PATIENCE, found)
        .await
        .expect("no such event came");
}

/// Waits until `proxy` has refused a WebSocket upgrade: the service noticed its realtime
/// connection cut and tried to connect again.
pub async fn realtime_refused(proxy: &refserver::proxy::FaultProxy) {
    use refserver::proxy::Fault;
    let refused = || {
        proxy
            .log()
            .iter()
            .any(|(request, fault)| request.contains("/websocket") && *fault == Fault::ResetBefore)
    };
    let seen = async {
        // The proxy has no notice to wait on; its log is read every few milliseconds.
        while !refused() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(PATIENCE, seen)
        .await
        .expect("the service tried to reconnect its realtime connection");
}
