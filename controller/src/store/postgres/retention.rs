//! Retention on PostgreSQL (what is kept: [`crate::store::retention`]).
//!
//! Every replica runs the retention loop, so two replicas may prune the
//! same table at once. Each batch picks its rows with `FOR UPDATE SKIP
//! LOCKED` and deletes only those, in one transaction: concurrent batches
//! take disjoint rows, never wait on each other and never fail on each
//! other, and every count (the in-memory [`Pruned`] of each replica, the
//! `occurrences_pruned` totals) is of rows this batch itself deleted: the
//! sum over the replicas is exact. The occurrence totals are added from the
//! `RETURNING` of the very `DELETE`, in the same statement.
//!
//! There is no incremental vacuum: deleted rows are reclaimed by
//! PostgreSQL's autovacuum (space is reused by the table, not returned to
//! the filesystem; a `VACUUM FULL` in a maintenance window does that).
//!
//! [`Pruned`]: crate::store::retention::Pruned

use std::sync::atomic::Ordering;

use async_trait::async_trait;
use sqlx::postgres::PgConnection;

use super::PgStore;
use crate::store::Result;
use crate::store::retention::{PrunedSnapshot, RetentionStore};

/// The jobs one batch deletes, locked: finished before `$1`, not a drill's,
/// not a step of a run still stored (it goes with its run), not the last
/// success of its schedule, oldest first, at most `$2`.
const OLD_JOBS: &str = "SELECT id FROM jobs
     WHERE finished_at < $1 AND state IN ('succeeded', 'failed', 'cancelled') AND NOT followup
       AND id NOT IN (SELECT job_id FROM drills WHERE job_id IS NOT NULL)
       AND (run_id IS NULL OR NOT EXISTS (SELECT 1 FROM pipeline_runs r WHERE r.id = jobs.run_id))
       AND (state <> 'succeeded' OR schedule_id IS NULL OR EXISTS (
            SELECT 1 FROM jobs later WHERE later.schedule_id = jobs.schedule_id
              AND later.state = 'succeeded' AND later.finished_at > jobs.finished_at
              AND later.run_id IS NULL))
     ORDER BY finished_at LIMIT $2
     FOR UPDATE OF jobs SKIP LOCKED";

/// One batch of occurrences, in one statement: pick the rows (see
/// [`RetentionStore::prune_occurrences`]) locked, delete them, and add what
/// was deleted to the schedule's pruned totals (in key order, so two
/// batches adding to one schedule's totals do not deadlock). The number of
/// rows deleted.
const PRUNE_OCCURRENCES: &str = "WITH picked AS (
       SELECT o.schedule_id, o.nominal FROM occurrences o
       WHERE o.recorded_at < $1 AND COALESCE(o.last_nominal, o.nominal) < $1 AND o.state <> 'pending'
         AND o.nominal < (SELECT MAX(n.nominal) FROM occurrences n WHERE n.schedule_id = o.schedule_id)
         AND (o.job_id IS NULL OR NOT EXISTS (
              SELECT 1 FROM jobs j WHERE j.id = o.job_id AND j.state IN ('queued', 'running')))
         AND (o.run_id IS NULL OR NOT EXISTS (
              SELECT 1 FROM pipeline_runs r WHERE r.id = o.run_id AND r.state = 'running'))
       ORDER BY o.recorded_at LIMIT $2
       FOR UPDATE OF o SKIP LOCKED),
     gone AS (
       DELETE FROM occurrences d USING picked p
       WHERE d.schedule_id = p.schedule_id AND d.nominal = p.nominal
       RETURNING d.schedule_id, d.state, d.count),
     added AS (
       INSERT INTO occurrences_pruned (schedule_id, state, count)
       SELECT schedule_id, state, SUM(count)::bigint FROM gone
       GROUP BY schedule_id, state ORDER BY schedule_id, state
       ON CONFLICT (schedule_id, state) DO UPDATE SET count = occurrences_pruned.count + excluded.count
       RETURNING 1)
     SELECT (SELECT COUNT(*) FROM gone), (SELECT COUNT(*) FROM added)";

/// The runs one batch deletes, locked (see
/// [`RetentionStore::prune_runs`]): none of their jobs still going or
/// awaiting its follow-up.
const OLD_RUNS: &str = "SELECT r.id FROM pipeline_runs r
     WHERE r.finished_at < $1 AND r.state IN ('succeeded', 'failed', 'cancelled')
       AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.run_id = r.id
                        AND (j.followup OR j.state IN ('queued', 'running')))
       AND (r.state <> 'succeeded' OR r.schedule_id IS NULL OR EXISTS (
            SELECT 1 FROM pipeline_runs later WHERE later.schedule_id = r.schedule_id
              AND later.state = 'succeeded' AND later.finished_at > r.finished_at))
     ORDER BY r.finished_at LIMIT $2
     FOR UPDATE OF r SKIP LOCKED";

/// Rows one batch deleted, per table.
#[derive(Debug, Clone, Copy, Default)]
struct Batch {
    jobs: u64,
    attempts: u64,
    runs: u64,
    run_steps: u64,
}

