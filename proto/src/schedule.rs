//! Schedules: a job template (or a pipeline) plus a trigger, fired by the
//! controller exactly once per occurrence.
//!
//! Durations on the wire are milliseconds (`*_ms`), as in job submissions;
//! `batonctl` and `batonctl apply` read human forms (`15m`, `1h`) and send
//! these. Times are RFC 3339 UTC. An occurrence is named by its *nominal*
//! time (what the trigger says, before jitter): `(schedule, nominal_at)` is
//! unique in the store.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::JobId;
use crate::job::{JobSpec, JobSubmit, RetryPolicy};

/// Pipeline run identifier (see [`crate::pipeline`]).
pub type RunId = i64;

/// Default `catchup_window_ms`: one hour.
pub const DEFAULT_CATCHUP_WINDOW_MS: u64 = 3_600_000;

/// Default and largest `catchup_cap`: how many missed occurrences
/// `catchup = "all"` runs, oldest first.
pub const DEFAULT_CATCHUP_CAP: u32 = 100;

/// Longest schedule or pipeline name (characters of `[A-Za-z0-9_.-]`).
pub const MAX_NAME_LEN: usize = 64;

/// Check a schedule, pipeline or step name: 1..=64 chars of `[A-Za-z0-9_.-]`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// What to do with an occurrence when the previous run is still going.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Overlap {
    /// Record it as skipped, with the reason (the default).
    #[default]
    Skip,
    /// Let at most one occurrence wait; it starts when the previous ends.
    BufferOne,
    /// Start it anyway: runs may overlap.
    Allow,
    /// Cancel the previous run; this one starts when it has ended.
    CancelPrevious,
}

impl Overlap {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Overlap::Skip => "skip",
            Overlap::BufferOne => "buffer_one",
            Overlap::Allow => "allow",
            Overlap::CancelPrevious => "cancel_previous",
        }
    }

    /// Parse a wire name.
    pub fn parse(s: &str) -> Option<Overlap> {
        [
            Overlap::Skip,
            Overlap::BufferOne,
            Overlap::Allow,
            Overlap::CancelPrevious,
        ]
        .into_iter()
        .find(|o| o.as_str() == s)
    }
}

/// What to do with occurrences that passed while nothing fired them (the
/// controller was down, the schedule was paused).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Catchup {
    /// Run the most recent missed occurrence within the window once (the default).
    #[default]
    Latest,
    /// Run each missed occurrence within the window, oldest first, up to `catchup_cap`.
    All,
    /// Run none of them.
    None,
}

impl Catchup {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Catchup::Latest => "latest",
            Catchup::All => "all",
            Catchup::None => "none",
        }
    }

    /// Parse a wire name.
    pub fn parse(s: &str) -> Option<Catchup> {
        [Catchup::Latest, Catchup::All, Catchup::None]
            .into_iter()
            .find(|o| o.as_str() == s)
    }
}

/// A job submission without its group: what a schedule or a pipeline step
/// submits each time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct JobTemplate {
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
    pub timeout_ms: Option<u64>,
    /// Lease TTL override.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_ttl_ms: Option<u64>,
    /// Labels of every job it makes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

impl JobTemplate {
    /// The submission of this template to `group`.
    pub fn submit(&self, group: &str) -> JobSubmit {
        JobSubmit {
            allow_unplaced: false,
            group: group.to_owned(),
            spec: self.spec.clone(),
            priority: self.priority,
            retry: self.retry.clone(),
            timeout_ms: self.timeout_ms,
            lease_ttl_ms: self.lease_ttl_ms,
            labels: self.labels.clone(),
        }
    }
}

impl From<JobSubmit> for JobTemplate {
    fn from(s: JobSubmit) -> Self {
        JobTemplate {
            spec: s.spec,
            priority: s.priority,
            retry: s.retry,
            timeout_ms: s.timeout_ms,
            lease_ttl_ms: s.lease_ttl_ms,
            labels: s.labels,
        }
    }
}

