//! Jobs: what an operator submits, and how a job and its attempts look.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::restore::RestoreSpec;
use crate::schedule::RunId;
use crate::session::Session;
use crate::{FencingToken, JobId};

/// The kind of a job, without its spec. Agents advertise the kinds they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// An allow-listed program on the agent host.
    Command,
    /// A stored procedure on a named connection.
    Procedure,
    /// A SQL batch on a named connection.
    Sql,
    /// A consistent dump / native backup of a database.
    Dump,
    /// Does nothing (optionally waits): probes, drills and benchmarks.
    Noop,
    /// A query's result set written to a compressed CSV / JSON Lines file.
    Export,
    /// Restores a dump / native backup into a database.
    Restore,
    /// Copies a file on the agent to an object store.
    Upload,
}

impl JobKind {
    /// Every kind, in a stable order.
    pub const ALL: [JobKind; 8] = [
        JobKind::Command,
        JobKind::Procedure,
        JobKind::Sql,
        JobKind::Dump,
        JobKind::Noop,
        JobKind::Export,
        JobKind::Restore,
        JobKind::Upload,
    ];

    /// The wire name (`"command"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Command => "command",
            JobKind::Procedure => "procedure",
            JobKind::Sql => "sql",
            JobKind::Dump => "dump",
            JobKind::Noop => "noop",
            JobKind::Export => "export",
            JobKind::Restore => "restore",
            JobKind::Upload => "upload",
        }
    }

    /// Parse a wire name.
    pub fn parse(s: &str) -> Option<JobKind> {
        JobKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl std::fmt::Display for JobKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What to run. Tagged by `kind` on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum JobSpec {
    /// Run an allow-listed program.
    Command(CommandSpec),
    /// Call a stored procedure.
    Procedure(ProcedureSpec),
    /// Run a SQL batch.
    Sql(SqlSpec),
    /// Dump a database.
    Dump(DumpSpec),
    /// Do nothing, optionally for a while.
    Noop(NoopSpec),
    /// Export a query's result set to a file.
    Export(crate::export::ExportSpec),
    /// Restore a dump / native backup.
    Restore(RestoreSpec),
    /// Copy a file to an object store.
    Upload(crate::upload::UploadSpec),
}

impl JobSpec {
    /// The kind of this spec.
    pub fn kind(&self) -> JobKind {
        match self {
            JobSpec::Command(_) => JobKind::Command,
            JobSpec::Procedure(_) => JobKind::Procedure,
            JobSpec::Sql(_) => JobKind::Sql,
            JobSpec::Dump(_) => JobKind::Dump,
            JobSpec::Noop(_) => JobKind::Noop,
            JobSpec::Export(_) => JobKind::Export,
            JobSpec::Restore(_) => JobKind::Restore,
            JobSpec::Upload(_) => JobKind::Upload,
        }
    }

    /// The session settings of a procedure or sql job (`None` for other kinds).
    pub fn session(&self) -> Option<&Session> {
        match self {
            JobSpec::Procedure(p) => Some(&p.session),
            JobSpec::Sql(s) => Some(&s.session),
            _ => None,
        }
    }

    /// The agent-side connection this job needs, if any.
    pub fn connection(&self) -> Option<&str> {
        match self {
            JobSpec::Procedure(p) => Some(&p.connection),
            JobSpec::Sql(s) => Some(&s.connection),
            JobSpec::Dump(d) => Some(&d.connection),
            JobSpec::Export(e) => Some(&e.connection),
            JobSpec::Restore(r) => Some(&r.connection),
            JobSpec::Command(_) | JobSpec::Noop(_) | JobSpec::Upload(_) => None,
        }
    }

    /// The agent-side object store this job needs, if any.
    pub fn store(&self) -> Option<&str> {
        match self {
            JobSpec::Upload(u) => Some(&u.store),
            JobSpec::Restore(r) => r.source.store.as_deref(),
            _ => None,
        }
    }

    /// Where [`JobSpec::store`] is in the submission (a refusal names it).
    pub fn store_field(&self) -> &'static str {
        match self {
            JobSpec::Restore(_) => "spec.source.store",
            _ => "spec.store",
        }
    }
}

