//! Group commit on PostgreSQL: concurrent calls of one kind (a successful
//! completion, an audit row, a submit without an idempotency key) share
//! one statement and one commit instead of paying a round trip and a WAL
//! flush each.
//!
//! A [`Group`] has a queue and a worker. The worker takes the first call
//! that arrives, waits for a free batch slot ([`IN_FLIGHT`] batches of a
//! kind run at once) and then takes every call that queued meanwhile, up
//! to [`MAX_BATCH`]: an idle store runs a lone call at once (there is no
//! window to wait out), a busy one batches as much as arrived during the
//! previous commits.
//!
//! A batch is ONE statement, run on its own (autocommit): atomic without
//! a BEGIN and a COMMIT of its own, so a lone call costs one round trip as
//! it did before grouping. When the server refuses the statement (a
//! deadlock, a constraint, a standby, a full disk: any error the server
//! answers), nothing of it was written: every call is answered
//! [`Answer::Alone`] and runs again alone on its own path, which gives each
//! caller its own answer or error, so a batch never turns one call's
//! problem into another's. When the connection fails under the statement,
//! whether it committed is unknown ([`Answer::Unknown`]): a call that is
//! safe to run twice (a completion, found recorded the second time) runs
//! alone; one that is not (an unkeyed submit) answers an error, as a lone
//! INSERT whose answer was lost would. Nothing is acknowledged that was
//! not committed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::future::BoxFuture;
use sqlx::postgres::{PgConnection, PgPool};
use tokio::sync::{Semaphore, mpsc, oneshot};

/// Most calls in one batch.
pub const MAX_BATCH: usize = 256;
/// Batches of one kind committing at once (each holds a pool connection).
pub const IN_FLIGHT: usize = 3;
/// Calls that may wait in a queue before callers wait to enqueue.
const QUEUE: usize = 4 * MAX_BATCH;

/// Runs a batch as one statement: one output per input, in order.
pub type BatchFn<I, O> = for<'c> fn(
    &'c mut PgConnection,
    &'c [I],
) -> BoxFuture<'c, std::result::Result<Vec<O>, sqlx::Error>>;

/// A call waiting for its batch: its input and where its answer goes.
type Pending<I, O> = (I, oneshot::Sender<Answer<O>>);

/// What became of a call sent to a [`Group`].
#[derive(Debug)]
pub enum Answer<O> {
    /// Its batch committed; this is its output.
    Done(O),
    /// Nothing of its batch was written (or the worker is gone): run the
    /// call alone.
    Alone,
    /// Its batch's commit failed: it may or may not have happened.
    Unknown(String),
}

/// The queue of one kind of call (see the module documentation).
pub struct Group<I, O> {
    queue: mpsc::Sender<Pending<I, O>>,
    stats: Arc<Stats>,
}

/// What a [`Group`] did: batches committed and the calls in them.
#[derive(Debug, Default)]
pub struct Stats {
    batches: AtomicU64,
    calls: AtomicU64,
}

impl Stats {
    /// `(batches, calls)` committed so far.
    pub fn get(&self) -> (u64, u64) {
        (
            self.batches.load(Ordering::Relaxed),
            self.calls.load(Ordering::Relaxed),
        )
    }
}

impl<I, O> std::fmt::Debug for Group<I, O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Group")
            .field("queued", &(QUEUE - self.queue.capacity()))
            .finish()
    }
}

impl<I, O> Group<I, O>
where
    I: Send + Sync + 'static,
    O: Send + 'static,
{
    /// Start the worker (on the current runtime) that runs batches with `f`.
    pub fn start(pool: PgPool, f: BatchFn<I, O>) -> Group<I, O> {
        let (queue, rx) = mpsc::channel(QUEUE);
        let stats = Arc::new(Stats::default());
        tokio::spawn(worker(pool, rx, f, stats.clone()));
        Group { queue, stats }
    }

    /// What this group committed so far.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Run `item` in a batch (see [`Answer`]).
    pub async fn run(&self, item: I) -> Answer<O> {
        let (reply, answer) = oneshot::channel();
        if self.queue.send((item, reply)).await.is_err() {
            return Answer::Alone;
        }
        answer.await.unwrap_or(Answer::Alone)
    }
}

async fn worker<I, O>(
    pool: PgPool,
    mut rx: mpsc::Receiver<Pending<I, O>>,
    f: BatchFn<I, O>,
    stats: Arc<Stats>,
) where
    I: Send + Sync + 'static,
    O: Send + 'static,
{
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    while let Some(first) = rx.recv().await {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        let (pool, stats) = (pool.clone(), stats.clone());
        tokio::spawn(async move {
            let (items, replies): (Vec<I>, Vec<_>) = batch.into_iter().unzip();
            let outputs = commit(&pool, &items, f).await;
            drop(slot);
            if let Answer::Done(_) = &outputs {
                stats.batches.fetch_add(1, Ordering::Relaxed);
                stats.calls.fetch_add(items.len() as u64, Ordering::Relaxed);
            }
            match outputs {
                Answer::Done(outs) if outs.len() == replies.len() => {
                    for (reply, out) in replies.into_iter().zip(outs) {
                        let _ = reply.send(Answer::Done(out));
                    }
                }
                Answer::Unknown(why) => {
                    for reply in replies {
                        let _ = reply.send(Answer::Unknown(why.clone()));
                    }
                }
                _ => {
                    for reply in replies {
                        let _ = reply.send(Answer::Alone);
                    }
                }
            }
        });
    }
}

/// One batch, one statement (see the module documentation).
async fn commit<I, O>(pool: &PgPool, items: &[I], f: BatchFn<I, O>) -> Answer<Vec<O>> {
    let mut c = match pool.acquire().await {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(error = %e, "Grouped batch found no connection; its calls run alone");
            return Answer::Alone;
        }
    };
    match f(&mut c, items).await {
        Ok(outs) if outs.len() == items.len() => Answer::Done(outs),
        Ok(outs) => Answer::Unknown(format!(
            "a grouped statement answered {} rows for {} calls",
            outs.len(),
            items.len()
        )),
        Err(e) if wrote_nothing(&e) => {
            tracing::debug!(error = %e, calls = items.len(), "Grouped batch refused; its calls run alone");
            Answer::Alone
        }
        Err(e) => {
            tracing::debug!(error = %e, calls = items.len(), "Grouped batch's outcome is unknown");
            Answer::Unknown(e.to_string())
        }
    }
}

/// Whether a statement that failed with `e` certainly wrote nothing: the
/// server answered an error (its implicit transaction rolled back), or
/// the statement was never sent.
fn wrote_nothing(e: &sqlx::Error) -> bool {
    matches!(
        e,
        sqlx::Error::Database(_)
            | sqlx::Error::Encode(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
    )
}

#[cfg(test)]
mod tests;
