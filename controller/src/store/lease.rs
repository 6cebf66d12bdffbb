//! The lease contract (ARCHITECTURE.md "The lease lifecycle", points 1–6).
//!
//! Every call is atomic: its checks and changes happen in one transaction,
//! and it is answered only once that is durable. What a backend must do:
//! - a grant moves `queued → running`, issues `last_token + 1` and records attempt N;
//! - heartbeat/complete/release are accepted only with the current token, from
//!   the holder, before the lease deadline — otherwise [`Error::LeaseLost`](super::Error::LeaseLost);
//! - expiry ends overdue attempts as `lease_expired` and requeues or fails the job;
//! - a restarted agent's abandon ends those of the leases it reports that are
//!   still its current ones as `agent_restarted` (an attempt spent, as for
//!   expiry) and leaves every other alone.

use async_trait::async_trait;
use baton_proto::{
    AttemptOutcome, CompleteRequest, Completion, FencingToken, Grant, HeartbeatRequest, JobId,
    JobKind, JobSpec, JobState, LeaseRef, RetryOn, RetryPolicy,
};

use super::Result;
use super::jobs::{NewJob, Submitted};
use super::rows::{JobRow, json};

/// What a polling agent can take.
#[derive(Debug, Clone)]
pub struct GrantRequest<'a> {
    /// The agent.
    pub agent_id: &'a str,
    /// Its groups.
    pub groups: &'a [String],
    /// Job kinds it runs.
    pub kinds: &'a [JobKind],
    /// Connection names it has.
    pub connections: &'a [String],
    /// Object store names it has (`[stores.<name>]`).
    pub stores: &'a [String],
    /// Most jobs to grant.
    pub max: u32,
}

/// A [`GrantRequest`] owned, to move into a transaction's body.
#[derive(Debug, Clone)]
pub struct OwnedGrant {
    /// The agent.
    pub agent_id: String,
    /// Its groups.
    pub groups: Vec<String>,
    /// Job kinds it runs.
    pub kinds: Vec<JobKind>,
    /// Connection names it has.
    pub connections: Vec<String>,
    /// Object store names it has.
    pub stores: Vec<String>,
    /// Most jobs to grant.
    pub max: u32,
}

impl OwnedGrant {
    /// An owned copy of `req`.
    pub fn of(req: &GrantRequest<'_>) -> OwnedGrant {
        OwnedGrant {
            agent_id: req.agent_id.to_owned(),
            groups: req.groups.to_vec(),
            kinds: req.kinds.to_vec(),
            connections: req.connections.to_vec(),
            stores: req.stores.to_vec(),
            max: req.max,
        }
    }

    /// Borrowed again.
    pub fn as_req(&self) -> GrantRequest<'_> {
        GrantRequest {
            agent_id: &self.agent_id,
            groups: &self.groups,
            kinds: &self.kinds,
            connections: &self.connections,
            stores: &self.stores,
            max: self.max,
        }
    }
}

/// The result of a grant attempt.
#[derive(Debug, Clone, Default)]
pub struct Granted {
    /// Jobs granted (held_ms still 0: the API layer fills it in).
    pub grants: Vec<Grant>,
    /// Earliest `not_before` of a matching job still waiting for backoff.
    pub next_ready_at: Option<i64>,
    /// Groups with jobs requeued by expiry during this call.
    pub woken: Vec<String>,
    /// When each granted job became ready to run (its `not_before`: the
    /// submit, or the end of its retry backoff), in the order of `grants`.
    pub ready_at: Vec<i64>,
    /// Leases this call expired before granting.
    pub expired: u64,
}

/// Leases ended by [`LeaseStore::expire_leases`].
#[derive(Debug, Clone, Default)]
pub struct Expired {
    /// `(job, token, agent)` of each expired lease.
    pub leases: Vec<(JobId, FencingToken, String)>,
    /// Groups that got a job back.
    pub woken: Vec<String>,
}

/// What [`LeaseStore::abandon`] did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Abandoned {
    /// One per reported lease, in order: the job's state after its attempt
    /// ended `agent_restarted`, or `None` when it was not the caller's
    /// current lease (nothing changed).
    pub results: Vec<(LeaseRef, Option<JobState>)>,
    /// Groups that got a job back.
    pub woken: Vec<String>,
}

