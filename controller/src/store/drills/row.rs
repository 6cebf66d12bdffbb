//! The stored drill row and what every backend derives from it (pure: no
//! SQL dialect, no I/O).

use baton_proto::drill::{DrillEvent, DrillList, DrillMethod, DrillReport, DrillState, DrillView};
use baton_proto::{JobSpec, JobState};

use super::{Candidate, EventRow, Input};
use crate::store::rows::{AttemptRow, json, json_opt, ts};
use crate::store::{Error, Result};

/// The columns of [`DrillRow`], in a `SELECT`.
pub(crate) const DRILL_COLUMNS: &str = "id, grp, method, duration_ms, lease_ttl_ms, rto_ms, job_id, state, created_by, created_at, finished_at, fault_token, report";

/// An agent not seen for this long could not have taken a drill's job over
/// (the default `agent_offline_after`: the default poll hold + 20 s).
pub(crate) const ONLINE_WINDOW_MS: i64 = 45_000;

/// One `drills` row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct DrillRow {
    pub id: i64,
    pub grp: String,
    pub method: String,
    pub duration_ms: i64,
    pub lease_ttl_ms: i64,
    pub rto_ms: i64,
    pub job_id: Option<i64>,
    pub state: String,
    pub created_by: String,
    pub created_at: i64,
    pub finished_at: Option<i64>,
    pub fault_token: Option<i64>,
    pub report: Option<String>,
}

impl DrillRow {
    pub(crate) fn method(&self) -> Result<DrillMethod> {
        DrillMethod::parse(&self.method).ok_or_else(|| Error::Corrupt("drills.method".into()))
    }

    pub(crate) fn state(&self) -> Result<DrillState> {
        DrillState::parse(&self.state).ok_or_else(|| Error::Corrupt("drills.state".into()))
    }

    pub(crate) fn view(&self, events: Vec<DrillEvent>) -> Result<DrillView> {
        Ok(DrillView {
            id: self.id,
            group: self.grp.clone(),
            method: self.method()?,
            duration_ms: self.duration_ms as u64,
            lease_ttl_ms: self.lease_ttl_ms as u64,
            rto_ms: self.rto_ms as u64,
            job_id: self.job_id,
            state: self.state()?,
            created_by: self.created_by.clone(),
            created_at: ts(self.created_at),
            finished_at: self.finished_at.map(ts),
            report: json_opt::<DrillReport>("drills.report", &self.report)?,
            events,
        })
    }

    /// The faulted holder's agent id once a verdict is due (the job ended
    /// or the drill gave up): the other agents of the group are then read
    /// to say who could have taken over. `None` otherwise.
    pub(crate) fn holder_when_due<'j>(&self, job: &'j DrillJob, now: i64) -> Option<&'j str> {
        let due = job.state.is_terminal()
            || now - self.created_at
                > super::give_up_after_ms(self.rto_ms, self.duration_ms, self.lease_ttl_ms);
        let holder = self
            .fault_token
            .and_then(|t| job.attempts.iter().find(|a| a.token == t))?;
        due.then_some(holder.agent_id.as_str())
    }

    /// What `evaluate` judges this drill on.
    pub(crate) fn input<'a>(
        &'a self,
        job: &'a DrillJob,
        events: &'a [EventRow],
        others: &'a [Candidate],
        now: i64,
    ) -> Result<Input<'a>> {
        Ok(Input {
            method: self.method()?,
            rto_ms: self.rto_ms,
            duration_ms: self.duration_ms,
            lease_ttl_ms: self.lease_ttl_ms,
            created_at: self.created_at,
            fault_token: self.fault_token,
            job_state: job.state,
            finished_at: job.finished_at,
            spec: &job.spec,
            attempts: &job.attempts,
            events,
            now,
            group: &self.grp,
            others,
        })
    }
}

/// A drill's job, as `evaluate` needs it.
#[derive(Debug)]
pub(crate) struct DrillJob {
    pub state: JobState,
    pub finished_at: Option<i64>,
    pub spec: JobSpec,
    pub attempts: Vec<AttemptRow>,
}

impl DrillJob {
    /// From the stored `jobs.state`, `finished_at` and `spec` and its
    /// attempts by number.
    pub(crate) fn parse(
        state: &str,
        finished_at: Option<i64>,
        spec: &str,
        attempts: Vec<AttemptRow>,
    ) -> Result<DrillJob> {
        Ok(DrillJob {
            state: JobState::parse(state).ok_or_else(|| Error::Corrupt("jobs.state".into()))?,
            finished_at,
            spec: json("jobs.spec", spec)?,
            attempts,
        })
    }
}

/// A drill's timeline from its stored rows: by time, then kind, then attempt.
pub(crate) fn timeline(rows: &[EventRow]) -> Result<Vec<DrillEvent>> {
    let mut events = rows
        .iter()
        .map(EventRow::view)
        .collect::<Result<Vec<_>>>()?;
    events.sort_by(|a, b| {
        (a.at, a.kind, a.attempt.unwrap_or(0)).cmp(&(b.at, b.kind, b.attempt.unwrap_or(0)))
    });
    Ok(events)
}

/// Drills without timelines.
pub(crate) fn list(rows: &[DrillRow]) -> Result<DrillList> {
    Ok(DrillList {
        drills: rows
            .iter()
            .map(|r| r.view(Vec::new()))
            .collect::<Result<_>>()?,
    })
}

/// Ids of drills still running (the same SQL on every backend).
pub(crate) const RUNNING_DRILLS: &str = "SELECT id FROM drills WHERE state = 'running' ORDER BY id";

/// Drills per `(method, state)`.
pub(crate) const DRILL_OUTCOMES: &str =
    "SELECT method, state, COUNT(*) FROM drills GROUP BY method, state ORDER BY method, state";

/// Every lease-expiry takeover, in ms: from the holder's last renewal
/// (lease deadline − TTL) to the next grant of the same job.
pub(crate) const TAKEOVER_SAMPLES: &str = "SELECT b.started_at - (a.ended_at - j.lease_ttl_ms)
     FROM attempts a
     JOIN attempts b ON b.job_id = a.job_id AND b.number = a.number + 1
     JOIN jobs j ON j.id = a.job_id
     WHERE a.outcome = 'lease_expired' AND a.ended_at IS NOT NULL";

/// The detail of a `verdict` event: the state, and the reasons if any.
pub(crate) fn verdict_detail(state: DrillState, report: &DrillReport) -> String {
    if report.reasons.is_empty() {
        state.as_str().to_owned()
    } else {
        format!("{state}: {}", report.reasons.join("; "))
    }
}
