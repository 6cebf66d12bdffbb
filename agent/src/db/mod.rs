//! Databases next to the agent: the executors that run `procedure`, `sql`
//! and `dump` jobs on the connections configured on this host (their
//! settings are plain values in [`crate::config::mysql`] and
//! [`crate::config::mssql`]).
//!
//! - [`common`]: what both engines share (failure shape, run ledger shape,
//!   lock names, dump file names and retention); neither engine imports the other.
//! - [`mysql`]: MySQL/MariaDB: pools per connection, the `procedure` / `sql`
//!   executors (database-side lock, run ledger, kill on the server) and
//!   [`mysql::dump`] (the `dump` executor: `mariadb-dump` through zstd).
//! - [`mssql`]: SQL Server through tiberius: the `procedure` / `sql`
//!   executors (applock, run ledger, cancel by attention) and
//!   [`mssql::backup`] (the `dump` executor: native `BACKUP DATABASE`).
//! - [`result_sets`]: the bounded result sets both engines capture.

pub mod common;
pub mod mssql;
pub mod mysql;
pub mod result_sets;
#[cfg(all(test, unix))]
pub(crate) mod test_files;
#[cfg(all(test, unix))]
pub(crate) mod test_server;
