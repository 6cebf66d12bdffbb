//! Many firings in a few statements: a look of the timer at a busy second
//! fires a few hundred schedules, and one statement each for the cursor,
//! the job and the occurrence row (each a round trip to SQLite's thread)
//! made the last of them wait tens of milliseconds for the first.
//!
//! Here the cursors of all firings move in one `UPDATE … FROM json_each`,
//! and the jobs and occurrence rows of the plain firings (no cancel, no
//! pending occurrence, a job template) go in multi-row INSERTs. Any other
//! firing runs its own statements ([`super::fire::fire_rest`]) in the same
//! transaction. The result is what firing them one by one gives; a refusal
//! anywhere (an occurrence or a job made twice) fails the whole call, and
//! the caller fires them apart.

use std::collections::{HashMap, HashSet};

use baton_proto::schedule::OccurrenceState;
use sqlx::sqlite::SqliteConnection;

use super::super::made::insert_made_many;
use super::fire::{fire_in, fire_rest, push_group, scheduled_job};
use super::{SCHEDULE_COLUMNS, ScheduleRow, schedule_by_id};
use crate::store::schedules::{Fired, Firing, NewOccurrence, StoredSchedule, recorded_view};
use crate::store::{Error, Result};

/// Rows per multi-row INSERT of occurrences (11 bound values each).
const OCCURRENCE_CHUNK: usize = 64;

/// Apply `firings` inside the caller's transaction; their results in order.
pub(super) async fn fire_batched(
    c: &mut SqliteConnection,
    firings: &[Firing],
    now: i64,
) -> Result<Vec<Fired>> {
    let mut ids = HashSet::with_capacity(firings.len());
    if !firings.iter().all(|f| ids.insert(f.schedule_id)) {
        // A schedule twice: the second plan depends on the first's writes.
        let mut out = Vec::with_capacity(firings.len());
        for f in firings {
            out.push(fire_in(c, f, now).await?);
        }
        return Ok(out);
    }
    let mut moved = advance_all(c, firings).await?;
    let mut out = vec![Fired::default(); firings.len()];
    let mut plain = Vec::new();
    for (i, f) in firings.iter().enumerate() {
        let schedule = match (&f.advance, moved.remove(&f.schedule_id)) {
            (Some(_), None) => {
                out[i].raced = true;
                continue;
            }
            (Some(_), Some(s)) => s,
            (None, _) => schedule_by_id(c, f.schedule_id).await?,
        };
        if is_plain(f, &schedule) {
            plain.push((i, schedule));
        } else {
            out[i] = fire_rest(c, &schedule, f, now).await?;
        }
    }
    record_plain(c, firings, &plain, now, &mut out).await?;
    Ok(out)
}

/// Move the cursor of every firing that moves one, each only if it is still
/// where its plan started: the schedules moved, as they are now.
async fn advance_all(
    c: &mut SqliteConnection,
    firings: &[Firing],
) -> Result<HashMap<i64, StoredSchedule>> {
    let rows: Vec<_> = firings
        .iter()
        .filter_map(|f| {
            let a = f.advance.as_ref()?;
            Some((f.schedule_id, a.expect, a.cursor, a.next_fire_at))
        })
        .collect();
    if rows.is_empty() {
        return Ok(HashMap::new());
    }
    let moves = serde_json::to_string(&rows).map_err(|e| Error::Corrupt(e.to_string()))?;
    // RETURNING names only the updated table's columns.
    let sql = format!(
        "UPDATE schedules SET cursor = m.new_cursor, next_fire_at = m.new_fire_at
         FROM (SELECT value ->> 0 AS sid, value ->> 1 AS expect, value ->> 2 AS new_cursor,
                      value ->> 3 AS new_fire_at
               FROM json_each(?1)) AS m
         WHERE schedules.id = m.sid AND schedules.cursor = m.expect
         RETURNING {SCHEDULE_COLUMNS}"
    );
    let moved: Vec<ScheduleRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(moves)
        .fetch_all(&mut *c)
        .await?;
    moved
        .into_iter()
        .map(|r| r.stored().map(|s| (s.id, s)))
        .collect()
}

