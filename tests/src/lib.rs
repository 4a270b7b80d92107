//! Fixtures for the scenario tests: a reference server, local replicas on SQLite or
//! PostgreSQL, and helpers to read both sides.
//!
//! PostgreSQL runs when `DELTASYNC_TEST_PG` holds a server URL (e.g.
//! `postgres://postgres@127.0.0.1:5432/test`); each replica gets a database of its own. When
//! the variable is set and the server cannot be reached, tests fail rather than skip.

use std::time::Duration;

pub mod service;
mod site;
pub use site::{Site, pairs, sites};

use deltasync::{CollectionConfig, Config, Deltasync, FieldType, Row};
use refserver::ServerHandle;
use sea_orm::{ConnectionTrait, Database};
use serde_json::Value;

/// Where replicas keep their tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres(String),
}

/// SQLite always; PostgreSQL too when `DELTASYNC_TEST_PG` is set.
pub fn backends() -> Vec<Backend> {
    let mut out = vec![Backend::Sqlite];
    if let Ok(url) = std::env::var("DELTASYNC_TEST_PG")
        && !url.is_empty()
    {
        out.push(Backend::Postgres(url));
    }
    out
}

/// The fields most scenarios use.
pub const FIELDS: [(&str, FieldType); 3] = [
    ("title", FieldType::String),
    ("views", FieldType::Integer),
    ("meta", FieldType::Json),
];

/// Local databases for replicas, on one backend; SQLite files live as long as this does.
#[derive(Debug)]
pub struct Databases {
    pub backend: Backend,
    dirs: Vec<tempfile::TempDir>,
}

impl Databases {
    pub fn new(backend: Backend) -> Databases {
        Databases {
            backend,
            dirs: Vec::new(),
        }
    }

    /// A fresh local database URL for one replica.
    pub async fn fresh(&mut self) -> String {
        match &self.backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}", dir.path().join("replica.db").display());
                self.dirs.push(dir);
                url
            }
            Backend::Postgres(admin) => {
                let admin_db = Database::connect(admin.as_str()).await.unwrap_or_else(|e| {
                    panic!("DELTASYNC_TEST_PG is set but {admin} is unreachable: {e}")
                });
                let name = format!("deltasync_test_{}", uuid::Uuid::new_v4().simple());
                admin_db
                    .execute_unprepared(&format!("CREATE DATABASE {name}"))
                    .await
                    .expect("create test database");
                let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
                format!("{base}/{name}")
            }
        }
    }
}

/// A reference server plus the databases of the replicas made against it.
#[derive(Debug)]
pub struct World {
    pub server: ServerHandle,
    pub backend: Backend,
    databases: Databases,
}

impl World {
    pub async fn new(backend: Backend) -> World {
        World::with_options(backend, Default::default()).await
    }

    /// A world whose reference server runs with `options`.
    pub async fn with_options(backend: Backend, options: refserver::Options) -> World {
        let server = refserver::start(options)
            .await
            .expect("reference server starts");
        World {
            server,
            databases: Databases::new(backend.clone()),
            backend,
        }
    }

    /// Creates a collection on the server with a uuid key, a `last_modified` cursor and `fields`.
    pub async fn collection(&self, name: &str, fields: &[(&str, FieldType)]) {
        cli::demo::create_collection(&self.server, name, fields)
            .await
            .expect("collection created");
    }

    /// The local configuration of a collection created by [`World::collection`].
    pub fn config(name: &str, fields: &[(&str, FieldType)]) -> CollectionConfig {
        fields
            .iter()
            .fold(CollectionConfig::new(name), |c, (f, k)| {
                c.with_field(*f, *k)
            })
    }

    /// A fresh local database URL for one replica.
    pub async fn database(&mut self) -> String {
        self.databases.fresh().await
    }

    /// A replica syncing `collections` with this world's server.
    pub async fn replica(&mut self, collections: Vec<CollectionConfig>) -> Deltasync {
        let config = self.replica_config(collections).await;
        deltasync::open(config).await.expect("replica opens")
    }