/// Run `sql` (one `$1` array of ids) on `ids`; rows affected.
async fn by_ids(c: &mut PgConnection, sql: &'static str, ids: &[i64]) -> Result<u64> {
    Ok(sqlx::query(sql)
        .bind(ids)
        .execute(&mut *c)
        .await?
        .rows_affected())
}

/// The ids `sql` picks (and locks): `$1` = before, `$2` = at most.
async fn pick(c: &mut PgConnection, sql: &'static str, before: i64, max: u32) -> Result<Vec<i64>> {
    Ok(sqlx::query_scalar(sql)
        .bind(before)
        .bind(i64::from(max))
        .fetch_all(&mut *c)
        .await?)
}

/// Delete the old jobs of one batch (locked first) with their attempts.
async fn prune_jobs_batch(c: &mut PgConnection, before: i64, max: u32) -> Result<Batch> {
    let ids = pick(c, OLD_JOBS, before, max).await?;
    if ids.is_empty() {
        return Ok(Batch::default());
    }
    let attempts = by_ids(c, "DELETE FROM attempts WHERE job_id = ANY($1)", &ids).await?;
    let jobs = by_ids(c, "DELETE FROM jobs WHERE id = ANY($1)", &ids).await?;
    Ok(Batch {
        jobs,
        attempts,
        ..Batch::default()
    })
}

/// Delete the ended runs of one batch (locked first) with their step rows
/// and their steps' jobs and attempts (but never a drill's job).
async fn prune_runs_batch(c: &mut PgConnection, before: i64, max: u32) -> Result<Batch> {
    let ids = pick(c, OLD_RUNS, before, max).await?;
    if ids.is_empty() {
        return Ok(Batch::default());
    }
    let attempts = by_ids(
        c,
        "DELETE FROM attempts WHERE job_id IN (SELECT id FROM jobs
           WHERE run_id = ANY($1)
             AND id NOT IN (SELECT job_id FROM drills WHERE job_id IS NOT NULL))",
        &ids,
    )
    .await?;
    let jobs = by_ids(
        c,
        "DELETE FROM jobs WHERE run_id = ANY($1)
           AND id NOT IN (SELECT job_id FROM drills WHERE job_id IS NOT NULL)",
        &ids,
    )
    .await?;
    let run_steps = by_ids(c, "DELETE FROM run_steps WHERE run_id = ANY($1)", &ids).await?;
    let runs = by_ids(c, "DELETE FROM pipeline_runs WHERE id = ANY($1)", &ids).await?;
    Ok(Batch {
        jobs,
        attempts,
        runs,
        run_steps,
    })
}

impl PgStore {
    /// Count a committed batch in this replica's [`Pruned`](crate::store::retention::Pruned).
    fn count_pruned(&self, b: Batch) {
        self.pruned.jobs.fetch_add(b.jobs, Ordering::Relaxed);
        self.pruned
            .attempts
            .fetch_add(b.attempts, Ordering::Relaxed);
        self.pruned.runs.fetch_add(b.runs, Ordering::Relaxed);
        self.pruned
            .run_steps
            .fetch_add(b.run_steps, Ordering::Relaxed);
    }
}

#[async_trait]
impl RetentionStore for PgStore {
    async fn prune_jobs(&self, before: i64, max: u32) -> Result<u64> {
        let b = self
            .tx(|c| Box::pin(prune_jobs_batch(c, before, max)))
            .await?;
        self.count_pruned(b);
        Ok(b.jobs)
    }

    async fn prune_occurrences(&self, before: i64, max: u32) -> Result<u64> {
        let (n, _totals): (i64, i64) = self
            .tx(|c| {
                Box::pin(async move {
                    Ok(sqlx::query_as(PRUNE_OCCURRENCES)
                        .bind(before)
                        .bind(i64::from(max))
                        .fetch_one(&mut *c)
                        .await?)
                })
            })
            .await?;
        let n = u64::try_from(n).unwrap_or(0);
        self.pruned.occurrences.fetch_add(n, Ordering::Relaxed);
        Ok(n)
    }

    async fn prune_runs(&self, before: i64, max: u32) -> Result<u64> {
        let b = self
            .tx(|c| Box::pin(prune_runs_batch(c, before, max)))
            .await?;
        self.count_pruned(b);
        Ok(b.runs)
    }

    async fn prune_audit(&self, before: i64, max: u32) -> Result<u64> {
        let n = sqlx::query(
            "DELETE FROM audit WHERE id IN (
               SELECT id FROM audit WHERE at < $1 ORDER BY at LIMIT $2 FOR UPDATE SKIP LOCKED)",
        )
        .bind(before)
        .bind(i64::from(max))
        .execute(&self.pool)
        .await?
        .rows_affected();
        self.pruned.audit.fetch_add(n, Ordering::Relaxed);
        Ok(n)
    }

    /// Nothing to do on PostgreSQL: autovacuum makes deleted rows' space
    /// reusable (see the module docs). No free pages are left to give back.
    async fn incremental_vacuum(&self, _pages: u32) -> Result<i64> {
        Ok(0)
    }

    /// Rows this replica's retention deleted since the process started.
    fn pruned(&self) -> PrunedSnapshot {
        self.pruned.snapshot()
    }
}

#[cfg(test)]
mod tests;
