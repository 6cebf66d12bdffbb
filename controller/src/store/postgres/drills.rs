//! Failover drills on PostgreSQL: the drill row, its timeline, the fault
//! handed to the holder, and the takeover measurements behind `/metrics`
//! (see [`crate::store::drills`]; the verdict is the shared pure
//! `evaluate`).
//!
//! Several replicas may refresh one drill at once (the watcher of the
//! replica that started it, a `drill show` answered by another, the
//! start-up refresh of a third): the writes of a refresh lock the drill row
//! and do nothing once it is no longer running, and the verdict is one
//! conditional `UPDATE … WHERE state = 'running'`, so the report and the
//! `verdict` event are written once, by the first refresh that commits.
//! The fault is claimed by one conditional `UPDATE … WHERE fault_token IS
//! NULL`, so one heartbeat gets it whichever replica answers it.

use async_trait::async_trait;
use baton_proto::drill::{
    DrillEventKind, DrillId, DrillList, DrillMethod, DrillReport, DrillState, DrillView, Fault,
};
use baton_proto::{FencingToken, JobId};
use sqlx::postgres::PgConnection;

use super::PgStore;
use crate::store::agents::AgentStore;
use crate::store::drills::{
    Candidate, DRILL_COLUMNS, DRILL_OUTCOMES, DrillJob, DrillRow, DrillStore, EventRow, NewDrill,
    ONLINE_WINDOW_MS, RUNNING_DRILLS, TAKEOVER_SAMPLES, candidates, evaluate, list, timeline,
    verdict_detail,
};
use crate::store::jobs::{JobStore, NewJob};
use crate::store::rows::AttemptRow;
use crate::store::{Error, Result};

