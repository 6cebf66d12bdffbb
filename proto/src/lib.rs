//! Baton wire types, shared by the controller, the agent and `batonctl`.
//!
//! This crate holds serde types and pure helpers only: no I/O, no clocks, no
//! sockets. Everything that crosses the wire between an agent and the
//! controller, or between an operator and the controller, is defined here, so
//! the three programs cannot drift apart.
//!
//! # Layout
//! - [`job`]: job specs (one variant per job kind), retry policy, job and
//!   attempt views, submit/list bodies.
//! - [`lease`]: the agent side of the protocol: poll, grant, heartbeat,
//!   complete, release.
//! - [`agent`]: what an agent advertises (capabilities) and how operators see it.
//! - [`auth`]: enrollment, agent secrets, operator tokens and roles, audit entries.
//! - [`error`]: the JSON error body and its codes.
//! - [`schedule`]: schedules (trigger, overlap and catch-up policy, job
//!   template), their occurrences and previews.
//! - [`pipeline`]: pipelines (a DAG of steps), their runs and step states.
//! - [`drill`]: failover drills: start request, fault directive, report and timeline.
//! - [`config`]: locating a key in a TOML source for config errors (pure).
//! - [`mod@env`]: the environment variables of each program (disjoint tables) and the
//!   secret-file mode check (pure).
//! - [`sql_type`]: the allow-list of a procedure parameter's `sql_type`.
//! - [`param`]: procedure names and parameter values read by the connection's
//!   engine (the agent binds with it, the controller checks submissions with it).
//! - [`base64`]: the base64 of `bytes` values.
//! - [`session`]: the allow-list of a job's session settings per engine.
//! - [`spec_errors`]: naming the field at fault inside a job spec.
//! - [`upload`]: the `upload` kind's spec and its key template (check, render).
//! - [`time`]: the one time format of manifests and results (RFC 3339, ms, `Z`).
//! - `tls_hint` (feature `tls-hint`): why a connection to the controller
//!   failed at the scheme or TLS level, and the hint to print (pure: it reads
//!   an error chain).
#![forbid(unsafe_code)]

pub mod agent;
pub mod auth;
pub mod base64;
pub mod config;
pub mod drill;
pub mod env;
pub mod error;
pub mod export;
pub mod job;
pub mod lease;
pub mod notify;
pub mod param;
pub mod pipeline;
pub mod restore;
pub mod schedule;
pub mod session;
pub mod spec_errors;
pub mod sql_type;
pub mod time;
#[cfg(feature = "tls-hint")]
pub mod tls_hint;
pub mod upload;

pub use agent::{
    AgentDrain, AgentList, AgentView, Capabilities, ConnectionInfo, HostMetrics, LeaseHeld,
};
pub use error::{ErrorBody, ErrorCode, ErrorDetail};
pub use export::{ExportCompression, ExportFormat, ExportSpec};
pub use job::{
    AttemptOutcome, AttemptView, CommandSpec, DumpSpec, JobKind, JobList, JobResult, JobSpec,
    JobState, JobSubmit, JobSummary, JobView, NoopSpec, OutputEncoding, ParamMode, ParamValue,
    ProcedureParam, ProcedureSpec, RetryOn, RetryPolicy, SqlSpec,
};
pub use lease::{
    AbandonOutcome, AbandonRequest, AbandonResponse, AbandonResult, CompleteRequest,
    CompleteResponse, Completion, Grant, HeartbeatRequest, HeartbeatResponse, LeaseRef,
    PollRequest, PollResponse, Progress, ReleaseRequest, ReleaseResponse,
};
pub use restore::{Origin as RestoreOrigin, RestoreSource, RestoreSpec};
pub use session::{Session, SessionValue};
pub use sql_type::SqlType;

/// The API version this crate describes; every route lives under `/v1`.
pub const API_VERSION: &str = "v1";

/// Optional header naming the calling agent; when sent it must match the
/// identity of the agent secret.
pub const AGENT_ID_HEADER: &str = "X-Baton-Agent";

/// Default controller port.
pub const DEFAULT_PORT: u16 = 8420;

/// Header that makes a job submission idempotent.
pub const IDEMPOTENCY_KEY_HEADER: &str = "Idempotency-Key";

/// Response header of the job and agent views: the controller's clock when
/// it answered, in Unix milliseconds. Clients show the views' times relative
/// to it, not to their own clock, so a skew between the two shows nothing
/// in the future and no inflated age.
pub const NOW_HEADER: &str = "Baton-Now";

/// Job identifier, assigned by the controller.
pub type JobId = i64;

/// Fencing token: strictly increasing per job, one per lease grant.
pub type FencingToken = i64;

/// Lease TTL defaults and bounds (milliseconds).
pub mod limits {
    /// Default lease TTL.
    pub const DEFAULT_LEASE_TTL_MS: u64 = 15_000;
    /// No lease may be shorter than this.
    pub const MIN_LEASE_TTL_MS: u64 = 2_000;
    /// No lease may be longer than this (one hour).
    pub const MAX_LEASE_TTL_MS: u64 = 3_600_000;
    /// Default long-poll hold.
    pub const DEFAULT_POLL_HOLD_MS: u64 = 25_000;
    /// Upper bound of attempts an operator may ask for.
    pub const MAX_ATTEMPTS: u32 = 100;
    /// Longest group, connection or label name.
    pub const MAX_NAME_LEN: usize = 128;
    /// Deepest nesting of arrays and objects in a completion's
    /// `result.data` (clients parsing it must never hit a recursion limit).
    pub const MAX_DATA_DEPTH: usize = 32;

    /// Whether `value` nests at most `max` levels of arrays and objects
    /// (iterative: a hostile value cannot exhaust the stack).
    pub fn nesting_at_most(value: &serde_json::Value, max: usize) -> bool {
        let mut stack = vec![(value, 0usize)];
        while let Some((v, depth)) = stack.pop() {
            let children: Box<dyn Iterator<Item = &serde_json::Value>> = match v {
                serde_json::Value::Array(a) => Box::new(a.iter()),
                serde_json::Value::Object(o) => Box::new(o.values()),
                _ => continue,
            };
            if depth + 1 > max {
                return false;
            }
            stack.extend(children.map(|c| (c, depth + 1)));
        }
        true
    }
}

/// Check a group, connection or agent name: 1..=128 chars of `[A-Za-z0-9_.-]`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= limits::MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// A percentage on the wire, clamped to 0–100 (a metric or a progress
/// figure slightly out of range must not make a poll or heartbeat fail).
/// Without this, JSON numbers beyond `f32` became infinity, which
/// serializes as `null` (found by `tests/tests/fuzz.rs`).
pub(crate) mod percent;

#[cfg(test)]
pub(crate) mod roundtrip;

#[cfg(test)]
mod tests;