/// Where a job goes after an attempt ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    Queued { not_before: i64 },
    Succeeded,
    Failed,
    Cancelled,
}

impl Next {
    pub(crate) fn state(self) -> JobState {
        match self {
            Next::Queued { .. } => JobState::Queued,
            Next::Succeeded => JobState::Succeeded,
            Next::Failed => JobState::Failed,
            Next::Cancelled => JobState::Cancelled,
        }
    }
}

/// Decide the job's next state after an attempt that spent one try.
/// `spent` already counts this attempt; `unit` is a uniform sample for jitter.
pub(crate) fn after_spent_attempt(
    policy: &RetryPolicy,
    class: Option<RetryOn>,
    spent: u32,
    cancel_requested: bool,
    now: i64,
    unit: f64,
) -> Next {
    if cancel_requested {
        return Next::Cancelled;
    }
    match class {
        Some(c) if policy.retry_on.contains(&c) && spent < policy.max_attempts => Next::Queued {
            not_before: now + policy.delay_ms(spent, unit) as i64,
        },
        _ => Next::Failed,
    }
}

/// The grant for a job row read before its lease was taken (so token and
/// attempt are one past the row's).
pub(crate) fn grant_of(row: JobRow) -> Result<Grant> {
    let spec: JobSpec = json("jobs.spec", &row.spec)?;
    let retry_codes = row.retry()?.retry_codes;
    Ok(Grant {
        job_id: row.id,
        attempt: (row.grants + 1) as u32,
        token: row.last_token + 1,
        lease_ttl_ms: row.lease_ttl_ms as u64,
        held_ms: 0,
        timeout_ms: row.timeout_ms.map(|t| t as u64),
        group: row.grp,
        spec,
        retry_codes,
    })
}

/// A completion, owned (to move into a writer or a retried transaction).
#[derive(Debug, Clone)]
pub(crate) struct Completed {
    pub job_id: JobId,
    pub agent_id: String,
    pub token: FencingToken,
    pub completion: Completion,
    pub result_json: Option<String>,
    pub error: Option<String>,
    /// The agent's delay from the grant to the work's start (ms).
    pub started_after_ms: Option<i64>,
    /// Uniform sample for the retry jitter.
    pub unit: f64,
}

/// A heartbeat of `token` with `log_tail`, nothing else (for tests).
#[cfg(test)]
pub(crate) fn beat(token: FencingToken, log_tail: &str) -> HeartbeatRequest {
    HeartbeatRequest {
        token,
        progress: None,
        log_tail: log_tail.to_owned(),
        failover_ms: None,
        started_after_ms: None,
    }
}

/// An agent's reported start delay as stored (bounded, so adding it to a
/// timestamp cannot overflow).
pub(crate) fn ms_i64(ms: u64) -> i64 {
    i64::try_from(ms.min(1 << 50)).unwrap_or(1 << 50)
}

/// The attempt outcome a completion records.
pub(crate) fn outcome_of(completion: Completion) -> AttemptOutcome {
    match completion {
        Completion::Succeeded => AttemptOutcome::Succeeded,
        Completion::Failed { .. } => AttemptOutcome::Failed,
        Completion::TimedOut => AttemptOutcome::TimedOut,
        Completion::Cancelled => AttemptOutcome::Cancelled,
    }
}

/// Where the job goes after this completion spent attempt `spent`.
pub(crate) fn next_after(d: &Completed, row: &JobRow, spent: i64, now: i64) -> Result<Next> {
    let retry_on = match d.completion {
        Completion::Succeeded => return Ok(Next::Succeeded),
        Completion::Cancelled => return Ok(Next::Cancelled),
        Completion::Failed { retryable } => retryable.then_some(RetryOn::Error),
        Completion::TimedOut => Some(RetryOn::Timeout),
    };
    Ok(after_spent_attempt(
        &row.retry()?,
        retry_on,
        spent as u32,
        row.cancel_requested,
        now,
        d.unit,
    ))
}