/// An allow-listed program with its arguments.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CommandSpec {
    /// Program name or path; must match the agent's allow-list.
    #[cfg_attr(feature = "openapi", schema(pattern = r"\S"))]
    pub program: String,
    /// Arguments, passed as-is (no shell).
    #[serde(default)]
    pub args: Vec<String>,
    /// Extra environment variables.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Working directory on the agent host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
}

/// Direction of a procedure parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ParamMode {
    /// Input only.
    #[default]
    In,
    /// Output only.
    Out,
    /// Input and output.
    InOut,
}

/// A typed parameter value. Values are always bound, never spliced into SQL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", content = "value", rename_all = "snake_case")]
pub enum ParamValue {
    /// SQL NULL.
    Null,
    /// Boolean / BIT.
    Bool(bool),
    /// 64-bit integer.
    Int(i64),
    /// Exact decimal, as text (`"12.50"`).
    Decimal(String),
    /// Floating point.
    Float(f64),
    /// Text.
    String(String),
    /// Bytes, base64-encoded.
    Bytes(String),
    /// Date, `YYYY-MM-DD`.
    Date(String),
    /// Date and time, ISO 8601.
    DateTime(String),
}

/// One procedure parameter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ProcedureParam {
    /// Parameter name (validated by the agent).
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[A-Za-z0-9_]{1,127}$"))]
    pub name: String,
    /// In, out or in/out.
    #[serde(default)]
    pub mode: ParamMode,
    /// Value for IN/INOUT parameters (required); for OUT ones optional, the
    /// type hint of the value read back when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<ParamValue>,
    /// The SQL type to bind the value as (SQL Server), e.g. `int`,
    /// `decimal(10,2)`, `nvarchar(max)`; without it the value's own type
    /// decides. Checked against an allow-list by the controller and the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sql_type: Option<String>,
}

/// A stored procedure call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ProcedureSpec {
    /// Connection name configured on the agent host.
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[A-Za-z0-9_.\-]{1,128}$"))]
    pub connection: String,
    /// Procedure name, optionally schema-qualified; validated and quoted.
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = r"^[A-Za-z0-9_@#$]{1,128}(\.[A-Za-z0-9_@#$]{1,128}){0,2}$")
    )]
    pub procedure: String,
    /// Parameters in call order.
    #[serde(default)]
    pub params: Vec<ProcedureParam>,
    /// Run inside a transaction with the run ledger.
    #[serde(default)]
    pub exactly_once: bool,
    /// Session settings applied before the call (see [`crate::session`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub session: Session,
}

/// A SQL batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SqlSpec {
    /// Connection name configured on the agent host.
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[A-Za-z0-9_.\-]{1,128}$"))]
    pub connection: String,
    /// The batch.
    #[cfg_attr(feature = "openapi", schema(pattern = r"\S"))]
    pub sql: String,
    /// Run inside a transaction with the run ledger.
    #[serde(default)]
    pub exactly_once: bool,
    /// Session settings applied before the batch (see [`crate::session`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub session: Session,
}

/// A database dump.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct DumpSpec {
    /// Connection name configured on the agent host.
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[A-Za-z0-9_.\-]{1,128}$"))]
    pub connection: String,
    /// Database to dump (validated by the agent).
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[A-Za-z0-9_.\-]{1,128}$"))]
    pub database: String,
    /// After the dump, restore it into a scratch database and compare checksums.
    #[serde(default)]
    pub verify: bool,
}

/// A job that does nothing but optionally wait.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NoopSpec {
    /// Milliseconds to wait before succeeding.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(maximum = 86400000))]
    pub sleep_ms: u64,
}

/// Which attempt endings may be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum RetryOn {
    /// The job itself failed with a retryable error (non-zero exit, deadlock, ...).
    Error,
    /// The job ran past its execution timeout.
    Timeout,
    /// The lease ran out (agent died, froze or was cut off).
    LeaseExpired,
}

