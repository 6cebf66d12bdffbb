//! Pipelines and runs on PostgreSQL ([`crate::store::pipelines`]).
//!
//! As on SQLite, a run advances in the transaction that learns a step
//! ended ([`advance_in`]), and each decision is a `run_steps` row keyed by
//! `(run, step)`. Several replicas may process two step ends of one run,
//! or a cancel and a step end, at the same moment: every path that decides
//! for a run first locks its row (`SELECT … FOR UPDATE`), so they take
//! turns, and the second one decides from what the first one wrote (no
//! step queued twice, the run ends once).

use async_trait::async_trait;
use baton_proto::pipeline::{PipelineSpec, PipelineView, RunList, RunState, RunView};
use baton_proto::schedule::RunId;
use sqlx::postgres::PgConnection;

use super::PgStore;
use super::made::enc;
use crate::pipeline;
use crate::store::pipelines::rows::{self, PipelineRow, RUN_SELECT, RunRow, StepRow, statuses};
use crate::store::pipelines::{PipelineStore, RunChange};
use crate::store::rows::json;
use crate::store::{Error, Result};

mod advance;

use advance::stop_in;
pub(crate) use advance::{advance_in, cancel_in};

/// Run `id`, its row locked until the transaction ends: whoever decides
/// for a run holds this lock.
async fn run_row(c: &mut PgConnection, id: RunId) -> Result<RunRow> {
    let sql = format!("{RUN_SELECT} WHERE r.id = $1 FOR UPDATE OF r");
    let row: Option<RunRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(&mut *c)
        .await?;
    row.ok_or_else(|| Error::Missing(format!("run {id}")))
}

/// Run `id` as last committed (no lock: views).
async fn run_row_read(c: &mut PgConnection, id: RunId) -> Result<RunRow> {
    let sql = format!("{RUN_SELECT} WHERE r.id = $1");
    let row: Option<RunRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(&mut *c)
        .await?;
    row.ok_or_else(|| Error::Missing(format!("run {id}")))
}

async fn step_rows(c: &mut PgConnection, id: RunId) -> Result<Vec<StepRow>> {
    Ok(sqlx::query_as(
        "SELECT s.step, s.state, s.job_id, s.reason, j.state AS job_state, j.attempts_spent,
                j.created_at, j.finished_at, j.error AS job_error, j.result,
                (SELECT agent_id FROM attempts a WHERE a.job_id = s.job_id ORDER BY number DESC LIMIT 1) AS agent
         FROM run_steps s LEFT JOIN jobs j ON j.id = s.job_id WHERE s.run_id = $1",
    )
    .bind(id)
    .fetch_all(&mut *c)
    .await?)
}

/// Whether pipeline `name` exists; its row share-locked until the
/// transaction ends, so a concurrent delete waits for it and then sees
/// what it wrote (a schedule naming the pipeline).
pub(crate) async fn pipeline_exists(c: &mut PgConnection, name: &str) -> Result<()> {
    let found: Option<String> =
        sqlx::query_scalar("SELECT name FROM pipelines WHERE name = $1 FOR SHARE")
            .bind(name)
            .fetch_optional(&mut *c)
            .await?;
    found
        .map(|_| ())
        .ok_or_else(|| Error::Missing(format!("pipeline `{name}`")))
}

/// Start a run of pipeline `name` inside a transaction; its id.
pub(crate) async fn start_in(
    c: &mut PgConnection,
    name: &str,
    group: Option<&str>,
    schedule: Option<(i64, i64)>,
    ttl: u64,
    now: i64,
    woken: &mut Vec<String>,
) -> Result<RunId> {
    let spec: Option<String> = sqlx::query_scalar("SELECT spec FROM pipelines WHERE name = $1")
        .bind(name)
        .fetch_optional(&mut *c)
        .await?;
    let spec = spec.ok_or_else(|| Error::Missing(format!("pipeline `{name}`")))?;
    let parsed: PipelineSpec = json("pipelines.spec", &spec)?;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO pipeline_runs (pipeline, spec, grp, state, schedule_id, nominal_at, deadline_at, created_at, updated_at)
         VALUES ($1, $2, $3, 'running', $4, $5, $6, $7, $7) RETURNING id",
    )
    .bind(name)
    .bind(&spec)
    .bind(group)
    .bind(schedule.map(|s| s.0))
    .bind(schedule.map(|s| s.1))
    .bind(parsed.timeout_ms.map(|t| now.saturating_add(t as i64)))
    .bind(now)
    .fetch_one(&mut *c)
    .await?;
    advance_in(c, id, ttl, now, woken).await?;
    Ok(id)
}

/// The view of run `id`.
async fn run_view(c: &mut PgConnection, id: RunId) -> Result<RunView> {
    let run = run_row_read(c, id).await?;
    let rows = step_rows(c, id).await?;
    rows::run_view(&run, &rows)
}

