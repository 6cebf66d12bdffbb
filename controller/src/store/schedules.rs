//! Schedules and their occurrences (ARCHITECTURE.md "Schedules and
//! pipelines").
//!
//! The store keeps each schedule's *cursor*: the next nominal time nobody
//! has acted on. The timer (`crate::schedules`) plans what to do with the
//! due occurrences (pure: `crate::trigger`) and hands the plan to
//! [`ScheduleStore::fire`], which applies it in ONE transaction: the
//! occurrence rows (unique per `(schedule, nominal)`), the jobs or pipeline
//! runs of those that fire, and the cursor moved on — only if it still is
//! where the plan started (a conditional update). So a crash at any point
//! keeps all of a firing or none of it, and two controllers on one
//! database cannot both fire an occurrence: the second's update finds the
//! cursor moved and writes nothing.
//!
//! Jobs a schedule or a pipeline makes carry `followup = 1` until the timer
//! has acted on their end ([`ScheduleStore::follow_up`]): the next steps of
//! their run, or the schedule's pending occurrence. It is an outbox: every
//! path that ends a job (completion, expiry, cancel, revocation) is covered
//! without knowing about schedules.

use async_trait::async_trait;
use baton_proto::JobId;
use baton_proto::schedule::{
    OccurrenceCounts, OccurrenceState, OccurrenceTrigger, OccurrenceView, RunId, ScheduleSpec,
};

use super::rows::{json, ts};
use super::{Error, Result};

/// A schedule as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredSchedule {
    /// Row id.
    pub id: i64,
    /// The definition (its `paused` is the current state).
    pub spec: ScheduleSpec,
    /// Paused.
    pub paused: bool,
    /// The last pause span: when it was paused ...
    pub paused_at: Option<i64>,
    /// ... and resumed (None while paused).
    pub resumed_at: Option<i64>,
    /// The next nominal time nobody has acted on (None: no more).
    pub cursor: Option<i64>,
    /// When that occurrence fires (cursor plus jitter).
    pub next_fire_at: Option<i64>,
    /// Created.
    pub created_at: i64,
    /// Last changed.
    pub updated_at: i64,
}

/// The newest job or pipeline run a schedule made, while it has not ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Active {
    /// Queued (no agent has taken it yet).
    Queued(i64),
    /// Running.
    Running(i64),
}

/// A due schedule with what its plan needs.
#[derive(Debug, Clone, PartialEq)]
pub struct DueSchedule {
    /// The schedule.
    pub schedule: StoredSchedule,
    /// Its unfinished job or run, if any.
    pub active: Option<Active>,
    /// Occurrences waiting for it.
    pub pending: u32,
}

/// One occurrence (or a range of them) to record.
#[derive(Debug, Clone, PartialEq)]
pub struct NewOccurrence {
    /// Nominal time.
    pub nominal: i64,
    /// The last nominal time of a range.
    pub last_nominal: Option<i64>,
    /// Occurrences it stands for.
    pub count: u32,
    /// How it came to be.
    pub trigger: OccurrenceTrigger,
    /// `Fired` makes its job or run; `Pending` waits; the others are records.
    pub state: OccurrenceState,
    /// Why (skipped, missed, pending).
    pub reason: Option<String>,
    /// When it fires (nominal plus jitter).
    pub fire_at: i64,
}

/// Where the cursor goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Advance {
    /// The cursor the plan started from: nothing is written unless it still is.
    pub expect: i64,
    /// The new cursor (None: the schedule has no more occurrences).
    pub cursor: Option<i64>,
    /// When the new cursor's occurrence fires.
    pub next_fire_at: Option<i64>,
}

