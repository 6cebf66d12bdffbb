//! The schedules service: schedules and pipelines as operators define and
//! drive them, and the timer that fires them ([`mod@timer`]).
//!
//! Definitions are checked here (the trigger by `crate::trigger`, a
//! pipeline's graph and references by `crate::pipeline`, each job template
//! as a submission) and refused with the field at fault. Writes that give
//! a group work go through the jobs service (commit, then wake); reads go
//! to the store.
//!
//! # Layout
//! - this file: [`Schedules`], the schedule operations (create, replace,
//!   pause, resume, trigger now, backfill, next, history, views).
//! - `timer`: the one task that fires due schedules, follows up ended jobs
//!   of schedules and pipelines, and times out runs; it sleeps until the
//!   earliest of those.
//! - `pipelines`: the pipeline operations (define, run, cancel, retry).

mod pipelines;
pub mod timer;

use std::sync::Arc;

use baton_proto::schedule::{
    BackfillRequest, FireReport, NextList, OccurrenceList, ScheduleList, ScheduleSpec, ScheduleView,
};
use tokio::sync::Notify;

use crate::jobs::{self, Jobs};
use crate::pipeline::JobLimits;
use crate::store::rows_ts as ts;
use crate::store::schedules::{
    Active as StoredActive, Cursor, Firing, NewOccurrence, StoredSchedule,
};
use crate::store::{self, Store};
use crate::trigger::plan::{self, Active, Decision, Fate, Plan};
use crate::trigger::{self, Trigger};
use crate::validate;

pub use timer::timer;

/// Errors of the schedules service.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A definition or request is refused; `field` names the path at fault.
    #[error("{field}: {message}")]
    Invalid {
        /// The field.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The jobs service refused or failed.
    #[error(transparent)]
    Jobs(#[from] jobs::Error),
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] store::Error),
}

impl From<trigger::Error> for Error {
    fn from(e: trigger::Error) -> Self {
        Error::Invalid {
            field: e.field().to_owned(),
            message: e.message().to_owned(),
        }
    }
}

/// Results of the schedules service.
pub type Result<T> = std::result::Result<T, Error>;

/// Most occurrences `next` and a backfill report at once.
pub const MAX_NEXT: usize = 1000;

/// The schedules service (cheap to clone).
#[derive(Debug, Clone)]
pub struct Schedules {
    jobs: Jobs,
    limits: JobLimits,
    started_at: i64,
    kick: Arc<Notify>,
}

impl Schedules {
    /// The service over `jobs`; `started_at` is this controller's start
    /// (the reason given for occurrences missed before it).
    pub fn new(jobs: Jobs, limits: JobLimits, started_at: i64) -> Self {
        Schedules {
            jobs,
            limits,
            started_at,
            kick: Arc::default(),
        }
    }

    fn store(&self) -> &Store {
        self.jobs.store()
    }

    /// Create (`create_only`) or replace a schedule; whether it was created.
    /// A changed trigger restarts the cursor at the first occurrence from
    /// now; the timer is woken either way.
    pub async fn put(
        &self,
        spec: ScheduleSpec,
        create_only: bool,
        now: i64,
    ) -> Result<(ScheduleView, bool)> {
        let old = match self.store().get_schedule(&spec.name).await {
            Ok(s) => Some(s),
            Err(store::Error::Missing(_)) => None,
            Err(e) => return Err(e.into()),
        };
        let created_at = old.as_ref().map_or(now, |o| o.created_at);
        let trigger = Trigger::new(&spec, created_at)?;
        self.check_target(&spec).await?;
        let cursor = match &old {
            Some(o) if same_trigger(&o.spec, &spec) => Cursor::Keep,
            _ => cursor_from(&trigger, &spec.name, now),
        };
        let (stored, created) = self
            .store()
            .put_schedule(&spec, cursor, create_only, now)
            .await?;
        tracing::info!(schedule = %spec.name, created, "Schedule saved");
        self.kick.notify_one();
        Ok((self.view(stored, now).await?, created))
    }

