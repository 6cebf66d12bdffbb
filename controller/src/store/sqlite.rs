//! The SQLite backend (the embedded default): jobs, attempts (leases),
//! agents, credentials, drills and the audit log in one SQLite file.
//!
//! One writer connection serialises every state change (SQLite allows one
//! writer anyway), so a grant, a completion and an expiry never interleave;
//! reads go through a separate read-only pool. WAL mode, `synchronous=FULL`
//! by default: a 2xx answer means the change is on disk. Each file implements
//! one area trait of [`crate::store`] for [`SqliteStore`]:
//!
//! - `jobs`: submit, get, list, cancel, retry.
//! - `lease`: grant (poll), heartbeat, complete, release, expiry; a bound
//!   of the earliest lease deadline spares grants the look for overdue
//!   leases (`lease::bound`).
//! - `agents`: agent presence and capabilities.
//! - `identity`: operator tokens, enrollment tokens, agent secrets, revocation.
//! - `audit`: the audit log.
//! - `retention`: finished jobs and old audit rows pruned in bounded
//!   batches, incremental vacuum.
//! - `drills`: failover drills, their timelines and takeover measurements.
//! - `health`: SQLite's errors classified (disk full, read-only, I/O
//!   errors become 503 `store_unavailable`), and `HealthStore`.
//! - `schedules`: schedules and occurrences; a firing in one transaction;
//!   the follow-up of ended jobs schedules and pipelines made.
//! - `pipelines`: pipelines and runs; a run advances in the transaction
//!   that learns a step ended.
//! - `notifications`: the events outbox, deliveries and attempts.
//! - `made`: inserting the jobs schedules and pipelines make.
//! - `rebase`: at start, stored deadlines re-expressed in this process's clock.
//! - `checkpoint`: the WAL is copied into the database file by its own
//!   task and connection, never inside a writer's commit
//!   (`wal_autocheckpoint=0` on the writer).
//! - [`writer`]: group commit — the hot writes (submit, grant, heartbeat,
//!   complete, release, expiry) share one transaction and one fsync per batch.
//!
//! A rule for every statement here: a bound `LIMIT` is written `LIMIT +?N`,
//! never with the bare parameter. SQLite (3.47 and later; sqlx bundles 3.51) reads a
//! bare bound LIMIT while planning and marks the statement to be prepared
//! again whenever that parameter is bound — and sqlx binds at every run, so
//! the statement was parsed and planned anew each time (the grant's ready
//! query took 250 µs instead of ~40 inside the submit's commit). The unary
//! `+` keeps the value out of the planner. `tests::no_bare_bound_limit`
//! holds the rule.

mod agents;
mod audit;
mod checkpoint;
mod drills;
mod health;
mod identity;
mod jobs;
mod lease;
mod made;
mod notifications;
mod pipelines;
mod rebase;
mod retention;
mod schedules;
pub mod writer;

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::SqlitePool;
use sqlx::sqlite::{
    SqliteAutoVacuum, SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};

use crate::store::Result;
use crate::store::credentials::AuthCache;
use crate::store::health::Health;
use crate::store::retention::Pruned;

/// How SQLite syncs a commit to disk (`PRAGMA synchronous`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMode {
    /// `FULL`: every commit is fsynced before it is acknowledged.
    Full,
    /// `NORMAL`: faster; in WAL mode a power loss may lose the last commits.
    Normal,
}

/// The SQLite store.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    writer: SqlitePool,
    batcher: writer::Writer,
    reader: SqlitePool,
    fleet_id: String,
    /// Known credentials; the identity paths that change one invalidate it.
    auth_cache: Arc<AuthCache>,
    /// Whether the writer can commit (`/readyz`).
    health: Arc<Health>,
    /// Rows retention deleted.
    pruned: Arc<Pruned>,
    /// A lower bound of the earliest lease deadline: grants skip the look
    /// for overdue leases while none can be due (`lease::bound`).
    lease_bound: Arc<lease::LeaseBound>,
    /// The WAL checkpointer (stopped by `close`, or when the last handle
    /// goes).
    checkpointer: Option<Arc<checkpoint::Checkpointer>>,
}

/// Page cache of each reader connection (`PRAGMA cache_size`; negative:
/// KiB). The writer keeps SQLite's default (2 MiB); the readers' hot pages
/// (auth lookups are cached in memory) fit in far less.
const READER_CACHE_SIZE: &str = "-512";

/// The SQLite schema's migrations (`migrate` checks a source against them).
pub(crate) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

