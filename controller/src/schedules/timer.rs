//! The schedule timer: one task that fires due schedules, acts on ended
//! jobs of schedules and pipelines (their next steps, a pending
//! occurrence), and times out runs. It sleeps until the earliest next
//! firing or run deadline (at most [`MAX_SLEEP`]), and is woken when a
//! schedule is created, changed or resumed, and when a job may have ended:
//! no per-schedule polling.

use std::collections::HashMap;
use std::time::Duration;

use baton_proto::schedule::OccurrenceState;
use tokio_util::sync::CancellationToken;

use super::{Schedules, active_of, firing};
use crate::store::now_ms;
use crate::store::schedules::{DueSchedule, Firing};
use crate::trigger::plan::{self, Due, Fate};
use crate::trigger::{Crons, Trigger};

/// The longest the timer sleeps without looking: a schedule another
/// controller on the same database changed is seen within this, and so is
/// a job that ended on a path that does not wake the timer.
pub const MAX_SLEEP: Duration = Duration::from_secs(10);

/// Woken by a job's end, the timer waits this long before looking: under a
/// stream of completions it looks in batches. (A firing time or a schedule
/// change is acted on at once.)
const MIN_GAP: Duration = Duration::from_millis(10);

/// Schedules fired per look, and ended jobs followed up per transaction.
const BATCH: u32 = 500;

/// A queued step pinned to an agent (`same_agent_as`) fails when that
/// agent is revoked, or has not been seen for this long.
pub const PIN_GONE_AFTER: Duration = Duration::from_secs(600);

/// How often the timer looks for such steps.
const STRANDED_EVERY: Duration = Duration::from_secs(10);

/// The triggers the timer built: one per schedule (rebuilt when its
/// definition changes), over cron patterns parsed once ([`Crons`]).
#[derive(Debug, Default)]
pub(super) struct Triggers {
    by_schedule: HashMap<i64, (i64, Trigger)>,
    crons: Crons,
}

impl Triggers {
    /// Schedule `s`'s trigger; none when its stored definition no longer
    /// parses (logged).
    fn of(&mut self, s: &crate::store::schedules::StoredSchedule) -> Option<Trigger> {
        if let Some((updated, t)) = self.by_schedule.get(&s.id)
            && *updated == s.updated_at
        {
            return Some(t.clone());
        }
        match Trigger::new_with(&s.spec, s.created_at, &mut self.crons) {
            Ok(t) => {
                self.by_schedule.insert(s.id, (s.updated_at, t.clone()));
                Some(t)
            }
            Err(e) => {
                tracing::error!(schedule = %s.spec.name, error = %e, "Stored schedule no longer parses; it does not fire");
                None
            }
        }
    }
}

