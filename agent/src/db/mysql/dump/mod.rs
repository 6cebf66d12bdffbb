//! The `dump` kind on MySQL/MariaDB connections: a consistent online dump by
//! `mariadb-dump`/`mysqldump`, streamed through zstd into the dump directory,
//! with a manifest, retention and an optional restore check.
//!
//! # Flow of one job
//! `flow::Run::go` is this list, one function per step (`check`, `tool`,
//! `access`, `probe`, `make_room`, `write` for 6–7, `after_dump` for 8–9,
//! `manifest`/`write_manifest`/`report` for 10, `retention`).
//! 1. **Checks**: the connection must be a configured MySQL/MariaDB one; the
//!    database name must be a valid name ([`baton_proto::valid_name`], not
//!    starting with a dot or a dash) — it becomes one argv element and one path
//!    component, so a dump can never leave `<dump_dir>/<connection>/<database>/`.
//!    Extra flags come from the connection's allow-list; `--skip-comments` is
//!    refused (it removes the trailer that proves a dump complete) and so is
//!    `--no-create-info` with `verify` (nothing could be restored).
//! 2. **Tool**: `dump_tool` of the connection, else `mariadb-dump`, then
//!    `mysqldump` on PATH; its `--version` is recorded and says whether it is
//!    MariaDB's or Oracle's (they spell TLS options differently). The SQL
//!    client (`mariadb`, else `mysql`) is looked up next to the tool, then on PATH.
//! 3. **Credentials**: a `[client]` defaults file (user, password, host/port or
//!    socket, TLS) written 0600 in a private 0700 directory under
//!    `<state_dir>/dump-tmp/`, passed as the FIRST argument
//!    `--defaults-extra-file=…` to every tool and client run, and removed when
//!    the job ends, whatever the ending. The password is never in argv, the
//!    environment of the children (which is cleared) or logs.
//! 4. **Probe** (SQL client): server version, the database's character set
//!    (this also proves it exists), the size estimate
//!    `SUM(data_length + index_length)` from `information_schema.TABLES`, and
//!    whether `mysql.proc` is readable, and `CURRENT_USER()`. On MariaDB
//!    10.11 without `SELECT ON mysql.proc`, a routine of another definer that
//!    the login holds no privilege on is invisible to it and left out (the
//!    tool exits 0 — a warning in the manifest naming the grant); one it may
//!    EXECUTE makes the tool fail (`insufficient privileges to SHOW CREATE`,
//!    exit 2 — the job's error names the grant). MySQL 8 has no `mysql.proc`
//!    (error 1146): no warning.
//! 5. **Free space** ([`space`]): the dump directory's filesystem must have
//!    `estimate + dump_reserve_mb` (default 64 MiB) free. Compression is not counted on, so a dump is
//!    only refused when even the uncompressed estimate would not fit.
//! 6. **Dump** ([`stream`]): `<tool> --defaults-extra-file=F --single-transaction
//!    --routines --triggers --events --hex-blob --default-character-set=utf8mb4
//!    [extra flags] <database>`, stdin null, in its own process group; stdout is
//!    read in 64 KiB chunks, hashed (sha256 of the SQL), compressed (zstd level
//!    3), hashed again (sha256 of the file) and written to
//!    `<ts>-job<id>.sql.zst.partial`. Progress goes out in heartbeats every second.
//! 7. **Success criteria**: exit status 0, no error line on stderr, and the SQL
//!    ends with the `-- Dump completed` trailer. Then fsync, rename to
//!    `.sql.zst`, fsync the directory. Any failure removes the `.partial`.
//! 8. **After the dump**: the binlog position (from the dump itself when
//!    `--master-data=2`/`--gtid` put it there; else `SHOW MASTER STATUS` and
//!    `@@gtid_binlog_pos` right after the dump, marked as such; null when
//!    neither is allowed) and, for `verify`, the source's table checksums and
//!    object counts ([`verify`]).
//! 9. **Verify** (`verify: true`): restore into a scratch database
//!    `baton_verify_<job>_<random>` and compare (see [`verify`] for what is
//!    compared and the limits). The scratch database is dropped in every
//!    case where it was (or may have been) created; a `CREATE DATABASE` the
//!    server refuses is reported as such ("the restore check did not run"),
//!    with nothing to drop.
//!
//! Times: `started_at`/`ended_at` of the manifest are RFC 3339 UTC with
//! milliseconds ([`baton_proto::time`]); `duration_ms` and the summary's
//! "in 0.2 s" come from the monotonic clock.
//! 10. **Manifest** `<ts>-job<id>.manifest.json` (temp file, fsync, rename),
//!     and the same JSON plus paths as the job's `result.data`.
//! 11. **Retention** ([`retention`], shared with SQL Server backups in
//!     [`crate::db::common`]) after a successful job only.
//!
//! A cancel, the lease loss or the timeout kills the tool's process group
//! (SIGTERM, then SIGKILL after a grace; SIGKILL at once on lease loss) and
//! removes the `.partial`; a stop after the dump was renamed (during the
//! restore check) removes the dump too. Only a dump whose verification found
//! differences (or could not be restored for good) is kept although the job
//! failed, for investigation.
//!
//! # Failures and retries
//! Not retryable: bad requests and settings, the free-space refusal, a failed
//! restore check, and tool/client errors carrying a privilege or similar code
//! (1044, 1045, 1049, 1064, 1142, 1143, 1227, 1356, 1370, 1449, 1698, or
//! "insufficient privileges"). Retryable: connection trouble (2002, 2013, …),
//! an incomplete dump (no trailer), local I/O errors and anything unknown.
//!
//! Dumps go to the connection's `dump_dir`, else `<state_dir>/dumps`.
//!
//! # Tests
//! Unit tests run everywhere (fake tool and client scripts cover every path);
//! `server_tests.rs` needs a real server: `BATON_TEST_MYSQL_SOCKET` = a socket
//! where root logs in without a password, plus `mariadb-dump`, `mariadb`,
//! `zstd` and `sha256sum` on PATH; without the socket they skip with the
//! reason (`db::test_server`).

