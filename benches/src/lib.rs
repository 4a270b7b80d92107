//! Benchmark fixtures: seeded, deterministic datasets and change sets, and loaders that put
//! them on a server.
//!
//! Owns the shape of the benchmark data (two collections, `authors` and `posts`, related
//! many-to-one) and how it reaches the reference server or a Directus. Must not measure
//! anything: the `e2e` binary and the criterion benches do that.

use std::time::Duration;

use deltasync::{Auth, CollectionConfig, DirectusClient, FieldType, Row, Secret};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

mod bare;
pub mod measure;

pub use bare::{BareInsert, Shape, bare_insert};

/// One author per this many posts.
pub const POSTS_PER_AUTHOR: usize = 100;

/// Rows per create request when loading over REST.
const LOAD_BATCH: usize = 1_000;

/// Rows that share one server stamp when loading into the reference server, as a burst of
/// writes within one millisecond would.
const ROWS_PER_MS: usize = 500;

const WORDS: [&str; 24] = [
    "sync",
    "delta",
    "replica",
    "server",
    "cursor",
    "page",
    "stamp",
    "conflict",
    "merge",
    "offline",
    "retry",
    "batch",
    "schema",
    "field",
    "row",
    "key",
    "push",
    "pull",
    "tombstone",
    "relation",
    "parent",
    "child",
    "clock",
    "window",
];

/// The two benchmark collections: `authors`, and `posts` whose `author` refers to them.
pub fn collections() -> Vec<CollectionConfig> {
    let authors = CollectionConfig::new("authors")
        .with_field("name", FieldType::String)
        .with_field("bio", FieldType::Text);
    let posts = CollectionConfig::new("posts")
        .with_field("title", FieldType::String)
        .with_field("body", FieldType::Text)
        .with_field("views", FieldType::Integer)
        .with_field("score", FieldType::Float)
        .with_field("published", FieldType::Boolean)
        .with_field("tags", FieldType::Json)
        .with_field("published_at", FieldType::Timestamp)
        .with_relation("author", FieldType::Uuid, "authors");
    vec![authors, posts]
}

/// A seeded dataset: the same seed and sizes give the same rows, byte for byte.
#[derive(Debug, Clone)]
pub struct Fixture {
    pub seed: u64,
    pub posts: usize,
}

impl Fixture {
    pub fn new(seed: u64, posts: usize) -> Fixture {
        Fixture { seed, posts }
    }

    pub fn authors(&self) -> usize {
        self.posts.div_ceil(POSTS_PER_AUTHOR)
    }

    /// The author rows, keys included.
    pub fn author_rows(&self) -> Vec<Row> {
        let mut rng = StdRng::seed_from_u64(self.seed ^ 0xa0);
        (0..self.authors())
            .map(|i| {
                row(json!({
                    "id": uuid(&mut rng),
                    "name": format!("author {i}"),
                    "bio": sentence(&mut rng, 12),
                }))
            })
            .collect()
    }

    /// Post rows `range`, keys included; each is about 400 bytes of JSON.
    pub fn post_rows(&self, range: std::ops::Range<usize>) -> Vec<Row> {
        let authors: Vec<String> = self
            .author_rows()
            .into_iter()
            .map(|a| a["id"].as_str().expect("uuid").to_owned())
            .collect();
        range.map(|i| self.post(i, &authors)).collect()
    }

    /// One generator per row, so that any range is generated alike.
    fn post_rng(&self, i: usize) -> StdRng {
        StdRng::seed_from_u64(self.seed.wrapping_mul(0x9e37_79b9).wrapping_add(i as u64))
    }

    /// The key of post `i`.
    pub fn post_key(&self, i: usize) -> String {
        uuid(&mut self.post_rng(i))
    }

    fn post(&self, i: usize, authors: &[String]) -> Row {
        let mut rng = self.post_rng(i);
        let published_at = chrono::DateTime::from_timestamp(1_700_000_000 + i as i64, 0)
            .expect("a time")
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        row(json!({
            "id": uuid(&mut rng),
            "title": sentence(&mut rng, 6),
            "body": sentence(&mut rng, 30),
            "views": rng.random_range(0..1_000_000),
            "score": (rng.random_range(0.0..5.0f64) * 100.0).round() / 100.0,
            "published": rng.random_bool(0.7),
            "tags": {"tags": [word(&mut rng), word(&mut rng)], "lang": "en"},
            "published_at": published_at,
            "author": authors[i % authors.len()],
        }))
    }

    /// The keys of posts `range`, without building whole rows.
    pub fn post_keys(&self, range: std::ops::Range<usize>) -> Vec<String> {
        range.map(|i| self.post_key(i)).collect()
    }
}

/// A change set to replay on the server: `updates` posts get a new title and view count,
/// spread over the dataset; all of them share one stamp (a batch update, a tie group).
#[derive(Debug, Clone)]
pub struct Changes {
    pub updated: Vec<String>,
}