    /// The job template must be a valid submission to the schedule's
    /// group; a pipeline must exist.
    async fn check_target(&self, spec: &ScheduleSpec) -> Result<()> {
        if let (Some(job), Some(group)) = (&spec.job, &spec.group) {
            validate::submission(
                &job.submit(group),
                self.limits.default_lease_ttl_ms,
                self.limits.max_spec_bytes,
            )
            .map_err(|e| Error::Invalid {
                field: if e.field == "group" {
                    "group".into()
                } else {
                    format!("job.{}", e.field)
                },
                message: e.message,
            })?;
        }
        if let Some(p) = &spec.pipeline {
            match self.store().get_pipeline(p).await {
                Ok(_) => {}
                Err(store::Error::Missing(_)) => {
                    return Err(Error::Invalid {
                        field: "pipeline".into(),
                        message: format!("no pipeline named `{p}`"),
                    });
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// A schedule's view.
    pub async fn get(&self, name: &str, now: i64) -> Result<ScheduleView> {
        let s = self.store().get_schedule(name).await?;
        self.view(s, now).await
    }

    /// Every schedule.
    pub async fn list(&self, now: i64) -> Result<ScheduleList> {
        let mut schedules = Vec::new();
        for s in self.store().list_schedules().await? {
            schedules.push(self.view(s, now).await?);
        }
        Ok(ScheduleList { schedules })
    }

    /// Delete a schedule (its jobs and runs stay).
    pub async fn delete(&self, name: &str) -> Result<()> {
        self.store().delete_schedule(name).await?;
        tracing::info!(schedule = %name, "Schedule deleted");
        Ok(())
    }

    /// Pause (nothing fires; what passes is planned as missed on resume)
    /// or resume.
    pub async fn set_paused(&self, name: &str, paused: bool, now: i64) -> Result<ScheduleView> {
        let s = self
            .store()
            .set_paused(name, paused, Cursor::Keep, now)
            .await?;
        tracing::info!(schedule = %name, paused, "Schedule paused or resumed");
        self.kick.notify_one();
        self.view(s, now).await
    }

    /// Fire one occurrence now (trigger `manual`), the overlap policy applied.
    pub async fn trigger_now(&self, name: &str, now: i64) -> Result<FireReport> {
        let s = self.store().get_schedule(name).await?;
        let t = Trigger::new(&s.spec, s.created_at)?;
        let (active, pending) = self.store().schedule_activity(s.id).await?;
        let p = plan::plan_manual(&t, now, active_of(active), pending, s.spec.overlap);
        self.apply(&s, &t, p, None, 0, now).await
    }

    /// Every occurrence in `from..=to` that is not recorded yet, once each,
    /// in order (the overlap policy keeps them from running at once).
    pub async fn backfill(
        &self,
        name: &str,
        req: &BackfillRequest,
        now: i64,
    ) -> Result<FireReport> {
        let s = self.store().get_schedule(name).await?;
        let t = Trigger::new(&s.spec, s.created_at)?;
        let (from, to) = (req.from.timestamp_millis(), req.to.timestamp_millis());
        let spans = self.store().recorded_between(s.id, from, to).await?;
        let existing = |n: i64| spans.iter().any(|&(a, b)| a <= n && n <= b);
        let (active, pending) = self.store().schedule_activity(s.id).await?;
        let range = plan::BackfillRange {
            key: &s.spec.name,
            from,
            to,
            existing: &existing,
        };
        let b = plan::plan_backfill(&t, range, active_of(active), pending, s.spec.overlap)?;
        self.apply(&s, &t, b.plan, None, b.already, now).await
    }

    /// Apply a plan (`advance`: the cursor it started from, for the timer).
    async fn apply(
        &self,
        s: &StoredSchedule,
        t: &Trigger,
        p: Plan,
        advance: Option<i64>,
        already: u32,
        now: i64,
    ) -> Result<FireReport> {
        let firing = firing(s, t, &p, advance, self.limits.default_lease_ttl_ms);
        let fired = self.jobs.fire(&firing, now).await?;
        Ok(FireReport {
            occurrences: fired.occurrences,
            already,
        })
    }

    /// Up to `count` next occurrences of a schedule.
    pub async fn next(&self, name: &str, count: usize, now: i64) -> Result<NextList> {
        let s = self.store().get_schedule(name).await?;
        let t = Trigger::new(&s.spec, s.created_at)?;
        let from = s.cursor.map_or(now, |c| (c - 1).max(now));
        Ok(NextList {
            tz: t.tz_name().to_owned(),
            occurrences: t.preview(&s.spec.name, from, count.clamp(1, MAX_NEXT)),
        })
    }

    /// Occurrences newest first.
    pub async fn history(
        &self,
        name: &str,
        before: Option<i64>,
        limit: u32,
    ) -> Result<OccurrenceList> {
        let s = self.store().get_schedule(name).await?;
        let occurrences = self.store().history(s.id, before, limit).await?;
        let next_before = (occurrences.len() == limit as usize)
            .then(|| occurrences.last().map(|o| o.nominal_at))
            .flatten();
        Ok(OccurrenceList {
            occurrences,
            next_before,
        })
    }

    /// A stored schedule as operators see it.
    async fn view(&self, s: StoredSchedule, now: i64) -> Result<ScheduleView> {
        let stats = self.store().schedule_stats(s.id).await?;
        let stale = s.spec.alert_after_ms.is_some_and(|a| {
            let since = stats.last_success_at.unwrap_or(s.created_at);
            now.saturating_sub(since) > a as i64
        });
        Ok(ScheduleView {
            paused: s.paused,
            next_at: s.cursor.map(ts),
            next_fire_at: s.next_fire_at.map(ts),
            last: stats.last,
            last_success_at: stats.last_success_at.map(ts),
            last_success_age_ms: stats
                .last_success_at
                .map(|t| now.saturating_sub(t).max(0) as u64),
            stale,
            counts: stats.counts,
            created_at: ts(s.created_at),
            updated_at: ts(s.updated_at),
            spec: s.spec,
        })
    }
}

/// Whether two definitions have the same occurrences (then a replace keeps
/// the cursor).
fn same_trigger(a: &ScheduleSpec, b: &ScheduleSpec) -> bool {
    (
        &a.cron,
        &a.tz,
        a.every_ms,
        a.anchor,
        &a.between,
        a.start_at,
        a.end_at,
        a.jitter_ms,
    ) == (
        &b.cron,
        &b.tz,
        b.every_ms,
        b.anchor,
        &b.between,
        b.start_at,
        b.end_at,
        b.jitter_ms,
    )
}

/// The cursor of a new or changed trigger: its first occurrence from now.
fn cursor_from(t: &Trigger, key: &str, now: i64) -> Cursor {
    let cursor = t.first_at_or_after(now);
    Cursor::Set {
        cursor,
        next_fire_at: cursor.map(|c| t.fire_at(key, c)),
    }
}

/// The plan's view of a schedule's unfinished job or run.
fn active_of(a: Option<StoredActive>) -> Active {
    match a {
        None => Active::None,
        Some(StoredActive::Queued(id)) => Active::Queued(id),
        Some(StoredActive::Running(id)) => Active::Running(id),
    }
}

/// A plan as the store applies it.
fn firing(s: &StoredSchedule, t: &Trigger, p: &Plan, from: Option<i64>, ttl: u64) -> Firing {
    let advance = from.map(|expect| {
        let cursor = match p.cursor {
            plan::NextCursor::At(c) => Some(c),
            plan::NextCursor::Ended => None,
            plan::NextCursor::Unchanged => Some(expect),
        };
        store::schedules::Advance {
            expect,
            cursor,
            next_fire_at: cursor.map(|c| t.fire_at(&s.spec.name, c)),
        }
    });
    Firing {
        schedule_id: s.id,
        advance,
        occurrences: p.decisions.iter().map(occurrence).collect(),
        cancel_active: p.cancel_active,
        supersede_pending: p.supersede_pending,
        default_lease_ttl_ms: ttl,
    }
}

fn occurrence(d: &Decision) -> NewOccurrence {
    use baton_proto::schedule::OccurrenceState as S;
    NewOccurrence {
        nominal: d.nominal,
        last_nominal: d.last_nominal,
        count: d.count,
        trigger: d.trigger,
        state: match d.fate {
            Fate::Fire => S::Fired,
            Fate::Pend => S::Pending,
            Fate::Skip => S::Skipped,
            Fate::Miss => S::Missed,
        },
        reason: d.reason.clone(),
        fire_at: d.fire_at,
    }
}

#[cfg(test)]
mod tests;
