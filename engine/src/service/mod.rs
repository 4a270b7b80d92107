//! The sync service: runs each collection's cycle whenever something calls for it, for as
//! long as the application runs.
//!
//! Owns the triggers (the interval, writes through the engine, writes by other processes as
//! the store notices them ([`Store::watch_writes`]), changes the server announces
//! ([`Remote::watch_changes`]), pokes, [`SyncerHandle::sync_now`]), the
//! remote's connectivity and its probe, the published status and events, and shutdown.
//!
//! One task per collection: a collection never runs two cycles at once, and collections run
//! in parallel. A cycle is [`Engine::sync_with`] of that collection with [`LeaseWait::Skip`]:
//! when another process holds the collection's lease, that process syncs it. It must not
//! decide anything about rows; what a cycle does is the engine's.
//!
//! **Cancel safety.** Stopping (the cancellation token) lets a running cycle finish within
//! [`SyncerOptions::shutdown_grace`], then drops it. Dropping a cycle loses nothing: every
//! local transaction commits whole or rolls back, a checkpoint commits with the rows it
//! covers, and a change whose answer never arrived is sent again with the same idempotency
//! key or compare-and-set guard. So [`Engine::sync`], [`Syncer::run`] and every method of
//! [`SyncerHandle`] are cancel-safe; a write through [`Collection`](crate::Collection) that
//! is dropped before it returns may or may not have committed, as with any SQL write.

