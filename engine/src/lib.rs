//! The deltasync engine: plans and runs two-way sync between local tables and Directus.
//!
//! # Layout
//! - [`model`]: rows, keys, server stamps and sync states.
//! - [`cursor`]: the pull position and which page to ask for next (pure).
//! - [`decode`]: server rows checked against the configured types (pure).
//! - [`plan`]: what a pulled row or a logged delete does locally (pure).
//! - [`conflict`]: conflicts and the strategies that resolve them (pure).
//! - [`decide`]: what a server's answer, the activity log or a person's choice means (pure).
//! - [`fit`]: whether a server collection can be synced as configured without missing rows (pure).
//! - [`merge`]: the field-by-field three-way merge of a row changed on both sides (pure).
//! - [`ports`]: the [`Remote`](ports::Remote) and [`Store`](ports::Store) traits adapters implement.
//! - [`handle`]: local writes through Rust, same meaning as the plain-SQL contract.
//! - [`sync`]: the driver that sequences push, pull and reconcile through the ports.
//! - [`service`]: the [`Syncer`](service::Syncer), which runs each collection's cycle when
//!   something calls for it, for as long as an application runs.
//!
//! Only [`sync`] and [`service`] await; everything it decides comes from the pure modules, which never do IO.

pub mod commit;
pub mod conflict;
pub mod cursor;
pub mod decide;
pub mod decode;
pub mod error;
pub mod fit;
pub mod handle;
pub mod merge;
pub mod model;
pub mod plan;
pub mod ports;
pub mod service;
pub mod sync;
#[cfg(test)]
mod testing;
pub mod verify;

pub use conflict::{Conflict, ConflictKind, FieldChoice, FieldConflict, Resolution, Resolver};
pub use error::{
    Error, ErrorKind, RemoteError, RemoteErrorKind, Result, SchemaChange, ServerMismatch,
    StoreError, StoreErrorKind, UsageError, UsageErrorKind,
};
pub use handle::Collection;
pub use merge::{FieldSource, FieldSources};
pub use model::{Key, LocalRow, RemoteRow, Row, Stamp, SyncStatus};
pub use sync::{
    Choice, CollectionReport, Engine, MergeNote, Progress, ProgressPhase, SyncOptions, SyncReport,
};