/// Run the timer until `shutdown`. A job's end runs the follow-ups only
/// (one indexed read when none is due): firings and run deadlines keep
/// the wake time the last full look planned.
pub async fn timer(svc: Schedules, shutdown: CancellationToken) {
    let ended = svc.jobs.ended();
    let mut triggers = Triggers::default();
    let mut failures = 0u32;
    let mut stranded_at = 0i64;
    let mut wake_at = tokio::time::Instant::now();
    let mut full = true;
    loop {
        let kicked = svc.kick.notified();
        let job_ended = ended.notified();
        tokio::pin!(kicked, job_ended);
        kicked.as_mut().enable();
        job_ended.as_mut().enable();
        let looked = if full {
            look(&svc, &mut triggers, &mut stranded_at, now_ms())
                .await
                .map(Some)
        } else {
            follow_ups(&svc, now_ms()).await.map(|()| None)
        };
        match looked {
            Ok(next) => {
                failures = 0;
                if let Some(next) = next {
                    wake_at = tokio::time::Instant::now() + next;
                }
            }
            Err(e) => {
                failures += 1;
                if store_unavailable(&e) {
                    // The store's health logged it once, as an ERROR; the
                    // cursor has not moved, the next look plans again.
                    tracing::debug!(error = %e, "Schedule timer cannot write, retrying");
                } else if failures >= 5 {
                    tracing::error!(error = %e, failures, "Schedule timer cannot reach the store");
                } else {
                    tracing::warn!(error = %e, "Schedule timer failed, retrying");
                }
                wake_at = tokio::time::Instant::now() + Duration::from_millis(500);
            }
        }
        let ended_first = tokio::select! {
            _ = tokio::time::sleep_until(wake_at) => false,
            _ = &mut kicked => false,
            _ = &mut job_ended => true,
            _ = shutdown.cancelled() => return,
        };
        full = !ended_first;
        if ended_first {
            tokio::select! {
                _ = tokio::time::sleep(MIN_GAP) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }
}

/// Act on the ended jobs of schedules and pipelines, in batches.
async fn follow_ups(svc: &Schedules, now: i64) -> super::Result<()> {
    let ttl = svc.limits.default_lease_ttl_ms;
    loop {
        let done = svc.jobs.follow_up(now, BATCH, ttl).await?;
        if done.jobs.len() < BATCH as usize {
            return Ok(());
        }
    }
}

/// Whether `e` is the store refusing writes (disk full, read-only, …).
fn store_unavailable(e: &super::Error) -> bool {
    use crate::{jobs, store};
    matches!(
        e,
        super::Error::Store(store::Error::Unavailable { .. })
            | super::Error::Jobs(jobs::Error::Store(store::Error::Unavailable { .. }))
    )
}

/// One look at `now`: stranded pinned steps, follow-ups, due schedules,
/// run deadlines. Returns how long to sleep.
pub(super) async fn look(
    svc: &Schedules,
    triggers: &mut Triggers,
    stranded_at: &mut i64,
    now: i64,
) -> super::Result<Duration> {
    if now.saturating_sub(*stranded_at) >= STRANDED_EVERY.as_millis() as i64 {
        svc.jobs
            .fail_stranded(now, now - PIN_GONE_AFTER.as_millis() as i64)
            .await?;
        *stranded_at = now;
    }
    follow_ups(svc, now).await?;
    loop {
        let due = svc.store().due_schedules(now, BATCH).await?;
        let n = due.len();
        let planned: Vec<_> = due
            .iter()
            .filter_map(|d| plan_one(svc, triggers, d, now))
            .collect();
        let firings: Vec<_> = planned.iter().map(|(f, _, _)| f.clone()).collect();
        let done = svc.jobs.fire_all(&firings, now.max(now_ms())).await?;
        for ((_, name, p), r) in planned.iter().zip(done) {
            match r {
                Ok(fired) if fired.raced => {
                    tracing::debug!(schedule = %name, "Schedule fired elsewhere; nothing written");
                }
                Ok(fired) => log_fired(name, p, &fired),
                Err(e) => {
                    let e = super::Error::from(e);
                    if store_unavailable(&e) {
                        tracing::debug!(schedule = %name, error = %e, "Schedule cannot fire while the store refuses writes, retrying");
                    } else {
                        tracing::warn!(schedule = %name, error = %e, "Schedule could not fire, retrying");
                    }
                }
            }
        }
        if n < BATCH as usize {
            break;
        }
    }
    let runs = svc.store().next_run_deadline().await?;
    if runs.is_some_and(|d| d <= now) {
        svc.jobs.expire_runs(now).await?;
    }
    let next_fire = svc.store().next_schedule_fire().await?;
    let next_run = svc.store().next_run_deadline().await?;
    let next = [next_fire, next_run].into_iter().flatten().min();
    let now = now.max(now_ms());
    Ok(match next {
        Some(at) => Duration::from_millis(u64::try_from(at - now).unwrap_or(0)).min(MAX_SLEEP),
        None => MAX_SLEEP,
    })
}

/// Plan one due schedule: its firing, name and plan (none when it has no
/// cursor or its stored definition no longer parses).
fn plan_one(
    svc: &Schedules,
    triggers: &mut Triggers,
    d: &DueSchedule,
    now: i64,
) -> Option<(Firing, String, plan::Plan)> {
    let s = &d.schedule;
    let cursor = s.cursor?;
    let t = triggers.of(s)?;
    let due = Due {
        key: &s.spec.name,
        cursor,
        now,
        overlap: s.spec.overlap,
        catchup: s.spec.catchup,
        catchup_window_ms: s.spec.catchup_window_ms,
        catchup_cap: s.spec.catchup_cap,
        active: active_of(d.active),
        pending: d.pending,
        paused: s.paused_at.zip(s.resumed_at),
        started_at: svc.started_at,
    };
    let p = plan::plan(&t, &due);
    let f = firing(s, &t, &p, Some(cursor), svc.limits.default_lease_ttl_ms);
    Some((f, s.spec.name.clone(), p))
}

fn log_fired(name: &str, p: &plan::Plan, fired: &crate::store::schedules::Fired) {
    let committed = now_ms();
    for o in &fired.occurrences {
        if o.state == OccurrenceState::Fired {
            crate::telemetry::metrics()
                .schedule_lateness
                .observe(crate::telemetry::ms_as_secs(
                    committed - o.nominal_at.timestamp_millis(),
                ));
        }
        tracing::info!(
            schedule = %name,
            nominal = %o.nominal_at.to_rfc3339(),
            state = o.state.as_str(),
            job_id = o.job_id,
            run_id = o.run_id,
            count = o.count,
            reason = o.reason.as_deref(),
            "Schedule occurrence recorded"
        );
    }
    let missed = p.count(Fate::Miss);
    if missed > 0 {
        tracing::warn!(schedule = %name, missed, "Schedule occurrences missed");
    }
}
