//! A firing and a follow-up inside their transaction: occurrences
//! recorded, jobs and runs made, pending occurrences started, cancels for
//! `cancel_previous`.

use baton_proto::JobSubmit;
use baton_proto::schedule::{OccurrenceState, OccurrenceView};
use sqlx::sqlite::SqliteConnection;

use super::super::made::{self, Maker};
use super::super::pipelines as runs;
use super::{SCHEDULE_COLUMNS, ScheduleRow, schedule_by_id};
use crate::store::rows::ts;
pub(crate) use crate::store::schedules::push_group;
use crate::store::schedules::{
    Active, Fired, Firing, FollowedUp, NewOccurrence, REPLACED, StoredSchedule, recorded_view,
    unique_violation,
};
use crate::store::{Error, Result};

/// A schedule's unfinished job or run, and how many occurrences wait.
pub(super) async fn activity(c: &mut SqliteConnection, id: i64) -> Result<(Option<Active>, u32)> {
    let job: Option<(i64, String)> = sqlx::query_as(
        "SELECT id, state FROM jobs WHERE schedule_id = ? AND run_id IS NULL
           AND state IN ('queued', 'running') ORDER BY id DESC LIMIT 1",
    )
    .bind(id)
    .fetch_optional(&mut *c)
    .await?;
    let active = match job {
        Some((j, s)) if s == "queued" => Some(Active::Queued(j)),
        Some((j, _)) => Some(Active::Running(j)),
        None => {
            let run: Option<i64> = sqlx::query_scalar(
                "SELECT id FROM pipeline_runs WHERE schedule_id = ? AND state = 'running'
                 ORDER BY id DESC LIMIT 1",
            )
            .bind(id)
            .fetch_optional(&mut *c)
            .await?;
            run.map(Active::Running)
        }
    };
    let pending: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM occurrences WHERE schedule_id = ? AND state = 'pending'",
    )
    .bind(id)
    .fetch_one(&mut *c)
    .await?;
    Ok((active, pending as u32))
}

/// Apply a firing inside a transaction (see [`ScheduleStore::fire`]).
///
/// The cursor moves first, by a conditional update that returns the
/// schedule: when another controller (or an earlier call) moved it, nothing
/// is written and the firing is `raced`. A normal firing is then two more
/// statements: its job and its occurrence row.
pub(super) async fn fire_in(c: &mut SqliteConnection, f: &Firing, now: i64) -> Result<Fired> {
    let schedule = match &f.advance {
        Some(adv) => {
            let sql = format!(
                "UPDATE schedules SET cursor = ?1, next_fire_at = ?2 WHERE id = ?3 AND cursor = ?4
                 RETURNING {SCHEDULE_COLUMNS}"
            );
            let row: Option<ScheduleRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(adv.cursor)
                .bind(adv.next_fire_at)
                .bind(f.schedule_id)
                .bind(adv.expect)
                .fetch_optional(&mut *c)
                .await?;
            match row {
                Some(row) => row.stored()?,
                None => {
                    return Ok(Fired {
                        raced: true,
                        ..Fired::default()
                    });
                }
            }
        }
        None => schedule_by_id(c, f.schedule_id).await?,
    };
    fire_rest(c, &schedule, f, now).await
}

/// A firing's writes after its cursor moved (or was left): cancels, the
/// occurrences with their jobs and runs, a pending occurrence started.
pub(super) async fn fire_rest(
    c: &mut SqliteConnection,
    schedule: &StoredSchedule,
    f: &Firing,
    now: i64,
) -> Result<Fired> {
    let mut out = Fired::default();
    if f.cancel_active {
        out.told = cancel_active(c, schedule, now).await?;
    }
    if f.supersede_pending {
        sqlx::query(
            "UPDATE occurrences SET state = 'skipped',
               reason = 'superseded by a newer occurrence (overlap = cancel_previous)'
             WHERE schedule_id = ? AND state = 'pending'",
        )
        .bind(schedule.id)
        .execute(&mut *c)
        .await?;
    }
    let mut pended = false;
    for o in &f.occurrences {
        let view = record(c, schedule, o, f.default_lease_ttl_ms, now, &mut out.woken).await?;
        pended |= view.state == OccurrenceState::Pending;
        out.occurrences.push(view);
    }
    // A run that ended before this firing read the schedule cannot start
    // what it pended: start it here when nothing of the schedule is active.
    if pended || f.cancel_active {
        release_pending(c, schedule, f.default_lease_ttl_ms, now, &mut out.woken).await?;
    }
    Ok(out)
}