/// How a lost lease ends (expired, or its agent restarted): the attempt
/// is spent with the retry class `lease_expired`; the job's next state,
/// the attempts then spent and the job's error.
pub(crate) fn after_lost_lease(row: &JobRow, error: &str, now: i64) -> Result<(Next, i64, String)> {
    let spent = row.attempts_spent + 1;
    let next = after_spent_attempt(
        &row.retry()?,
        Some(RetryOn::LeaseExpired),
        spent as u32,
        row.cancel_requested,
        now,
        rand::random(),
    );
    let final_error = match next {
        Next::Failed => format!("{error}; no attempts left"),
        Next::Cancelled => "cancelled by operator".to_owned(),
        _ => error.to_owned(),
    };
    Ok((next, spent, final_error))
}

/// The lease contract of a backend.
#[async_trait]
pub trait LeaseStore {
    /// Grant up to `req.max` queued jobs to an agent (point 1). Overdue
    /// leases are expired first, in the same transaction (point 5).
    async fn grant(&self, req: &GrantRequest<'_>, now: i64) -> Result<Granted>;

    /// Submit one job and, in the same transaction, grant to the agent of
    /// `req` — a poll held on this controller that can take it — as
    /// [`LeaseStore::grant`] would: one commit for both, the dispatch hand-off
    /// (ARCHITECTURE.md, "The lease lifecycle", point 7). A replayed
    /// idempotency key grants nothing.
    async fn submit_and_grant(
        &self,
        new: NewJob,
        req: &GrantRequest<'_>,
        now: i64,
    ) -> Result<(Submitted, Granted)>;

    /// Renew a lease (point 2): the token's lease gets the progress and log
    /// tail, and the work's start if it is the first one reported. Returns
    /// `(ttl_ms, cancel_requested)`.
    async fn heartbeat(
        &self,
        job_id: JobId,
        agent_id: &str,
        req: &HeartbeatRequest,
        now: i64,
    ) -> Result<(u64, bool)>;

    /// Record the end of a grant (point 3): `(state, duplicate, group,
    /// made)`. A redelivery of a completion that was already recorded
    /// answers `(state, true, "", true)`. `made` is whether the job may be
    /// one a schedule or pipeline made (its end then needs the schedule
    /// timer's follow-up); true when unsure.
    async fn complete(
        &self,
        job_id: JobId,
        agent_id: &str,
        req: &CompleteRequest,
        now: i64,
    ) -> Result<(JobState, bool, String, bool)>;

    /// Hand a job back without spending an attempt (point 6).
    async fn release(
        &self,
        job_id: JobId,
        agent_id: &str,
        token: FencingToken,
        reason: &str,
        now: i64,
    ) -> Result<(JobState, String)>;

    /// End every lease past its deadline (point 5).
    async fn expire_leases(&self, now: i64) -> Result<Expired>;

    /// A restarted agent ends the leases its previous run held: each one that
    /// is still its current lease (same agent and token, running, deadline
    /// not passed) ends as `agent_restarted`, spends an attempt as an expiry
    /// does (retry class `lease_expired`, backoff) and is requeued or
    /// failed; any other is left alone. Reporting twice is harmless.
    async fn abandon(&self, agent_id: &str, leases: &[LeaseRef], now: i64) -> Result<Abandoned>;

    /// Attempts ever ended by their agent's restart report (`agent_restarted`).
    async fn agent_restart_ends(&self) -> Result<i64>;

    /// The earliest lease deadline, if any lease is held.
    async fn next_lease_deadline(&self) -> Result<Option<i64>>;

    /// The running leases of `agent_id` whose job an operator asked to
    /// cancel (read for the cancel notices of its polls, only after a
    /// cancel marked the agent).
    async fn cancelled_leases(&self, agent_id: &str) -> Result<Vec<LeaseRef>>;

    /// The agents holding a running lease whose job an operator asked to
    /// cancel, each once (read at start: the cancel marks of the previous
    /// run were in its memory).
    async fn cancelled_holders(&self) -> Result<Vec<String>>;

    /// Whether a queued job of one of `groups` is ready to run at `now`
    /// (read after a woken poll took nothing, or all it could: while such
    /// work remains, the poll hands its wake on; lease lifecycle point 7).
    async fn ready_in(&self, groups: &[String], now: i64) -> Result<bool>;
}

#[cfg(test)]
mod tests;