/// Retry policy: exponential backoff with jitter, bounded attempts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields, default)]
pub struct RetryPolicy {
    /// Attempts allowed in total (1 = no retry).
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 100))]
    pub max_attempts: u32,
    /// Delay before the first retry.
    #[cfg_attr(feature = "openapi", schema(maximum = 604800000))]
    pub initial_backoff_ms: u64,
    /// Upper bound of the delay.
    #[cfg_attr(feature = "openapi", schema(maximum = 604800000))]
    pub max_backoff_ms: u64,
    /// Growth factor per attempt.
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 10))]
    pub multiplier: f64,
    /// Fraction of the delay that is randomised (0 = none, 1 = full jitter).
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 1))]
    pub jitter: f64,
    /// Which attempt endings are retried.
    #[cfg_attr(feature = "openapi", schema(max_items = 64))]
    pub retry_on: Vec<RetryOn>,
    /// Database error codes that are retryable (`1213` deadlock and `1205`
    /// lock wait timeout on MySQL; `1205` deadlock on SQL Server). Other
    /// server errors fail the job at once.
    #[cfg_attr(feature = "openapi", schema(max_items = 64))]
    pub retry_codes: Vec<i64>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 3,
            initial_backoff_ms: 1_000,
            max_backoff_ms: 60_000,
            multiplier: 2.0,
            jitter: 0.2,
            retry_on: vec![RetryOn::Error, RetryOn::Timeout, RetryOn::LeaseExpired],
            retry_codes: vec![1213, 1205],
        }
    }
}

impl RetryPolicy {
    /// The un-jittered delay before retry number `spent` (1 = after the first attempt).
    pub fn base_delay_ms(&self, spent: u32) -> u64 {
        let exp = spent.saturating_sub(1).min(63) as i32;
        let raw = self.initial_backoff_ms as f64 * self.multiplier.powi(exp);
        raw.min(self.max_backoff_ms as f64).max(0.0) as u64
    }

    /// The delay with jitter applied; `unit` is a uniform sample in `[0, 1)`.
    pub fn delay_ms(&self, spent: u32, unit: f64) -> u64 {
        let base = self.base_delay_ms(spent) as f64;
        let jitter = self.jitter.clamp(0.0, 1.0);
        (base * (1.0 - jitter) + base * jitter * unit.clamp(0.0, 1.0)) as u64
    }
}

/// A job submission.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", schema(example = json!({"group": "nightly", "spec": {"kind": "sql", "connection": "erp", "sql": "CALL billing.close_day()"}, "priority": 5, "retry": {"max_attempts": 3}, "timeout_ms": 600000, "labels": {"team": "billing"}})))]
pub struct JobSubmit {
    /// Worker group that runs the job.
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[A-Za-z0-9_.\-]{1,128}$"))]
    pub group: String,
    /// What to run.
    pub spec: JobSpec,
    /// Higher runs first.
    #[serde(default)]
    pub priority: i32,
    /// Retry policy (defaults apply to missing fields).
    #[serde(default)]
    pub retry: RetryPolicy,
    /// Execution timeout, measured by the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 2592000000.0))]
    pub timeout_ms: Option<u64>,
    /// Lease TTL override (floor 2 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 2000, maximum = 3600000))]
    pub lease_ttl_ms: Option<u64>,
    /// Free-form labels for filtering.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Accept the job although no enrolled agent of `group` advertises its
    /// connection (or none serves the group) yet; without it such a submit
    /// is refused (422). The job waits until an agent that can run it polls.
    #[serde(default, skip_serializing_if = "is_false")]
    pub allow_unplaced: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Job lifecycle states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for an agent (possibly until `not_before`).
    Queued,
    /// Leased to an agent.
    Running,
    /// Finished with success. Terminal.
    Succeeded,
    /// Finished with failure, attempts exhausted or not retryable. Terminal.
    Failed,
    /// Cancelled by an operator. Terminal.
    Cancelled,
}