/// Record one occurrence (making its job or run first when it fires). A
/// row that exists already — or a job or run already made for its nominal
/// time — is a conflict: the caller rolls the whole firing back.
async fn record(
    c: &mut SqliteConnection,
    schedule: &StoredSchedule,
    o: &NewOccurrence,
    ttl: u64,
    now: i64,
    woken: &mut Vec<String>,
) -> Result<OccurrenceView> {
    let conflict = || {
        Error::Conflict(format!(
            "occurrence {} of schedule `{}` is already recorded",
            ts(o.nominal).to_rfc3339(),
            schedule.spec.name
        ))
    };
    let (job_id, run_id) = if o.state == OccurrenceState::Fired {
        start(c, schedule, o.nominal, ttl, now, woken)
            .await
            .map_err(|e| if unique_violation(&e) { conflict() } else { e })?
    } else {
        (None, None)
    };
    let done = sqlx::query(
        "INSERT INTO occurrences (schedule_id, nominal, last_nominal, count, trigger, state, reason,
             fire_at, job_id, run_id, recorded_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
    )
    .bind(schedule.id)
    .bind(o.nominal)
    .bind(o.last_nominal)
    .bind(i64::from(o.count))
    .bind(o.trigger.as_str())
    .bind(o.state.as_str())
    .bind(&o.reason)
    .bind(o.fire_at)
    .bind(job_id)
    .bind(run_id)
    .bind(now)
    .execute(&mut *c)
    .await?;
    if done.rows_affected() != 1 {
        return Err(conflict());
    }
    Ok(recorded_view(o, job_id, run_id, now))
}

/// The job occurrence `nominal` of `schedule` makes — its submission, lease
/// TTL (the template's, else `ttl`) and maker — when the schedule runs a
/// job; none when it runs a pipeline.
pub(super) fn scheduled_job(
    schedule: &StoredSchedule,
    nominal: i64,
    ttl: u64,
) -> Result<Option<(JobSubmit, u64, Maker<'static>)>> {
    let spec = &schedule.spec;
    let Some(job) = &spec.job else {
        return Ok(None);
    };
    let group = spec.group.as_deref().ok_or_else(|| {
        Error::Corrupt(format!("schedule `{}` has a job and no group", spec.name))
    })?;
    let maker = Maker {
        schedule_id: Some(schedule.id),
        nominal_at: Some(nominal),
        ..Maker::default()
    };
    Ok(Some((
        job.submit(group),
        job.lease_ttl_ms.unwrap_or(ttl),
        maker,
    )))
}

/// Make occurrence `nominal`'s job or pipeline run.
async fn start(
    c: &mut SqliteConnection,
    schedule: &StoredSchedule,
    nominal: i64,
    ttl: u64,
    now: i64,
    woken: &mut Vec<String>,
) -> Result<(Option<i64>, Option<i64>)> {
    let spec = &schedule.spec;
    if let Some((submit, ttl, maker)) = scheduled_job(schedule, nominal, ttl)? {
        let view = made::insert_made(c, &submit, ttl, &maker, now).await?;
        push_group(woken, &view.group);
        return Ok((Some(view.id), None));
    }
    let pipeline = spec.pipeline.as_deref().ok_or_else(|| {
        Error::Corrupt(format!(
            "schedule `{}` has no job and no pipeline",
            spec.name
        ))
    })?;
    let run = runs::start_in(
        c,
        pipeline,
        spec.group.as_deref(),
        Some((schedule.id, nominal)),
        ttl,
        now,
        woken,
    )
    .await?;
    Ok((None, Some(run)))
}

/// Cancel the schedule's unfinished job or run (`cancel_previous`); returns
/// the agents holding the jobs asked to stop (to be told at once).
async fn cancel_active(
    c: &mut SqliteConnection,
    s: &StoredSchedule,
    now: i64,
) -> Result<Vec<String>> {
    let holders: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT lease_agent FROM jobs
         WHERE state = 'running' AND lease_agent IS NOT NULL AND (
           (schedule_id = ?1 AND run_id IS NULL)
           OR run_id IN (SELECT id FROM pipeline_runs WHERE schedule_id = ?1 AND state = 'running'))",
    )
    .bind(s.id)
    .fetch_all(&mut *c)
    .await?;
    let jobs: Vec<i64> = sqlx::query_scalar(
        "SELECT id FROM jobs WHERE schedule_id = ? AND run_id IS NULL AND state IN ('queued', 'running')",
    )
    .bind(s.id)
    .fetch_all(&mut *c)
    .await?;
    for j in jobs {
        made::cancel_in(c, j, REPLACED, now).await?;
    }
    let active_runs: Vec<i64> = sqlx::query_scalar(
        "SELECT id FROM pipeline_runs WHERE schedule_id = ? AND state = 'running'",
    )
    .bind(s.id)
    .fetch_all(&mut *c)
    .await?;
    for r in active_runs {
        runs::cancel_in(c, r, REPLACED, now).await?;
    }
    Ok(holders)
}

