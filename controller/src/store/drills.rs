//! Failover drills: the drill row, its timeline, the fault handed to the
//! holder, and the takeover measurements behind `/metrics`.
//!
//! A drill owns one job (label `drill=<id>`). Its timeline mixes events the
//! controller records when they happen (`started`, `fault_sent`,
//! `fault_injected`, `verdict`) with events derived from the job's attempt
//! rows (`job_granted`, `lease_expired`, `job_regranted`, `job_finished`),
//! which carry the store's own timestamps; [`DrillStore::refresh_drill`] inserts
//! the derived ones idempotently (one row per kind and attempt) and, once the
//! job has ended, stores the report computed by `evaluate` (pure: shared by every backend).

mod report;
mod row;
#[cfg(test)]
mod tests;

use async_trait::async_trait;
use baton_proto::drill::{
    DrillEvent, DrillEventKind, DrillId, DrillList, DrillMethod, DrillView, Fault,
};
use baton_proto::{FencingToken, JobId};

use super::jobs::NewJob;
use super::rows::ts;
use super::{Error, Result};

pub(crate) use report::{Candidate, Input, candidates, evaluate, give_up_after_ms};
pub(crate) use row::{
    DRILL_COLUMNS, DRILL_OUTCOMES, DrillJob, DrillRow, ONLINE_WINDOW_MS, RUNNING_DRILLS,
    TAKEOVER_SAMPLES, list, timeline, verdict_detail,
};

/// A validated drill request.
#[derive(Debug, Clone)]
pub struct NewDrill {
    /// Worker group.
    pub group: String,
    /// The fault.
    pub method: DrillMethod,
    /// Fault duration.
    pub duration_ms: u64,
    /// Lease TTL of the drill's job.
    pub lease_ttl_ms: u64,
    /// RTO target.
    pub rto_ms: u64,
    /// Who started it.
    pub created_by: String,
    /// `controller_crash`: the agent whose heartbeat crashes its replica
    /// (only its heartbeats of the drill's job claim the fault).
    pub agent: Option<String>,
}

/// One stored timeline row.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct EventRow {
    /// Unix ms.
    pub at: i64,
    /// Wire name of the kind.
    pub kind: String,
    /// Attempt number (0 = not about an attempt).
    pub attempt: i64,
    /// Agent concerned.
    pub agent: Option<String>,
    /// More words.
    pub detail: Option<String>,
}

impl EventRow {
    pub(crate) fn kind(&self) -> Result<DrillEventKind> {
        DrillEventKind::parse(&self.kind).ok_or_else(|| Error::Corrupt("drill_events.kind".into()))
    }

    pub(crate) fn view(&self) -> Result<DrillEvent> {
        Ok(DrillEvent {
            at: ts(self.at),
            kind: self.kind()?,
            agent: self.agent.clone(),
            attempt: (self.attempt > 0).then_some(self.attempt as u32),
            detail: self.detail.clone(),
        })
    }
}

/// Failover drills of a backend.
#[async_trait]
pub trait DrillStore {
    /// Create a drill and its job (the job gets the label `drill=<id>`).
    /// When the job cannot be created the drill ends as `error`.
    async fn create_drill(&self, d: &NewDrill, mut job: NewJob, now: i64) -> Result<DrillView>;

    /// The fault for the holder's heartbeat, once per drill: the first
    /// heartbeat of a running drill's job gets it, and `fault_sent` is
    /// recorded. `None` for every other heartbeat (one indexed read).
    async fn drill_fault_for(
        &self,
        job_id: JobId,
        agent_id: &str,
        token: FencingToken,
        now: i64,
    ) -> Result<Option<Fault>>;

    /// A `controller_crash` drill's agent was answered by another replica
    /// `failover_ms` after it lost the crashed one: record `agent_failover`
    /// (once per drill) on every running drill whose fault hit that agent's
    /// replica (`fault_injected` recorded). Whether one was recorded.
    async fn drill_agent_failover(
        &self,
        agent_id: &str,
        failover_ms: u64,
        now: i64,
    ) -> Result<bool>;

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
    ) -> Result<bool>;

    /// Bring a running drill's timeline up to date with its job and, once
    /// the job has ended (or the drill has run too long), store its verdict.
    async fn refresh_drill(&self, id: DrillId, now: i64) -> Result<DrillView>;

    /// A drill with its timeline (in time order).
    async fn get_drill(&self, id: DrillId) -> Result<DrillView>;

    /// Drills, newest first, without timelines.
    async fn list_drills(&self, limit: u32) -> Result<DrillList>;

    /// Ids of drills still running.
    async fn running_drills(&self) -> Result<Vec<DrillId>>;

    /// Finished drills per `(method, state)`.
    async fn drill_outcomes(&self) -> Result<Vec<(String, String, i64)>>;

    /// Every lease-expiry takeover, in ms: from the holder's last renewal
    /// (lease deadline − TTL) to the next grant of the same job.
    async fn takeover_samples_ms(&self) -> Result<Vec<i64>>;
}
