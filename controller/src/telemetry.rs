//! The controller's own event metrics (prometheus-client), recorded where
//! the events happen and served by `api::metrics` (`GET /metrics`).
//!
//! One process-wide set ([`metrics`]): the store's writer, the PostgreSQL
//! transactions, the jobs service, the long poll and the schedule timer all
//! record into it without a handle being threaded through their
//! constructors. Counters start at 0 with each process (as Prometheus
//! counters may); with several controllers each counts what it did, so sum
//! them over the replicas. What the store knows (jobs by state, agents,
//! drills, schedule occurrences) is read at scrape time by `api::metrics`
//! instead, the same on every replica.
//!
//! - `baton_dispatch_latency_seconds`: a job ready (submitted, or its
//!   backoff over) → granted (the grant committed);
//! - `baton_dispatch_poll_held_seconds`: how long a poll that got a grant
//!   was held before it;
//! - `baton_dispatch_polls_woken_total`, `baton_dispatch_wakes_wasted_total`:
//!   held polls woken (a wake for `n` jobs wakes at most `n`, handed on
//!   when a poll cannot take the work), and woken polls that then took
//!   nothing (lost the race, could not take it);
//! - `baton_dispatch_handoffs_total`: submitted jobs granted to a parked
//!   poll in the submit's own transaction (`jobs::handoff`: no wake-up);
//! - `baton_lease_expirations_total`: leases this controller ended because
//!   they ran out (the reaper's and a grant's expiries; a process counter,
//!   so retention pruning the attempts cannot lower it — each replica counts
//!   its own expiries, sum them);
//! - `baton_attempts_total{outcome}`: attempts ended, by outcome
//!   (`succeeded`, `failed`, `timed_out`, `cancelled`, `lease_expired`,
//!   `released`, `revoked`, `agent_restarted`);
//! - `baton_schedule_lateness_seconds`: a fired occurrence's nominal time →
//!   its firing committed;
//! - `baton_notification_deliveries_total{result}`: notification deliveries
//!   ([`notification_delivered`]);
//! - `baton_group_commit_batch_ops`, `baton_group_commit_seconds`: operations
//!   per group-commit batch and a batch's time from its start to its commit
//!   (SQLite's writer; PostgreSQL's grouped statements, `store::postgres::group`);
//! - `baton_store_transaction_seconds`: a PostgreSQL transaction, begin to
//!   commit (retries included), and the single-statement grant and
//!   heartbeat;
//! - `baton_sqlite_checkpoints_total`, `baton_sqlite_checkpoint_frames_total`,
//!   `baton_sqlite_checkpoint_failures_total`: the SQLite WAL checkpointer's
//!   checkpoints, the frames they copied into the database file, and its
//!   failed checkpoints (`store::sqlite::checkpoint`);
//! - `process_*`: CPU, memory, file descriptors, start time ([`process`]).

pub mod process;

use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// One label: `(name, value)`.
pub type Label = [(&'static str, &'static str); 1];

/// Bucket bounds (seconds) of the dispatch latency and the poll hold: a
/// grant in the same poll takes about a millisecond, a queued job waits for
/// a free agent up to minutes.
pub const DISPATCH_BUCKETS: [f64; 16] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// Bucket bounds (seconds) of schedule lateness: the timer fires within
/// milliseconds; a controller that was down fires late by its downtime.
pub const LATENESS_BUCKETS: [f64; 12] = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0, 600.0,
];

/// Bucket bounds (seconds) of a store commit (a group-commit batch, a
/// PostgreSQL transaction): one fsync is 0.1–0.5 ms here.
pub const COMMIT_BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// Bucket bounds of the operations in one group-commit batch (at most
/// `store::sqlite::writer::MAX_OPS`).
pub const BATCH_OPS_BUCKETS: [f64; 9] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

/// The results a notification delivery is counted under.
pub const DELIVERY_RESULTS: [&str; 3] = ["delivered", "retried", "failed"];

