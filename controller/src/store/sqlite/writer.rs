//! Group commit for the hot write paths (submit, grant, heartbeat, complete,
//! release, expiry).
//!
//! Callers queue an operation; one writer task takes the first queued
//! operation plus every other one already waiting (at most [`MAX_OPS`], and it
//! stops pulling more once a batch has run [`MAX_WORK`]) and runs them in ONE
//! transaction on the single writer connection. The batch commits once
//! (`synchronous=FULL`: one fsync), and only then is every caller answered: no
//! result is observable before it is on disk. If the commit fails, every
//! operation of the batch gets the error, the transaction is rolled back
//! explicitly and the connection is replaced (see [`settle`]); a failure of
//! the disk or the filesystem is [`Error::Unavailable`] (503
//! `store_unavailable`) and marks the store as failing (`super::health`)
//! until a commit — an operation's or the writer's own probe each second —
//! succeeds again. An empty queue means no waiting: a
//! lone operation is a batch of one, committed at once.
//!
//! An operation that fails rolls back only itself:
//! - a refusal ([`Error::wrote_nothing`]: lease lost, forbidden, not found,
//!   conflict) is, by contract of every operation body, decided BEFORE its
//!   first write — there is nothing to undo, the batch goes on;
//! - any other failure (a SQL error, a corrupt value) may come after some of
//!   its writes: the whole transaction is rolled back and the batch run again
//!   without that operation, this time with a `SAVEPOINT` per operation (so
//!   a second such failure also rolls back only itself). Bodies are
//!   re-runnable (`Fn`) and results reach callers only after the commit, so
//!   the replay is invisible. The common path thus pays no savepoint round
//!   trip per operation (it halved the throughput of this writer).
//!
//! The connection comes from the same 1-connection writer pool per batch, so
//! the cold writes elsewhere (`self.writer`) keep working and never interleave
//! with a batch. Operations run in queue order, so a grant and a completion of
//! the same job in one batch behave exactly as if they ran one after another.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use sqlx::pool::PoolConnection;
use sqlx::sqlite::SqliteConnection;
use sqlx::{Connection, Sqlite, SqlitePool};
use tokio::sync::{mpsc, oneshot};

use super::SqliteStore;
use super::lease::LeaseBound;
use crate::store::health::{Cause, Health};
use crate::store::{Error, Result};

/// Most operations in one transaction.
pub const MAX_OPS: usize = 256;
/// A batch stops taking more operations once it has run this long.
pub const MAX_WORK: Duration = Duration::from_millis(4);
/// Queue depth before callers wait for room.
const QUEUE: usize = 4096;

/// Counters of the group-commit writer.
#[derive(Debug, Default)]
pub struct Stats {
    /// Transactions committed (or attempted).
    pub batches: AtomicU64,
    /// Operations run.
    pub ops: AtomicU64,
    /// Batches run again with savepoints after an operation failed with a
    /// SQL error.
    pub replays: AtomicU64,
}

/// The queue into the writer task.
#[derive(Debug, Clone)]
pub(crate) struct Writer {
    queue: mpsc::Sender<Box<dyn Work>>,
    stats: Arc<Stats>,
}

/// One queued operation, type-erased.
trait Work: Send {
    /// Run inside the batch transaction; keep the result (a re-run replaces
    /// it). `None` when it succeeded or failed without writing; `Some(())`
    /// when it failed and may have written.
    fn run<'c>(&'c mut self, conn: &'c mut SqliteConnection) -> BoxFuture<'c, Outcome>;
    /// Answer the caller: with the kept result, or (derived from)
    /// `batch_error` if the batch did not commit.
    fn answer(self: Box<Self>, batch_error: Option<&Error>);
    /// Why its own run failed, when the disk or filesystem refused it.
    fn unavailable(&self) -> Option<(Cause, &str)>;
}

/// How one run of an operation went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Succeeded.
    Done,
    /// Refused before writing anything.
    Refused,
    /// Failed, perhaps after writing.
    Failed,
}

/// The body of an operation: runs on the batch's connection; may run more
/// than once (a replay), only the last run's effects and result count.
pub(crate) type OpFn<T> =
    Box<dyn for<'c> Fn(&'c mut SqliteConnection) -> BoxFuture<'c, Result<T>> + Send>;

struct Op<T> {
    body: OpFn<T>,
    result: Option<Result<T>>,
    reply: oneshot::Sender<Result<T>>,
}

