//! Prometheus metrics of the sync service, and the HTTP endpoint that serves them with the
//! service's health and readiness (feature `metrics`).
//!
//! Owns the metric families and how the service's events and status feed them. The
//! exposition format is `prometheus-client`'s and the server is axum's; this module writes
//! neither by hand. It must not change what the service does.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use crate::{Deltasync, SyncEvent, SyncerHandle};

type Labels = Vec<(&'static str, String)>;

fn collection(name: &str) -> Labels {
    vec![("collection", name.to_owned())]
}

/// The metrics of one engine and its service.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pulled: Family<Labels, Counter>,
    pushed: Family<Labels, Counter>,
    deleted: Family<Labels, Counter>,
    conflicts: Family<Labels, Counter>,
    quarantined: Family<Labels, Counter>,
    pending: Family<Labels, Gauge>,
    last_success: Family<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    duration: Family<Labels, Histogram>,
    remote_up: Gauge,
    /// Each collection's strategy, the `strategy` label of its conflicts.
    strategies: std::collections::HashMap<String, String>,
}

/// `deltasync_requests_total`, read from the Directus client at each scrape.
#[derive(Debug)]
struct Requests(Arc<Deltasync>);

impl Collector for Requests {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let counts = self.0.remote().answer_counts();
        let mut family = encoder.encode_descriptor(
            "deltasync_requests",
            "Requests sent to Directus, retries included, by the HTTP status of the answer (error: no answer)",
            None,
            prometheus_client::metrics::MetricType::Counter,
        )?;
        for (status, count) in counts {
            let labels = [("status", status)];
            ConstCounter::new(count).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

impl Metrics {
    /// The metrics of `engine`, all at zero.
    pub fn new(engine: Arc<Deltasync>) -> Metrics {
        let mut registry = Registry::default();
        let counter = |registry: &mut Registry, name: &str, help: &str| {
            let family = Family::<Labels, Counter>::default();
            registry.register(name, help, family.clone());
            family
        };
        let pulled = counter(
            &mut registry,
            "deltasync_rows_pulled",
            "Server rows written locally",
        );
        let pushed = counter(
            &mut registry,
            "deltasync_rows_pushed",
            "Local changes the server acknowledged",
        );
        let deleted = counter(
            &mut registry,
            "deltasync_rows_deleted",
            "Local rows removed because the server deleted them",
        );
        let conflicts = counter(
            &mut registry,
            "deltasync_conflicts",
            "Conflicts met, by the collection's strategy",
        );
        let quarantined = counter(
            &mut registry,
            "deltasync_quarantined",
            "Local changes rejected for good and server rows that did not fit",
        );
        let pending = Family::<Labels, Gauge>::default();
        registry.register(
            "deltasync_pending_changes",
            "Local changes waiting to be pushed",
            pending.clone(),
        );
        let last_success = Family::<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register(
            "deltasync_last_success_timestamp_seconds",
            "When the collection last synced without error (Unix time)",
            last_success.clone(),
        );
        let duration: Family<Labels, Histogram> = Family::new_with_constructor(|| {
            // 5 ms to about 41 s.
            Histogram::new(exponential_buckets(0.005, 2.0, 14))
        });
        registry.register(
            "deltasync_sync_duration_seconds",
            "How long a collection's cycle took",
            duration.clone(),
        );
        let remote_up = Gauge::default();
        remote_up.set(1);
        registry.register(
            "deltasync_remote_up",
            "Whether the server answers (1) or not (0)",
            remote_up.clone(),
        );
        registry.register_collector(Box::new(Requests(engine.clone())));
        let strategies = engine
            .config()
            .collections
            .iter()
            .map(|c| (c.name.clone(), c.conflict.as_str().to_owned()))
            .collect();
        Metrics {
            registry,
            pulled,
            pushed,
            deleted,
            conflicts,
            quarantined,
            pending,
            last_success,
            duration,
            remote_up,
            strategies,
        }
    }

    /// The metrics in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }

    /// Feeds the metrics from the service's events and status until `stop` is cancelled or
    /// the service ends.
    pub async fn follow(&self, service: &SyncerHandle, stop: CancellationToken) {
        let mut events = service.events();
        let mut status = service.status();
        loop {
            tokio::select! {
                biased;
                () = stop.cancelled() => return,
                event = events.recv() => match event {
                    Ok(event) => self.record(&event),
                    Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => return,
                },
                changed = status.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let now = status.borrow_and_update().clone();
                    self.remote_up.set(i64::from(now.remote_up));
                    for (name, state) in &now.collections {
                        if let Some(pending) = state.pending {
                            self.pending.get_or_create(&collection(name)).set(pending as i64);
                        }
                        if let Some(at) = state.last_success {
                            let seconds = at.timestamp_millis() as f64 / 1000.0;
                            self.last_success.get_or_create(&collection(name)).set(seconds);
                        }
                    }
                }
            }
        }
    }

    fn record(&self, event: &SyncEvent) {
        let SyncEvent::Cycle(report) = event else {
            return;
        };
        if report.held_elsewhere {
            return;
        }
        let labels = collection(&report.collection);
        self.pulled.get_or_create(&labels).inc_by(report.pulled);
        self.pushed.get_or_create(&labels).inc_by(report.pushed);
        self.deleted.get_or_create(&labels).inc_by(report.deleted);
        self.quarantined
            .get_or_create(&labels)
            .inc_by(report.quarantined);
        let mut with_strategy = labels.clone();
        let strategy = self
            .strategies
            .get(&report.collection)
            .cloned()
            .unwrap_or_default();
        with_strategy.push(("strategy", strategy));
        self.conflicts
            .get_or_create(&with_strategy)
            .inc_by(report.conflicts);
        self.duration
            .get_or_create(&labels)
            .observe(report.duration_ms as f64 / 1000.0);
    }
}

#[derive(Clone)]
struct Endpoint {
    metrics: Arc<Metrics>,
    service: SyncerHandle,
}

/// The metrics of `engine`, fed by `service` and served on `listener` (see [`serve`]), until
/// `stop` is cancelled: what a service that only wants its metrics exposed spawns.
pub async fn expose(
    listener: TcpListener,
    engine: Arc<Deltasync>,
    service: SyncerHandle,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let metrics = Arc::new(Metrics::new(engine));
    let following = metrics.follow(&service, stop.clone());
    let serving = serve(listener, metrics.clone(), service.clone(), stop);
    let ((), served) = tokio::join!(following, serving);
    served
}

/// Serves `/metrics` (Prometheus text), `/healthz` (200 while the service loop runs) and
/// `/readyz` (200 once every collection synced once) on `listener` until `stop` is cancelled.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    service: SyncerHandle,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let app = axum::Router::new()
        .route("/metrics", axum::routing::get(render))
        .route("/healthz", axum::routing::get(healthz))
        .route("/readyz", axum::routing::get(readyz))
        .with_state(Endpoint { metrics, service });
    axum::serve(listener, app)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await
}

async fn render(State(endpoint): State<Endpoint>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        endpoint.metrics.render(),
    )
}

fn answer(ok: bool, what: &'static str) -> (StatusCode, &'static str) {
    if ok {
        (StatusCode::OK, what)
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not yet\n")
    }
}

async fn healthz(State(endpoint): State<Endpoint>) -> impl IntoResponse {
    answer(endpoint.service.status().borrow().running, "running\n")
}

async fn readyz(State(endpoint): State<Endpoint>) -> impl IntoResponse {
    let ready = {
        // One borrow: a second one while a writer waits would deadlock.
        let status = endpoint.service.status();
        let now = status.borrow();
        now.running && now.ready()
    };
    answer(ready, "ready\n")
}
