//! The `dump` kind on SQL Server connections: a native, verified
//! `BACKUP DATABASE` into the connection's `backup_dir`, with progress, a
//! manifest and retention.
//!
//! # Flow of one job
//! 1. **Checks**: the database name must be a valid name
//!    ([`baton_proto::valid_name`], not starting with a dot or a dash) — it is
//!    one path component, so a backup never leaves
//!    `<backup_dir>/<connection>/<database>/`; the connection must have
//!    `backup_dir` (else the job fails for good, naming
//!    `[connections.<name>] backup_dir`). The directory is created (0750) when
//!    missing: the agent runs on the database host and SQL Server writes into
//!    the same directory.
//! 2. **Session** (no command timeout: a backup may take hours): `SELECT
//!    @@SPID`, the server's version, edition and banner, and the database's
//!    `state_desc` from `sys.databases` (missing or not `ONLINE`: fails for good).
//! 3. **Backup** ([`sql::backup_statement`]): `BACKUP DATABASE @P1 TO DISK =
//!    @P2 WITH CHECKSUM, COPY_ONLY, INIT, STATS = 5` (+ `COMPRESSION` when
//!    `backup_compression = true`) into `<UTC %Y%m%dT%H%M%SZ>-job<id>.bak.partial`.
//!    The path is built by the agent, never taken from the job. tiberius does
//!    not surface INFO messages, so a second connection ([`progress`]) polls
//!    `sys.dm_exec_requests.percent_complete` of the backup's session every
//!    second and publishes it for heartbeats; at the end progress is 100 %.
//! 4. **Verify**: `RESTORE VERIFYONLY FROM DISK = @P1 WITH CHECKSUM` on the
//!    partial file, always.
//! 5. **Files** ([`files`]): sha256 of the file when the agent can read it
//!    (else `sha256: null` and why), rename to `.bak`, fsync of the
//!    directory, then the manifest `<stem>.manifest.json` (temp file, fsync,
//!    rename; [`manifest`]) — the same JSON plus paths is `result.data`.
//! 6. **Retention** (`keep_last`, `max_age`) in the database's directory after
//!    a success only, never deleting the backup just written; `.bak.partial`
//!    files older than a day are leftovers of a crash and go too
//!    ([`crate::db::common::retention::apply_for`]).
//!
//! # Failures, cancel, timeouts
//! Server errors keep number, class, state and text ([`super::failure`]):
//! `SQL Server error 3201 (class 16, state 1): Cannot open backup device …`,
//! `data.error` = `{number, class, state, procedure, line, message}`;
//! retryable only when the job's `retry_codes` list the number (or the
//! session itself failed). Connection failures retry; bad requests and
//! settings do not. A cancel, the lease loss or the timeout drops the
//! request, sends a TDS ATTENTION (`cancel_query`, 2 s grace) and drops the
//! connection; `data.cancel = {"attention_sent": true, "acknowledged": …}`.
//! Any failure or stop removes the `.partial` (retried for ~2 s: SQL Server
//! may still hold the file), so a file that looks complete is always a
//! verified backup.

mod files;
mod flow;
pub mod manifest;
mod progress;
pub mod sql;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use baton_proto::{JobKind, JobSpec};

use super::Connections;
use super::failure::Failure;
use crate::executor::{BoxFuture, Executor, Job, Outcome};

pub use files::{BAK, BAK_PARTIAL_SUFFIX, BAK_SUFFIX, Layout};

/// How long an ATTENTION may take to be acknowledged.
pub const ATTENTION_GRACE: Duration = Duration::from_secs(2);
/// Send an ATTENTION for the request `client` runs and wait up to
/// [`ATTENTION_GRACE`] for its acknowledgement; whether it came (a backup's
/// and a restore's stop).
pub async fn attention_acknowledged(
    client: &mut crate::db::mssql::connection::MssqlClient,
) -> bool {
    matches!(
        tokio::time::timeout(ATTENTION_GRACE, client.cancel_query()).await,
        Ok(Ok(()))
    )
}

/// How often the backup's progress is polled.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(1);

