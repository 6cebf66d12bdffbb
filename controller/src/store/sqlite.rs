//! The durable store: jobs, attempts (leases) and agents in SQLite.
//!
//! One writer connection serialises every state change (SQLite allows one
//! writer anyway), so a grant, a completion and an expiry never interleave;
//! reads go through a separate read-only pool. WAL mode, `synchronous=FULL`
//! by default: a 2xx answer means the change is on disk.
//!
//! - [`jobs`]: submit, get, list, cancel, retry.
//! - [`lease`]: grant (poll), heartbeat, complete, release, expiry.
//! - [`agents`]: agent presence and capabilities.
//! - [`credentials`]: resolved credentials and their in-memory cache.
//! - [`identity`]: operator tokens, enrollment tokens, agent secrets, revocation.
//! - [`audit`]: the audit log.
//! - [`retention`]: finished jobs and old audit rows pruned in bounded
//!   batches, incremental vacuum.
//! - [`drills`]: failover drills, their timelines and takeover measurements.
//! - [`health`]: whether the store can commit (disk full, read-only, I/O
//!   errors become 503 `store_unavailable`; `/readyz` reads it).
//! - [`rebase`]: at start, stored deadlines re-expressed in this process's clock.
//! - [`writer`]: group commit — the hot writes (submit, grant, heartbeat,
//!   complete, release, expiry) share one transaction and one fsync per batch.

pub mod agents;
pub mod audit;
pub mod credentials;
pub mod drills;
pub mod health;
pub mod identity;
pub mod jobs;
pub mod lease;
pub mod rebase;
pub mod retention;
mod rows;
pub mod writer;

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use baton_proto::JobId;
use sqlx::SqlitePool;
use sqlx::sqlite::{
    SqliteAutoVacuum, SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};

use crate::config::SyncMode;

pub use lease::{Expired, GrantRequest, Granted};
pub(crate) use rows::ts as rows_ts;

/// Store errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No such job.
    #[error("job {0} not found")]
    NotFound(JobId),
    /// No such object (token, agent).
    #[error("{0} not found")]
    Missing(String),
    /// A credential was refused (enrollment).
    #[error("{0}")]
    Unauthorized(String),
    /// The caller may not touch this object (another agent's job).
    #[error("{0}")]
    Forbidden(String),
    /// The fencing token is stale, the lease ran out, or the caller does not hold it.
    #[error("lease lost: {0}")]
    LeaseLost(String),
    /// The job is not in a state that allows this.
    #[error("{0}")]
    Conflict(String),
    /// An idempotency key was reused with a different request.
    #[error("idempotency key `{0}` was already used with a different request")]
    IdempotencyConflict(String),
    /// The database failed.
    #[error("database error: {0}")]
    Db(sqlx::Error),
    /// The disk or the filesystem refused a write (full, read-only, I/O
    /// error): nothing of the operation was kept (`health`).
    #[error("the store cannot commit ({cause}): {detail}")]
    Unavailable {
        /// Why.
        cause: health::Cause,
        /// The database's own message.
        detail: String,
    },
    /// The group-commit batch this operation ran in did not commit.
    #[error("commit failed: {0}")]
    Commit(String),
    /// A migration failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored value does not parse (a bug or manual tampering).
    #[error("corrupt stored value in {0}")]
    Corrupt(String),
}

/// Result alias.
pub type Result<T> = std::result::Result<T, Error>;

/// The SQLite store.
#[derive(Debug, Clone)]
pub struct Store {
    writer: SqlitePool,
    batcher: writer::Writer,
    reader: SqlitePool,
    fleet_id: String,
    /// Known credentials; the identity paths that change one invalidate it.
    auth_cache: Arc<credentials::AuthCache>,
    /// Whether the writer can commit (`/readyz`).
    health: Arc<health::Health>,
    /// Rows retention deleted.
    pruned: Arc<retention::Pruned>,
}

/// Page cache of each reader connection (`PRAGMA cache_size`; negative:
/// KiB). The writer keeps SQLite's default (2 MiB); the readers' hot pages
/// (auth lookups are cached in memory) fit in far less.
const READER_CACHE_SIZE: &str = "-512";

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

impl Store {
    /// Open (creating if missing) and migrate the database at `path`.
    pub async fn open(path: &Path, sync: SyncMode) -> Result<Store> {
        let base = SqliteConnectOptions::from_str("sqlite:")?
            .filename(path)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(match sync {
                SyncMode::Full => SqliteSynchronous::Full,
                SyncMode::Normal => SqliteSynchronous::Normal,
            })
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            // A connection that comes back still inside a transaction — a
            // COMMIT or ROLLBACK failed (disk full, I/O error), so sqlx's
            // nesting count no longer matches SQLite — is closed, never
            // reused: the next BEGIN would become a SAVEPOINT inside a
            // transaction that is never committed. The ping orders the
            // check after any rollback a dropped transaction queued.
            .after_release(|conn, _| {
                Box::pin(async move {
                    use sqlx::Connection;
                    conn.ping().await?;
                    Ok(!conn.is_in_transaction())
                })
            })
            .connect_with(
                base.clone()
                    .create_if_missing(true)
                    // Effective for a new database (set before its first
                    // table); older ones are switched once by `retention`.
                    .auto_vacuum(SqliteAutoVacuum::Incremental),
            )
            .await?;
        MIGRATOR.run(&writer).await?;
        retention::enable_incremental_vacuum(&writer).await?;
        let fleet_id: String = sqlx::query_scalar("SELECT value FROM meta WHERE key = 'fleet_id'")
            .fetch_one(&writer)
            .await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(base.read_only(true).pragma("cache_size", READER_CACHE_SIZE))
            .await?;
        let health = Arc::new(health::Health::default());
        Ok(Store {
            batcher: writer::Writer::start(writer.clone(), health.clone()),
            writer,
            reader,
            fleet_id,
            auth_cache: Arc::default(),
            health,
            pruned: Arc::default(),
        })
    }

    /// This installation's fleet id (random, fixed at the first start).
    pub fn fleet_id(&self) -> &str {
        &self.fleet_id
    }

    /// The cache of known credentials (see `auth`).
    pub fn auth_cache(&self) -> &credentials::AuthCache {
        &self.auth_cache
    }

    /// Why the store cannot commit, while it cannot (`None`: it can).
    pub fn write_failure(&self) -> Option<(health::Cause, String)> {
        self.health.failure()
    }

    /// Whether the store answers.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        Ok(())
    }

    /// Close both pools (flushes the WAL on the last connection).
    pub async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }
}

/// The controller's now in Unix milliseconds ([`crate::clock`]: immune to
/// wall-clock steps within a process).
pub use crate::clock::now_ms;

#[cfg(test)]
pub(crate) mod testutil;
