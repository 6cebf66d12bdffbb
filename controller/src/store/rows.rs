//! Rows as stored, and their conversion into wire views: the same columns
//! in every sqlx backend (`FromRow` is generic over the database).

use baton_proto::{
    AttemptOutcome, AttemptView, JobKind, JobList, JobResult, JobSpec, JobState, JobSummary,
    JobView, Progress, RetryPolicy,
};
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;

use super::{Error, Result};

pub(crate) const JOB_COLUMNS: &str = "id, grp, kind, spec, connection, priority, retry, timeout_ms, lease_ttl_ms, labels, idempotency_key, request_hash, state, attempts_spent, grants, last_token, not_before, cancel_requested, lease_agent, lease_token, lease_expires_at, created_at, updated_at, finished_at, result, error, schedule_id, nominal_at, run_id, step";

#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct JobRow {
    pub id: i64,
    pub grp: String,
    pub kind: String,
    pub spec: String,
    pub connection: Option<String>,
    pub priority: i64,
    pub retry: String,
    pub timeout_ms: Option<i64>,
    pub lease_ttl_ms: i64,
    pub labels: String,
    pub idempotency_key: Option<String>,
    pub request_hash: Option<String>,
    pub state: String,
    pub attempts_spent: i64,
    pub grants: i64,
    pub last_token: i64,
    pub not_before: i64,
    pub cancel_requested: bool,
    pub lease_agent: Option<String>,
    pub lease_token: Option<i64>,
    pub lease_expires_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    pub finished_at: Option<i64>,
    pub result: Option<String>,
    pub error: Option<String>,
    /// The schedule that made it (the view names it: [`JobRow::view`]
    /// leaves `schedule` to the caller, which looks the name up).
    pub schedule_id: Option<i64>,
    pub nominal_at: Option<i64>,
    pub run_id: Option<i64>,
    pub step: Option<String>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct AttemptRow {
    pub number: i64,
    pub agent_id: String,
    pub token: i64,
    pub started_at: i64,
    pub running_at: Option<i64>,
    pub ended_at: Option<i64>,
    pub outcome: Option<String>,
    pub error: Option<String>,
    pub progress: Option<String>,
    pub log_tail: String,
    pub result: Option<String>,
}

pub(crate) fn json<T: DeserializeOwned>(what: &str, s: &str) -> Result<T> {
    serde_json::from_str(s).map_err(|e| Error::Corrupt(format!("{what}: {e}")))
}

pub(crate) fn json_opt<T: DeserializeOwned>(what: &str, s: &Option<String>) -> Result<Option<T>> {
    s.as_deref().map(|s| json(what, s)).transpose()
}

pub(crate) fn ts(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// A value as the JSON text stored in its column.
pub(crate) fn enc<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| Error::Corrupt(e.to_string()))
}

impl JobRow {
    pub fn state(&self) -> Result<JobState> {
        JobState::parse(&self.state)
            .ok_or_else(|| Error::Corrupt(format!("jobs.state {}", self.id)))
    }

    pub fn retry(&self) -> Result<RetryPolicy> {
        json("jobs.retry", &self.retry)
    }

    pub fn view(&self, attempts: Vec<AttemptView>) -> Result<JobView> {
        let state = self.state()?;
        let spec: JobSpec = json("jobs.spec", &self.spec)?;
        Ok(JobView {
            id: self.id,
            group: self.grp.clone(),
            kind: JobKind::parse(&self.kind).unwrap_or(spec.kind()),
            spec,
            connection: self.connection.clone(),
            state,
            priority: self.priority as i32,
            retry: self.retry()?,
            timeout_ms: self.timeout_ms.map(|t| t as u64),
            lease_ttl_ms: self.lease_ttl_ms as u64,
            labels: json("jobs.labels", &self.labels)?,
            idempotency_key: self.idempotency_key.clone(),
            attempts_spent: self.attempts_spent as u32,
            not_before: (state == JobState::Queued && self.not_before > self.updated_at)
                .then(|| ts(self.not_before)),
            cancel_requested: self.cancel_requested,
            lease_agent: (state == JobState::Running)
                .then(|| self.lease_agent.clone())
                .flatten(),
            // Clamped for display: times written by runs on either side of
            // a wall-clock step (`clock`) never show an end before a start.
            created_at: ts(self.created_at),
            updated_at: ts(self.updated_at.max(self.created_at)),
            finished_at: self.finished_at.map(|f| ts(f.max(self.created_at))),
            result: json_opt::<JobResult>("jobs.result", &self.result)?,
            error: self.error.clone(),
            blocked_reason: None,
            schedule: None,
            nominal_at: self.nominal_at.map(ts),
            run_id: self.run_id,
            step: self.step.clone(),
            attempts,
        })
    }
}

