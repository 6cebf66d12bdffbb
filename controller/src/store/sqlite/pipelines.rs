//! Pipelines and runs in SQLite ([`crate::store::pipelines`]).
//!
//! A run advances in the transaction that learns a step ended (the timer's
//! follow-up, [`advance_in`]): the pure `crate::pipeline::advance` decides
//! from the steps' states, and each decision is a `run_steps` row keyed by
//! `(run, step)`, written with the step's job. A run being cancelled or
//! timed out is `stopping`: no step is queued any more, and it ends once no
//! step's job is still going (so a `cancel_previous` schedule never has two
//! runs at once).

use async_trait::async_trait;
use baton_proto::pipeline::{PipelineSpec, PipelineView, RunList, RunState, RunView};
use baton_proto::schedule::RunId;
use sqlx::sqlite::SqliteConnection;

use super::SqliteStore;
use super::made::enc;
use crate::pipeline;
use crate::store::pipelines::rows::{self, PipelineRow, RUN_SELECT, RunRow, StepRow, statuses};
use crate::store::pipelines::{PipelineStore, RunChange};
use crate::store::rows::json;
use crate::store::{Error, Result};

mod advance;

use advance::stop_in;
pub(crate) use advance::{advance_in, cancel_in};

async fn run_row(c: &mut SqliteConnection, id: RunId) -> Result<RunRow> {
    let sql = format!("{RUN_SELECT} WHERE r.id = ?");
    let row: Option<RunRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(&mut *c)
        .await?;
    row.ok_or_else(|| Error::Missing(format!("run {id}")))
}

async fn step_rows(c: &mut SqliteConnection, id: RunId) -> Result<Vec<StepRow>> {
    Ok(sqlx::query_as(
        "SELECT s.step, s.state, s.job_id, s.reason, j.state AS job_state, j.attempts_spent,
                j.created_at, j.finished_at, j.error AS job_error, j.result,
                (SELECT agent_id FROM attempts a WHERE a.job_id = s.job_id ORDER BY number DESC LIMIT 1) AS agent
         FROM run_steps s LEFT JOIN jobs j ON j.id = s.job_id WHERE s.run_id = ?",
    )
    .bind(id)
    .fetch_all(&mut *c)
    .await?)
}

/// Whether pipeline `name` exists (a conflict-free read inside a transaction).
pub(crate) async fn pipeline_exists(c: &mut SqliteConnection, name: &str) -> Result<()> {
    let found: Option<String> = sqlx::query_scalar("SELECT name FROM pipelines WHERE name = ?")
        .bind(name)
        .fetch_optional(&mut *c)
        .await?;
    found
        .map(|_| ())
        .ok_or_else(|| Error::Missing(format!("pipeline `{name}`")))
}

/// Start a run of pipeline `name` inside a transaction; its id.
pub(crate) async fn start_in(
    c: &mut SqliteConnection,
    name: &str,
    group: Option<&str>,
    schedule: Option<(i64, i64)>,
    ttl: u64,
    now: i64,
    woken: &mut Vec<String>,
) -> Result<RunId> {
    let spec: Option<String> = sqlx::query_scalar("SELECT spec FROM pipelines WHERE name = ?")
        .bind(name)
        .fetch_optional(&mut *c)
        .await?;
    let spec = spec.ok_or_else(|| Error::Missing(format!("pipeline `{name}`")))?;
    let parsed: PipelineSpec = json("pipelines.spec", &spec)?;
    let done = sqlx::query(
        "INSERT INTO pipeline_runs (pipeline, spec, grp, state, schedule_id, nominal_at, deadline_at, created_at, updated_at)
         VALUES (?1, ?2, ?3, 'running', ?4, ?5, ?6, ?7, ?7)",
    )
    .bind(name)
    .bind(&spec)
    .bind(group)
    .bind(schedule.map(|s| s.0))
    .bind(schedule.map(|s| s.1))
    .bind(parsed.timeout_ms.map(|t| now.saturating_add(t as i64)))
    .bind(now)
    .execute(&mut *c)
    .await?;
    let id = done.last_insert_rowid();
    advance_in(c, id, ttl, now, woken).await?;
    Ok(id)
}

