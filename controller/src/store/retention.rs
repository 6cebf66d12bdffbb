//! Retention: finished jobs (with their attempts) and audit rows older than
//! what the operator keeps (`job_keep`, `audit_keep`) are deleted in bounded
//! batches, oldest first, each batch its own short transaction, so the hot
//! paths never wait long behind it; then freed space goes back to the
//! filesystem.
//!
//! Kept whatever their age: queued and running jobs, and the jobs of drills
//! (a drill's report is read from its job's attempts).

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
}

/// A snapshot of [`Pruned`] (jobs, attempts, audit rows).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PrunedSnapshot {
    /// Finished jobs deleted.
    pub jobs: u64,
    /// Attempts deleted with them.
    pub attempts: u64,
    /// Audit rows deleted.
    pub audit: u64,
}

/// Retention of a backend.
#[async_trait]
pub trait RetentionStore {
    /// Delete at most `max` jobs that finished before `before` (Unix ms),
    /// with their attempts, in one transaction. Returns how many jobs.
    async fn prune_jobs(&self, before: i64, max: u32) -> Result<u64>;

    /// Delete at most `max` audit rows written before `before` (Unix ms).
    async fn prune_audit(&self, before: i64, max: u32) -> Result<u64>;

    /// Give at most `pages` free pages back to the filesystem; returns the
    /// free pages left.
    async fn incremental_vacuum(&self, pages: u32) -> Result<i64>;

    /// Rows retention deleted since the process started.
    fn pruned(&self) -> PrunedSnapshot;
}