pub(crate) mod client;
pub(crate) mod defaults;
mod flow;
pub mod manifest;
pub(crate) mod messages;
mod process;
pub mod rewrite;
pub use crate::db::common::space;
pub mod stream;
pub mod verify;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use baton_proto::{JobKind, JobSpec};

use crate::config::mysql::MysqlConnection;
use crate::executor::command::INHERITED_ENV;
use crate::executor::groups::ProcessGroups;
use crate::executor::{BoxFuture, Executor, Job, Outcome};

pub use crate::db::common::paths::{DumpName, MANIFEST_SUFFIX, PARTIAL_SUFFIX, SQL_ZST_SUFFIX};
pub use crate::db::common::retention;

/// Time between SIGTERM and SIGKILL for the dump tool.
pub const DEFAULT_TERM_GRACE: Duration = Duration::from_secs(2);
/// Bytes of the tool's (and the client's) stderr kept.
pub const DEFAULT_MAX_STDERR_BYTES: usize = 64 * 1024;

use crate::db::common::paths::BadName;
/// Why a dump job stopped before its end.
pub use crate::executor::stop::Stop;

/// This module's errors. Each knows whether a retry may help.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The job names a connection this agent does not have (or not a MySQL one).
    #[error("connection {0:?} is not a MySQL/MariaDB connection configured on this agent")]
    UnknownConnection(String),
    /// The database name cannot be used.
    #[error(
        "database name {0:?} is not valid (letters, digits, '_', '-', '.'; not starting with '.' or '-')"
    )]
    InvalidDatabase(String),
    /// A setup problem a retry will not fix (tool missing, flags, password file, ...).
    #[error("{0}")]
    Setup(String),
    /// Local file-system trouble.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// The dump tool failed; the message is the tool's.
    #[error("{message}")]
    Tool {
        /// What the tool said (or how it ended).
        message: String,
        /// Connection trouble may pass; privilege errors will not.
        retryable: bool,
    },
    /// The SQL client failed.
    #[error("{message}")]
    Client {
        /// What the client said.
        message: String,
        /// Connection trouble may pass; SQL and privilege errors will not.
        retryable: bool,
    },
    /// The dump would not fit in the dump directory.
    #[error(
        "not enough free space for the dump of {database}: the database is estimated at \
         {estimate} bytes, the rule asks for estimate + dump_reserve_mb ({} MiB) = {needed} \
         bytes free, and {mount} (holding {dir}) has {free} bytes free",
        reserve / (1024 * 1024)
    )]
    NoSpace {
        /// The database.
        database: String,
        /// The dump directory.
        dir: String,
        /// Its filesystem's mount point.
        mount: String,
        /// Size estimate (data + indexes) in bytes.
        estimate: u64,
        /// The connection's `dump_reserve_mb`, in bytes.
        reserve: u64,
        /// Bytes required.
        needed: u64,
        /// Bytes free.
        free: u64,
    },
    /// The restore check found differences.
    #[error("restore check failed: {0}")]
    Verify(String),
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
            Error::UnknownConnection(_)
            | Error::InvalidDatabase(_)
            | Error::Setup(_)
            | Error::NoSpace { .. }
            | Error::Verify(_) => false,
            // A full disk part-way: another attempt would fill it again
            // (dumps may share it with the datadir or the binlogs).
            Error::Io { source, .. } => !disk_full(source),
            Error::Stopped(_) => true,
            Error::Tool { retryable, .. } | Error::Client { retryable, .. } => *retryable,
        }
    }

    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        let what = what.into();
        let what = if disk_full(&source) {
            format!(
                "{what} (the filesystem filled up; not retried, so that another attempt does not fill it again)"
            )
        } else {
            what
        };
        Error::Io { what, source }
    }
}

