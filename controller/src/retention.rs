//! The retention task: deletes finished jobs older than `job_keep` (with
//! their attempts), schedule occurrences and ended pipeline runs older than
//! `job_keep` (what is kept whatever its age: [`crate::store::retention`])
//! and audit rows older than `audit_keep`, in batches of [`BATCH`] rows
//! ([`RUN_BATCH`] runs, each with its steps' jobs), each its own short transaction with a pause between, so
//! the hot paths never wait long behind it; then gives the freed pages back
//! to the filesystem (incremental vacuum, [`VACUUM_STEP`] pages at a time).
//! Counted in `/metrics` (`baton_pruned_rows_total{table}`).
//!
//! It runs every quarter of the shorter keep (at least each second, at most
//! every 5 minutes), starting one period after the start.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::store::{self, Store};

/// Rows per transaction.
pub const BATCH: u32 = 500;
/// Pipeline runs per transaction (each goes with its steps and their jobs).
pub const RUN_BATCH: u32 = 50;
/// Free pages given back per step.
pub const VACUUM_STEP: u32 = 1024;
/// Pause between two batches: the writer serves others meanwhile.
const PAUSE: Duration = Duration::from_millis(20);

/// What is kept; `None` = forever.
#[derive(Debug, Clone, Copy, Default)]
pub struct Policy {
    /// Finished jobs (and their attempts), schedule occurrences and ended
    /// pipeline runs are kept this long after they end.
    pub job_keep: Option<Duration>,
    /// Audit rows are kept this long.
    pub audit_keep: Option<Duration>,
}

impl Policy {
    /// How often to sweep; `None` when nothing is ever pruned.
    pub fn period(&self) -> Option<Duration> {
        let shortest = [self.job_keep, self.audit_keep]
            .into_iter()
            .flatten()
            .min()?;
        Some((shortest / 4).clamp(Duration::from_secs(1), Duration::from_secs(300)))
    }
}

/// Run until `shutdown`.
pub async fn run(store: Store, policy: Policy, shutdown: CancellationToken) {
    let Some(period) = policy.period() else {
        return;
    };
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(period) => {}
        }
        match sweep(&store, &policy, &shutdown).await {
            Ok(()) => {}
            // The store's health logged it once, as an ERROR.
            Err(e @ store::Error::Unavailable { .. }) => {
                tracing::debug!(error = %e, "Retention skipped: the store cannot commit");
            }
            Err(e) => tracing::warn!(error = %e, "Retention failed; trying again later"),
        }
    }
}

/// Delete in batches of `batch` with `prune` until a batch comes back
/// short; the number of rows deleted.
async fn drain<F, Fut>(shutdown: &CancellationToken, batch: u32, mut prune: F) -> store::Result<u64>
where
    F: FnMut(u32) -> Fut,
    Fut: std::future::Future<Output = store::Result<u64>>,
{
    let mut total = 0;
    loop {
        let n = prune(batch).await?;
        total += n;
        if n < u64::from(batch) || shutdown.is_cancelled() {
            return Ok(total);
        }
        tokio::time::sleep(PAUSE).await;
    }
}

/// Jobs, schedule occurrences and pipeline runs older than `job_keep`:
/// `(jobs, occurrences, runs)` deleted. Runs go first, so the steps' jobs
/// they held go with them in the same sweep.
async fn sweep_jobs(
    store: &Store,
    before: i64,
    shutdown: &CancellationToken,
) -> store::Result<(u64, u64, u64)> {
    let runs = drain(shutdown, RUN_BATCH, |n| store.prune_runs(before, n)).await?;
    let jobs = drain(shutdown, BATCH, |n| store.prune_jobs(before, n)).await?;
    let occurrences = drain(shutdown, BATCH, |n| store.prune_occurrences(before, n)).await?;
    Ok((jobs, occurrences, runs))
}

/// One sweep: runs, jobs, occurrences, audit, then vacuum.
async fn sweep(store: &Store, policy: &Policy, shutdown: &CancellationToken) -> store::Result<()> {
    let now = store::now_ms();
    let cutoff =
        |keep: Duration| now.saturating_sub(i64::try_from(keep.as_millis()).unwrap_or(i64::MAX));
    let (jobs, occurrences, runs) = match policy.job_keep {
        Some(keep) => sweep_jobs(store, cutoff(keep), shutdown).await?,
        None => (0, 0, 0),
    };
    let audit = match policy.audit_keep {
        Some(keep) => drain(shutdown, BATCH, |n| store.prune_audit(cutoff(keep), n)).await?,
        None => 0,
    };
    if jobs + occurrences + runs + audit == 0 {
        return Ok(());
    }
    let mut free = store.incremental_vacuum(VACUUM_STEP).await?;
    while free > 0 && !shutdown.is_cancelled() {
        tokio::time::sleep(PAUSE).await;
        free = store.incremental_vacuum(VACUUM_STEP).await?;
    }
    tracing::info!(jobs, occurrences, runs, audit, "Retention pruned old rows");
    Ok(())
}

#[cfg(test)]
mod tests;