impl PgStore {
    async fn drill_row(&self, id: DrillId) -> Result<DrillRow> {
        let sql = format!("SELECT {DRILL_COLUMNS} FROM drills WHERE id = $1");
        sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| Error::Missing(format!("drill {id}")))
    }

    async fn event_rows(&self, id: DrillId) -> Result<Vec<EventRow>> {
        Ok(sqlx::query_as(
            "SELECT at, kind, attempt, agent, detail FROM drill_events WHERE drill_id = $1 ORDER BY at, attempt",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// What a drill's verdict is judged on: its job's state, spec and
    /// attempts, read in one snapshot.
    async fn drill_job(&self, job_id: JobId) -> Result<DrillJob> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await?;
        let (state, finished_at, spec): (String, Option<i64>, String) =
            sqlx::query_as("SELECT state, finished_at, spec FROM jobs WHERE id = $1")
                .bind(job_id)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or(Error::NotFound(job_id))?;
        let attempts: Vec<AttemptRow> = sqlx::query_as(
            "SELECT number, agent_id, token, started_at, running_at, ended_at, outcome, error, progress, log_tail, result
             FROM attempts WHERE job_id = $1 ORDER BY number",
        )
        .bind(job_id)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        DrillJob::parse(&state, finished_at, &spec, attempts)
    }

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

    /// Run `sql` (`$1` = `value`, `$2` = the drill's id) and record a
    /// `kind` event at `now` with `detail`, in one transaction.
    async fn set_and_record(
        &self,
        id: DrillId,
        sql: &'static str,
        value: i64,
        kind: DrillEventKind,
        detail: String,
        now: i64,
    ) -> Result<()> {
        self.tx(|c| {
            let detail = detail.clone();
            Box::pin(async move {
                sqlx::query(sql)
                    .bind(value)
                    .bind(id)
                    .execute(&mut *c)
                    .await?;
                insert_event(c, id, now, kind, 0, None, Some(&detail)).await?;
                Ok(())
            })
        })
        .await
    }
}

/// Write what a refresh derived: the timeline rows and, if due, the
/// verdict. The drill row is locked first; a drill no longer running (a
/// refresh on another replica ended it) is left as it is.
async fn store_refresh(
    c: &mut PgConnection,
    id: DrillId,
    derived: &[EventRow],
    verdict: Option<&(DrillState, DrillReport)>,
    verdict_at: i64,
) -> Result<()> {
    let state: Option<String> =
        sqlx::query_scalar("SELECT state FROM drills WHERE id = $1 FOR UPDATE")
            .bind(id)
            .fetch_optional(&mut *c)
            .await?;
    if state.as_deref() != Some(DrillState::Running.as_str()) {
        return Ok(());
    }
    for e in derived {
        let (agent, detail) = (e.agent.as_deref(), e.detail.as_deref());
        insert_event(c, id, e.at, e.kind()?, e.attempt, agent, detail).await?;
    }
    if let Some((state, report)) = verdict {
        store_verdict(c, id, *state, report, verdict_at).await?;
    }
    Ok(())
}

/// End a running drill with its verdict and add the `verdict` event; a
/// drill that is no longer running (ended by another refresh) is left as it
/// is.
async fn store_verdict(
    c: &mut PgConnection,
    id: DrillId,
    state: DrillState,
    report: &DrillReport,
    now: i64,
) -> Result<()> {
    let text = serde_json::to_string(report).map_err(|e| Error::Corrupt(e.to_string()))?;
    let moved = sqlx::query(
        "UPDATE drills SET state = $1, report = $2, finished_at = $3, updated_at = $3
         WHERE id = $4 AND state = 'running'",
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
    insert_event(c, id, now, DrillEventKind::Verdict, 0, None, Some(&detail)).await?;
    Ok(())
}

#[async_trait]
impl DrillStore for PgStore {
    async fn create_drill(&self, d: &NewDrill, mut job: NewJob, now: i64) -> Result<DrillView> {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO drills (grp, method, duration_ms, lease_ttl_ms, rto_ms, state, created_by, created_at, updated_at, fault_agent)
             VALUES ($1, $2, $3, $4, $5, 'running', $6, $7, $7, $8) RETURNING id",
        )
        .bind(&d.group)
        .bind(d.method.as_str())
        .bind(d.duration_ms as i64)
        .bind(d.lease_ttl_ms as i64)
        .bind(d.rto_ms as i64)
        .bind(&d.created_by)
        .bind(now)
        .bind(&d.agent)
        .fetch_one(&self.pool)
        .await?;
        job.submit.labels.insert("drill".into(), id.to_string());
        job.idempotency_key = None;
        let submitted = match self.submit(job, now).await {
            Ok(s) => s,
            Err(e) => {
                let why = format!("the drill's job could not be created: {e}");
                let error = "UPDATE drills SET state = 'error', finished_at = $1, updated_at = $1 WHERE id = $2";
                let verdict = DrillEventKind::Verdict;
                self.set_and_record(id, error, now, verdict, why, now)
                    .await?;
                return Err(e);
            }
        };
        let detail = format!("job {} ({})", submitted.job.id, submitted.job.kind);
        let set_job = "UPDATE drills SET job_id = $1 WHERE id = $2";
        let started = DrillEventKind::Started;
        self.set_and_record(id, set_job, submitted.job.id, started, detail, now)
            .await?;
        self.get_drill(id).await
    }

    /// The fault for the holder's heartbeat, once per drill: the first
    /// heartbeat of a running drill's job gets it (one conditional claim,
    /// whichever replica answers), and `fault_sent` is recorded. `None` for
    /// every other heartbeat (one indexed read).
    async fn drill_fault_for(
        &self,
        job_id: JobId,
        agent_id: &str,
        token: FencingToken,
        now: i64,
    ) -> Result<Option<Fault>> {
        let pending: Option<(i64, String, i64)> = sqlx::query_as(
            "SELECT id, method, duration_ms FROM drills
             WHERE job_id = $1 AND state = 'running' AND fault_token IS NULL
               AND (fault_agent IS NULL OR fault_agent = $2)",
        )
        .bind(job_id)
        .bind(agent_id)
        .fetch_optional(&self.pool)
        .await?;
        let Some((drill_id, method, duration_ms)) = pending else {
            return Ok(None);
        };
        let method =
            DrillMethod::parse(&method).ok_or_else(|| Error::Corrupt("drills.method".into()))?;
        let agent = agent_id.to_owned();
        let claimed = self
            .tx(|c| {
                let agent = agent.clone();
                Box::pin(async move {
                    claim_fault(c, drill_id, job_id, &agent, token, method, duration_ms, now).await
                })
            })
            .await?;
        Ok(claimed.then_some(Fault {
            drill_id,
            method,
            duration_ms: duration_ms as u64,
        }))
    }

    /// A `controller_crash` drill's agent was answered by another replica:
    /// record `agent_failover` once per drill whose fault took effect (one
    /// statement; the event's key makes a second report, on any replica, a
    /// no-op).
    async fn drill_agent_failover(
        &self,
        agent_id: &str,
        failover_ms: u64,
        now: i64,
    ) -> Result<bool> {
        let recorded = sqlx::query(
            "INSERT INTO drill_events (drill_id, at, kind, attempt, agent, detail)
             SELECT d.id, $2, $3, 0, $1, $4 FROM drills d
             WHERE d.state = 'running' AND d.method = 'controller_crash' AND d.fault_agent = $1
               AND EXISTS (SELECT 1 FROM drill_events e
                           WHERE e.drill_id = d.id AND e.kind = 'fault_injected')
             ON CONFLICT DO NOTHING",
        )
        .bind(agent_id)
        .bind(now)
        .bind(DrillEventKind::AgentFailover.as_str())
        .bind(format!("{failover_ms} ms"))
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(recorded > 0)
    }

    async fn drill_fault_ack(
        &self,
        drill_id: DrillId,
        job_id: JobId,
        agent_id: &str,
        token: FencingToken,
        now: i64,
    ) -> Result<bool> {
        let agent = agent_id.to_owned();
        self.tx(|c| {
            let agent = agent.clone();
            Box::pin(async move { ack_fault(c, drill_id, job_id, &agent, token, now).await })
        })
        .await
    }

    /// Bring a running drill's timeline up to date with its job and, once
    /// the job has ended (or the drill has run too long), store its verdict
    /// (once, whichever replica gets there first).
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
        self.tx(|c| {
            let eval = eval.clone();
            Box::pin(async move {
                let verdict = eval.verdict.as_ref();
                store_refresh(c, id, &eval.derived, verdict, eval.verdict_at).await
            })
        })
        .await?;
        self.get_drill(id).await
    }

    async fn get_drill(&self, id: DrillId) -> Result<DrillView> {
        let row = self.drill_row(id).await?;
        row.view(timeline(&self.event_rows(id).await?)?)
    }

    async fn list_drills(&self, limit: u32) -> Result<DrillList> {
        let sql = format!("SELECT {DRILL_COLUMNS} FROM drills ORDER BY id DESC LIMIT $1");
        let rows: Vec<DrillRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(i64::from(limit.clamp(1, 1000)))
            .fetch_all(&self.pool)
            .await?;
        list(&rows)
    }

    async fn running_drills(&self) -> Result<Vec<DrillId>> {
        Ok(sqlx::query_scalar(RUNNING_DRILLS)
            .fetch_all(&self.pool)
            .await?)
    }

    async fn drill_outcomes(&self) -> Result<Vec<(String, String, i64)>> {
        Ok(sqlx::query_as(DRILL_OUTCOMES).fetch_all(&self.pool).await?)
    }

    async fn takeover_samples_ms(&self) -> Result<Vec<i64>> {
        Ok(sqlx::query_scalar(TAKEOVER_SAMPLES)
            .fetch_all(&self.pool)
            .await?)
    }
}