async fn pipeline_view(c: &mut PgConnection, row: PipelineRow) -> Result<PipelineView> {
    let sql = format!("{RUN_SELECT} WHERE r.pipeline = $1 ORDER BY r.id DESC LIMIT 1");
    let last: Option<RunRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(&row.name)
        .fetch_optional(&mut *c)
        .await?;
    rows::pipeline_view(row, last.as_ref())
}

async fn pipeline_row(c: &mut PgConnection, name: &str) -> Result<PipelineRow> {
    let row: Option<PipelineRow> =
        sqlx::query_as("SELECT name, spec, created_at, updated_at FROM pipelines WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut *c)
            .await?;
    row.ok_or_else(|| Error::Missing(format!("pipeline `{name}`")))
}

/// Create or replace a pipeline (`put_pipeline`); whether it was created.
async fn put_in(
    c: &mut PgConnection,
    spec: &PipelineSpec,
    create_only: bool,
    now: i64,
) -> Result<bool> {
    let text = enc(spec)?;
    // `xmax = 0`: the row was inserted by this statement, not updated.
    let created: Option<bool> = sqlx::query_scalar(
        "INSERT INTO pipelines (name, spec, created_at, updated_at) VALUES ($1, $2, $3, $3)
         ON CONFLICT (name) DO UPDATE SET spec = $2, updated_at = $3
           WHERE pipelines.spec <> $2 AND NOT $4
         RETURNING (xmax = 0)",
    )
    .bind(&spec.name)
    .bind(&text)
    .bind(now)
    .bind(create_only)
    .fetch_optional(&mut *c)
    .await?;
    match created {
        Some(created) => Ok(created),
        // The row exists and was left alone: the same spec, or create_only.
        None if create_only => Err(Error::Conflict(format!(
            "pipeline `{}` already exists",
            spec.name
        ))),
        None => Ok(false),
    }
}

/// Delete pipeline `name` unless a schedule runs it (`delete_pipeline`).
async fn delete_in(c: &mut PgConnection, name: &str) -> Result<()> {
    // Locked: a schedule naming it cannot be put meanwhile without seeing
    // it gone (the schedule checks the pipeline exists).
    let found: Option<String> =
        sqlx::query_scalar("SELECT name FROM pipelines WHERE name = $1 FOR UPDATE")
            .bind(name)
            .fetch_optional(&mut *c)
            .await?;
    if found.is_none() {
        return Err(Error::Missing(format!("pipeline `{name}`")));
    }
    let users: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM schedules WHERE (spec::jsonb ->> 'pipeline') = $1 ORDER BY name",
    )
    .bind(name)
    .fetch_all(&mut *c)
    .await?;
    if !users.is_empty() {
        return Err(Error::Conflict(format!(
            "pipeline `{name}` is run by schedule(s) {}: delete or change them first",
            users.join(", ")
        )));
    }
    sqlx::query("DELETE FROM pipelines WHERE name = $1")
        .bind(name)
        .execute(&mut *c)
        .await?;
    Ok(())
}

/// Cancel run `id` (`cancel_run`): a conflict unless it is running.
async fn cancel_run_in(c: &mut PgConnection, id: RunId, now: i64) -> Result<RunChange> {
    let run = run_row(c, id).await?;
    let state = run.state()?;
    if state != RunState::Running {
        return Err(Error::Conflict(format!(
            "run {id} is already {}",
            state.as_str()
        )));
    }
    cancel_in(c, id, "cancelled by operator", now).await?;
    Ok(RunChange {
        run: run_view(c, id).await?,
        woken: Vec::new(),
    })
}

/// Retry run `id` (`retry_run`): a conflict unless it failed or was
/// cancelled.
async fn retry_in(c: &mut PgConnection, id: RunId, ttl: u64, now: i64) -> Result<RunChange> {
    let run = run_row(c, id).await?;
    let state = run.state()?;
    if !matches!(state, RunState::Failed | RunState::Cancelled) {
        return Err(Error::Conflict(format!(
            "run {id} is {}; only failed or cancelled runs can be retried",
            state.as_str()
        )));
    }
    let spec = run.spec()?;
    let rows = step_rows(c, id).await?;
    let steps = statuses(&spec, &rows)?;
    for i in pipeline::retry_reset(&spec, &steps) {
        sqlx::query("DELETE FROM run_steps WHERE run_id = $1 AND step = $2")
            .bind(id)
            .bind(&spec.steps[i].name)
            .execute(&mut *c)
            .await?;
    }
    sqlx::query(
        "UPDATE pipeline_runs SET state = 'running', attempt = attempt + 1, error = NULL, stopping = NULL,
           finished_at = NULL, updated_at = $1,
           deadline_at = CASE WHEN deadline_at IS NULL THEN NULL ELSE $1 + (deadline_at - created_at) END
         WHERE id = $2",
    )
    .bind(now)
    .bind(id)
    .execute(&mut *c)
    .await?;
    let mut woken = Vec::new();
    advance_in(c, id, ttl, now, &mut woken).await?;
    Ok(RunChange {
        run: run_view(c, id).await?,
        woken,
    })
}