/// A plan to apply in one transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct Firing {
    /// The schedule.
    pub schedule_id: i64,
    /// Move the cursor (the timer), or leave it (trigger now, backfill).
    pub advance: Option<Advance>,
    /// Occurrences to record, oldest first. One that exists already makes
    /// the whole firing a [`super::Error::Conflict`] (nothing written).
    pub occurrences: Vec<NewOccurrence>,
    /// Cancel the schedule's unfinished job or run first (`cancel_previous`).
    pub cancel_active: bool,
    /// Record the occurrences already pending as skipped (superseded).
    pub supersede_pending: bool,
    /// Lease TTL of the jobs made when the template names none.
    pub default_lease_ttl_ms: u64,
}

/// What [`ScheduleStore::fire`] did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Fired {
    /// The occurrences recorded (with their jobs or runs).
    pub occurrences: Vec<OccurrenceView>,
    /// Groups that got work.
    pub woken: Vec<String>,
    /// Agents holding jobs that `cancel_previous` asked to stop.
    pub told: Vec<String>,
    /// The cursor had moved: another controller (or an earlier call) acted;
    /// nothing was written.
    pub raced: bool,
}

/// What [`ScheduleStore::follow_up`] did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FollowedUp {
    /// Ended jobs acted on.
    pub jobs: Vec<JobId>,
    /// Pipeline runs that ended.
    pub runs_ended: Vec<RunId>,
    /// Groups that got work.
    pub woken: Vec<String>,
}

/// How `put_schedule` treats the cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cursor {
    /// Keep it (the trigger did not change).
    Keep,
    /// Set it (a new schedule, or a changed trigger).
    Set {
        /// Next nominal time.
        cursor: Option<i64>,
        /// When it fires.
        next_fire_at: Option<i64>,
    },
}

impl Cursor {
    /// `(cursor, next_fire_at)` after this, from the ones kept by `Keep`.
    pub fn resolve(self, kept: (Option<i64>, Option<i64>)) -> (Option<i64>, Option<i64>) {
        match self {
            Cursor::Keep => kept,
            Cursor::Set {
                cursor,
                next_fire_at,
            } => (cursor, next_fire_at),
        }
    }
}

/// A schedule's totals, last occurrence and last success.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScheduleStats {
    /// Occurrence totals.
    pub counts: OccurrenceCounts,
    /// The newest occurrence.
    pub last: Option<OccurrenceView>,
    /// When a job or run of it last succeeded.
    pub last_success_at: Option<i64>,
}

/// Schedules as stored.
#[async_trait]
pub trait ScheduleStore {
    /// Create (`create_only`: a name in use is a conflict) or replace a
    /// schedule's definition. On replace the pause state is kept (pause and
    /// resume change it) and `cursor` says whether the cursor moves.
    /// Returns the schedule and whether it was created.
    async fn put_schedule(
        &self,
        spec: &ScheduleSpec,
        cursor: Cursor,
        create_only: bool,
        now: i64,
    ) -> Result<(StoredSchedule, bool)>;

    /// A schedule by name.
    async fn get_schedule(&self, name: &str) -> Result<StoredSchedule>;

    /// Every schedule, by name.
    async fn list_schedules(&self) -> Result<Vec<StoredSchedule>>;

    /// Delete a schedule and its occurrence records (its jobs stay).
    async fn delete_schedule(&self, name: &str) -> Result<()>;

    /// Pause, or resume with the cursor given (the first occurrence after
    /// the pause; those in between are planned by the timer as missed).
    async fn set_paused(
        &self,
        name: &str,
        paused: bool,
        cursor: Cursor,
        now: i64,
    ) -> Result<StoredSchedule>;

    /// Unpaused schedules whose next occurrence fires at or before `now`,
    /// earliest first, at most `limit`.
    async fn due_schedules(&self, now: i64, limit: u32) -> Result<Vec<DueSchedule>>;

    /// A schedule's unfinished job or run and its pending count (for a
    /// trigger or a backfill, outside the timer).
    async fn schedule_activity(&self, id: i64) -> Result<(Option<Active>, u32)>;

    /// When the earliest unpaused schedule fires next.
    async fn next_schedule_fire(&self) -> Result<Option<i64>>;

