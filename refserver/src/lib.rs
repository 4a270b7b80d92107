//! A Directus-compatible HTTP server for the subset of the Directus 12 API deltasync uses.
//!
//! It serves items (`/items`), collections and fields, activity, authentication and server
//! info with the request and response shapes, status codes, error codes and timestamp rules of
//! Directus 12.4, keeps everything in memory, and lets tests reach into its state, move its
//! clock and inject faults. [`proxy::FaultProxy`] puts seeded network faults in front of it,
//! or of a real Directus. It is used by tests, benchmarks and
//! `deltasync demo`; it is not a Directus replacement: there are no roles besides the admin,
//! no relations, files, flows or websockets, and revisions are kept (with their data) but
//! readable only in process.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! let server = refserver::start(refserver::Options::default()).await?;
//! println!("{} (token {})", server.url(), server.admin_token());
//! server.shutdown().await;
//! # Ok(()) }
//! ```

mod auth;
mod cell;
mod clock;
mod db;
mod error;
mod faults;
mod http;
pub mod proxy;
mod query;
mod schema;
mod server;
mod store;

pub use clock::Clock;
pub use db::Revision;
pub use error::{Error, InjectedFailure};
pub use faults::{Fault, FaultScope, Stats};
pub use schema::{CollectionDef, FieldDef, FieldMeta, FieldSchema, FieldType};
pub use server::{Options, Row, Server, ServerHandle, start};
