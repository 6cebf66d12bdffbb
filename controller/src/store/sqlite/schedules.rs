//! Schedules and occurrences in SQLite ([`crate::store::schedules`]).
//!
//! Every change runs in one transaction on the writer. A firing checks the
//! cursor it was planned from before its first write, records each
//! occurrence with `INSERT … ON CONFLICT DO NOTHING` (a row that exists
//! fails the whole firing), makes the jobs and runs of those that fire and
//! moves the cursor, all in that transaction.

use async_trait::async_trait;
use baton_proto::JobId;
use baton_proto::schedule::{OccurrenceCounts, OccurrenceView, ScheduleSpec};
use sqlx::sqlite::SqliteConnection;

use super::SqliteStore;
use super::made::enc;
use super::pipelines as runs;
use crate::store::schedules::{
    Active, Cursor, DueRow, DueSchedule, Fired, Firing, FollowedUp, OCCURRENCE_SELECT,
    OccurrenceRow, ScheduleStats, ScheduleStore, StoredSchedule, fold_counts, stranded_why,
};
pub(super) use crate::store::schedules::{SCHEDULE_COLUMNS, ScheduleRow};
use crate::store::{Error, Result};

mod batch;
mod fire;

pub(crate) use fire::push_group;
use fire::{activity, fire_apart, fire_in, fire_together, follow_up_in};

/// A schedule by name.
async fn schedule_by(c: &mut SqliteConnection, name: &str) -> Result<StoredSchedule> {
    schedule_where(c, "name = ?1", name, name).await
}

/// A schedule by id.
pub(super) async fn schedule_by_id(c: &mut SqliteConnection, id: i64) -> Result<StoredSchedule> {
    schedule_where(c, "id = ?1", id, &id.to_string()).await
}

/// The schedule `cond` (one bound value, `key`) selects; `what` names it in
/// the error when there is none.
async fn schedule_where<'k, K>(
    c: &mut SqliteConnection,
    cond: &str,
    key: K,
    what: &str,
) -> Result<StoredSchedule>
where
    K: 'k + Send + sqlx::Encode<'k, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>,
{
    let sql = format!("SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE {cond}");
    let row: Option<ScheduleRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(key)
        .fetch_optional(&mut *c)
        .await?;
    row.ok_or_else(|| Error::Missing(format!("schedule `{what}`")))?
        .stored()
}

#[async_trait]
impl ScheduleStore for SqliteStore {
    async fn put_schedule(
        &self,
        spec: &ScheduleSpec,
        cursor: Cursor,
        create_only: bool,
        now: i64,
    ) -> Result<(StoredSchedule, bool)> {
        let mut tx = self.writer.begin().await?;
        if let Some(p) = &spec.pipeline {
            runs::pipeline_exists(&mut tx, p).await?;
        }
        let existing = match schedule_by(&mut tx, &spec.name).await {
            Ok(s) => Some(s),
            Err(Error::Missing(_)) => None,
            Err(e) => return Err(e),
        };
        let created = existing.is_none();
        match existing {
            Some(_) if create_only => {
                return Err(Error::Conflict(format!(
                    "schedule `{}` already exists",
                    spec.name
                )));
            }
            Some(old) => {
                let mut spec = spec.clone();
                spec.paused = old.paused;
                let (cur, fire) = cursor.resolve((old.cursor, old.next_fire_at));
                sqlx::query(
                    "UPDATE schedules SET spec = ?1, cursor = ?2, next_fire_at = ?3, updated_at = ?4 WHERE id = ?5",
                )
                .bind(enc(&spec)?)
                .bind(cur)
                .bind(fire)
                .bind(now)
                .bind(old.id)
                .execute(&mut *tx)
                .await?;
            }
            None => {
                let (cur, fire) = cursor.resolve((None, None));
                sqlx::query(
                    "INSERT INTO schedules (name, spec, paused, paused_at, cursor, next_fire_at, created_at, updated_at)
                     VALUES (?1, ?2, ?3, CASE WHEN ?3 THEN ?6 END, ?4, ?5, ?6, ?6)",
                )
                .bind(&spec.name)
                .bind(enc(spec)?)
                .bind(spec.paused)
                .bind(cur)
                .bind(fire)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
        }
        let stored = schedule_by(&mut tx, &spec.name).await?;
        tx.commit().await?;
        Ok((stored, created))
    }

    async fn get_schedule(&self, name: &str) -> Result<StoredSchedule> {
        let mut c = self.reader.acquire().await?;
        schedule_by(&mut c, name).await
    }

    async fn list_schedules(&self) -> Result<Vec<StoredSchedule>> {
        let sql = format!("SELECT {SCHEDULE_COLUMNS} FROM schedules ORDER BY name");
        let rows: Vec<ScheduleRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.reader)
            .await?;
        rows.into_iter().map(ScheduleRow::stored).collect()
    }