    /// The configuration of a replica with a fresh database, for tests that change it
    /// before opening.
    pub async fn replica_config(&mut self, collections: Vec<CollectionConfig>) -> Config {
        let database = self.database().await;
        Config::new(
            self.server.url(),
            self.server.admin_token(),
            database,
            collections,
        )
    }

    /// A replica whose requests go through a proxy at `url` (a fault proxy).
    pub async fn replica_behind(
        &mut self,
        url: String,
        collections: Vec<CollectionConfig>,
    ) -> Deltasync {
        let database = self.database().await;
        let token = self.server.admin_token().to_owned();
        replica_with_quick_retries(url, token, database, collections).await
    }

    /// Creates rows on the server as Directus would; returns their keys in order.
    pub fn seed(&self, collection: &str, rows: Vec<Row>) -> Vec<String> {
        self.server
            .state()
            .insert(collection, rows)
            .expect("seed rows")
            .iter()
            .map(|r| r["id"].as_str().expect("uuid key").to_owned())
            .collect()
    }

    /// Makes the next `method` request under `path` fail for good with 400 and `code`, as
    /// Directus's validation would.
    pub fn reject_next(&self, method: &str, path: &str, code: &str) {
        self.server.state().inject_scoped(
            refserver::Fault::FailNext {
                count: 1,
                status: 400,
                code: code.into(),
                retry_after: None,
            },
            refserver::FaultScope::method(method).path(path),
        );
    }

    /// The server rows of a collection, by key.
    pub fn server_rows(&self, collection: &str) -> Vec<Row> {
        self.server.state().rows(collection)
    }

    /// A replica whose remote is wrapped in [`Hooked`], for injecting events mid-sync.
    pub async fn hooked_replica(
        &mut self,
        collections: Vec<CollectionConfig>,
    ) -> engine::Engine<adapters::SqlStore, Hooked> {
        let config = self.replica_config(collections).await;
        let store = adapters::SqlStore::connect(&config.local.database)
            .await
            .expect("store");
        let client = adapters::DirectusClient::new(&config.remote).expect("client");
        engine::Engine::open(config, store, Hooked::new(client))
            .await
            .expect("replica opens")
    }
}

/// An application edit of `key` in `collection`, made just before the next `call` request
/// of `replica` is sent: a local write racing a push.
pub fn edit_before_next(
    replica: &engine::Engine<adapters::SqlStore, Hooked>,
    call: Call,
    collection: &str,
    key: &str,
    data: Row,
) {
    let store = replica.store().clone();
    let config = replica
        .config()
        .collection(collection)
        .expect("a configured collection")
        .clone();
    let key = key.to_owned();
    replica.remote().before_next(
        call,
        Box::new(move || {
            Box::pin(async move {
                let write = engine::ports::LocalWrite::Update { key, data };
                engine::ports::Store::write(&store, &config, write)
                    .await
                    .expect("the edit is written");
            })
        }),
    );
}

/// The requests [`Hooked`] can run a hook before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    Create,
    Update,
    /// An item list (a page, or rows read back by key).
    List,
    /// The read of a collection's newest activity id.
    LatestActivity,
}

type Hook = Box<dyn FnOnce() -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// A remote that runs hooks before chosen requests, or fails them: deterministic
/// interleavings without sleeps.
pub struct Hooked {
    inner: adapters::DirectusClient,
    /// Armed hooks: the kind of request, how many more of them until it runs, the hook.
    before: std::sync::Mutex<Vec<(Call, usize, Hook)>>,
    lists: std::sync::atomic::AtomicUsize,
    fail_lists_after: std::sync::Mutex<Option<usize>>,
    /// Armed failures: the kind of request and how many more of them until it fails.
    failing: std::sync::Mutex<Vec<(Call, usize)>>,
}

impl std::fmt::Debug for Hooked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hooked").finish_non_exhaustive()
    }
}

