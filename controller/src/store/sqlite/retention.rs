//! Retention in SQLite: finished jobs (with their attempts) and audit rows older than
//! what the operator keeps (`job_keep`, `audit_keep`) are deleted in bounded
//! batches, oldest first, each batch its own short transaction on the
//! writer connection, so the hot paths never wait long behind it. Freed
//! pages go back to the filesystem through incremental vacuum (the database
//! is switched to `auto_vacuum = INCREMENTAL` once, at open).
//!
//! Kept whatever their age: queued and running jobs, and the jobs of drills
//! (a drill's report is read from its job's attempts).

use std::sync::atomic::Ordering;

use async_trait::async_trait;

use super::SqliteStore;
use crate::store::Result;
use crate::store::retention::{PrunedSnapshot, RetentionStore};

/// The jobs one batch deletes: finished before `?1`, not a drill's, oldest
/// first, at most `?2`.
macro_rules! old_jobs {
    () => {
        "SELECT id FROM jobs
         WHERE finished_at < ?1 AND state IN ('succeeded', 'failed', 'cancelled') AND followup = 0
           AND id NOT IN (SELECT job_id FROM drills WHERE job_id IS NOT NULL)
           AND (run_id IS NULL OR run_id NOT IN (SELECT id FROM pipeline_runs WHERE state = 'running'))
         ORDER BY finished_at LIMIT ?2"
    };
}

#[async_trait]
impl RetentionStore for SqliteStore {
    /// Delete at most `max` jobs that finished before `before` (Unix ms),
    /// with their attempts, in one transaction. Returns how many jobs.
    async fn prune_jobs(&self, before: i64, max: u32) -> Result<u64> {
        let mut tx = self.writer.begin().await?;
        let attempts = sqlx::query(concat!(
            "DELETE FROM attempts WHERE job_id IN (",
            old_jobs!(),
            ")"
        ))
        .bind(before)
        .bind(i64::from(max))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let jobs = sqlx::query(concat!("DELETE FROM jobs WHERE id IN (", old_jobs!(), ")"))
            .bind(before)
            .bind(i64::from(max))
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        self.pruned.jobs.fetch_add(jobs, Ordering::Relaxed);
        self.pruned.attempts.fetch_add(attempts, Ordering::Relaxed);
        Ok(jobs)
    }

    /// Delete at most `max` audit rows written before `before` (Unix ms).
    async fn prune_audit(&self, before: i64, max: u32) -> Result<u64> {
        let n = sqlx::query(
            "DELETE FROM audit WHERE id IN (SELECT id FROM audit WHERE at < ?1 ORDER BY at LIMIT ?2)",
        )
        .bind(before)
        .bind(i64::from(max))
        .execute(&self.writer)
        .await?
        .rows_affected();
        self.pruned.audit.fetch_add(n, Ordering::Relaxed);
        Ok(n)
    }

    /// Give at most `pages` free pages back to the filesystem; returns the
    /// free pages left.
    async fn incremental_vacuum(&self, pages: u32) -> Result<i64> {
        let mut conn = self.writer.acquire().await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "PRAGMA incremental_vacuum({pages})"
        )))
        .execute(&mut *conn)
        .await?;
        let free: i64 = sqlx::query_scalar("PRAGMA freelist_count")
            .fetch_one(&mut *conn)
            .await?;
        Ok(free)
    }

    /// Rows retention deleted since the process started.
    fn pruned(&self) -> PrunedSnapshot {
        PrunedSnapshot {
            jobs: self.pruned.jobs.load(Ordering::Relaxed),
            attempts: self.pruned.attempts.load(Ordering::Relaxed),
            audit: self.pruned.audit.load(Ordering::Relaxed),
        }
    }
}

/// Switch a database made before retention to incremental auto-vacuum: the
/// setting only takes effect through one full `VACUUM` (it needs about the
/// database's size in free space; on failure the controller goes on and
/// tries again at the next start). New databases get it at creation.
pub(super) async fn enable_incremental_vacuum(pool: &sqlx::SqlitePool) -> Result<()> {
    let mode: i64 = sqlx::query_scalar("PRAGMA auto_vacuum")
        .fetch_one(pool)
        .await?;
    if mode == 2 {
        return Ok(());
    }
    tracing::info!("Switching the database to incremental vacuum (one VACUUM, once)");
    let started = std::time::Instant::now();
    let mut conn = pool.acquire().await?;
    sqlx::query("PRAGMA auto_vacuum = INCREMENTAL")
        .execute(&mut *conn)
        .await?;
    if let Err(e) = sqlx::query("VACUUM").execute(&mut *conn).await {
        tracing::warn!(error = %e, "Cannot VACUUM the database; retention frees pages but the file will not shrink until a later start succeeds");
        return Ok(());
    }
    tracing::info!(
        millis = started.elapsed().as_millis() as u64,
        "Database switched to incremental vacuum"
    );
    Ok(())
}

#[cfg(test)]
mod tests;