/// Claim a running drill's fault for the heartbeat of `token` and record
/// `fault_sent`; false when another heartbeat claimed it first.
#[allow(clippy::too_many_arguments)] // one row's fields; a struct would only rename them
async fn claim_fault(
    c: &mut PgConnection,
    drill_id: DrillId,
    job_id: JobId,
    agent_id: &str,
    token: FencingToken,
    method: DrillMethod,
    duration_ms: i64,
    now: i64,
) -> Result<bool> {
    let claimed = sqlx::query(
        "UPDATE drills SET fault_token = $1, fault_agent = $2, updated_at = $3
         WHERE id = $4 AND state = 'running' AND fault_token IS NULL
           AND (fault_agent IS NULL OR fault_agent = $2)",
    )
    .bind(token)
    .bind(agent_id)
    .bind(now)
    .bind(drill_id)
    .execute(&mut *c)
    .await?
    .rows_affected();
    if claimed != 1 {
        return Ok(false);
    }
    let attempt = attempt_of(c, job_id, token).await?;
    let detail = format!("{method} for {duration_ms} ms (token {token})");
    let kind = DrillEventKind::FaultSent;
    insert_event(
        c,
        drill_id,
        now,
        kind,
        attempt,
        Some(agent_id),
        Some(&detail),
    )
    .await?;
    Ok(true)
}

/// Record `fault_injected` for the agent and lease the fault was sent to;
/// false when it is there already.
async fn ack_fault(
    c: &mut PgConnection,
    drill_id: DrillId,
    job_id: JobId,
    agent_id: &str,
    token: FencingToken,
    now: i64,
) -> Result<bool> {
    let row: Option<(Option<i64>, Option<i64>, Option<String>)> =
        sqlx::query_as("SELECT job_id, fault_token, fault_agent FROM drills WHERE id = $1")
            .bind(drill_id)
            .fetch_optional(&mut *c)
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
    let attempt = attempt_of(c, job_id, token).await?;
    let kind = DrillEventKind::FaultInjected;
    insert_event(c, drill_id, now, kind, attempt, Some(agent_id), None).await
}

/// The attempt number of `token` (0 when unknown).
async fn attempt_of(c: &mut PgConnection, job_id: JobId, token: FencingToken) -> Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT number FROM attempts WHERE job_id = $1 AND token = $2")
            .bind(job_id)
            .bind(token)
            .fetch_optional(&mut *c)
            .await?
            .unwrap_or(0),
    )
}

/// Insert one timeline row unless that (kind, attempt) is there already.
async fn insert_event(
    c: &mut PgConnection,
    drill_id: DrillId,
    at: i64,
    kind: DrillEventKind,
    attempt: i64,
    agent: Option<&str>,
    detail: Option<&str>,
) -> Result<bool> {
    let done = sqlx::query(
        "INSERT INTO drill_events (drill_id, at, kind, attempt, agent, detail) VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT DO NOTHING",
    )
    .bind(drill_id)
    .bind(at)
    .bind(kind.as_str())
    .bind(attempt)
    .bind(agent)
    .bind(detail)
    .execute(&mut *c)
    .await?
    .rows_affected();
    Ok(done == 1)
}

#[cfg(test)]
mod tests;