impl SqliteStore {
    /// Open (creating if missing) and migrate the database at `path`.
    pub async fn open(path: &Path, sync: SyncMode) -> Result<SqliteStore> {
        Self::open_with(path, sync, Some(checkpoint::Policy::DEFAULT)).await
    }

    /// [`SqliteStore::open`] with the checkpointer's `policy`; `None`: no
    /// checkpointer (the WAL only grows; tests).
    pub(crate) async fn open_with(
        path: &Path,
        sync: SyncMode,
        policy: Option<checkpoint::Policy>,
    ) -> Result<SqliteStore> {
        let journal_limit = policy.unwrap_or(checkpoint::Policy::DEFAULT).journal_limit;
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
            // No ping before each use: it is one more round trip to sqlx's
            // SQLite thread on every write path (every group commit), and
            // it checks nothing the release check below and the writer's
            // `settle` (a failed batch closes its connection) do not. (sqlx
            // still pings each connection it takes back, after the release
            // check: ARCHITECTURE, "Performance paths".)
            .test_before_acquire(false)
            // A connection that comes back still inside a transaction — a
            // COMMIT or ROLLBACK failed (disk full, I/O error), so sqlx's
            // nesting count no longer matches SQLite — is closed, never
            // reused: the next BEGIN would become a SAVEPOINT inside a
            // transaction that is never committed. The ping orders the
            // check after any rollback a dropped transaction queued.
            .after_release(|conn, _| {
                Box::pin(async move {
                    use sqlx::Connection;
                    // sqlx counts a transaction down only once SQLite ran
                    // its COMMIT or ROLLBACK: none open means nothing is
                    // queued either (the common case, no round trip).
                    if !conn.is_in_transaction() {
                        return Ok(true);
                    }
                    conn.ping().await?;
                    Ok(!conn.is_in_transaction())
                })
            })
            .connect_with(
                base.clone()
                    // The checkpointer copies the WAL, never a commit.
                    .pragma("wal_autocheckpoint", "0")
                    .pragma("journal_size_limit", journal_limit.to_string())
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
            .connect_with(
                base.clone()
                    .read_only(true)
                    .pragma("cache_size", READER_CACHE_SIZE),
            )
            .await?;
        let health = Arc::new(Health::default());
        let lease_bound = Arc::new(lease::LeaseBound::default());
        let checkpointer = policy.map(|p| {
            let opts = base.busy_timeout(checkpoint::BUSY);
            Arc::new(checkpoint::Checkpointer::start(
                opts,
                path,
                p,
                Some(writer.clone()),
            ))
        });
        Ok(SqliteStore {
            checkpointer,
            batcher: writer::Writer::start(
                writer.clone(),
                writer::Opener {
                    path: path.to_owned(),
                    full: matches!(sync, SyncMode::Full),
                    journal_limit,
                },
                health.clone(),
                lease_bound.clone(),
            )?,
            writer,
            reader,
            fleet_id,
            auth_cache: Arc::default(),
            health,
            pruned: Arc::default(),
            lease_bound,
        })
    }
}

/// One controller per file: no signals to send or hear.
impl crate::store::EventStore for SqliteStore {}

#[cfg(test)]
mod tests;

#[cfg(test)]
impl SqliteStore {
    /// A SQLite store in a fresh temp dir (kept alive by the returned guard),
    /// for the tests of this backend's own internals.
    pub(crate) async fn temp() -> (Arc<SqliteStore>, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = SqliteStore::open(&dir.path().join("t.db"), SyncMode::Normal)
            .await
            .expect("open");
        (Arc::new(s), dir)
    }

    /// The `detail` column of `EXPLAIN QUERY PLAN sql`, `binds` bound in
    /// order: which index (if any) each step of `sql` walks.
    pub(crate) async fn query_plan(&self, sql: &str, binds: &[i64]) -> Vec<String> {
        let mut q = sqlx::query_as::<_, (i64, i64, i64, String)>(sqlx::AssertSqlSafe(format!(
            "EXPLAIN QUERY PLAN {sql}"
        )));
        for b in binds {
            q = q.bind(*b);
        }
        let rows = q.fetch_all(&self.reader).await.expect("query plan");
        rows.into_iter().map(|r| r.3).collect()
    }

    /// A [`Store`](crate::store::Store) on this backend, for helpers that take one.
    pub(crate) fn store(self: &Arc<SqliteStore>) -> crate::store::Store {
        crate::store::Store::new(self.clone())
    }
}