mod follow;
mod schedule;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use schema::CollectionConfig;
use serde::Serialize;
use tokio::sync::{Notify, broadcast, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::error::ErrorKind;
use crate::ports::{LeaseWait, Realtime, Remote, Store};
use crate::sync::{CollectionReport, Engine, SyncOptions};
pub use schedule::Connectivity;

/// How the service runs.
#[derive(Debug, Clone)]
pub struct SyncerOptions {
    /// How often each collection syncs when nothing else calls for it, unless its
    /// configuration says (`interval_seconds`).
    pub interval: Duration,
    /// Intervals of particular collections, in place of their configuration's and of
    /// `interval`.
    pub intervals: HashMap<String, Duration>,
    /// The first wait before probing a server that stopped answering; it doubles, with
    /// jitter, up to `probe_max`.
    pub probe_min: Duration,
    pub probe_max: Duration,
    /// How long a running cycle may go on after the stop was asked for.
    pub shutdown_grace: Duration,
}

impl Default for SyncerOptions {
    fn default() -> SyncerOptions {
        SyncerOptions {
            interval: Duration::from_secs(60),
            intervals: HashMap::new(),
            probe_min: Duration::from_millis(500),
            probe_max: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

impl SyncerOptions {
    /// The interval of `c`: set for it here, else in its configuration, else the default.
    fn interval_of(&self, c: &CollectionConfig) -> Duration {
        let configured = c.interval_seconds.map(|s| Duration::from_secs(s.into()));
        self.intervals
            .get(&c.name)
            .copied()
            .or(configured)
            .unwrap_or(self.interval)
    }
}

/// What a collection is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "activity")]
pub enum Activity {
    Idle,
    /// A cycle runs, between phases or in one that reports no progress.
    Syncing,
    /// Changes pushed so far in this cycle, of `total` when counted.
    Pushing {
        done: u64,
        total: Option<u64>,
    },
    /// Rows read so far in this lane of the pull, of `total` when counted.
    Pulling {
        done: u64,
        total: Option<u64>,
    },
}

/// The last failure of a collection's cycle.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LastError {
    pub kind: ErrorKind,
    pub message: String,
    pub at: DateTime<Utc>,
}

/// One collection as the service sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CollectionState {
    pub activity: Activity,
    /// Local changes waiting to be pushed, as of the end of the last cycle.
    pub pending: Option<u64>,
    pub last_success: Option<DateTime<Utc>>,
    /// The last cycle's failure; cleared by a cycle that succeeds.
    pub last_error: Option<LastError>,
    /// Cycles finished since the service started, whatever their outcome.
    pub cycles: u64,
    /// The last cycle found the lease held by another process, which syncs the collection.
    pub held_elsewhere: bool,
}

impl CollectionState {
    fn new() -> CollectionState {
        CollectionState {
            activity: Activity::Idle,
            pending: None,
            last_success: None,
            last_error: None,
            cycles: 0,
            held_elsewhere: false,
        }
    }
}

/// The whole service, as published on [`SyncerHandle::status`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceStatus {
    /// The service loop runs (false once stopped).
    pub running: bool,
    /// The server answered the last request or probe.
    pub remote_up: bool,
    /// Why the server's changes arrive on the interval only, when they do (no realtime).
    pub realtime_off: Option<String>,
    pub collections: BTreeMap<String, CollectionState>,
}

impl ServiceStatus {
    /// Every collection synced once since the start, here or (lease held) in another process.
    pub fn ready(&self) -> bool {
        self.collections
            .values()
            .all(|c| c.last_success.is_some() || c.held_elsewhere)
    }
}

/// What happened, as published on [`SyncerHandle::events`].
#[derive(Debug, Clone, PartialEq)]
pub enum SyncEvent {
    /// A collection's cycle finished: its counts (pushed, pulled, deleted, conflicts,
    /// quarantined) and its error, if any.
    Cycle(CollectionReport),
    /// The server offers no realtime channel (or refused it): its changes arrive on each
    /// collection's interval. Said once.
    RealtimeOff { reason: String },
    /// The server stopped answering; cycles wait until a probe gets an answer.
    RemoteDown { message: String },
    /// The server answers again; every collection syncs at once.
    RemoteUp,
}

type BoxedCycle<'a> = std::pin::Pin<
    Box<
        dyn std::future::Future<Output = crate::error::Result<crate::sync::SyncReport>> + Send + 'a,
    >,
>;

/// Notices of writes (by other processes, or on the server) waiting to become pokes.
const NOTICE_BACKLOG: usize = 64;

/// Events kept for a slow listener before it is told it lagged.
const EVENT_BACKLOG: usize = 1024;

/// What the service's tasks and its handle share.
#[derive(Debug)]
struct Shared {
    pokes: HashMap<String, Notify>,
    status: watch::Sender<ServiceStatus>,
    events: broadcast::Sender<SyncEvent>,
}

impl Shared {
    fn poke(&self, collection: &str) {
        if let Some(notify) = self.pokes.get(collection) {
            notify.notify_one();
        }
    }

    fn poke_all(&self) {
        self.pokes.values().for_each(Notify::notify_one);
    }

    fn update(&self, collection: &str, change: impl FnOnce(&mut CollectionState)) {
        self.status.send_modify(|s| {
            if let Some(state) = s.collections.get_mut(collection) {
                change(state);
            }
        });
    }

    fn emit(&self, event: SyncEvent) {
        // Nobody listening is fine.
        let _ = self.events.send(event);
    }
}

/// The sync service of one engine. Build it with [`Syncer::new`], spawn [`Syncer::run`] on
/// the application's runtime, and talk to it through the [`SyncerHandle`].
#[derive(Debug)]
pub struct Syncer<S, R> {
    engine: Arc<Engine<S, R>>,
    options: SyncerOptions,
    shared: Arc<Shared>,
}

/// Talks to a running [`Syncer`]; cheap to clone.
#[derive(Debug, Clone)]
pub struct SyncerHandle {
    shared: Arc<Shared>,
}

impl<S: Store + 'static, R: Remote + 'static> Syncer<S, R> {
    pub fn new(engine: Arc<Engine<S, R>>, options: SyncerOptions) -> (Syncer<S, R>, SyncerHandle) {
        let names: Vec<String> = engine
            .config()
            .collections
            .iter()
            .map(|c| c.name.clone())
            .collect();
        let status = ServiceStatus {
            running: false,
            remote_up: true,
            realtime_off: None,
            collections: names
                .iter()
                .map(|n| (n.clone(), CollectionState::new()))
                .collect(),
        };
        let shared = Arc::new(Shared {
            pokes: names.into_iter().map(|n| (n, Notify::new())).collect(),
            status: watch::channel(status).0,
            events: broadcast::channel(EVENT_BACKLOG).0,
        });
        let handle = SyncerHandle {
            shared: shared.clone(),
        };
        (
            Syncer {
                engine,
                options,
                shared,
            },
            handle,
        )
    }

    /// Runs until `stop` is cancelled: every collection syncs at once, then whenever
    /// something calls for it. Returns once every cycle has finished or been dropped.
    pub async fn run(self, stop: CancellationToken) {
        let (health, _) = watch::channel(Connectivity::Up);
        let health = Arc::new(health);
        self.shared.status.send_modify(|s| s.running = true);
        let mut tasks = JoinSet::new();
        for c in &self.engine.config().collections {
            let task = CollectionTask {
                engine: self.engine.clone(),
                shared: self.shared.clone(),
                health: health.clone(),
                name: c.name.clone(),
                interval: self.options.interval_of(c),
                grace: self.options.shutdown_grace,
                children: children_of(&self.engine.config().collections, &c.name),
            };
            tasks.spawn(task.run(stop.clone()));
        }
        tasks.spawn(follow::probe(
            self.engine.clone(),
            self.shared.clone(),
            health,
            self.options.clone(),
            stop.clone(),
        ));
        tasks.spawn(follow::follow_server_changes(
            self.engine.clone(),
            self.shared.clone(),
            stop.clone(),
        ));
        tasks.spawn(follow::follow_store_writes(
            self.engine.clone(),
            self.shared.clone(),
            stop.clone(),
        ));
        tasks.spawn(follow::follow_progress(
            self.engine.progress(),
            self.shared.clone(),
            stop.clone(),
        ));
        tasks.spawn(follow::follow_local_writes(
            self.engine.local_writes(),
            self.shared.clone(),
            stop.clone(),
        ));
        while let Some(done) = tasks.join_next().await {
            if let Err(e) = done {
                warn!(error = %e, "a sync task ended abnormally");
            }
        }
        self.shared.status.send_modify(|s| s.running = false);
        info!("sync service stopped");
    }
}

impl SyncerHandle {
    /// The current status, and every change to it.
    pub fn status(&self) -> watch::Receiver<ServiceStatus> {
        self.shared.status.subscribe()
    }

    /// Events from now on.
    pub fn events(&self) -> broadcast::Receiver<SyncEvent> {
        self.shared.events.subscribe()
    }

    /// Asks `collection` to sync soon (a server change, a write seen by a watcher). Pokes
    /// made while a cycle runs call for one more cycle after it.
    pub fn poke(&self, collection: &str) {
        self.shared.poke(collection);
    }

    /// Syncs every collection now and returns once each has finished a cycle started after
    /// this call (or the service stopped).
    pub async fn sync_now(&self) -> ServiceStatus {
        let mut status = self.status();
        let before: BTreeMap<String, u64> = status
            .borrow()
            .collections
            .iter()
            .map(|(n, c)| {
                (
                    n.clone(),
                    c.cycles + u64::from(c.activity != Activity::Idle),
                )
            })
            .collect();
        self.shared.poke_all();
        let done = status
            .wait_for(|s| {
                !s.running && s.collections.values().all(|c| c.activity == Activity::Idle)
                    || s.collections
                        .iter()
                        .all(|(n, c)| c.cycles > before.get(n).copied().unwrap_or(0))
            })
            .await
            .map(|s| s.clone());
        done.unwrap_or_else(|_| self.shared.status.borrow().clone())
    }
}

/// The collections with a relation field pointing at `parent`: their rows held back for a
/// parent created offline can go once the parent has synced.
fn children_of(collections: &[CollectionConfig], parent: &str) -> Vec<String> {
    collections
        .iter()
        .filter(|c| {
            c.name != parent
                && c.fields
                    .iter()
                    .any(|f| f.references.as_deref() == Some(parent))
        })
        .map(|c| c.name.clone())
        .collect()
}

/// One collection's loop.
struct CollectionTask<S, R> {
    engine: Arc<Engine<S, R>>,
    shared: Arc<Shared>,
    health: Arc<watch::Sender<Connectivity>>,
    name: String,
    interval: Duration,
    grace: Duration,
    children: Vec<String>,
}

impl<S: Store + 'static, R: Remote + 'static> CollectionTask<S, R> {
    async fn run(self, stop: CancellationToken) {
        let poke = &self.shared.pokes[&self.name];
        let mut health = self.health.subscribe();
        let mut due = Instant::now();
        loop {
            tokio::select! {
                biased;
                () = stop.cancelled() => return,
                () = poke.notified() => {}
                () = tokio::time::sleep_until(due) => {}
            }
            // While the server is down, the probe decides when to try again.
            let up = tokio::select! {
                biased;
                () = stop.cancelled() => return,
                up = health.wait_for(|h| *h == Connectivity::Up) => up.is_ok(),
            };
            if !up {
                return;
            }
            if !self.cycle(&stop).await {
                return;
            }
            due = Instant::now() + self.interval;
        }
    }

    /// Runs one cycle; false when the service stopped during it.
    async fn cycle(&self, stop: &CancellationToken) -> bool {
        let shared = &self.shared;
        shared.update(&self.name, |s| s.activity = Activity::Syncing);
        let (mut report, mut stopped) = self.attempt(stop, LeaseWait::Skip).await;
        let mut pending = self.pending().await;
        // Another process held the lease, but its cycle may have read the pending rows before
        // these were written: wait for the lease and push them, rather than leave them to the
        // next interval.
        if !stopped
            && report.as_ref().is_some_and(|r| r.held_elsewhere)
            && pending.is_some_and(|n| n > 0)
        {
            (report, stopped) = self.attempt(stop, LeaseWait::Wait).await;
            pending = self.pending().await;
        }
        let now = Utc::now();
        let outcome = report.as_ref().map(schedule::outcome);
        // The event goes out before the status shows the cycle: whoever subscribes after
        // seeing the status never receives the event of a cycle that status already covers.
        if let Some(report) = &report {
            info!(
                collection = %report.collection,
                pushed = report.pushed,
                pulled = report.pulled,
                deleted = report.deleted,
                conflicts = report.conflicts,
                quarantined = report.quarantined,
                held_elsewhere = report.held_elsewhere,
                error = report.error.as_deref().unwrap_or(""),
                "cycle"
            );
            shared.emit(SyncEvent::Cycle(report.clone()));
        }
        shared.update(&self.name, |s| {
            s.activity = Activity::Idle;
            s.cycles += 1;
            if pending.is_some() {
                s.pending = pending;
            }
            if let Some(report) = &report {
                s.held_elsewhere = report.held_elsewhere;
                match (&report.error, report.error_kind) {
                    (Some(message), Some(kind)) => {
                        s.last_error = Some(LastError {
                            kind,
                            message: message.clone(),
                            at: now,
                        })
                    }
                    _ if !report.held_elsewhere => {
                        s.last_error = None;
                        s.last_success = Some(now);
                    }
                    _ => {}
                }
            }
        });
        if let Some(report) = report {
            if report.pushed > 0 {
                self.children.iter().for_each(|c| shared.poke(c));
            }
            if let Some(schedule::Outcome::RemoteDown) = outcome {
                let message = report.error.unwrap_or_default();
                if self.health.send_if_modified(|h| {
                    std::mem::replace(h, Connectivity::Down) == Connectivity::Up
                }) {
                    warn!(collection = %self.name, error = %message, "the server is down; probing until it answers");
                    shared.status.send_modify(|s| s.remote_up = false);
                    shared.emit(SyncEvent::RemoteDown { message });
                }
            }
        }
        !stopped
    }

    /// Runs the engine's cycle of this collection; past a stop, lets it finish within the
    /// grace. The report, if the cycle finished, and whether the service stopped.
    async fn attempt(
        &self,
        stop: &CancellationToken,
        lease: LeaseWait,
    ) -> (Option<CollectionReport>, bool) {
        let options = SyncOptions {
            lease,
            ..Default::default()
        };
        let mut cycle: BoxedCycle<'_> = Box::pin(self.engine.sync_with(Some(&self.name), options));
        let (result, stopped) = tokio::select! {
            result = &mut cycle => (Some(result), false),
            () = stop.cancelled() => {
                // The cycle may finish what it started; past the grace it is dropped, which
                // loses nothing (see the module's documentation).
                (tokio::time::timeout(self.grace, &mut cycle).await.ok(), true)
            }
        };
        let report = match result {
            None => None,
            Some(Ok(mut report)) => report.collections.pop(),
            Some(Err(e)) => Some(CollectionReport {
                collection: self.name.clone(),
                error_kind: Some(e.kind()),
                error: Some(e.to_string()),
                ..Default::default()
            }),
        };
        (report, stopped)
    }

    /// Local changes waiting to be pushed; `None` when they cannot be counted.
    async fn pending(&self) -> Option<u64> {
        let c = self.engine.collection_config(&self.name).ok()?;
        let status = self.engine.store().status(c).await.ok()?;
        Some(status.created + status.updated + status.deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_collection_interval_is_the_options_own_else_the_configured_else_the_default() {
        let secs = Duration::from_secs;
        let options = SyncerOptions {
            interval: secs(60),
            intervals: HashMap::from([("set_here".to_owned(), secs(5))]),
            ..Default::default()
        };
        let configured = |name: &str, seconds| CollectionConfig {
            interval_seconds: seconds,
            ..CollectionConfig::new(name)
        };
        for (c, expected) in [
            (configured("set_here", Some(300)), secs(5)),
            (configured("set_here", None), secs(5)),
            (configured("in_the_file", Some(300)), secs(300)),
            (configured("neither", None), secs(60)),
        ] {
            assert_eq!(options.interval_of(&c), expected, "{}", c.name);
        }
    }
}
