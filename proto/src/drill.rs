//! Failover drills: the operator's request, the fault directive the
//! controller hands the lease holder, and the stored report with its timeline.
//!
//! A drill runs its own job on a worker group. When the job is running, the
//! controller answers the holder's next heartbeat with a [`Fault`]; the agent
//! acknowledges it with `POST /v1/jobs/{id}/fault-ack` ([`FaultAck`]) and then
//! simulates the fault. The controller records a timeline of [`DrillEvent`]s
//! and, once the job has ended, a [`DrillReport`].

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::job::JobSubmit;
use crate::{FencingToken, JobId};

/// Drill identifier, assigned by the controller.
pub type DrillId = i64;

/// How the lease holder fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum DrillMethod {
    /// Abandon the job as if killed: stop its work, stop renewing, never
    /// complete it. Its slot stays taken for the fault's duration (the
    /// "restart time"); the process keeps polling with its other slots.
    Crash,
    /// Stop all traffic to the controller (polls, heartbeats, completions)
    /// for the duration, then resume; the lease keeper self-fences.
    Freeze,
    /// Every controller call fails as if the network were cut, for the
    /// duration; database access is untouched; the lease keeper self-fences.
    Partition,
    /// The controller replica serving the chosen agent ([`DrillStart::agent`])
    /// crashes (aborts) when that agent's heartbeat for the drill's job
    /// reaches it; the agent must go on through another replica. Only on a
    /// controller with `[drills] allow_controller_crash = true`.
    ControllerCrash,
}

impl DrillMethod {
    /// Every method.
    pub const ALL: [DrillMethod; 4] = [
        DrillMethod::Crash,
        DrillMethod::Freeze,
        DrillMethod::Partition,
        DrillMethod::ControllerCrash,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            DrillMethod::Crash => "crash",
            DrillMethod::Freeze => "freeze",
            DrillMethod::Partition => "partition",
            DrillMethod::ControllerCrash => "controller_crash",
        }
    }

    /// Parse the wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == s)
    }
}

impl std::fmt::Display for DrillMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The fault directive in a heartbeat answer (`HeartbeatResponse.fault`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Fault {
    /// The drill that asks for it.
    pub drill_id: DrillId,
    /// What to simulate.
    pub method: DrillMethod,
    /// How long (freeze/partition: the outage; crash: how long the slot stays taken).
    pub duration_ms: u64,
}

/// `POST /v1/jobs/{id}/fault-ack`: the holder took the fault directive and
/// simulates it from now on. Sent once, right before the fault begins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct FaultAck {
    /// Fencing token of the grant that got the directive.
    pub token: FencingToken,
    /// The drill named in the directive.
    pub drill_id: DrillId,
}

/// Answer to a fault acknowledgement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FaultAckResponse {
    /// False when it had been recorded already (a repeated ack).
    pub recorded: bool,
}

/// `POST /v1/drills`: start a drill.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", schema(example = json!({"group": "nightly", "method": "crash", "rto_ms": 60000})))]
pub struct DrillStart {
    /// Worker group to drill.
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[A-Za-z0-9_.\-]{1,128}$"))]
    pub group: String,
    /// The fault.
    pub method: DrillMethod,
    /// Fault duration; must exceed the lease TTL (default: twice the TTL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(maximum = 3600000))]
    pub duration_ms: Option<u64>,
    /// The job to run (a template of that group); default: a built-in probe
    /// (a `noop` job sleeping two TTLs, so it still works when the holder self-fences).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<JobSubmit>,
    /// Recovery time objective: the takeover (fault → re-grant) must not take longer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 86400000))]
    pub rto_ms: Option<u64>,
    /// Lease TTL of the drill's job (overrides the template's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 2000, maximum = 3600000))]
    pub lease_ttl_ms: Option<u64>,
    /// `controller_crash` only (and required there): the agent whose
    /// controller replica crashes; the drill's job must run on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
}

/// Where a drill stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum DrillState {
    /// The drill's job has not ended yet.
    Running,
    /// The job failed over and finished within the RTO.
    Passed,
    /// The drill ran but missed its target (see the report's reasons).
    Failed,
    /// The drill could not be carried out (fault never delivered, gave up, …).
    Error,
}

impl DrillState {
    /// Every state.
    pub const ALL: [DrillState; 4] = [
        DrillState::Running,
        DrillState::Passed,
        DrillState::Failed,
        DrillState::Error,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            DrillState::Running => "running",
            DrillState::Passed => "passed",
            DrillState::Failed => "failed",
            DrillState::Error => "error",
        }
    }

    /// Parse the wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == s)
    }
}

