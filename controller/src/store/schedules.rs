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

use super::Result;

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
