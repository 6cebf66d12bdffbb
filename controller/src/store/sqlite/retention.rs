//! Retention in SQLite: finished jobs (with their attempts) and audit rows older than
//! what the operator keeps (`job_keep`, `audit_keep`) are deleted in bounded
//! batches, oldest first, each batch its own short transaction on the
//! writer connection, so the hot paths never wait long behind it. Freed
//! pages go back to the filesystem through incremental vacuum (the database
//! is switched to `auto_vacuum = INCREMENTAL` once, at open).
//!
//! Kept whatever their age: queued and running jobs, and the jobs of drills
//! (a drill's report is read from its job's attempts). Schedule
//! occurrences and ended pipeline runs follow `job_keep` with the exceptions
//! listed in [`crate::store::retention`]; the jobs of a pipeline run go with
//! the run (so a run's view and its retry always find its steps' jobs).

use std::sync::atomic::Ordering;

use sqlx::sqlite::SqliteConnection;

use async_trait::async_trait;

use super::SqliteStore;
use crate::store::Result;
use crate::store::retention::{PrunedSnapshot, RetentionStore};

/// The jobs one batch deletes: finished before `?1`, not a drill's, not a
/// step of a run still stored (it goes with its run), not the last success
/// of its schedule, oldest first, at most `?2`.
macro_rules! old_jobs {
    () => {
        "SELECT id FROM jobs
         WHERE finished_at < ?1 AND state IN ('succeeded', 'failed', 'cancelled') AND followup = 0
           AND id NOT IN (SELECT job_id FROM drills WHERE job_id IS NOT NULL)
           AND (run_id IS NULL OR NOT EXISTS (SELECT 1 FROM pipeline_runs r WHERE r.id = jobs.run_id))
           AND (state <> 'succeeded' OR schedule_id IS NULL OR EXISTS (
                SELECT 1 FROM jobs later WHERE later.schedule_id = jobs.schedule_id
                  AND later.state = 'succeeded' AND later.finished_at > jobs.finished_at
                  AND later.run_id IS NULL))
         ORDER BY finished_at LIMIT +?2"
    };
}

/// The occurrence rows one batch deletes (see
/// [`RetentionStore::prune_occurrences`]).
const OLD_OCCURRENCES: &str = "SELECT o.rowid FROM occurrences o
     WHERE o.recorded_at < ?1 AND COALESCE(o.last_nominal, o.nominal) < ?1 AND o.state <> 'pending'
       AND o.nominal < (SELECT MAX(n.nominal) FROM occurrences n WHERE n.schedule_id = o.schedule_id)
       AND (o.job_id IS NULL OR NOT EXISTS (
            SELECT 1 FROM jobs j WHERE j.id = o.job_id AND j.state IN ('queued', 'running')))
       AND (o.run_id IS NULL OR NOT EXISTS (
            SELECT 1 FROM pipeline_runs r WHERE r.id = o.run_id AND r.state = 'running'))
     ORDER BY o.recorded_at LIMIT +?2";

/// The runs one batch deletes (see [`RetentionStore::prune_runs`]): none of
/// their jobs still going or awaiting its follow-up.
const OLD_RUNS: &str = "SELECT r.id FROM pipeline_runs r
     WHERE r.finished_at < ?1 AND r.state IN ('succeeded', 'failed', 'cancelled')
       AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.run_id = r.id
                        AND (j.followup = 1 OR j.state IN ('queued', 'running')))
       AND (r.state <> 'succeeded' OR r.schedule_id IS NULL OR EXISTS (
            SELECT 1 FROM pipeline_runs later WHERE later.schedule_id = r.schedule_id
              AND later.state = 'succeeded' AND later.finished_at > r.finished_at))
     ORDER BY r.finished_at LIMIT +?2";

/// Run `sql` (one `?` list of ids, as JSON) on `ids`; rows affected.
async fn by_ids(c: &mut SqliteConnection, sql: &'static str, ids: &str) -> Result<u64> {
    Ok(sqlx::query(sql)
        .bind(ids)
        .execute(&mut *c)
        .await?
        .rows_affected())
}

/// `ids` as a JSON array (for `json_each`).
fn id_list(ids: &[i64]) -> String {
    let parts: Vec<String> = ids.iter().map(i64::to_string).collect();
    format!("[{}]", parts.join(","))
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

    async fn prune_occurrences(&self, before: i64, max: u32) -> Result<u64> {
        let mut tx = self.writer.begin().await?;
        let rows: Vec<i64> = sqlx::query_scalar(OLD_OCCURRENCES)
            .bind(before)
            .bind(i64::from(max))
            .fetch_all(&mut *tx)
            .await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let ids = id_list(&rows);
        by_ids(
            &mut tx,
            "INSERT INTO occurrences_pruned (schedule_id, state, count)
             SELECT schedule_id, state, SUM(count) FROM occurrences
             WHERE rowid IN (SELECT value FROM json_each(?1)) GROUP BY schedule_id, state
             ON CONFLICT (schedule_id, state) DO UPDATE SET count = count + excluded.count",
            &ids,
        )
        .await?;
        let n = by_ids(
            &mut tx,
            "DELETE FROM occurrences WHERE rowid IN (SELECT value FROM json_each(?1))",
            &ids,
        )
        .await?;
        tx.commit().await?;
        self.pruned.occurrences.fetch_add(n, Ordering::Relaxed);
        Ok(n)
    }

    async fn prune_runs(&self, before: i64, max: u32) -> Result<u64> {
        let mut tx = self.writer.begin().await?;
        let runs: Vec<i64> = sqlx::query_scalar(OLD_RUNS)
            .bind(before)
            .bind(i64::from(max))
            .fetch_all(&mut *tx)
            .await?;
        if runs.is_empty() {
            return Ok(0);
        }
        let ids = id_list(&runs);
        let attempts = by_ids(
            &mut tx,
            "DELETE FROM attempts WHERE job_id IN (SELECT id FROM jobs
               WHERE run_id IN (SELECT value FROM json_each(?1))
                 AND id NOT IN (SELECT job_id FROM drills WHERE job_id IS NOT NULL))",
            &ids,
        )
        .await?;
        let jobs = by_ids(
            &mut tx,
            "DELETE FROM jobs WHERE run_id IN (SELECT value FROM json_each(?1))
               AND id NOT IN (SELECT job_id FROM drills WHERE job_id IS NOT NULL)",
            &ids,
        )
        .await?;
        let steps = by_ids(
            &mut tx,
            "DELETE FROM run_steps WHERE run_id IN (SELECT value FROM json_each(?1))",
            &ids,
        )
        .await?;
        let n = by_ids(
            &mut tx,
            "DELETE FROM pipeline_runs WHERE id IN (SELECT value FROM json_each(?1))",
            &ids,
        )
        .await?;
        tx.commit().await?;
        self.pruned.jobs.fetch_add(jobs, Ordering::Relaxed);
        self.pruned.attempts.fetch_add(attempts, Ordering::Relaxed);
        self.pruned.run_steps.fetch_add(steps, Ordering::Relaxed);
        self.pruned.runs.fetch_add(n, Ordering::Relaxed);
        Ok(n)
    }

    /// Delete at most `max` audit rows written before `before` (Unix ms).
    async fn prune_audit(&self, before: i64, max: u32) -> Result<u64> {
        let n = sqlx::query(
            "DELETE FROM audit WHERE id IN (SELECT id FROM audit WHERE at < ?1 ORDER BY at LIMIT +?2)",
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
        self.pruned.snapshot()
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