/// The view of run `id`.
async fn run_view(c: &mut SqliteConnection, id: RunId) -> Result<RunView> {
    let run = run_row(c, id).await?;
    let rows = step_rows(c, id).await?;
    rows::run_view(&run, &rows)
}

async fn pipeline_view(c: &mut SqliteConnection, row: PipelineRow) -> Result<PipelineView> {
    let sql = format!("{RUN_SELECT} WHERE r.pipeline = ? ORDER BY r.id DESC LIMIT 1");
    let last: Option<RunRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(&row.name)
        .fetch_optional(&mut *c)
        .await?;
    rows::pipeline_view(row, last.as_ref())
}

async fn pipeline_row(c: &mut SqliteConnection, name: &str) -> Result<PipelineRow> {
    let row: Option<PipelineRow> =
        sqlx::query_as("SELECT name, spec, created_at, updated_at FROM pipelines WHERE name = ?")
            .bind(name)
            .fetch_optional(&mut *c)
            .await?;
    row.ok_or_else(|| Error::Missing(format!("pipeline `{name}`")))
}

#[async_trait]
impl PipelineStore for SqliteStore {
    async fn put_pipeline(
        &self,
        spec: &PipelineSpec,
        create_only: bool,
        now: i64,
    ) -> Result<(PipelineView, bool)> {
        let mut tx = self.writer.begin().await?;
        let exists = pipeline_exists(&mut tx, &spec.name).await.is_ok();
        if exists && create_only {
            return Err(Error::Conflict(format!(
                "pipeline `{}` already exists",
                spec.name
            )));
        }
        sqlx::query(
            "INSERT INTO pipelines (name, spec, created_at, updated_at) VALUES (?1, ?2, ?3, ?3)
             ON CONFLICT (name) DO UPDATE SET spec = ?2, updated_at = ?3 WHERE spec <> ?2",
        )
        .bind(&spec.name)
        .bind(enc(spec)?)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let row = pipeline_row(&mut tx, &spec.name).await?;
        let view = pipeline_view(&mut tx, row).await?;
        tx.commit().await?;
        Ok((view, !exists))
    }

    async fn get_pipeline(&self, name: &str) -> Result<PipelineView> {
        let mut c = self.reader.acquire().await?;
        let row = pipeline_row(&mut c, name).await?;
        pipeline_view(&mut c, row).await
    }

