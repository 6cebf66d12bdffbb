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
//! explicitly and the connection is replaced ([`engine`]); a failure of
//! the disk or the filesystem is [`Error::Unavailable`] (503
//! `store_unavailable`) and marks the store as failing (`super::health`)
//! until a commit — an operation's or the writer's own probe each second —
//! succeeds again. An empty queue means no waiting: a
//! lone operation is a batch of one, committed at once.
//!
//! Except a *deferrable* operation ([`Writer::exec_deferred`]: a job's
//! completion, whose caller is an agent, not a person waiting): alone, it
//! waits up to [`DEFER`] for company — the next operation of any kind, whose
//! batch it joins ahead of it — and commits alone only when none came. Under
//! a steady trickle of short jobs that is one commit per job instead of two
//! (the submit-and-grant, then the completion alone); an operation that is
//! not deferrable is never delayed by one that is.
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
//! A batch runs on the writer's own connection, on a thread of its own
//! ([`engine`]): begin, every operation's statements, commit, as one job for
//! that thread — no channel round trip per statement. Operation bodies are
//! plain functions of a `rusqlite::Connection`. While a batch runs, the
//! writer task holds the 1-connection sqlx writer pool, so the cold writes
//! elsewhere (`self.writer`) keep working and never interleave with a batch.
//! Operations run in queue order, so a grant and a completion of the same
//! job in one batch behave exactly as if they ran one after another.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rusqlite::Connection;
use sqlx::{Connection as _, SqlitePool};
use tokio::sync::{mpsc, oneshot};

use super::SqliteStore;
use super::lease::LeaseBound;
use crate::store::health::{Cause, Health};
use crate::store::{Error, Result};

mod engine;
pub(crate) mod rows;
pub(crate) use engine::Opener;
use engine::{Engine, Slot};

/// Most operations in one transaction.
pub const MAX_OPS: usize = 256;
/// A batch stops taking more operations once it has run this long.
pub const MAX_WORK: Duration = Duration::from_millis(4);
/// Queue depth before callers wait for room.
const QUEUE: usize = 4096;
/// The longest a deferrable operation waits for another to share its
/// commit.
pub const DEFER: Duration = Duration::from_millis(20);

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
    engine: Arc<Engine>,
    /// How long a deferrable operation waits, microseconds ([`DEFER`];
    /// tests change it).
    #[cfg(test)]
    defer: Arc<AtomicU64>,
}

/// One queued operation, type-erased.
trait Work: Send {
    /// Run inside the batch transaction; keep the result (a re-run replaces
    /// it). `None` when it succeeded or failed without writing; `Some(())`
    /// when it failed and may have written.
    fn run(&mut self, conn: &Connection) -> Outcome;
    /// Answer the caller: with the kept result, or (derived from)
    /// `batch_error` if the batch did not commit.
    fn answer(self: Box<Self>, batch_error: Option<&Error>);
    /// Why its own run failed, when the disk or filesystem refused it.
    fn unavailable(&self) -> Option<(Cause, &str)>;
    /// Whether it may wait up to [`DEFER`] to join another's batch.
    fn deferrable(&self) -> bool;
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
pub(crate) type OpFn<T> = Box<dyn Fn(&Connection) -> Result<T> + Send>;

struct Op<T> {
    body: OpFn<T>,
    result: Option<Result<T>>,
    reply: oneshot::Sender<Result<T>>,
    defer: bool,
}

impl<T: Send + 'static> Work for Op<T> {
    fn run(&mut self, conn: &Connection) -> Outcome {
        let r = (self.body)(conn);
        let outcome = match &r {
            Ok(_) => Outcome::Done,
            Err(e) if e.wrote_nothing() => Outcome::Refused,
            Err(_) => Outcome::Failed,
        };
        self.result = Some(r);
        outcome
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

    fn deferrable(&self) -> bool {
        self.defer
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
    /// Start the writer task and its connection's thread (`opener`). The
    /// task holds `pool` (the 1-connection writer pool) while a batch runs,
    /// so no other write interleaves; it reports whether it can commit to
    /// `health`. A rollback forgets `bound` (see `super::lease::bound`).
    pub(crate) fn start(
        pool: SqlitePool,
        opener: Opener,
        health: Arc<Health>,
        bound: Arc<LeaseBound>,
    ) -> Result<Writer> {
        let (queue, rx) = mpsc::channel(QUEUE);
        let stats = Arc::new(Stats::default());
        let engine = Arc::new(Engine::start(opener)?);
        let defer = Arc::new(AtomicU64::new(DEFER.as_micros() as u64));
        let task = Task {
            pool,
            engine: engine.clone(),
            stats: stats.clone(),
            health,
            bound,
            defer: defer.clone(),
        };
        tokio::spawn(task.run(rx));
        Ok(Writer {
            queue,
            stats,
            engine,
            #[cfg(test)]
            defer,
        })
    }

    /// Let deferrable operations wait `d` instead of [`DEFER`] (tests).
    #[cfg(test)]
    pub(crate) fn set_defer(&self, d: Duration) {
        self.defer.store(d.as_micros() as u64, Ordering::Relaxed);
    }

    /// Close the writer's connection; operations queued later fail.
    pub(crate) async fn close(&self) {
        self.engine.close().await;
    }

    /// The counters of this writer.
    pub(crate) fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Queue `body`, wait for its batch to commit, return its result.
    pub(crate) async fn exec<T: Send + 'static>(&self, body: OpFn<T>) -> Result<T> {
        self.queue_op(body, false).await
    }

    /// [`Writer::exec`], but alone `body` waits up to [`DEFER`] for another
    /// operation to share its commit.
    pub(crate) async fn exec_deferred<T: Send + 'static>(&self, body: OpFn<T>) -> Result<T> {
        self.queue_op(body, true).await
    }

