//! The `restore` kind on MySQL/MariaDB connections: a dump written by a
//! `dump` job on this agent, loaded into a database named in the job.
//!
//! # Flow of one job (`flow::Run::go`, one function per step)
//! 1. **Checks**: the target database is a name a restore may create
//!    ([`baton_proto::restore::database_refusal`]: no system database), quoted
//!    with backticks wherever it is used; one source is given (`file`, or
//!    `store` with `key` or `key_prefix`).
//! 2. **Source** ([`crate::db::common::source`]; for an object this step
//!    comes after step 4, see 4a): the file must be a
//!    `.sql.zst` under one of this agent's MySQL dump directories (every
//!    connection's `dump_dir`, else `<state_dir>/dumps`), with the manifest
//!    its dump job wrote beside it (missing or unusable: the job fails for
//!    good and nothing is done).
//! 3. **Access**: the client (`mariadb`, else `mysql`, found as the dump
//!    finds it) with a 0600 defaults file in a private directory, as for a
//!    dump; the password never in argv or the environment.
//! 4. **Target**: whether the database exists. Existing and `replace` not
//!    set: refused before the file is read (or the object downloaded).
//!
//!    4a. **Download** (`source.store` only, [`crate::db::common::fetch`]):
//!    the object (or the newest under `key_prefix` with its manifest) is
//!    streamed into a private directory under the connection's dump
//!    directory and its sha256 checked against its manifest object and its
//!    `x-amz-meta-sha256` (a mismatch fails for good, nothing touched a
//!    database); then step 2 reads it as a dump file. The download is
//!    removed when the job ends, whatever the outcome.
//! 5. **Integrity**: the file's sha256 against the manifest's, before
//!    anything touches a database; a mismatch fails for good.
//! 6. **Create**: with `replace` the existing database is dropped; then
//!    `CREATE DATABASE` with the manifest's character set and collation.
//! 7. **Load**: the file is decompressed and streamed into the client in
//!    64 KiB chunks (bounded memory) through the dump filter
//!    ([`super::dump::rewrite`]): events are created **disabled** (a copy must
//!    not run the source's schedules: `ALTER EVENT … ENABLE` after a real
//!    recovery), and the `ALTER DATABASE` lines the dump tool writes around
//!    routines and events, which name the source database, are pointed at
//!    the target. The dump names its source nowhere else. On the way the file
//!    and the SQL are hashed again and compared with the manifest (the file
//!    cannot have changed between step 5 and the load unnoticed).
//! 8. **Figures**: tables, rows and checksums of the restored database and
//!    its object counts, taken as the dump's restore check takes them
//!    ([`super::dump::verify::snapshot`]), compared with the manifest's
//!    `verify.tables` and `verify.objects` ([`super::dump::verify::compare`]).
//!    A dump made without `verify` has no figures: the restore reports its
//!    own and says that nothing was compared. Any difference fails the job.
//!
//! # Failures and cancel
//! A failure or a stop (cancel, lease loss, timeout) after step 6 drops the
//! database this job created (with `replace` too: the old database was
//! dropped in step 6, so a failed replace leaves no database of that name,
//! never a half-restored one; the file is kept, restore it again). A refusal
//! in steps 1–5 changes nothing. Retryable: connection trouble and local I/O;
//! never a refusal, a mismatch or an SQL error from the dump.
//!
//! Privileges: `CREATE` and `DROP` on the target, what the dump's statements
//! need (`SET USER`/`SUPER` for objects of other definers, `EVENT`,
//! `TRIGGER`, `CREATE ROUTINE`), `SELECT` for the figures.

mod flow;

use std::collections::BTreeMap;
use std::sync::Arc;

use baton_proto::{JobKind, JobSpec};

use super::dump::{DumpExecutor, Settings};
use crate::config::StoreConfig;
use crate::db::common::{fetch, source};
use crate::executor::groups::ProcessGroups;
use crate::executor::stop::Stop;
use crate::executor::{BoxFuture, Executor, Job, Outcome};

/// This module's errors; each knows whether a retry may help.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The job names a connection this agent does not have (or not a MySQL one).
    #[error("connection {0:?} is not a MySQL/MariaDB connection configured on this agent")]
    UnknownConnection(String),
    /// A field of the spec cannot be used.
    #[error("spec.{field}: {message}")]
    Invalid {
        /// The field inside the spec.
        field: &'static str,
        /// Why.
        message: String,
    },
    /// The source file or its manifest cannot be used.
    #[error(transparent)]
    Source(#[from] source::Error),
    /// The object cannot be downloaded, or is not what its manifest says.
    #[error(transparent)]
    Fetch(#[from] fetch::Error),
    /// The target exists and `replace` is not set.
    #[error(
        "database {database} already exists on connection {connection}; set replace = true to \
         drop and replace it (nothing was done)"
    )]
    Exists {
        /// The target.
        database: String,
        /// The connection.
        connection: String,
    },
    /// The restored database differs from the manifest's figures.
    #[error("the restored database does not match the dump's manifest: {0}")]
    Mismatch(String),
    /// The client, a tool or the file system (the dump module's errors).
    #[error(transparent)]
    Dump(super::dump::Error),
    /// The job was stopped.
    #[error("stopped")]
    Stopped(Stop),
}

impl From<super::dump::Error> for Error {
    fn from(e: super::dump::Error) -> Self {
        match e {
            super::dump::Error::Stopped(stop) => Error::Stopped(stop),
            e => Error::Dump(e),
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
            Error::UnknownConnection(_)
            | Error::Invalid { .. }
            | Error::Source(_)
            | Error::Exists { .. }
            | Error::Mismatch(_) => false,
            Error::Fetch(e) => e.retryable(),
            Error::Dump(e) => e.retryable(),
            Error::Stopped(_) => true,
        }
    }
}

/// Runs `restore` jobs on MySQL/MariaDB connections.
#[derive(Debug, Clone)]
pub struct RestoreExecutor {
    dump: DumpExecutor,
    stores: Arc<BTreeMap<String, StoreConfig>>,
}

impl RestoreExecutor {
    /// An executor with the dump executor's settings (connections, dump
    /// directories, tools) whose client processes are recorded in `groups`.
    /// Downloads a previous run of the agent left under the dump
    /// directories are removed.
    pub fn new(settings: Settings, groups: ProcessGroups) -> Self {
        fetch::remove_leftovers(&settings.dump_roots());
        RestoreExecutor {
            dump: DumpExecutor::new(settings, groups),
            stores: Arc::default(),
        }
    }

    /// With the agent's object stores (`[stores.*]`), for `source.store`.
    pub fn with_stores(mut self, stores: BTreeMap<String, StoreConfig>) -> Self {
        self.stores = Arc::new(stores);
        self
    }

    fn settings(&self) -> &Settings {
        self.dump.settings()
    }

    fn stores(&self) -> &BTreeMap<String, StoreConfig> {
        &self.stores
    }
}

impl Executor for RestoreExecutor {
    fn kind(&self) -> JobKind {
        JobKind::Restore
    }

    fn available(&self) -> bool {
        !self.settings().connections.is_empty()
    }

    fn handles(&self, spec: &JobSpec) -> bool {
        spec.connection()
            .is_some_and(|c| self.settings().connections.contains_key(c))
    }

    fn execute(&self, job: Job) -> BoxFuture<'_, Outcome> {
        Box::pin(flow::run(self, job))
    }
}

#[cfg(all(test, unix))]
mod server_tests;
