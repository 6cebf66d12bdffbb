//! Jobs the controller makes itself — a schedule's occurrence, a pipeline's
//! step — inserted inside the transaction that decided them, with what made
//! them and where they must run; and the cancel both share.

use baton_proto::{JobId, JobState, JobSubmit, JobView};
use sqlx::sqlite::SqliteConnection;

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
pub(crate) async fn insert_made(
    c: &mut SqliteConnection,
    s: &JobSubmit,
    lease_ttl_ms: u64,
    maker: &Maker<'_>,
    now: i64,
) -> Result<JobView> {
    let spec = enc(&s.spec)?;
    let retry = enc(&s.retry)?;
    let labels = enc(&s.labels)?;
    let done = sqlx::query(
        "INSERT INTO jobs (grp, kind, spec, connection, priority, retry, timeout_ms, lease_ttl_ms, labels,
             state, not_before, created_at, updated_at, schedule_id, nominal_at, run_id, step, pin_agent, followup, store)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'queued', ?10, ?10, ?10, ?11, ?12, ?13, ?14, ?15, 1, ?16)",
    )
    .bind(&s.group)
    .bind(s.spec.kind().as_str())
    .bind(spec)
    .bind(s.spec.connection())
    .bind(s.priority)
    .bind(retry)
    .bind(s.timeout_ms.map(|t| t as i64))
    .bind(lease_ttl_ms as i64)
    .bind(labels)
    .bind(now)
    .bind(maker.schedule_id)
    .bind(maker.nominal_at)
    .bind(maker.run_id)
    .bind(maker.step)
    .bind(maker.pin_agent)
    .bind(s.spec.store())
    .execute(&mut *c)
    .await?;
    Ok(queued_view(
        done.last_insert_rowid(),
        s,
        lease_ttl_ms,
        None,
        now,
    ))
}

/// Cancel job `id` inside a transaction: a queued job ends at once with
/// `why`; a running one is asked to stop (its holder learns it from its
/// held poll, or the next heartbeat). Returns its state before; an ended job is left alone.
pub(crate) async fn cancel_in(
    c: &mut SqliteConnection,
    id: JobId,
    why: &str,
    now: i64,
) -> Result<JobState> {
    let state: Option<String> = sqlx::query_scalar("SELECT state FROM jobs WHERE id = ?")
        .bind(id)
        .fetch_optional(&mut *c)
        .await?;
    let state = state.ok_or(Error::NotFound(id))?;
    let state =
        JobState::parse(&state).ok_or_else(|| Error::Corrupt(format!("jobs.state {id}")))?;
    match state {
        JobState::Queued => {
            sqlx::query(
                "UPDATE jobs SET state = 'cancelled', cancel_requested = 1, finished_at = ?1,
                 updated_at = ?1, error = ?2 WHERE id = ?3",
            )
            .bind(now)
            .bind(why)
            .bind(id)
            .execute(&mut *c)
            .await?;
            Ok(JobState::Queued)
        }
        JobState::Running => {
            sqlx::query("UPDATE jobs SET cancel_requested = 1, updated_at = ? WHERE id = ?")
                .bind(now)
                .bind(id)
                .execute(&mut *c)
                .await?;
            Ok(JobState::Running)
        }
        s => Ok(s),
    }
}