impl<T: Send + 'static> Work for Op<T> {
    fn run<'c>(&'c mut self, conn: &'c mut SqliteConnection) -> BoxFuture<'c, Outcome> {
        Box::pin(async move {
            let r = (self.body)(conn).await;
            let outcome = match &r {
                Ok(_) => Outcome::Done,
                Err(e) if e.wrote_nothing() => Outcome::Refused,
                Err(_) => Outcome::Failed,
            };
            self.result = Some(r);
            outcome
        })
    }

    fn answer(self: Box<Self>, batch_error: Option<&Error>) {
        let r = match (batch_error, self.result) {
            (Some(e), _) => Err(e.for_each_op()),
            (None, Some(r)) => r,
            (None, None) => Err(Error::Commit("the operation did not run".into())),
        };
        // The caller may have gone (request dropped): nothing to tell.
        let _ = self.reply.send(r);
    }

    fn unavailable(&self) -> Option<(Cause, &str)> {
        match &self.result {
            Some(Err(Error::Unavailable { cause, detail })) => Some((*cause, detail)),
            _ => None,
        }
    }
}

impl Error {
    /// The error every operation of a batch that failed with `self` gets.
    fn for_each_op(&self) -> Error {
        match self {
            Error::Unavailable { cause, detail } => Error::Unavailable {
                cause: *cause,
                detail: detail.clone(),
            },
            Error::Commit(m) => Error::Commit(m.clone()),
            other => Error::Commit(other.to_string()),
        }
    }
}

/// While commits fail, the writer tries a tiny write this often, so the
/// store (and `/readyz`) recovers by itself once the disk takes writes again.
const PROBE_EVERY: Duration = Duration::from_secs(1);

impl Writer {
    /// Start the writer task on `pool` (the 1-connection writer pool); it
    /// reports whether it can commit to `health`.
    /// A rollback forgets `bound` (see `super::lease::bound`).
    pub(crate) fn start(pool: SqlitePool, health: Arc<Health>, bound: Arc<LeaseBound>) -> Writer {
        let (queue, rx) = mpsc::channel(QUEUE);
        let stats = Arc::new(Stats::default());
        tokio::spawn(run(pool, rx, stats.clone(), health, bound));
        Writer { queue, stats }
    }

    /// The counters of this writer.
    pub(crate) fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Queue `body`, wait for its batch to commit, return its result.
    pub(crate) async fn exec<T: Send + 'static>(&self, body: OpFn<T>) -> Result<T> {
        let (reply, rx) = oneshot::channel();
        let op: Box<dyn Work> = Box::new(Op {
            body,
            result: None,
            reply,
        });
        self.queue
            .send(op)
            .await
            .map_err(|_| Error::Commit("the writer task has stopped".into()))?;
        rx.await
            .map_err(|_| Error::Commit("the writer task has stopped".into()))?
    }
}

/// The next operation; while commits fail, first a probe write each
/// [`PROBE_EVERY`], with or without operations. `None` once every sender
/// is gone.
async fn next_op(
    pool: &SqlitePool,
    rx: &mut mpsc::Receiver<Box<dyn Work>>,
    health: &Health,
    last_probe: &mut Instant,
) -> Option<Box<dyn Work>> {
    loop {
        if !health.is_failing() {
            return rx.recv().await;
        }
        let since = last_probe.elapsed();
        if since >= PROBE_EVERY {
            match probe_on_writer(pool).await {
                Ok(()) => health.probe_committed(),
                Err(e) => note_failure(health, &e),
            }
            *last_probe = Instant::now();
            continue;
        }
        if let Ok(op) = tokio::time::timeout(PROBE_EVERY - since, rx.recv()).await {
            return op;
        }
    }
}

/// Tell `health` about a write the disk or filesystem refused.
fn note_failure(health: &Health, e: &Error) {
    if let Error::Unavailable { cause, detail } = e {
        health.failed(*cause, detail);
    }
}

/// The writer task: one transaction per batch, until every sender is gone.
async fn run(
    pool: SqlitePool,
    mut rx: mpsc::Receiver<Box<dyn Work>>,
    stats: Arc<Stats>,
    health: Arc<Health>,
    bound: Arc<LeaseBound>,
) {
    let mut last_probe = Instant::now();
    while let Some(first) = next_op(&pool, &mut rx, &health, &mut last_probe).await {
        let mut batch = vec![first];
        let started = Instant::now();
        // A panicking operation fails its batch (rolled back: the
        // transaction is dropped) instead of ending the writer task.
        let outcome = AssertUnwindSafe(batch_on_writer(
            &pool, &mut rx, &mut batch, started, &stats, &bound,
        ))
        .catch_unwind()
        .await
        .unwrap_or_else(|_| Err(Error::Commit("an operation of the batch panicked".into())));
        if outcome.is_err() {
            // Rolled back: what its operations read of the deadlines is gone.
            bound.forget();
        }
        stats.batches.fetch_add(1, Ordering::Relaxed);
        stats.ops.fetch_add(batch.len() as u64, Ordering::Relaxed);
        crate::telemetry::group_committed(batch.len(), started.elapsed());
        tracing::debug!(
            ops = batch.len(),
            micros = started.elapsed().as_micros() as u64,
            ok = outcome.is_ok(),
            "Group commit"
        );
        match &outcome {
            Err(e) => note_failure(&health, e),
            // A batch can commit without the operation the disk refused (it
            // was rolled back alone): the store still cannot take that write.
            Ok(()) => {
                if let Some((cause, detail)) = batch.iter().find_map(|op| op.unavailable()) {
                    health.failed(cause, detail);
                }
            }
        }
        if let Err(e) = &outcome
            && !matches!(e, Error::Unavailable { .. })
        {
            tracing::error!(error = %e, ops = batch.len(), "Group commit failed");
        }
        for op in batch {
            op.answer(outcome.as_ref().err());
        }
    }
}

