//! deltasync keeps local SQL tables (SQLite or PostgreSQL) in two-way sync with Directus
//! collections: it pushes local changes, pulls server changes page by page, reconciles
//! deletes both ways and resolves conflicts by a strategy chosen per collection.
//!
//! This crate is what a service embeds: it wires the [`engine`] to the Directus client and
//! the SQL store of [`adapters`], and re-exports what an application needs.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! use deltasync::{CollectionConfig, Config, FieldType, serde_json::json};
//!
//! // A Directus-compatible server for the example; point `url` at your Directus instead.
//! let server = refserver::start(Default::default()).await?;
//! use refserver::{CollectionDef, FieldDef, FieldType as ServerType};
//! server.state().create_collection(
//!     CollectionDef::new("notes")
//!         .field(FieldDef::uuid_pk("id"))
//!         .field(FieldDef::sync_timestamp("last_modified"))
//!         .field(FieldDef::new("title", ServerType::String)),
//! )?;
//!
//! let notes = CollectionConfig::new("notes").with_field("title", FieldType::String);
//! let config = Config::new(&server.url(), server.admin_token(), "sqlite::memory:", vec![notes]);
//! let sync = deltasync::open(config).await?;
//!
//! let key = sync.collection("notes")?.insert(json!({"title": "hello"}).as_object().unwrap().clone()).await?;
//! let report = sync.sync(None).await?;
//! assert_eq!(report.collections[0].pushed, 1);
//! assert_eq!(server.state().get("notes", &key).unwrap()["title"], "hello");
//! # Ok(()) }
//! ```

pub use adapters::{DirectusClient, SqlStore};
pub use engine::conflict::{FirstWriteWins, LastWriteWins, Manual};
pub use engine::ports::{CollectionStatus, ConflictRecord, Lease, LeaseWait};
pub use engine::service::{
    Activity, CollectionState, LastError, ServiceStatus, SyncEvent, SyncerHandle, SyncerOptions,
};
pub use engine::verify::CollectionDrift;
pub use engine::{
    Choice, Collection, CollectionReport, Conflict, ConflictKind, Error, ErrorKind, FieldChoice,
    FieldConflict, FieldSource, FieldSources, Key, LocalRow, Progress, ProgressPhase, RemoteError,
    RemoteErrorKind, Resolution, Resolver, Row, StoreError, StoreErrorKind, SyncOptions,
    SyncReport, SyncStatus, UsageError, UsageErrorKind,
};
pub use schema::{
    Auth, CollectionConfig, Config, ConfigError, ConfigErrorKind, Deletes, FieldConfig, FieldType,
    KeyType, Merge, Secret, Strategy,
};
pub use serde_json;
pub use tokio_util::sync::CancellationToken;

#[cfg(feature = "metrics")]
pub mod metrics;

/// The engine as configured from a schema file: Directus remote, SQL store.
pub type Deltasync = engine::Engine<SqlStore, DirectusClient>;

/// The sync service of a [`Deltasync`]: spawn [`Syncer::run`] on the application's runtime.
pub type Syncer = engine::service::Syncer<SqlStore, DirectusClient>;

/// Why [`open`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Adapter(#[from] adapters::Error),
    #[error(transparent)]
    Engine(#[from] Error),
}

/// Opens the local database named by `config`, creates or upgrades its tables, and returns
/// the engine ready to [`sync`](engine::Engine::sync).
pub async fn open(config: Config) -> Result<Deltasync, OpenError> {
    config.validate()?;
    let store = SqlStore::connect(&config.local.database).await?;
    let remote = DirectusClient::new(&config.remote)?;
    let located = config.clone();
    match engine::Engine::open(config, store, remote).await {
        // The file asks for something the local tables cannot follow: point at it.
        Err(Error::SchemaChanged(change)) => Err(OpenError::Config(located.error_at(
            ConfigErrorKind::Incompatible,
            &format!("collections.{}.fields.{}", change.collection, change.field),
            change.to_string(),
        ))),
        opened => Ok(opened?),
    }
}

/// Loads a schema file and opens it (see [`open`]).
pub async fn open_file(path: impl AsRef<std::path::Path>) -> Result<Deltasync, OpenError> {
    open(Config::load(path)?).await
}

/// How server values are read and written per field type, for tools.
pub use engine::decode as engine_decode;
/// The engine's ports (the `Store` and `Remote` traits and their data), for tools.
pub use engine::ports as engine_ports;

/// The JSON Schema of the schema file, for editors.
pub fn schema_json() -> serde_json::Value {
    schema::json_schema()
}
