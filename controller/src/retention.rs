//! The retention task: deletes finished jobs older than `job_keep` (with
//! their attempts) and audit rows older than `audit_keep`, in batches of
//! [`BATCH`] rows, each its own short transaction with a pause between, so
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
/// Free pages given back per step.
pub const VACUUM_STEP: u32 = 1024;
/// Pause between two batches: the writer serves others meanwhile.
const PAUSE: Duration = Duration::from_millis(20);

/// What is kept; `None` = forever.
#[derive(Debug, Clone, Copy, Default)]
pub struct Policy {
    /// Finished jobs (and their attempts) are kept this long after they end.
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

/// Delete in batches with `prune` until a batch comes back short; the
/// number of rows deleted.
async fn drain<F, Fut>(shutdown: &CancellationToken, mut prune: F) -> store::Result<u64>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = store::Result<u64>>,
{
    let mut total = 0;
    loop {
        let n = prune().await?;
        total += n;
        if n < u64::from(BATCH) || shutdown.is_cancelled() {
            return Ok(total);
        }
        tokio::time::sleep(PAUSE).await;
    }
}

/// One sweep: jobs, audit, then vacuum.
async fn sweep(store: &Store, policy: &Policy, shutdown: &CancellationToken) -> store::Result<()> {
    let now = store::now_ms();
    let cutoff =
        |keep: Duration| now.saturating_sub(i64::try_from(keep.as_millis()).unwrap_or(i64::MAX));
    let jobs = match policy.job_keep {
        Some(keep) => drain(shutdown, || store.prune_jobs(cutoff(keep), BATCH)).await?,
        None => 0,
    };
    let audit = match policy.audit_keep {
        Some(keep) => drain(shutdown, || store.prune_audit(cutoff(keep), BATCH)).await?,
        None => 0,
    };
    if jobs + audit == 0 {
        return Ok(());
    }
    let mut free = store.incremental_vacuum(VACUUM_STEP).await?;
    while free > 0 && !shutdown.is_cancelled() {
        tokio::time::sleep(PAUSE).await;
        free = store.incremental_vacuum(VACUUM_STEP).await?;
    }
    tracing::info!(jobs, audit, "Retention pruned old rows");
    Ok(())
}

#[cfg(test)]
mod tests;