/// A schedule as an operator defines it (`POST /v1/schedules`,
/// `PUT /v1/schedules/{name}`). Exactly one of `cron` and `every_ms`, and
/// exactly one of `job` and `pipeline`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", schema(example = json!({"name": "close-day", "group": "nightly", "cron": "0 30 2 * * *", "tz": "Europe/Berlin", "overlap": "skip", "job": {"spec": {"kind": "sql", "connection": "erp", "sql": "CALL billing.close_day()"}}})))]
pub struct ScheduleSpec {
    /// Unique name (`[A-Za-z0-9_.-]`, at most 64).
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[A-Za-z0-9_.\-]{1,64}$"))]
    pub name: String,
    /// Worker group of the job; for a pipeline, the group of every step
    /// that names none (instead of the pipeline's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Cron pattern: 5 fields, or 6 with seconds first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    /// IANA time zone of `cron` and `between` (default `UTC`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tz: Option<String>,
    /// Interval trigger: an occurrence every this many milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every_ms: Option<u64>,
    /// Where an interval is anchored (default: `start_at`, else creation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anchor: Option<DateTime<Utc>>,
    /// Active window `HH:MM-HH:MM` in the schedule's zone (may wrap past
    /// midnight); occurrences outside it are skipped and recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub between: Option<String>,
    /// No occurrence before this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_at: Option<DateTime<Utc>>,
    /// No occurrence after this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_at: Option<DateTime<Utc>>,
    /// Deterministic delay after the nominal time, at most this (and always
    /// below the gap to the next occurrence).
    #[serde(default)]
    pub jitter_ms: u64,
    /// When the previous run is still going.
    #[serde(default)]
    pub overlap: Overlap,
    /// Occurrences that passed unfired.
    #[serde(default)]
    pub catchup: Catchup,
    /// How old a missed occurrence may be and still be caught up.
    #[serde(default = "default_catchup_window")]
    pub catchup_window_ms: u64,
    /// Most occurrences `catchup = "all"` runs at once.
    #[serde(default = "default_catchup_cap")]
    pub catchup_cap: u32,
    /// Flag the schedule `stale` when its last success is older than this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert_after_ms: Option<u64>,
    /// The job each occurrence submits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<JobTemplate>,
    /// Or the pipeline each occurrence runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipeline: Option<String>,
    /// Created paused.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
}

fn default_catchup_window() -> u64 {
    DEFAULT_CATCHUP_WINDOW_MS
}

fn default_catchup_cap() -> u32 {
    DEFAULT_CATCHUP_CAP
}

/// How an occurrence came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum OccurrenceTrigger {
    /// Its time came.
    Schedule,
    /// Caught up after it passed unfired.
    Catchup,
    /// `trigger now`.
    Manual,
    /// A backfill of a time range.
    Backfill,
}

impl OccurrenceTrigger {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            OccurrenceTrigger::Schedule => "schedule",
            OccurrenceTrigger::Catchup => "catchup",
            OccurrenceTrigger::Manual => "manual",
            OccurrenceTrigger::Backfill => "backfill",
        }
    }

    /// Parse a wire name.
    pub fn parse(s: &str) -> Option<OccurrenceTrigger> {
        [
            OccurrenceTrigger::Schedule,
            OccurrenceTrigger::Catchup,
            OccurrenceTrigger::Manual,
            OccurrenceTrigger::Backfill,
        ]
        .into_iter()
        .find(|o| o.as_str() == s)
    }
}

/// What became of an occurrence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum OccurrenceState {
    /// Its job (or pipeline run) was created.
    Fired,
    /// Waiting for the previous run to end (`buffer_one`, `cancel_previous`,
    /// a catch-up or backfill in order).
    Pending,
    /// Not run, on purpose: overlap `skip`, outside the active window.
    Skipped,
    /// Not run although it should have: the controller was down, the
    /// schedule was paused, it fell out of the catch-up window.
    Missed,
}

