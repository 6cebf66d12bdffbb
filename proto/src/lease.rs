//! The agent side of the protocol: poll, grant, heartbeat, complete, release.
//!
//! Every call that changes a job carries the fencing token of the grant; a
//! stale token is answered with `409` and code `lease_lost`.

use serde::{Deserialize, Serialize};

use crate::agent::{Capabilities, HostMetrics};
use crate::job::{JobResult, JobSpec};
use crate::{FencingToken, JobId};

/// `POST /v1/agents/{id}/poll`: ask for work, holding the request until some arrives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PollRequest {
    /// Worker groups this agent serves.
    pub groups: Vec<String>,
    /// How many jobs it can start now (0 = just a presence heartbeat).
    pub free_slots: u32,
    /// What it can run.
    pub capabilities: Capabilities,
    /// Agent version.
    pub version: String,
    /// Operating system, e.g. `linux`.
    pub os: String,
    /// Host metrics, when the agent collects them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<HostMetrics>,
    /// Hold at most this long (the controller caps it with its own limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_ms: Option<u64>,
    /// The leases the agent holds whose work runs and has not been asked to
    /// stop: when an operator cancels one of them, the poll is answered at
    /// once with a notice in [`PollResponse::cancels`]. With `free_slots: 0`
    /// the poll is held for these notices only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub leases: Vec<LeaseRef>,
    /// How long the agent's last failover took (ms): from losing the
    /// controller that answered to being answered by another. Sent until a
    /// poll or heartbeat carrying it is answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover_ms: Option<u64>,
    /// Completions of the agent's jobs carried by this poll (at most
    /// [`BatchCompleteRequest::MAX`]): each is checked and recorded as
    /// `POST /v1/agents/{id}/complete` would, and answered in
    /// [`PollResponse::completed`], in order. Such a poll is held like
    /// any other (answered when work comes for it or the hold ends), so a
    /// job's completion and the agent's next grant are one round trip; one
    /// with a refused completion is answered at once.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub completions: Vec<BatchCompleteItem>,
}

/// One lease: a job and the fencing token of its grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct LeaseRef {
    /// Job id.
    pub job_id: JobId,
    /// Fencing token of the grant.
    pub token: FencingToken,
}

/// A job handed to an agent under a lease.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Grant {
    /// Job id.
    pub job_id: JobId,
    /// 1-based grant number (the attempt).
    pub attempt: u32,
    /// Fencing token: carry it on every call about this job.
    pub token: FencingToken,
    /// Lease TTL: renew well before it runs out; stop the work when it has.
    pub lease_ttl_ms: u64,
    /// How long the controller held the poll before granting. The lease began
    /// no earlier than `poll sent + held_ms` on the agent's clock, so the agent
    /// may count its first deadline from there (never comparing clocks).
    pub held_ms: u64,
    /// Execution timeout, measured by the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Worker group the job was submitted to.
    pub group: String,
    /// What to run.
    pub spec: JobSpec,
    /// Database error codes the job's retry policy retries; the agent marks
    /// other server errors as not retryable.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retry_codes: Vec<i64>,
}

/// Answer to a poll: zero or more grants (zero when the hold ran out).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PollResponse {
    /// Jobs granted to the caller.
    pub grants: Vec<Grant>,
    /// Poll again after at least this long (set when the agent should slow down).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
    /// An operator drained this agent: it gets no new work until resumed;
    /// the jobs it runs go on to their end.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub drain: bool,
    /// Cancel notices: leases named in the poll's `leases` that an operator
    /// cancelled. The holder stops that work and completes it `cancelled`,
    /// exactly as for a heartbeat's `cancel_requested` (the token is checked).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cancels: Vec<LeaseRef>,
    /// One result per completion the poll carried
    /// ([`PollRequest::completions`]), in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub completed: Vec<BatchCompleteResult>,
}

/// Progress of a running job.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct Progress {
    /// Percent done, when known.
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::percent::opt"
    )]
    pub percent: Option<f32>,
    /// What the job is doing now.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// `POST /v1/jobs/{id}/heartbeat`: renew the lease.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct HeartbeatRequest {
    /// Fencing token of the grant.
    pub token: FencingToken,
    /// Progress, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
    /// The last lines of output (bounded by the controller).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub log_tail: String,
    /// As [`PollRequest::failover_ms`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover_ms: Option<u64>,
    /// Milliseconds from the agent receiving the grant to its executor
    /// starting the work, on the agent's monotonic clock (the controller
    /// records the attempt's `running_at` as its grant time plus this; the
    /// first report counts). Older agents leave it out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_after_ms: Option<u64>,
}

/// Answer to a heartbeat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HeartbeatResponse {
    /// The lease now runs this long from when the agent sent the heartbeat.
    pub lease_ttl_ms: u64,
    /// An operator asked to cancel: stop the work and complete as `cancelled`.
    pub cancel_requested: bool,
    /// A failover drill asks the holder to simulate this fault (agents that
    /// do not know the field ignore it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<crate::drill::Fault>,
}

/// How the agent finished a grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Completion {
    /// The work succeeded.
    Succeeded,
    /// The work failed; `retryable` says whether another attempt could help.
    Failed {
        /// Whether the retry policy may try again.
        retryable: bool,
    },
    /// The work ran past its timeout and was stopped.
    TimedOut,
    /// The work was stopped because the operator cancelled it.
    Cancelled,
}