impl JobState {
    /// Every state.
    pub const ALL: [JobState; 5] = [
        JobState::Queued,
        JobState::Running,
        JobState::Succeeded,
        JobState::Failed,
        JobState::Cancelled,
    ];

    /// Whether no further attempt will happen.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled
        )
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    /// Parse a wire name.
    pub fn parse(s: &str) -> Option<JobState> {
        JobState::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    /// The work succeeded.
    Succeeded,
    /// The work failed.
    Failed,
    /// The work ran past its timeout and was stopped.
    TimedOut,
    /// The work was stopped on an operator's cancel.
    Cancelled,
    /// The lease ran out before a completion arrived.
    LeaseExpired,
    /// The agent handed the job back; no attempt spent.
    Released,
    /// The agent was revoked while holding the lease; no attempt spent.
    Revoked,
    /// The holder restarted (it was killed or crashed) and reported the lease
    /// of its previous run at start; an attempt is spent, as for
    /// [`AttemptOutcome::LeaseExpired`].
    AgentRestarted,
}

impl AttemptOutcome {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Succeeded => "succeeded",
            AttemptOutcome::Failed => "failed",
            AttemptOutcome::TimedOut => "timed_out",
            AttemptOutcome::Cancelled => "cancelled",
            AttemptOutcome::LeaseExpired => "lease_expired",
            AttemptOutcome::Released => "released",
            AttemptOutcome::Revoked => "revoked",
            AttemptOutcome::AgentRestarted => "agent_restarted",
        }
    }

    /// Parse a wire name.
    pub fn parse(s: &str) -> Option<AttemptOutcome> {
        [
            AttemptOutcome::Succeeded,
            AttemptOutcome::Failed,
            AttemptOutcome::TimedOut,
            AttemptOutcome::Cancelled,
            AttemptOutcome::LeaseExpired,
            AttemptOutcome::Released,
            AttemptOutcome::Revoked,
            AttemptOutcome::AgentRestarted,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

impl std::fmt::Display for AttemptOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a captured output stream is carried in a [`JobResult`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum OutputEncoding {
    /// Standard base64 (RFC 4648, padded) of the raw bytes: the output was not
    /// valid UTF-8, or JSON escaping would have made it larger than this.
    Base64,
}

/// What a finished attempt produced.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct JobResult {
    /// Process exit code (command jobs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Captured standard output (bounded: at most the capture limit in bytes
    /// as sent, whatever the encoding).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub stdout: String,
    /// How `stdout` is encoded: absent = the output itself (it was UTF-8);
    /// `base64` = the raw bytes (they were not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdout_encoding: Option<OutputEncoding>,
    /// Captured standard error (bounded like `stdout`).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub stderr: String,
    /// How `stderr` is encoded (as `stdout_encoding`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stderr_encoding: Option<OutputEncoding>,
    /// Whether the capture bound cut the output.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
    /// Kind-specific structured output (result sets, OUT values, manifest).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
}

/// One lease grant of a job and how it went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AttemptView {
    /// 1-based grant number.
    pub number: u32,
    /// Agent that held the lease.
    pub agent_id: String,
    /// Fencing token of the grant.
    pub token: FencingToken,
    /// When the lease was granted.
    pub started_at: DateTime<Utc>,
    /// When the agent's executor started the work: the grant time plus the
    /// delay the agent reported (the answer's network time left out).
    /// Absent until the first heartbeat or the completion, and for attempts
    /// of older agents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running_at: Option<DateTime<Utc>>,
    /// When the attempt ended (completion, expiry, release).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<DateTime<Utc>>,
    /// How it ended; `None` while running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<AttemptOutcome>,
    /// Error message, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Last progress reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<crate::lease::Progress>,
    /// Last log tail reported by heartbeat.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub log_tail: String,
    /// Result, when the agent completed the attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<JobResult>,
}

/// A job as operators see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobView {
    /// Job id.
    pub id: JobId,
    /// Worker group.
    pub group: String,
    /// Kind (also inside `spec`).
    pub kind: JobKind,
    /// What runs.
    pub spec: JobSpec,
    /// Connection the job needs, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection: Option<String>,
    /// Current state.
    pub state: JobState,
    /// Priority.
    pub priority: i32,
    /// Retry policy.
    pub retry: RetryPolicy,
    /// Execution timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Lease TTL.
    pub lease_ttl_ms: u64,
    /// Labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Idempotency key given at submit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// Attempts that counted against `retry.max_attempts`.
    pub attempts_spent: u32,
    /// Not dispatched before this time (backoff).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<DateTime<Utc>>,
    /// An operator asked to cancel; the holder learns it on heartbeat.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cancel_requested: bool,
    /// Current lease holder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_agent: Option<String>,
    /// Submission time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// When it reached a terminal state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    /// Final result (from the deciding attempt).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<JobResult>,
    /// Final or last error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Why the job cannot run now, when the controller can tell (no agent has its kind/connection).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocked_reason: Option<String>,
    /// The schedule that made it (its name), when a schedule did (directly,
    /// or through the pipeline run it fired).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// The nominal time of that schedule's occurrence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nominal_at: Option<DateTime<Utc>>,
    /// The pipeline run it is a step of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<RunId>,
    /// Its step in that run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// Every attempt (on `get`; empty in lists).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attempts: Vec<AttemptView>,
}

