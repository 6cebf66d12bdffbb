//! What the MySQL and the SQL Server executors share, engine-neutral, so
//! that neither engine imports the other:
//!
//! - [`connections`]: an engine's connections by name, the fleet id, what is advertised.
//! - [`exec`]: the `procedure` / `sql` executors' work and outcomes.
//! - [`failure`]: a failed job as reported (retryable or not, text, server error).
//! - [`ledger`]: the run ledger's shape (the committed row, replaying it).
//! - [`session`]: lock names, how a session ended well, progress messages.
//! - [`value`]: base64 and float helpers for results and parameters.
//! - [`paths`]: where dumps and backups go, their names and durable file moves.
//! - [`space`]: the free-space rule checked before a dump or an export writes.
//! - [`export`]: the `export` kind's file (CSV / JSON Lines encoding, compression,
//!   sha256, atomic write, manifest), fed rows by each engine's executor.
//! - [`retention`]: `keep_last` / `max_age` over those files, leftovers.
//! - [`report`]: what a `dump` job reports on either engine: notes (log tail and
//!   progress) and how it ended when it did not succeed.
//! - [`source`]: a `restore` job's file: where it may lie, its manifest, its sha256.
//! - [`fetch`]: a `restore` job's object: picked in a store, downloaded, verified.

pub mod connections;
pub mod exec;
pub mod export;
pub mod failure;
pub mod fetch;
pub mod ledger;
pub mod paths;
pub mod report;
pub mod retention;
pub mod session;
pub mod source;
pub mod space;
pub mod value;

pub use failure::Failure;
