//! The shared server state, its start-up and the direct-access API used by tests.
//!
//! Owns: the options, the database, clock, authentication, faults and statistics behind
//! mutexes (never held across an await), the listening task, and the methods tests call to
//! read and write data "as if writing to Directus's database". Must not: implement request
//! handling (see `http`) or item write rules (see `db`).

use crate::auth::Auth;
use crate::clock::{self, Clock};
use crate::db::{ACTIVITY, Actor, Db, Revision, WriteCtx};
use crate::error::Error;
use crate::faults::{Armed, Fault, FaultBook, FaultScope, Stats};
use crate::query;
use crate::schema::CollectionDef;
use crate::store::Key;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A row as the API returns it (every field).
pub type Row = Map<String, Value>;

/// How to run the server.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where to listen; port 0 picks a free port.
    pub addr: SocketAddr,
    /// The admin user's static token.
    pub admin_token: String,
    pub admin_email: String,
    pub admin_password: String,
    /// Lifetime of access tokens from `/auth/login` and `/auth/refresh`.
    pub access_token_ttl: Duration,
    /// Larger request bodies are refused with 400 `INVALID_PAYLOAD` (`MAX_PAYLOAD_SIZE`).
    pub max_payload_bytes: usize,
    /// `QUERY_LIMIT_MAX`; `None` means unlimited (reported as -1).
    pub query_limit_max: Option<u32>,
    /// `WEBSOCKETS_ENABLED`: whether `/websocket` exists (off by default in Directus, on here
    /// so that the sync service's realtime path is what the tests see).
    pub websockets: bool,
    /// How often a realtime connection gets the server's `ping` (30 s in Directus).
    pub ws_ping_interval: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin_token: "admin-token".into(),
            admin_email: "admin@example.com".into(),
            admin_password: "admin-password".into(),
            access_token_ttl: Duration::from_secs(15 * 60),
            max_payload_bytes: 1_000_000,
            query_limit_max: None,
            websockets: true,
            ws_ping_interval: Duration::from_secs(30),
        }
    }
}

/// The state shared by all requests.
#[derive(Debug)]
pub struct Server {
    opts: Options,
    db: Mutex<Db>,
    clock: Mutex<Clock>,
    auth: Mutex<Auth>,
    faults: Mutex<FaultBook>,
    stats: Mutex<Stats>,
    /// (collection, action) pairs taken away from the admin token, as when its policy loses
    /// a permission.
    revoked: Mutex<std::collections::HashSet<(String, String)>>,
}

