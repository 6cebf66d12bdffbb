//! Whether the store can commit.
//!
//! A write that fails because of the disk or the filesystem (full, read-only,
//! I/O error, the file cannot be opened or is damaged) is not the request's
//! fault: it becomes [`Error::Unavailable`] (HTTP 503 `store_unavailable`,
//! naming the cause) instead of a generic database error, and the writer
//! marks the store as failing. `/readyz` reads [`Health`]; one ERROR is logged
//! when commits start failing (and again only if the cause changes), one INFO
//! when the store is healthy again. While failing, the writer task probes
//! with a tiny write every second, whether requests come or not; only the
//! probe declares the store healthy again, and only once no write has
//! failed for [`QUIET`] — a batch that commits proves little (it may have
//! written nothing, and on a full disk a small write can still fit where a
//! large one does not), and the state must not flap.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::{Error, Result};

/// Why the store cannot commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// `SQLITE_FULL`: no space left on the device (or the quota).
    DiskFull,
    /// `SQLITE_READONLY`: the database file or its filesystem is read-only.
    ReadOnly,
    /// `SQLITE_IOERR`: the operating system reported an I/O error (an
    /// immutable file, a filesystem remounted read-only after an error, a
    /// failing disk).
    Io,
    /// `SQLITE_CANTOPEN`: the database, its WAL or a temp file cannot be opened.
    CannotOpen,
    /// `SQLITE_CORRUPT` / `SQLITE_NOTADB`: the file is damaged.
    Corrupt,
    /// PostgreSQL: the database cannot be reached or is going away (a lost
    /// connection, no connection free in time, `admin_shutdown`,
    /// `cannot_connect_now`, a connection exception): a failover or a
    /// restart of the server is under way.
    Unreachable,
    /// PostgreSQL: the server we reached is a standby (`25006`
    /// read-only SQL transaction): a failover has not finished yet.
    Standby,
}

impl Cause {
    /// The cause in words, for messages and `/readyz`.
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::DiskFull => "disk full",
            Cause::ReadOnly => "read-only database or filesystem",
            Cause::Io => "I/O error",
            Cause::CannotOpen => "cannot open the database files",
            Cause::Corrupt => "database file damaged",
            Cause::Unreachable => "database unreachable",
            Cause::Standby => "database is a read-only standby",
        }
    }
}

impl Cause {
    /// A fault of the disk or the files under the database (not of its
    /// reachability): full, read-only, I/O, cannot open, damaged.
    pub fn is_storage(self) -> bool {
        matches!(
            self,
            Cause::DiskFull | Cause::ReadOnly | Cause::Io | Cause::CannotOpen | Cause::Corrupt
        )
    }
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Cause {
    /// The cause of a database error that is the disk's, the filesystem's
    /// or (PostgreSQL) the database server's availability fault, if it is
    /// one: such an operation wrote nothing and is answered 503.
    pub fn of(e: &sqlx::Error) -> Option<Cause> {
        match e {
            sqlx::Error::Database(d) => {
                if let Some(pg) = d.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
                    let dying = matches!(
                        pg.severity(),
                        sqlx::postgres::PgSeverity::Panic | sqlx::postgres::PgSeverity::Fatal
                    );
                    return Cause::of_pg(pg.code(), dying, pg.message());
                }
                // SQLite's result codes only past this point.
                d.try_downcast_ref::<sqlx::sqlite::SqliteError>()?;
                let code: i64 = d.code()?.parse().ok()?;
                Cause::of_code(code)
            }
            sqlx::Error::Io(io) => Some(match io.kind() {
                std::io::ErrorKind::ConnectionRefused
                | std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::ConnectionAborted
                | std::io::ErrorKind::BrokenPipe
                | std::io::ErrorKind::UnexpectedEof
                | std::io::ErrorKind::TimedOut
                | std::io::ErrorKind::NotConnected => Cause::Unreachable,
                _ => Cause::Io,
            }),
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Tls(_) => {
                Some(Cause::Unreachable)
            }
            _ => None,
        }
    }

    /// The cause of an SQLite (extended) result code.
    pub fn of_code(code: i64) -> Option<Cause> {
        match code & 0xff {
            13 => Some(Cause::DiskFull),
            8 => Some(Cause::ReadOnly),
            10 => Some(Cause::Io),
            14 => Some(Cause::CannotOpen),
            11 | 26 => Some(Cause::Corrupt),
            _ => None,
        }
    }