/// After a failed batch or probe — its COMMIT included — roll back
/// explicitly and close the connection instead of reusing it: after a failed
/// COMMIT (disk full, I/O error) SQLite may or may not have rolled back by
/// itself, and sqlx's idea of the transaction nesting no longer matches it
/// (the next BEGIN would become a SAVEPOINT inside a transaction that never
/// commits). The pool opens a fresh connection for the next batch.
async fn settle(conn: &mut PoolConnection<Sqlite>, r: &Result<()>) {
    if r.is_err() {
        // The dropped transaction queued a rollback already; this one is for
        // the case where sqlx believes there is nothing to roll back.
        let _ = sqlx::query("ROLLBACK").execute(&mut **conn).await;
        conn.close_on_drop();
    }
}

/// One batch on the writer connection (see [`settle`]).
async fn batch_on_writer(
    pool: &SqlitePool,
    rx: &mut mpsc::Receiver<Box<dyn Work>>,
    batch: &mut Vec<Box<dyn Work>>,
    started: Instant,
    stats: &Stats,
    bound: &LeaseBound,
) -> Result<()> {
    let mut conn = pool.acquire().await?;
    let r = run_batch(&mut conn, rx, batch, started, stats, bound).await;
    settle(&mut conn, &r).await;
    r
}

/// A probe write on the writer connection (see [`settle`]).
async fn probe_on_writer(pool: &SqlitePool) -> Result<()> {
    let mut conn = pool.acquire().await?;
    let r = probe(&mut conn).await;
    settle(&mut conn, &r).await;
    r
}

/// A tiny write that must reach the disk: whether the store commits again.
async fn probe(conn: &mut SqliteConnection) -> Result<()> {
    let mut tx = conn.begin().await?;
    sqlx::query(
        "INSERT INTO meta (key, value) VALUES ('writer_probe', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )
    .bind(crate::store::now_ms().to_string())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Run `batch[0]` and whatever else is waiting in one transaction.
async fn run_batch(
    conn: &mut SqliteConnection,
    rx: &mut mpsc::Receiver<Box<dyn Work>>,
    batch: &mut Vec<Box<dyn Work>>,
    started: Instant,
    stats: &Stats,
    bound: &LeaseBound,
) -> Result<()> {
    let mut tx = conn.begin().await?;
    let mut i = 0;
    let mut failed = None;
    while let Some(op) = batch.get_mut(i) {
        if op.run(&mut tx).await == Outcome::Failed {
            failed = Some(i);
            break;
        }
        i += 1;
        if i >= MAX_OPS || started.elapsed() >= MAX_WORK {
            break;
        }
        match rx.try_recv() {
            Ok(op) => batch.push(op),
            Err(_) => break,
        }
    }
    let Some(failed) = failed else {
        tx.commit().await?;
        return Ok(());
    };
    // An operation failed after (maybe) writing: undo everything, run the
    // others again, each in a savepoint. The failed one keeps its error.
    tx.rollback().await?;
    bound.forget();
    stats.replays.fetch_add(1, Ordering::Relaxed);
    let mut tx = conn.begin().await?;
    for (j, op) in batch.iter_mut().enumerate() {
        if j == failed {
            continue;
        }
        sqlx::query("SAVEPOINT op").execute(&mut *tx).await?;
        if op.run(&mut tx).await == Outcome::Failed {
            sqlx::query("ROLLBACK TO op").execute(&mut *tx).await?;
            bound.forget();
        }
        sqlx::query("RELEASE op").execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(())
}

impl SqliteStore {
    /// Run `body` through the group-commit writer: it runs inside a batch
    /// transaction on the writer connection and its result comes back once
    /// that batch is committed. `body` may run more than once (see the module
    /// header), and must return a refusal ([`Error::wrote_nothing`]) only
    /// before its first write.
    pub(crate) async fn grouped<T, F>(&self, body: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'c> Fn(&'c mut SqliteConnection) -> BoxFuture<'c, Result<T>> + Send + 'static,
    {
        self.batcher.exec(Box::new(body)).await
    }
}

#[cfg(test)]
mod tests;