impl Changes {
    /// `n` posts spread evenly over the fixture.
    pub fn spread(fixture: &Fixture, n: usize) -> Changes {
        let step = (fixture.posts / n.max(1)).max(1);
        Changes {
            updated: (0..fixture.posts)
                .step_by(step)
                .take(n)
                .map(|i| fixture.post_key(i))
                .collect(),
        }
    }
}

/// Loads a fixture into the reference server: collections created over REST, rows written
/// directly, `ROWS_PER_MS` rows per server millisecond.
pub async fn load_reference(
    server: &refserver::ServerHandle,
    fixture: &Fixture,
) -> Result<(), Error> {
    let client = admin_client(&server.url(), server.admin_token())?;
    for c in collections() {
        cli::remote_setup::create_collection(&client, &c)
            .await
            .map_err(remote(format!("creating {}", c.name)))?;
    }
    let state = server.state();
    for c in collections() {
        // Activity without revisions: a million saved copies of the rows would only cost the
        // server memory.
        state
            .set_accountability(&c.name, Some("activity".into()))
            .map_err(refused(format!("configuring {}", c.name)))?;
    }
    let start = chrono::Utc::now() - chrono::Duration::days(1);
    state.set_clock(refserver::Clock::Manual(start));
    state
        .insert("authors", fixture.author_rows())
        .map_err(refused("loading authors"))?;
    let mut at = 0;
    while at < fixture.posts {
        let end = (at + ROWS_PER_MS).min(fixture.posts);
        state.advance_clock(Duration::from_millis(1));
        state
            .insert("posts", fixture.post_rows(at..end))
            .map_err(refused("loading posts"))?;
        at = end;
    }
    state.set_clock(refserver::Clock::System);
    Ok(())
}

/// Loads a fixture into a Directus over REST, `LOAD_BATCH` rows per request.
pub async fn load_directus(
    url: &str,
    token: &str,
    fixture: &Fixture,
    suffix: &str,
) -> Result<(), Error> {
    let client = admin_client(url, token)?;
    for c in collections_named(suffix) {
        cli::remote_setup::create_collection(&client, &c)
            .await
            .map_err(remote(format!("creating {}", c.name)))?;
    }
    post_batches(&client, &format!("authors{suffix}"), fixture.author_rows()).await?;
    let mut at = 0;
    while at < fixture.posts {
        let end = (at + LOAD_BATCH * 10).min(fixture.posts);
        let rows = fixture.post_rows(at..end);
        post_batches(&client, &format!("posts{suffix}"), rows).await?;
        at = end;
    }
    Ok(())
}

/// The benchmark collections with `suffix` appended to their names (and to the relation).
pub fn collections_named(suffix: &str) -> Vec<CollectionConfig> {
    collections()
        .into_iter()
        .map(|mut c| {
            c.name = format!("{}{suffix}", c.name);
            c.table = c.name.clone();
            for f in &mut c.fields {
                if let Some(r) = &mut f.references {
                    *r = format!("{r}{suffix}");
                }
            }
            c
        })
        .collect()
}

async fn post_batches(
    client: &DirectusClient,
    collection: &str,
    rows: Vec<Row>,
) -> Result<(), Error> {
    for chunk in rows.chunks(LOAD_BATCH) {
        let body = Value::Array(chunk.iter().cloned().map(Value::Object).collect());
        client
            .request(
                adapters::directus::Method::POST,
                &format!("/items/{collection}"),
                &[("fields", "id".to_owned())],
                Some(&body),
                None,
            )
            .await
            .map_err(remote(format!("loading {collection}")))?;
    }
    Ok(())
}

/// A client with an admin token.
pub fn admin_client(url: &str, token: &str) -> Result<DirectusClient, Error> {
    let config = schema::RemoteConfig::new(url, Auth::Token(Secret::new(token)));
    DirectusClient::new(&config).map_err(|e| Error::Client(e.to_string()))
}

/// What an application writing beside a sync saw: how many writes it made and the longest
/// one took, waiting for the sync's transactions included.
#[derive(Debug, Clone, Copy)]
pub struct AppWrites {
    pub writes: usize,
    pub longest: Duration,
}

/// An application writing to the local database while a sync runs: an insert into a table
/// of its own every `every`, until `stop` fires, on a connection with a busy timeout as the
/// documentation asks. On SQLite every write waits for the sync's open transaction, whatever
/// the table. `ready` fires once the database is set up (in WAL mode, with the table), so
/// that the sync starts on a database the application already uses.
pub async fn app_writes(
    database: String,
    every: Duration,
    ready: tokio::sync::oneshot::Sender<()>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) -> Result<AppWrites, Error> {
    use sea_orm::{ConnectionTrait, Database};
    let db_error = |e: sea_orm::DbErr| Error::Local(e.to_string());
    let mut options = sea_orm::ConnectOptions::new(database);
    options
        .max_connections(1)
        .sqlx_logging(false)
        .map_sqlx_sqlite_opts(|o| {
            o.create_if_missing(true)
                .journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                .busy_timeout(Duration::from_secs(30))
        });
    let db = Database::connect(options).await.map_err(db_error)?;
    db.execute_unprepared("CREATE TABLE IF NOT EXISTS app_writes (at TEXT NOT NULL)")
        .await
        .map_err(db_error)?;
    let _ = ready.send(());
    let mut seen = AppWrites {
        writes: 0,
        longest: Duration::ZERO,
    };
    let mut ticks = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = &mut stop => return Ok(seen),
            _ = ticks.tick() => {}
        }
        let started = std::time::Instant::now();
        db.execute_unprepared("INSERT INTO app_writes (at) VALUES ('now')")
            .await
            .map_err(db_error)?;
        seen.writes += 1;
        seen.longest = seen.longest.max(started.elapsed());
    }
}