impl std::fmt::Display for DrillState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happened, in timeline order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum DrillEventKind {
    /// The drill and its job were created.
    Started,
    /// The job was first granted (`agent` = the holder).
    JobGranted,
    /// The controller put the fault into the holder's heartbeat answer.
    FaultSent,
    /// The holder acknowledged the fault: it is simulated from now on.
    FaultInjected,
    /// The holder's lease ran out on the controller.
    LeaseExpired,
    /// An attempt ended otherwise (released, failed, revoked, …): `detail`.
    AttemptEnded,
    /// The job was granted again (`agent` = the new holder).
    JobRegranted,
    /// The job reached a terminal state (`detail` = the state).
    JobFinished,
    /// `controller_crash`: the agent was answered by another replica
    /// (`detail` = how long after it lost the crashed one, in ms).
    AgentFailover,
    /// The drill's verdict (`detail` = passed/failed/error and why).
    Verdict,
}

impl DrillEventKind {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            DrillEventKind::Started => "started",
            DrillEventKind::JobGranted => "job_granted",
            DrillEventKind::FaultSent => "fault_sent",
            DrillEventKind::FaultInjected => "fault_injected",
            DrillEventKind::LeaseExpired => "lease_expired",
            DrillEventKind::AttemptEnded => "attempt_ended",
            DrillEventKind::JobRegranted => "job_regranted",
            DrillEventKind::JobFinished => "job_finished",
            DrillEventKind::AgentFailover => "agent_failover",
            DrillEventKind::Verdict => "verdict",
        }
    }

    /// Parse the wire name.
    pub fn parse(s: &str) -> Option<Self> {
        use DrillEventKind::*;
        [
            Started,
            JobGranted,
            FaultSent,
            FaultInjected,
            LeaseExpired,
            AttemptEnded,
            JobRegranted,
            JobFinished,
            AgentFailover,
            Verdict,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

impl std::fmt::Display for DrillEventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One timeline entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DrillEvent {
    /// When (millisecond precision).
    pub at: DateTime<Utc>,
    /// What.
    pub kind: DrillEventKind,
    /// The agent concerned, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// The attempt concerned, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// More words (outcome, verdict reason).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Whether the job's effect happened exactly once, and on what evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ExactlyOnce {
    /// The evidence shows one effect.
    Proven,
    /// One accepted success, but the job's external effect is not recorded
    /// anywhere the controller can check (no run ledger).
    NotProven,
    /// More than one success, or a success from the faulted lease.
    Violated,
    /// The job did not succeed: nothing to count.
    NoEffect,
}

/// The drill's measurements and verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DrillReport {
    /// The agent that held the job when the fault hit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder: Option<String>,
    /// The agent the job was re-granted to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_holder: Option<String>,
    /// Fault → lease expired on the controller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detection_ms: Option<i64>,
    /// Fault → job re-granted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub takeover_ms: Option<i64>,
    /// Fault → job finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_ms: Option<i64>,
    /// `controller_crash`: how long the agent took from losing the crashed
    /// replica to being answered by another (as the agent measured it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover_ms: Option<i64>,
    /// Grants of the job (attempt rows).
    pub attempts: u32,
    /// The job's final state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_state: Option<crate::job::JobState>,
    /// Whether the effect happened exactly once.
    pub exactly_once: ExactlyOnce,
    /// The evidence behind `exactly_once`, in words.
    pub exactly_once_evidence: String,
    /// The RTO target.
    pub rto_ms: u64,
    /// Takeover within the RTO and the job succeeded.
    pub passed: bool,
    /// Why the drill failed or could not run (empty when it passed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
}

/// A drill as operators see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DrillView {
    /// Drill id.
    pub id: DrillId,
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
    /// The drill's own job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<JobId>,
    /// Where it stands.
    pub state: DrillState,
    /// Who started it (`token:<name>`).
    pub created_by: String,
    /// When it started.
    pub created_at: DateTime<Utc>,
    /// When it got its verdict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    /// The report, once finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<DrillReport>,
    /// The timeline (only in `GET /v1/drills/{id}`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<DrillEvent>,
}

/// `GET /v1/drills`: newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DrillList {
    /// The drills.
    pub drills: Vec<DrillView>,
}

#[cfg(test)]
mod tests;
