//! Creating, replacing, pausing and resuming a schedule inside a
//! transaction. The row is locked before it is read for a change; two
//! replicas creating one name at once insert one row (the other finds it,
//! as a conflict or as a replace).

use baton_proto::schedule::ScheduleSpec;
use sqlx::postgres::PgConnection;

use super::super::made::enc;
use super::super::pipelines as runs;
use super::schedule_by;
use crate::store::schedules::{Cursor, StoredSchedule};
use crate::store::{Error, Result};

/// [`ScheduleStore::put_schedule`](crate::store::ScheduleStore::put_schedule)
/// in a transaction.
pub(super) async fn put_in(
    c: &mut PgConnection,
    spec: &ScheduleSpec,
    cursor: Cursor,
    create_only: bool,
    now: i64,
) -> Result<(StoredSchedule, bool)> {
    if let Some(p) = &spec.pipeline {
        runs::pipeline_exists(c, p).await?;
    }
    let mut created = false;
    // Twice at most: an insert that loses to another replica's finds its
    // row on the second pass.
    for _ in 0..2 {
        let existing = match schedule_by(c, &spec.name, true).await {
            Ok(s) => Some(s),
            Err(Error::Missing(_)) => None,
            Err(e) => return Err(e),
        };
        match existing {
            Some(_) if create_only => {
                return Err(Error::Conflict(format!(
                    "schedule `{}` already exists",
                    spec.name
                )));
            }
            Some(old) => {
                replace(c, spec, &old, cursor, now).await?;
                break;
            }
            None => {
                if insert(c, spec, cursor, now).await? {
                    created = true;
                    break;
                }
            }
        }
    }
    let stored = schedule_by(c, &spec.name, false).await?;
    Ok((stored, created))
}

/// Replace `old`'s definition, keeping its pause state.
async fn replace(
    c: &mut PgConnection,
    spec: &ScheduleSpec,
    old: &StoredSchedule,
    cursor: Cursor,
    now: i64,
) -> Result<()> {
    let mut spec = spec.clone();
    spec.paused = old.paused;
    let (cur, fire) = cursor.resolve((old.cursor, old.next_fire_at));
    sqlx::query(
        "UPDATE schedules SET spec = $1, cursor = $2, next_fire_at = $3, updated_at = $4 WHERE id = $5",
    )
    .bind(enc(&spec)?)
    .bind(cur)
    .bind(fire)
    .bind(now)
    .bind(old.id)
    .execute(&mut *c)
    .await?;
    Ok(())
}

/// Insert a new schedule; false when another transaction holds the name.
async fn insert(
    c: &mut PgConnection,
    spec: &ScheduleSpec,
    cursor: Cursor,
    now: i64,
) -> Result<bool> {
    let (cur, fire) = cursor.resolve((None, None));
    let done = sqlx::query(
        "INSERT INTO schedules (name, spec, paused, paused_at, cursor, next_fire_at, created_at, updated_at)
         VALUES ($1, $2, $3, CASE WHEN $3 THEN $6::bigint END, $4, $5, $6, $6)
         ON CONFLICT (name) DO NOTHING",
    )
    .bind(&spec.name)
    .bind(enc(spec)?)
    .bind(spec.paused)
    .bind(cur)
    .bind(fire)
    .bind(now)
    .execute(&mut *c)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// [`ScheduleStore::set_paused`](crate::store::ScheduleStore::set_paused)
/// in a transaction.
pub(super) async fn set_paused_in(
    c: &mut PgConnection,
    name: &str,
    paused: bool,
    cursor: Cursor,
    now: i64,
) -> Result<StoredSchedule> {
    let old = schedule_by(c, name, true).await?;
    if old.paused != paused {
        let (cur, fire) = cursor.resolve((old.cursor, old.next_fire_at));
        sqlx::query(
            "UPDATE schedules SET paused = $1,
               paused_at = CASE WHEN $1 THEN $2 ELSE paused_at END,
               resumed_at = CASE WHEN $1 THEN NULL ELSE $2 END,
               cursor = $3, next_fire_at = $4, updated_at = $2
             WHERE id = $5",
        )
        .bind(paused)
        .bind(now)
        .bind(cur)
        .bind(fire)
        .bind(old.id)
        .execute(&mut *c)
        .await?;
    }
    schedule_by(c, name, false).await
}
