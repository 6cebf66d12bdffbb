//! SQL Server (`kind = "mssql"`) through tiberius 0.13.
//!
//! Layout:
//! - [`connection`]: opening a session (tiberius config, SQL Browser, TLS,
//!   login) for a connection whose settings are [`crate::config::mssql`].
//! - [`connections`]: the agent's SQL Server connections by name, and the
//!   fleet id that database-side names (lock, ledger key) carry.
//! - [`exec`]: the `procedure` and `sql` executors (applock exclusion, run
//!   ledger, result capture, cancel by TDS attention), with [`params`] (names
//!   and typed values), [`session`] (the statements of a job, in order),
//!   [`ledger`] (the run ledger), [`capture`] and [`value`] (results as JSON).
//! - [`backup`]: the `dump` executor = native `BACKUP DATABASE` with progress,
//!   `RESTORE VERIFYONLY`, manifest and retention.
//! - [`restore`]: the `restore` executor = `RESTORE DATABASE … WITH MOVE` of
//!   such a backup under a new name, after its sha256 is checked.
//! - [`failure`]: how a failure is classified (its shape is
//!   [`crate::db::common::failure`]).

pub mod backup;
pub mod capture;
pub mod connection;
pub mod connections;
pub mod exec;
pub mod export;
pub mod failure;
pub mod ledger;
pub mod params;
pub mod restore;
pub mod session;
pub mod value;

pub use backup::BackupExecutor;
pub use connections::Connections;
pub use exec::MssqlExecutor;
pub use restore::MssqlRestoreExecutor;
