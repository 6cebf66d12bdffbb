//! Jobs the controller makes itself — a schedule's occurrence, a pipeline's
//! step — inserted inside the transaction that decided them, with what made
//! them and where they must run; and the cancel both share (PostgreSQL; the
//! same functions as [`crate::store::sqlite`]'s `made`).

use baton_proto::{JobId, JobState, JobSubmit, JobView};
use sqlx::postgres::PgConnection;

use crate::store::jobs::queued_view;
pub(crate) use crate::store::rows::enc;
use crate::store::{Error, Result};

/// What made a job.
#[derive(Debug, Clone, Default)]
pub(crate) struct Maker<'a> {
    /// The schedule whose occurrence it is.
    pub schedule_id: Option<i64>,
    /// That occurrence's nominal time.
    pub nominal_at: Option<i64>,
    /// The pipeline run whose step it is.
    pub run_id: Option<i64>,
    /// The step.
    pub step: Option<&'a str>,
    /// Only this agent may take it (`same_agent_as`).
    pub pin_agent: Option<&'a str>,
}

/// Insert one queued job made by `maker`, marked for follow-up when it ends.
/// A second job for one occurrence is refused by the unique index
/// `jobs_occurrence` (the caller turns that into a conflict).
pub(crate) async fn insert_made(
    c: &mut PgConnection,
    s: &JobSubmit,
    lease_ttl_ms: u64,
    maker: &Maker<'_>,
    now: i64,
) -> Result<JobView> {
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO jobs (grp, kind, spec, connection, priority, retry, timeout_ms, lease_ttl_ms, labels,
             state, not_before, created_at, updated_at, schedule_id, nominal_at, run_id, step, pin_agent, followup, store)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'queued', $10, $10, $10, $11, $12, $13, $14, $15, TRUE, $16)
         RETURNING id",
    )
    .bind(&s.group)
    .bind(s.spec.kind().as_str())
    .bind(enc(&s.spec)?)
    .bind(s.spec.connection())
    .bind(i64::from(s.priority))
    .bind(enc(&s.retry)?)
    .bind(s.timeout_ms.map(|t| t as i64))
    .bind(lease_ttl_ms as i64)
    .bind(enc(&s.labels)?)
    .bind(now)
    .bind(maker.schedule_id)
    .bind(maker.nominal_at)
    .bind(maker.run_id)
    .bind(maker.step)
    .bind(maker.pin_agent)
    .bind(s.spec.store())
    .fetch_one(&mut *c)
    .await?;
    Ok(queued_view(id, s, lease_ttl_ms, None, now))
}

/// Cancel job `id` inside a transaction: a queued job ends at once with
/// `why`; a running one is asked to stop (its holder learns it from its
/// held poll, or the next heartbeat). Returns its state before; an ended
/// job is left alone. The row is locked first: a grant or a completion on
/// another replica waits for this transaction, then sees what it wrote.
pub(crate) async fn cancel_in(
    c: &mut PgConnection,
    id: JobId,
    why: &str,
    now: i64,
) -> Result<JobState> {
    let state: Option<String> =
        sqlx::query_scalar("SELECT state FROM jobs WHERE id = $1 FOR UPDATE")
            .bind(id)
            .fetch_optional(&mut *c)
            .await?;
    let state = state.ok_or(Error::NotFound(id))?;
    let state =
        JobState::parse(&state).ok_or_else(|| Error::Corrupt(format!("jobs.state {id}")))?;
    match state {
        JobState::Queued => {
            sqlx::query(
                "UPDATE jobs SET state = 'cancelled', cancel_requested = TRUE, finished_at = $1,
                 updated_at = $1, error = $2 WHERE id = $3",
            )
            .bind(now)
            .bind(why)
            .bind(id)
            .execute(&mut *c)
            .await?;
            Ok(JobState::Queued)
        }
        JobState::Running => {
            sqlx::query("UPDATE jobs SET cancel_requested = TRUE, updated_at = $1 WHERE id = $2")
                .bind(now)
                .bind(id)
                .execute(&mut *c)
                .await?;
            Ok(JobState::Running)
        }
        s => Ok(s),
    }
}
