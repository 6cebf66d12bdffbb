//! Failover drills in SQLite: the drill row, its timeline, the fault handed to the
//! holder, and the takeover measurements behind `/metrics`.
//!
//! A drill owns one job (label `drill=<id>`). Its timeline mixes events the
//! controller records when they happen (`started`, `fault_sent`,
//! `fault_injected`, `verdict`) with events derived from the job's attempt
//! rows (`job_granted`, `lease_expired`, `job_regranted`, `job_finished`),
//! which carry the store's own timestamps; [`DrillStore::refresh_drill`] inserts
//! the derived ones idempotently (one row per kind and attempt) and, once the
//! job has ended, stores the report computed by
//! `store::drills::evaluate`.

use baton_proto::drill::{
    DrillEventKind, DrillId, DrillList, DrillMethod, DrillReport, DrillState, DrillView, Fault,
};
use baton_proto::{FencingToken, JobId};

use async_trait::async_trait;
use sqlx::sqlite::SqliteConnection;

use super::SqliteStore;
use crate::store::agents::AgentStore;
use crate::store::drills::{
    Candidate, DRILL_COLUMNS, DRILL_OUTCOMES, DrillJob, DrillRow, DrillStore, EventRow, NewDrill,
    ONLINE_WINDOW_MS, RUNNING_DRILLS, TAKEOVER_SAMPLES, candidates, evaluate, list, timeline,
    verdict_detail,
};
use crate::store::jobs::{JobStore, NewJob};
use crate::store::rows::AttemptRow;
use crate::store::{Error, Result};

impl SqliteStore {
    async fn drill_row(&self, id: DrillId) -> Result<DrillRow> {
        let sql = format!("SELECT {DRILL_COLUMNS} FROM drills WHERE id = ?");
        sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.reader)
            .await?
            .ok_or_else(|| Error::Missing(format!("drill {id}")))
    }

    async fn event_rows(&self, id: DrillId) -> Result<Vec<EventRow>> {
        Ok(sqlx::query_as(
            "SELECT at, kind, attempt, agent, detail FROM drill_events WHERE drill_id = ? ORDER BY at, attempt",
        )
        .bind(id)
        .fetch_all(&self.reader)
        .await?)
    }

    /// What a drill's verdict is judged on: its job's state, spec and attempts.
    async fn drill_job(&self, job_id: JobId) -> Result<DrillJob> {
        let (state, finished_at, spec): (String, Option<i64>, String) =
            sqlx::query_as("SELECT state, finished_at, spec FROM jobs WHERE id = ?")
                .bind(job_id)
                .fetch_optional(&self.reader)
                .await?
                .ok_or(Error::NotFound(job_id))?;
        let attempts: Vec<AttemptRow> = sqlx::query_as(
            "SELECT number, agent_id, token, started_at, running_at, ended_at, outcome, error, progress, log_tail, result
             FROM attempts WHERE job_id = ? ORDER BY number",
        )
        .bind(job_id)
        .fetch_all(&self.reader)
        .await?;
        DrillJob::parse(&state, finished_at, &spec, attempts)
    }
}

impl SqliteStore {
    /// The group's agents other than the faulted holder, once a verdict is
    /// due (the job ended or the drill gave up): who could have taken over.
    async fn other_agents(
        &self,
        row: &DrillRow,
        job: &DrillJob,
        now: i64,
    ) -> Result<Vec<Candidate>> {
        let Some(holder) = row.holder_when_due(job, now) else {
            return Ok(Vec::new());
        };
        let agents = self.list_agents(now, ONLINE_WINDOW_MS).await?;
        Ok(candidates(
            &agents,
            &row.grp,
            &job.spec,
            holder,
            ONLINE_WINDOW_MS,
            now,
        ))
    }
}

/// End a running drill with its verdict and add the `verdict` event; a drill
/// that is no longer running (ended by another refresh) is left as it is.
async fn store_verdict(
    c: &mut SqliteConnection,
    id: DrillId,
    state: DrillState,
    report: &DrillReport,
    now: i64,
) -> Result<()> {
    let text = serde_json::to_string(report).map_err(|e| Error::Corrupt(e.to_string()))?;
    let moved = sqlx::query(
        "UPDATE drills SET state = ?1, report = ?2, finished_at = ?3, updated_at = ?3
         WHERE id = ?4 AND state = 'running'",
    )
    .bind(state.as_str())
    .bind(text)
    .bind(now)
    .bind(id)
    .execute(&mut *c)
    .await?
    .rows_affected();
    if moved != 1 {
        return Ok(());
    }
    let detail = verdict_detail(state, report);
    insert_event(
        &mut *c,
        id,
        now,
        DrillEventKind::Verdict,
        0,
        None,
        Some(&detail),
    )
    .await?;
    Ok(())
}