    async fn list_pipelines(&self) -> Result<Vec<PipelineView>> {
        let mut c = self.reader.acquire().await?;
        let rows: Vec<PipelineRow> = sqlx::query_as(
            "SELECT name, spec, created_at, updated_at FROM pipelines ORDER BY name",
        )
        .fetch_all(&mut *c)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            out.push(pipeline_view(&mut c, row).await?);
        }
        Ok(out)
    }

    async fn delete_pipeline(&self, name: &str) -> Result<()> {
        let mut tx = self.writer.begin().await?;
        pipeline_exists(&mut tx, name).await?;
        let users: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM schedules WHERE json_extract(spec, '$.pipeline') = ? ORDER BY name",
        )
        .bind(name)
        .fetch_all(&mut *tx)
        .await?;
        if !users.is_empty() {
            return Err(Error::Conflict(format!(
                "pipeline `{name}` is run by schedule(s) {}: delete or change them first",
                users.join(", ")
            )));
        }
        sqlx::query("DELETE FROM pipelines WHERE name = ?")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn start_run(
        &self,
        name: &str,
        group: Option<&str>,
        default_lease_ttl_ms: u64,
        now: i64,
    ) -> Result<RunChange> {
        let mut tx = self.writer.begin().await?;
        let mut woken = Vec::new();
        let id = start_in(
            &mut tx,
            name,
            group,
            None,
            default_lease_ttl_ms,
            now,
            &mut woken,
        )
        .await?;
        let run = run_view(&mut tx, id).await?;
        tx.commit().await?;
        Ok(RunChange { run, woken })
    }

    async fn get_run(&self, id: RunId) -> Result<RunView> {
        let mut c = self.reader.acquire().await?;
        run_view(&mut c, id).await
    }

    async fn list_runs(
        &self,
        pipeline: &str,
        before: Option<RunId>,
        limit: u32,
    ) -> Result<RunList> {
        let limit = limit.clamp(1, 1000);
        let sql = format!(
            "{RUN_SELECT} WHERE r.pipeline = ?1 AND (?2 IS NULL OR r.id < ?2) ORDER BY r.id DESC LIMIT +?3"
        );
        let rows: Vec<RunRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(pipeline)
            .bind(before)
            .bind(i64::from(limit) + 1)
            .fetch_all(&self.reader)
            .await?;
        rows::run_page(&rows, limit)
    }

    async fn cancel_run(&self, id: RunId, now: i64) -> Result<RunChange> {
        let mut tx = self.writer.begin().await?;
        let run = run_row(&mut tx, id).await?;
        let state = run.state()?;
        if state != RunState::Running {
            return Err(Error::Conflict(format!(
                "run {id} is already {}",
                state.as_str()
            )));
        }
        cancel_in(&mut tx, id, "cancelled by operator", now).await?;
        let run = run_view(&mut tx, id).await?;
        tx.commit().await?;
        Ok(RunChange {
            run,
            woken: Vec::new(),
        })
    }

    async fn retry_run(&self, id: RunId, default_lease_ttl_ms: u64, now: i64) -> Result<RunChange> {
        let mut tx = self.writer.begin().await?;
        let run = run_row(&mut tx, id).await?;
        let state = run.state()?;
        if !matches!(state, RunState::Failed | RunState::Cancelled) {
            return Err(Error::Conflict(format!(
                "run {id} is {}; only failed or cancelled runs can be retried",
                state.as_str()
            )));
        }
        let spec = run.spec()?;
        let rows = step_rows(&mut tx, id).await?;
        let steps = statuses(&spec, &rows)?;
        for i in pipeline::retry_reset(&spec, &steps) {
            sqlx::query("DELETE FROM run_steps WHERE run_id = ? AND step = ?")
                .bind(id)
                .bind(&spec.steps[i].name)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "UPDATE pipeline_runs SET state = 'running', attempt = attempt + 1, error = NULL, stopping = NULL,
               finished_at = NULL, updated_at = ?1,
               deadline_at = CASE WHEN deadline_at IS NULL THEN NULL ELSE ?1 + (deadline_at - created_at) END
             WHERE id = ?2",
        )
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        let mut woken = Vec::new();
        advance_in(&mut tx, id, default_lease_ttl_ms, now, &mut woken).await?;
        let run = run_view(&mut tx, id).await?;
        tx.commit().await?;
        Ok(RunChange { run, woken })
    }

    async fn expire_runs(&self, now: i64) -> Result<Vec<RunId>> {
        let r: Result<Vec<RunId>> = async {
            let mut tx = self.writer.begin().await?;
            let due: Vec<(i64, i64, i64)> = sqlx::query_as(
                "SELECT id, deadline_at, created_at FROM pipeline_runs
                 WHERE state = 'running' AND stopping IS NULL AND deadline_at <= ?",
            )
            .bind(now)
            .fetch_all(&mut *tx)
            .await?;
            let mut ended = Vec::new();
            for (id, deadline, created) in due {
                let why = rows::timed_out(deadline, created);
                stop_in(&mut tx, id, RunState::Failed, &why, now).await?;
                let mut woken = Vec::new();
                if advance_in(&mut tx, id, 0, now, &mut woken).await?.ended_now {
                    ended.push(id);
                }
            }
            tx.commit().await?;
            Ok(ended)
        }
        .await;
        self.noted(r)
    }

    async fn next_run_deadline(&self) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT MIN(deadline_at) FROM pipeline_runs WHERE state = 'running' AND stopping IS NULL",
        )
        .fetch_one(&self.reader)
        .await?)
    }
}
