//! A fault-injecting HTTP proxy between a replica and a Directus-compatible server.
//!
//! Every request is forwarded unchanged unless the proxy picks a fault for it, from a seeded
//! random sequence, so a failing run can be replayed from its seed. Faults are the ones
//! production brings: the answer lost after the server committed, a connection cut before or
//! after the server saw the request, a truncated body, an answer delayed after the server
//! committed (so that concurrent requests finish out of order), 429 with and without
//! `Retry-After`, storms of 503 and single 500s. WebSocket upgrades are relayed
//! ([`websocket`]), and cut by an outage. The proxy knows nothing of deltasync; it speaks
//! plain HTTP.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::watch;

mod websocket;

/// What the proxy does to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forwarded and answered as the server answered.
    None,
    /// Never forwarded; the connection breaks.
    ResetBefore,
    /// Forwarded (the server commits), then the connection breaks: the answer is lost.
    LostAfterCommit,
    /// Forwarded, then only half the answer arrives.
    Truncated,
    /// 429 `REQUESTS_EXCEEDED`, with `Retry-After: 0` or without it.
    RateLimited { retry_after: bool },
    /// 503 `SERVICE_UNAVAILABLE`; it comes in storms of up to [`STORM`] requests in a row.
    Unavailable,
    /// 500 `INTERNAL_SERVER_ERROR`.
    ServerError,
    /// Forwarded (the server commits), and the answer held back for this many milliseconds.
    Delayed { ms: u64 },
}

/// The longest 503 storm, in requests.
pub const STORM: u32 = 4;

/// The longest delay of a [`Fault::Delayed`] answer.
const MAX_DELAY_MS: u64 = 50;

const FAULTS: [Fault; 8] = [
    Fault::ResetBefore,
    Fault::LostAfterCommit,
    Fault::Truncated,
    Fault::RateLimited { retry_after: true },
    Fault::RateLimited { retry_after: false },
    Fault::Unavailable,
    Fault::ServerError,
    Fault::Delayed { ms: 0 },
];

/// When a hook set with [`FaultProxy::on_request`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moment {
    /// Before the request is forwarded: the server never sees it.
    BeforeForward,
    /// After the server answered (and committed), before the answer goes back.
    AfterAnswer,
}

type Hook = Box<dyn FnOnce() + Send>;

struct Shared {
    upstream: String,
    http: reqwest::Client,
    rng: Mutex<StdRng>,
    /// Share of requests that meet a fault, 0.0 to 1.0.
    rate: Mutex<f64>,
    /// Requests left in the current 503 storm.
    storm: Mutex<u32>,
    log: Mutex<Vec<(String, Fault)>>,
    /// Runs once, at the given moment of the request with this number (1-based).
    hook: Mutex<Option<(usize, Moment, Hook)>>,
    /// An outage: every request's connection breaks before it is forwarded.
    down: std::sync::atomic::AtomicBool,
    /// Realtime alone is down: upgrades are refused, plain requests pass.
    realtime_down: std::sync::atomic::AtomicBool,
    /// Bumped to cut every relayed WebSocket connection.
    cut: watch::Sender<u64>,
    /// While true, requests wait before they are forwarded.
    stalled: watch::Sender<bool>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("upstream", &self.upstream)
            .finish_non_exhaustive()
    }
}

impl Shared {
    fn new(upstream: &str, seed: u64, rate: f64) -> Shared {
        Shared {
            upstream: upstream.trim_end_matches('/').to_owned(),
            http: reqwest::Client::new(),
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
            rate: Mutex::new(rate),
            storm: Mutex::new(0),
            log: Mutex::new(Vec::new()),
            hook: Mutex::new(None),
            down: Default::default(),
            realtime_down: Default::default(),
            cut: watch::Sender::new(0),
            stalled: watch::Sender::new(false),
        }
    }

    /// Whether a WebSocket upgrade is refused now, or a relayed message dropped.
    fn realtime_refused(&self) -> bool {
        use std::sync::atomic::Ordering::SeqCst;
        self.down.load(SeqCst) || self.realtime_down.load(SeqCst)
    }

    /// Starts or ends an outage of the kind `flag` stands for; a start cuts every relayed
    /// WebSocket connection, as a network failure would.
    fn switch(&self, flag: &std::sync::atomic::AtomicBool, down: bool) {
        flag.store(down, std::sync::atomic::Ordering::SeqCst);
        if down {
            self.cut.send_modify(|n| *n += 1);
        }
    }