/// Fail the running runs past their deadline (`expire_runs`). A run
/// another replica is deciding for right now is skipped: it is still due
/// at the next look.
async fn expire_in(c: &mut PgConnection, now: i64) -> Result<Vec<RunId>> {
    let due: Vec<(i64, i64, i64)> = sqlx::query_as(
        "SELECT id, deadline_at, created_at FROM pipeline_runs
         WHERE state = 'running' AND stopping IS NULL AND deadline_at <= $1
         ORDER BY id FOR UPDATE SKIP LOCKED",
    )
    .bind(now)
    .fetch_all(&mut *c)
    .await?;
    let mut ended = Vec::new();
    for (id, deadline, created) in due {
        let why = rows::timed_out(deadline, created);
        stop_in(c, id, RunState::Failed, &why, now).await?;
        let mut woken = Vec::new();
        if advance_in(c, id, 0, now, &mut woken).await?.ended_now {
            ended.push(id);
        }
    }
    Ok(ended)
}

#[async_trait]
impl PipelineStore for PgStore {
    async fn put_pipeline(
        &self,
        spec: &PipelineSpec,
        create_only: bool,
        now: i64,
    ) -> Result<(PipelineView, bool)> {
        let spec = std::sync::Arc::new(spec.clone());
        self.tx(move |c| {
            let spec = spec.clone();
            Box::pin(async move {
                let created = put_in(c, &spec, create_only, now).await?;
                let row = pipeline_row(c, &spec.name).await?;
                Ok((pipeline_view(c, row).await?, created))
            })
        })
        .await
    }

    async fn get_pipeline(&self, name: &str) -> Result<PipelineView> {
        let mut c = self.pool.acquire().await?;
        let row = pipeline_row(&mut c, name).await?;
        pipeline_view(&mut c, row).await
    }

    async fn list_pipelines(&self) -> Result<Vec<PipelineView>> {
        let mut c = self.pool.acquire().await?;
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
        let name = name.to_owned();
        self.tx(move |c| {
            let name = name.clone();
            Box::pin(async move { delete_in(c, &name).await })
        })
        .await
    }

    async fn start_run(
        &self,
        name: &str,
        group: Option<&str>,
        default_lease_ttl_ms: u64,
        now: i64,
    ) -> Result<RunChange> {
        let args = std::sync::Arc::new((name.to_owned(), group.map(str::to_owned)));
        self.tx(move |c| {
            let args = args.clone();
            Box::pin(async move {
                let (name, group) = &*args;
                let mut woken = Vec::new();
                let ttl = default_lease_ttl_ms;
                let id = start_in(c, name, group.as_deref(), None, ttl, now, &mut woken).await?;
                Ok(RunChange {
                    run: run_view(c, id).await?,
                    woken,
                })
            })
        })
        .await
    }

    async fn get_run(&self, id: RunId) -> Result<RunView> {
        let mut c = self.pool.acquire().await?;
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
            "{RUN_SELECT} WHERE r.pipeline = $1 AND ($2::bigint IS NULL OR r.id < $2) ORDER BY r.id DESC LIMIT $3"
        );
        let rows: Vec<RunRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(pipeline)
            .bind(before)
            .bind(i64::from(limit) + 1)
            .fetch_all(&self.pool)
            .await?;
        rows::run_page(&rows, limit)
    }

    async fn cancel_run(&self, id: RunId, now: i64) -> Result<RunChange> {
        self.tx(move |c| Box::pin(async move { cancel_run_in(c, id, now).await }))
            .await
    }

    async fn retry_run(&self, id: RunId, default_lease_ttl_ms: u64, now: i64) -> Result<RunChange> {
        let ttl = default_lease_ttl_ms;
        self.tx(move |c| Box::pin(async move { retry_in(c, id, ttl, now).await }))
            .await
    }

    async fn expire_runs(&self, now: i64) -> Result<Vec<RunId>> {
        self.tx(move |c| Box::pin(async move { expire_in(c, now).await }))
            .await
    }

    async fn next_run_deadline(&self) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT MIN(deadline_at) FROM pipeline_runs WHERE state = 'running' AND stopping IS NULL",
        )
        .fetch_one(&self.pool)
        .await?)
    }
}

#[cfg(test)]
mod tests;