/// Start the schedule's oldest pending occurrence if nothing of it runs.
async fn release_pending(
    c: &mut SqliteConnection,
    s: &StoredSchedule,
    ttl: u64,
    now: i64,
    woken: &mut Vec<String>,
) -> Result<()> {
    let (active, pending) = activity(c, s.id).await?;
    if active.is_some() || pending == 0 {
        return Ok(());
    }
    let nominal: Option<i64> = sqlx::query_scalar(
        "SELECT MIN(nominal) FROM occurrences WHERE schedule_id = ? AND state = 'pending'",
    )
    .bind(s.id)
    .fetch_one(&mut *c)
    .await?;
    let Some(nominal) = nominal else {
        return Ok(());
    };
    let (job_id, run_id) = start(c, s, nominal, ttl, now, woken).await?;
    sqlx::query(
        "UPDATE occurrences SET state = 'fired', reason = NULL, job_id = ?1, run_id = ?2, recorded_at = ?3
         WHERE schedule_id = ?4 AND nominal = ?5",
    )
    .bind(job_id)
    .bind(run_id)
    .bind(now)
    .bind(s.id)
    .bind(nominal)
    .execute(&mut *c)
    .await?;
    Ok(())
}

/// Act on ended jobs marked for follow-up (see [`ScheduleStore::follow_up`]).
pub(super) async fn follow_up_in(
    c: &mut SqliteConnection,
    now: i64,
    limit: u32,
    ttl: u64,
) -> Result<FollowedUp> {
    let ended: Vec<(i64, Option<i64>, Option<i64>)> = sqlx::query_as(
        "SELECT id, schedule_id, run_id FROM jobs INDEXED BY jobs_followup
         WHERE followup = 1 AND state IN ('succeeded', 'failed', 'cancelled') ORDER BY id LIMIT +?",
    )
    .bind(i64::from(limit))
    .fetch_all(&mut *c)
    .await?;
    let mut out = FollowedUp::default();
    if ended.is_empty() {
        // Nothing to act on (each job end looks): nothing to write.
        return Ok(out);
    }
    let mut schedules: Vec<i64> = Vec::new();
    for (job, schedule, run) in ended {
        out.jobs.push(job);
        if let Some(run) = run {
            let advanced = runs::advance_in(c, run, ttl, now, &mut out.woken).await?;
            if advanced.ended_now {
                out.runs_ended.push(run);
            }
            schedules.extend(advanced.done_schedule);
        } else if let Some(s) = schedule {
            schedules.push(s);
        }
    }
    schedules.sort_unstable();
    schedules.dedup();
    for id in schedules {
        match schedule_by_id(c, id).await {
            Ok(s) => release_pending(c, &s, ttl, now, &mut out.woken).await?,
            Err(Error::Missing(_)) => {}
            Err(e) => return Err(e),
        }
    }
    let ids = serde_json::to_string(&out.jobs).map_err(|e| Error::Corrupt(e.to_string()))?;
    sqlx::query("UPDATE jobs SET followup = 0 WHERE id IN (SELECT value FROM json_each(?))")
        .bind(ids)
        .execute(&mut *c)
        .await?;
    Ok(out)
}

/// Every firing in one transaction, without a savepoint each, and in a
/// few set-based statements ([`super::batch`]; the common case: a raced
/// firing writes nothing). None when one was refused: then nothing was
/// kept, and the caller fires them apart.
pub(super) async fn fire_together(
    writer: &sqlx::SqlitePool,
    firings: &[Firing],
    now: i64,
) -> Result<Option<Vec<Result<Fired>>>> {
    let mut tx = writer.begin().await?;
    match super::batch::fire_batched(&mut tx, firings, now).await {
        Ok(out) => {
            tx.commit().await?;
            Ok(Some(out.into_iter().map(Ok).collect()))
        }
        Err(_) => {
            tx.rollback().await?;
            Ok(None)
        }
    }
}

/// Every firing in one transaction, a savepoint each: one that is refused
/// writes nothing and leaves the others be.
pub(super) async fn fire_apart(
    writer: &sqlx::SqlitePool,
    firings: &[Firing],
    now: i64,
) -> Result<Vec<Result<Fired>>> {
    let mut tx = writer.begin().await?;
    let mut out = Vec::with_capacity(firings.len());
    for f in firings {
        let mut one = sqlx::Connection::begin(&mut *tx).await?;
        match fire_in(&mut one, f, now).await {
            Ok(fired) if !fired.raced => {
                one.commit().await?;
                out.push(Ok(fired));
            }
            done => {
                one.rollback().await?;
                out.push(done);
            }
        }
    }
    tx.commit().await?;
    Ok(out)
}