    async fn queue_op<T: Send + 'static>(&self, body: OpFn<T>, defer: bool) -> Result<T> {
        let (reply, rx) = oneshot::channel();
        let op: Box<dyn Work> = Box::new(Op {
            body,
            result: None,
            reply,
            defer,
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

/// The writer task's state.
struct Task {
    pool: SqlitePool,
    engine: Arc<Engine>,
    stats: Arc<Stats>,
    health: Arc<Health>,
    bound: Arc<LeaseBound>,
    defer: Arc<AtomicU64>,
}

/// What the writer task waits for next.
enum Next {
    /// An operation.
    Op(Box<dyn Work>),
    /// The held operations have waited long enough.
    Due,
    /// Every sender is gone.
    Closed,
}

/// A batch handed to the writer thread, and back.
struct Batch {
    ops: Vec<Box<dyn Work>>,
    rx: mpsc::Receiver<Box<dyn Work>>,
}

impl Task {
    /// One transaction per batch, until every sender is gone (or the
    /// writer thread stopped). Deferrable operations are held until another
    /// operation comes (they run ahead of it, in queue order) or the first
    /// of them has waited [`DEFER`]; not while commits fail.
    async fn run(self, mut rx: mpsc::Receiver<Box<dyn Work>>) {
        let mut last_probe = Instant::now();
        let mut held: Vec<Box<dyn Work>> = Vec::new();
        let mut due: Option<Instant> = None;
        loop {
            let next = self.next(&mut rx, due, &mut last_probe).await;
            let closed = matches!(next, Next::Closed);
            if let Next::Op(op) = next {
                let hold = op.deferrable() && !self.health.is_failing() && held.len() < MAX_OPS;
                held.push(op);
                if hold {
                    let defer = Duration::from_micros(self.defer.load(Ordering::Relaxed));
                    due.get_or_insert_with(|| Instant::now() + defer);
                    continue;
                }
            }
            due = None;
            if !held.is_empty() {
                let started = Instant::now();
                let batch = Batch {
                    ops: std::mem::take(&mut held),
                    rx,
                };
                let Some((batch, outcome)) = self.batch(batch, started).await else {
                    return;
                };
                rx = batch.rx;
                self.settled(batch.ops, outcome, started);
            }
            if closed {
                return;
            }
        }
    }

    /// The next operation, or `due` (held operations must commit now), or
    /// the end of the queue.
    async fn next(
        &self,
        rx: &mut mpsc::Receiver<Box<dyn Work>>,
        due: Option<Instant>,
        last_probe: &mut Instant,
    ) -> Next {
        let Some(at) = due else {
            return match next_op(&self.pool, rx, &self.health, last_probe).await {
                Some(op) => Next::Op(op),
                None => Next::Closed,
            };
        };
        match tokio::time::timeout_at(at.into(), rx.recv()).await {
            Ok(Some(op)) => Next::Op(op),
            Ok(None) => Next::Closed,
            Err(_) => Next::Due,
        }
    }

    /// Run `batch` on the writer thread while holding the writer pool.
    /// `None` when the writer thread has stopped (the batch's callers are
    /// told so by their dropped replies).
    async fn batch(&self, mut batch: Batch, started: Instant) -> Option<(Batch, Result<()>)> {
        let lock = match self.pool.acquire().await {
            Ok(lock) => lock,
            Err(e) => return Some((batch, Err(e.into()))),
        };
        let (done, answer) = oneshot::channel();
        let (stats, bound) = (self.stats.clone(), self.bound.clone());
        let job = Box::new(move |slot: &mut Slot| {
            // A panicking operation fails its batch (rolled back, the
            // connection dropped) instead of ending the writer thread.
            let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
                run_batch(slot.get()?, &mut batch, started, &stats, &bound)
            }))
            .unwrap_or_else(|_| Err(Error::Commit("an operation of the batch panicked".into())));
            if outcome.is_err() {
                slot.discard();
            }
            let _ = done.send((batch, outcome));
        });
        self.engine.send(job).ok()?;
        let r = answer.await.ok();
        drop(lock);
        r
    }