    /// Apply a plan (see the module docs).
    async fn fire(&self, firing: &Firing, now: i64) -> Result<Fired>;

    /// Apply several plans (of different schedules) in one transaction, each
    /// all or nothing on its own: one that fails or races writes nothing and
    /// leaves the others be. One result per plan, in order; the outer error
    /// is the commit's.
    async fn fire_all(&self, firings: &[Firing], now: i64) -> Result<Vec<Result<Fired>>>;

    /// Act on up to `limit` ended jobs of schedules and pipelines: queue the
    /// next steps of their runs, end runs, start a schedule's oldest pending
    /// occurrence once nothing of it is active.
    async fn follow_up(
        &self,
        now: i64,
        limit: u32,
        default_lease_ttl_ms: u64,
    ) -> Result<FollowedUp>;

    /// Fail the queued jobs pinned to an agent that is gone (revoked, or
    /// not seen since `seen_before`): a pipeline step never moves to a host
    /// without the files of the step it follows. Returns the jobs failed.
    async fn fail_stranded(&self, now: i64, seen_before: i64) -> Result<Vec<JobId>>;

    /// Totals, last occurrence and last success of a schedule.
    async fn schedule_stats(&self, id: i64) -> Result<ScheduleStats>;

    /// Occurrences newest first, before nominal `before`, at most `limit`.
    async fn history(
        &self,
        id: i64,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<OccurrenceView>>;

    /// The spans `(first, last)` of nominal times recorded that overlap
    /// `from..=to` (a single occurrence is `(n, n)`).
    async fn recorded_between(&self, id: i64, from: i64, to: i64) -> Result<Vec<(i64, i64)>>;

    /// Occurrence totals over every schedule (metrics).
    async fn occurrence_totals(&self) -> Result<OccurrenceCounts>;
}

// ---- Rows and helpers both backends share (no SQL dialect in them).

pub(crate) const SCHEDULE_COLUMNS: &str =
    "id, spec, paused, paused_at, resumed_at, cursor, next_fire_at, created_at, updated_at";

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct ScheduleRow {
    id: i64,
    spec: String,
    paused: bool,
    paused_at: Option<i64>,
    resumed_at: Option<i64>,
    cursor: Option<i64>,
    next_fire_at: Option<i64>,
    created_at: i64,
    updated_at: i64,
}

impl ScheduleRow {
    pub(crate) fn stored(self) -> Result<StoredSchedule> {
        let mut spec: ScheduleSpec = json("schedules.spec", &self.spec)?;
        spec.paused = self.paused;
        Ok(StoredSchedule {
            id: self.id,
            spec,
            paused: self.paused,
            paused_at: self.paused_at,
            resumed_at: self.resumed_at,
            cursor: self.cursor,
            next_fire_at: self.next_fire_at,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

/// A due schedule's row with its activity (`due_schedules`).
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct DueRow {
    #[sqlx(flatten)]
    schedule: ScheduleRow,
    job_id: Option<i64>,
    job_state: Option<String>,
    run_id: Option<i64>,
    pending: i64,
}

impl DueRow {
    pub(crate) fn due(self) -> Result<DueSchedule> {
        let active = match (self.job_id, self.job_state.as_deref(), self.run_id) {
            (Some(j), Some("queued"), _) => Some(Active::Queued(j)),
            (Some(j), _, _) => Some(Active::Running(j)),
            (None, _, Some(r)) => Some(Active::Running(r)),
            (None, _, None) => None,
        };
        Ok(DueSchedule {
            schedule: self.schedule.stored()?,
            active,
            pending: self.pending.max(0) as u32,
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct OccurrenceRow {
    nominal: i64,
    last_nominal: Option<i64>,
    count: i64,
    trigger: String,
    state: String,
    reason: Option<String>,
    job_id: Option<i64>,
    run_id: Option<i64>,
    outcome: Option<String>,
    recorded_at: i64,
}

impl OccurrenceRow {
    pub(crate) fn view(self) -> Result<OccurrenceView> {
        Ok(OccurrenceView {
            nominal_at: ts(self.nominal),
            last_nominal_at: self.last_nominal.map(ts),
            count: self.count as u32,
            trigger: OccurrenceTrigger::parse(&self.trigger)
                .ok_or_else(|| Error::Corrupt(format!("occurrences.trigger {}", self.trigger)))?,
            state: OccurrenceState::parse(&self.state)
                .ok_or_else(|| Error::Corrupt(format!("occurrences.state {}", self.state)))?,
            reason: self.reason,
            job_id: self.job_id,
            run_id: self.run_id,
            outcome: self.outcome,
            recorded_at: ts(self.recorded_at),
        })
    }
}

/// Occurrences with the state of their job or run.
pub(crate) const OCCURRENCE_SELECT: &str =
    "SELECT o.nominal, o.last_nominal, o.count, o.trigger, o.state, o.reason,
        o.job_id, o.run_id, COALESCE(j.state, r.state) AS outcome, o.recorded_at
     FROM occurrences o
     LEFT JOIN jobs j ON j.id = o.job_id
     LEFT JOIN pipeline_runs r ON r.id = o.run_id";

/// Add `group` to `woken` once.
pub(crate) fn push_group(woken: &mut Vec<String>, group: &str) {
    if !woken.iter().any(|g| g == group) {
        woken.push(group.to_owned());
    }
}

/// Why `cancel_previous` cancelled a job or run.
pub(crate) const REPLACED: &str =
    "cancelled: a newer occurrence replaced it (overlap = cancel_previous)";

/// Whether `e` is a unique index refusing a second row.
pub(crate) fn unique_violation(e: &Error) -> bool {
    matches!(e, Error::Db(sqlx::Error::Database(d)) if d.is_unique_violation())
}

/// Occurrence totals from `(state, count)` rows.
pub(crate) fn fold_counts(rows: Vec<(String, i64)>) -> Result<OccurrenceCounts> {
    let mut out = OccurrenceCounts::default();
    for (state, n) in rows {
        let n = n.max(0) as u64;
        match OccurrenceState::parse(&state) {
            Some(OccurrenceState::Fired) => out.fired = n,
            Some(OccurrenceState::Pending) => out.pending = n,
            Some(OccurrenceState::Skipped) => out.skipped = n,
            Some(OccurrenceState::Missed) => out.missed = n,
            None => return Err(Error::Corrupt(format!("occurrences.state {state}"))),
        }
    }
    Ok(out)
}

/// The view of occurrence `o` just recorded with its job or run.
pub(crate) fn recorded_view(
    o: &NewOccurrence,
    job_id: Option<i64>,
    run_id: Option<i64>,
    now: i64,
) -> OccurrenceView {
    OccurrenceView {
        nominal_at: ts(o.nominal),
        last_nominal_at: o.last_nominal.map(ts),
        count: o.count,
        trigger: o.trigger,
        state: o.state,
        reason: o.reason.clone(),
        job_id,
        run_id,
        outcome: (job_id.is_some() || run_id.is_some()).then(|| {
            if job_id.is_some() {
                "queued"
            } else {
                "running"
            }
            .to_owned()
        }),
        recorded_at: ts(now),
    }
}

/// Why a queued step pinned to agent `agent` failed (`fail_stranded`):
/// it was revoked, or not seen since `seen_before`.
pub(crate) fn stranded_why(agent: &str, revoked: bool, seen_before: i64) -> String {
    if revoked {
        format!(
            "agent `{agent}` that holds the files of the step this one follows was revoked; the step does not move to another host"
        )
    } else {
        format!(
            "agent `{agent}` that holds the files of the step this one follows has not been seen since {}; the step does not move to another host",
            ts(seen_before).to_rfc3339()
        )
    }
}