/// Locks a mutex; a panic in another request must not take the server down with it.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Server {
    fn new(opts: Options) -> Self {
        let ttl = i64::try_from(opts.access_token_ttl.as_millis()).unwrap_or(i64::MAX / 2);
        let auth = Auth::new(
            &opts.admin_token,
            &opts.admin_email,
            &opts.admin_password,
            ttl,
        );
        Server {
            opts,
            db: Mutex::new(Db::new()),
            clock: Mutex::new(Clock::System),
            auth: Mutex::new(auth),
            faults: Mutex::new(FaultBook::default()),
            stats: Mutex::new(Stats::default()),
            revoked: Mutex::new(Default::default()),
        }
    }

    pub fn options(&self) -> &Options {
        &self.opts
    }

    /// Takes `action` (`create`, `read`, `update`, `delete`) on `collection` away from the
    /// admin token: its requests are then refused with 403 FORBIDDEN, as Directus refuses a
    /// token whose policy lacks the permission, and `/permissions/me` says so.
    pub fn revoke(&self, collection: &str, action: &str) {
        lock(&self.revoked).insert((collection.to_owned(), action.to_owned()));
    }

    /// Gives back what [`Server::revoke`] took.
    pub fn restore(&self, collection: &str, action: &str) {
        lock(&self.revoked).remove(&(collection.to_owned(), action.to_owned()));
    }

    pub(crate) fn allows(&self, collection: &str, action: &str) -> bool {
        !lock(&self.revoked).contains(&(collection.to_owned(), action.to_owned()))
    }

    /// "Now" by the server clock, in milliseconds.
    pub fn now(&self) -> DateTime<Utc> {
        lock(&self.clock).now()
    }

    pub(crate) fn now_ms(&self) -> i64 {
        self.now().timestamp_millis()
    }

    /// Switches between the system clock and a manual one.
    pub fn set_clock(&self, clock: Clock) {
        *lock(&self.clock) = clock;
    }

    /// Moves a manual clock forward (no effect on the system clock).
    pub fn advance_clock(&self, by: Duration) {
        lock(&self.clock).advance(by);
    }

    /// The admin user's id, as activity rows record it.
    pub fn admin_user_id(&self) -> String {
        lock(&self.auth).admin_id.clone()
    }

    pub(crate) fn with_db<R>(&self, f: impl FnOnce(&mut Db) -> R) -> R {
        f(&mut lock(&self.db))
    }

    pub(crate) fn with_auth<R>(&self, f: impl FnOnce(&mut Auth) -> R) -> R {
        f(&mut lock(&self.auth))
    }

    /// The stamp for a write request, moved back by a `BackdateWrites` fault.
    pub(crate) fn stamp(&self, backdate: Option<Duration>) -> i64 {
        let back = backdate.map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(0));
        self.now_ms() - back
    }

    /// Creates a collection, as `POST /collections` does.
    pub fn create_collection(&self, def: CollectionDef) -> Result<(), Error> {
        self.with_db(|db| db.create_collection(&def).map(|_| ()))
    }

    /// Switches activity logging for a collection (`None` logs nothing).
    pub fn set_accountability(&self, collection: &str, value: Option<String>) -> Result<(), Error> {
        let mut meta = Map::new();
        meta.insert(
            "accountability".into(),
            value.map_or(Value::Null, Value::String),
        );
        self.with_db(|db| db.update_collection_meta(collection, &meta).map(|_| ()))
    }

    fn direct_actor(&self) -> Actor {
        Actor {
            user: Some(self.admin_user_id()),
            ..Actor::default()
        }
    }

    /// Creates rows as an admin `POST /items/:c` would (stamps, defaults, activity); returns
    /// them in request order.
    pub fn insert(&self, collection: &str, rows: Vec<Row>) -> Result<Vec<Row>, Error> {
        let actor = self.direct_actor();
        let ctx = WriteCtx {
            stamp: self.now_ms(),
            actor: &actor,
        };
        let payloads: Vec<Value> = rows.into_iter().map(Value::Object).collect();
        self.with_db(|db| {
            let keys = db.create_items(collection, &payloads, ctx)?;
            Ok(keys
                .iter()
                .filter_map(|k| read_row(db, collection, k))
                .collect())
        })
    }

    /// Updates one row as an admin `PATCH /items/:c/:id` would (stamps `date-updated`,
    /// logs activity). A missing row is an error here and nothing is logged.
    pub fn update(&self, collection: &str, key: &str, patch: Row) -> Result<Row, Error> {
        let actor = self.direct_actor();
        let ctx = WriteCtx {
            stamp: self.now_ms(),
            actor: &actor,
        };
        self.with_db(|db| {
            let key = parse_key(db, collection, key)?
                .filter(|k| read_row(db, collection, k).is_some())
                .ok_or_else(|| Error::ItemNotFound {
                    collection: collection.into(),
                    key: key.into(),
                })?;
            db.update_items(
                collection,
                std::slice::from_ref(&key),
                &Value::Object(patch),
                ctx,
            )?;
            read_row(db, collection, &key).ok_or_else(|| Error::ItemNotFound {
                collection: collection.into(),
                key: key.as_string(),
            })
        })
    }

    /// Deletes rows as an admin `DELETE /items/:c` would: every key is logged, present or not.
    pub fn delete(&self, collection: &str, keys: &[&str]) -> Result<(), Error> {
        let actor = self.direct_actor();
        let ctx = WriteCtx {
            stamp: self.now_ms(),
            actor: &actor,
        };
        self.with_db(|db| {
            let keys = keys
                .iter()
                .map(|k| parse_key(db, collection, k)?.ok_or(Error::Forbidden))
                .collect::<Result<Vec<_>, _>>()?;
            db.delete_items(collection, &keys, ctx)
        })
    }

    /// Deletes a row the way a statement run on the database would: no activity row.
    pub fn raw_delete(&self, collection: &str, key: &str) -> bool {
        self.with_db(|db| match parse_key(db, collection, key) {
            Ok(Some(k)) => db.raw_delete(collection, &k).unwrap_or(false),
            _ => false,
        })
    }

    /// Removes activity entries up to and including `id`, as Directus's retention of
    /// activity history does; returns how many went.
    pub fn purge_activity(&self, through: i64) -> usize {
        self.with_db(|db| db.purge_activity(through))
    }

    /// One row, or `None`.
    pub fn get(&self, collection: &str, key: &str) -> Option<Row> {
        self.with_db(|db| {
            parse_key(db, collection, key)
                .ok()
                .flatten()
                .and_then(|k| read_row(db, collection, &k))
        })
    }

    /// Every row in primary-key order (empty for an unknown collection).
    pub fn rows(&self, collection: &str) -> Vec<Row> {
        self.with_db(|db| match db.table(collection) {
            Ok(t) => t
                .iter()
                .map(|(_, r)| into_row(query::render_row(&t.schema, None, r)))
                .collect(),
            Err(_) => Vec::new(),
        })
    }

    /// Number of rows (0 for an unknown collection).
    pub fn count(&self, collection: &str) -> usize {
        self.with_db(|db| db.table(collection).map_or(0, |t| t.len()))
    }

    /// Every activity row in id order.
    pub fn activity(&self) -> Vec<Row> {
        self.rows(ACTIVITY)
    }

    /// Every saved revision, oldest first: what each create and update left on the server,
    /// for collections whose accountability is `all`.
    pub fn revisions(&self) -> Vec<Revision> {
        self.with_db(|db| db.revisions().to_vec())
    }

    /// Injects a fault for every request.
    pub fn inject(&self, fault: Fault) {
        self.inject_scoped(fault, FaultScope::default());
    }

    /// Injects a fault for requests matching `scope`.
    pub fn inject_scoped(&self, fault: Fault, scope: FaultScope) {
        lock(&self.faults).add(fault, scope);
    }

    /// Drops all pending faults.
    pub fn clear_faults(&self) {
        lock(&self.faults).clear();
    }

    /// Faults not used up yet.
    pub fn pending_faults(&self) -> usize {
        lock(&self.faults).pending()
    }

    pub(crate) fn arm_faults(&self, method: &str, path: &str) -> Armed {
        let now = self.now_ms();
        lock(&self.faults).arm(method, path, now)
    }

    pub(crate) fn consume_fault(&self, id: u64) -> bool {
        lock(&self.faults).consume(id)
    }

    /// Requests seen since start or the last reset.
    pub fn stats(&self) -> Stats {
        lock(&self.stats).clone()
    }

    pub fn reset_stats(&self) {
        *lock(&self.stats) = Stats::default();
    }

    pub(crate) fn record_request(&self, method: &str, route: &str) {
        lock(&self.stats).record(method, route);
    }
}