/// A job in a list: where it stands, without what can be large (spec
/// arguments, environment, SQL text, parameters, output, result data,
/// attempts). `GET /v1/jobs/{id}` has the whole job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobSummary {
    /// Job id.
    pub id: JobId,
    /// Worker group.
    pub group: String,
    /// Kind.
    pub kind: JobKind,
    /// What runs, cut to [`JobSummary::MAX_TEXT`] characters: the program
    /// (command), procedure (procedure), SQL text (sql) or database (dump).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub what: Option<String>,
    /// Connection the job needs, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection: Option<String>,
    /// Current state.
    pub state: JobState,
    /// Priority.
    pub priority: i32,
    /// Attempts that counted against `max_attempts`.
    pub attempts_spent: u32,
    /// Attempts allowed (`retry.max_attempts`).
    pub max_attempts: u32,
    /// Labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Not dispatched before this time (backoff).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<DateTime<Utc>>,
    /// An operator asked to cancel.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cancel_requested: bool,
    /// Current lease holder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_agent: Option<String>,
    /// Submission time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// When it reached a terminal state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    /// Exit code of the final result (command jobs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Final or last error, cut to [`JobSummary::MAX_TEXT`] characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The schedule that made it (its name), when a schedule did (directly,
    /// or through the pipeline run it fired).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// The nominal time of that schedule's occurrence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nominal_at: Option<DateTime<Utc>>,
    /// The pipeline run it is a step of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<RunId>,
    /// Its step in that run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
}

impl JobSummary {
    /// Longest `what` and `error` in a summary (characters).
    pub const MAX_TEXT: usize = 200;
}

/// A page of jobs, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobList {
    /// The jobs, as summaries.
    pub jobs: Vec<JobSummary>,
    /// Pass as `before` to get the next page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_before: Option<JobId>,
}

/// Most jobs in one batch submission (`POST /v1/jobs/batch`).
pub const MAX_BATCH_JOBS: usize = 1000;

/// `POST /v1/jobs/batch`: several submissions, created all or none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct JobBatchSubmit {
    /// The jobs, each as for `POST /v1/jobs` (1 to [`MAX_BATCH_JOBS`]).
    #[cfg_attr(feature = "openapi", schema(min_items = 1, max_items = 1000))]
    pub jobs: Vec<JobSubmit>,
}

/// The answer to a batch submission: the jobs, in the order submitted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobBatch {
    /// The created (or, for a repeated `Idempotency-Key`, the earlier) jobs.
    pub jobs: Vec<JobView>,
}

#[cfg(test)]
mod tests;