impl OccurrenceState {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            OccurrenceState::Fired => "fired",
            OccurrenceState::Pending => "pending",
            OccurrenceState::Skipped => "skipped",
            OccurrenceState::Missed => "missed",
        }
    }

    /// Parse a wire name.
    pub fn parse(s: &str) -> Option<OccurrenceState> {
        [
            OccurrenceState::Fired,
            OccurrenceState::Pending,
            OccurrenceState::Skipped,
            OccurrenceState::Missed,
        ]
        .into_iter()
        .find(|o| o.as_str() == s)
    }
}

/// One occurrence of a schedule, or a range of them with one fate (`count`
/// > 1: every occurrence from `nominal_at` to `last_nominal_at`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OccurrenceView {
    /// Nominal time (before jitter).
    pub nominal_at: DateTime<Utc>,
    /// The last nominal time of a range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_nominal_at: Option<DateTime<Utc>>,
    /// Occurrences this row stands for (1 unless a range).
    pub count: u32,
    /// How it came to be.
    pub trigger: OccurrenceTrigger,
    /// What became of it.
    pub state: OccurrenceState,
    /// Why it was skipped, missed or is pending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The job it submitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<JobId>,
    /// The pipeline run it started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<RunId>,
    /// The state of that job or run (`queued`, `running`, `succeeded`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// When the controller recorded it (for a fired one: when it fired).
    pub recorded_at: DateTime<Utc>,
}

/// Occurrence totals of a schedule.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OccurrenceCounts {
    /// Fired.
    pub fired: u64,
    /// Skipped on purpose.
    pub skipped: u64,
    /// Missed.
    pub missed: u64,
    /// Waiting for the previous run.
    pub pending: u64,
}

/// A schedule as operators see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ScheduleView {
    /// The definition.
    pub spec: ScheduleSpec,
    /// Paused (no occurrence fires; those that pass are missed).
    pub paused: bool,
    /// The next nominal time, if any (none after `end_at`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_at: Option<DateTime<Utc>>,
    /// When the next occurrence fires (nominal plus jitter).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_fire_at: Option<DateTime<Utc>>,
    /// The most recent occurrence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<OccurrenceView>,
    /// When a run of it last succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success_at: Option<DateTime<Utc>>,
    /// Milliseconds since then, on the controller's clock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success_age_ms: Option<u64>,
    /// The last success is older than `alert_after_ms` (or there was none
    /// for that long since creation).
    pub stale: bool,
    /// Totals.
    pub counts: OccurrenceCounts,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

/// `GET /v1/schedules`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ScheduleList {
    /// By name.
    pub schedules: Vec<ScheduleView>,
}

/// `GET /v1/schedules/{name}/history`: newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OccurrenceList {
    /// The occurrences.
    pub occurrences: Vec<OccurrenceView>,
    /// Pass as `before` (RFC 3339) for the next page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_before: Option<DateTime<Utc>>,
}

/// `POST /v1/schedules/{name}/backfill`: every occurrence with
/// `from <= nominal <= to`, once each, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct BackfillRequest {
    /// Start of the range (inclusive).
    pub from: DateTime<Utc>,
    /// End of the range (inclusive).
    pub to: DateTime<Utc>,
}

/// What a backfill or a trigger did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FireReport {
    /// The occurrences it recorded, oldest first (those that existed
    /// already are left out).
    pub occurrences: Vec<OccurrenceView>,
    /// Occurrences in the range that existed already.
    #[serde(default)]
    pub already: u32,
}

/// One upcoming occurrence (`GET /v1/schedules/{name}/next`, preview).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NextOccurrence {
    /// Nominal time, UTC.
    pub nominal_at: DateTime<Utc>,
    /// The same instant in the schedule's zone, RFC 3339 with its offset.
    pub local: String,
    /// When it fires (nominal plus jitter); for a preview, the nominal time.
    pub fire_at: DateTime<Utc>,
    /// Outside the active window: it would be skipped.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub outside_window: bool,
}

/// Upcoming occurrences.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NextList {
    /// The zone the `local` times are in.
    pub tz: String,
    /// In order.
    pub occurrences: Vec<NextOccurrence>,
}

#[cfg(test)]
mod tests;
