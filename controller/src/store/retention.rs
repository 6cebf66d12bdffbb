//! Retention: finished jobs (with their attempts) and audit rows older than
//! what the operator keeps (`job_keep`, `audit_keep`) are deleted in bounded
//! batches, oldest first, each batch its own short transaction, so the hot
//! paths never wait long behind it; then freed space goes back to the
//! filesystem.
//!
//! Kept whatever their age: queued and running jobs, and the jobs of drills
//! (a drill's report is read from its job's attempts).
//!
//! Schedule occurrences and ended pipeline runs (with their steps) follow
//! `job_keep` too. Kept whatever their age: a pending occurrence, the newest
//! occurrence of each schedule (`schedule show` names it), one whose job or
//! run has not ended, and the last successful job or run of each schedule
//! (its `last success` and `stale` flag are read from it). The totals of
//! pruned occurrences are kept per schedule and state, so a schedule's
//! counts and `baton_schedule_occurrences_total` never go down.

use std::sync::atomic::AtomicU64;

use async_trait::async_trait;

use super::Result;

/// Rows deleted by retention since the process started.
#[derive(Debug, Default)]
pub struct Pruned {
    /// Finished jobs.
    pub jobs: AtomicU64,
    /// Their attempts.
    pub attempts: AtomicU64,
    /// Audit rows.
    pub audit: AtomicU64,
    /// Schedule occurrence rows (a range is one row).
    pub occurrences: AtomicU64,
    /// Ended pipeline runs.
    pub runs: AtomicU64,
    /// Their step rows.
    pub run_steps: AtomicU64,
}

impl Pruned {
    /// The counts now.
    pub fn snapshot(&self) -> PrunedSnapshot {
        use std::sync::atomic::Ordering::Relaxed;
        PrunedSnapshot {
            jobs: self.jobs.load(Relaxed),
            attempts: self.attempts.load(Relaxed),
            audit: self.audit.load(Relaxed),
            occurrences: self.occurrences.load(Relaxed),
            runs: self.runs.load(Relaxed),
            run_steps: self.run_steps.load(Relaxed),
        }
    }
}

/// A snapshot of [`Pruned`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PrunedSnapshot {
    /// Finished jobs deleted.
    pub jobs: u64,
    /// Attempts deleted with them.
    pub attempts: u64,
    /// Audit rows deleted.
    pub audit: u64,
    /// Schedule occurrence rows deleted.
    pub occurrences: u64,
    /// Ended pipeline runs deleted.
    pub runs: u64,
    /// Their step rows deleted with them.
    pub run_steps: u64,
}

impl PrunedSnapshot {
    /// `(table, rows)` for each table retention prunes (metrics labels).
    pub fn by_table(&self) -> [(&'static str, u64); 6] {
        [
            ("jobs", self.jobs),
            ("attempts", self.attempts),
            ("audit", self.audit),
            ("occurrences", self.occurrences),
            ("pipeline_runs", self.runs),
            ("run_steps", self.run_steps),
        ]
    }
}

/// Retention of a backend.
#[async_trait]
pub trait RetentionStore {
    /// Delete at most `max` jobs that finished before `before` (Unix ms),
    /// with their attempts, in one transaction, oldest first. Kept: drills'
    /// jobs, the steps of a run still stored (they go with their run, see
    /// [`RetentionStore::prune_runs`]) and each schedule's last successful
    /// job. Returns how many jobs.
    async fn prune_jobs(&self, before: i64, max: u32) -> Result<u64>;

    /// Delete at most `max` schedule occurrence rows whose nominal time (the
    /// last of a range) and record time are before `before` (Unix ms),
    /// oldest first, in one transaction, adding them to the schedule's
    /// pruned totals. Kept: pending ones, each schedule's newest, and those
    /// whose job or run has not ended. Returns how many rows.
    async fn prune_occurrences(&self, before: i64, max: u32) -> Result<u64>;

    /// Delete at most `max` pipeline runs that ended before `before` (Unix
    /// ms), with their step rows and their steps' jobs and attempts, oldest
    /// first, in one transaction; each schedule's last successful run is
    /// kept. Returns how many runs.
    async fn prune_runs(&self, before: i64, max: u32) -> Result<u64>;

    /// Delete at most `max` audit rows written before `before` (Unix ms).
    async fn prune_audit(&self, before: i64, max: u32) -> Result<u64>;

    /// Give at most `pages` free pages back to the filesystem; returns the
    /// free pages left.
    async fn incremental_vacuum(&self, pages: u32) -> Result<i64>;

    /// Rows retention deleted since the process started.
    fn pruned(&self) -> PrunedSnapshot;
}
