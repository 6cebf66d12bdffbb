//! Databases next to the agent: connections configured on this host, and the
//! executors that run `procedure`, `sql` and `dump` jobs on them.
//!
//! - [`connection`]: `[connections.<name>]` settings (password from a file or
//!   the environment, never inline).
//! - [`mssql_connection`]: `kind = "mssql"` settings (SQL Server; executors
//!   not built yet).
//! - [`result_sets`]: the bounded result sets both engines capture.
//! - [`mysql`]: pools per connection and the `procedure` / `sql` executors
//!   (database-side lock, run ledger, kill on the server).

pub mod connection;
pub mod dump;
pub mod mssql;
pub mod mssql_connection;
pub mod mysql;
pub mod result_sets;
#[cfg(all(test, unix))]
pub(crate) mod test_server;
