//! Operator-side job operations: submit (one job or a batch, all or none),
//! get, list, cancel, retry.

use async_trait::async_trait;
use baton_proto::{JobId, JobList, JobState, JobSubmit, JobView};

use super::rows::ts;

use super::Result;

/// A validated submission.
#[derive(Debug, Clone)]
pub struct NewJob {
    /// The request.
    pub submit: JobSubmit,
    /// Lease TTL after defaults.
    pub lease_ttl_ms: u64,
    /// `Idempotency-Key`, if given.
    pub idempotency_key: Option<String>,
    /// Hash of the canonical request, to detect key reuse with another body.
    pub request_hash: String,
    /// The audit row of the call that submits it (status 201), written in
    /// the submit's own transaction when the job is created and the backend
    /// can ([`Submitted::audited`]): the call's answer then waits for one
    /// commit, not two.
    pub audit: Option<super::audit::AuditRecord>,
}

/// Filters for [`JobStore::list_jobs`].
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    /// Only this state.
    pub state: Option<JobState>,
    /// Only this group.
    pub group: Option<String>,
    /// Only this kind.
    pub kind: Option<String>,
    /// Only jobs with this label `(key, value)`.
    pub label: Option<(String, String)>,
    /// Only jobs a schedule of this name made (directly or through its
    /// pipeline runs).
    pub schedule: Option<String>,
    /// Only ids below this (paging).
    pub before: Option<JobId>,
    /// Page size.
    pub limit: u32,
}

impl JobFilter {
    /// The partial index holding the filtered state's jobs and the
    /// listing's state predicate through it, when one holds them
    /// (`jobs_active`: queued, running; `jobs_unhappy`: failed, cancelled).
    /// The predicate names the state as a literal and repeats the index's
    /// WHERE word for word: a bound parameter cannot show a planner that the
    /// index's WHERE holds, and SQLite does not infer it from `state = 'x'`
    /// either. A page of failed jobs had walked every job by id. Succeeded
    /// jobs are most of the table; walking it by id finds them at once.
    pub(crate) fn state_index(&self) -> Option<(&'static str, &'static str)> {
        Some(match self.state? {
            JobState::Queued => (
                "jobs_active",
                "state IN ('queued', 'running') AND state = 'queued'",
            ),
            JobState::Running => (
                "jobs_active",
                "state IN ('queued', 'running') AND state = 'running'",
            ),
            JobState::Failed => (
                "jobs_unhappy",
                "state IN ('failed', 'cancelled') AND state = 'failed'",
            ),
            JobState::Cancelled => (
                "jobs_unhappy",
                "state IN ('failed', 'cancelled') AND state = 'cancelled'",
            ),
            JobState::Succeeded => return None,
        })
    }
}

/// What a submission did.
#[derive(Debug, Clone)]
pub struct Submitted {
    /// The job.
    pub job: JobView,
    /// False when an earlier submission with the same idempotency key is returned.
    pub created: bool,
    /// Whether [`NewJob::audit`] was written with the job.
    pub audited: bool,
}

/// A validated batch submission (`POST /v1/jobs/batch`), created all or none.
#[derive(Debug, Clone)]
pub struct NewBatch {
    /// The jobs, in order (their own `idempotency_key` is ignored).
    pub jobs: Vec<NewJob>,
    /// `Idempotency-Key` of the whole batch, if given.
    pub idempotency_key: Option<String>,
    /// Hash of the whole canonical batch.
    pub request_hash: String,
}

/// What a batch submission did.
#[derive(Debug, Clone)]
pub struct BatchSubmitted {
    /// The jobs, in the order submitted.
    pub jobs: Vec<JobView>,
    /// False when an earlier batch with the same idempotency key is returned.
    pub created: bool,
}

/// Jobs as operators see them.
#[async_trait]
pub trait JobStore {
    /// Persist a new job (or return the one an idempotency key already made).
    async fn submit(&self, new: NewJob, now: i64) -> Result<Submitted>;