impl Hooked {
    pub fn new(inner: adapters::DirectusClient) -> Hooked {
        Hooked {
            inner,
            before: Default::default(),
            lists: Default::default(),
            fail_lists_after: std::sync::Mutex::new(None),
            failing: Default::default(),
        }
    }

    /// Runs `hook` once, just before the next request of kind `call` is sent.
    pub fn before_next(&self, call: Call, hook: Hook) {
        self.before_nth(call, 1, hook);
    }

    /// Runs `hook` once, just before the `n`th request of kind `call` from now is sent.
    pub fn before_nth(&self, call: Call, n: usize, hook: Hook) {
        self.before.lock().unwrap().push((call, n, hook));
    }

    async fn run_hook(&self, call: Call) {
        let due = {
            let mut armed = self.before.lock().unwrap();
            let mut due = Vec::new();
            for (armed_for, left, hook) in std::mem::take(&mut *armed) {
                if armed_for != call {
                    armed.push((armed_for, left, hook));
                } else if left <= 1 {
                    due.push(hook);
                } else {
                    armed.push((armed_for, left - 1, hook));
                }
            }
            due
        };
        for hook in due {
            hook().await;
        }
    }

    /// Fails the next request of kind `call` as unavailable (after retries).
    pub fn fail_next(&self, call: Call) {
        self.fail_nth(call, 1);
    }

    /// Fails the `n`th request of kind `call` from now as unavailable (after retries).
    pub fn fail_nth(&self, call: Call, n: usize) {
        self.failing.lock().unwrap().push((call, n));
    }

    fn injected_failure(&self, call: Call) -> engine::Result<()> {
        let mut armed = self.failing.lock().unwrap();
        let mut fails = false;
        armed.retain_mut(|(armed_for, left)| {
            if *armed_for != call {
                return true;
            }
            *left -= 1;
            fails |= *left == 0;
            *left > 0
        });
        if fails {
            return Err(engine::Error::Remote(engine::RemoteError::new(
                engine::RemoteErrorKind::Unavailable,
                "service unavailable (injected)",
            )));
        }
        Ok(())
    }

    /// Lets `n` more item list requests through, then fails every one as unreachable.
    pub fn fail_lists_after(&self, n: Option<usize>) {
        self.lists.store(0, std::sync::atomic::Ordering::SeqCst);
        *self.fail_lists_after.lock().unwrap() = n;
    }
}

impl Hooked {
    /// Runs what an item list request meets before it is sent: the hook, an injected
    /// failure, the count of lists let through.
    async fn before_list(&self) -> engine::Result<()> {
        self.run_hook(Call::List).await;
        self.injected_failure(Call::List)?;
        let seen = self.lists.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if let Some(limit) = *self.fail_lists_after.lock().unwrap()
            && seen >= limit
        {
            return Err(engine::Error::Remote(engine::RemoteError::new(
                engine::RemoteErrorKind::Unreachable,
                "connection refused (injected)",
            )));
        }
        Ok(())
    }
}

