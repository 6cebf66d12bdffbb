//! Reading a stopped controller's SQLite store (read-only) for schedule
//! evidence: one job per (schedule, nominal time), and occurrences that
//! cover every nominal time with no gap. Used by `tests/tests/schedules.rs`
//! and the `schedules` benchmark.

use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;

use anyhow::{Context, Result, bail};
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

/// The controller's database in its state dir.
pub fn db_path(state_dir: &Path) -> std::path::PathBuf {
    state_dir.join("baton.db")
}

/// Open the database read-only (the controller must be stopped, or at least
/// not be relied on to see these reads).
pub async fn open(path: &Path) -> Result<SqlitePool> {
    let opts = SqliteConnectOptions::from_str("sqlite:")?
        .filename(path)
        .read_only(true);
    SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(opts)
        .await
        .with_context(|| format!("open {} read-only", path.display()))
}

/// The store id of the schedule named `name`.
pub async fn schedule_id(db: &SqlitePool, name: &str) -> Result<i64> {
    sqlx::query_scalar("SELECT id FROM schedules WHERE name = ?")
        .bind(name)
        .fetch_one(db)
        .await
        .with_context(|| format!("schedule {name} in the store"))
}

/// `(schedule_id, nominal_at, count)` of every nominal time with more than
/// one job (jobs of a schedule's pipeline runs, which share the run's
/// nominal time, left out).
pub async fn duplicate_jobs(db: &SqlitePool) -> Result<Vec<(i64, i64, i64)>> {
    Ok(sqlx::query_as(
        "SELECT schedule_id, nominal_at, COUNT(*) FROM jobs \
         WHERE schedule_id IS NOT NULL AND run_id IS NULL GROUP BY 1, 2 HAVING COUNT(*) > 1",
    )
    .fetch_all(db)
    .await?)
}

/// One `occurrences` row.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct OccRow {
    /// Nominal time, Unix ms.
    pub nominal: i64,
    /// Last nominal time of a range.
    pub last_nominal: Option<i64>,
    /// Occurrences the row stands for.
    pub count: i64,
    /// `schedule`, `catchup`, `manual`, `backfill`.
    pub trigger: String,
    /// `fired`, `pending`, `skipped`, `missed`.
    pub state: String,
    /// Why skipped or missed.
    pub reason: Option<String>,
    /// The job it made.
    pub job_id: Option<i64>,
}

/// Every occurrence row of a schedule, oldest first.
pub async fn occurrences(db: &SqlitePool, schedule_id: i64) -> Result<Vec<OccRow>> {
    Ok(sqlx::query_as(
        "SELECT nominal, last_nominal, count, trigger, state, reason, job_id \
         FROM occurrences WHERE schedule_id = ? ORDER BY nominal",
    )
    .bind(schedule_id)
    .fetch_all(db)
    .await?)
}

/// `(job id, nominal_at, created_at)` of every job a schedule made.
pub async fn jobs_of(db: &SqlitePool, schedule_id: i64) -> Result<Vec<(i64, i64, i64)>> {
    Ok(sqlx::query_as(
        "SELECT id, nominal_at, created_at FROM jobs WHERE schedule_id = ? AND run_id IS NULL \
         ORDER BY nominal_at",
    )
    .bind(schedule_id)
    .fetch_all(db)
    .await?)
}

/// What [`check_exactly_once`] found.
#[derive(Debug, Clone, Default)]
pub struct Evidence {
    /// Nominal times covered, first to last.
    pub nominals: usize,
    /// Occurrences per state (ranges counted by their `count`).
    pub by_state: BTreeMap<String, i64>,
    /// Occurrences per trigger.
    pub by_trigger: BTreeMap<String, i64>,
    /// Jobs the schedule made.
    pub jobs: usize,
}

/// For a schedule firing every `period_ms` on the period's grid: no nominal
/// time has two jobs; the occurrence rows cover every nominal time from the
/// first to the last exactly once (no gap, no overlap, ranges consistent
/// with their `count`); each fired occurrence names a job of this schedule
/// with that nominal time, and every job of the schedule is named by one.
pub async fn check_exactly_once(db: &SqlitePool, name: &str, period_ms: i64) -> Result<Evidence> {
    let dups = duplicate_jobs(db).await?;
    if !dups.is_empty() {
        bail!("nominal times with more than one job (schedule, nominal, jobs): {dups:?}");
    }
    let id = schedule_id(db, name).await?;
    let rows = occurrences(db, id).await?;
    let jobs: BTreeMap<i64, (i64, i64)> = jobs_of(db, id)
        .await?
        .into_iter()
        .map(|(job, nominal, created)| (job, (nominal, created)))
        .collect();
    let mut ev = Evidence {
        jobs: jobs.len(),
        ..Evidence::default()
    };
    let Some(first) = rows.first() else {
        bail!("schedule {name} has no occurrence");
    };
    let mut expect = first.nominal;
    let mut named = std::collections::BTreeSet::new();
    for r in &rows {
        if r.nominal != expect {
            bail!(
                "occurrences of {name}: expected nominal {expect}, found {} (gap or overlap): {r:?}",
                r.nominal
            );
        }
        let last = r.last_nominal.unwrap_or(r.nominal);
        if (last - r.nominal) % period_ms != 0 || (last - r.nominal) / period_ms + 1 != r.count {
            bail!("range row inconsistent with its count (period {period_ms} ms): {r:?}");
        }
        *ev.by_state.entry(r.state.clone()).or_default() += r.count;
        *ev.by_trigger.entry(r.trigger.clone()).or_default() += r.count;
        if r.state == "fired" {
            let job = r
                .job_id
                .with_context(|| format!("fired without a job: {r:?}"))?;
            match jobs.get(&job) {
                Some((nominal, _)) if *nominal == r.nominal && r.count == 1 => {}
                other => bail!("fired occurrence {r:?} names job {job}, which is {other:?}"),
            }
            named.insert(job);
        }
        ev.nominals += r.count as usize;
        expect = last + period_ms;
    }
    let orphans: Vec<_> = jobs.keys().filter(|j| !named.contains(j)).collect();
    if !orphans.is_empty() {
        bail!("jobs of {name} no fired occurrence names: {orphans:?}");
    }
    Ok(ev)
}

#[cfg(test)]
mod tests;