/// The controller's event metrics.
#[derive(Debug)]
pub struct Metrics {
    /// Ready → granted.
    pub dispatch_latency: Histogram,
    /// Poll arrival → grant, for polls that got one.
    pub poll_held: Histogram,
    /// Held polls woken.
    pub polls_woken: Counter,
    /// Woken polls that took nothing.
    pub wakes_wasted: Counter,
    /// Submitted jobs handed to a parked poll.
    pub handoffs: Counter,
    /// Attempts ended, by outcome.
    pub attempts: Family<Label, Counter>,
    /// Leases ended because they ran out.
    pub lease_expirations: Counter,
    /// Nominal time → fired.
    pub schedule_lateness: Histogram,
    /// Notification deliveries, by result.
    pub notification_deliveries: Family<Label, Counter>,
    /// Operations per group-commit batch.
    pub group_commit_ops: Histogram,
    /// A group-commit batch, start → commit.
    pub group_commit_seconds: Histogram,
    /// A transaction, begin → commit (PostgreSQL).
    pub store_transaction_seconds: Histogram,
    /// SQLite WAL checkpoints run.
    pub checkpoints: Counter,
    /// WAL frames they copied.
    pub checkpoint_frames: Counter,
    /// WAL checkpoints that failed.
    pub checkpoint_failures: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let m = Metrics {
            dispatch_latency: Histogram::new(DISPATCH_BUCKETS),
            poll_held: Histogram::new(DISPATCH_BUCKETS),
            polls_woken: Counter::default(),
            wakes_wasted: Counter::default(),
            handoffs: Counter::default(),
            attempts: Family::default(),
            lease_expirations: Counter::default(),
            schedule_lateness: Histogram::new(LATENESS_BUCKETS),
            notification_deliveries: Family::default(),
            group_commit_ops: Histogram::new(BATCH_OPS_BUCKETS),
            group_commit_seconds: Histogram::new(COMMIT_BUCKETS),
            store_transaction_seconds: Histogram::new(COMMIT_BUCKETS),
            checkpoints: Counter::default(),
            checkpoint_frames: Counter::default(),
            checkpoint_failures: Counter::default(),
        };
        // Every outcome and result is shown, 0 until it happens.
        for outcome in OUTCOMES {
            drop(m.attempts.get_or_create(&[("outcome", outcome)]));
        }
        for result in DELIVERY_RESULTS {
            drop(
                m.notification_deliveries
                    .get_or_create(&[("result", result)]),
            );
        }
        m
    }
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::default);

/// The process's event metrics.
pub fn metrics() -> &'static Metrics {
    &METRICS
}

/// Seconds of a duration in milliseconds (negative ones count as 0).
pub fn ms_as_secs(ms: i64) -> f64 {
    ms.max(0) as f64 / 1000.0
}

/// Count one ended attempt (`outcome`: `AttemptOutcome::as_str`).
pub fn attempt_ended(outcome: &'static str, n: u64) {
    if n > 0 {
        metrics()
            .attempts
            .get_or_create(&[("outcome", outcome)])
            .inc_by(n);
    }
}

/// Count `n` leases ended because they ran out (and their attempts).
pub fn leases_expired(n: u64) {
    if n > 0 {
        metrics().lease_expirations.inc_by(n);
        attempt_ended("lease_expired", n);
    }
}

/// Count one notification delivery attempt: `result` is `delivered` (the
/// receiver accepted it), `retried` (it failed and will be tried again) or
/// `failed` (given up: attempts or age exhausted, webhook removed); any
/// other value is counted as `failed`. Called by [`crate::notify`].
pub fn notification_delivered(result: &str) {
    let result = DELIVERY_RESULTS
        .into_iter()
        .find(|r| *r == result)
        .unwrap_or("failed");
    metrics()
        .notification_deliveries
        .get_or_create(&[("result", result)])
        .inc();
}

/// Observe one group-commit batch of `ops` operations that took `took`.
pub fn group_committed(ops: usize, took: Duration) {
    metrics().group_commit_ops.observe(ops as f64);
    metrics().group_commit_seconds.observe(took.as_secs_f64());
}

/// Observe one PostgreSQL transaction (or single-statement write) that
/// took `took`, begin to commit.
pub fn store_transaction(took: Duration) {
    metrics()
        .store_transaction_seconds
        .observe(took.as_secs_f64());
}