    async fn delete_schedule(&self, name: &str) -> Result<()> {
        let done = sqlx::query("DELETE FROM schedules WHERE name = ?")
            .bind(name)
            .execute(&self.writer)
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
        let mut tx = self.writer.begin().await?;
        let old = schedule_by(&mut tx, name).await?;
        if old.paused != paused {
            let (cur, fire) = cursor.resolve((old.cursor, old.next_fire_at));
            sqlx::query(
                "UPDATE schedules SET paused = ?1,
                   paused_at = CASE WHEN ?1 THEN ?2 ELSE paused_at END,
                   resumed_at = CASE WHEN ?1 THEN NULL ELSE ?2 END,
                   cursor = ?3, next_fire_at = ?4, updated_at = ?2
                 WHERE id = ?5",
            )
            .bind(paused)
            .bind(now)
            .bind(cur)
            .bind(fire)
            .bind(old.id)
            .execute(&mut *tx)
            .await?;
        }
        let stored = schedule_by(&mut tx, name).await?;
        tx.commit().await?;
        Ok(stored)
    }

    async fn due_schedules(&self, now: i64, limit: u32) -> Result<Vec<DueSchedule>> {
        // One statement for the schedules and what their plans need (a look
        // at a busy second reads a few hundred).
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
             WHERE paused = 0 AND next_fire_at IS NOT NULL AND next_fire_at <= ?
             ORDER BY next_fire_at LIMIT +?"
        );
        let rows: Vec<DueRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(now)
            .bind(i64::from(limit))
            .fetch_all(&self.reader)
            .await?;
        rows.into_iter().map(DueRow::due).collect()
    }

    async fn schedule_activity(&self, id: i64) -> Result<(Option<Active>, u32)> {
        let mut c = self.reader.acquire().await?;
        activity(&mut c, id).await
    }

    async fn next_schedule_fire(&self) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT MIN(next_fire_at) FROM schedules WHERE paused = 0 AND next_fire_at IS NOT NULL",
        )
        .fetch_one(&self.reader)
        .await?)
    }

    async fn fire(&self, firing: &Firing, now: i64) -> Result<Fired> {
        let r: Result<Fired> = async {
            let mut tx = self.writer.begin().await?;
            let fired = fire_in(&mut tx, firing, now).await?;
            if fired.raced {
                tx.rollback().await?;
            } else {
                tx.commit().await?;
            }
            Ok(fired)
        }
        .await;
        self.noted(r)
    }

    async fn fire_all(&self, firings: &[Firing], now: i64) -> Result<Vec<Result<Fired>>> {
        let r: Result<Vec<Result<Fired>>> = async {
            match fire_together(&self.writer, firings, now).await? {
                Some(out) => Ok(out),
                None => fire_apart(&self.writer, firings, now).await,
            }
        }
        .await;
        if let Ok(out) = &r {
            out.iter()
                .filter_map(|f| f.as_ref().err())
                .for_each(|e| self.note(e));
        }
        self.noted(r)
    }

    async fn follow_up(
        &self,
        now: i64,
        limit: u32,
        default_lease_ttl_ms: u64,
    ) -> Result<FollowedUp> {
        let r: Result<FollowedUp> = async {
            let mut tx = self.writer.begin().await?;
            let done = follow_up_in(&mut tx, now, limit, default_lease_ttl_ms).await?;
            tx.commit().await?;
            Ok(done)
        }
        .await;
        self.noted(r)
    }

    async fn fail_stranded(&self, now: i64, seen_before: i64) -> Result<Vec<JobId>> {
        let r: Result<Vec<JobId>> = async {
            let mut tx = self.writer.begin().await?;
            let stranded: Vec<(i64, String, Option<i64>)> = sqlx::query_as(
                "SELECT j.id, j.pin_agent, a.revoked_at FROM jobs j LEFT JOIN agents a ON a.id = j.pin_agent
                 WHERE j.state = 'queued' AND j.pin_agent IS NOT NULL
                   AND (a.id IS NULL OR a.revoked_at IS NOT NULL OR a.last_seen < ?)",
            )
            .bind(seen_before)
            .fetch_all(&mut *tx)
            .await?;
            let mut failed = Vec::with_capacity(stranded.len());
            for (id, agent, revoked) in stranded {
                let why = stranded_why(&agent, revoked.is_some(), seen_before);
                sqlx::query(
                    "UPDATE jobs SET state = 'failed', finished_at = ?1, updated_at = ?1, error = ?2
                     WHERE id = ?3 AND state = 'queued'",
                )
                .bind(now)
                .bind(why)
                .bind(id)
                .execute(&mut *tx)
                .await?;
                failed.push(id);
            }
            tx.commit().await?;
            Ok(failed)
        }
        .await;
        self.noted(r)
    }

    async fn schedule_stats(&self, id: i64) -> Result<ScheduleStats> {
        let mut c = self.reader.acquire().await?;
        let counts = counts(&mut c, Some(id)).await?;
        let sql =
            format!("{OCCURRENCE_SELECT} WHERE o.schedule_id = ? ORDER BY o.nominal DESC LIMIT 1");
        let last: Option<OccurrenceRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&mut *c)
            .await?;
        let last_success_at: Option<i64> = sqlx::query_scalar(
            "SELECT MAX(t) FROM (
               SELECT MAX(finished_at) AS t FROM jobs
                WHERE schedule_id = ?1 AND state = 'succeeded' AND run_id IS NULL
               UNION ALL
               SELECT MAX(finished_at) FROM pipeline_runs WHERE schedule_id = ?1 AND state = 'succeeded')",
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
            "{OCCURRENCE_SELECT} WHERE o.schedule_id = ?1 AND (?2 IS NULL OR o.nominal < ?2)
             ORDER BY o.nominal DESC LIMIT +?3"
        );
        let rows: Vec<OccurrenceRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .bind(before)
            .bind(i64::from(limit.clamp(1, 1000)))
            .fetch_all(&self.reader)
            .await?;
        rows.into_iter().map(OccurrenceRow::view).collect()
    }

    async fn recorded_between(&self, id: i64, from: i64, to: i64) -> Result<Vec<(i64, i64)>> {
        let rows: Vec<(i64, Option<i64>)> = sqlx::query_as(
            "SELECT nominal, last_nominal FROM occurrences
             WHERE schedule_id = ?1 AND nominal <= ?3 AND COALESCE(last_nominal, nominal) >= ?2
             ORDER BY nominal",
        )
        .bind(id)
        .bind(from)
        .bind(to)
        .fetch_all(&self.reader)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(n, last)| (n, last.unwrap_or(n)))
            .collect())
    }

    async fn occurrence_totals(&self) -> Result<OccurrenceCounts> {
        let mut c = self.reader.acquire().await?;
        counts(&mut c, None).await
    }
}

/// Totals by state, of one schedule or of all (with the pruned ones).
async fn counts(c: &mut SqliteConnection, id: Option<i64>) -> Result<OccurrenceCounts> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT state, SUM(n) FROM (
           SELECT state, count AS n FROM occurrences WHERE ?1 IS NULL OR schedule_id = ?1
           UNION ALL
           SELECT state, count FROM occurrences_pruned WHERE ?1 IS NULL OR schedule_id = ?1)
         GROUP BY state",
    )
    .bind(id)
    .fetch_all(&mut *c)
    .await?;
    fold_counts(rows)
}
