//! How far a collection's push or pull has come, for progress displays.
//!
//! Owns the [`Progress`] notices the driver sends while it works, and whether totals are
//! counted: a total costs the pull one request (`filter_count`), so only a caller that shows
//! it (a terminal) asks for it. It must not change what a cycle does.

use serde::Serialize;

/// The phase a [`Progress`] notice is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProgressPhase {
    Push,
    Pull,
}

/// How far one phase of one collection has come.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Progress {
    pub collection: String,
    pub phase: ProgressPhase,
    /// Rows done so far in this phase (pushed changes, or pulled rows read).
    pub done: u64,
    /// Rows the phase will handle, when counted (see [`Engine::count_totals`](super::Engine::count_totals)).
    pub total: Option<u64>,
}