    /// Logs a request with its fault; returns its number (1-based).
    fn record(&self, request: &Request, fault: Fault) -> usize {
        let mut log = self.log.lock().unwrap();
        log.push((format!("{} {}", request.method(), request.uri()), fault));
        log.len()
    }

    /// Runs the hook if it is set for request `number` at `moment`.
    fn run_hook(&self, number: usize, moment: Moment) {
        let hook = {
            let mut armed = self.hook.lock().unwrap();
            match armed.take() {
                Some((n, m, hook)) if n == number && m == moment => Some(hook),
                other => {
                    *armed = other;
                    None
                }
            }
        };
        if let Some(hook) = hook {
            hook();
        }
    }
}

/// A running proxy; dropped with the test.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FaultProxy {
    /// Starts a proxy on loopback in front of `upstream`, faults drawn from `seed`.
    pub async fn start(upstream: &str, seed: u64, rate: f64) -> FaultProxy {
        let shared = Arc::new(Shared::new(upstream, seed, rate));
        let app = axum::Router::new()
            .fallback(forward)
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("proxy binds");
        let addr = listener.local_addr().expect("proxy address");
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("proxy serves");
        });
        FaultProxy { addr, shared, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Changes the share of requests that meet a fault (0.0 lets everything through).
    pub fn set_rate(&self, rate: f64) {
        *self.shared.rate.lock().unwrap() = rate;
    }

    /// Runs `hook` once, at `moment` of the `number`th request from now on (1-based), e.g.
    /// to kill the client process at an exact point of its work.
    pub fn on_request(&self, number: usize, moment: Moment, hook: impl FnOnce() + Send + 'static) {
        let seen = self.shared.log.lock().unwrap().len();
        *self.shared.hook.lock().unwrap() = Some((seen + number, moment, Box::new(hook)));
    }

    /// Starts (`true`) or ends an outage: while it lasts, every connection breaks before the
    /// server sees the request, whatever the fault rate, and WebSocket connections are cut
    /// and refused.
    pub fn set_down(&self, down: bool) {
        self.shared.switch(&self.shared.down, down);
    }

    /// Starts (`true`) or ends an outage of realtime alone: WebSocket connections are cut
    /// and upgrades refused, while plain requests pass.
    pub fn set_realtime_down(&self, down: bool) {
        self.shared.switch(&self.shared.realtime_down, down);
    }

    /// Holds (`true`) or releases every request not yet forwarded, as a server that stopped
    /// answering would; requests already forwarded finish.
    pub fn set_stalled(&self, stalled: bool) {
        self.shared.stalled.send_replace(stalled);
    }

    /// Removes a hook that has not run yet.
    pub fn disarm(&self) {
        self.shared.hook.lock().unwrap().take();
    }

    /// Every request seen (method, path and query), with the fault it met.
    pub fn log(&self) -> Vec<(String, Fault)> {
        self.shared.log.lock().unwrap().clone()
    }
}

fn pick(shared: &Shared) -> Fault {
    if shared.down.load(std::sync::atomic::Ordering::SeqCst) {
        return Fault::ResetBefore;
    }
    let rate = *shared.rate.lock().unwrap();
    let mut storm = shared.storm.lock().unwrap();
    if rate == 0.0 {
        *storm = 0;
        return Fault::None;
    }
    if *storm > 0 {
        *storm -= 1;
        return Fault::Unavailable;
    }
    let mut rng = shared.rng.lock().unwrap();
    if !rng.random_bool(rate.clamp(0.0, 1.0)) {
        return Fault::None;
    }
    match FAULTS[rng.random_range(0..FAULTS.len())] {
        Fault::Unavailable => {
            *storm = rng.random_range(0..STORM);
            Fault::Unavailable
        }
        Fault::Delayed { .. } => Fault::Delayed {
            ms: rng.random_range(1..=MAX_DELAY_MS),
        },
        fault => fault,
    }
}