    /// Persist every job of a batch in one transaction, or none (or return
    /// the jobs an earlier batch with the same idempotency key made).
    ///
    /// The batch's key and hash are stored on its first job; the jobs of one
    /// batch get consecutive ids (one transaction on the single writer), so
    /// a replay returns ids `first .. first + n`.
    async fn submit_batch(&self, batch: NewBatch, now: i64) -> Result<BatchSubmitted>;

    /// A job with every attempt.
    async fn get_job(&self, id: JobId) -> Result<JobView>;

    /// Jobs matching a filter, newest first, as summaries: only the columns
    /// a summary needs are read (never a whole spec or result), and long
    /// texts are cut in the query.
    async fn list_jobs(&self, f: &JobFilter) -> Result<JobList>;

    /// Cancel: a queued job ends at once; a running one is asked to stop
    /// (its holder learns it on the next heartbeat). Returns the group to wake.
    async fn cancel(&self, id: JobId, now: i64) -> Result<JobView>;

    /// Retry a failed or cancelled job with a fresh attempt budget.
    async fn retry(&self, id: JobId, now: i64) -> Result<JobView>;

    /// Jobs by group and state (`/metrics`): every queued and running job
    /// (with the oldest queued job ready at `now`), and the jobs that
    /// finished after `finished_since`. One grouped read that only walks
    /// the state and finished-time indexes, so its cost follows the active
    /// and recently finished jobs, not everything retention keeps.
    async fn queue_figures(&self, now: i64, finished_since: i64) -> Result<Vec<QueueFigure>>;
}

/// The jobs of one group in one state ([`JobStore::queue_figures`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueFigure {
    /// Worker group.
    pub group: String,
    /// State.
    pub state: JobState,
    /// How many (of a finished state: those that finished after
    /// `finished_since`).
    pub count: u64,
    /// Queued only: the earliest `not_before` (submit or end of backoff)
    /// of its jobs ready to run at `now`; `None` when none is ready.
    pub oldest_ready_at: Option<i64>,
}

/// The grouped read of [`JobStore::queue_figures`] (`now`, `since`: the
/// backend's placeholders of the two parameters); the same text on every
/// backend but for them. SQLite walks `jobs_active` and `jobs_finished`
/// (MULTI-INDEX OR), PostgreSQL ORs their bitmaps.
pub(crate) fn queue_figures_sql(now: &str, since: &str) -> String {
    format!(
        "SELECT grp, state, COUNT(*), MIN(CASE WHEN state = 'queued' AND not_before <= {now} THEN not_before END)
         FROM jobs WHERE state IN ('queued', 'running') OR finished_at > {since}
         GROUP BY grp, state"
    )
}

/// [`QueueFigure`]s from the rows of [`queue_figures_sql`].
pub(crate) fn queue_figures_of(
    rows: Vec<(String, String, i64, Option<i64>)>,
) -> Result<Vec<QueueFigure>> {
    rows.into_iter()
        .map(|(group, state, count, oldest_ready_at)| {
            Ok(QueueFigure {
                state: JobState::parse(&state)
                    .ok_or_else(|| super::Error::Corrupt(format!("jobs.state {state}")))?,
                group,
                count: count.max(0) as u64,
                oldest_ready_at,
            })
        })
        .collect()
}

/// The view of a job just inserted as queued (what reading its row back gives).
pub(crate) fn queued_view(
    id: JobId,
    s: &JobSubmit,
    ttl: u64,
    key: Option<&str>,
    now: i64,
) -> JobView {
    JobView {
        id,
        group: s.group.clone(),
        kind: s.spec.kind(),
        spec: s.spec.clone(),
        connection: s.spec.connection().map(str::to_owned),
        state: JobState::Queued,
        priority: s.priority,
        retry: s.retry.clone(),
        timeout_ms: s.timeout_ms,
        lease_ttl_ms: ttl,
        labels: s.labels.clone(),
        idempotency_key: key.map(str::to_owned),
        attempts_spent: 0,
        not_before: None,
        cancel_requested: false,
        lease_agent: None,
        created_at: ts(now),
        updated_at: ts(now),
        finished_at: None,
        result: None,
        error: None,
        blocked_reason: None,
        schedule: None,
        nominal_at: None,
        run_id: None,
        step: None,
        attempts: Vec::new(),
    }
}