impl AttemptRow {
    pub fn view(&self) -> Result<AttemptView> {
        Ok(AttemptView {
            running_at: self.running_at.map(|r| ts(r.max(self.started_at))),
            number: self.number as u32,
            agent_id: self.agent_id.clone(),
            token: self.token,
            started_at: ts(self.started_at),
            ended_at: self.ended_at.map(|e| ts(e.max(self.started_at))),
            outcome: self.outcome.as_deref().and_then(AttemptOutcome::parse),
            error: self.error.clone(),
            progress: json_opt::<Progress>("attempts.progress", &self.progress)?,
            log_tail: self.log_tail.clone(),
            result: json_opt::<JobResult>("attempts.result", &self.result)?,
        })
    }
}

/// The columns of a job summary (`list_jobs`).
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct SummaryRow {
    pub id: i64,
    pub grp: String,
    pub kind: String,
    pub connection: Option<String>,
    pub state: String,
    pub priority: i64,
    pub attempts_spent: i64,
    pub max_attempts: Option<i64>,
    pub labels: String,
    pub not_before: i64,
    pub cancel_requested: bool,
    pub lease_agent: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub finished_at: Option<i64>,
    pub exit_code: Option<i64>,
    pub error: Option<String>,
    pub what: Option<String>,
    pub schedule: Option<String>,
    pub nominal_at: Option<i64>,
    pub run_id: Option<i64>,
    pub step: Option<String>,
}

impl SummaryRow {
    /// One page of the listing from `rows`, read with `LIMIT limit + 1`:
    /// the first `limit` as summaries, and the cursor to the next page when
    /// the extra row came back.
    pub(crate) fn page(rows: Vec<SummaryRow>, limit: u32) -> Result<JobList> {
        let more = rows.len() > limit as usize;
        let jobs = rows
            .into_iter()
            .take(limit as usize)
            .map(SummaryRow::summary)
            .collect::<Result<Vec<_>>>()?;
        let next_before = if more {
            jobs.last().map(|j| j.id)
        } else {
            None
        };
        Ok(JobList { jobs, next_before })
    }

    pub(crate) fn summary(self) -> Result<JobSummary> {
        let state = JobState::parse(&self.state)
            .ok_or_else(|| Error::Corrupt(format!("jobs.state {}", self.id)))?;
        let kind = JobKind::parse(&self.kind)
            .ok_or_else(|| Error::Corrupt(format!("jobs.kind {}", self.id)))?;
        Ok(JobSummary {
            id: self.id,
            group: self.grp,
            kind,
            what: self.what.map(cut),
            connection: self.connection,
            state,
            priority: self.priority as i32,
            attempts_spent: self.attempts_spent as u32,
            max_attempts: self.max_attempts.unwrap_or(0) as u32,
            labels: json("jobs.labels", &self.labels)?,
            not_before: (state == JobState::Queued && self.not_before > self.updated_at)
                .then(|| ts(self.not_before)),
            cancel_requested: self.cancel_requested,
            lease_agent: (state == JobState::Running)
                .then_some(self.lease_agent)
                .flatten(),
            created_at: ts(self.created_at),
            updated_at: ts(self.updated_at),
            finished_at: self.finished_at.map(ts),
            exit_code: self.exit_code.and_then(|c| i32::try_from(c).ok()),
            error: self.error.map(cut),
            schedule: self.schedule,
            nominal_at: self.nominal_at.map(ts),
            run_id: self.run_id,
            step: self.step,
        })
    }
}

/// A text read as at most `MAX_TEXT + 1` characters, cut to `MAX_TEXT`
/// with `…` when it was longer.
fn cut(text: String) -> String {
    match text.char_indices().nth(JobSummary::MAX_TEXT) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text,
    }
}

#[cfg(test)]
mod tests;