impl engine::ports::Remote for Hooked {
    async fn page(
        &self,
        c: &CollectionConfig,
        request: &engine::cursor::PageRequest,
        fields: &[String],
    ) -> engine::Result<engine::ports::RawPage> {
        self.before_list().await?;
        self.inner.page(c, request, fields).await
    }
    async fn rows_by_keys(
        &self,
        c: &CollectionConfig,
        keys: &[engine::Key],
        fields: &[String],
    ) -> engine::Result<engine::ports::RawPage> {
        self.before_list().await?;
        self.inner.rows_by_keys(c, keys, fields).await
    }
    async fn rows_created_as(
        &self,
        c: &CollectionConfig,
        ids: &[String],
        fields: &[String],
    ) -> engine::Result<engine::ports::RawPage> {
        self.before_list().await?;
        self.inner.rows_created_as(c, ids, fields).await
    }
    async fn filtered_rows(
        &self,
        c: &CollectionConfig,
        which: engine::ports::FilteredRows<'_>,
        fields: &[String],
    ) -> engine::Result<engine::ports::RawPage> {
        self.before_list().await?;
        self.inner.filtered_rows(c, which, fields).await
    }
    async fn create(
        &self,
        c: &str,
        rows: Vec<Value>,
        fields: &[String],
        key: &str,
    ) -> engine::Result<Vec<Value>> {
        self.run_hook(Call::Create).await;
        self.injected_failure(Call::Create)?;
        self.inner.create(c, rows, fields, key).await
    }
    async fn update_if_unchanged(
        &self,
        c: &CollectionConfig,
        rows: &[(engine::Key, engine::Stamp)],
        patch: engine::Row,
        fields: &[String],
        key: &str,
    ) -> engine::Result<Vec<Value>> {
        self.run_hook(Call::Update).await;
        self.inner
            .update_if_unchanged(c, rows, patch, fields, key)
            .await
    }
    async fn delete_if_unchanged(
        &self,
        c: &CollectionConfig,
        rows: &[(engine::Key, Option<engine::Stamp>)],
        key: &str,
    ) -> engine::Result<()> {
        self.inner.delete_if_unchanged(c, rows, key).await
    }
    async fn deletes_after(
        &self,
        c: &str,
        after: i64,
        limit: u32,
    ) -> engine::Result<engine::ports::DeletePage> {
        self.inner.deletes_after(c, after, limit).await
    }
    async fn delete_time(&self, c: &str, key: &str) -> engine::Result<Option<engine::Stamp>> {
        self.inner.delete_time(c, key).await
    }
    async fn latest_activity(&self, c: &str) -> engine::Result<Option<i64>> {
        self.injected_failure(Call::LatestActivity)?;
        self.inner.latest_activity(c).await
    }
    async fn oldest_activity(&self) -> engine::Result<Option<i64>> {
        self.inner.oldest_activity().await
    }
    async fn settled_activity(
        &self,
        at: chrono::DateTime<chrono::Utc>,
    ) -> engine::Result<Option<i64>> {
        self.inner.settled_activity(at).await
    }
    async fn server_fields(
        &self,
        c: &str,
    ) -> engine::Result<Option<Vec<engine::ports::ServerField>>> {
        self.inner.server_fields(c).await
    }
    async fn activity_logging(&self) -> engine::Result<std::collections::HashMap<String, bool>> {
        self.inner.activity_logging().await
    }
    async fn permissions(&self) -> engine::Result<Option<engine::ports::Permissions>> {
        self.inner.permissions().await
    }
    async fn query_limit(&self) -> engine::Result<Option<u32>> {
        self.inner.query_limit().await
    }
    fn clock_skew(&self) -> chrono::Duration {
        self.inner.clock_skew()
    }

    async fn count(
        &self,
        c: &CollectionConfig,
        request: &engine::cursor::PageRequest,
    ) -> Result<Option<u64>, deltasync::Error> {
        self.inner.count(c, request).await
    }

    async fn ping(&self) -> Result<(), deltasync::Error> {
        self.inner.ping().await
    }

    async fn watch_changes(
        &self,
        config: &deltasync::Config,
        notices: tokio::sync::mpsc::Sender<String>,
        stop: deltasync::CancellationToken,
    ) -> Result<engine::ports::Realtime, deltasync::Error> {
        self.inner.watch_changes(config, notices, stop).await
    }
}

/// Moves the local change time of a pending row an hour back: an edit made offline earlier.
pub async fn backdate_local_change<R: engine::ports::Remote>(
    replica: &engine::Engine<adapters::SqlStore, R>,
    collection: &str,
    key: &str,
) {
    shift_local_change(replica, collection, key, -3600).await;
}

