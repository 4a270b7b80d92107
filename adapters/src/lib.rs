//! Adapters: all IO of deltasync.
//!
//! # Layout
//! - [`directus`]: the Directus REST client, implementing [`engine::ports::Remote`].
//! - `realtime`: Directus realtime (`/websocket`): which collections the server says changed.
//! - `query`: the Directus filter dialect the client speaks for the engine's typed requests.
//! - [`store`]: the SQLite/PostgreSQL store, implementing [`engine::ports::Store`].
//! - [`sql`]: SQL text for both backends (quoting, placeholders, types, triggers).
//! - `lease`: the leases of the local database (advisory locks, lock files).
//! - [`watch`]: notices of local writes made by other processes (`LISTEN`, `data_version`).
//!
//! The engine never sees reqwest or sea-orm; these types are all it gets.

mod batch;
pub mod directus;
mod lease;
#[allow(unsafe_code)]
mod nodelay;
mod query;
mod realtime;
pub mod sql;
pub mod store;
pub mod watch;

pub use batch::SqlBatch;
pub use directus::DirectusClient;
pub use store::SqlStore;

/// Failures setting up an adapter (failures during sync are [`engine::Error`]s).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The HTTP client could not be built.
    #[error("HTTP client: {0}")]
    Http(String),
    /// The local database could not be opened.
    #[error("cannot open the local database {url}: {message}")]
    Connect { url: String, message: String },
}