fn parse_key(db: &Db, collection: &str, key: &str) -> Result<Option<Key>, Error> {
    let table = db.table(collection)?;
    Ok(Key::parse(table.schema.pk_field().kind, key))
}

fn read_row(db: &Db, collection: &str, key: &Key) -> Option<Row> {
    let table = db.table(collection).ok()?;
    table
        .get(key)
        .map(|r| into_row(query::render_row(&table.schema, None, r)))
}

fn into_row(v: Value) -> Row {
    match v {
        Value::Object(m) => m,
        _ => Row::new(),
    }
}

/// A running server.
#[derive(Debug)]
pub struct ServerHandle {
    server: Arc<Server>,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

/// Binds `opts.addr` and serves until [`ServerHandle::shutdown`] (or the handle is dropped).
pub async fn start(opts: Options) -> std::io::Result<ServerHandle> {
    let listener = tokio::net::TcpListener::bind(opts.addr).await?;
    let addr = listener.local_addr()?;
    let server = Arc::new(Server::new(opts));
    let app =
        crate::http::router(server.clone()).into_make_service_with_connect_info::<SocketAddr>();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let serve = axum::serve(listener, app).with_graceful_shutdown(async {
            let _ = stopped.await;
        });
        if let Err(e) = serve.await {
            tracing::warn!(error = %e, "reference server stopped with an error");
        }
    });
    Ok(ServerHandle {
        server,
        addr,
        stop: Some(stop),
        task: Some(task),
    })
}

impl ServerHandle {
    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn admin_token(&self) -> &str {
        &self.server.opts.admin_token
    }

    /// Direct access to the state, as if writing to Directus's database.
    pub fn state(&self) -> &Server {
        &self.server
    }

    /// Stops accepting requests and waits (briefly) for open ones to finish.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            // Idle keep-alive connections are closed by the graceful shutdown; the bound
            // only guards against a client that never lets go.
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Formats "now" for the `Date` header.
pub(crate) fn http_date(server: &Server) -> String {
    clock::format_http_date(server.now())
}
