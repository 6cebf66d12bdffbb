//! Schedules and occurrences on PostgreSQL ([`crate::store::schedules`]).
//!
//! The timer runs on every replica, so every path here may run on two
//! replicas at once (ARCHITECTURE.md "Several controllers"):
//!
//! - A firing moves the cursor first, by a conditional `UPDATE … WHERE
//!   cursor = $expect` that locks the schedule row until the firing
//!   commits: a second replica firing the same plan waits for the first,
//!   then finds the cursor moved and writes nothing (`raced`). A firing
//!   that does not move the cursor (trigger now, backfill) locks the row
//!   with `FOR UPDATE`.
//! - Each occurrence is recorded with `INSERT … ON CONFLICT DO NOTHING` on
//!   the `(schedule_id, nominal)` key, and its job is refused a second time
//!   by the unique index `jobs_occurrence` (runs: `runs_occurrence`): one
//!   occurrence and one job per nominal time, whatever races.
//! - The follow-up outbox (`jobs.followup`) is claimed with `FOR UPDATE SKIP
//!   LOCKED`: each ended job is followed up by one replica; starting a
//!   schedule's pending occurrence locks the schedule row first.

use async_trait::async_trait;
use baton_proto::JobId;
use baton_proto::schedule::{OccurrenceCounts, OccurrenceView, ScheduleSpec};
use sqlx::postgres::PgConnection;
use std::sync::Arc;

use super::PgStore;
use crate::store::schedules::{
    Active, Cursor, DueRow, DueSchedule, Fired, Firing, FollowedUp, OCCURRENCE_SELECT,
    OccurrenceRow, ScheduleStats, ScheduleStore, StoredSchedule, fold_counts,
};
pub(super) use crate::store::schedules::{SCHEDULE_COLUMNS, ScheduleRow};
use crate::store::{Error, Result};

mod fire;
mod put;

pub(crate) use fire::push_group;
use fire::{activity, fail_stranded_in, fire_apart, fire_in, fire_together, follow_up_in};

/// A schedule by name (`lock`: its row locked until the transaction ends).
async fn schedule_by(c: &mut PgConnection, name: &str, lock: bool) -> Result<StoredSchedule> {
    schedule_where(c, "name = $1", lock, name, name).await
}

/// A schedule by id, its row locked until the transaction ends (every
/// caller writes what it decides from it).
pub(super) async fn schedule_by_id(c: &mut PgConnection, id: i64) -> Result<StoredSchedule> {
    schedule_where(c, "id = $1", true, id, &id.to_string()).await
}

/// The schedule `cond` (one bound value, `key`) selects; `what` names it in
/// the error when there is none.
async fn schedule_where<'k, K>(
    c: &mut PgConnection,
    cond: &str,
    lock: bool,
    key: K,
    what: &str,
) -> Result<StoredSchedule>
where
    K: 'k + Send + sqlx::Encode<'k, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    let lock = if lock { " FOR UPDATE" } else { "" };
    let sql = format!("SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE {cond}{lock}");
    let row: Option<ScheduleRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(key)
        .fetch_optional(&mut *c)
        .await?;
    row.ok_or_else(|| Error::Missing(format!("schedule `{what}`")))?
        .stored()
}

#[async_trait]
impl ScheduleStore for PgStore {
    async fn put_schedule(
        &self,
        spec: &ScheduleSpec,
        cursor: Cursor,
        create_only: bool,
        now: i64,
    ) -> Result<(StoredSchedule, bool)> {
        let spec = Arc::new(spec.clone());
        self.tx(move |c| {
            let spec = spec.clone();
            Box::pin(async move { put::put_in(c, &spec, cursor, create_only, now).await })
        })
        .await
    }

    async fn get_schedule(&self, name: &str) -> Result<StoredSchedule> {
        let mut c = self.pool.acquire().await?;
        schedule_by(&mut c, name, false).await
    }

    async fn list_schedules(&self) -> Result<Vec<StoredSchedule>> {
        let sql = format!("SELECT {SCHEDULE_COLUMNS} FROM schedules ORDER BY name");
        let rows: Vec<ScheduleRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(ScheduleRow::stored).collect()
    }

    async fn delete_schedule(&self, name: &str) -> Result<()> {
        let done = sqlx::query("DELETE FROM schedules WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(Error::Missing(format!("schedule `{name}`")));
        }
        Ok(())
    }

    async fn set_paused(
        &self,
        name: &str,
        paused: bool,
        cursor: Cursor,
        now: i64,
    ) -> Result<StoredSchedule> {
        let name: Arc<str> = name.into();
        self.tx(move |c| {
            let name = name.clone();
            Box::pin(async move { put::set_paused_in(c, &name, paused, cursor, now).await })
        })
        .await
    }

    async fn due_schedules(&self, now: i64, limit: u32) -> Result<Vec<DueSchedule>> {
        // One statement for the schedules and what their plans need. Ordered
        // by id within a time, so replicas lock the rows of their firings in
        // one order.
        let sql = format!(
            "SELECT {SCHEDULE_COLUMNS},
               (SELECT j.id FROM jobs j WHERE j.schedule_id = s.id AND j.run_id IS NULL
                  AND j.state IN ('queued', 'running') ORDER BY j.id DESC LIMIT 1) AS job_id,
               (SELECT j.state FROM jobs j WHERE j.schedule_id = s.id AND j.run_id IS NULL
                  AND j.state IN ('queued', 'running') ORDER BY j.id DESC LIMIT 1) AS job_state,
               (SELECT r.id FROM pipeline_runs r WHERE r.schedule_id = s.id AND r.state = 'running'
                  ORDER BY r.id DESC LIMIT 1) AS run_id,
               (SELECT COUNT(*) FROM occurrences o WHERE o.schedule_id = s.id
                  AND o.state = 'pending') AS pending
             FROM schedules s
             WHERE NOT paused AND next_fire_at IS NOT NULL AND next_fire_at <= $1
             ORDER BY next_fire_at, id LIMIT $2"
        );
        let rows: Vec<DueRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(now)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(DueRow::due).collect()
    }