    /// Count, log and answer a batch that ran.
    fn settled(&self, batch: Vec<Box<dyn Work>>, outcome: Result<()>, started: Instant) {
        if outcome.is_err() {
            // Rolled back: what its operations read of the deadlines is gone.
            self.bound.forget();
        }
        self.stats.batches.fetch_add(1, Ordering::Relaxed);
        self.stats
            .ops
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        crate::telemetry::group_committed(batch.len(), started.elapsed());
        tracing::debug!(
            ops = batch.len(),
            micros = started.elapsed().as_micros() as u64,
            ok = outcome.is_ok(),
            "Group commit"
        );
        match &outcome {
            Err(e) => note_failure(&self.health, e),
            // A batch can commit without the operation the disk refused (it
            // was rolled back alone): the store still cannot take that write.
            Ok(()) => {
                if let Some((cause, detail)) = batch.iter().find_map(|op| op.unavailable()) {
                    self.health.failed(cause, detail);
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

/// After a failed probe — its COMMIT included — roll back explicitly and
/// close the connection instead of reusing it: after a failed COMMIT (disk
/// full, I/O error) SQLite may or may not have rolled back by itself, and
/// sqlx's idea of the transaction nesting no longer matches it (the next
/// BEGIN would become a SAVEPOINT inside a transaction that never commits).
/// The pool opens a fresh connection for the next use.
async fn settle(conn: &mut sqlx::pool::PoolConnection<sqlx::Sqlite>, r: &Result<()>) {
    if r.is_err() {
        // The dropped transaction queued a rollback already; this one is for
        // the case where sqlx believes there is nothing to roll back.
        let _ = sqlx::query("ROLLBACK").execute(&mut **conn).await;
        conn.close_on_drop();
    }
}

/// A probe write on the writer pool's connection (see [`settle`]).
async fn probe_on_writer(pool: &SqlitePool) -> Result<()> {
    let mut conn = pool.acquire().await?;
    let r = probe(&mut conn).await;
    settle(&mut conn, &r).await;
    r
}

/// A tiny write that must reach the disk: whether the store commits again.
async fn probe(conn: &mut sqlx::SqliteConnection) -> Result<()> {
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

/// Run a cached statement that returns no rows (`BEGIN`, `COMMIT`, ...).
fn exec(conn: &Connection, sql: &str) -> Result<()> {
    rows::run(conn, sql, []).map(drop)
}

/// Run `batch.ops` and whatever else is waiting in one transaction, on the
/// writer thread.
fn run_batch(
    conn: &Connection,
    batch: &mut Batch,
    started: Instant,
    stats: &Stats,
    bound: &LeaseBound,
) -> Result<()> {
    exec(conn, "BEGIN IMMEDIATE")?;
    let mut i = 0;
    let mut failed = None;
    // Every operation handed in runs; more are taken while there is room.
    'ops: loop {
        while let Some(op) = batch.ops.get_mut(i) {
            if op.run(conn) == Outcome::Failed {
                failed = Some(i);
                break 'ops;
            }
            i += 1;
        }
        if i >= MAX_OPS || started.elapsed() >= MAX_WORK {
            break;
        }
        match batch.rx.try_recv() {
            Ok(op) => batch.ops.push(op),
            Err(_) => break,
        }
    }
    let Some(failed) = failed else {
        return exec(conn, "COMMIT");
    };
    // An operation failed after (maybe) writing: undo everything, run the
    // others again, each in a savepoint. The failed one keeps its error.
    exec(conn, "ROLLBACK")?;
    bound.forget();
    stats.replays.fetch_add(1, Ordering::Relaxed);
    exec(conn, "BEGIN IMMEDIATE")?;
    for (j, op) in batch.ops.iter_mut().enumerate() {
        if j == failed {
            continue;
        }
        exec(conn, "SAVEPOINT op")?;
        if op.run(conn) == Outcome::Failed {
            exec(conn, "ROLLBACK TO op")?;
            bound.forget();
        }
        exec(conn, "RELEASE op")?;
    }
    exec(conn, "COMMIT")
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
        F: Fn(&Connection) -> Result<T> + Send + 'static,
    {
        self.batcher.exec(Box::new(body)).await
    }

    /// [`SqliteStore::grouped`] for an operation nobody waits on in person
    /// (a job's completion): alone, it waits up to [`DEFER`] to share the
    /// next operation's commit.
    pub(crate) async fn grouped_deferred<T, F>(&self, body: F) -> Result<T>
    where
        T: Send + 'static,
        F: Fn(&Connection) -> Result<T> + Send + 'static,
    {
        self.batcher.exec_deferred(Box::new(body)).await
    }
}

#[cfg(test)]
mod tests;
