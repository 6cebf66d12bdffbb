//! The `restore` kind on SQL Server connections: a native backup written by
//! a `dump` job on this agent, restored under a database name given in the
//! job with `RESTORE DATABASE … WITH MOVE`.
//!
//! # Flow of one job (`flow::Run::go`)
//! 1. **Checks**: the target is a name a restore may create
//!    ([`baton_proto::restore::database_refusal`]; never a system database).
//! 2. **Source** ([`crate::db::common::source`]): a `.bak` under one of this
//!    agent's `backup_dir`s, with the manifest its dump job wrote
//!    (`kind = "mssql_native_backup"`, a sha256). Missing or unusable: the job
//!    fails for good, nothing is done. SQL Server reads the file itself, so
//!    it must see the same path (it runs on the agent's host, as for backups).
//!    With `source.store` (an object an `upload` wrote) this step comes
//!    after step 3: the object is downloaded into a private directory under
//!    the connection's `backup_dir` and checked against its manifest
//!    ([`crate::db::common::fetch`]), then located there; the download is
//!    removed when the job ends.
//! 3. **Target** (contract B2): an existing database without `replace` is
//!    refused before the file is read (or the object downloaded).
//! 4. **Integrity**: the file's sha256 against the manifest's, before
//!    anything is sent that changes the server.
//! 5. **Plan** (R1, R2): `RESTORE FILELISTONLY` gives the logical files;
//!    each is moved to the instance's default data or log path (else beside
//!    the source's file) as `<target>_<n>_<logical>.mdf|.ndf|.ldf`
//!    ([`sql::plan_moves`]), so a restore under a new name never touches the
//!    source's files.
//! 6. **Restore** (R3): `RESTORE DATABASE @P1 FROM DISK = @P2 WITH CHECKSUM,
//!    STATS = 5, MOVE @P3 TO @P4, …` (names and paths bound through
//!    `sp_executesql`), `, REPLACE` only with `replace = true`; no command
//!    timeout.
//! 7. **Figures** (R4): tables and rows (`sys.partitions`) of the restored
//!    database, reported like the MySQL restore's. Backup manifests carry no
//!    table figures, so nothing is compared: the page checksums (`WITH
//!    CHECKSUM`) and the file's sha256 are the integrity checks; per-table
//!    checksums are `null`.
//!
//! # Failures and cancel
//! A cancel, the lease loss or the timeout sends an ATTENTION (2 s grace)
//! and drops the connection. A failed or stopped restore into a **new**
//! database drops it (R5 on a new connection; SQL Server leaves a failed
//! restore's database `RESTORING`). With `replace = true` the database is
//! left as SQL Server left it (typically `RESTORING`: the old contents are
//! gone either way) and the job says so. Errors keep SQL Server's number,
//! class and text (`data.error`), retryable only when the job's
//! `retry_codes` list the number.

mod flow;
pub mod sql;

use std::collections::BTreeMap;
use std::sync::Arc;

use baton_proto::{JobKind, JobSpec};

use super::Connections;
use super::failure::Failure;
use crate::config::StoreConfig;
use crate::db::common::{fetch, source};
use crate::executor::stop::Stop;
use crate::executor::{BoxFuture, Executor, Job, Outcome};

/// This module's errors; each knows whether a retry may help.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A field of the spec or a setting cannot be used.
    #[error("{0}")]
    Setup(String),
    /// The source file or its manifest cannot be used.
    #[error(transparent)]
    Source(#[from] source::Error),
    /// The object cannot be downloaded, or is not what its manifest says.
    #[error(transparent)]
    Fetch(#[from] fetch::Error),
    /// The target exists and `replace` is not set.
    #[error(
        "database {database} already exists on connection {connection}; set replace = true to \
         restore over it (nothing was done)"
    )]
    Exists {
        /// The target.
        database: String,
        /// The connection.
        connection: String,
    },
    /// No session could be opened.
    #[error(transparent)]
    Connect(#[from] crate::db::mssql::connection::ConnectError),
    /// SQL Server (or the client) reported a failure.
    #[error("{}", .0.message)]
    Server(Failure),
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

impl From<Stop> for Error {
    fn from(stop: Stop) -> Self {
        Error::Stopped(stop)
    }
}

impl Error {
    /// Whether another attempt may succeed.
    pub fn retryable(&self) -> bool {
        match self {
            Error::Setup(_) | Error::Source(_) | Error::Exists { .. } | Error::Reply(_) => false,
            Error::Connect(c) => c.retryable(),
            Error::Server(f) => f.retryable,
            Error::Fetch(e) => e.retryable(),
            Error::Io { .. } | Error::Stopped(_) => true,
        }
    }

    /// `{number, class, state, procedure, line, message}` of a server error.
    pub fn server_error(&self) -> Option<&serde_json::Value> {
        match self {
            Error::Server(f) => f.error.as_ref(),
            _ => None,
        }
    }
}

/// Runs `restore` jobs on SQL Server connections.
#[derive(Debug, Clone)]
pub struct MssqlRestoreExecutor {
    connections: Arc<Connections>,
    stores: Arc<BTreeMap<String, StoreConfig>>,
}

impl MssqlRestoreExecutor {
    /// An executor for `connections`. Downloads a previous run of the agent
    /// left under the backup directories are removed.
    pub fn new(connections: Arc<Connections>) -> Self {
        let roots: Vec<_> = connections
            .iter()
            .filter_map(|c| c.backup.dir.clone())
            .collect();
        fetch::remove_leftovers(&roots);
        MssqlRestoreExecutor {
            connections,
            stores: Arc::default(),
        }
    }

    /// With the agent's object stores (`[stores.*]`), for `source.store`.
    pub fn with_stores(mut self, stores: BTreeMap<String, StoreConfig>) -> Self {
        self.stores = Arc::new(stores);
        self
    }
}

impl Executor for MssqlRestoreExecutor {
    fn kind(&self) -> JobKind {
        JobKind::Restore
    }

    fn available(&self) -> bool {
        !self.connections.is_empty()
    }

    fn handles(&self, spec: &JobSpec) -> bool {
        self.connections.handles(spec)
    }

    fn execute(&self, job: Job) -> BoxFuture<'_, Outcome> {
        Box::pin(flow::run(
            self.connections.clone(),
            self.stores.clone(),
            job,
        ))
    }
}