use crate::db::common::paths::BadName;
/// Why a backup stopped before its end.
pub use crate::executor::stop::Stop;

/// This module's errors; each knows whether a retry may help.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A bad request or setting that a retry will not fix.
    #[error("{0}")]
    Setup(String),
    /// The database name cannot be used.
    #[error(
        "database name {0:?} is not valid (letters, digits, '_', '-', '.'; not starting with '.' or '-')"
    )]
    InvalidDatabase(String),
    /// The connection has no backup directory.
    #[error(
        "connection {0} has no backup directory: set [connections.{0}] backup_dir (where SQL \
         Server on this host writes backups)"
    )]
    NoBackupDir(String),
    /// The database does not exist (or this login cannot see it).
    #[error("database {database} does not exist on connection {connection}")]
    NoDatabase {
        /// The database.
        database: String,
        /// The connection.
        connection: String,
    },
    /// The database exists but cannot be backed up now.
    #[error("database {database} on connection {connection} is {state}, not ONLINE")]
    NotOnline {
        /// The database.
        database: String,
        /// The connection.
        connection: String,
        /// Its `state_desc`.
        state: String,
    },
    /// No session could be opened.
    #[error(transparent)]
    Connect(#[from] crate::db::mssql::connection::ConnectError),
    /// SQL Server (or the client) reported a failure.
    #[error("{}", .0.message)]
    Server(Failure),
    /// `RESTORE VERIFYONLY` refused the backup.
    #[error("the backup did not verify: {}", .0.message)]
    Verify(Failure),
    /// A server reply without what the contract promises.
    #[error("unexpected reply from SQL Server: {0}")]
    Reply(String),
    /// Local file-system trouble.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// The job was stopped.
    #[error("stopped")]
    Stopped(Stop),
}

impl From<BadName> for Error {
    fn from(bad: BadName) -> Self {
        match bad {
            BadName::Connection(_) => Error::Setup(bad.to_string()),
            BadName::Database(d) => Error::InvalidDatabase(d),
        }
    }
}

impl From<Stop> for Error {
    fn from(stop: Stop) -> Self {
        Error::Stopped(stop)
    }
}

impl Error {
    /// Whether another attempt may succeed.
    pub fn retryable(&self) -> bool {
        match self {
            Error::Setup(_)
            | Error::InvalidDatabase(_)
            | Error::NoBackupDir(_)
            | Error::NoDatabase { .. }
            | Error::Reply(_) => false,
            Error::Connect(c) => c.retryable(),
            Error::NotOnline { .. } | Error::Io { .. } | Error::Stopped(_) => true,
            Error::Server(f) | Error::Verify(f) => f.retryable,
        }
    }

    /// `{number, class, state, procedure, line, message}` of a server error.
    pub fn server_error(&self) -> Option<&serde_json::Value> {
        match self {
            Error::Server(f) | Error::Verify(f) => f.error.as_ref(),
            _ => None,
        }
    }

    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            what: what.into(),
            source,
        }
    }
}

/// Runs `dump` jobs on SQL Server connections as `BACKUP DATABASE`.
#[derive(Debug, Clone)]
pub struct BackupExecutor {
    connections: Arc<Connections>,
    state_dir: PathBuf,
}

impl BackupExecutor {
    /// An executor for `connections`; `state_dir` is the agent's.
    pub fn new(connections: Arc<Connections>, state_dir: PathBuf) -> Self {
        BackupExecutor {
            connections,
            state_dir,
        }
    }

    /// The agent's state directory.
    pub fn state_dir(&self) -> &std::path::Path {
        &self.state_dir
    }
}

impl Executor for BackupExecutor {
    fn kind(&self) -> JobKind {
        JobKind::Dump
    }

    fn available(&self) -> bool {
        !self.connections.is_empty()
    }

    fn handles(&self, spec: &JobSpec) -> bool {
        self.connections.handles(spec)
    }

    fn execute(&self, job: Job) -> BoxFuture<'_, Outcome> {
        Box::pin(flow::run(self.connections.clone(), job))
    }
}