/// `POST /v1/jobs/{id}/complete`: report the end of a grant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CompleteRequest {
    /// Fencing token of the grant.
    pub token: FencingToken,
    /// How it ended.
    pub completion: Completion,
    /// What it produced.
    #[serde(default)]
    pub result: JobResult,
    /// Error message, for failures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Milliseconds from the agent receiving the grant to its executor
    /// starting the work, on the agent's monotonic clock (the controller
    /// records the attempt's `running_at` as its grant time plus this; the
    /// first report counts). Older agents leave it out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_after_ms: Option<u64>,
}

/// Answer to a completion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CompleteResponse {
    /// The job's state after the completion.
    pub state: crate::job::JobState,
    /// True when this completion had already been recorded (a redelivery).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
}

/// One completion of `POST /v1/agents/{id}/complete`: the job and the body
/// `POST /v1/jobs/{job_id}/complete` would carry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct BatchCompleteItem {
    /// The job it completes.
    pub job_id: JobId,
    /// Fencing token of the grant.
    pub token: FencingToken,
    /// How it ended.
    pub completion: Completion,
    /// What it produced.
    #[serde(default)]
    pub result: JobResult,
    /// Error message, for failures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Milliseconds from the agent receiving the grant to its executor
    /// starting the work, on the agent's monotonic clock (the controller
    /// records the attempt's `running_at` as its grant time plus this; the
    /// first report counts). Older agents leave it out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_after_ms: Option<u64>,
}

impl BatchCompleteItem {
    /// The item for `job_id` with the body of a single completion.
    pub fn new(job_id: JobId, req: CompleteRequest) -> Self {
        BatchCompleteItem {
            job_id,
            token: req.token,
            completion: req.completion,
            result: req.result,
            error: req.error,
            started_after_ms: req.started_after_ms,
        }
    }

    /// The body of the single completion this item stands for.
    pub fn request(&self) -> CompleteRequest {
        CompleteRequest {
            token: self.token,
            completion: self.completion,
            result: self.result.clone(),
            error: self.error.clone(),
            started_after_ms: self.started_after_ms,
        }
    }
}

/// `POST /v1/agents/{id}/complete`: report several ends of grants at once
/// (1 to [`BatchCompleteRequest::MAX`] items).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct BatchCompleteRequest {
    /// The completions, each checked and recorded on its own.
    pub completions: Vec<BatchCompleteItem>,
}

impl BatchCompleteRequest {
    /// Most completions in one request.
    pub const MAX: usize = 256;
}

/// The answer for one item of a batch completion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum BatchCompleteResult {
    /// Recorded (or recognised as a redelivery).
    Recorded {
        /// The job.
        job_id: JobId,
        /// The job's state after the completion.
        state: crate::job::JobState,
        /// True when this completion had already been recorded.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        duplicate: bool,
    },
    /// Refused, with the code and message the single call would have answered.
    Refused {
        /// The job.
        job_id: JobId,
        /// Why, e.g. `lease_lost`.
        code: crate::error::ErrorCode,
        /// What went wrong.
        message: String,
    },
}

impl BatchCompleteResult {
    /// The job the result is about.
    pub fn job_id(&self) -> JobId {
        match self {
            BatchCompleteResult::Recorded { job_id, .. }
            | BatchCompleteResult::Refused { job_id, .. } => *job_id,
        }
    }
}

/// Answer to a batch completion: one result per item, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BatchCompleteResponse {
    /// The results.
    pub results: Vec<BatchCompleteResult>,
}

/// `POST /v1/jobs/{id}/release`: hand a job back without spending an attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ReleaseRequest {
    /// Fencing token of the grant.
    pub token: FencingToken,
    /// Why (drain, shutdown, ...).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

/// Answer to a release.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReleaseResponse {
    /// The job's state after the release.
    pub state: crate::job::JobState,
}

/// `POST /v1/agents/{id}/leases/abandon`: a restarted agent ends the leases
/// its previous run held (recorded under its state dir). Each one still
/// current (same agent, same token, deadline not passed) ends as
/// `agent_restarted` and its job is requeued at once; any other is left as
/// it is and answered [`AbandonOutcome::NotCurrent`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AbandonRequest {
    /// The leases (1 to [`AbandonRequest::MAX`]).
    pub leases: Vec<LeaseRef>,
}

impl AbandonRequest {
    /// Most leases in one request.
    pub const MAX: usize = 1024;
}

/// What the controller did with one abandoned lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum AbandonOutcome {
    /// It was the caller's current lease: the attempt ended `agent_restarted`.
    Ended,
    /// Not (or no longer) the caller's current lease — it expired, was
    /// re-granted, completed, or was already abandoned: nothing changed.
    NotCurrent,
}

/// The answer for one abandoned lease.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AbandonResult {
    /// The job.
    pub job_id: JobId,
    /// The token reported.
    pub token: FencingToken,
    /// What happened.
    pub outcome: AbandonOutcome,
    /// The job's state after ending the attempt (with [`AbandonOutcome::Ended`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<crate::job::JobState>,
}

/// Answer to [`AbandonRequest`]: one result per lease, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AbandonResponse {
    /// The results.
    pub results: Vec<AbandonResult>,
}

#[cfg(test)]
mod tests;