    async fn schedule_activity(&self, id: i64) -> Result<(Option<Active>, u32)> {
        let mut c = self.pool.acquire().await?;
        activity(&mut c, id).await
    }

    async fn next_schedule_fire(&self) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT MIN(next_fire_at) FROM schedules WHERE NOT paused AND next_fire_at IS NOT NULL",
        )
        .fetch_one(&self.pool)
        .await?)
    }

    async fn fire(&self, firing: &Firing, now: i64) -> Result<Fired> {
        // A raced firing wrote nothing: committing it is the same as
        // rolling it back.
        let firing = Arc::new(firing.clone());
        self.tx(move |c| {
            let firing = firing.clone();
            Box::pin(async move { fire_in(c, &firing, now).await })
        })
        .await
    }

    async fn fire_all(&self, firings: &[Firing], now: i64) -> Result<Vec<Result<Fired>>> {
        let firings: Arc<[Firing]> = firings.into();
        let all = firings.clone();
        let together = self
            .tx(move |c| {
                let all = all.clone();
                Box::pin(async move { fire_together(c, &all, now).await })
            })
            .await;
        match together {
            Ok(out) => Ok(out),
            Err(e @ Error::Unavailable { .. }) => Err(e),
            // One was refused (and rolled everything back): fire them apart.
            Err(_) => {
                self.tx(move |c| {
                    let firings = firings.clone();
                    Box::pin(async move { fire_apart(c, &firings, now).await })
                })
                .await
            }
        }
    }

    async fn follow_up(
        &self,
        now: i64,
        limit: u32,
        default_lease_ttl_ms: u64,
    ) -> Result<FollowedUp> {
        self.tx(move |c| Box::pin(follow_up_in(c, now, limit, default_lease_ttl_ms)))
            .await
    }

    async fn fail_stranded(&self, now: i64, seen_before: i64) -> Result<Vec<JobId>> {
        self.tx(move |c| Box::pin(fail_stranded_in(c, now, seen_before)))
            .await
    }

    async fn schedule_stats(&self, id: i64) -> Result<ScheduleStats> {
        let mut c = self.pool.acquire().await?;
        let counts = counts(&mut c, Some(id)).await?;
        let sql =
            format!("{OCCURRENCE_SELECT} WHERE o.schedule_id = $1 ORDER BY o.nominal DESC LIMIT 1");
        let last: Option<OccurrenceRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&mut *c)
            .await?;
        let last_success_at: Option<i64> = sqlx::query_scalar(
            "SELECT MAX(t) FROM (
               SELECT MAX(finished_at) AS t FROM jobs
                WHERE schedule_id = $1 AND state = 'succeeded' AND run_id IS NULL
               UNION ALL
               SELECT MAX(finished_at) FROM pipeline_runs WHERE schedule_id = $1 AND state = 'succeeded'
             ) AS done",
        )
        .bind(id)
        .fetch_one(&mut *c)
        .await?;
        Ok(ScheduleStats {
            counts,
            last: last.map(OccurrenceRow::view).transpose()?,
            last_success_at,
        })
    }

    async fn history(
        &self,
        id: i64,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<OccurrenceView>> {
        let sql = format!(
            "{OCCURRENCE_SELECT} WHERE o.schedule_id = $1 AND ($2::bigint IS NULL OR o.nominal < $2)
             ORDER BY o.nominal DESC LIMIT $3"
        );
        let rows: Vec<OccurrenceRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .bind(before)
            .bind(i64::from(limit.clamp(1, 1000)))
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(OccurrenceRow::view).collect()
    }

    async fn recorded_between(&self, id: i64, from: i64, to: i64) -> Result<Vec<(i64, i64)>> {
        let rows: Vec<(i64, Option<i64>)> = sqlx::query_as(
            "SELECT nominal, last_nominal FROM occurrences
             WHERE schedule_id = $1 AND nominal <= $3 AND COALESCE(last_nominal, nominal) >= $2
             ORDER BY nominal",
        )
        .bind(id)
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(n, last)| (n, last.unwrap_or(n)))
            .collect())
    }

    async fn occurrence_totals(&self) -> Result<OccurrenceCounts> {
        let mut c = self.pool.acquire().await?;
        counts(&mut c, None).await
    }
}

/// Totals by state, of one schedule or of all (with the pruned ones).
async fn counts(c: &mut PgConnection, id: Option<i64>) -> Result<OccurrenceCounts> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT state, SUM(n)::bigint FROM (
           SELECT state, count AS n FROM occurrences WHERE $1::bigint IS NULL OR schedule_id = $1
           UNION ALL
           SELECT state, count FROM occurrences_pruned WHERE $1::bigint IS NULL OR schedule_id = $1
         ) AS o
         GROUP BY state",
    )
    .bind(id)
    .fetch_all(&mut *c)
    .await?;
    fold_counts(rows)
}

#[cfg(test)]
mod tests;