/// Whether an I/O error says the disk (or the quota) is full.
pub(crate) fn disk_full(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::StorageFull || e.kind() == std::io::ErrorKind::QuotaExceeded
}

/// Settings of the dump executor.
#[derive(Debug, Clone)]
pub struct Settings {
    /// MySQL/MariaDB connections by name.
    pub connections: BTreeMap<String, MysqlConnection>,
    /// The agent's state directory (private temp dirs go under `dump-tmp/`).
    pub state_dir: PathBuf,
    /// Dump root for connections without `dump_dir` (default `<state_dir>/dumps`).
    pub default_dump_dir: PathBuf,
    /// Time between SIGTERM and SIGKILL for the tool.
    pub term_grace: Duration,
    /// Bytes of stderr kept.
    pub max_stderr_bytes: usize,
    /// Variables the tool and client start with (the rest is cleared, so
    /// `MYSQL_PWD`, `MYSQL_HOST`, ... of the agent never reach them).
    pub base_env: Vec<(OsString, OsString)>,
    /// PATH used to find the tool and the client.
    pub search_path: Option<OsString>,
    /// zstd level.
    pub zstd_level: i32,
    /// Tests only: use this size estimate instead of asking the server.
    pub size_estimate_override: Option<u64>,
}

impl Settings {
    /// Every connection's dump directory (`dump_dir`, else the default).
    pub fn dump_roots(&self) -> Vec<PathBuf> {
        let mut roots: Vec<PathBuf> = self
            .connections
            .values()
            .map(|c| {
                c.dump
                    .dir
                    .clone()
                    .unwrap_or_else(|| self.default_dump_dir.clone())
            })
            .collect();
        roots.sort();
        roots.dedup();
        roots
    }

    /// Settings for `connections` with the defaults, PATH/HOME/LANG/TZ taken
    /// from this process.
    pub fn new(connections: BTreeMap<String, MysqlConnection>, state_dir: PathBuf) -> Self {
        let base_env = INHERITED_ENV
            .iter()
            .filter_map(|k| std::env::var_os(k).map(|v| (OsString::from(k), v)))
            .collect();
        Settings {
            connections,
            default_dump_dir: state_dir.join("dumps"),
            state_dir,
            term_grace: DEFAULT_TERM_GRACE,
            max_stderr_bytes: DEFAULT_MAX_STDERR_BYTES,
            base_env,
            search_path: std::env::var_os("PATH"),
            zstd_level: 3,
            size_estimate_override: None,
        }
    }
}

/// Runs `dump` jobs on MySQL/MariaDB connections.
#[derive(Debug, Clone)]
pub struct DumpExecutor {
    settings: Settings,
    groups: ProcessGroups,
}

impl DumpExecutor {
    /// An executor whose tool processes are recorded in `groups` (share the
    /// command executor's, so a forced exit and the next start kill them).
    /// Private temp dirs left by a previous run of the agent are removed.
    pub fn new(settings: Settings, groups: ProcessGroups) -> Self {
        defaults::remove_leftover_dirs(&settings.state_dir);
        DumpExecutor { settings, groups }
    }

    /// The process groups of running tools.
    pub fn process_groups(&self) -> ProcessGroups {
        self.groups.clone()
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }
}

impl Executor for DumpExecutor {
    fn kind(&self) -> JobKind {
        JobKind::Dump
    }

    fn available(&self) -> bool {
        !self.settings.connections.is_empty()
    }

    fn handles(&self, spec: &JobSpec) -> bool {
        spec.connection()
            .is_some_and(|c| self.settings.connections.contains_key(c))
    }

    fn execute(&self, job: Job) -> BoxFuture<'_, Outcome> {
        Box::pin(flow::run(self, job))
    }
}

#[cfg(all(test, unix))]
mod tests;

#[cfg(all(test, unix))]
mod server_tests;