async fn forward(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    if websocket::is_upgrade(request.headers()) {
        // A refused upgrade is logged as a connection that broke before the server saw it.
        let refused = shared.realtime_refused();
        let fault = if refused {
            Fault::ResetBefore
        } else {
            Fault::None
        };
        let number = shared.record(&request, fault);
        shared.run_hook(number, Moment::BeforeForward);
        return websocket::relay(shared, request, refused).await;
    }
    let fault = pick(&shared);
    let number = shared.record(&request, fault);
    let (parts, body) = request.into_parts();
    let target = format!(
        "{}{}",
        shared.upstream,
        parts.uri.path_and_query().map_or("/", |p| p.as_str())
    );
    shared.run_hook(number, Moment::BeforeForward);
    let _ = shared
        .stalled
        .subscribe()
        .wait_for(|stalled| !stalled)
        .await;
    match fault {
        Fault::ResetBefore => return broken(Bytes::new()),
        Fault::RateLimited { retry_after } => {
            let mut response = directus_error(429, "REQUESTS_EXCEEDED", "Too many requests.");
            if retry_after {
                response
                    .headers_mut()
                    .insert("retry-after", HeaderValue::from_static("0"));
            }
            return response;
        }
        Fault::Unavailable => {
            return directus_error(503, "SERVICE_UNAVAILABLE", "Under pressure.");
        }
        Fault::ServerError => {
            return directus_error(
                500,
                "INTERNAL_SERVER_ERROR",
                "An unexpected error occurred.",
            );
        }
        Fault::None | Fault::LostAfterCommit | Fault::Truncated | Fault::Delayed { .. } => {}
    }
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let mut upstream = shared
        .http
        .request(parts.method.clone(), &target)
        .body(body);
    for (name, value) in &parts.headers {
        if !matches!(name.as_str(), "host" | "content-length" | "accept-encoding") {
            upstream = upstream.header(name, value);
        }
    }
    let Ok(answer) = upstream.send().await else {
        return broken(Bytes::new());
    };
    let status = answer.status();
    let headers = answer.headers().clone();
    let bytes = answer.bytes().await.unwrap_or_default();
    shared.run_hook(number, Moment::AfterAnswer);
    if let Fault::Delayed { ms } = fault {
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }
    match fault {
        Fault::LostAfterCommit => broken(Bytes::new()),
        Fault::Truncated => broken(bytes.slice(..bytes.len() / 2)),
        _ => respond(status, &headers, Body::from(bytes)),
    }
}

/// An answer whose body breaks off after `prefix`: the client sees the connection fail.
fn broken(prefix: Bytes) -> Response {
    let chunks: Vec<Result<Bytes, std::io::Error>> = vec![
        Ok(prefix),
        Err(std::io::Error::other("connection cut by the fault proxy")),
    ];
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    respond(
        StatusCode::OK,
        &headers,
        Body::from_stream(futures::stream::iter(chunks)),
    )
}

fn respond(status: StatusCode, headers: &HeaderMap, body: Body) -> Response {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    for (name, value) in headers {
        if !matches!(
            name.as_str(),
            "content-length" | "content-encoding" | "transfer-encoding" | "connection"
        ) {
            response.headers_mut().insert(name, value.clone());
        }
    }
    response
}

pub(crate) fn directus_error(status: u16, code: &str, message: &str) -> Response {
    let body = serde_json::json!({"errors": [{"message": message, "extensions": {"code": code}}]});
    let mut headers = HeaderMap::new();
    headers.insert(
        "content-type",
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    respond(
        StatusCode::from_u16(status).expect("a status"),
        &headers,
        Body::from(body.to_string()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn faults(seed: u64, rate: f64, n: usize) -> Vec<Fault> {
        let s = Shared::new("", seed, rate);
        (0..n).map(|_| pick(&s)).collect()
    }

    #[test]
    fn a_seed_replays_the_same_faults() {
        assert_eq!(faults(7, 0.3, 500), faults(7, 0.3, 500));
        assert_ne!(faults(7, 0.3, 500), faults(8, 0.3, 500));
    }

    #[test]
    fn every_kind_of_fault_occurs_and_none_at_rate_zero() {
        let seen = faults(1, 0.5, 2_000);
        for kind in FAULTS {
            assert!(
                seen.iter()
                    .any(|f| std::mem::discriminant(f) == std::mem::discriminant(&kind)),
                "{kind:?} never occurred"
            );
        }
        assert!(faults(1, 0.0, 500).iter().all(|f| *f == Fault::None));
    }

    #[test]
    fn unavailability_comes_in_storms_of_bounded_length() {
        let seen = faults(3, 0.5, 5_000);
        let runs: Vec<usize> = seen
            .split(|f| *f != Fault::Unavailable)
            .map(<[Fault]>::len)
            .filter(|n| *n > 0)
            .collect();
        assert!(runs.iter().any(|n| *n > 1), "storms occur: {runs:?}");
        // A storm may be followed at once by a new one drawn afterwards.
        assert!(runs.iter().all(|n| *n <= 2 * STORM as usize), "{runs:?}");
        let delays = seen.iter().filter_map(|f| match f {
            Fault::Delayed { ms } => Some(*ms),
            _ => None,
        });
        assert!(
            delays
                .into_iter()
                .all(|ms| (1..=MAX_DELAY_MS).contains(&ms))
        );
    }
}