    /// The cause of a PostgreSQL error: its SQLSTATE, whether it ended the
    /// session (`PANIC`, `FATAL`) and its message. A file the server cannot
    /// write because its filesystem turned read-only comes as `42501`
    /// (PostgreSQL files EROFS with EACCES) or as a `PANIC` when it was the
    /// WAL; only the OS's words tell them from a missing privilege (English
    /// server messages, `lc_messages = C` or `en_*`). Any other `PANIC` or
    /// `FATAL` is the server going away: the operation's outcome is a lost
    /// connection's, never a request's fault.
    pub fn of_pg(code: &str, dying: bool, message: &str) -> Option<Cause> {
        if message.contains("Read-only file system") {
            return Some(Cause::ReadOnly);
        }
        if message.contains("No space left on device") {
            return Some(Cause::DiskFull);
        }
        Cause::of_sqlstate(code).or(dying.then_some(Cause::Unreachable))
    }

    /// The cause of a PostgreSQL SQLSTATE.
    pub fn of_sqlstate(code: &str) -> Option<Cause> {
        match code {
            "25006" => Some(Cause::Standby),
            "53100" => Some(Cause::DiskFull),
            "58030" => Some(Cause::Io),
            "XX001" | "XX002" => Some(Cause::Corrupt),
            "57P01" | "57P02" | "57P03" | "53000" | "53200" | "53300" => Some(Cause::Unreachable),
            c if c.starts_with("08") => Some(Cause::Unreachable),
            _ => None,
        }
    }
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        match Cause::of(&e) {
            Some(cause) => Error::Unavailable {
                cause,
                detail: e.to_string(),
            },
            None => Error::Db(e),
        }
    }
}

/// How long no write may have failed before a successful probe declares the
/// store healthy again.
pub const QUIET: Duration = Duration::from_secs(2);

/// Whether the store can commit.
#[derive(Debug, Default)]
pub struct Health {
    failing: AtomicBool,
    /// The cause and the error of the failure, and when a write last
    /// failed, while failing.
    last: Mutex<Option<(Cause, String, Instant)>>,
}

impl Health {
    /// `None` when the store commits; the cause and the error otherwise.
    pub fn failure(&self) -> Option<(Cause, String)> {
        if !self.failing.load(Ordering::Acquire) {
            return None;
        }
        self.last
            .lock()
            .ok()
            .and_then(|l| l.as_ref().map(|(c, d, _)| (*c, d.clone())))
    }

    /// Whether the last write failed.
    pub fn is_failing(&self) -> bool {
        self.failing.load(Ordering::Acquire)
    }

    /// A write failed with `cause`: logs an ERROR when this starts a failure
    /// or changes its cause.
    pub fn failed(&self, cause: Cause, detail: &str) {
        let Ok(mut last) = self.last.lock() else {
            return;
        };
        let changed = last.as_ref().map(|(c, _, _)| *c) != Some(cause)
            || !self.failing.load(Ordering::Acquire);
        *last = Some((cause, detail.to_owned(), Instant::now()));
        self.failing.store(true, Ordering::Release);
        if changed {
            tracing::error!(
                cause = cause.as_str(),
                error = detail,
                "The store cannot commit: every write is refused with 503 until it can (the writer retries each second)"
            );
        }
    }

    /// The writer's probe wrote and committed: the store is healthy again
    /// if no write failed for [`QUIET`] (logged once).
    pub fn probe_committed(&self) {
        let Ok(mut last) = self.last.lock() else {
            return;
        };
        if let Some((cause, _, at)) = last.as_ref() {
            if at.elapsed() < QUIET {
                return;
            }
            tracing::info!(
                was = cause.as_str(),
                "The store commits again: writes are accepted"
            );
        }
        *last = None;
        self.failing.store(false, Ordering::Release);
    }
}

/// Counters of a backend's write batching (group commit); zero for a
/// backend that does not batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatsSnapshot {
    /// Transactions committed (or attempted).
    pub batches: u64,
    /// Operations run.
    pub ops: u64,
    /// Batches run again with savepoints.
    pub replays: u64,
}

/// Health and housekeeping of a backend.
#[async_trait]
pub trait HealthStore {
    /// This installation's fleet id (random, fixed at the first start).
    fn fleet_id(&self) -> &str;

    /// Why the store cannot commit, while it cannot (`None`: it can).
    fn write_failure(&self) -> Option<(Cause, String)>;

    /// Batches and operations the write batching has run so far.
    fn group_commit_stats(&self) -> StatsSnapshot;

    /// Whether the store answers.
    async fn ping(&self) -> Result<()>;

    /// The database's own clock in Unix ms, for a backend shared by several
    /// controllers whose clock is anchored to it (`crate::clock`); `None`
    /// for an embedded backend.
    async fn database_clock_ms(&self) -> Result<Option<i64>> {
        Ok(None)
    }

    /// Close the store's connections (flushes what a backend buffers).
    async fn close(&self);
}

#[cfg(test)]
mod tests;