/// A firing the set-based statements cover: no cancel, nothing pending
/// before or after, and each occurrence that fires makes a job.
fn is_plain(f: &Firing, s: &StoredSchedule) -> bool {
    let fires = f
        .occurrences
        .iter()
        .any(|o| o.state == OccurrenceState::Fired);
    !f.cancel_active
        && !f.supersede_pending
        && f.occurrences
            .iter()
            .all(|o| o.state != OccurrenceState::Pending)
        && (!fires || (s.spec.job.is_some() && s.spec.group.is_some()))
}

/// The jobs and occurrence rows of the plain firings (`plain`: index into
/// `firings`, the schedule as moved), into `out`.
async fn record_plain(
    c: &mut SqliteConnection,
    firings: &[Firing],
    plain: &[(usize, StoredSchedule)],
    now: i64,
    out: &mut [Fired],
) -> Result<()> {
    // Every occurrence, in firing order; one job per occurrence that fires.
    let occurrences: Vec<(usize, &StoredSchedule, &NewOccurrence)> = plain
        .iter()
        .flat_map(|(i, s)| firings[*i].occurrences.iter().map(move |o| (*i, s, o)))
        .collect();
    let mut made = Vec::new();
    for (i, s, o) in &occurrences {
        if o.state != OccurrenceState::Fired {
            continue;
        }
        let job = scheduled_job(s, o.nominal, firings[*i].default_lease_ttl_ms)?;
        made.push(job.ok_or_else(|| {
            Error::Corrupt(format!("schedule `{}` has no job to make", s.spec.name))
        })?);
    }
    let rows: Vec<_> = made.iter().map(|(s, ttl, m)| (s, *ttl, m)).collect();
    let mut jobs = insert_made_many(c, &rows, now).await?.into_iter();
    let mut recorded = Vec::with_capacity(occurrences.len());
    for (i, s, o) in occurrences {
        let job = if o.state == OccurrenceState::Fired {
            let v = jobs
                .next()
                .ok_or_else(|| Error::Corrupt("fewer jobs made than fired".into()))?;
            push_group(&mut out[i].woken, &v.group);
            Some(v.id)
        } else {
            None
        };
        recorded.push((i, s.id, o, job));
    }
    insert_occurrences(c, &recorded, now).await?;
    for (i, _, o, job) in recorded {
        out[i].occurrences.push(recorded_view(o, job, None, now));
    }
    Ok(())
}

/// Insert occurrence rows `(firing, schedule, occurrence, job)`; one that
/// exists already fails the call.
async fn insert_occurrences(
    c: &mut SqliteConnection,
    rows: &[(usize, i64, &NewOccurrence, Option<i64>)],
    now: i64,
) -> Result<()> {
    for chunk in rows.chunks(OCCURRENCE_CHUNK) {
        let mut sql = String::from(
            "INSERT INTO occurrences (schedule_id, nominal, last_nominal, count, trigger, state, reason,
                 fire_at, job_id, run_id, recorded_at)
             VALUES ",
        );
        for i in 0..chunk.len() {
            if i > 0 {
                sql.push(',');
            }
            sql.push_str("(?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?)");
        }
        sql.push_str(" ON CONFLICT DO NOTHING");
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (_, schedule, o, job) in chunk {
            q = q
                .bind(*schedule)
                .bind(o.nominal)
                .bind(o.last_nominal)
                .bind(i64::from(o.count))
                .bind(o.trigger.as_str())
                .bind(o.state.as_str())
                .bind(o.reason.clone())
                .bind(o.fire_at)
                .bind(*job)
                .bind(now);
        }
        let done = q.execute(&mut *c).await?;
        if done.rows_affected() != chunk.len() as u64 {
            return Err(Error::Conflict(
                "an occurrence of this batch is already recorded".into(),
            ));
        }
    }
    Ok(())
}