#[async_trait]
impl DrillStore for SqliteStore {
    /// Create a drill and its job (the job gets the label `drill=<id>`).
    /// When the job cannot be created the drill ends as `error`.
    async fn create_drill(&self, d: &NewDrill, mut job: NewJob, now: i64) -> Result<DrillView> {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO drills (grp, method, duration_ms, lease_ttl_ms, rto_ms, state, created_by, created_at, updated_at, fault_agent)
             VALUES (?, ?, ?, ?, ?, 'running', ?, ?, ?, ?) RETURNING id",
        )
        .bind(&d.group)
        .bind(d.method.as_str())
        .bind(d.duration_ms as i64)
        .bind(d.lease_ttl_ms as i64)
        .bind(d.rto_ms as i64)
        .bind(&d.created_by)
        .bind(now)
        .bind(now)
        .bind(&d.agent)
        .fetch_one(&self.writer)
        .await?;
        job.submit.labels.insert("drill".into(), id.to_string());
        job.idempotency_key = None;
        let submitted = match self.submit(job, now).await {
            Ok(s) => s,
            Err(e) => {
                let why = format!("the drill's job could not be created: {e}");
                sqlx::query("UPDATE drills SET state = 'error', finished_at = ?1, updated_at = ?1 WHERE id = ?2")
                    .bind(now)
                    .bind(id)
                    .execute(&self.writer)
                    .await?;
                insert_event(
                    &self.writer,
                    id,
                    now,
                    DrillEventKind::Verdict,
                    0,
                    None,
                    Some(&why),
                )
                .await?;
                return Err(e);
            }
        };
        let mut tx = self.writer.begin().await?;
        sqlx::query("UPDATE drills SET job_id = ? WHERE id = ?")
            .bind(submitted.job.id)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let detail = format!("job {} ({})", submitted.job.id, submitted.job.kind);
        insert_event(
            &mut *tx,
            id,
            now,
            DrillEventKind::Started,
            0,
            None,
            Some(&detail),
        )
        .await?;
        tx.commit().await?;
        self.get_drill(id).await
    }

    /// The fault for the holder's heartbeat, once per drill: the first
    /// heartbeat of a running drill's job gets it, and `fault_sent` is
    /// recorded. `None` for every other heartbeat (one indexed read).
    async fn drill_fault_for(
        &self,
        job_id: JobId,
        agent_id: &str,
        token: FencingToken,
        now: i64,
    ) -> Result<Option<Fault>> {
        let pending: Option<(i64, String, i64)> = sqlx::query_as(
            "SELECT id, method, duration_ms FROM drills
             WHERE job_id = ? AND state = 'running' AND fault_token IS NULL
               AND (fault_agent IS NULL OR fault_agent = ?)",
        )
        .bind(job_id)
        .bind(agent_id)
        .fetch_optional(&self.reader)
        .await?;
        let Some((drill_id, method, duration_ms)) = pending else {
            return Ok(None);
        };
        let method =
            DrillMethod::parse(&method).ok_or_else(|| Error::Corrupt("drills.method".into()))?;
        let mut tx = self.writer.begin().await?;
        let claimed = sqlx::query(
            "UPDATE drills SET fault_token = ?1, fault_agent = ?2, updated_at = ?3
             WHERE id = ?4 AND state = 'running' AND fault_token IS NULL
               AND (fault_agent IS NULL OR fault_agent = ?2)",
        )
        .bind(token)
        .bind(agent_id)
        .bind(now)
        .bind(drill_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if claimed != 1 {
            return Ok(None);
        }
        let attempt = attempt_of(&mut tx, job_id, token).await?;
        insert_event(
            &mut *tx,
            drill_id,
            now,
            DrillEventKind::FaultSent,
            attempt,
            Some(agent_id),
            Some(&format!("{method} for {duration_ms} ms (token {token})")),
        )
        .await?;
        tx.commit().await?;
        Ok(Some(Fault {
            drill_id,
            method,
            duration_ms: duration_ms as u64,
        }))
    }

    /// A `controller_crash` drill's agent was answered by another replica:
    /// record `agent_failover` once per drill whose fault took effect.
    async fn drill_agent_failover(
        &self,
        agent_id: &str,
        failover_ms: u64,
        now: i64,
    ) -> Result<bool> {
        let drills: Vec<i64> = sqlx::query_scalar(
            "SELECT d.id FROM drills d
             WHERE d.state = 'running' AND d.method = 'controller_crash' AND d.fault_agent = ?
               AND EXISTS (SELECT 1 FROM drill_events e
                           WHERE e.drill_id = d.id AND e.kind = 'fault_injected')",
        )
        .bind(agent_id)
        .fetch_all(&self.reader)
        .await?;
        let mut recorded = false;
        let detail = format!("{failover_ms} ms");
        for id in drills {
            recorded |= insert_event(
                &self.writer,
                id,
                now,
                DrillEventKind::AgentFailover,
                0,
                Some(agent_id),
                Some(&detail),
            )
            .await?;
        }
        Ok(recorded)
    }

    /// The holder acknowledged the fault: record `fault_injected` (once).
    /// Returns false for a repeated ack. Only the agent and lease the fault
    /// was sent to may acknowledge it.
    async fn drill_fault_ack(
        &self,
        drill_id: DrillId,
        job_id: JobId,
        agent_id: &str,
        token: FencingToken,
        now: i64,
    ) -> Result<bool> {
        let mut tx = self.writer.begin().await?;
        let row: Option<(Option<i64>, Option<i64>, Option<String>)> =
            sqlx::query_as("SELECT job_id, fault_token, fault_agent FROM drills WHERE id = ?")
                .bind(drill_id)
                .fetch_optional(&mut *tx)
                .await?;
        let Some((drill_job, fault_token, fault_agent)) = row else {
            return Err(Error::Missing(format!("drill {drill_id}")));
        };
        if drill_job != Some(job_id)
            || fault_token != Some(token)
            || fault_agent.as_deref() != Some(agent_id)
        {
            return Err(Error::Forbidden(format!(
                "drill {drill_id} sent no fault to agent {agent_id} for job {job_id} token {token}"
            )));
        }
        let attempt = attempt_of(&mut tx, job_id, token).await?;
        let done = insert_event(
            &mut *tx,
            drill_id,
            now,
            DrillEventKind::FaultInjected,
            attempt,
            Some(agent_id),
            None,
        )
        .await?;
        tx.commit().await?;
        Ok(done)
    }

    /// Bring a running drill's timeline up to date with its job and, once
    /// the job has ended (or the drill has run too long), store its verdict.
    async fn refresh_drill(&self, id: DrillId, now: i64) -> Result<DrillView> {
        let row = self.drill_row(id).await?;
        if row.state()? != DrillState::Running {
            return self.get_drill(id).await;
        }
        let Some(job_id) = row.job_id else {
            return self.get_drill(id).await;
        };
        let job = self.drill_job(job_id).await?;
        let events = self.event_rows(id).await?;
        let others = self.other_agents(&row, &job, now).await?;
        let eval = evaluate(&row.input(&job, &events, &others, now)?);
        let mut tx = self.writer.begin().await?;
        for e in &eval.derived {
            insert_event(
                &mut *tx,
                id,
                e.at,
                e.kind()?,
                e.attempt,
                e.agent.as_deref(),
                e.detail.as_deref(),
            )
            .await?;
        }
        if let Some((state, report)) = &eval.verdict {
            store_verdict(&mut tx, id, *state, report, eval.verdict_at).await?;
        }
        tx.commit().await?;
        self.get_drill(id).await
    }

    /// A drill with its timeline (in time order).
    async fn get_drill(&self, id: DrillId) -> Result<DrillView> {
        let row = self.drill_row(id).await?;
        row.view(timeline(&self.event_rows(id).await?)?)
    }

    /// Drills, newest first, without timelines.
    async fn list_drills(&self, limit: u32) -> Result<DrillList> {
        let sql = format!("SELECT {DRILL_COLUMNS} FROM drills ORDER BY id DESC LIMIT +?");
        let rows: Vec<DrillRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(i64::from(limit.clamp(1, 1000)))
            .fetch_all(&self.reader)
            .await?;
        list(&rows)
    }

    async fn running_drills(&self) -> Result<Vec<DrillId>> {
        Ok(sqlx::query_scalar(RUNNING_DRILLS)
            .fetch_all(&self.reader)
            .await?)
    }

    async fn drill_outcomes(&self) -> Result<Vec<(String, String, i64)>> {
        Ok(sqlx::query_as(DRILL_OUTCOMES)
            .fetch_all(&self.reader)
            .await?)
    }

    async fn takeover_samples_ms(&self) -> Result<Vec<i64>> {
        Ok(sqlx::query_scalar(TAKEOVER_SAMPLES)
            .fetch_all(&self.reader)
            .await?)
    }
}

/// The attempt number of `token` (0 when unknown).
async fn attempt_of(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    job_id: JobId,
    token: FencingToken,
) -> Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT number FROM attempts WHERE job_id = ? AND token = ?")
            .bind(job_id)
            .bind(token)
            .fetch_optional(&mut **tx)
            .await?
            .unwrap_or(0),
    )
}

/// Insert one timeline row unless that (kind, attempt) is there already.
async fn insert_event<'e, E: sqlx::Executor<'e, Database = sqlx::Sqlite>>(
    ex: E,
    drill_id: DrillId,
    at: i64,
    kind: DrillEventKind,
    attempt: i64,
    agent: Option<&str>,
    detail: Option<&str>,
) -> Result<bool> {
    let done = sqlx::query(
        "INSERT OR IGNORE INTO drill_events (drill_id, at, kind, attempt, agent, detail) VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(drill_id)
    .bind(at)
    .bind(kind.as_str())
    .bind(attempt)
    .bind(agent)
    .bind(detail)
    .execute(ex)
    .await?
    .rows_affected();
    Ok(done == 1)
}

#[cfg(test)]
mod tests;
