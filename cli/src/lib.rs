//! The tools behind the `deltasync` command: writing a schema file from a server (`init`),
//! running the sync service (`run`), checking a server against one (`validate_remote`), creating collections on a server
//! (`remote_setup`, also used by `scripts/directus seed`, the tests and the benchmarks) and
//! the demo.
//!
//! A service embeds the `deltasync` library, not this crate: this one brings the command
//! line's dependencies and the reference server.

pub mod demo;
pub mod init;
pub mod progress;
pub mod remote_setup;
pub mod run;
pub mod validate_remote;
