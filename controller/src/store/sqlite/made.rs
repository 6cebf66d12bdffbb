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
    insert_made_many(c, &[(s, lease_ttl_ms, maker)], now)
        .await?
        .pop()
        .ok_or_else(|| Error::Corrupt("inserted no job".into()))
}

/// Rows per multi-row INSERT of made jobs (18 bound values each).
const MADE_CHUNK: usize = 64;

/// Insert queued jobs made by their makers, marked for follow-up when they
/// end, a multi-row statement per [`MADE_CHUNK`]: their views in order.
/// A job that breaks a unique index (a schedule's nominal time made twice)
/// fails the statement.
pub(crate) async fn insert_made_many(
    c: &mut SqliteConnection,
    jobs: &[(&JobSubmit, u64, &Maker<'_>)],
    now: i64,
) -> Result<Vec<JobView>> {
    let mut out = Vec::with_capacity(jobs.len());
    for chunk in jobs.chunks(MADE_CHUNK) {
        let mut sql = String::from(
            "INSERT INTO jobs (grp, kind, spec, connection, priority, retry, timeout_ms, lease_ttl_ms, labels,
                 state, not_before, created_at, updated_at, schedule_id, nominal_at, run_id, step, pin_agent, followup, store)
             VALUES ",
        );
        for i in 0..chunk.len() {
            if i > 0 {
                sql.push(',');
            }
            sql.push_str("(?, ?, ?, ?, ?, ?, ?, ?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?, 1, ?)");
        }
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (s, ttl, maker) in chunk {
            q = q
                .bind(s.group.clone())
                .bind(s.spec.kind().as_str())
                .bind(enc(&s.spec)?)
                .bind(s.spec.connection().map(str::to_owned))
                .bind(s.priority)
                .bind(enc(&s.retry)?)
                .bind(s.timeout_ms.map(|t| t as i64))
                .bind(*ttl as i64)
                .bind(enc(&s.labels)?)
                .bind(now)
                .bind(now)
                .bind(now)
                .bind(maker.schedule_id)
                .bind(maker.nominal_at)
                .bind(maker.run_id)
                .bind(maker.step.map(str::to_owned))
                .bind(maker.pin_agent.map(str::to_owned))
                .bind(s.spec.store().map(str::to_owned));
        }
        let done = q.execute(&mut *c).await?;
        let n = chunk.len() as i64;
        if done.rows_affected() != n as u64 {
            return Err(Error::Corrupt(format!(
                "inserted {} of {n} jobs",
                done.rows_affected()
            )));
        }
        // One statement takes consecutive rowids (the writer holds the lock).
        let first = done.last_insert_rowid() - n + 1;
        for (i, (s, ttl, _)) in chunk.iter().enumerate() {
            out.push(queued_view(first + i as i64, s, *ttl, None, now));
        }
    }
    Ok(out)
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