/// Moves the local change time of a pending row by `seconds` (an hour ahead: an edit made
/// after anything the server holds, whatever the clocks say).
pub async fn shift_local_change<R: engine::ports::Remote>(
    replica: &engine::Engine<adapters::SqlStore, R>,
    collection: &str,
    key: &str,
    seconds: i64,
) {
    let c = replica.config().collection(collection).expect("configured");
    let db = replica.store().connection();
    let shifted = match db.get_database_backend() {
        sea_orm::DbBackend::Postgres => format!("now() + interval '{seconds} seconds'"),
        _ => format!("strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '{seconds:+} seconds')"),
    };
    // Bumping _sync_rev marks this as a bookkeeping write, not an application edit.
    let sql = format!(
        "UPDATE \"{}\" SET _sync_changed_at = {shifted}, _sync_rev = _sync_rev + 1 WHERE \"{}\" = '{key}'",
        c.table, c.primary_key
    );
    db.execute_unprepared(&sql)
        .await
        .expect("shift the local change time");
}

/// A replica of `collections` at `url` that retries after a millisecond rather than 200, so
/// that fault storms stay quick.
pub async fn replica_with_quick_retries(
    url: String,
    token: String,
    database: String,
    collections: Vec<CollectionConfig>,
) -> Deltasync {
    let config = Config::new(url, token, database, collections);
    let store = deltasync::SqlStore::connect(&config.local.database)
        .await
        .expect("store");
    let client = deltasync::DirectusClient::new(&config.remote)
        .expect("client")
        .with_min_backoff(Duration::from_millis(1));
    Deltasync::open(config, store, client)
        .await
        .expect("replica opens")
}

/// A JSON object literal as a [`Row`].
pub fn row(value: Value) -> Row {
    value.as_object().cloned().expect("an object")
}

/// The local rows of `collection` as `key -> (status, data)`, all rows.
pub async fn local_rows<R: engine::ports::Remote>(
    replica: &engine::Engine<adapters::SqlStore, R>,
    collection: &str,
) -> Vec<(String, deltasync::SyncStatus, Row)> {
    use deltasync::engine_ports::Store;
    let c = replica
        .config()
        .collection(collection)
        .expect("configured")
        .clone();
    let db = replica.store().connection();
    let sql = format!("SELECT \"{}\" FROM \"{}\"", c.primary_key, c.table);
    let keys: Vec<String> = db
        .query_all_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            sql,
        ))
        .await
        .expect("read keys")
        .iter()
        .map(|r| {
            r.try_get_by_index::<String>(0)
                .or_else(|_| r.try_get_by_index::<uuid::Uuid>(0).map(|u| u.to_string()))
                .expect("key")
        })
        .collect();
    let mut rows: Vec<_> = replica
        .store()
        .rows(&c, &keys)
        .await
        .expect("read rows")
        .into_iter()
        .map(|r| (r.key, r.status, r.data))
        .collect();
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    rows
}

/// Asserts that the replica holds exactly the server's rows, all synced, field for field.
pub async fn assert_converged<R: engine::ports::Remote>(
    world: &World,
    replica: &engine::Engine<adapters::SqlStore, R>,
    collection: &str,
) {
    assert_same_rows(&world.server_rows(collection), replica, collection).await;
}

/// Asserts that the replica holds exactly `server` (rows by key), all synced, field for field.
pub async fn assert_same_rows<R: engine::ports::Remote>(
    server: &[Row],
    replica: &engine::Engine<adapters::SqlStore, R>,
    collection: &str,
) {
    let c = replica
        .config()
        .collection(collection)
        .expect("configured")
        .clone();
    let local = local_rows(replica, collection).await;
    assert_eq!(
        local.len(),
        server.len(),
        "{collection}: {} local rows, {} on the server",
        local.len(),
        server.len()
    );
    for ((key, status, data), remote) in local.iter().zip(server) {
        assert_eq!(
            Some(key.as_str()),
            remote["id"].as_str(),
            "{collection}: keys differ"
        );
        assert_eq!(
            *status,
            deltasync::SyncStatus::Synced,
            "{collection}/{key} is not synced"
        );
        for f in &c.fields {
            let theirs = remote.get(&f.name).cloned().unwrap_or(Value::Null);
            assert_eq!(data[&f.name], theirs, "{collection}/{key}.{}", f.name);
        }
    }
}

/// A short pause of the manual server clock's worth, for readability of tests.
pub const TICK: Duration = Duration::from_secs(10);