/// Count one SQLite WAL checkpoint that copied `frames` frames.
pub fn checkpointed(frames: u64) {
    metrics().checkpoints.inc();
    metrics().checkpoint_frames.inc_by(frames);
}

/// Count one failed SQLite WAL checkpoint.
pub fn checkpoint_failed() {
    metrics().checkpoint_failures.inc();
}

/// Register the event metrics (clones of the process-wide handles) and the
/// process collector in `reg`.
pub fn register(reg: &mut Registry) {
    let m = metrics();
    reg.register_with_unit(
        "baton_dispatch_latency",
        "Time from a job being ready to run (submitted, or its retry backoff over) to its grant committing",
        Unit::Seconds,
        m.dispatch_latency.clone(),
    );
    reg.register_with_unit(
        "baton_dispatch_poll_held",
        "How long an agent's poll that was granted a job had been held before the grant",
        Unit::Seconds,
        m.poll_held.clone(),
    );
    reg.register(
        "baton_dispatch_polls_woken",
        "Held agent polls woken by this controller to look for work (a wake-up for n jobs wakes at most n polls that can take them; a poll that cannot hands the wake on, which counts again)",
        m.polls_woken.clone(),
    );
    reg.register(
        "baton_dispatch_wakes_wasted",
        "Woken agent polls that then took no job (another poll took it first, or it could not take it and handed the wake on)",
        m.wakes_wasted.clone(),
    );
    reg.register(
        "baton_dispatch_handoffs",
        "Submitted jobs granted to a held agent poll in the submit's own transaction (no wake-up, one commit)",
        m.handoffs.clone(),
    );
    reg.register(
        "baton_attempts",
        "Attempts ended by this controller, by outcome",
        m.attempts.clone(),
    );
    reg.register(
        "baton_lease_expirations",
        "Leases this controller ended because they ran out (each replica counts its own)",
        m.lease_expirations.clone(),
    );
    reg.register_with_unit(
        "baton_schedule_lateness",
        "Time from a schedule occurrence's nominal time to its firing committing",
        Unit::Seconds,
        m.schedule_lateness.clone(),
    );
    reg.register(
        "baton_notification_deliveries",
        "Notification delivery attempts by result (delivered, retried, failed)",
        m.notification_deliveries.clone(),
    );
    reg.register(
        "baton_group_commit_batch_ops",
        "Operations per group-commit batch (the SQLite writer's transactions, PostgreSQL's grouped statements)",
        m.group_commit_ops.clone(),
    );
    reg.register_with_unit(
        "baton_group_commit",
        "Time of one group-commit batch, from its first operation to its commit (SQLite writer, PostgreSQL grouped statement)",
        Unit::Seconds,
        m.group_commit_seconds.clone(),
    );
    reg.register_with_unit(
        "baton_store_transaction",
        "Time of one PostgreSQL store transaction or single-statement write (grant, heartbeat), begin to commit (retries included)",
        Unit::Seconds,
        m.store_transaction_seconds.clone(),
    );
    reg.register(
        "baton_sqlite_checkpoints",
        "SQLite WAL checkpoints run by the checkpointer beside the writer (the writer's commits never checkpoint)",
        m.checkpoints.clone(),
    );
    reg.register(
        "baton_sqlite_checkpoint_frames",
        "WAL frames (pages) the SQLite checkpointer copied into the database file",
        m.checkpoint_frames.clone(),
    );
    reg.register(
        "baton_sqlite_checkpoint_failures",
        "SQLite WAL checkpoints that failed (retried with backoff; the WAL grows meanwhile)",
        m.checkpoint_failures.clone(),
    );
    reg.register_collector(Box::new(process::Process));
}

/// Every attempt outcome (`baton_proto::AttemptOutcome::as_str`).
const OUTCOMES: [&str; 8] = [
    "succeeded",
    "failed",
    "timed_out",
    "cancelled",
    "lease_expired",
    "released",
    "revoked",
    "agent_restarted",
];

#[cfg(test)]
mod tests;