/// Creates a fresh database on the PostgreSQL server of `admin` (a URL); returns its URL.
pub async fn fresh_postgres_database(admin: &str) -> Result<String, Error> {
    use sea_orm::{ConnectionTrait, Database};
    let db_error =
        |e: sea_orm::DbErr| Error::Local(format!("{}: {e}", adapters::store::redact_url(admin)));
    let db = Database::connect(admin).await.map_err(db_error)?;
    let name = format!("deltasync_bench_{}", uuid::Uuid::new_v4().simple());
    db.execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await
        .map_err(db_error)?;
    let base = admin.rsplit_once('/').map_or(admin, |(b, _)| b);
    Ok(format!("{base}/{name}"))
}

/// Drops a database [`fresh_postgres_database`] made, connecting through `admin`.
pub async fn drop_postgres_database(admin: &str, url: &str) -> Result<(), Error> {
    use sea_orm::{ConnectionTrait, Database};
    let db_error =
        |e: sea_orm::DbErr| Error::Local(format!("{}: {e}", adapters::store::redact_url(admin)));
    let name = url.rsplit_once('/').map_or(url, |(_, name)| name);
    let db = Database::connect(admin).await.map_err(db_error)?;
    db.execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await
        .map_err(db_error)?;
    Ok(())
}

/// Why loading a fixture failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what}: {source}")]
    Remote {
        what: String,
        source: deltasync::RemoteError,
    },
    #[error("{what}: {message}")]
    Server { what: String, message: String },
    #[error("a client for the server: {0}")]
    Client(String),
    #[error("the local database: {0}")]
    Local(String),
}

fn remote(what: impl Into<String>) -> impl FnOnce(deltasync::RemoteError) -> Error {
    let what = what.into();
    move |source| Error::Remote { what, source }
}

fn refused(what: impl Into<String>) -> impl FnOnce(refserver::Error) -> Error {
    let what = what.into();
    move |e| Error::Server {
        what,
        message: e.to_string(),
    }
}

fn row(value: Value) -> Row {
    value.as_object().cloned().expect("an object")
}

fn uuid(rng: &mut StdRng) -> String {
    uuid::Builder::from_random_bytes(rng.random())
        .into_uuid()
        .to_string()
}

fn word(rng: &mut StdRng) -> &'static str {
    WORDS[rng.random_range(0..WORDS.len())]
}

fn sentence(rng: &mut StdRng, words: usize) -> String {
    (0..words).map(|_| word(rng)).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixtures_are_deterministic_and_ranges_agree() {
        let f = Fixture::new(7, 1_000);
        assert_eq!(f.post_rows(0..50), f.post_rows(0..50));
        assert_eq!(f.post_rows(0..50)[10..20], f.post_rows(10..20)[..]);
        assert_ne!(f.post_rows(0..50), Fixture::new(8, 1_000).post_rows(0..50));
    }

    #[test]
    fn posts_are_realistic_in_size_and_refer_to_authors() {
        let f = Fixture::new(1, 1_000);
        let authors: Vec<Value> = f.author_rows().iter().map(|a| a["id"].clone()).collect();
        let posts = f.post_rows(0..1_000);
        let bytes: usize = posts
            .iter()
            .map(|p| Value::Object(p.clone()).to_string().len())
            .sum();
        let average = bytes / posts.len();
        assert!((200..=500).contains(&average), "{average} bytes per post");
        assert!(posts.iter().all(|p| authors.contains(&p["author"])));
        let keys: std::collections::BTreeSet<&str> =
            posts.iter().map(|p| p["id"].as_str().unwrap()).collect();
        assert_eq!(keys.len(), posts.len(), "keys are unique");
    }

    #[test]
    fn a_spread_change_set_has_distinct_keys_of_the_fixture() {
        let f = Fixture::new(1, 10_000);
        let changes = Changes::spread(&f, 1_000);
        assert_eq!(changes.updated.len(), 1_000);
        let all: std::collections::BTreeSet<String> = f.post_keys(0..10_000).into_iter().collect();
        assert!(changes.updated.iter().all(|k| all.contains(k)));
        let distinct: std::collections::BTreeSet<&String> = changes.updated.iter().collect();
        assert_eq!(distinct.len(), 1_000);
    }
}
